//! Run lookup by proposal and run number, as EXtra-data's `open_run` resolves them:
//! `<root>/<instrument>/<cycle>/p<proposal>/<raw|proc>/r<run>`, the root from an option, else
//! `EXTRA_DATA_DATA_ROOT`, else `/gpfs/exfel/exp`.

use std::path::{Path, PathBuf};

use euxfel::{DataCollection, OpenOptions, Warning};

/// The environment variable EXtra-data reads the data root from.
pub const DATA_ROOT_ENV: &str = "EXTRA_DATA_DATA_ROOT";
/// EuXFEL's data root.
pub const DEFAULT_DATA_ROOT: &str = "/gpfs/exfel/exp";

/// Which data of a run to open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DataOrigin {
    Raw,
    Proc,
    /// Raw and processed; processed sources replace raw ones of the same name.
    All,
}

/// Why a run could not be found or opened.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("cannot find proposal {proposal} under {root} (looked for {root}/*/*/{proposal})")]
    Proposal { proposal: String, root: PathBuf },
    #[error("{what} {value:?} is not a number")]
    Number { what: &'static str, value: String },
    #[error("{path}: no such run directory")]
    NoRun { path: PathBuf },
    #[error("{path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: euxfel::Error,
    },
}

/// The data root: `root` if given, else `$EXTRA_DATA_DATA_ROOT`, else `/gpfs/exfel/exp`.
pub fn data_root(root: Option<&Path>) -> PathBuf {
    match root {
        Some(r) => r.to_path_buf(),
        None => std::env::var_os(DATA_ROOT_ENV)
            .map_or_else(|| PathBuf::from(DEFAULT_DATA_ROOT), PathBuf::from),
    }
}

/// The proposal directory: a path (containing `/`) as given; `2012`, `002012` or `p002012`
/// found as `<root>/*/*/p002012`.
pub fn proposal_dir(root: &Path, proposal: &str) -> Result<PathBuf, LookupError> {
    if proposal.contains('/') {
        return Ok(PathBuf::from(proposal));
    }
    let name = if proposal.starts_with('p') {
        proposal.to_string()
    } else {
        let n: u64 = proposal.parse().map_err(|_| LookupError::Number {
            what: "proposal",
            value: proposal.to_string(),
        })?;
        format!("p{n:06}")
    };
    let not_found = || LookupError::Proposal {
        proposal: name.clone(),
        root: root.to_path_buf(),
    };
    let mut found = Vec::new();
    for instrument in sorted_dirs(root) {
        for cycle in sorted_dirs(&instrument) {
            let candidate = cycle.join(&name);
            if candidate.is_dir() {
                found.push(candidate);
            }
        }
    }
    found.into_iter().next().ok_or_else(not_found)
}

fn sorted_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// `r0243` from `243`, `0243` or `r243`.
pub fn run_name(run: &str) -> Result<String, LookupError> {
    let digits = run.strip_prefix('r').unwrap_or(run);
    let n: u64 = digits.parse().map_err(|_| LookupError::Number {
        what: "run",
        value: run.to_string(),
    })?;
    Ok(format!("r{n:04}"))
}

/// Opens a run directory; the files it skipped (unreadable) are added to `skipped`.
fn open_dir(
    path: PathBuf,
    opts: &OpenOptions,
    skipped: &mut Vec<Warning>,
) -> Result<DataCollection, LookupError> {
    if !path.is_dir() {
        return Err(LookupError::NoRun { path });
    }
    let dc = DataCollection::open_run(&path, opts)
        .map_err(|source| LookupError::Open { path, source })?;
    skipped.extend(dc.warnings().iter().cloned());
    Ok(dc)
}

/// Opens a run as `open_run(proposal, run, data=...)`. With [`DataOrigin::All`] the processed
/// data (if the run has any) replaces raw sources of the same name. Also returns the warnings
/// of opening it (files that could not be read and were left out), which EXtra-data prints.
pub fn open_run(
    root: &Path,
    proposal: &str,
    run: &str,
    data: DataOrigin,
    opts: &OpenOptions,
) -> Result<(DataCollection, Vec<Warning>), LookupError> {
    let prop = proposal_dir(root, proposal)?;
    let run = run_name(run)?;
    let mut skipped = Vec::new();
    let dc = match data {
        DataOrigin::Raw => open_dir(prop.join("raw").join(&run), opts, &mut skipped)?,
        DataOrigin::Proc => open_dir(prop.join("proc").join(&run), opts, &mut skipped)?,
        DataOrigin::All => {
            let raw = open_dir(prop.join("raw").join(&run), opts, &mut skipped)?;
            let proc_dir = prop.join("proc").join(&run);
            if !proc_dir.is_dir() {
                return Ok((raw, skipped));
            }
            let proc = open_dir(proc_dir.clone(), opts, &mut skipped)?;
            let common: Vec<(String, String)> = raw
                .all_sources()
                .intersection(&proc.all_sources())
                .map(|s| (s.clone(), "*".to_string()))
                .collect();
            let raw_only = if common.is_empty() {
                raw
            } else {
                raw.deselect(&common).map_err(|source| LookupError::Open {
                    path: proc_dir.clone(),
                    source,
                })?
            };
            if raw_only.files.is_empty() {
                return Ok((proc, skipped));
            }
            let mut merged = proc
                .union(&[&raw_only])
                .map_err(|source| LookupError::Open {
                    path: proc_dir,
                    source,
                })?;
            merged.is_single_run = true;
            merged
        }
    };
    Ok((dc, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_open_run() {
        assert_eq!(run_name("243").unwrap(), "r0243");
        assert_eq!(run_name("r7").unwrap(), "r0007");
        assert_eq!(run_name("r12345").unwrap(), "r12345");
        assert!(matches!(run_name("x1"), Err(LookupError::Number { .. })));
        let root = tempfile::tempdir().unwrap();
        let p = root.path().join("FXE/201830/p002012");
        std::fs::create_dir_all(&p).unwrap();
        assert_eq!(proposal_dir(root.path(), "2012").unwrap(), p);
        assert_eq!(proposal_dir(root.path(), "p002012").unwrap(), p);
        assert!(matches!(
            proposal_dir(root.path(), "2013"),
            Err(LookupError::Proposal { .. })
        ));
        assert_eq!(
            proposal_dir(root.path(), "/some/where").unwrap(),
            PathBuf::from("/some/where")
        );
    }
}
