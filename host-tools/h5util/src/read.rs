//! Hyperslab reads of whole leading-dimension rows in the dataset's native memory type.
//!
//! The memory type of a compound keeps the file's member offsets and size (as h5py's
//! structured dtypes do) with every member in its native byte order; libhdf5's own
//! native compound would re-align the members.

use hdf5::Dataset;
use hdf5_sys::h5::H5free_memory;
use hdf5_sys::h5d::{H5Dget_type, H5Dread};
use hdf5_sys::h5i::hid_t;
use hdf5_sys::h5p::H5P_DEFAULT;
use hdf5_sys::h5t::{
    H5T_class_t, H5T_direction_t, H5Tarray_create2, H5Tclose, H5Tcreate, H5Tequal,
    H5Tget_array_dims2, H5Tget_array_ndims, H5Tget_class, H5Tget_member_name, H5Tget_member_offset,
    H5Tget_member_type, H5Tget_native_type, H5Tget_nmembers, H5Tget_size, H5Tget_super, H5Tinsert,
};

use crate::rows::RowSpaces;

/// Deepest nesting of compound and array types followed (a corrupt file's type is bounded).
const MAX_TYPE_DEPTH: usize = 32;

/// Why a native row read failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReadError {
    #[error("cannot get the dataset's datatype")]
    Datatype,
    #[error("the datatype has no native memory type")]
    NativeType,
    #[error("a compound member's native type does not fit the member's place in the file")]
    MemberLayout,
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
    /// libhdf5's reason follows (e.g. "can't read data (filter returned failure during read)").
    #[error("H5Dread failed{0}")]
    Read(String),
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
            let mtype = memory_type(ftype, 0);
            H5Tclose(ftype);
            let mtype = mtype?;
            let elem_size = H5Tget_size(mtype);
            if elements.checked_mul(elem_size as u64) != Some(out.len() as u64) {
                H5Tclose(mtype);
                return Err(ReadError::BufferSize {
                    elem_size,
                    elements,
                    buf_len: out.len(),
                });
            }
            let Some(spaces) = RowSpaces::select(ds_id, start, &mdims) else {
                H5Tclose(mtype);
                return Err(ReadError::Selection);
            };
            let r = H5Dread(
                ds_id,
                mtype,
                spaces.memory,
                spaces.file,
                H5P_DEFAULT,
                out.as_mut_ptr().cast(),
            );
            // Before the closes below: every library call clears the error stack.
            let failed = (r < 0).then(crate::library_reason);
            drop(spaces);
            H5Tclose(mtype);
            if let Some(reason) = failed {
                return Err(ReadError::Read(reason));
            }
            Ok(())
        }
    })
}

/// Whether the dataset's stored element layout is exactly the memory layout
/// [`read_rows_native`] reads into, so its stored bytes can be used as they are.
pub fn stored_layout_is_native(ds: &Dataset) -> Result<bool, ReadError> {
    let ds_id = ds.id();
    hdf5::sync::sync(|| {
        // SAFETY: `ds_id` is valid for the borrowed dataset; both type ids are closed on
        // every path.
        unsafe {
            let ftype = H5Dget_type(ds_id);
            if ftype < 0 {
                return Err(ReadError::Datatype);
            }
            let mtype = memory_type(ftype, 0);
            let r = mtype.map(|m| {
                let eq = H5Tequal(ftype, m) > 0;
                H5Tclose(m);
                eq
            });
            H5Tclose(ftype);
            r
        }
    })
}

