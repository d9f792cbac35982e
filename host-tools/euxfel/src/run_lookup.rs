//! Finding a run by proposal and run number, as EXtra-data's `open_run` does:
//! `<data root>/<instrument>/<cycle>/p<proposal:06>/<raw|proc>/r<run:04>`.
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

/// Which data of a run (EXtra-data's `data=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataOrigin {
    Raw,
    Proc,
    /// Raw and processed data; where both have a source, the processed one.
    All,
}

impl DataOrigin {
    /// The directories, in the order EXtra-data merges them (later ones win).
    fn subdirs(self) -> &'static [&'static str] {
        match self {
            DataOrigin::Raw => &["raw"],
            DataOrigin::Proc => &["proc"],
            DataOrigin::All => &["raw", "proc"],
        }
    }
}

impl std::str::FromStr for DataOrigin {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "raw" => Ok(DataOrigin::Raw),
            "proc" => Ok(DataOrigin::Proc),
            "all" => Ok(DataOrigin::All),
            other => Err(format!("{other:?} is not one of raw, proc, all")),
        }
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

/// The run directories of `data` that exist, in merge order. `All` needs the raw
/// directory; a missing proc directory is left out (EXtra-data warns "No data
/// available for this run at origin proc").
pub fn run_directories(
    root: &Path,
    proposal: &str,
    run: &str,
    data: DataOrigin,
) -> Result<Vec<PathBuf>> {
    let prop = find_proposal(root, proposal)?;
    let run = run_name(run);
    let mut dirs = Vec::new();
    for (i, sub) in data.subdirs().iter().enumerate() {
        let d = prop.join(sub).join(&run);
        if d.is_dir() {
            dirs.push(d);
        } else if i == 0 {
            return Err(Error::RunNotFound { dir: d });
        }
    }
    Ok(dirs)
}

/// Open a run by proposal and run number (EXtra-data's `open_run`). For `All`, the
/// processed data's sources replace the raw data's sources of the same name.
pub fn open_run_by_number(
    root: &Path,
    proposal: &str,
    run: &str,
    data: DataOrigin,
    opts: &OpenOptions,
) -> Result<DataCollection> {
    let mut merged: Option<DataCollection> = None;
    for dir in run_directories(root, proposal, run, data)? {
        let dc = DataCollection::open_run(&dir, opts)?;
        merged = Some(match merged {
            None => dc,
            Some(base) => {
                let common: Vec<(String, String)> = base
                    .all_sources()
                    .intersection(&dc.all_sources())
                    .map(|s| (s.clone(), "*".to_string()))
                    .collect();
                let extra = base.deselect(&common)?;
                if extra.files.is_empty() {
                    dc
                } else {
                    let mut u = dc.union(&[&extra])?;
                    u.is_single_run = true;
                    u
                }
            }
        });
    }
    merged.ok_or_else(|| Error::RunNotFound {
        dir: root.join(proposal),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposal_and_run_names() {
        let td = tempfile::tempdir().expect("tempdir");
        let root = td.path();
        for d in [
            "FXE/201830/p900000/raw/r0450",
            "SPB/202401/p002012/raw/r0007",
        ] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        std::fs::create_dir_all(root.join("SPB/202401/p002012/proc/r0007")).expect("mkdir");
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
        assert_eq!(
            run_directories(root, "2012", "7", DataOrigin::All).expect("dirs"),
            [
                root.join("SPB/202401/p002012/raw/r0007"),
                root.join("SPB/202401/p002012/proc/r0007")
            ]
        );
        // All without proc: raw alone; proc alone must exist.
        assert_eq!(
            run_directories(root, "900000", "r0450", DataOrigin::All).expect("dirs"),
            [root.join("FXE/201830/p900000/raw/r0450")]
        );
        assert!(matches!(
            run_directories(root, "900000", "450", DataOrigin::Proc),
            Err(Error::RunNotFound { .. })
        ));
        assert_eq!(data_root(Some(Path::new("/x"))), PathBuf::from("/x"));
        assert_eq!(data_root(Some(Path::new(""))), PathBuf::from("."));
    }
}
