//! Names and shapes of the Xspress3 acquisition file (NeXus), shared by the writer, the reader and
//! the receiver. docs/file-formats.md describes the layout for users.

use acq_core::geometry::Geometry;

/// The NXentry group.
pub const ENTRY: &str = "entry";
/// The NXinstrument group.
pub const INSTRUMENT: &str = "entry/instrument";
/// The NXdetector group holding every dataset.
pub const DETECTOR: &str = "entry/instrument/xspress3";
/// The NXdata group NeXus viewers plot (the file's and the entry's `default`): `data` and
/// `frame_number` linked from the detector, with the `channel` and `bin` axes.
pub const NXDATA: &str = "entry/data";
/// Its name inside the entry (the entry's `default` attribute).
pub const NXDATA_NAME: &str = "data";
/// Axis of the channels, u32 (n_channels,).
pub const CHANNEL: &str = "channel";
/// Axis of the energy bins, u32 (n_bins,): the detector's bin number of each spectrum bin.
pub const BIN: &str = "bin";
/// NXentry fields: ISO 8601 times of the acquisition's start and end.
pub const START_TIME: &str = "start_time";
pub const END_TIME: &str = "end_time";
/// f64 scalar: exposure per frame in seconds (NXdetector `count_time`).
pub const COUNT_TIME: &str = "count_time";

/// Spectra, u32 (N, n_channels, n_bins).
pub const DATA: &str = "data";
/// Per-frame u64 extended frame numbers (N,).
pub const FRAME_NUMBER: &str = "frame_number";
/// Per-frame u64 read-out time in ns since the Unix epoch (N,).
pub const TIMESTAMP: &str = "timestamp";
/// f64 (N, n_channels): Time / (Time - dead ticks); NaN where `dead_time_saturated` is 1.
pub const DEAD_TIME_CORRECTION: &str = "dead_time_correction";
/// u8 (N, n_channels): 1 where Time <= dead ticks (no finite correction exists).
pub const DEAD_TIME_SATURATED: &str = "dead_time_saturated";
/// f64 (N, n_channels): AllGood * clock_hz / TotalTicks, counts per second.
pub const OUTPUT_COUNT_RATE: &str = "output_count_rate";
/// u32 (n_channels,): event width in clock ticks used for the dead-time correction.
pub const EVENT_WIDTH: &str = "event_width";
/// u64 (k, 2): `[first, count]` of every range of frames lost before they reached the file.
pub const LOST_FRAME_RANGES: &str = "lost_frame_ranges";

/// Frames per HDF5 chunk of `data` for a geometry: about 2 MiB a chunk (1 frame at least,
/// 256 at most), a power of two so that ring capacities and file sizes divide evenly.
pub fn chunk_frames(geometry: Geometry) -> usize {
    const TARGET_BYTES: usize = 2 << 20;
    let frame = geometry.mca_words() * 4;
    let frames = (TARGET_BYTES / frame).clamp(1, 256);
    1 << frames.ilog2()
}

/// File name of part `index` of an acquisition: `NAME.h5`, or `NAME_00000.h5`, ... with
/// rollover.
pub fn file_name(name: &str, index: Option<u32>) -> String {
    match index {
        Some(i) => format!("{name}_{i:05}.h5"),
        None => format!("{name}.h5"),
    }
}

/// Why a base file name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("file name is empty")]
    Empty,
    #[error("file name `{0}` is absolute; names are relative to the output directory")]
    Absolute(String),
    #[error("file name `{0}` contains `..`; files stay inside the output directory")]
    ParentDir(String),
    #[error("file name `{0}` contains a NUL or control character")]
    Control(String),
    #[error("{} is a symbolic link; files stay inside the output directory", .0.display())]
    Symlink(std::path::PathBuf),
}

/// Checks a base name that may come from a remote peer: it must stay inside the output root.
/// Sub-directories (`scan1/data`) are allowed.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.starts_with('/') || name.starts_with('\\') {
        return Err(NameError::Absolute(name.to_string()));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(NameError::Control(name.escape_debug().to_string()));
    }
    if name.split(['/', '\\']).any(|part| part == "..") {
        return Err(NameError::ParentDir(name.to_string()));
    }
    Ok(())
}

