//! One key of one source (EXtra-data's `KeyData`): shape, dtype, data counts, and
//! reads into caller buffers or `ndarray::ArrayD`, one read per contiguous run of
//! data.

use std::collections::HashMap;
use std::sync::Arc;

use super::dtype::DType;
use super::error::{Error, Result};
use super::file_access::FileAccess;
use super::h5::read_strings_ds;
use super::interrupt;
use super::selection::{select_train_ids, TrainSelection};
use super::source_data::{RunValue, Section, SourceData};
use super::warning::Warning;

pub(crate) mod spans;

/// A run of consecutive selected trains in one file. Whole-key reads take its rows as
/// one contiguous run from `first` (as EXtra-data's `ndarray` does); a single train is
/// read from its own `firsts[i]` (as EXtra-data's `train_from_id`), so a corrupt count
/// spoils only its own train, not the positions of the trains after it.
#[derive(Debug, Clone)]
struct DataChunk {
    file: Arc<FileAccess>,
    first: u64,
    train_ids: Vec<u64>,
    firsts: Vec<u64>,
    counts: Vec<u64>,
}

impl DataChunk {
    /// Entries of the chunk, saturating: counts from a corrupt index may add up past
    /// `u64::MAX`, and such a chunk's rows are refused when read.
    fn total(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, &c| a.saturating_add(c))
    }
}

/// A zeroed vector of `n` elements for `object`; an allocation failure (e.g. sizes
/// from a corrupt file) is an error, not an abort.
pub(crate) fn zeroed_vec<T: bytemuck::Zeroable + Clone>(n: usize, object: &str) -> Result<Vec<T>> {
    // alloc_zeroed: large buffers come from the kernel already zeroed, no fill,
    // and pages nothing is written to are never faulted in.
    bytemuck::allocation::try_zeroed_vec(n).map_err(|()| Error::TooLarge {
        object: object.into(),
        what: "allocation",
        size: format!("{n} elements of {} bytes", std::mem::size_of::<T>()),
    })
}

/// Element types that can be read into typed buffers.
pub trait Element: bytemuck::Pod {
    fn matches(d: &DType) -> bool;
}
macro_rules! elem {
    ($t:ty, $p:pat) => {
        impl Element for $t {
            fn matches(d: &DType) -> bool {
                matches!(d.native(), $p)
            }
        }
    };
}
elem!(u8, DType::UInt(1) | DType::Bool);
elem!(i8, DType::Int(1));
elem!(u16, DType::UInt(2));
elem!(i16, DType::Int(2));
elem!(u32, DType::UInt(4));
elem!(i32, DType::Int(4));
elem!(u64, DType::UInt(8));
elem!(i64, DType::Int(8));
elem!(f32, DType::Float(4));
elem!(f64, DType::Float(8));

/// One key of one source (EXtra-data's `KeyData`).
#[derive(Debug, Clone)]
pub struct KeyData {
    pub source: String,
    pub key: String,
    pub section: Section,
    pub files: Vec<Arc<FileAccess>>,
    pub train_ids: Arc<Vec<u64>>,
    pub inc_suspect_trains: bool,
    pub dtype: DType,
    pub entry_shape: Vec<usize>,
    chunks: Vec<DataChunk>,
    warnings: Vec<Warning>,
}

impl KeyData {
    pub(crate) fn new(sd: &SourceData, key: String) -> Result<KeyData> {
        let f0 = sd.first_file()?;
        let (dtype, shape) = f0.key_dtype_shape(&sd.source, &key)?;
        let mut kd = KeyData {
            source: sd.source.clone(),
            key,
            section: sd.section,
            files: sd.files.clone(),
            train_ids: sd.train_ids.clone(),
            inc_suspect_trains: sd.inc_suspect_trains,
            dtype,
            entry_shape: shape.get(1..).map(|s| s.to_vec()).unwrap_or_default(),
            chunks: Vec::new(),
            warnings: Vec::new(),
        };
        kd.chunks = kd.find_chunks()?;
        Ok(kd)
    }

