//! Hyperslab writes of whole leading-dimension rows from bytes in the dataset's native memory
//! type (types the `hdf5` crate only knows at compile time, such as fixed-length strings of a
//! size read from a config).

use hdf5::Dataset;
use hdf5_sys::h5d::{H5Dget_type, H5Dwrite};
use hdf5_sys::h5p::H5P_DEFAULT;
use hdf5_sys::h5t::{
    H5T_class_t, H5T_direction_t, H5Tclose, H5Tdetect_class, H5Tget_native_type, H5Tget_size,
    H5Tis_variable_str,
};

use crate::rows::RowSpaces;

fn err(msg: String) -> hdf5::Error {
    hdf5::Error::from(msg)
}

/// Writes rows `start .. start + count` of `ds` (all of every other dimension) from `bytes`,
/// which hold exactly those rows in the native memory type of the dataset's type. Types whose
/// memory form holds pointers (variable-length data, references) are refused: their bytes
/// cannot come from a plain buffer.
pub fn write_rows_native(ds: &Dataset, start: u64, count: u64, bytes: &[u8]) -> hdf5::Result<()> {
    let shape: Vec<u64> = ds.shape().iter().map(|&d| d as u64).collect();
    let Some(&len) = shape.first() else {
        return Err(err("a scalar dataset has no rows".into()));
    };
    let end = start.saturating_add(count);
    if end > len {
        return Err(err(format!(
            "rows {start}..{end} are outside the dataset's {len} rows"
        )));
    }
    if count == 0 {
        return Ok(());
    }
    let mut mdims = shape.clone();
    mdims[0] = count;
    let elements = mdims
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .ok_or_else(|| err(format!("{mdims:?} elements overflow")))?;
    let ds_id = ds.id();
    hdf5::sync::sync(|| {
        // SAFETY: `ds_id` is valid for the borrowed dataset; every id created here is closed
        // on every path; the selection lies inside the extent (checked above); the memory type
        // holds no pointers (checked) and `bytes` has exactly `elements * size(memory type)`
        // bytes (checked before H5Dwrite), which is all H5Dwrite reads for the memory space
        // `mdims`.
        unsafe {
            let ftype = H5Dget_type(ds_id);
            if ftype < 0 {
                return Err(err("cannot get the dataset's datatype".into()));
            }
            let mtype = H5Tget_native_type(ftype, H5T_direction_t::H5T_DIR_ASCEND);
            H5Tclose(ftype);
            if mtype < 0 {
                return Err(err("the datatype has no native memory type".into()));
            }
            let pointers = H5Tis_variable_str(mtype) != 0
                || H5Tdetect_class(mtype, H5T_class_t::H5T_VLEN) != 0
                || H5Tdetect_class(mtype, H5T_class_t::H5T_REFERENCE) != 0;
            if pointers {
                H5Tclose(mtype);
                return Err(err(
                    "variable-length or reference data cannot be written from bytes".into(),
                ));
            }
            let elem_size = H5Tget_size(mtype);
            if elements.checked_mul(elem_size as u64) != Some(bytes.len() as u64) {
                H5Tclose(mtype);
                return Err(err(format!(
                    "{} bytes for {elements} elements of {elem_size} bytes",
                    bytes.len()
                )));
            }
            let Some(spaces) = RowSpaces::select(ds_id, start, &mdims) else {
                H5Tclose(mtype);
                return Err(err(format!("cannot select rows {start}..{end}")));
            };
            let r = H5Dwrite(
                ds_id,
                mtype,
                spaces.memory,
                spaces.file,
                H5P_DEFAULT,
                bytes.as_ptr().cast(),
            );
            drop(spaces);
            H5Tclose(mtype);
            if r < 0 {
                return Err(err(format!("H5Dwrite of rows {start}..{end} failed")));
            }
            Ok(())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdf5::types::{FixedAscii, TypeDescriptor, VarLenUnicode};

    #[test]
    fn fixed_strings_are_written_from_bytes_and_pointer_types_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = hdf5::File::create(dir.path().join("w.h5")).unwrap();
        let ds = f
            .new_dataset_builder()
            .empty_as(TypeDescriptor::FixedAscii(4))
            .shape(3)
            .create("s")
            .unwrap();
        write_rows_native(&ds, 1, 2, b"ab\0\0wxyz").unwrap();
        let back: Vec<FixedAscii<4>> = ds.read_raw().unwrap();
        let back: Vec<&str> = back.iter().map(|s| s.as_str()).collect();
        assert_eq!(back, vec!["", "ab", "wxyz"]);
        assert!(
            write_rows_native(&ds, 2, 2, b"abcdefgh").is_err(),
            "past the end"
        );
        assert!(write_rows_native(&ds, 0, 1, b"abc").is_err(), "wrong size");
        let v = f
            .new_dataset::<VarLenUnicode>()
            .shape(1)
            .create("v")
            .unwrap();
        assert!(write_rows_native(&v, 0, 1, &[0u8; 8]).is_err(), "pointers");
    }
}
