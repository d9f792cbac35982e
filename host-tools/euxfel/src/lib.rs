//! European XFEL HDF5 run data: file access, collections, key data, run map.
//!
//! The structure follows EXtra-data (one object per concern):
//!
//! - [`FileAccess`]: one HDF5 file: format version, train IDs, flags, sources,
//!   per-source index (read from a memory map where the layout allows it), keys.
//! - [`DataCollection`]: a set of files (a run, a file, several paths): union of
//!   train IDs, sources, selection by globs and by trains, splitting.
//! - [`SourceData`] / [`KeyData`]: one source / one key of a collection: shapes,
//!   dtypes, data counts, reads into caller buffers or `ndarray::ArrayD`.
//! - [`runmap`]: the `karabo_data_map.json` cache shared with EXtra-data.
//! - [`display`]: `lsxfel` / `DataCollection::info()` output.
//! - [`npy`]: NumPy `.npy` writer used by `xfel-extract`.

mod collection;
pub mod display;
mod error;
mod file_access;
pub mod fnmatch;
mod h5;
pub mod npy;
pub mod rawh5;
pub mod runmap;

pub use collection::{
    alloc_vec, split_ranges, DataCollection, Element, KeyData, OpenOptions, RunValue, Section,
    SourceData, TrainData, TrainIter, TrainSelection, TrainValue,
};
pub use error::{Error, Result};
pub use file_access::{set_max_open_files, FileAccess, FilenameInfo};
pub use h5::{DType, StrData};
