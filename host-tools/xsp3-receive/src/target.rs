//! Confinement of the files a receiver writes to its root.

use std::path::{Path, PathBuf};

use xspress3::layout::{self, NameError};

use crate::config::WriteConfig;

/// Why a series' base name was refused.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("{} is a symbolic link; files stay inside the root", .0.display())]
    Symlink(PathBuf),
}

/// Checks a base name before anything is created: [`layout::check_name`] (relative, no `..`),
/// and no symbolic link on the way (an existing directory of the name, or with `--overwrite` the
/// first file itself), so that nothing is written outside the root even if a link was planted in
/// it.
pub(crate) fn check_target(w: &WriteConfig, name: &str) -> Result<(), TargetError> {
    layout::check_name(name)?;
    let relative = Path::new(name);
    let mut path = w.root.clone();
    let dirs = relative
        .parent()
        .map(|p| p.components().count())
        .unwrap_or(0);
    for component in relative.components().take(dirs) {
        path.push(component);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => return Err(TargetError::Symlink(path)),
            Ok(_) => {}
            Err(_) => return Ok(()),
        }
    }
    let first = layout::file_name(name, w.frames_per_file.map(|_| 0));
    let file = w.root.join(first);
    if std::fs::symlink_metadata(&file).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(TargetError::Symlink(file));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn config(root: &Path, frames_per_file: Option<u64>) -> WriteConfig {
        WriteConfig {
            root: root.to_path_buf(),
            file: None,
            frames_per_file,
            overwrite: true,
            swmr: false,
            flush_interval: Duration::from_secs(1),
        }
    }

    #[test]
    fn links_and_escaping_names_are_told_apart() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("x.h5"), root.path().join("f_00000.h5"))
            .unwrap();
        let w = config(root.path(), None);
        assert!(check_target(&w, "plain").is_ok());
        assert!(check_target(&w, "new/dir/name").is_ok());
        assert!(matches!(
            check_target(&w, "../up"),
            Err(TargetError::Name(NameError::ParentDir(_)))
        ));
        assert!(matches!(
            check_target(&w, "/abs"),
            Err(TargetError::Name(NameError::Absolute(_)))
        ));
        match check_target(&w, "link/name") {
            Err(TargetError::Symlink(p)) => assert_eq!(p, root.path().join("link")),
            other => panic!("{other:?}"),
        }
        // The first file of a rollover series is a link; without rollover the name differs.
        assert!(check_target(&w, "f").is_ok());
        match check_target(&config(root.path(), Some(10)), "f") {
            Err(TargetError::Symlink(p)) => assert_eq!(p, root.path().join("f_00000.h5")),
            other => panic!("{other:?}"),
        }
    }
}
