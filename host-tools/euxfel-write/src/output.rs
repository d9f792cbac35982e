//! The output file: written under a temporary name in the same directory and renamed into
//! place only when complete, so a failed or interrupted write never leaves a half-written
//! file under the final name; an existing file is replaced only when asked.
//!
//! The temporary name `.<name>.partial-<pid>` says which output and which process it belongs
//! to. A process killed outright (SIGKILL, power loss) cannot remove its partial file; the
//! next write of the same output removes every partial file of it whose process is gone.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{io, Error, Result};

/// A file being written: `tmp` until [`Output::commit`], removed on drop otherwise.
pub(crate) struct Output {
    pub tmp: PathBuf,
    pub final_path: PathBuf,
    /// Partial files of this output left by earlier processes that are gone, removed.
    pub stale_removed: Vec<PathBuf>,
    committed: bool,
}

impl Output {
    /// Checks that `path` may be written (absent, or `overwrite`), removes stale partial
    /// files of it and picks the temporary name `.<name>.partial-<pid>` beside it (not ending
    /// in `.h5`, so run listings skip it).
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
        let tmp = dir.join(partial_name(&name, std::process::id()));
        // Fail early, naming the directory, if it is missing or read-only.
        std::fs::File::create(&tmp).map_err(io(&dir))?;
        let mut out = Output {
            tmp,
            final_path,
            stale_removed: Vec::new(),
            committed: false,
        };
        out.stale_removed = remove_stale_partials(&dir, &name)?;
        Ok(out)
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

/// A failed write on a file system with less space left than this is put down to a full
/// disk: the largest single write is a block of rows (16 MiB) or one chunk.
const FULL_BELOW_BYTES: u64 = 17 << 20;

impl Output {
    /// `e` as [`Error::NoSpace`] when the output's file system is (all but) full, so the user
    /// reads why rather than which HDF5 call failed. Called before the partial file is removed.
    pub fn explain(&self, e: Error) -> Error {
        if !matches!(e, Error::Hdf5 { .. } | Error::Io { .. }) {
            return e;
        }
        match self.available_bytes() {
            Some(available) if available < FULL_BELOW_BYTES => Error::NoSpace {
                dir: self.dir().to_path_buf(),
                available,
                cause: Box::new(e),
            },
            _ => e,
        }
    }

    /// Bytes an unprivileged writer may still use on the output's file system.
    pub fn available_bytes(&self) -> Option<u64> {
        let s = rustix::fs::statvfs(self.dir()).ok()?;
        let unit = if s.f_frsize > 0 {
            s.f_frsize
        } else {
            s.f_bsize
        };
        Some(s.f_bavail.saturating_mul(unit))
    }
}

fn partial_name(name: &str, pid: u32) -> String {
    format!(".{name}.partial-{pid}")
}

/// The writer's process id if `file` is a partial file of the output `name`.
fn partial_pid(file: &str, name: &str) -> Option<u32> {
    let pid = file
        .strip_prefix('.')?
        .strip_prefix(name)?
        .strip_prefix(".partial-")?;
    if pid.bytes().all(|b| b.is_ascii_digit()) {
        pid.parse().ok()
    } else {
        None
    }
}

/// Removes the partial files of output `name` in `dir` whose writing process no longer exists
/// (no `/proc/<pid>`); a live process's file is its own business and stays.
fn remove_stale_partials(dir: &Path, name: &str) -> Result<Vec<PathBuf>> {
    let own = std::process::id();
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let file = entry.file_name();
        let Some(pid) = file.to_str().and_then(|f| partial_pid(f, name)) else {
            continue;
        };
        if pid == own || Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            // Another writer of the same output removed it first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Io { path, source: e }),
        }
    }
    removed.sort();
    Ok(removed)
}

/// A request to stop a write (set from a signal handler): checked between datasets and between
/// chunks, it makes the write fail with [`Error::Interrupted`] and remove its partial file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stop<'a> {
    pub flag: Option<&'a AtomicBool>,
    /// The output's final name, for the error.
    pub path: &'a Path,
}

impl<'a> Stop<'a> {
    pub fn new(flag: &'a Option<Arc<AtomicBool>>, path: &'a Path) -> Stop<'a> {
        Stop {
            flag: flag.as_deref(),
            path,
        }
    }

    pub fn check(&self) -> Result<()> {
        match self.flag {
            Some(f) if f.load(Ordering::Relaxed) => Err(Error::Interrupted(self.path.into())),
            _ => Ok(()),
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

    #[test]
    fn partial_files_of_gone_processes_are_removed_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.h5");
        // Above any pid_max: no such process. Pid 1 always runs.
        let gone = dir.path().join(".out.h5.partial-4000000000");
        let live = dir.path().join(".out.h5.partial-1");
        let other_output = dir.path().join(".other.h5.partial-4000000000");
        let not_partial = dir.path().join(".out.h5.partial-12x");
        for f in [&gone, &live, &other_output, &not_partial] {
            std::fs::write(f, b"x").unwrap();
        }
        let o = Output::start(&p, false).unwrap();
        assert_eq!(o.stale_removed, vec![gone.clone()]);
        assert!(!gone.exists());
        for f in [&live, &other_output, &not_partial] {
            assert!(f.exists(), "{}", f.display());
        }
        assert_eq!(partial_pid(".out.h5.partial-17", "out.h5"), Some(17));
        assert_eq!(partial_pid(".out.h5.partial-", "out.h5"), None);
        assert_eq!(partial_pid(".xout.h5.partial-17", "out.h5"), None);
    }

    #[test]
    fn a_stop_request_is_an_interruption_naming_the_output() {
        let flag = Some(Arc::new(AtomicBool::new(false)));
        let stop = Stop::new(&flag, Path::new("/x/o.h5"));
        assert!(stop.check().is_ok());
        if let Some(f) = &flag {
            f.store(true, Ordering::Relaxed);
        }
        assert!(matches!(stop.check(), Err(Error::Interrupted(p)) if p == Path::new("/x/o.h5")));
        assert!(Stop::new(&None, Path::new("/x/o.h5")).check().is_ok());
    }
}
