//! Virtual dataset mappings with the hyperslabs exactly as given. The `hdf5` crate turns a
//! hyperslab that covers a whole dataspace into an "all" selection, which stores no source
//! extent; h5py (and so EXtra-data's virtual CXI files) stores the hyperslab, and readers
//! that inspect the mappings see the difference.

use std::ffi::CString;

use hdf5::plist::DatasetCreate;
use hdf5_sys::h5p::H5Pset_virtual;
use hdf5_sys::h5s::{H5S_seloper_t, H5Sclose, H5Screate_simple, H5Sselect_hyperslab};

/// One virtual mapping: a block of a source dataset onto a block of the virtual dataset.
/// Blocks are `(start, length)` per dimension; both must hold the same number of elements.
#[derive(Debug, Clone, Copy)]
pub struct VirtualMapping<'a> {
    pub src_file: &'a str,
    pub src_dataset: &'a str,
    pub src_shape: &'a [u64],
    pub src_block: &'a [(u64, u64)],
    pub vds_block: &'a [(u64, u64)],
}

/// Why a mapping was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VdsError {
    #[error("a block has {block} dimensions, its dataspace {space}")]
    Rank { block: usize, space: usize },
    #[error("block {start}+{len} is outside dimension {dim} of length {extent}")]
    OutOfRange {
        dim: usize,
        start: u64,
        len: u64,
        extent: u64,
    },
    #[error("source block has {src} elements, virtual block {vds}")]
    Elements { src: u64, vds: u64 },
    #[error("file or dataset name contains a NUL byte")]
    Name,
    #[error("cannot create a dataspace")]
    Space,
    #[error("hyperslab selection failed")]
    Selection,
    #[error("H5Pset_virtual failed")]
    SetVirtual,
}

fn check(shape: &[u64], block: &[(u64, u64)]) -> Result<u64, VdsError> {
    if shape.len() != block.len() {
        return Err(VdsError::Rank {
            block: block.len(),
            space: shape.len(),
        });
    }
    let mut n = 1u64;
    for (dim, (&extent, &(start, len))) in shape.iter().zip(block).enumerate() {
        if start.checked_add(len).is_none_or(|e| e > extent) {
            return Err(VdsError::OutOfRange {
                dim,
                start,
                len,
                extent,
            });
        }
        n = n.saturating_mul(len);
    }
    Ok(n)
}

/// Adds one mapping to `dcpl` (which then describes a virtual dataset of shape `vds_shape`).
pub fn add_virtual_mapping(
    dcpl: &DatasetCreate,
    vds_shape: &[u64],
    m: &VirtualMapping<'_>,
) -> Result<(), VdsError> {
    let src = check(m.src_shape, m.src_block)?;
    let vds = check(vds_shape, m.vds_block)?;
    if src != vds {
        return Err(VdsError::Elements { src, vds });
    }
    let file = CString::new(m.src_file).map_err(|_| VdsError::Name)?;
    let dataset = CString::new(m.src_dataset).map_err(|_| VdsError::Name)?;
    let dcpl_id = dcpl.id();
    hdf5::sync::sync(|| {
        // SAFETY: `dcpl_id` is a valid dataset-creation property list for the borrowed
        // `dcpl`; every dataspace created here is closed on every path; the shape and block
        // arrays have the rank passed with them (checked above) and outlive the calls; the
        // name strings are NUL-terminated and outlive H5Pset_virtual, which copies them.
        unsafe {
            let select = |shape: &[u64], block: &[(u64, u64)]| -> Result<i64, VdsError> {
                let space = H5Screate_simple(shape.len() as i32, shape.as_ptr(), std::ptr::null());
                if space < 0 {
                    return Err(VdsError::Space);
                }
                let start: Vec<u64> = block.iter().map(|b| b.0).collect();
                let len: Vec<u64> = block.iter().map(|b| b.1).collect();
                let ones = vec![1u64; block.len()];
                let r = H5Sselect_hyperslab(
                    space,
                    H5S_seloper_t::H5S_SELECT_SET,
                    start.as_ptr(),
                    ones.as_ptr(),
                    ones.as_ptr(),
                    len.as_ptr(),
                );
                if r < 0 {
                    H5Sclose(space);
                    return Err(VdsError::Selection);
                }
                Ok(space)
            };
            let vspace = select(vds_shape, m.vds_block)?;
            let sspace = match select(m.src_shape, m.src_block) {
                Ok(s) => s,
                Err(e) => {
                    H5Sclose(vspace);
                    return Err(e);
                }
            };
            let r = H5Pset_virtual(dcpl_id, vspace, file.as_ptr(), dataset.as_ptr(), sspace);
            H5Sclose(sspace);
            H5Sclose(vspace);
            if r < 0 {
                return Err(VdsError::SetVirtual);
            }
            Ok(())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_keeps_the_hyperslab_and_reads_through() {
        let dir = tempfile::tempdir().unwrap();
        let src_path = dir.path().join("src.h5");
        let src = hdf5::File::create(&src_path).unwrap();
        let data = ndarray::Array2::from_shape_fn((4, 1), |(r, _)| r as u16 + 1);
        src.new_dataset_builder()
            .with_data(&data)
            .create("d")
            .unwrap();
        drop(src);
        let dcpl = DatasetCreate::try_new().unwrap();
        let file = src_path.to_string_lossy().into_owned();
        // The whole source onto column 1 of a (4, 2) virtual dataset.
        add_virtual_mapping(
            &dcpl,
            &[4, 2],
            &VirtualMapping {
                src_file: &file,
                src_dataset: "d",
                src_shape: &[4, 1],
                src_block: &[(0, 4), (0, 1)],
                vds_block: &[(0, 4), (1, 1)],
            },
        )
        .unwrap();
        let out = hdf5::File::create(dir.path().join("v.h5")).unwrap();
        let v = out
            .new_dataset::<u16>()
            .shape([4, 2])
            .fill_value(7u16)
            .set_dcpl(&dcpl)
            .create("v")
            .unwrap();
        let read: Vec<u16> = v.read_raw().unwrap();
        assert_eq!(read, vec![7, 1, 7, 2, 7, 3, 7, 4]);
        assert_eq!(v.dcpl().unwrap().layout(), hdf5::dataset::Layout::Virtual);

        let bad = add_virtual_mapping(
            &dcpl,
            &[4, 2],
            &VirtualMapping {
                src_file: &file,
                src_dataset: "d",
                src_shape: &[4, 1],
                src_block: &[(0, 4), (0, 1)],
                vds_block: &[(1, 4), (1, 1)],
            },
        );
        assert_eq!(
            bad,
            Err(VdsError::OutOfRange {
                dim: 0,
                start: 1,
                len: 4,
                extent: 4
            })
        );
    }
}
