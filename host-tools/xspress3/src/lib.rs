//! Xspress3 acquisitions as data: the NeXus file layout, its writer (shared by `xsp3-acquire`
//! and `xsp3-receive`) and reader, the frame-stream protocol types, and parsing of the values
//! users type (durations, exposures).

pub mod layout;
pub mod nexus;
pub mod protocol;
pub mod reader;
pub mod roi;
pub mod units;
pub mod writer;

pub use reader::{read_acq_file, AcqFile};
pub use writer::{AcqDescription, AcqFileWriter, DropRecord, OutputConfig, WriteError};
