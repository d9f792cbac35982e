//! Moving stored data between files without going through typed Rust values: whole stored
//! chunks as bytes (`H5Dread_chunk`), rows in the dataset's native memory type (any type,
//! variable-length strings included), and whole objects (`H5Ocopy`).

use hdf5::Dataset;
use hdf5_sys::h5::{haddr_t, hsize_t};
use hdf5_sys::h5d::{
    H5Dget_chunk_info_by_coord, H5Dget_space, H5Dget_type, H5Dread, H5Dread_chunk, H5Dvlen_reclaim,
    H5Dwrite,
};
use hdf5_sys::h5i::hid_t;
use hdf5_sys::h5o::H5Ocopy;
use hdf5_sys::h5p::{H5Pclose, H5Pcreate, H5Pset_create_intermediate_group, H5P_DEFAULT};
use hdf5_sys::h5s::{H5S_seloper_t, H5Sclose, H5Screate_simple, H5Sselect_hyperslab};
use hdf5_sys::h5t::{
    H5T_class_t, H5T_direction_t, H5Tclose, H5Tdetect_class, H5Tget_native_type, H5Tget_size,
};

fn err(msg: String) -> hdf5::Error {
    hdf5::Error::from(msg)
}

/// `offset` as libhdf5 takes it, checked to have one coordinate per dimension of `ds`.
fn chunk_coords(ds: &Dataset, offset: &[u64], what: &str) -> hdf5::Result<Vec<hsize_t>> {
    if offset.len() != ds.ndim() {
        return Err(err(format!(
            "{what}: {} offsets for a {}-dimensional dataset",
            offset.len(),
            ds.ndim()
        )));
    }
    Ok(offset.iter().map(|&o| o as hsize_t).collect())
}

/// The stored size of the chunk of dataset `id` at `offset`, `None` if it was never written.
/// Called with the library lock held.
fn stored_chunk_size(id: hid_t, offset: &[hsize_t]) -> hdf5::Result<Option<hsize_t>> {
    let (mut mask, mut addr, mut size): (u32, haddr_t, hsize_t) = (0, 0, 0);
    // SAFETY: `id` is a valid open dataset (the callers' borrowed `Dataset`); `offset` has
    // one entry per dimension (`chunk_coords`); the three out-pointers point at live locals.
    let rc =
        unsafe { H5Dget_chunk_info_by_coord(id, offset.as_ptr(), &mut mask, &mut addr, &mut size) };
    if rc < 0 {
        return Err(err(format!(
            "H5Dget_chunk_info_by_coord at row {} failed",
            offset[0]
        )));
    }
    Ok((addr != hdf5_sys::h5::HADDR_UNDEF).then_some(size))
}

/// Reads the stored bytes of the chunk of `ds` that starts at `offset` (one coordinate per
/// dimension, on a chunk boundary) into `buf`, as the filters left them (no decompression).
/// Returns the chunk's filter mask, or `None` if the chunk was never written.
pub fn read_chunk(ds: &Dataset, offset: &[u64], buf: &mut Vec<u8>) -> hdf5::Result<Option<u32>> {
    let offset = chunk_coords(ds, offset, "direct chunk read")?;
    let id = ds.id();
    hdf5::sync::sync(|| {
        let Some(size) = stored_chunk_size(id, &offset)? else {
            return Ok(None);
        };
        let len = usize::try_from(size).map_err(|_| err(format!("chunk of {size} bytes")))?;
        buf.clear();
        buf.try_reserve_exact(len)
            .map_err(|_| err(format!("cannot allocate a chunk of {len} bytes")))?;
        buf.resize(len, 0);
        let mut filters: u32 = 0;
        // SAFETY: `id` and `offset` as in `stored_chunk_size`; `buf` holds exactly the
        // chunk's stored size as libhdf5 reported it for this offset just before, which is
        // what H5Dread_chunk writes (the dataset is not modified in between: we hold the
        // library lock).
        let rc = unsafe {
            H5Dread_chunk(
                id,
                H5P_DEFAULT,
                offset.as_ptr(),
                &mut filters,
                buf.as_mut_ptr().cast(),
            )
        };
        if rc < 0 {
            return Err(err(format!("H5Dread_chunk at row {} failed", offset[0])));
        }
        Ok(Some(filters))
    })
}

