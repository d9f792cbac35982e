//! Direct chunk writes: one chunk, or a run of chunks along the first dimension.

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

/// Writes consecutive whole chunks of `ds` along its first dimension from `bytes`, as
/// [`write_chunk`] does for each: chunk `k` starts at row `first_row + k * chunk_rows` (0 in
/// every other dimension, so chunks must span the other dimensions whole) and is the
/// `chunk_bytes` bytes of `bytes` at `k * chunk_bytes`. One call for a run of small chunks
/// saves the per-call dataspace query and library lock.
pub fn write_chunks(
    ds: &Dataset,
    first_row: u64,
    chunk_rows: u64,
    filter_mask: u32,
    chunk_bytes: usize,
    bytes: &[u8],
) -> hdf5::Result<()> {
    if chunk_bytes == 0 || bytes.len() % chunk_bytes != 0 {
        return Err(hdf5::Error::from(format!(
            "direct chunk writes: {} bytes are not whole chunks of {chunk_bytes} bytes",
            bytes.len()
        )));
    }
    let shape = ds.shape();
    let Some(&rows) = shape.first() else {
        return Err(hdf5::Error::from(
            "direct chunk writes into a scalar dataset",
        ));
    };
    let chunks = (bytes.len() / chunk_bytes) as u64;
    // Every chunk starts inside the extent (libhdf5 1.10 does not check this).
    let last_start = chunks.checked_sub(1).map(|k| {
        k.checked_mul(chunk_rows)
            .and_then(|r| r.checked_add(first_row))
    });
    if let Some(start) = last_start {
        if start.is_none_or(|s| s >= rows as u64) {
            return Err(hdf5::Error::from(format!(
                "direct chunk writes: {chunks} chunks of {chunk_rows} rows from row {first_row} \
                 pass the end of the dataset ({rows} rows)"
            )));
        }
    }
    let mut offset: Vec<hsize_t> = vec![0; shape.len()];
    let id = ds.id();
    hdf5::sync::sync(|| {
        for (k, chunk) in bytes.chunks_exact(chunk_bytes).enumerate() {
            // No overflow: the last chunk's start was computed above.
            let row = first_row + k as u64 * chunk_rows;
            offset[0] = row as hsize_t;
            // SAFETY: `id` is a valid open dataset for the lifetime of the borrowed `ds`;
            // `offset` has exactly one entry per dataset dimension (made from its shape);
            // `chunk` is a live slice of `chunk.len()` bytes that HDF5 only reads during the
            // call. libhdf5 checks that the offset is a chunk boundary.
            let rc = unsafe {
                hdf5_sys::h5d::H5Dwrite_chunk(
                    id,
                    hdf5_sys::h5p::H5P_DEFAULT,
                    filter_mask,
                    offset.as_ptr(),
                    chunk.len(),
                    chunk.as_ptr().cast(),
                )
            };
            if rc < 0 {
                return Err(hdf5::Error::from(format!(
                    "H5Dwrite_chunk at row {row} failed"
                )));
            }
        }
        Ok(())
    })
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

    #[test]
    fn runs_of_direct_chunks_read_back_through_the_library() {
        let dir = tempfile::tempdir().unwrap();
        let f = hdf5::File::create(dir.path().join("c.h5")).unwrap();
        let ds = f
            .new_dataset::<u16>()
            .chunk((2, 3))
            .shape((8, 3))
            .create("d")
            .unwrap();
        let words: Vec<u16> = (0..12).collect();
        // Two chunks of two rows, at rows 2 and 4.
        write_chunks(&ds, 2, 2, 0, 12, bytemuck::cast_slice(&words)).unwrap();
        let back: ndarray::Array2<u16> = ds.read_2d().unwrap();
        assert_eq!(back.row(1).to_vec(), vec![0, 0, 0]);
        assert_eq!(back.row(2).to_vec(), vec![0, 1, 2]);
        assert_eq!(back.row(5).to_vec(), vec![9, 10, 11]);
        assert_eq!(back.row(6).to_vec(), vec![0, 0, 0]);
        // Not whole chunks, or past the extent: refused.
        assert!(write_chunks(&ds, 0, 2, 0, 12, &[0u8; 13]).is_err());
        assert!(write_chunks(&ds, 0, 2, 0, 0, &[]).is_err());
        assert!(write_chunks(&ds, 6, 2, 0, 12, bytemuck::cast_slice(&words)).is_err());
    }
}
