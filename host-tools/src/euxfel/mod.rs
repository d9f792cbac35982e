//! European XFEL HDF5 run data: file access, collections, key data, run map.
