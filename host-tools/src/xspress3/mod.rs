//! Xspress3 acquisition files: the NeXus layout, its writer (shared by `xsp3-acquire` and
//! `xsp3-receive`) and a reader.

pub mod layout;
pub mod reader;
pub mod writer;

pub use reader::{read_acq_file, AcqFile};
pub use writer::{AcqDescription, AcqFileWriter, DropRecord, OutputConfig, WriteError};
