//! Writing HDF5 attributes that may already exist (replaced, not duplicated).

use hdf5::types::VarLenUnicode;
use hdf5::{H5Type, Location};

/// Writes (or replaces) a variable-length UTF-8 string attribute, as h5py writes `str`.
pub fn set_str(loc: &Location, name: &str, value: &str) -> hdf5::Result<()> {
    let v: VarLenUnicode = value
        .parse()
        .map_err(|e| hdf5::Error::from(format!("attribute {name}: {e}")))?;
    remove(loc, name)?;
    loc.new_attr::<VarLenUnicode>()
        .create(name)?
        .write_scalar(&v)
}

/// Writes (or replaces) a scalar attribute.
pub fn set_scalar<T: H5Type>(loc: &Location, name: &str, value: T) -> hdf5::Result<()> {
    remove(loc, name)?;
    loc.new_attr::<T>().create(name)?.write_scalar(&value)
}

fn remove(loc: &Location, name: &str) -> hdf5::Result<()> {
    if loc.attr_names()?.iter().any(|n| n == name) {
        loc.delete_attr(name)?;
    }
    Ok(())
}
