//! Names and shapes of the Xspress3 acquisition file (NeXus), shared by the writer, the reader and
//! the receiver. docs/file-formats.md describes the layout for users.

use acq_core::geometry::Geometry;

/// The NXentry group.
pub const ENTRY: &str = "entry";
/// The NXinstrument group.
pub const INSTRUMENT: &str = "entry/instrument";
/// The NXdetector group holding every dataset.
pub const DETECTOR: &str = "entry/instrument/xspress3";

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
}
