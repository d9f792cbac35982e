//! Writing EuXFEL run data in the layout EXtra-data writes and reads.
//!
//! - [`write()`]: a real copy of any selection (sources, keys, trains), EXtra-data's
//!   `DataCollection.write`. Chunks are copied as stored bytes where they line up (no
//!   decompression or recompression), the rest through a bounded buffer.
//! - [`write_virtual`]: the same layout with HDF5 virtual datasets into the source files,
//!   EXtra-data's `write_virtual`.
//!
//! Every output is written under a temporary name beside the final one and renamed into
//! place when complete: a failed write leaves nothing under the final name, and an existing
//! file is replaced only with [`WriteOptions::overwrite`]. [`WriteOptions::stop`] (set from a
//! signal handler) ends a write at its next chunk or dataset with [`Error::Interrupted`]; the
//! partial file of a process killed outright is removed by the next write of the same output
//! ([`Summary::stale_partials_removed`]).
//!
//! Small copies (source files up to [`WriteOptions::stage_max_bytes`], 64 MiB by default)
//! are built in memory and written out in one go, instead of one small write per chunk.

mod copy;
mod error;
mod output;
mod overview;
mod plan;
mod record;
mod vds;
mod write;
mod xspress3;

use std::path::Path;

use euxfel::DataCollection;

pub use error::{Error, Result};
pub use overview::{check_overview, write_overview};
pub use record::{
    Appended, Cell, Element, RecordOptions, RecordSummary, RecordedFile, Recorder, SourceData,
};
pub use write::{Mode, Progress, Summary, WriteOptions, DEFAULT_STAGE_MAX_BYTES};
pub use xspress3::{convert_xspress3, Xspress3Options, Xspress3Summary};

/// Writes a copy of the selection `dc` to `path` (EXtra-data's `DataCollection.write`).
pub fn write(
    dc: &DataCollection,
    path: impl AsRef<Path>,
    opts: &WriteOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Summary> {
    write::write_collection(dc, path.as_ref(), Mode::Copy, opts, None, progress)
}

/// Writes the selection `dc` to `path` as virtual datasets into its files (EXtra-data's
/// `DataCollection.write_virtual`).
pub fn write_virtual(
    dc: &DataCollection,
    path: impl AsRef<Path>,
    opts: &WriteOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Summary> {
    write::write_collection(dc, path.as_ref(), Mode::Virtual, opts, None, progress)
}