/// Whether the chunk of `ds` that starts at `offset` (one coordinate per dimension, on a chunk
/// boundary) has storage allocated: one index lookup, where counting a dataset's chunks walks
/// all of them.
pub fn chunk_allocated(ds: &Dataset, offset: &[u64]) -> hdf5::Result<bool> {
    let offset = chunk_coords(ds, offset, "chunk lookup")?;
    let id = ds.id();
    hdf5::sync::sync(|| Ok(stored_chunk_size(id, &offset)?.is_some()))
}

/// Copies rows `src_start .. src_start + count` of `src` (all of every other dimension) to
/// rows `dst_start ..` of `dst`, through a buffer in the native memory type of `src`'s type.
/// Works for every type libhdf5 can convert, variable-length strings included (their memory
/// is released after the write). `buf` is reused between calls.
pub fn copy_rows(
    src: &Dataset,
    src_start: u64,
    dst: &Dataset,
    dst_start: u64,
    count: u64,
    buf: &mut Vec<u8>,
) -> hdf5::Result<()> {
    let sshape: Vec<u64> = src.shape().iter().map(|&d| d as u64).collect();
    let dshape: Vec<u64> = dst.shape().iter().map(|&d| d as u64).collect();
    if sshape.is_empty() || sshape.len() != dshape.len() || sshape[1..] != dshape[1..] {
        return Err(err(format!(
            "row copy between shapes {sshape:?} and {dshape:?}"
        )));
    }
    if src_start.checked_add(count).is_none_or(|e| e > sshape[0])
        || dst_start.checked_add(count).is_none_or(|e| e > dshape[0])
    {
        return Err(err(format!(
            "rows {src_start}+{count} -> {dst_start}+{count} outside {} / {} rows",
            sshape[0], dshape[0]
        )));
    }
    if count == 0 {
        return Ok(());
    }
    let mut mdims = sshape.clone();
    mdims[0] = count;
    let elements = mdims
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .ok_or_else(|| err(format!("{mdims:?} elements overflow")))?;
    let (sid, did) = (src.id(), dst.id());
    hdf5::sync::sync(|| {
        // SAFETY: `sid`/`did` are valid open datasets for the borrowed `src`/`dst`; every id
        // created here is closed on every path; both hyperslabs lie inside their extents
        // (checked above) and have the memory space's shape; `buf` is resized to exactly
        // `elements * size(native type)` bytes before H5Dread fills it and H5Dwrite reads
        // it; variable-length memory that H5Dread allocated is released by H5Dvlen_reclaim
        // with the same type and space before `buf` is reused.
        unsafe {
            let ftype = H5Dget_type(sid);
            if ftype < 0 {
                return Err(err("cannot get the source datatype".into()));
            }
            let mtype = H5Tget_native_type(ftype, H5T_direction_t::H5T_DIR_ASCEND);
            H5Tclose(ftype);
            if mtype < 0 {
                return Err(err("the source datatype has no native memory type".into()));
            }
            let close_t = |r: hdf5::Result<()>| {
                H5Tclose(mtype);
                r
            };
            let Some(bytes) = elements.checked_mul(H5Tget_size(mtype) as u64) else {
                return close_t(Err(err("row copy size overflows".into())));
            };
            let Ok(bytes) = usize::try_from(bytes) else {
                return close_t(Err(err(format!("row copy of {bytes} bytes"))));
            };
            buf.clear();
            if buf.try_reserve_exact(bytes).is_err() {
                return close_t(Err(err(format!("cannot allocate {bytes} bytes"))));
            }
            buf.resize(bytes, 0);
            let mspace = H5Screate_simple(mdims.len() as i32, mdims.as_ptr(), std::ptr::null());
            let sspace = select_rows(sid, src_start, &mdims);
            let dspace = select_rows(did, dst_start, &mdims);
            let mut result = Ok(());
            if mspace < 0 || sspace < 0 || dspace < 0 {
                result = Err(err("dataspace selection failed".into()));
            } else if H5Dread(
                sid,
                mtype,
                mspace,
                sspace,
                H5P_DEFAULT,
                buf.as_mut_ptr().cast(),
            ) < 0
            {
                result = Err(err(format!("H5Dread of rows {src_start}+{count} failed")));
            } else {
                if H5Dwrite(did, mtype, mspace, dspace, H5P_DEFAULT, buf.as_ptr().cast()) < 0 {
                    result = Err(err(format!("H5Dwrite of rows {dst_start}+{count} failed")));
                }
                if H5Tdetect_class(mtype, H5T_class_t::H5T_VLEN) > 0 {
                    H5Dvlen_reclaim(mtype, mspace, H5P_DEFAULT, buf.as_mut_ptr().cast());
                }
            }
            for s in [mspace, sspace, dspace] {
                if s >= 0 {
                    H5Sclose(s);
                }
            }
            close_t(result)
        }
    })
}