/// The memory type rows of file type `ftype` are read into: libhdf5's native type,
/// except that compounds keep the file's member offsets and size (h5py's layout),
/// recursively through compound members and array elements. The caller closes the
/// returned id.
///
/// # Safety
/// `ftype` is a valid datatype id, and the caller holds the library lock.
unsafe fn memory_type(ftype: hid_t, depth: usize) -> Result<hid_t, ReadError> {
    if depth > MAX_TYPE_DEPTH {
        return Err(ReadError::NativeType);
    }
    match H5Tget_class(ftype) {
        H5T_class_t::H5T_COMPOUND => {
            let size = H5Tget_size(ftype);
            let n = H5Tget_nmembers(ftype);
            if size == 0 || n < 0 {
                return Err(ReadError::Datatype);
            }
            let ctype = H5Tcreate(H5T_class_t::H5T_COMPOUND, size);
            if ctype < 0 {
                return Err(ReadError::NativeType);
            }
            for i in 0..n as u32 {
                let r = insert_member(ctype, ftype, i, depth);
                if let Err(e) = r {
                    H5Tclose(ctype);
                    return Err(e);
                }
            }
            Ok(ctype)
        }
        H5T_class_t::H5T_ARRAY => {
            let ndims = H5Tget_array_ndims(ftype);
            if !(1..=32).contains(&ndims) {
                return Err(ReadError::Datatype);
            }
            let mut dims = vec![0u64; ndims as usize];
            if H5Tget_array_dims2(ftype, dims.as_mut_ptr()) < 0 {
                return Err(ReadError::Datatype);
            }
            let fbase = H5Tget_super(ftype);
            if fbase < 0 {
                return Err(ReadError::Datatype);
            }
            let mbase = memory_type(fbase, depth + 1);
            H5Tclose(fbase);
            let mbase = mbase?;
            let atype = H5Tarray_create2(mbase, ndims as u32, dims.as_ptr());
            H5Tclose(mbase);
            if atype < 0 {
                return Err(ReadError::NativeType);
            }
            Ok(atype)
        }
        _ => {
            let mtype = H5Tget_native_type(ftype, H5T_direction_t::H5T_DIR_ASCEND);
            if mtype < 0 {
                return Err(ReadError::NativeType);
            }
            Ok(mtype)
        }
    }
}

/// Insert member `i` of file compound `ftype` into memory compound `ctype`, at the
/// file's offset, as its memory type (which must keep the member's size).
///
/// # Safety
/// Both ids are valid compound datatypes, `i` < the number of members of `ftype`, and
/// the caller holds the library lock.
unsafe fn insert_member(ctype: hid_t, ftype: hid_t, i: u32, depth: usize) -> Result<(), ReadError> {
    let fmember = H5Tget_member_type(ftype, i);
    if fmember < 0 {
        return Err(ReadError::Datatype);
    }
    let fsize = H5Tget_size(fmember);
    let mmember = memory_type(fmember, depth + 1);
    H5Tclose(fmember);
    let mmember = mmember?;
    if H5Tget_size(mmember) != fsize {
        H5Tclose(mmember);
        return Err(ReadError::MemberLayout);
    }
    let name = H5Tget_member_name(ftype, i);
    if name.is_null() {
        H5Tclose(mmember);
        return Err(ReadError::Datatype);
    }
    let r = H5Tinsert(ctype, name, H5Tget_member_offset(ftype, i), mmember);
    H5free_memory(name.cast());
    H5Tclose(mmember);
    if r < 0 {
        return Err(ReadError::MemberLayout);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk whose compressed bytes are damaged: the error carries libhdf5's reason, as
    /// h5py's message does, not only that H5Dread failed.
    #[test]
    fn a_damaged_chunk_reports_the_library_reason() {
        use std::io::{Seek, SeekFrom, Write};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gz.h5");
        let data = ndarray::Array2::from_shape_fn((64, 256), |(r, c)| ((r * c) % 7) as u16);
        let (addr, size) = {
            let f = hdf5::File::create(&path).unwrap();
            let ds = f
                .new_dataset_builder()
                .chunk((64, 256))
                .deflate(4)
                .with_data(&data)
                .create("d")
                .unwrap();
            let info = ds.chunk_info(0).unwrap();
            (info.addr, info.size)
        };
        let mut raw = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        raw.seek(SeekFrom::Start(addr + size / 2)).unwrap();
        raw.write_all(&[0xff; 32]).unwrap();
        drop(raw);
        let f = hdf5::File::open(&path).unwrap();
        let ds = f.dataset("d").unwrap();
        let mut out = vec![0u8; 64 * 256 * 2];
        match read_rows_native(&ds, 0, 64, &mut out) {
            Err(ReadError::Read(reason)) => {
                let msg = ReadError::Read(reason).to_string();
                assert!(
                    msg.starts_with("H5Dread failed: can't read data ("),
                    "{msg}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

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
