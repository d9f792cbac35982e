//! Error type of the crate. Every variant names the file, dataset, source or key
//! involved, so a caller can print it as it is.

use std::path::PathBuf;
use std::sync::Arc;

/// Errors from reading EuXFEL run data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system error on a path.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not an HDF5 file (no signature), or libhdf5 could not open it.
    #[error("{path}: cannot open as HDF5: {msg}")]
    NotHdf5 { path: PathBuf, msg: String },
    /// A mandatory object of the EuXFEL layout is missing.
    #[error("{path}: {object} not found")]
    Missing { path: PathBuf, object: String },
    /// An object exists but has the wrong form (shape, length, value).
    #[error("{path}: {msg}")]
    FileStructure { path: PathBuf, msg: String },
    /// The index points at rows past the end of a dataset.
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
    /// An HDF5 call failed on an object.
    #[error("{path}: {object}: {msg}")]
    Hdf5 {
        path: PathBuf,
        object: String,
        msg: String,
    },
    /// A byte range of a dataset lies (partly) outside the file: the file is truncated or corrupt.
    #[error("{path}: {object}: data at offset {offset} + {len} bytes is outside the file ({file_len} bytes); truncated or corrupt file")]
    OutOfBounds {
        path: PathBuf,
        object: String,
        offset: u64,
        len: u64,
        file_len: u64,
    },
    /// An entry in a source list has an unknown data category.
    #[error("{path}: unknown data category {category:?} in source list entry {entry:?}")]
    UnknownCategory {
        path: PathBuf,
        category: String,
        entry: String,
    },
    /// A data type this code cannot convert.
    #[error("{path}: {object}: unsupported data type {dtype}")]
    UnsupportedType {
        path: PathBuf,
        object: String,
        dtype: String,
    },
    /// No source of that name.
    #[error("this data has no source named {source_name:?}{hint}")]
    SourceName { source_name: String, hint: String },
    /// No key of that name for a source.
    #[error("no key {key:?} for source {source_name:?}{hint}")]
    KeyName {
        source_name: String,
        key: String,
        hint: String,
    },
    /// A control source without a RUN section.
    #[error("{source_name} has no RUN values")]
    NoRunValues { source_name: String },
    /// A train ID that is not in the data.
    #[error("train ID {0} not found in this data")]
    TrainId(u64),
    /// A train position outside the selection.
    #[error("train index {index} is out of range for {n_trains} trains")]
    TrainIndex { index: i64, n_trains: usize },
    /// A slice with step 0.
    #[error("slice step cannot be zero")]
    SliceStepZero,
    /// Invalid arguments to a split into parts.
    #[error("{0}")]
    SplitArguments(&'static str),
    /// Two files hold the same train for the same source.
    #[error("{count} sources have conflicting data (same train ID in different files): {sources}")]
    SourceConflict { count: usize, sources: String },
    /// A selection pattern matched nothing.
    #[error("no matches for pattern ({source_glob:?}, {key_glob:?})")]
    NoMatch {
        source_glob: String,
        key_glob: String,
    },
    /// No proposal directory of that name under the data root.
    #[error("couldn't find proposal dir for {proposal:?} under {root}")]
    ProposalNotFound { proposal: String, root: PathBuf },
    /// No run directory where the proposal and run number say it is.
    #[error("{dir}: no such run directory")]
    RunNotFound { dir: PathBuf },
    /// Validation results of shards that do not make up one run.
    #[error("cannot merge validation results: {0}")]
    ShardResults(String),
    /// No files to open.
    #[error("no HDF5 files found in {dir} with glob pattern {pattern:?}")]
    NoFiles { dir: PathBuf, pattern: String },
    /// Every file given failed to open; the error of each.
    #[error("all HDF5 files specified are unusable: {}", join_errors(.0))]
    AllUnusable(Vec<(PathBuf, Arc<Error>)>),
    /// A key whose elements have no fixed size (strings) read as bytes.
    #[error("{source_name} {key}: dtype {dtype} has no fixed size; use read_strings")]
    VariableSize {
        source_name: String,
        key: String,
        dtype: String,
    },
    /// A typed read whose element type differs from the key's dtype.
    #[error("{source_name} {key}: dtype is {dtype}, not {requested}")]
    DTypeMismatch {
        source_name: String,
        key: String,
        dtype: String,
        requested: &'static str,
    },
    /// A caller buffer of the wrong size.
    #[error("{object}: buffer has {got} bytes, data needs {needed}")]
    BufferSize {
        object: String,
        got: usize,
        needed: u64,
    },
    /// SIGINT or SIGTERM arrived (see [`crate::catch_interrupt`]); the work stopped early.
    #[error("interrupted")]
    Interrupted,
    /// Sizes (from the file) too large to address or to allocate.
    #[error("{object}: {what} is too large ({size})")]
    TooLarge {
        object: String,
        what: &'static str,
        size: String,
    },
}

fn join_errors(errors: &[(PathBuf, Arc<Error>)]) -> String {
    errors
        .iter()
        .map(|(_, e)| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The files left out of a collection that could not be built (every file
    /// failed to open), as the warnings a partial failure would have given.
    pub fn skipped_files(&self) -> Vec<crate::Warning> {
        match self {
            Error::AllUnusable(failed) => failed
                .iter()
                .map(|(path, error)| crate::Warning::SkippedFile {
                    path: path.clone(),
                    error: error.clone(),
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub(crate) fn structure(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::FileStructure {
            path: path.into(),
            msg: msg.into(),
        }
    }
    pub(crate) fn missing(path: impl Into<PathBuf>, object: impl Into<String>) -> Self {
        Error::Missing {
            path: path.into(),
            object: object.into(),
        }
    }
    pub(crate) fn h5(path: impl Into<PathBuf>, object: &str, e: impl std::fmt::Display) -> Self {
        Error::Hdf5 {
            path: path.into(),
            object: object.to_string(),
            msg: e.to_string(),
        }
    }
}