/// The one rule for where a file may go: `file` (a name checked by [`check_name`], with its
/// `.h5` ending) under `root`, with no symbolic link on the way. Every directory of `file` that
/// exists under `root`, and the file itself if it exists, must not be a symbolic link, so nothing
/// is written or replaced outside the root even if a link was planted in it. The root itself is
/// the operator's choice and may be a link. Returns the path to use.
pub fn confine(root: &std::path::Path, file: &str) -> Result<std::path::PathBuf, NameError> {
    check_name(file)?;
    let mut path = root.to_path_buf();
    for component in std::path::Path::new(file).components() {
        path.push(component);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => return Err(NameError::Symlink(path)),
            Ok(_) => {}
            // Nothing exists below a missing component.
            Err(_) => break,
        }
    }
    Ok(root.join(file))
}

/// Parts `NAME_NNNNN.h5` of a rolled-over acquisition that exist under `root`, by index.
pub fn existing_parts(root: &std::path::Path, name: &str) -> Vec<(u32, std::path::PathBuf)> {
    let base = root.join(name);
    let (Some(dir), Some(stem)) = (base.parent(), base.file_name().and_then(|s| s.to_str())) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let prefix = format!("{stem}_");
    let mut parts: Vec<(u32, std::path::PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let file = e.file_name();
            let index = file
                .to_str()?
                .strip_prefix(&prefix)?
                .strip_suffix(".h5")
                .filter(|digits| digits.len() == 5 && digits.bytes().all(|b| b.is_ascii_digit()))?
                .parse()
                .ok()?;
            Some((index, e.path()))
        })
        .collect();
    parts.sort();
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_about_two_mebibytes() {
        let g = |c, b| Geometry::new(c, b).unwrap();
        assert_eq!(chunk_frames(g(4, 4096)), 32);
        assert_eq!(chunk_frames(g(8, 4096)), 16);
        assert_eq!(chunk_frames(g(1, 4096)), 128);
        assert_eq!(chunk_frames(g(256, 4096)), 1);
        assert_eq!(chunk_frames(g(1, 16)), 256);
        assert_eq!(chunk_frames(g(3, 4096)), 32);
    }

    #[test]
    fn names_are_confined() {
        assert!(check_name("scan_001").is_ok());
        assert!(check_name("sub/dir/scan").is_ok());
        assert_eq!(check_name(""), Err(NameError::Empty));
        assert!(matches!(
            check_name("/etc/passwd"),
            Err(NameError::Absolute(_))
        ));
        assert!(matches!(check_name("../x"), Err(NameError::ParentDir(_))));
        assert!(matches!(
            check_name("a/../../x"),
            Err(NameError::ParentDir(_))
        ));
        assert!(matches!(
            check_name("a\\..\\x"),
            Err(NameError::ParentDir(_))
        ));
        assert!(matches!(check_name("a\nb"), Err(NameError::Control(_))));
        assert!(
            check_name("..data").is_ok(),
            "only whole `..` components are refused"
        );
    }

    #[test]
    fn rollover_names_count_from_zero() {
        assert_eq!(file_name("scan", None), "scan.h5");
        assert_eq!(file_name("scan", Some(0)), "scan_00000.h5");
        assert_eq!(file_name("scan", Some(12)), "scan_00012.h5");
    }

    #[test]
    fn confinement_refuses_symbolic_links_on_the_way() {
        let root = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let r = root.path();
        std::os::unix::fs::symlink(elsewhere.path(), r.join("link")).unwrap();
        std::fs::create_dir(r.join("real")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path().join("f.h5"), r.join("real/f.h5")).unwrap();
        assert_eq!(confine(r, "real/new.h5"), Ok(r.join("real/new.h5")));
        assert_eq!(confine(r, "missing/a/b.h5"), Ok(r.join("missing/a/b.h5")));
        assert_eq!(
            confine(r, "link/inside.h5"),
            Err(NameError::Symlink(r.join("link")))
        );
        assert_eq!(
            confine(r, "real/f.h5"),
            Err(NameError::Symlink(r.join("real/f.h5")))
        );
        assert!(matches!(
            confine(r, "../x.h5"),
            Err(NameError::ParentDir(_))
        ));
    }

    #[test]
    fn existing_parts_are_found_by_index() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir(r.join("sub")).unwrap();
        for f in [
            "sub/e_00002.h5",
            "sub/e_00000.h5",
            "sub/e.h5",
            "sub/e_1.h5",
            "sub/ee_00001.h5",
        ] {
            std::fs::write(r.join(f), b"").unwrap();
        }
        let parts: Vec<u32> = existing_parts(r, "sub/e")
            .into_iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(parts, [0, 2]);
        assert!(existing_parts(r, "nothing/here").is_empty());
    }
}
