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
    /// exactly `count * row_bytes` bytes: straight from the file map where the layout allows
    /// (one copy per chunk, with [`copy_rows`]), else through libhdf5.
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

/// Outputs of at least this many bytes are written with non-temporal stores: they are larger
/// than the caches, so the rows would be evicted before anyone reads them.
const STREAM_MIN_BYTES: usize = 1 << 20;

/// Copies one chunk's rows `src` from the file map into `dst`, its place in an output of
/// `out_len` bytes (equal lengths): a large output with non-temporal stores.
pub(crate) fn copy_rows(dst: &mut [u8], src: &[u8], out_len: usize) {
    if out_len >= STREAM_MIN_BYTES {
        copy_streaming(dst, src);
    } else {
        dst.copy_from_slice(src);
    }
}

/// Copies `src` into `dst` (equal lengths) with non-temporal stores where the CPU has them
/// (SSE2, part of every x86_64), so the destination is written without first being read into
/// the cache; elsewhere an ordinary copy.
fn copy_streaming(dst: &mut [u8], src: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
        let len = dst.len().min(src.len());
        // Bytes before the first 16-byte-aligned destination address, copied plainly.
        let head = dst.as_ptr().align_offset(16).min(len);
        dst[..head].copy_from_slice(&src[..head]);
        let body = (len - head) / 64 * 64;
        let (d, s) = (&mut dst[head..head + body], &src[head..head + body]);
        for (d, s) in d.chunks_exact_mut(64).zip(s.chunks_exact(64)) {
            let (dp, sp) = (d.as_mut_ptr() as *mut __m128i, s.as_ptr() as *const __m128i);
            // SAFETY: `d` and `s` are 64 bytes each (chunks_exact), so the four 16-byte loads
            // and stores stay inside them; `_mm_loadu_si128` has no alignment requirement and
            // `d` starts 16-byte aligned (`head` aligned the first chunk, each chunk is a
            // multiple of 16 long), as `_mm_stream_si128` requires. SSE2 is baseline on x86_64.
            unsafe {
                for k in 0..4 {
                    _mm_stream_si128(dp.add(k), _mm_loadu_si128(sp.add(k)));
                }
            }
        }
        // SAFETY: no memory operands; orders the streaming stores above before any later
        // store, so another thread that sees the buffer after we return sees the data.
        unsafe { _mm_sfence() };
        dst[head + body..len].copy_from_slice(&src[head + body..len]);
    }
    #[cfg(not(target_arch = "x86_64"))]
    dst.copy_from_slice(src);
}

impl KeyData {
    /// The contiguous runs of the selected data, in train order (rows are checked against
    /// the dataset's length when read).
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

    #[test]
    fn streaming_copy_matches_at_every_alignment_and_length() {
        let src: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        let mut dst = vec![0u8; 1100];
        for off in 0..20 {
            for len in [0, 1, 15, 16, 63, 64, 65, 127, 200, 640, 977] {
                dst.fill(0xEE);
                super::copy_streaming(&mut dst[off..off + len], &src[3..3 + len]);
                assert_eq!(
                    &dst[off..off + len],
                    &src[3..3 + len],
                    "off {off} len {len}"
                );
                assert!(dst[..off].iter().all(|&b| b == 0xEE), "before, off {off}");
                assert!(
                    dst[off + len..].iter().all(|&b| b == 0xEE),
                    "after, off {off}"
                );
            }
        }
    }

    #[test]
    fn large_reads_stream_the_same_rows() {
        let td = tempfile::tempdir().expect("tempdir");
        // 2 files x 3 trains x 48 frames of 64 x 64 uint16: 1.1 MiB per file, so that each
        // file's read is above STREAM_MIN_BYTES.
        let spec = RunSpec {
            trains_per_sequence: 3,
            sequences: 2,
            modules: 1,
            frames: 48,
            frame_height: 64,
            frame_width: 64,
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
            .expect("key");
        let eb = kd.entry_bytes().expect("entry bytes");
        let spans = kd.data_spans();
        let n = 144;
        assert!((n - 1) * eb >= super::STREAM_MIN_BYTES);
        let mut whole = vec![0u8; 2 * n * eb];
        let (a, b) = whole.split_at_mut(n * eb);
        spans[0].read_rows(0, n as u64, eb, a).expect("read 0");
        spans[1].read_rows(0, n as u64, eb, b).expect("read 1");
        assert_eq!(whole, kd.read_bytes().expect("read_bytes"));
        // Into an output slice that is not 16-byte aligned.
        let mut buf = vec![0u8; n * eb];
        spans[1]
            .read_rows(1, (n - 1) as u64, eb, &mut buf[1..(n - 1) * eb + 1])
            .expect("odd offset");
        assert_eq!(&buf[1..(n - 1) * eb + 1], &whole[(n + 1) * eb..]);
        // Past the dataset's end, and a buffer that the rows do not fill.
        let mut past_end = vec![0u8; (n + 1) * eb];
        assert!(spans[0]
            .read_rows(0, n as u64 + 1, eb, &mut past_end)
            .is_err());
        assert!(spans[0]
            .read_rows(0, n as u64 - 1, eb, &mut past_end[..n * eb])
            .is_err());
    }
}
