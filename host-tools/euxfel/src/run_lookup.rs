//! Finding a run by proposal and run number, as EXtra-data's `open_run` does:
//! `<data root>/<instrument>/<cycle>/p<proposal:06>/<location>/r<run:04>`, the location
//! `raw`, `proc` or another directory of the proposal, and `default` (proc, then raw) or
//! `all` (raw, then proc) merging two of them.
//!
//! The data root is an option, else the `EXTRA_DATA_DATA_ROOT` environment variable
//! (EXtra-data's), else EuXFEL's `/gpfs/exfel/exp`.

use std::path::{Path, PathBuf};

use super::data_collection::DataCollection;
use super::error::{Error, Result};
use super::open::OpenOptions;

/// EXtra-data's environment variable for the data root.
pub const DATA_ROOT_ENV: &str = "EXTRA_DATA_DATA_ROOT";
/// The data root on EuXFEL's Maxwell cluster.
pub const DEFAULT_DATA_ROOT: &str = "/gpfs/exfel/exp";

/// Which data of a run (EXtra-data's `data=`): one or more locations relative to the
/// proposal directory, merged in order, a later location's sources replacing an earlier
/// one's of the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataOrigin {
    /// `default`: `proc` then `raw` (raw wins where both have a source); a run without
    /// processed data is no error and no warning.
    Default,
    /// `all`: `raw` then `proc` (proc wins); a run without processed data gets a warning.
    All,
    /// One location: `raw`, `proc`, or any other directory relative to the proposal
    /// directory holding one directory per run (`usr/Shared/amore`); absolute, it is used
    /// as it is (as Python's `os.path.join`).
    Location(String),
    /// Several locations (`proc,raw,usr/Shared/x`), merged in this order; each may be
    /// absent (a warning) once an earlier one was found.
    Sequence(Vec<String>),
}

/// One location of a run's data, and whether its absence is fine without a warning.
struct Origin<'a> {
    location: &'a str,
    absence_ok: bool,
}

impl DataOrigin {
    /// The locations, in the order EXtra-data merges them (later ones win).
    fn origins(&self) -> Vec<Origin<'_>> {
        let plain = |location| Origin {
            location,
            absence_ok: false,
        };
        match self {
            DataOrigin::Default => vec![
                Origin {
                    location: "proc",
                    absence_ok: true,
                },
                plain("raw"),
            ],
            DataOrigin::All => vec![plain("raw"), plain("proc")],
            DataOrigin::Location(l) => vec![plain(l)],
            DataOrigin::Sequence(v) => v.iter().map(|l| plain(l)).collect(),
        }
    }
}

impl std::str::FromStr for DataOrigin {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "default" => DataOrigin::Default,
            "all" => DataOrigin::All,
            s if s.contains(',') => {
                let v: Vec<String> = s.split(',').map(str::to_string).collect();
                if v.iter().any(|l| l.is_empty()) {
                    return Err(format!("{s:?}: an empty location in the list"));
                }
                DataOrigin::Sequence(v)
            }
            s => DataOrigin::Location(s.to_string()),
        })
    }
}

/// A run directory of one location of the run's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOrigin {
    /// The location as given (`raw`, `proc`, `usr/Shared/x`).
    pub location: String,
    pub dir: PathBuf,
}

/// A location without data for the run, after an earlier one had some: EXtra-data's
/// `open_run` warns and goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("warning: No data available for this run at origin {location}")]
pub struct MissingOrigin {
    pub location: String,
    pub dir: PathBuf,
}

/// The run directories of a lookup (at least one), in merge order, and the locations
/// that had none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDirectories {
    first: RunOrigin,
    later: Vec<RunOrigin>,
    missing: Vec<MissingOrigin>,
}

impl RunDirectories {
    /// The run directories found, in merge order (later ones win).
    pub fn found(&self) -> Vec<&RunOrigin> {
        std::iter::once(&self.first).chain(&self.later).collect()
    }

    /// The locations without data that EXtra-data warns about.
    pub fn missing(&self) -> &[MissingOrigin] {
        &self.missing
    }

    /// The run as `open_run` returns it: the data of each directory in turn, a later
    /// one's sources replacing an earlier one's of the same name. Its warnings are those
    /// of opening each directory (files left out), as EXtra-data prints them while opening.
    pub fn open(&self, opts: &OpenOptions) -> Result<DataCollection> {
        let mut merged = DataCollection::open_run(&self.first.dir, opts)?;
        let mut warnings = merged.warnings.clone();
        for origin in &self.later {
            let dc = DataCollection::open_run(&origin.dir, opts)?;
            warnings.extend(dc.warnings.iter().cloned());
            let common: Vec<(String, String)> = merged
                .all_sources()
                .intersection(&dc.all_sources())
                .map(|s| (s.clone(), "*".to_string()))
                .collect();
            let extra = merged.deselect(&common)?;
            merged = if extra.files.is_empty() {
                // The earlier sources are all in this location: dropped.
                dc
            } else {
                let mut u = dc.union(&[&extra])?;
                u.is_single_run = true;
                u
            };
        }
        merged.warnings = warnings;
        Ok(merged)
    }
}

