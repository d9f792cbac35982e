//! Error type of the EuXFEL module. Every variant names the file, dataset,
//! source or key involved.

use std::path::PathBuf;

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
    /// A mandatory object is missing or has the wrong form.
    #[error("{path}: {msg}")]
    FileStructure { path: PathBuf, msg: String },
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
    /// A train ID that is not in the data.
    #[error("train ID {0} not found in this data")]
    TrainId(u64),
    /// Two files hold the same train for the same source.
    #[error("{count} sources have conflicting data (same train ID in different files): {sources}")]
    SourceConflict { count: usize, sources: String },
    /// A selection pattern matched nothing.
    #[error("no matches for pattern ({source_glob:?}, {key_glob:?})")]
    NoMatch {
        source_glob: String,
        key_glob: String,
    },
    /// No files to open.
    #[error("no HDF5 files found in {dir} with glob pattern {pattern:?}")]
    NoFiles { dir: PathBuf, pattern: String },
    /// Every file given failed to open.
    #[error("all HDF5 files specified are unusable: {0}")]
    AllUnusable(String),
    /// Invalid argument (selection, buffer size, ...).
    #[error("{0}")]
    Invalid(String),
    /// A data type this code cannot convert.
    #[error("{path}: {object}: unsupported data type {dtype}")]
    UnsupportedType {
        path: PathBuf,
        object: String,
        dtype: String,
    },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
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
    pub(crate) fn h5(path: impl Into<PathBuf>, object: &str, e: impl std::fmt::Display) -> Self {
        Error::Hdf5 {
            path: path.into(),
            object: object.to_string(),
            msg: e.to_string(),
        }
    }
}
