//! European XFEL HDF5 run data, compatible with EXtra-data: open runs and files,
//! select sources, keys and trains, read data.
//!
//! The structure follows EXtra-data (one object per concern):
//!
//! - [`FileAccess`]: one HDF5 file: format version, train IDs, flags, sources,
//!   per-source index, keys. Metadata and index are read by one set of rules
//!   (`meta`) over two readers: a pure-Rust walk of the memory-mapped file
//!   (`rawh5`) and libhdf5 (`h5`) where the walk does not apply.
//! - [`DataCollection`]: a set of files (a run, a file, several paths): union of
//!   train IDs, sources, selection by globs and by trains, union, splitting.
//! - [`SourceData`] / [`KeyData`]: one source / one key of a collection: shapes,
//!   dtypes, data counts, reads into caller buffers or `ndarray::ArrayD`.
//! - [`TrainSelection`]: EXtra-data's `by_id` / `by_index` selections.
//! - [`display`]: `lsxfel` / `DataCollection::info()` output.
//! - [`npy`]: NumPy `.npy` writer; [`extract_key`]: one key to `data.npy` and
//!   `train_ids.npy` (`xfel-extract`).
//! - [`catch_interrupt`]: Ctrl-C or SIGTERM stops the long operations between bounded steps.
//!
//! The library never prints: conditions EXtra-data warns about come back as
//! [`Warning`]s ([`DataCollection::warnings`], [`KeyData::warnings`],
//! [`display::info`]), failures as [`Error`]s.

pub mod cli;
mod data_collection;
pub mod display;
mod dtype;
mod error;
mod extract;
mod file_access;
mod file_map;
mod filename;
mod fnmatch;
mod h5;
mod interrupt;
mod key_data;
pub mod locality;
mod meta;
mod names;
pub mod npy;
mod open;
mod open_files;
pub mod overview;
mod owned_trains;
mod rawh5;
mod read_plan;
mod run_lookup;
mod runmap;
mod select_exact;
mod selection;
mod source_data;
mod trains;
pub mod validation;
mod warning;

pub use data_collection::{DataCollection, DetectorInfo};
pub use dtype::DType;
pub use error::{Error, Result};
pub use extract::{extract_key, Extracted};
pub use file_access::{FileAccess, IndexPair};
pub use filename::FilenameInfo;
pub use interrupt::{
    catch_interrupt, interrupted, stop_signal, StopSignal, EXIT_INTERRUPTED, EXIT_TERMINATED,
};
pub use key_data::spans::DataSpan;
pub use key_data::{Element, KeyData};
pub use open::OpenOptions;
pub use open_files::set_max_open_files;
pub use owned_trains::OwnedTrains;
pub use run_lookup::{
    data_root, find_proposal, open_run_by_number, run_directories, DataOrigin, MissingOrigin,
    RunDirectories, RunOrigin, DATA_ROOT_ENV, DEFAULT_DATA_ROOT,
};
pub use selection::{split_ranges, TrainSelection};
pub use source_data::{RunValue, Section, SourceData};
pub use trains::{TrainData, TrainIter, TrainValue};
pub use warning::Warning;

// The Rust examples in docs/euxfel.md compile: rustdoc runs them as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/euxfel.md")]
struct DocsEuxfel;
