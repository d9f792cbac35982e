//! The dataspaces of a hyperslab of whole leading-dimension rows, shared by the native row
//! reads and writes.

use hdf5_sys::h5d::H5Dget_space;
use hdf5_sys::h5i::hid_t;
use hdf5_sys::h5s::{H5S_seloper_t, H5Sclose, H5Screate_simple, H5Sselect_hyperslab};

/// An open (file space with rows selected, memory space of those rows) pair; both are closed
/// on drop.
pub(crate) struct RowSpaces {
    pub file: hid_t,
    pub memory: hid_t,
}

impl RowSpaces {
    /// Selects rows `start .. start + mdims[0]` (all of every other dimension, `mdims` being
    /// the dataset's shape with the row count first) of the dataset `ds_id`. None if libhdf5
    /// refuses any step; nothing stays open then.
    ///
    /// # Safety
    /// `ds_id` is a valid dataset id and `mdims` has the dataset's rank; the caller holds
    /// libhdf5's lock (`hdf5::sync::sync`).
    pub(crate) unsafe fn select(ds_id: hid_t, start: u64, mdims: &[u64]) -> Option<RowSpaces> {
        let file = H5Dget_space(ds_id);
        if file < 0 {
            return None;
        }
        let mut fstart = vec![0u64; mdims.len()];
        if let Some(first) = fstart.first_mut() {
            *first = start;
        }
        let selected = H5Sselect_hyperslab(
            file,
            H5S_seloper_t::H5S_SELECT_SET,
            fstart.as_ptr(),
            std::ptr::null(),
            mdims.as_ptr(),
            std::ptr::null(),
        );
        let memory = if selected < 0 {
            -1
        } else {
            H5Screate_simple(mdims.len() as i32, mdims.as_ptr(), std::ptr::null())
        };
        if memory < 0 {
            H5Sclose(file);
            return None;
        }
        Some(RowSpaces { file, memory })
    }
}

impl Drop for RowSpaces {
    fn drop(&mut self) {
        // SAFETY: both ids were opened by `select` and are closed only here.
        unsafe {
            H5Sclose(self.memory);
            H5Sclose(self.file);
        }
    }
}