/// The data root: `option`, else `$EXTRA_DATA_DATA_ROOT`, else `/gpfs/exfel/exp`.
/// An empty one is the working directory (EXtra-data globs `*/*/p…` there).
pub fn data_root(option: Option<&Path>) -> PathBuf {
    let root = match option {
        Some(p) => p.to_path_buf(),
        None => std::env::var_os(DATA_ROOT_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_ROOT)),
    };
    if root.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        root
    }
}

/// The proposal directory: `proposal` is a number (`2012`), a name (`p002012`) or,
/// containing a `/`, the directory itself. Numbers and names are looked up as
/// `<root>/*/*/p<number:06>` (the first match in name order).
pub fn find_proposal(root: &Path, proposal: &str) -> Result<PathBuf> {
    if proposal.contains('/') {
        return Ok(PathBuf::from(proposal));
    }
    let name = if proposal.starts_with('p') {
        proposal.to_string()
    } else {
        format!("p{proposal:0>6}")
    };
    let mut found = Vec::new();
    for instrument in sorted_dirs(root) {
        for cycle in sorted_dirs(&instrument) {
            let p = cycle.join(&name);
            if p.is_dir() {
                found.push(p);
            }
        }
    }
    found
        .into_iter()
        .next()
        .ok_or_else(|| Error::ProposalNotFound {
            proposal: name,
            root: root.into(),
        })
}

fn sorted_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        // Python's glob `*` skips hidden names.
        .filter(|e| !e.file_name().as_encoded_bytes().starts_with(b"."))
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

/// `r0243` from `243`, `"243"` or `"r0243"`.
fn run_name(run: &str) -> String {
    let n = run.strip_prefix('r').unwrap_or(run);
    format!("r{n:0>4}")
}

/// `None` if `dir` is a run directory with data (an `.h5` file other than
/// `overview.h5`), else the error `open_run` raises for it as `FileNotFoundError` (which
/// makes a location count as absent). Other I/O errors are errors.
fn absent(dir: &Path) -> Result<Option<Error>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Some(Error::RunNotFound { dir: dir.into() }))
        }
        Err(e) => return Err(Error::io(dir, e)),
    };
    let has_data = entries.filter_map(|e| e.ok()).any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        name.ends_with(".h5") && !name.eq_ignore_ascii_case("overview.h5")
    });
    Ok((!has_data).then(|| Error::NoFiles {
        dir: dir.into(),
        pattern: "*".into(),
    }))
}

/// The run directories of `data` as `open_run` finds them, in merge order. A location
/// whose run directory is missing or holds no `.h5` file is absent: before any location
/// was found, that is the error (unless its absence is fine: `default`'s proc); after
/// one, a [`MissingOrigin`] warning (none for `default`'s proc).
pub fn run_directories(
    root: &Path,
    proposal: &str,
    run: &str,
    data: &DataOrigin,
) -> Result<RunDirectories> {
    let prop = find_proposal(root, proposal)?;
    let run = run_name(run);
    let (mut found, mut missing, mut absence) = (Vec::new(), Vec::new(), None);
    for origin in data.origins() {
        let dir = prop.join(origin.location).join(&run);
        match absent(&dir)? {
            None => found.push(RunOrigin {
                location: origin.location.to_string(),
                dir,
            }),
            Some(e) if origin.absence_ok => absence = Some(e),
            Some(e) if found.is_empty() => return Err(e),
            Some(_) => missing.push(MissingOrigin {
                location: origin.location.to_string(),
                dir,
            }),
        }
    }
    let mut found = found.into_iter();
    match found.next() {
        Some(first) => Ok(RunDirectories {
            first,
            later: found.collect(),
            missing,
        }),
        // Every location was allowed to be absent, and was.
        None => Err(absence.unwrap_or(Error::RunNotFound {
            dir: prop.join(&run),
        })),
    }
}

