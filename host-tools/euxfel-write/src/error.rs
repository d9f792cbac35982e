//! Why a write failed.

use std::path::PathBuf;

/// Errors of the writers. Every variant names the file (and object) concerned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the input failed.
    #[error(transparent)]
    Read(#[from] euxfel::Error),
    /// An operating-system error on a path.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An HDF5 call failed on an object of a file.
    #[error("{path}: {object}: {msg}")]
    Hdf5 {
        path: PathBuf,
        object: String,
        msg: String,
    },
    /// The output exists and replacing it was not asked for.
    #[error("{0}: already exists (use --overwrite to replace it)")]
    Exists(PathBuf),
    /// The write was asked to stop (a signal) before it was complete.
    #[error("{0}: interrupted; the output was not written")]
    Interrupted(PathBuf),
    /// A write failed on a file system that is (all but) full.
    #[error("{dir}: no space left on the file system ({available} bytes available); nothing was written: {cause}")]
    NoSpace {
        dir: PathBuf,
        available: u64,
        cause: Box<Error>,
    },
    /// The selection has no sources.
    #[error("nothing to write: the selection has no sources")]
    EmptySelection,
    /// The train selection is empty.
    #[error("nothing to write: the selection has no trains")]
    NoTrains,
    /// The index of a source points past the end of one of its datasets.
    #[error(
        "{path}: {object}: index refers to rows {start}..{end} outside the dataset ({rows} rows)"
    )]
    IndexOutsideData {
        path: PathBuf,
        object: String,
        start: u64,
        end: u64,
        rows: u64,
    },
    /// Files of one key disagree on the shape of an entry.
    #[error("{path}: {object}: entry shape {found:?} differs from {expected:?} in the first file")]
    ShapeMismatch {
        path: PathBuf,
        object: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// A source file changed (size or modification time) while it was being read.
    #[error("{path}: changed while being read (size {before_size} -> {after_size} bytes); the output was not written")]
    SourceChanged {
        path: PathBuf,
        before_size: u64,
        after_size: u64,
    },
    /// A value that cannot be stored as ASCII (source names are ASCII in the format).
    #[error("{what} {value:?} is not ASCII")]
    NotAscii { what: &'static str, value: String },
    /// An Xspress3 acquisition that cannot be converted.
    #[error("{path}: {msg}")]
    Xspress3 { path: PathBuf, msg: String },
    /// A recorded train whose ID is 0 or not above the previous one (INDEX/trainId increases).
    #[error("train ID {train_id} is not above the previous one ({last:?}); train left out")]
    TrainOrder { train_id: u64, last: Option<u64> },
    /// Too little space left to write a recorded train and still finish the file.
    #[error("{dir}: {available} bytes free, {needed} needed to write the next train and still finish the file; recording ended before the file system filled up")]
    SpaceLow {
        dir: PathBuf,
        available: u64,
        needed: u64,
    },
    /// A recording already ended by a write error takes no more trains.
    #[error("the recording ended after a write error")]
    RecordingEnded,
    /// An overview file that is not one (no `.source_files`, wrong version, ...).
    #[error("{path}: not a usable virtual overview file: {msg}")]
    NotOverview { path: PathBuf, msg: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Wraps an `hdf5` error with the file and object it concerns.
pub(crate) fn h5(path: &std::path::Path, object: &str) -> impl FnOnce(hdf5::Error) -> Error {
    let path = path.to_path_buf();
    let object = object.to_string();
    move |e| Error::Hdf5 {
        path,
        object,
        msg: e.to_string(),
    }
}

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { path, source }
}
