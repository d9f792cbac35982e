//! Hyperslab reads of whole leading-dimension rows in the dataset's native memory type.

use hdf5::Dataset;
use hdf5_sys::h5d::{H5Dget_space, H5Dget_type, H5Dread};
use hdf5_sys::h5p::H5P_DEFAULT;
use hdf5_sys::h5s::{H5S_seloper_t, H5Sclose, H5Screate_simple, H5Sselect_hyperslab};
use hdf5_sys::h5t::{H5T_direction_t, H5Tclose, H5Tget_native_type, H5Tget_size};

/// Why a native row read failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReadError {
    #[error("cannot get the dataset's datatype")]
    Datatype,
    #[error("the datatype has no native memory type")]
    NativeType,
    #[error("rows {start}..{end} are outside the dataset's {len} rows")]
    OutOfRange { start: u64, end: u64, len: u64 },
    #[error("native element size {elem_size} does not match the buffer ({buf_len} bytes for {elements} elements)")]
    BufferSize {
        elem_size: usize,
        elements: u64,
        buf_len: usize,
    },
    #[error("a scalar dataset has no rows")]
    Scalar,
    #[error("hyperslab selection failed")]
    Selection,
    #[error("H5Dread failed")]
    Read,
}

/// Reads rows `start .. start + count` of `ds` (all of every other dimension) into `out`, in
/// the native memory type of the dataset's type. `out` must hold exactly `count` rows.
pub fn read_rows_native(
    ds: &Dataset,
    start: u64,
    count: u64,
    out: &mut [u8],
) -> Result<(), ReadError> {
    let shape: Vec<u64> = ds.shape().iter().map(|&d| d as u64).collect();
    let Some(&len) = shape.first() else {
        return Err(ReadError::Scalar);
    };
    let end = start.saturating_add(count);
    if end > len {
        return Err(ReadError::OutOfRange { start, end, len });
    }
    let mut mdims = shape.clone();
    mdims[0] = count;
    let elements = mdims
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .unwrap_or(u64::MAX);
    let ds_id = ds.id();
    hdf5::sync::sync(|| {
        // SAFETY: `ds_id` is valid for the borrowed dataset; every id created here is closed
        // on every path; the selection lies inside the extent (checked above); `out` has
        // exactly `elements * size(native type)` bytes (checked before H5Dread), which is what
        // H5Dread writes for the memory space `mdims`.
        unsafe {
            let ftype = H5Dget_type(ds_id);
            if ftype < 0 {
                return Err(ReadError::Datatype);
            }
            let mtype = H5Tget_native_type(ftype, H5T_direction_t::H5T_DIR_ASCEND);
            H5Tclose(ftype);
            if mtype < 0 {
                return Err(ReadError::NativeType);
            }
            let elem_size = H5Tget_size(mtype);
            if elements.checked_mul(elem_size as u64) != Some(out.len() as u64) {
                H5Tclose(mtype);
                return Err(ReadError::BufferSize {
                    elem_size,
                    elements,
                    buf_len: out.len(),
                });
            }
            let fspace = H5Dget_space(ds_id);
            let mut fstart = vec![0u64; shape.len()];
            fstart[0] = start;
            let r = H5Sselect_hyperslab(
                fspace,
                H5S_seloper_t::H5S_SELECT_SET,
                fstart.as_ptr(),
                std::ptr::null(),
                mdims.as_ptr(),
                std::ptr::null(),
            );
            if r < 0 {
                H5Sclose(fspace);
                H5Tclose(mtype);
                return Err(ReadError::Selection);
            }
            let mspace = H5Screate_simple(mdims.len() as i32, mdims.as_ptr(), std::ptr::null());
            let r = H5Dread(
                ds_id,
                mtype,
                mspace,
                fspace,
                H5P_DEFAULT,
                out.as_mut_ptr().cast(),
            );
            H5Sclose(mspace);
            H5Sclose(fspace);
            H5Tclose(mtype);
            if r < 0 {
                return Err(ReadError::Read);
            }
            Ok(())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_in_native_order_and_bad_requests_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = hdf5::File::create(dir.path().join("r.h5")).unwrap();
        let data = ndarray::Array2::from_shape_fn((5, 3), |(r, c)| (r * 10 + c) as i16);
        let ds = f
            .new_dataset_builder()
            .with_data(&data)
            .create("d")
            .unwrap();
        let mut out = vec![0u8; 2 * 3 * 2];
        read_rows_native(&ds, 2, 2, &mut out).unwrap();
        let vals: Vec<i16> = out
            .chunks(2)
            .map(|b| i16::from_ne_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(vals, vec![20, 21, 22, 30, 31, 32]);
        assert!(matches!(
            read_rows_native(&ds, 4, 2, &mut out),
            Err(ReadError::OutOfRange {
                start: 4,
                end: 6,
                len: 5
            })
        ));
        let mut short = vec![0u8; 5];
        assert!(matches!(
            read_rows_native(&ds, 0, 2, &mut short),
            Err(ReadError::BufferSize { .. })
        ));
    }
}
