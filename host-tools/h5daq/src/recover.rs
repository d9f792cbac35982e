//! Finishing files left by a killed daemon (`h5daq recover`).

use std::path::{Path, PathBuf};

use crate::error::DaqError;
use crate::hdf;
use crate::job::AttrValue;
use crate::names::FileNames;

/// What [`recover`] did to one file.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovered {
    pub original: PathBuf,
    pub path: PathBuf,
    /// The superblock's open-for-write flag had to be cleared (h5clear -s).
    pub cleared_flags: bool,
    pub file_end: f64,
}

/// Finishes a file left by a killed daemon: clears the superblock's status flags with
/// `h5clear -s` when the file does not open, sets `file_end` to the latest stored time (or
/// `file_start`), marks it `recovered`, and renames a file named by `names` to the real end.
/// Files whose `file_end` is already set are left alone (`Ok(None)`).
pub fn recover(path: &Path, names: &FileNames) -> Result<Option<Recovered>, DaqError> {
    if std::fs::metadata(path).map_err(DaqError::io(path))?.len() == 0 {
        return Err(DaqError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    let mut cleared = false;
    let file = match hdf::open_rw(path, 0) {
        Ok(f) => f,
        Err(first) => {
            let out = std::process::Command::new("h5clear")
                .arg("-s")
                .arg(path)
                .output();
            match out {
                Ok(o) if o.status.success() => {}
                Ok(o) => {
                    return Err(DaqError::Unrecoverable {
                        path: path.to_path_buf(),
                        open_error: first.to_string(),
                        reason: String::from_utf8_lossy(&o.stderr).trim().to_string(),
                    })
                }
                Err(e) => {
                    return Err(DaqError::Unrecoverable {
                        path: path.to_path_buf(),
                        open_error: first.to_string(),
                        reason: format!(
                            "h5clear (Debian package hdf5-tools) is needed to clear its status flags: {e}"
                        ),
                    })
                }
            }
            cleared = true;
            hdf::open_rw(path, 0)?
        }
    };
    let ctx = |k: &str| format!("{}: {k}", path.display());
    if hdf::read_f64_attr(&file, "file_end").is_some_and(|v| !v.is_nan()) && !cleared {
        return Ok(None);
    }
    let start = hdf::read_f64_attr(&file, "file_start").unwrap_or(f64::NAN);
    let latest = hdf::max_time(&file).map_err(DaqError::hdf5(ctx("read time")))?;
    let end = match latest {
        Some(t) if start.is_nan() || t >= start => t,
        _ => start,
    };
    hdf::set_attr(&file, "file_end", &AttrValue::Float(end))
        .map_err(DaqError::hdf5(ctx("attribute file_end")))?;
    hdf::set_attr(&file, "recovered", &AttrValue::Bool(true))
        .map_err(DaqError::hdf5(ctx("attribute recovered")))?;
    file.close().map_err(DaqError::hdf5(ctx("close")))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let mut new_path = path.to_path_buf();
    if let (Some((from, _)), Some(dir)) = (names.parse(name), path.parent()) {
        if end.is_finite() {
            let target = names.free_path(dir, from, end, Some(path));
            if target != path {
                std::fs::rename(path, &target).map_err(DaqError::io(path))?;
            }
            new_path = target;
        }
    }
    Ok(Some(Recovered {
        original: path.to_path_buf(),
        path: new_path,
        cleared_flags: cleared,
        file_end: end,
    }))
}
