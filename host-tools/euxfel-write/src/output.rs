//! The output file: written under a temporary name in the same directory and renamed into
//! place only when complete, so a failed or interrupted write never leaves a half-written
//! file under the final name; an existing file is replaced only when asked.

use std::path::{Path, PathBuf};

use crate::error::{io, Error, Result};

/// A file being written: `tmp` until [`Output::commit`], removed on drop otherwise.
pub(crate) struct Output {
    pub tmp: PathBuf,
    pub final_path: PathBuf,
    committed: bool,
}

impl Output {
    /// Checks that `path` may be written (absent, or `overwrite`) and picks the temporary name
    /// `.<name>.partial-<pid>` beside it (not ending in `.h5`, so run listings skip it).
    pub fn start(path: &Path, overwrite: bool) -> Result<Output> {
        let final_path = std::path::absolute(path).map_err(io(path))?;
        if !overwrite && std::fs::symlink_metadata(&final_path).is_ok() {
            return Err(Error::Exists(final_path));
        }
        let dir = final_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        let name = final_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.partial-{}", std::process::id()));
        // Fail early, naming the directory, if it is missing or read-only.
        std::fs::File::create(&tmp).map_err(io(&dir))?;
        Ok(Output {
            tmp,
            final_path,
            committed: false,
        })
    }

    /// The directory the file ends up in (virtual sources are named relative to it).
    pub fn dir(&self) -> &Path {
        self.final_path.parent().unwrap_or(Path::new("/"))
    }

    /// Renames the complete file into place.
    pub fn commit(mut self) -> Result<PathBuf> {
        std::fs::rename(&self.tmp, &self.final_path).map_err(io(&self.final_path))?;
        self.committed = true;
        Ok(self.final_path.clone())
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: the error that got us here is the one to report.
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// `target` relative to `dir` (both absolute), as `../x/y`; `target` itself when they share
/// no prefix beyond the root.
pub(crate) fn relative_to(target: &Path, dir: &Path) -> PathBuf {
    let t: Vec<_> = target.components().collect();
    let d: Vec<_> = dir.components().collect();
    let common = t.iter().zip(&d).take_while(|(a, b)| a == b).count();
    if common <= 1 {
        return target.to_path_buf();
    }
    let mut out = PathBuf::new();
    for _ in common..d.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative_to(Path::new("/a/b/c.h5"), Path::new("/a/b")),
            PathBuf::from("c.h5")
        );
        assert_eq!(
            relative_to(Path::new("/a/b/c.h5"), Path::new("/a/x/y")),
            PathBuf::from("../../b/c.h5")
        );
        assert_eq!(
            relative_to(Path::new("/r/c.h5"), Path::new("/s")),
            PathBuf::from("/r/c.h5")
        );
    }

    #[test]
    fn existing_files_are_kept_and_failed_writes_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.h5");
        std::fs::write(&p, b"keep").unwrap();
        assert!(matches!(Output::start(&p, false), Err(Error::Exists(_))));
        let o = Output::start(&p, true).unwrap();
        let tmp = o.tmp.clone();
        assert!(tmp.exists());
        drop(o);
        assert!(!tmp.exists());
        assert_eq!(std::fs::read(&p).unwrap(), b"keep");
        let o = Output::start(&p, true).unwrap();
        std::fs::write(&o.tmp, b"new").unwrap();
        o.commit().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
