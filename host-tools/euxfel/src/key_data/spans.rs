//! The contiguous runs of a key's data, for callers that place rows themselves (multi-module
//! detector stacking, virtual datasets): where each run lives and a read of any rows of it
//! straight into a caller buffer.

use std::sync::Arc;

use super::KeyData;
use crate::error::Result;
use crate::file_access::FileAccess;

/// One contiguous run of a key's data in one file: rows `first ..` of the key's dataset hold
/// `counts[i]` entries for train `train_ids[i]`, one train after the other.
#[derive(Debug, Clone)]
pub struct DataSpan {
    pub file: Arc<FileAccess>,
    /// Dataset path inside the file, `/INSTRUMENT/<source>/<key path>`.
    pub dataset: String,
    pub first: u64,
    pub train_ids: Vec<u64>,
    pub counts: Vec<u64>,
}

impl DataSpan {
    /// Reads `count` rows of the dataset from row `start` (absolute) into `out`, which holds
    /// exactly `count * row_bytes` bytes: straight from the file map where the layout allows,
    /// else through libhdf5.
    pub fn read_rows(
        &self,
        start: u64,
        count: u64,
        row_bytes: usize,
        out: &mut [u8],
    ) -> Result<()> {
        self.file
            .read_rows(&self.dataset, start, count, row_bytes, out)
    }

    /// Shape of the whole dataset in its file.
    pub fn dataset_shape(&self) -> Result<Vec<usize>> {
        Ok(self
            .file
            .dataset_dtype_shape(self.dataset.trim_start_matches('/'))?
            .1)
    }
}

impl KeyData {
    /// The contiguous runs of the selected data, in train order (rows checked against the
    /// dataset's length when the KeyData was made).
    pub fn data_spans(&self) -> Vec<DataSpan> {
        let dataset = self.hdf5_data_path();
        self.chunks
            .iter()
            .map(|c| DataSpan {
                file: c.file.clone(),
                dataset: dataset.clone(),
                first: c.first,
                train_ids: c.train_ids.clone(),
                counts: c.counts.clone(),
            })
            .collect()
    }
}
