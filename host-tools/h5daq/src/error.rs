//! Errors of the DAQ writer.

use std::path::PathBuf;

/// Errors of jobs, the daemon, the config and the sources.
#[derive(Debug, thiserror::Error)]
pub enum DaqError {
    /// An invalid argument or setting; the message names it and the offending value.
    #[error("{0}")]
    Invalid(String),
    /// A config file error: the message names the file, the line and the field.
    #[error("{0}")]
    Config(String),
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
    /// The daemon is not in a state for this call.
    #[error("{0}")]
    State(String),
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
}