/// Open a run by proposal and run number (EXtra-data's `open_run`), see
/// [`RunDirectories::open`]. Also returns the locations without data that EXtra-data
/// warns about.
pub fn open_run_by_number(
    root: &Path,
    proposal: &str,
    run: &str,
    data: &DataOrigin,
    opts: &OpenOptions,
) -> Result<(DataCollection, Vec<MissingOrigin>)> {
    let dirs = run_directories(root, proposal, run, data)?;
    Ok((dirs.open(opts)?, dirs.missing))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(p, b"").expect("write");
    }

    #[test]
    fn proposal_and_run_names() {
        let td = tempfile::tempdir().expect("tempdir");
        let root = td.path();
        for d in [
            "FXE/201830/p900000/raw/r0450",
            "SPB/202401/p002012/raw/r0007",
            ".snapshot/x/p000003",
        ] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        assert_eq!(
            find_proposal(root, "2012").expect("found"),
            root.join("SPB/202401/p002012")
        );
        assert_eq!(
            find_proposal(root, "p900000").expect("found"),
            root.join("FXE/201830/p900000")
        );
        assert!(matches!(
            find_proposal(root, "1"),
            Err(Error::ProposalNotFound { proposal, .. }) if proposal == "p000001"
        ));
        // Hidden directories are not searched (Python's glob `*`).
        assert!(find_proposal(root, "3").is_err());
        assert_eq!(run_name("7"), "r0007");
        assert_eq!(run_name("r12345"), "r12345");
        assert_eq!(data_root(Some(Path::new("/x"))), PathBuf::from("/x"));
        assert_eq!(data_root(Some(Path::new(""))), PathBuf::from("."));
    }

    #[test]
    fn data_values() {
        let parse = |s: &str| s.parse::<DataOrigin>();
        assert_eq!(parse("default"), Ok(DataOrigin::Default));
        assert_eq!(parse("all"), Ok(DataOrigin::All));
        assert_eq!(parse("raw"), Ok(DataOrigin::Location("raw".into())));
        assert_eq!(
            parse("usr/Shared/x"),
            Ok(DataOrigin::Location("usr/Shared/x".into()))
        );
        assert_eq!(
            parse("raw,proc"),
            Ok(DataOrigin::Sequence(vec!["raw".into(), "proc".into()]))
        );
        assert!(parse("raw,").is_err());
    }

    /// Which directories each `data` value takes, and what is an error or a warning, as
    /// `open_run`: the first location must exist (except `default`'s proc), a later one
    /// missing is a warning (none for `default`'s proc); a directory without `.h5` files
    /// (or only `overview.h5`) counts as missing.
    #[test]
    fn directories_of_each_data_value() {
        let td = tempfile::tempdir().expect("tempdir");
        let root = td.path();
        let prop = root.join("SPB/202401/p002012");
        touch(&prop.join("raw/r0001/RAW-R0001-DA01-S00000.h5"));
        touch(&prop.join("proc/r0001/CORR-R0001-AGIPD00-S00000.h5"));
        touch(&prop.join("raw/r0002/RAW-R0002-DA01-S00000.h5"));
        touch(&prop.join("proc/r0002/overview.h5"));
        touch(&prop.join("proc/r0003/CORR-R0003-AGIPD00-S00000.h5"));
        touch(&prop.join("usr/Shared/x/r0003/X-R0003.h5"));
        let dirs = |run: &str, data: &str| {
            let data: DataOrigin = data.parse().expect("data");
            run_directories(root, "2012", run, &data)
        };
        let found = |r: &RunDirectories| -> Vec<String> {
            r.found().iter().map(|o| o.location.clone()).collect()
        };
        let missing = |r: &RunDirectories| -> Vec<String> {
            r.missing().iter().map(|o| o.location.clone()).collect()
        };

        let r = dirs("1", "default").expect("r1");
        assert_eq!(found(&r), ["proc", "raw"]);
        assert_eq!(r.found()[1].dir, prop.join("raw/r0001"));
        assert!(r.missing().is_empty());
        let r = dirs("1", "all").expect("r1");
        assert_eq!(found(&r), ["raw", "proc"]);

        // Run 2: proc holds only overview.h5, i.e. no data.
        let r = dirs("2", "default").expect("r2");
        assert_eq!((found(&r), missing(&r)), (vec!["raw".into()], vec![]));
        let r = dirs("2", "all").expect("r2");
        assert_eq!(found(&r), ["raw"]);
        assert_eq!(missing(&r), ["proc"]);
        assert_eq!(
            r.missing()[0].to_string(),
            "warning: No data available for this run at origin proc"
        );
        assert!(matches!(dirs("2", "proc"), Err(Error::NoFiles { .. })));

        // Run 3: no raw.
        let r = dirs("3", "default").expect("r3");
        assert_eq!(found(&r), ["proc"]);
        assert_eq!(missing(&r), ["raw"]);
        assert!(
            matches!(dirs("3", "all"), Err(Error::RunNotFound { dir }) if dir == prop.join("raw/r0003"))
        );
        assert!(matches!(dirs("3", "raw"), Err(Error::RunNotFound { .. })));
        let r = dirs("3", "usr/Shared/x").expect("custom");
        assert_eq!(r.found()[0].dir, prop.join("usr/Shared/x/r0003"));
        let r = dirs("3", "usr/Shared/x,raw,proc").expect("sequence");
        assert_eq!(found(&r), ["usr/Shared/x", "proc"]);
        assert_eq!(missing(&r), ["raw"]);

        // Run 4: nothing; default reports raw's absence.
        assert!(
            matches!(dirs("4", "default"), Err(Error::RunNotFound { dir }) if dir == prop.join("raw/r0004"))
        );
    }
}
