//! Errors of the DAQ writer.

use std::path::PathBuf;

use crate::config::ConfigError;
use crate::setting::SettingError;

/// Errors of jobs, the daemon, the config and the files.
#[derive(Debug, thiserror::Error)]
pub enum DaqError {
    /// The config file is unreadable or wrong; the message names the file, line and setting.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A job or daemon setting passed to the builders is invalid.
    #[error(transparent)]
    Setting(#[from] SettingError),
    /// An HDF5 call failed.
    #[error("{context}: {source}")]
    Hdf5 {
        context: String,
        #[source]
        source: hdf5::Error,
    },
    /// A file-system call failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A ZeroMQ call failed.
    #[error("{context}: {source}")]
    Zmq {
        context: String,
        #[source]
        source: zmq::Error,
    },
    /// [`crate::DaqDaemon::start`] was called twice.
    #[error("the daemon was already started")]
    AlreadyStarted,
    /// The call needs a started daemon.
    #[error("the daemon is not running")]
    NotStarted,
    /// A write was not started because the file system lacks the room to finish it.
    #[error(
        "{}: no space left on device (ENOSPC): the write needs up to {needed} bytes, {available} are available",
        directory.display()
    )]
    NoSpace {
        directory: PathBuf,
        needed: u64,
        available: u64,
    },
    /// The final write stored only part of the rows for lack of space.
    #[error("{message}")]
    ShortOfSpace { message: String },
    /// The writer has no open file to append to or close.
    #[error("no DAQ file is open")]
    NoOpenFile,
    /// A thread could not be started.
    #[error("cannot start {what}: {source}")]
    Thread {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// Another daemon answers on the control socket.
    #[error("{}: another h5daq daemon answers on this control socket", path.display())]
    SocketInUse { path: PathBuf },
    /// The control socket's reply is not JSON.
    #[error("{}: the reply is not JSON: {source}", path.display())]
    ControlReply {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// Rows handed to [`crate::hdf::append`] do not match the dataset's entry shape.
    #[error("{file}: /{group}/{dataset}: {elements} elements for {rows} rows of shape {shape:?}")]
    RowShape {
        file: String,
        group: String,
        dataset: String,
        elements: usize,
        rows: usize,
        shape: Vec<usize>,
    },
    /// A 0-byte file: not an HDF5 file, it holds no rows (a start that failed before the file
    /// was written; current versions remove such a file themselves).
    #[error("{}: 0 bytes, not an HDF5 file; it holds no rows", path.display())]
    EmptyFile { path: PathBuf },
    /// A file left by a killed daemon does not open, and its status flags cannot be cleared.
    #[error("{}: does not open ({open_error}) and h5clear -s failed: {reason}", path.display())]
    Unrecoverable {
        path: PathBuf,
        open_error: String,
        reason: String,
    },
}

/// A name that is not one of the accepted ones, or a value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {given:?}: {problem}")]
pub struct ParseError {
    /// What was parsed: `dtype`, `log level`, `rollover`, ...
    pub what: &'static str,
    pub given: String,
    pub problem: String,
}

impl ParseError {
    pub(crate) fn unknown(what: &'static str, given: &str, allowed: &str) -> Self {
        ParseError {
            what,
            given: given.to_string(),
            problem: format!("unknown (use {allowed})"),
        }
    }
}

impl DaqError {
    pub(crate) fn hdf5(context: impl Into<String>) -> impl FnOnce(hdf5::Error) -> DaqError {
        let context = context.into();
        move |source| DaqError::Hdf5 { context, source }
    }
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DaqError {
        let path = path.into();
        move |source| DaqError::Io { path, source }
    }
    pub(crate) fn zmq(context: impl Into<String>) -> impl FnOnce(zmq::Error) -> DaqError {
        let context = context.into();
        move |source| DaqError::Zmq { context, source }
    }
    pub(crate) fn thread(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaqError {
        let what = what.into();
        move |source| DaqError::Thread { what, source }
    }
}
