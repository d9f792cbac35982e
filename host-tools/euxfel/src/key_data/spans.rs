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

#[cfg(test)]
mod tests {
    use crate::{DataCollection, OpenOptions, TrainSelection};
    use fixtures::euxfel::{make_run, RunSpec};

    #[test]
    fn spans_cover_the_selection_and_read_the_same_rows() {
        let td = tempfile::tempdir().expect("tempdir");
        let spec = RunSpec {
            trains_per_sequence: 4,
            sequences: 2,
            modules: 1,
            frames: 3,
            frame_height: 2,
            frame_width: 2,
            ..RunSpec::default()
        };
        make_run(td.path(), &spec).expect("run");
        let opts = OpenOptions {
            use_cache: false,
            ..OpenOptions::default()
        };
        let dc = DataCollection::open_run(td.path(), &opts).expect("open");
        let kd = dc
            .key("FXE_DET_LPD1M-1/DET/0CH0:xtdf", "image.data")
            .and_then(|k| k.select_trains(&TrainSelection::IndexRange(Some(2), Some(7), None)))
            .expect("key");
        let spans = kd.data_spans();
        // Trains 10002..10006 cross the sequence boundary: one span per file.
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].train_ids, vec![10002, 10003]);
        assert_eq!((spans[0].first, spans[1].first), (6, 0));
        assert_eq!(spans[1].counts, vec![3, 3, 3]);
        assert_eq!(spans[0].dataset_shape().expect("shape"), vec![12, 1, 2, 2]);
        let eb = kd.entry_bytes().expect("entry bytes");
        let mut ours = Vec::new();
        for s in &spans {
            let n: u64 = s.counts.iter().sum();
            let mut buf = vec![0u8; n as usize * eb];
            s.read_rows(s.first, n, eb, &mut buf).expect("read");
            ours.extend(buf);
        }
        assert_eq!(ours, kd.read_bytes().expect("read_bytes"));
        // Rows 11..13 of a 12-row dataset.
        let mut past_end = vec![0u8; 2 * eb];
        assert!(spans[0].read_rows(11, 2, eb, &mut past_end).is_err());
    }
}