    /// Warnings of the train selection that made this KeyData (see
    /// [`KeyData::select_trains`]).
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// Index group: first dot component for instrument keys, "" for control.
    pub fn index_group(&self) -> String {
        match self.section {
            Section::Control => String::new(),
            Section::Instrument => self.key.split('.').next().unwrap_or("").to_string(),
        }
    }

    /// `/CONTROL/<src>/<key path>` or `/INSTRUMENT/...`.
    pub fn hdf5_data_path(&self) -> String {
        format!(
            "/{}/{}/{}",
            self.section.as_str(),
            self.source,
            self.key.replace('.', "/")
        )
    }

    fn find_chunks(&self) -> Result<Vec<DataChunk>> {
        let sel: std::collections::HashSet<u64> = self.train_ids.iter().copied().collect();
        let group = self.index_group();
        let mut out = Vec::new();
        for f in &self.files {
            if f.train_ids.is_empty() {
                continue;
            }
            let ix = f.get_index(&self.source, &group)?;
            let (firsts, counts) = (&ix.0, &ix.1);
            let include: Vec<bool> = f
                .train_ids
                .iter()
                .zip(&f.validity_flag)
                .map(|(t, &v)| sel.contains(t) && (self.inc_suspect_trains || v))
                .collect();
            let mut i = 0;
            while i < include.len() {
                if !include[i] {
                    i += 1;
                    continue;
                }
                let s = i;
                while i < include.len() && include[i] {
                    i += 1;
                }
                // Index windows past the end of the data (or past u64::MAX) are found
                // when a read reaches them (like EXtra-data: shapes, counts and reads of
                // the intact trains work).
                out.push(DataChunk {
                    file: f.clone(),
                    first: firsts[s],
                    train_ids: f.train_ids[s..i].to_vec(),
                    firsts: firsts[s..i].to_vec(),
                    counts: counts[s..i].to_vec(),
                });
            }
        }
        out.sort_by_key(|c| c.train_ids[0]);
        Ok(out)
    }

