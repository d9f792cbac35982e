//! Direct chunk writes.

use hdf5::Dataset;
use hdf5_sys::h5::hsize_t;

/// Writes one whole chunk of `ds` whose first element is at `offset` (one coordinate per
/// dimension, on a chunk boundary, inside the current extent) from `bytes`, bypassing the
/// filter pipeline and the chunk cache.
///
/// `bytes` must already be what the filters would have produced: the raw chunk for a dataset
/// without filters, the chunk followed by its Fletcher-32 checksum for a `fletcher32` dataset.
/// `filter_mask` 0 says every filter was applied.
pub fn write_chunk(
    ds: &Dataset,
    offset: &[u64],
    filter_mask: u32,
    bytes: &[u8],
) -> hdf5::Result<()> {
    let ndim = ds.ndim();
    if offset.len() != ndim {
        return Err(hdf5::Error::from(format!(
            "direct chunk write: {} offsets for a {ndim}-dimensional dataset",
            offset.len()
        )));
    }
    let offset: Vec<hsize_t> = offset.iter().map(|&o| o as hsize_t).collect();
    let id = ds.id();
    let rc = hdf5::sync::sync(|| {
        // SAFETY: `id` is a valid open dataset for the lifetime of the borrowed `ds`; `offset`
        // has exactly one entry per dataset dimension (checked above); `bytes` is a live
        // slice of `bytes.len()` bytes that HDF5 only reads during the call. libhdf5 checks
        // that the offset is a chunk boundary inside the extent and fails otherwise.
        unsafe {
            hdf5_sys::h5d::H5Dwrite_chunk(
                id,
                hdf5_sys::h5p::H5P_DEFAULT,
                filter_mask,
                offset.as_ptr(),
                bytes.len(),
                bytes.as_ptr().cast(),
            )
        }
    });
    if rc < 0 {
        return Err(hdf5::Error::from(format!(
            "H5Dwrite_chunk at row {} failed",
            offset.first().copied().unwrap_or(0)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_direct_chunk_reads_back_through_the_library() {
        let dir = tempfile::tempdir().unwrap();
        let f = hdf5::File::create(dir.path().join("c.h5")).unwrap();
        let ds = f
            .new_dataset::<u32>()
            .chunk((4, 2))
            .shape((8, 2))
            .create("d")
            .unwrap();
        let words: Vec<u32> = (0..8).collect();
        write_chunk(&ds, &[4, 0], 0, bytemuck::cast_slice(&words)).unwrap();
        let back: ndarray::Array2<u32> = ds.read_2d().unwrap();
        assert_eq!(back.row(4).to_vec(), vec![0, 1]);
        assert_eq!(back.row(7).to_vec(), vec![6, 7]);
        assert_eq!(back.row(0).to_vec(), vec![0, 0]);
        // Wrong dimensionality is refused before libhdf5 sees it.
        assert!(write_chunk(&ds, &[0], 0, bytemuck::cast_slice(&words)).is_err());
        // An offset off a chunk boundary is refused by libhdf5.
        assert!(write_chunk(&ds, &[1, 0], 0, bytemuck::cast_slice(&words)).is_err());
    }
}