/// The file space of dataset `id` with rows `start .. start + dims[0]` selected, or -1.
///
/// # Safety
/// `id` must be a valid open dataset whose extent contains the selection; the caller closes
/// the returned space.
unsafe fn select_rows(id: hid_t, start: u64, dims: &[u64]) -> hid_t {
    let space = H5Dget_space(id);
    if space < 0 {
        return -1;
    }
    let mut fstart = vec![0u64; dims.len()];
    fstart[0] = start;
    let r = H5Sselect_hyperslab(
        space,
        H5S_seloper_t::H5S_SELECT_SET,
        fstart.as_ptr(),
        std::ptr::null(),
        dims.as_ptr(),
        std::ptr::null(),
    );
    if r < 0 {
        H5Sclose(space);
        return -1;
    }
    space
}

/// Copies the object (group with everything below it, or dataset with its attributes) at
/// `src_path` in `src` to `dst_path` in `dst`, creating missing parent groups.
pub fn copy_object(
    src: &hdf5::Location,
    src_path: &str,
    dst: &hdf5::Location,
    dst_path: &str,
) -> hdf5::Result<()> {
    let cs = std::ffi::CString::new(src_path).map_err(|_| err(format!("{src_path:?}: NUL")))?;
    let cd = std::ffi::CString::new(dst_path).map_err(|_| err(format!("{dst_path:?}: NUL")))?;
    let (sid, did) = (src.id(), dst.id());
    hdf5::sync::sync(|| {
        // SAFETY: `sid`/`did` are valid open locations for the borrowed `src`/`dst`; both
        // names are NUL-terminated strings alive through the call; the link-creation property
        // list created here is closed on every path.
        unsafe {
            let lcpl = H5Pcreate(*hdf5_sys::h5p::H5P_CLS_LINK_CREATE);
            if lcpl < 0 {
                return Err(err("cannot create a link-creation property list".into()));
            }
            let mut rc = H5Pset_create_intermediate_group(lcpl, 1);
            if rc >= 0 {
                rc = H5Ocopy(sid, cs.as_ptr(), did, cd.as_ptr(), H5P_DEFAULT, lcpl);
            }
            H5Pclose(lcpl);
            if rc < 0 {
                return Err(err(format!("H5Ocopy of {src_path} failed")));
            }
            Ok(())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdf5::types::VarLenAscii;

    #[test]
    fn stored_chunks_read_back_as_written_and_missing_chunks_are_none() {
        let dir = tempfile::tempdir().unwrap();
        let f = hdf5::File::create(dir.path().join("c.h5")).unwrap();
        let ds = f
            .new_dataset::<u16>()
            .chunk((2, 3))
            .deflate(4)
            .shape((6, 3))
            .create("d")
            .unwrap();
        let data = ndarray::Array2::from_shape_fn((2, 3), |(r, c)| (r * 3 + c) as u16);
        ds.write_slice(&data, (0..2, ..)).unwrap();
        let mut buf = Vec::new();
        assert_eq!(read_chunk(&ds, &[0, 0], &mut buf).unwrap(), Some(0));
        // Compressed bytes: writing them raw into a dataset with the same filters restores
        // the values.
        let out = f
            .new_dataset::<u16>()
            .chunk((2, 3))
            .deflate(4)
            .shape((6, 3))
            .create("o")
            .unwrap();
        crate::write_chunk(&out, &[2, 0], 0, &buf).unwrap();
        let back: ndarray::Array2<u16> = out.read_2d().unwrap();
        assert_eq!(back.row(2).to_vec(), vec![0, 1, 2]);
        assert_eq!(back.row(3).to_vec(), vec![3, 4, 5]);
        assert_eq!(read_chunk(&ds, &[4, 0], &mut buf).unwrap(), None);
        assert!(read_chunk(&ds, &[0], &mut buf).is_err());
        assert!(chunk_allocated(&ds, &[0, 0]).unwrap());
        assert!(!chunk_allocated(&ds, &[4, 0]).unwrap());
        assert!(chunk_allocated(&ds, &[0]).is_err());
    }

    #[test]
    fn rows_copy_across_files_including_variable_length_strings() {
        let dir = tempfile::tempdir().unwrap();
        let a = hdf5::File::create(dir.path().join("a.h5")).unwrap();
        let b = hdf5::File::create(dir.path().join("b.h5")).unwrap();
        let words: Vec<VarLenAscii> = ["ON", "OFF", "MOVING", "ON"]
            .iter()
            .map(|s| VarLenAscii::from_ascii(s).unwrap())
            .collect();
        let s = a
            .new_dataset_builder()
            .with_data(&words)
            .create("s")
            .unwrap();
        let d = b.new_dataset::<VarLenAscii>().shape(3).create("s").unwrap();
        let mut buf = Vec::new();
        copy_rows(&s, 1, &d, 0, 3, &mut buf).unwrap();
        let back: Vec<String> = d
            .read_raw::<VarLenAscii>()
            .unwrap()
            .iter()
            .map(|v| v.as_str().to_string())
            .collect();
        assert_eq!(back, vec!["OFF", "MOVING", "ON"]);
        let n = ndarray::Array2::from_shape_fn((4, 2), |(r, c)| (r * 2 + c) as f64);
        let src = a.new_dataset_builder().with_data(&n).create("n").unwrap();
        let dst = b.new_dataset::<f64>().shape((5, 2)).create("n").unwrap();
        copy_rows(&src, 2, &dst, 3, 2, &mut buf).unwrap();
        let back: ndarray::Array2<f64> = dst.read_2d().unwrap();
        assert_eq!(back.row(3).to_vec(), vec![4.0, 5.0]);
        assert_eq!(back.row(4).to_vec(), vec![6.0, 7.0]);
        // Outside either extent: refused before libhdf5 sees it.
        assert!(copy_rows(&src, 3, &dst, 0, 2, &mut buf).is_err());
        assert!(copy_rows(&src, 0, &dst, 4, 2, &mut buf).is_err());
    }

    #[test]
    fn objects_copy_with_their_parents_created() {
        let dir = tempfile::tempdir().unwrap();
        let a = hdf5::File::create(dir.path().join("a.h5")).unwrap();
        let b = hdf5::File::create(dir.path().join("b.h5")).unwrap();
        a.create_group("RUN/SRC/x")
            .unwrap()
            .new_dataset_builder()
            .with_data(&[7u32])
            .create("value")
            .unwrap();
        copy_object(&a, "RUN/SRC", &b, "RUN/SRC").unwrap();
        let v: Vec<u32> = b.dataset("RUN/SRC/x/value").unwrap().read_raw().unwrap();
        assert_eq!(v, vec![7]);
        assert!(copy_object(&a, "RUN/missing", &b, "RUN/missing").is_err());
    }
}