    /// Number of entries of the selection.
    pub fn len(&self) -> u64 {
        self.chunks
            .iter()
            .fold(0u64, |a, c| a.saturating_add(c.total()))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `(entries,) + entry_shape`.
    pub fn shape(&self) -> Vec<usize> {
        let mut s = vec![self.len() as usize];
        s.extend(&self.entry_shape);
        s
    }

    pub fn ndim(&self) -> usize {
        1 + self.entry_shape.len()
    }

    /// Size in bytes of the selected data (fixed-size types).
    /// `None` for variable-size types or if the size overflows.
    pub fn nbytes(&self) -> Option<u64> {
        let eb = self.entry_bytes().ok()? as u64;
        eb.checked_mul(self.len())
    }

    /// Entries per selected train (0 where the source has no data).
    pub fn data_counts(&self) -> Result<Vec<u64>> {
        let pos: HashMap<u64, usize> = self
            .train_ids
            .iter()
            .enumerate()
            .map(|(i, &t)| (t, i))
            .collect();
        let mut res = vec![0u64; self.train_ids.len()];
        for c in &self.chunks {
            for (t, &n) in c.train_ids.iter().zip(&c.counts) {
                if let Some(&i) = pos.get(t) {
                    res[i] = n;
                }
            }
        }
        Ok(res)
    }

    /// One train ID per entry, matching the first axis of the data.
    pub fn train_id_coordinates(&self) -> Result<Vec<u64>> {
        let n = usize::try_from(self.len()).ok();
        self.check_chunk_windows(n.and_then(|n| n.checked_mul(8)), 0..u64::MAX)?;
        let mut out: Vec<u64> = zeroed_vec(n.unwrap_or(usize::MAX), &self.object())?;
        out.clear();
        for c in &self.chunks {
            for (&t, &n) in c.train_ids.iter().zip(&c.counts) {
                out.extend(std::iter::repeat_n(t, n as usize));
            }
        }
        Ok(out)
    }

    /// `source key`, to name this key in errors.
    fn object(&self) -> String {
        format!("{} {}", self.source, self.key)
    }

    /// Bytes per entry for fixed-size types.
    pub fn entry_bytes(&self) -> Result<usize> {
        let isz = self.dtype.item_size().ok_or_else(|| Error::VariableSize {
            source_name: self.source.clone(),
            key: self.key.clone(),
            dtype: self.dtype.numpy_name(),
        })?;
        self.entry_shape
            .iter()
            .try_fold(isz, |a, &d| a.checked_mul(d))
            .ok_or_else(|| Error::TooLarge {
                object: self.object(),
                what: "entry shape",
                size: format!("{:?}", self.entry_shape),
            })
    }

    /// Read the selected data into `out` (raw little-endian bytes, C order), one
    /// read per contiguous run of data (never one per train).
    pub fn read_into_bytes(&self, out: &mut [u8]) -> Result<()> {
        self.read_to(out, false)
    }

    /// Read into `out`, which holds zeros when `out_zeroed` (then rows of unallocated
    /// chunks are not written).
    fn read_to(&self, out: &mut [u8], out_zeroed: bool) -> Result<()> {
        let eb = self.entry_bytes()?;
        let needed = (eb as u64)
            .checked_mul(self.len())
            .ok_or_else(|| Error::TooLarge {
                object: self.object(),
                what: "data size",
                size: format!("{} entries of {eb} bytes", self.len()),
            })?;
        if out.len() as u64 != needed {
            return Err(Error::BufferSize {
                object: self.object(),
                got: out.len(),
                needed,
            });
        }
        let path = self.hdf5_data_path();
        let mut off = 0usize;
        for c in &self.chunks {
            let n = c.total();
            if n == 0 {
                continue;
            }
            let nb = n as usize * eb;
            let dst = &mut out[off..off + nb];
            if out_zeroed {
                c.file.read_rows_into_zeroed(&path, c.first, n, eb, dst)?;
            } else {
                c.file.read_rows(&path, c.first, n, eb, dst)?;
            }
            off += nb;
        }
        Ok(())
    }

    /// Hand the selected data (raw little-endian bytes, C order) to `f` in order, in
    /// pieces: slices of the files' maps where the layout allows it, else bounded
    /// batches read through libhdf5. For streaming a key of any size to a file.
    pub fn for_each_block(&self, mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let eb = self.entry_bytes()?;
        let path = self.hdf5_data_path();
        self.check_chunk_windows(None, 0..u64::MAX)?;
        for c in &self.chunks {
            interrupt::check()?;
            let n = c.total();
            if n > 0 {
                c.file.visit_rows(&path, c.first, n, eb, &mut f)?;
            }
        }
        Ok(())
    }

    /// Read the selected data into a new buffer of [`KeyData::nbytes`] bytes (raw
    /// little-endian, C order). Sizes from a corrupt file that cannot be allocated
    /// are an error, not an abort.
    pub fn read_bytes(&self) -> Result<Vec<u8>> {
        let eb = self.entry_bytes()?;
        let n = usize::try_from(self.len())
            .ok()
            .and_then(|n| n.checked_mul(eb));
        self.check_chunk_windows(n, 0..u64::MAX)?;
        let n = n.ok_or_else(|| Error::TooLarge {
            object: self.object(),
            what: "data size",
            size: format!("{} entries of {eb} bytes", self.len()),
        })?;
        let mut buf = zeroed_vec(n, &self.object())?;
        self.read_to(&mut buf, true)?;
        Ok(buf)
    }

    /// `(train ID, entries)` of each chunk train of the selection, in the order of
    /// the data (the first axis of [`KeyData::read_bytes`]).
    pub fn train_counts_in_data_order(&self) -> Vec<(u64, u64)> {
        self.chunks
            .iter()
            .flat_map(|c| c.train_ids.iter().copied().zip(c.counts.iter().copied()))
            .collect()
    }

    /// Entries `entries` (positions on the first axis of [`KeyData::read_bytes`])
    /// into a new zeroed buffer, one read per contiguous run of data. For reading
    /// a key block by block without a train selection per block.
    pub fn read_entries(&self, entries: std::ops::Range<u64>) -> Result<Vec<u8>> {
        let eb = self.entry_bytes()?;
        let len = self.len();
        if entries.start > entries.end || entries.end > len {
            return Err(Error::TooLarge {
                object: self.object(),
                what: "entry range",
                size: format!("{}..{} of {len} entries", entries.start, entries.end),
            });
        }
        let nbytes = usize::try_from(entries.end - entries.start)
            .ok()
            .and_then(|n| n.checked_mul(eb))
            .ok_or_else(|| Error::TooLarge {
                object: self.object(),
                what: "data size",
                size: format!("{} entries of {eb} bytes", entries.end - entries.start),
            })?;
        self.check_chunk_windows(Some(nbytes), entries.clone())?;
        let mut out = zeroed_vec(nbytes, &self.object())?;
        let path = self.hdf5_data_path();
        let (mut at, mut off) = (0u64, 0usize);
        for c in &self.chunks {
            let (c_start, c_end) = (at, at.saturating_add(c.total()));
            at = c_end;
            let (a, b) = (entries.start.max(c_start), entries.end.min(c_end));
            if a >= b {
                continue;
            }
            let nb = (b - a) as usize * eb;
            let dst = &mut out[off..off + nb];
            c.file.read_rows_into_zeroed(
                &path,
                c.first.saturating_add(a - c_start),
                b - a,
                eb,
                dst,
            )?;
            off += nb;
        }
        Ok(out)
    }

    /// Read into a typed caller buffer; `T` must match the dtype.
    pub fn read_into<T: Element>(&self, out: &mut [T]) -> Result<()> {
        self.check_element::<T>()?;
        self.read_into_bytes(bytemuck::cast_slice_mut(out))
    }

    /// [`KeyData::read_into`] into a buffer that already holds zeros (fresh
    /// `calloc`/`numpy.zeros` memory): rows of unallocated chunks are skipped, so
    /// their pages are never touched. Any other content stays there instead.
    pub fn read_into_zeroed<T: Element>(&self, out: &mut [T]) -> Result<()> {
        self.check_element::<T>()?;
        self.read_to(bytemuck::cast_slice_mut(out), true)
    }

    fn check_element<T: Element>(&self) -> Result<()> {
        if T::matches(&self.dtype) {
            return Ok(());
        }
        Err(Error::DTypeMismatch {
            source_name: self.source.clone(),
            key: self.key.clone(),
            dtype: self.dtype.numpy_name(),
            requested: std::any::type_name::<T>(),
        })
    }

    /// Read into a new `ndarray::ArrayD<T>` of shape [`KeyData::shape`].
    pub fn ndarray<T: Element>(&self) -> Result<ndarray::ArrayD<T>> {
        let shape = self.shape();
        let too_large = || Error::TooLarge {
            object: self.object(),
            what: "shape",
            size: format!("{shape:?}"),
        };
        let n = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|n| n.checked_mul(std::mem::size_of::<T>()).is_some());
        self.check_chunk_windows(n.map(|n| n * std::mem::size_of::<T>()), 0..u64::MAX)?;
        let n = n.ok_or_else(too_large)?;
        self.check_element::<T>()?;
        let mut v: Vec<T> = zeroed_vec(n, &self.object())?;
        self.read_to(bytemuck::cast_slice_mut(&mut v), true)?;
        ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&shape), v).map_err(|_| too_large())
    }

    /// Read string data (vlen or fixed) as Strings, one per element.
    pub fn read_strings(&self) -> Result<Vec<String>> {
        let path = self.hdf5_data_path();
        let mut out = Vec::new();
        for c in &self.chunks {
            let n = c.total();
            if n == 0 {
                continue;
            }
            let h = c.file.file()?;
            let ds = h.dataset(&path)?;
            let rows = ds.shape().first().copied().unwrap_or(0) as u64;
            let end = c.first.saturating_add(n);
            if end > rows {
                return Err(Error::IndexOutsideData {
                    path: c.file.path.clone(),
                    object: path.clone(),
                    start: c.first,
                    end,
                    rows,
                });
            }
            out.extend(read_strings_ds(
                &h,
                &ds,
                &path,
                Some((c.first as usize, (c.first + n) as usize)),
            )?);
        }
        Ok(out)
    }

    /// Restrict to a train selection. The new KeyData's [`KeyData::warnings`] are
    /// those of this selection.
    pub fn select_trains(&self, sel: &TrainSelection) -> Result<KeyData> {
        let mut warnings = Vec::new();
        let tids = Arc::new(select_train_ids(&self.train_ids, sel, &mut warnings)?);
        let mut kd = KeyData {
            train_ids: tids,
            warnings,
            ..self.clone()
        };
        kd.chunks = kd.find_chunks()?;
        Ok(kd)
    }

    /// The RUN value of this key (control sources).
    pub fn run_value(&self, sd: &SourceData) -> Result<RunValue> {
        sd.run_value(&self.key)
    }

    /// Locate the rows of one train: (file, the train's own first row, count).
    pub(crate) fn train_rows(&self, tid: u64) -> Option<(Arc<FileAccess>, u64, u64)> {
        for c in &self.chunks {
            let i = c
                .train_ids
                .binary_search(&tid)
                .ok()
                .or_else(|| c.train_ids.iter().position(|&t| t == tid));
            if let Some(i) = i {
                return Some((c.file.clone(), c.firsts[i], c.counts[i]));
            }
        }
        None
    }

    /// Rows of this key's dataset in `file`.
    fn dataset_rows(&self, file: &Arc<FileAccess>) -> Result<u64> {
        file.dataset_rows(&self.hdf5_data_path())
    }

    /// Rows `start .. start + count` of `file` for `train`, if they lie in its `rows`
    /// rows; else the error naming the file, the dataset and the train.
    fn window_in_data(
        &self,
        file: &Arc<FileAccess>,
        rows: u64,
        (start, count): (u64, u64),
        train: u64,
    ) -> Result<u64> {
        match start.checked_add(count) {
            Some(end) if count == 0 || end <= rows => Ok(end),
            end => Err(Error::IndexOutsideData {
                path: file.path.clone(),
                object: format!("{} (train {train})", self.hdf5_data_path()),
                start,
                end: end.unwrap_or(u64::MAX),
                rows,
            }),
        }
    }

    /// Checks that rows `start .. start + count` of this key in `file` lie in its
    /// dataset, before a buffer for them is allocated: an index count from a corrupt
    /// file is refused naming the file, the dataset and `train`, never allocated.
    pub(crate) fn check_window(
        &self,
        file: &Arc<FileAccess>,
        start: u64,
        count: u64,
        train: u64,
    ) -> Result<()> {
        let rows = self.dataset_rows(file)?;
        self.window_in_data(file, rows, (start, count), train)
            .map(|_| ())
    }

    /// Checks the rows of the chunks holding `entries` (positions on the first axis of
    /// the whole read) against their datasets before a read of `nbytes` allocates its
    /// output (big reads only: a small output is harmless, and the read itself refuses
    /// rows outside the data). Names the first train whose rows, counted from its
    /// chunk's start, leave the data.
    fn check_chunk_windows(
        &self,
        nbytes: Option<usize>,
        entries: std::ops::Range<u64>,
    ) -> Result<()> {
        if nbytes.is_some_and(|n| n < crate::trains::PIECEWISE_MIN_BYTES) {
            return Ok(());
        }
        let mut pos = 0u64;
        for c in &self.chunks {
            let chunk_end = pos.saturating_add(c.total());
            if pos >= entries.end {
                break;
            }
            if chunk_end > entries.start {
                let rows = self.dataset_rows(&c.file)?;
                let (mut at, mut train_pos) = (c.first, pos);
                for (&t, &n) in c.train_ids.iter().zip(&c.counts) {
                    if train_pos >= entries.end {
                        break;
                    }
                    at = self.window_in_data(&c.file, rows, (at, n), t)?;
                    train_pos = train_pos.saturating_add(n);
                }
            }
            pos = chunk_end;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{DataCollection, KeyData, OpenOptions};
    use fixtures::euxfel::{make_run, RunSpec};

    /// `image.data` of the one LPD module of a run made from `spec` in `dir`.
    fn lpd_image_data(dir: &std::path::Path, spec: RunSpec) -> KeyData {
        make_run(dir, &spec).expect("fixture");
        let opts = OpenOptions {
            use_cache: false,
            ..OpenOptions::default()
        };
        DataCollection::open_run(dir, &opts)
            .expect("open")
            .key("FXE_DET_LPD1M-1/DET/0CH0:xtdf", "image.data")
            .expect("key")
    }

    // A key over two sequence files: any entry range reads what the whole read
    // has at those positions; a zeroed buffer reads like any other.
    #[test]
    fn read_entries_and_read_into_zeroed_match_the_whole_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = RunSpec {
            trains_per_sequence: 10,
            sequences: 2,
            modules: 1,
            frames: 3,
            frame_height: 4,
            frame_width: 4,
            ..RunSpec::default()
        };
        let kd = lpd_image_data(dir.path(), spec);
        let all = kd.read_bytes().expect("read");
        let eb = kd.entry_bytes().expect("entry bytes");
        let n = kd.len();
        assert_eq!(n, 60);
        for (a, b) in [(0, n), (0, 1), (5, 37), (29, 31), (59, 60), (30, 30)] {
            let part = kd.read_entries(a..b).expect("entries");
            assert_eq!(part, all[a as usize * eb..b as usize * eb], "{a}..{b}");
        }
        assert!(kd.read_entries(10..61).is_err());
        let mut zeroed = vec![0u16; all.len() / 2];
        kd.read_into_zeroed(&mut zeroed).expect("zeroed read");
        assert_eq!(bytemuck::cast_slice::<u16, u8>(&zeroed), &all[..]);
        let counts = kd.train_counts_in_data_order();
        assert_eq!(counts.len(), 20);
        assert!(counts.iter().all(|&(_, c)| c == 3));
        assert!(counts.windows(2).all(|w| w[0].0 < w[1].0));
    }

    // A train's large array (read piecewise from the file map) equals the
    // train's part of the whole read, in every train of both sequence files.
    #[test]
    fn large_train_values_equal_the_whole_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = RunSpec {
            trains_per_sequence: 3,
            sequences: 2,
            modules: 1,
            frames: 2,
            frame_height: 128,
            frame_width: 256,
            ..RunSpec::default()
        };
        let kd = lpd_image_data(dir.path(), spec);
        let all = kd.read_bytes().expect("read");
        let eb = kd.entry_bytes().expect("entry bytes");
        let mut at = 0usize;
        for (tid, count) in kd.train_counts_in_data_order() {
            let n = count as usize * eb;
            assert!(
                n >= crate::trains::PIECEWISE_MIN_BYTES,
                "train {tid}: {n} bytes, not a piecewise read"
            );
            match kd.train_value(tid).expect("train value") {
                Some(crate::TrainValue::Array { bytes, .. }) => {
                    assert_eq!(bytes, all[at..at + n], "train {tid}")
                }
                other => panic!("train {tid}: {other:?}"),
            }
            at += n;
        }
        assert_eq!(at, all.len());
    }
}
