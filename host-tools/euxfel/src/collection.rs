//! DataCollection, SourceData and KeyData: EXtra-data's three layers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{Error, Result};
use super::file_access::FileAccess;
use super::fnmatch::Pattern;
use super::h5::{read_strings_ds, DType};
use super::runmap::RunFilesMap;

/// The section a source lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Section {
    Control,
    Instrument,
}

impl Section {
    pub fn as_str(&self) -> &'static str {
        match self {
            Section::Control => "CONTROL",
            Section::Instrument => "INSTRUMENT",
        }
    }
}

/// Options for opening runs and files.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// fnmatch glob on file names (run directories only).
    pub include: String,
    /// Read and write `karabo_data_map.json`.
    pub use_cache: bool,
    /// Threads used to open files (0 = number of CPUs).
    pub threads: usize,
    /// Include trains flagged as suspect (EXtra-data's default: true).
    pub inc_suspect_trains: bool,
    /// Print skipped files to stderr (like EXtra-data).
    pub report_skipped: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            include: "*".into(),
            use_cache: true,
            threads: 0,
            inc_suspect_trains: true,
            report_skipped: true,
        }
    }
}

/// A train selection, with EXtra-data's `by_id` / `by_index` semantics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrainSelection {
    /// `by_id[start:stop]` (stop exclusive; absent IDs map to the next greater ID).
    IdRange(Option<u64>, Option<u64>),
    /// `by_id[[...]]`: sorted intersection.
    IdList(Vec<u64>),
    /// `by_index[start:stop:step]` / a plain slice (Python slice semantics).
    IndexRange(Option<i64>, Option<i64>, Option<i64>),
    /// A list of positions (negative from the end), result sorted.
    IndexList(Vec<i64>),
}

/// EXtra-data's split arithmetic: `[i*n//k, (i+1)*n//k)` for k parts.
pub fn split_ranges(
    n_trains: usize,
    parts: Option<usize>,
    trains_per_part: Option<usize>,
) -> Result<Vec<std::ops::Range<usize>>> {
    let n_parts = match (parts, trains_per_part) {
        (_, Some(0)) => return Err(Error::Invalid("trains_per_part must be >= 1".into())),
        (Some(0), _) => return Err(Error::Invalid("parts must be >= 1".into())),
        (p, Some(tpp)) => {
            let mut n = n_trains.div_ceil(tpp);
            if let Some(p) = p {
                n = n.max(p.min(n_trains));
            }
            n
        }
        (Some(p), None) => p.min(n_trains),
        (None, None) => {
            return Err(Error::Invalid(
                "either parts or trains_per_part must be specified".into(),
            ))
        }
    };
    Ok((0..n_parts)
        .map(|i| i * n_trains / n_parts..(i + 1) * n_trains / n_parts)
        .collect())
}

/// Python slice of a sequence of length `len` -> indices.
fn py_slice(
    len: usize,
    start: Option<i64>,
    stop: Option<i64>,
    step: Option<i64>,
) -> Result<Vec<usize>> {
    let step = step.unwrap_or(1);
    if step == 0 {
        return Err(Error::Invalid("slice step cannot be zero".into()));
    }
    let n = len as i64;
    let norm = |v: i64, lo: i64, hi: i64| -> i64 {
        let v = if v < 0 { v + n } else { v };
        v.clamp(lo, hi)
    };
    let mut out = Vec::new();
    if step > 0 {
        let s = start.map_or(0, |v| norm(v, 0, n));
        let e = stop.map_or(n, |v| norm(v, 0, n));
        let mut i = s;
        while i < e {
            out.push(i as usize);
            i += step;
        }
    } else {
        let s = start.map_or(n - 1, |v| norm(v, -1, n - 1));
        let e = stop.map_or(-1, |v| norm(v, -1, n - 1));
        let mut i = s;
        while i > e {
            out.push(i as usize);
            i += step;
        }
    }
    Ok(out)
}

fn tid_to_slice_ix(tid: Option<u64>, tids: &[u64], stop: bool) -> Option<i64> {
    let tid = tid?;
    if let Ok(i) = tids.binary_search(&tid) {
        return Some(i as i64);
    }
    if tids.is_empty() {
        eprintln!("warning: using train ID slice on data with no trains selected");
        return Some(0);
    }
    if tid < tids[0] {
        if stop {
            eprintln!(
                "warning: Train ID {tid} is before this run (starts at {})",
                tids[0]
            );
            Some(0)
        } else {
            None
        }
    } else if tid > tids[tids.len() - 1] {
        if stop {
            None
        } else {
            eprintln!(
                "warning: Train ID {tid} is after this run (ends at {})",
                tids[tids.len() - 1]
            );
            Some(tids.len() as i64)
        }
    } else {
        Some(tids.partition_point(|&t| t <= tid) as i64)
    }
}

/// Apply a train selection to a sorted list of train IDs.
pub(crate) fn select_train_ids(tids: &[u64], sel: &TrainSelection) -> Result<Vec<u64>> {
    Ok(match sel {
        TrainSelection::IdRange(a, b) => {
            let s = tid_to_slice_ix(*a, tids, false);
            let e = tid_to_slice_ix(*b, tids, true);
            py_slice(tids.len(), s, e, None)?
                .into_iter()
                .map(|i| tids[i])
                .collect()
        }
        TrainSelection::IdList(list) => {
            let want: BTreeSet<u64> = list.iter().copied().collect();
            let r: Vec<u64> = tids.iter().copied().filter(|t| want.contains(t)).collect();
            if !list.is_empty() && r.is_empty() {
                eprintln!(
                    "warning: Given train IDs not found among {} trains in collection",
                    tids.len()
                );
            }
            r
        }
        TrainSelection::IndexRange(a, b, c) => py_slice(tids.len(), *a, *b, *c)?
            .into_iter()
            .map(|i| tids[i])
            .collect(),
        TrainSelection::IndexList(list) => {
            let n = tids.len() as i64;
            let mut r = Vec::with_capacity(list.len());
            for &i in list {
                let j = if i < 0 { i + n } else { i };
                if j < 0 || j >= n {
                    return Err(Error::Invalid(format!(
                        "train index {i} is out of range for {n} trains"
                    )));
                }
                r.push(tids[j as usize]);
            }
            r.sort_unstable();
            r
        }
    })
}

/// One source of a collection (EXtra-data's `SourceData`).
#[derive(Debug, Clone)]
pub struct SourceData {
    pub source: String,
    pub section: Section,
    pub files: Vec<Arc<FileAccess>>,
    /// Selected keys, `None` for all.
    pub sel_keys: Option<BTreeSet<String>>,
    pub train_ids: Arc<Vec<u64>>,
    pub canonical_name: String,
    pub is_single_run: bool,
    pub inc_suspect_trains: bool,
}

impl SourceData {
    pub fn is_control(&self) -> bool {
        self.section == Section::Control
    }
    pub fn is_instrument(&self) -> bool {
        self.section == Section::Instrument
    }
    pub fn is_legacy(&self) -> bool {
        self.canonical_name != self.source
    }

    fn first_file(&self) -> Result<&Arc<FileAccess>> {
        self.files.first().ok_or_else(|| Error::SourceName {
            source_name: self.source.clone(),
            hint: " (no files)".into(),
        })
    }

    /// Aggregator of the first file holding this source.
    pub fn aggregator(&self) -> Option<String> {
        let mut fs: Vec<&Arc<FileAccess>> = self.files.iter().collect();
        fs.sort_by_key(|f| f.filename());
        fs.first().and_then(|f| f.aggregator())
    }

    /// Keys of this source (selected ones if a selection was made). With
    /// `inc_timestamps = false`, control keys lose `.timestamp` keys and the `.value` suffix.
    pub fn keys(&self, inc_timestamps: bool) -> Result<BTreeSet<String>> {
        let all: BTreeSet<String> = match &self.sel_keys {
            Some(k) => k.clone(),
            None => (*self.first_file()?.get_keys(&self.source)?).clone(),
        };
        if !inc_timestamps && self.is_control() {
            return Ok(all
                .into_iter()
                .filter_map(|k| k.strip_suffix(".value").map(str::to_string))
                .collect());
        }
        Ok(all)
    }

    /// Whether the (exact) key exists and is selected.
    pub fn has_key(&self, key: &str) -> Result<bool> {
        if let Some(s) = &self.sel_keys {
            return Ok(s.contains(key));
        }
        self.first_file()?.has_source_key(&self.source, key)
    }

    /// Index groups (`""` for control sources).
    pub fn index_groups(&self) -> Result<BTreeSet<String>> {
        if self.is_control() {
            return Ok(BTreeSet::from([String::new()]));
        }
        let mut out = BTreeSet::new();
        if let Some(s) = &self.sel_keys {
            for k in s {
                out.insert(k.split('.').next().unwrap_or("").to_string());
            }
            return Ok(out);
        }
        self.first_file()?.index_groups(&self.source)
    }

    /// One key of the source in `index_group` (any group if None), if there is one.
    pub fn one_key(&self, index_group: Option<&str>) -> Result<Option<String>> {
        let keys = self.keys(true)?;
        Ok(match index_group {
            None => keys.into_iter().next(),
            Some(_) if self.is_control() => keys.into_iter().next(),
            Some(g) => {
                let p = format!("{g}.");
                keys.into_iter().find(|k| k.starts_with(&p))
            }
        })
    }

    /// Whether the control source has only RUN keys.
    pub fn is_run_only(&self) -> Result<bool> {
        Ok(self.is_control() && self.one_key(None)?.is_none())
    }

    /// KeyData for a key (control keys may omit `.value`).
    pub fn key(&self, key: &str) -> Result<KeyData> {
        let mut k = key.to_string();
        if !self.has_key(&k)? {
            if self.is_control() && self.has_key(&format!("{key}.value"))? {
                k = format!("{key}.value");
            } else {
                let hint = near_matches(key, &self.keys(true).unwrap_or_default());
                return Err(Error::KeyName {
                    source_name: self.source.clone(),
                    key: key.into(),
                    hint,
                });
            }
        }
        KeyData::new(self, k)
    }

    /// Data counts per train of the selection, for one index group or the max over all.
    pub fn data_counts(&self, index_group: Option<&str>) -> Result<Vec<u64>> {
        let n = self.train_ids.len();
        match index_group {
            Some(g) => match self.one_key(Some(g))? {
                Some(k) => self.key(&k)?.data_counts(),
                None => Ok(vec![0; n]),
            },
            None => {
                let mut res = vec![0u64; n];
                for g in self.index_groups()? {
                    if let Some(k) = self.one_key(Some(&g))? {
                        for (r, c) in res.iter_mut().zip(self.key(&k)?.data_counts()?) {
                            *r = (*r).max(c);
                        }
                    }
                }
                Ok(res)
            }
        }
    }

    /// RUN-section entries: key -> (dtype, shape of the stored dataset).
    pub fn run_entries(
        &self,
        inc_timestamps: bool,
    ) -> Result<BTreeMap<String, (DType, Vec<usize>)>> {
        let f = self.first_file()?;
        let m = f
            .run_entries(&self.source)?
            .ok_or_else(|| Error::Invalid(format!("{} has no RUN values", self.source)))?;
        if inc_timestamps {
            return Ok(m);
        }
        Ok(m.into_iter()
            .filter_map(|(k, v)| k.strip_suffix(".value").map(|s| (s.to_string(), v)))
            .collect())
    }

    /// A value from the RUN section, as raw bytes or strings.
    pub fn run_value(&self, key: &str) -> Result<RunValue> {
        let f = self.first_file()?;
        let h = f.file()?;
        let base = format!("RUN/{}/{}", self.source, key.replace('.', "/"));
        let p = if h.has(&format!("{base}/value")) && h.h5.dataset(&base).is_err() {
            format!("{base}/value")
        } else {
            base
        };
        let ds = h.h5.dataset(&p).map_err(|_| Error::KeyName {
            source_name: self.source.clone(),
            key: key.into(),
            hint: " in the RUN section".into(),
        })?;
        let d = ds
            .dtype()
            .and_then(|t| t.to_descriptor())
            .map_err(|e| Error::h5(&f.path, &p, e))?;
        let dtype = DType::from_descriptor(&d);
        let shape = ds.shape();
        if shape.first().copied().unwrap_or(0) == 0 {
            return Err(Error::structure(&f.path, format!("{p}: empty RUN dataset")));
        }
        if dtype.is_string() {
            let v = read_strings_ds(&ds, &f.path, &p, Some((0, 1)))?;
            return Ok(RunValue::Str(v.into_iter().next().unwrap_or_default()));
        }
        let isz = dtype.item_size().ok_or_else(|| Error::UnsupportedType {
            path: f.path.clone(),
            object: p.clone(),
            dtype: dtype.numpy_name(),
        })?;
        let row: usize = shape[1..].iter().product::<usize>() * isz;
        let mut buf = vec![0u8; row];
        h.read_rows_raw(&ds, &p, 0, 1, row, &mut buf)?;
        Ok(RunValue::Array {
            dtype,
            shape: shape[1..].to_vec(),
            bytes: buf,
        })
    }

    fn only_tids(&self, tids: Arc<Vec<u64>>) -> SourceData {
        let set: std::collections::HashSet<u64> = tids.iter().copied().collect();
        let mut files: Vec<Arc<FileAccess>> = self
            .files
            .iter()
            .filter(|f| {
                if self.inc_suspect_trains {
                    f.train_ids.iter().any(|t| set.contains(t))
                } else {
                    f.train_ids
                        .iter()
                        .zip(&f.validity_flag)
                        .any(|(t, &v)| v && set.contains(t))
                }
            })
            .cloned()
            .collect();
        if files.is_empty() {
            if let Some(f) = self.files.first() {
                files.push(f.clone());
            }
        }
        SourceData {
            files,
            train_ids: tids,
            ..self.clone()
        }
    }

    /// Select a subset of keys: None/empty = keep current selection.
    fn select_keys(&self, keys: Option<BTreeSet<String>>) -> SourceData {
        let new = match (&self.sel_keys, keys) {
            (None, k) => k,
            (Some(cur), None) => Some(cur.clone()),
            (Some(cur), Some(k)) => Some(cur.intersection(&k).cloned().collect()),
        };
        SourceData {
            sel_keys: new,
            ..self.clone()
        }
    }
}

/// A value from the RUN section.
#[derive(Debug, Clone, PartialEq)]
pub enum RunValue {
    Str(String),
    Array {
        dtype: DType,
        shape: Vec<usize>,
        bytes: Vec<u8>,
    },
}

/// A contiguous run of data in one file.
#[derive(Debug, Clone)]
struct DataChunk {
    file: Arc<FileAccess>,
    first: u64,
    train_ids: Vec<u64>,
    counts: Vec<u64>,
}

impl DataChunk {
    fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// A zeroed vector of `n` elements; an allocation failure (e.g. sizes from a corrupt
/// file) is an error, not an abort.
pub fn alloc_vec<T: bytemuck::Zeroable + Clone>(
    n: usize,
    source: &str,
    key: &str,
) -> Result<Vec<T>> {
    let mut v: Vec<T> = Vec::new();
    v.try_reserve_exact(n).map_err(|e| {
        Error::Invalid(format!("{source} {key}: cannot allocate {n} elements: {e}"))
    })?;
    v.resize(n, T::zeroed());
    Ok(v)
}

/// Element types that can be read into typed buffers.
pub trait Element: bytemuck::Pod {
    fn matches(d: &DType) -> bool;
}
macro_rules! elem {
    ($t:ty, $p:pat) => {
        impl Element for $t {
            fn matches(d: &DType) -> bool {
                matches!(d, $p)
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
}

impl KeyData {
    fn new(sd: &SourceData, key: String) -> Result<KeyData> {
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
        };
        kd.chunks = kd.find_chunks()?;
        Ok(kd)
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
        let path = self.hdf5_data_path();
        let mut out = Vec::new();
        for f in &self.files {
            if f.train_ids.is_empty() {
                continue;
            }
            let ix = f.get_index(&self.source, &group)?;
            let (firsts, counts) = (&ix.0, &ix.1);
            let mut rows_cache: Option<u64> = None;
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
                let total = counts[s..i]
                    .iter()
                    .try_fold(0u64, |a, &c| a.checked_add(c))
                    .and_then(|t| t.checked_add(firsts[s]));
                let end = match total {
                    Some(e) => e,
                    None => {
                        return Err(Error::structure(
                            &f.path,
                            format!("INDEX/{}/{group}: first + count overflows", self.source),
                        ))
                    }
                };
                if end > 0 {
                    let rows = match rows_cache {
                        Some(r) => r,
                        None => {
                            let r = f
                                .dataset_dtype_shape(path.trim_start_matches('/'))?
                                .1
                                .first()
                                .copied()
                                .unwrap_or(0) as u64;
                            rows_cache = Some(r);
                            r
                        }
                    };
                    if end > rows {
                        return Err(Error::structure(
                            &f.path,
                            format!(
                                "{path}: index refers to data ({end}) outside dataset ({rows})"
                            ),
                        ));
                    }
                }
                out.push(DataChunk {
                    file: f.clone(),
                    first: firsts[s],
                    train_ids: f.train_ids[s..i].to_vec(),
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
        let mut out: Vec<u64> = alloc_vec(self.len() as usize, &self.source, &self.key)?;
        out.clear();
        for c in &self.chunks {
            for (&t, &n) in c.train_ids.iter().zip(&c.counts) {
                out.extend(std::iter::repeat_n(t, n as usize));
            }
        }
        Ok(out)
    }

    /// Bytes per entry for fixed-size types.
    pub fn entry_bytes(&self) -> Result<usize> {
        let isz = self.dtype.item_size().ok_or_else(|| {
            Error::Invalid(format!(
                "{} {}: dtype {} has no fixed size; use read_strings",
                self.source,
                self.key,
                self.dtype.numpy_name()
            ))
        })?;
        self.entry_shape
            .iter()
            .try_fold(isz, |a, &d| a.checked_mul(d))
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{} {}: entry shape {:?} is too large",
                    self.source, self.key, self.entry_shape
                ))
            })
    }

    /// Read the selected data into `out` (raw little-endian bytes, C order), one
    /// read per contiguous run of data (never one per train).
    pub fn read_into_bytes(&self, out: &mut [u8]) -> Result<()> {
        let eb = self.entry_bytes()?;
        let need = (eb as u64).checked_mul(self.len()).ok_or_else(|| {
            Error::Invalid(format!("{} {}: data size overflows", self.source, self.key))
        })?;
        if out.len() as u64 != need {
            return Err(Error::Invalid(format!(
                "{} {}: buffer has {} bytes, data needs {need}",
                self.source,
                self.key,
                out.len()
            )));
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
            if !c
                .file
                .read_rows_mapped(path.trim_start_matches('/'), c.first, n, eb, dst)?
            {
                let h = c.file.file()?;
                let ds = h.dataset(&path)?;
                h.read_rows_raw(&ds, &path, c.first, n, eb, dst)?;
            }
            off += nb;
        }
        Ok(())
    }

    /// Read into a typed caller buffer; `T` must match the dtype.
    pub fn read_into<T: Element>(&self, out: &mut [T]) -> Result<()> {
        if !T::matches(&self.dtype) {
            return Err(Error::Invalid(format!(
                "{} {}: dtype is {}, not {}",
                self.source,
                self.key,
                self.dtype.numpy_name(),
                std::any::type_name::<T>()
            )));
        }
        self.read_into_bytes(bytemuck::cast_slice_mut(out))
    }

    /// Read into a new `ndarray::ArrayD<T>` of shape [`KeyData::shape`].
    pub fn ndarray<T: Element>(&self) -> Result<ndarray::ArrayD<T>> {
        let shape = self.shape();
        let n = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|n| n.checked_mul(std::mem::size_of::<T>()).is_some())
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{} {}: shape {shape:?} is too large",
                    self.source, self.key
                ))
            })?;
        let mut v: Vec<T> = alloc_vec(n, &self.source, &self.key)?;
        self.read_into(&mut v)?;
        ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&shape), v)
            .map_err(|e| Error::Invalid(e.to_string()))
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
            if c.first + n > rows {
                return Err(Error::structure(
                    &c.file.path,
                    format!(
                        "{path}: index refers to rows {}..{} outside the dataset ({rows} rows)",
                        c.first,
                        c.first + n
                    ),
                ));
            }
            out.extend(read_strings_ds(
                &ds,
                &c.file.path,
                &path,
                Some((c.first as usize, (c.first + n) as usize)),
            )?);
        }
        Ok(out)
    }

    /// Restrict to a train selection.
    pub fn select_trains(&self, sel: &TrainSelection) -> Result<KeyData> {
        let tids = Arc::new(select_train_ids(&self.train_ids, sel)?);
        let mut kd = KeyData {
            train_ids: tids,
            ..self.clone()
        };
        kd.chunks = kd.find_chunks()?;
        Ok(kd)
    }

    /// The RUN value of this key (control sources).
    pub fn run_value(&self, sd: &SourceData) -> Result<RunValue> {
        sd.run_value(&self.key)
    }

    /// Locate the rows of one train: (file, first row, count).
    pub(crate) fn train_rows(&self, tid: u64) -> Option<(Arc<FileAccess>, u64, u64)> {
        for c in &self.chunks {
            if let Ok(i) = c.train_ids.binary_search(&tid) {
                let off: u64 = c.counts[..i].iter().sum();
                return Some((c.file.clone(), c.first + off, c.counts[i]));
            }
            if let Some(i) = c.train_ids.iter().position(|&t| t == tid) {
                let off: u64 = c.counts[..i].iter().sum();
                return Some((c.file.clone(), c.first + off, c.counts[i]));
            }
        }
        None
    }
}

/// Data of one train: source -> key -> value.
pub type TrainData = BTreeMap<String, BTreeMap<String, TrainValue>>;

/// Data of one key for one train.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainValue {
    Array {
        dtype: DType,
        shape: Vec<usize>,
        bytes: Vec<u8>,
    },
    Strings(Vec<String>),
}

/// Iterator over the trains of a collection (see [`DataCollection::trains`]).
pub struct TrainIter<'a> {
    dc: &'a DataCollection,
    keys: Option<Vec<(String, bool, KeyData)>>,
    pos: usize,
}

impl Iterator for TrainIter<'_> {
    type Item = Result<(u64, TrainData)>;
    fn next(&mut self) -> Option<Self::Item> {
        let &tid = self.dc.train_ids.get(self.pos)?;
        self.pos += 1;
        if self.keys.is_none() {
            match self.dc.all_key_data() {
                Ok(k) => self.keys = Some(k),
                Err(e) => {
                    self.pos = self.dc.train_ids.len();
                    return Some(Err(e));
                }
            }
        }
        let keys = self.keys.as_deref().unwrap_or(&[]);
        Some(self.dc.train_values(keys, tid).map(|d| (tid, d)))
    }
}

/// A collection of EuXFEL data (EXtra-data's `DataCollection`).
#[derive(Debug, Clone)]
pub struct DataCollection {
    pub files: Vec<Arc<FileAccess>>,
    pub train_ids: Arc<Vec<u64>>,
    sources: BTreeMap<String, SourceData>,
    pub is_single_run: bool,
    pub inc_suspect_trains: bool,
}

/// Suggest near matches for a name among candidates.
pub(crate) fn near_matches(name: &str, candidates: &BTreeSet<String>) -> String {
    let lname = name.to_lowercase();
    let mut scored: Vec<(usize, &String)> = candidates
        .iter()
        .map(|c| {
            let lc = c.to_lowercase();
            let d = if lc.contains(&lname) || lname.contains(&lc) {
                0
            } else {
                levenshtein(&lname, &lc)
            };
            (d, c)
        })
        .collect();
    scored.sort();
    let limit = (name.len() / 2).max(3);
    let near: Vec<&str> = scored
        .iter()
        .filter(|(d, _)| *d <= limit)
        .take(5)
        .map(|(_, c)| c.as_str())
        .collect();
    if near.is_empty() {
        String::new()
    } else {
        format!("; did you mean: {}?", near.join(", "))
    }
}

fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let c = if a[i - 1] == b[j - 1] { 0 } else { 1 };
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + c);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Open files in parallel (bounded threads); returns (path, result) in input order.
fn open_parallel(
    paths: &[PathBuf],
    cache: &HashMap<PathBuf, super::file_access::CachedInfo>,
    threads: usize,
) -> Vec<Result<Arc<FileAccess>>> {
    let nthreads = if threads == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        threads
    }
    .min(paths.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Result<Arc<FileAccess>>>>> =
        paths.iter().map(|_| std::sync::Mutex::new(None)).collect();
    let work = || loop {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if i >= paths.len() {
            break;
        }
        let r = FileAccess::open_with_cache(&paths[i], cache.get(&paths[i]).cloned());
        if let Ok(mut g) = results[i].lock() {
            *g = Some(r);
        }
    };
    if nthreads <= 1 {
        work();
    } else {
        std::thread::scope(|s| {
            for _ in 0..nthreads {
                s.spawn(work);
            }
        });
    }
    results
        .into_iter()
        .zip(paths)
        .map(|(m, p)| {
            m.into_inner()
                .ok()
                .flatten()
                .unwrap_or_else(|| Err(Error::Invalid(format!("{}: not opened", p.display()))))
        })
        .collect()
}

impl DataCollection {
    /// Build a collection from opened files (checks source conflicts).
    pub fn from_files(
        files: Vec<Arc<FileAccess>>,
        inc_suspect_trains: bool,
        is_single_run: bool,
    ) -> Result<DataCollection> {
        let mut tids: Vec<u64> = Vec::new();
        for f in &files {
            if inc_suspect_trains {
                tids.extend(&f.train_ids);
            } else {
                tids.extend(f.valid_train_ids());
            }
        }
        tids.sort_unstable();
        tids.dedup();
        let train_ids = Arc::new(tids);
        let mut by_src: BTreeMap<(String, Section), Vec<Arc<FileAccess>>> = BTreeMap::new();
        let mut legacy = BTreeMap::new();
        for f in &files {
            for s in &f.control_sources {
                by_src
                    .entry((s.clone(), Section::Control))
                    .or_default()
                    .push(f.clone());
            }
            for s in &f.instrument_sources {
                by_src
                    .entry((s.clone(), Section::Instrument))
                    .or_default()
                    .push(f.clone());
            }
            legacy.extend(f.legacy_sources.iter().map(|(a, b)| (a.clone(), b.clone())));
        }
        let mut sources = BTreeMap::new();
        for ((name, section), fs) in by_src {
            let canonical = legacy.get(&name).cloned().unwrap_or_else(|| name.clone());
            // A name both in CONTROL and INSTRUMENT cannot happen (':' in instrument names).
            sources.insert(
                name.clone(),
                SourceData {
                    source: name,
                    section,
                    files: fs,
                    sel_keys: None,
                    train_ids: train_ids.clone(),
                    canonical_name: canonical,
                    is_single_run,
                    inc_suspect_trains,
                },
            );
        }
        let dc = DataCollection {
            files,
            train_ids,
            sources,
            is_single_run,
            inc_suspect_trains,
        };
        dc.check_source_conflicts()?;
        Ok(dc)
    }

    /// Same train for the same source in two files -> error. O(n log n) per distinct
    /// file set (sort + adjacent compare), each file set checked once.
    fn check_source_conflicts(&self) -> Result<()> {
        let mut cache: HashMap<Vec<usize>, bool> = HashMap::new();
        let mut bad = Vec::new();
        let ptr_of = |f: &Arc<FileAccess>| Arc::as_ptr(f) as usize;
        for (name, sd) in &self.sources {
            if sd.files.len() < 2 {
                continue;
            }
            let mut key: Vec<usize> = sd.files.iter().map(ptr_of).collect();
            key.sort_unstable();
            let conflict = *cache.entry(key).or_insert_with(|| {
                let mut all: Vec<u64> = Vec::new();
                for f in &sd.files {
                    if self.inc_suspect_trains {
                        all.extend(&f.train_ids);
                    } else {
                        all.extend(f.valid_train_ids());
                    }
                }
                all.sort_unstable();
                all.windows(2).any(|w| w[0] == w[1])
            });
            if conflict {
                bad.push(name.clone());
            }
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(Error::SourceConflict {
                count: bad.len(),
                sources: bad.join(", "),
            })
        }
    }

    /// Open a run directory (EXtra-data's `RunDirectory`).
    pub fn open_run(dir: impl AsRef<Path>, opts: &OpenOptions) -> Result<DataCollection> {
        let dir = dir.as_ref();
        let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        let pat = Pattern::new(&opts.include);
        let mut names: Vec<String> = Vec::new();
        for e in rd {
            let e = e.map_err(|e| Error::io(dir, e))?;
            let n = e.file_name().to_string_lossy().into_owned();
            if n.ends_with(".h5") && n.to_lowercase() != "overview.h5" && pat.matches(&n) {
                names.push(n);
            }
        }
        names.sort();
        if names.is_empty() {
            return Err(Error::NoFiles {
                dir: dir.into(),
                pattern: opts.include.clone(),
            });
        }
        let paths: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
        let mut map = if opts.use_cache {
            Some(RunFilesMap::load(dir))
        } else {
            None
        };
        let dc = Self::from_paths_inner(&paths, map.as_ref(), opts, true)?;
        if let Some(m) = map.as_mut() {
            m.save(&dc.files);
        }
        Ok(dc)
    }

    /// Open one file (EXtra-data's `H5File`).
    pub fn open_file(path: impl AsRef<Path>) -> Result<DataCollection> {
        let f = FileAccess::open(path)?;
        Self::from_files(vec![f], true, true)
    }

    /// Open several files (EXtra-data's `DataCollection.from_paths`).
    pub fn from_paths(paths: &[PathBuf], opts: &OpenOptions) -> Result<DataCollection> {
        Self::from_paths_inner(paths, None, opts, false)
    }

    fn from_paths_inner(
        paths: &[PathBuf],
        map: Option<&RunFilesMap>,
        opts: &OpenOptions,
        is_single_run: bool,
    ) -> Result<DataCollection> {
        let mut cache = HashMap::new();
        if let Some(m) = map {
            for p in paths {
                if let Some(ci) = m.get(p) {
                    cache.insert(p.clone(), ci);
                }
            }
        }
        let results = open_parallel(paths, &cache, opts.threads);
        let mut files = Vec::new();
        let mut errors = Vec::new();
        for (p, r) in paths.iter().zip(results) {
            match r {
                Ok(f) => files.push(f),
                Err(e) => {
                    if opts.report_skipped {
                        eprintln!(
                            "Skipping file {}",
                            p.file_name()
                                .map(|s| s.to_string_lossy())
                                .unwrap_or_default()
                        );
                        eprintln!("  (error was: {e})");
                    }
                    errors.push(e.to_string());
                }
            }
        }
        if files.is_empty() {
            return Err(Error::AllUnusable(errors.join("; ")));
        }
        Self::from_files(files, opts.inc_suspect_trains, is_single_run)
    }

    pub fn control_sources(&self) -> BTreeSet<String> {
        self.sources
            .values()
            .filter(|s| s.is_control())
            .map(|s| s.source.clone())
            .collect()
    }

    pub fn instrument_sources(&self) -> BTreeSet<String> {
        self.sources
            .values()
            .filter(|s| s.is_instrument())
            .map(|s| s.source.clone())
            .collect()
    }

    pub fn all_sources(&self) -> BTreeSet<String> {
        self.sources.keys().cloned().collect()
    }

    /// Legacy name -> canonical name.
    pub fn legacy_sources(&self) -> BTreeMap<String, String> {
        self.sources
            .values()
            .filter(|s| s.is_legacy())
            .map(|s| (s.source.clone(), s.canonical_name.clone()))
            .collect()
    }

    /// Instrument sources matching `(.+/(?:DET|CORR))/(\d+)CH`, minus legacy names.
    pub fn detector_sources(&self) -> BTreeSet<String> {
        let legacy = self.legacy_sources();
        self.instrument_sources()
            .into_iter()
            .filter(|s| detector_source_match(s).is_some() && !legacy.contains_key(s))
            .collect()
    }

    /// The selection: source -> selected keys (None = all).
    pub fn selection(&self) -> BTreeMap<String, Option<BTreeSet<String>>> {
        self.sources
            .iter()
            .map(|(k, v)| (k.clone(), v.sel_keys.clone()))
            .collect()
    }

    /// `run[source]`.
    pub fn source(&self, name: &str) -> Result<&SourceData> {
        self.sources.get(name).ok_or_else(|| Error::SourceName {
            source_name: name.into(),
            hint: near_matches(name, &self.all_sources()),
        })
    }

    /// `run[source, key]` (control keys may omit `.value`).
    pub fn key(&self, source: &str, key: &str) -> Result<KeyData> {
        self.source(source)?.key(key)
    }

    /// Keys of a source (selected ones), with timestamps.
    pub fn keys_for_source(&self, source: &str) -> Result<BTreeSet<String>> {
        self.source(source)?.keys(true)
    }

    fn select_glob(
        &self,
        source_glob: &str,
        key_glob: &str,
    ) -> Result<BTreeMap<String, Option<BTreeSet<String>>>> {
        let sp = Pattern::new(source_glob);
        let kp = Pattern::new(key_glob);
        let ctrl_glob = if key_glob.ends_with(".value") || key_glob.ends_with('*') {
            key_glob.to_string()
        } else {
            format!("{key_glob}.value")
        };
        let cp = Pattern::new(&ctrl_glob);
        let mut matched = BTreeMap::new();
        for (name, sd) in &self.sources {
            if !sp.matches(name) {
                continue;
            }
            if key_glob == "*" {
                matched.insert(name.clone(), sd.sel_keys.clone());
            } else if !Pattern::has_wildcards(key_glob) {
                let k = if sd.is_control() {
                    &ctrl_glob
                } else {
                    key_glob
                };
                if sd.has_key(k)? {
                    matched.insert(name.clone(), Some(BTreeSet::from([k.to_string()])));
                }
            } else {
                let p = if sd.is_control() { &cp } else { &kp };
                let keys: BTreeSet<String> = sd
                    .keys(true)?
                    .into_iter()
                    .filter(|k| p.matches(k))
                    .collect();
                if !keys.is_empty() {
                    matched.insert(name.clone(), Some(keys));
                }
            }
        }
        if matched.is_empty() {
            return Err(Error::NoMatch {
                source_glob: source_glob.into(),
                key_glob: key_glob.into(),
            });
        }
        Ok(matched)
    }

    /// Expand (source glob, key glob) pairs into source -> keys, union over patterns.
    fn expand(
        &self,
        patterns: &[(String, String)],
    ) -> Result<BTreeMap<String, Option<BTreeSet<String>>>> {
        let mut out: BTreeMap<String, Option<BTreeSet<String>>> = BTreeMap::new();
        for (s, k) in patterns {
            for (src, keys) in self.select_glob(s, k)? {
                match out.get_mut(&src) {
                    None => {
                        out.insert(src, keys);
                    }
                    Some(cur) => match (cur.as_mut(), keys) {
                        (None, _) => {}
                        (Some(_), None) => *cur = None,
                        (Some(c), Some(k)) => c.extend(k),
                    },
                }
            }
        }
        Ok(out)
    }

    /// Select sources and keys by (source glob, key glob) pairs. `require_all` /
    /// `require_any` keep only trains where all / any selected source index groups have data.
    pub fn select(
        &self,
        patterns: &[(String, String)],
        require_all: bool,
        require_any: bool,
    ) -> Result<DataCollection> {
        let expanded = self.expand(patterns)?;
        let mut sources: BTreeMap<String, SourceData> = BTreeMap::new();
        for (src, keys) in expanded {
            let sd = &self.sources[&src];
            sources.insert(src, sd.select_keys(keys));
        }
        let mut train_ids = self.train_ids.clone();
        if require_all || require_any {
            let mut tids: BTreeSet<u64> = if require_all {
                self.train_ids.iter().copied().collect()
            } else {
                BTreeSet::new()
            };
            for (src, sd) in &sources {
                if sd.is_run_only()? {
                    continue;
                }
                for g in sd.index_groups()? {
                    let mut have = BTreeSet::new();
                    for f in &self.sources[src].files {
                        let ix = f.get_index(src, &g)?;
                        for (i, (&t, &c)) in f.train_ids.iter().zip(&ix.1).enumerate() {
                            if c > 0 && (self.inc_suspect_trains || f.validity_flag[i]) {
                                have.insert(t);
                            }
                        }
                    }
                    if require_all {
                        tids = tids.intersection(&have).copied().collect();
                    } else {
                        tids.extend(have);
                    }
                }
            }
            let v: Vec<u64> = tids.into_iter().collect();
            train_ids = Arc::new(v);
            for sd in sources.values_mut() {
                *sd = sd.only_tids(train_ids.clone());
            }
        }
        self.rebuild(sources, train_ids)
    }

    /// Select by a simple source glob and key glob.
    pub fn select_glob_pair(&self, source_glob: &str, key_glob: &str) -> Result<DataCollection> {
        self.select(&[(source_glob.into(), key_glob.into())], false, false)
    }

    /// Everything except the matched sources / keys.
    pub fn deselect(&self, patterns: &[(String, String)]) -> Result<DataCollection> {
        let expanded = self.expand(patterns)?;
        let mut sources = BTreeMap::new();
        for (name, sd) in &self.sources {
            match expanded.get(name) {
                None => {
                    sources.insert(name.clone(), sd.clone());
                }
                Some(None) => {}
                Some(Some(drop)) => {
                    let cur = sd.keys(true)?;
                    let keep: BTreeSet<String> = cur.difference(drop).cloned().collect();
                    if !keep.is_empty() {
                        sources.insert(
                            name.clone(),
                            SourceData {
                                sel_keys: Some(keep),
                                ..sd.clone()
                            },
                        );
                    }
                }
            }
        }
        self.rebuild(sources, self.train_ids.clone())
    }

    fn rebuild(
        &self,
        sources: BTreeMap<String, SourceData>,
        train_ids: Arc<Vec<u64>>,
    ) -> Result<DataCollection> {
        let mut seen = BTreeSet::new();
        let mut files = Vec::new();
        for sd in sources.values() {
            for f in &sd.files {
                if seen.insert(Arc::as_ptr(f) as usize) {
                    files.push(f.clone());
                }
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(DataCollection {
            files,
            train_ids,
            sources,
            is_single_run: self.is_single_run,
            inc_suspect_trains: self.inc_suspect_trains,
        })
    }

    /// Select trains by ID range/list or by index.
    pub fn select_trains(&self, sel: &TrainSelection) -> Result<DataCollection> {
        let tids = Arc::new(select_train_ids(&self.train_ids, sel)?);
        let sources = self
            .sources
            .iter()
            .map(|(k, v)| (k.clone(), v.only_tids(tids.clone())))
            .collect();
        self.rebuild(sources, tids)
    }

    /// Split into parts with EXtra-data's arithmetic.
    pub fn split_trains(
        &self,
        parts: Option<usize>,
        trains_per_part: Option<usize>,
    ) -> Result<Vec<DataCollection>> {
        split_ranges(self.train_ids.len(), parts, trains_per_part)?
            .into_iter()
            .map(|r| {
                self.select_trains(&TrainSelection::IndexRange(
                    Some(r.start as i64),
                    Some(r.end as i64),
                    None,
                ))
            })
            .collect()
    }

    /// Union of collections: sources merged, train IDs unioned and applied to all.
    pub fn union(&self, others: &[&DataCollection]) -> Result<DataCollection> {
        let mut sources: BTreeMap<String, SourceData> = self.sources.clone();
        for o in others {
            for (name, sd) in &o.sources {
                match sources.get_mut(name) {
                    None => {
                        sources.insert(name.clone(), sd.clone());
                    }
                    Some(cur) => {
                        let sel = match (&cur.sel_keys, &sd.sel_keys) {
                            (Some(a), Some(b)) => Some(a.union(b).cloned().collect()),
                            _ => None,
                        };
                        let mut files = cur.files.clone();
                        for f in &sd.files {
                            if !files.iter().any(|g| Arc::ptr_eq(g, f) || g.path == f.path) {
                                files.push(f.clone());
                            }
                        }
                        files.sort_by_key(|f| f.filename());
                        cur.files = files;
                        cur.sel_keys = sel;
                    }
                }
            }
        }
        let mut tids: BTreeSet<u64> = self.train_ids.iter().copied().collect();
        for o in others {
            tids.extend(o.train_ids.iter().copied());
        }
        let tids = Arc::new(tids.into_iter().collect::<Vec<_>>());
        for sd in sources.values_mut() {
            sd.train_ids = tids.clone();
        }
        let mut dc = self.rebuild(sources, tids)?;
        dc.is_single_run = self.is_single_run
            && others.iter().all(|o| o.is_single_run)
            && self.run_ident().is_some()
            && others.iter().all(|o| o.run_ident() == self.run_ident());
        dc.check_source_conflicts()?;
        Ok(dc)
    }

    /// (proposal, run) from the first file's METADATA, if present.
    fn run_ident(&self) -> Option<(u64, u64)> {
        let f = self.files.first()?;
        let h = f.file().ok()?;
        let p = h.read_u64("METADATA/proposalNumber", Some(1)).ok()?;
        let r = h.read_u64("METADATA/runNumber", Some(1)).ok()?;
        Some((*p.first()?, *r.first()?))
    }

    /// KeyData of every selected key, built once for per-train access.
    fn all_key_data(&self) -> Result<Vec<(String, bool, KeyData)>> {
        let mut v = Vec::new();
        for (name, sd) in &self.sources {
            for k in sd.keys(true)? {
                v.push((name.clone(), sd.is_control(), sd.key(&k)?));
            }
        }
        Ok(v)
    }

    /// One train's values from prepared KeyData (control: the train's row; instrument:
    /// all its entries; keys without data for the train are omitted).
    fn train_values(&self, keys: &[(String, bool, KeyData)], tid: u64) -> Result<TrainData> {
        let mut out: TrainData = self
            .sources
            .keys()
            .map(|s| (s.clone(), BTreeMap::new()))
            .collect();
        for (name, is_control, kd) in keys {
            let Some((f, first, count)) = kd.train_rows(tid) else {
                continue;
            };
            if count == 0 {
                continue;
            }
            let count = if *is_control { 1 } else { count };
            let path = kd.hdf5_data_path();
            let v = if kd.dtype == DType::VlenStr {
                let h = f.file()?;
                let ds = h.dataset(&path)?;
                TrainValue::Strings(read_strings_ds(
                    &ds,
                    &f.path,
                    &path,
                    Some((first as usize, (first + count) as usize)),
                )?)
            } else {
                let eb = kd.entry_bytes()?;
                let mut buf: Vec<u8> = alloc_vec(eb * count as usize, &kd.source, &kd.key)?;
                if !f.read_rows_mapped(path.trim_start_matches('/'), first, count, eb, &mut buf)? {
                    let h = f.file()?;
                    let ds = h.dataset(&path)?;
                    h.read_rows_raw(&ds, &path, first, count, eb, &mut buf)?;
                }
                let mut shape = vec![count as usize];
                shape.extend(&kd.entry_shape);
                if *is_control {
                    shape.remove(0);
                }
                TrainValue::Array {
                    dtype: kd.dtype.clone(),
                    shape,
                    bytes: buf,
                }
            };
            if let Some(m) = out.get_mut(name) {
                m.insert(kd.key.clone(), v);
            }
        }
        Ok(out)
    }

    /// Data of the selected sources for one train: source -> key -> value.
    pub fn train_from_id(&self, tid: u64) -> Result<TrainData> {
        if self.train_ids.binary_search(&tid).is_err() {
            return Err(Error::TrainId(tid));
        }
        let keys = self.all_key_data()?;
        self.train_values(&keys, tid)
    }

    /// Iterate over trains: `(train_id, data)`, data as from
    /// [`DataCollection::train_from_id`]. The per-key index is prepared once, on the
    /// first step; each step then reads only that train's rows.
    pub fn trains(&self) -> TrainIter<'_> {
        TrainIter {
            dc: self,
            keys: None,
            pos: 0,
        }
    }

    /// Auxiliary (REDUCTION / ERRATA) sources, named like EXtra-data's
    /// `AuxiliaryIndexer`: `AGGREGATOR@source` unless exactly one aggregator has the
    /// source and it ends with a regular source of one of that aggregator's files.
    /// Returns section -> (display name -> aggregator of its first file).
    pub fn auxiliary_sources(&self) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        // (source, section) -> aggregator -> files
        type ByAgg = BTreeMap<String, Vec<Arc<FileAccess>>>;
        let mut by_src: BTreeMap<(String, String), ByAgg> = BTreeMap::new();
        let mut files: Vec<&Arc<FileAccess>> = self.files.iter().collect();
        files.sort_by_key(|f| f.filename());
        for f in files {
            let agg = f.aggregator().unwrap_or_else(|| "None".into());
            for (section, srcs) in f.auxiliary_sources()? {
                for s in srcs {
                    by_src
                        .entry((s, section.clone()))
                        .or_default()
                        .entry(agg.clone())
                        .or_default()
                        .push(f.clone());
                }
            }
        }
        let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for ((src, section), by_agg) in by_src {
            let mut with_prefix = true;
            if by_agg.len() == 1 {
                if let Some(fs) = by_agg.values().next() {
                    if fs.iter().any(|f| {
                        f.all_sources()
                            .iter()
                            .any(|real| src.ends_with(real.as_str()))
                    }) {
                        with_prefix = false;
                    }
                }
            }
            let m = out.entry(section).or_default();
            for (agg, fs) in by_agg {
                let name = if with_prefix {
                    format!("{agg}@{src}")
                } else {
                    src.clone()
                };
                let first_agg = fs
                    .first()
                    .and_then(|f| f.aggregator())
                    .unwrap_or_else(|| "None".into());
                m.insert(name, first_agg);
            }
        }
        Ok(out)
    }

    /// Timestamp of each train (ns since the Unix epoch, UTC) from `INDEX/timestamp`;
    /// `None` where no file has one (format 0.5) or it is 0 (EXtra-data's NaT).
    pub fn train_timestamps(&self) -> Result<Vec<Option<u64>>> {
        let pos: HashMap<u64, usize> = self
            .train_ids
            .iter()
            .enumerate()
            .map(|(i, &t)| (t, i))
            .collect();
        let mut out: Vec<Option<u64>> = vec![None; self.train_ids.len()];
        let mut missing = self.train_ids.len();
        for f in &self.files {
            if missing == 0 {
                break;
            }
            let wanted = f.train_ids.iter().zip(&f.validity_flag).any(|(t, &v)| {
                pos.get(t).is_some_and(|&i| out[i].is_none()) && (v || self.inc_suspect_trains)
            });
            if !wanted {
                continue;
            }
            let Some(ts) = f.timestamps()? else {
                continue;
            };
            for ((t, &v), &s) in f.train_ids.iter().zip(&f.validity_flag).zip(&ts) {
                if !(v || self.inc_suspect_trains) {
                    continue;
                }
                if let Some(&i) = pos.get(t) {
                    if out[i].is_none() && s != 0 {
                        out[i] = Some(s);
                        missing -= 1;
                    }
                }
            }
        }
        Ok(out)
    }

    /// `detector_info`: pixel dims (last two of image.data), frames per train
    /// (from the first file by name), total frames estimate.
    pub fn detector_info(&self, source: &str) -> Result<(Vec<usize>, u64, u64)> {
        let sd = self.source(source)?;
        let mut fs: Vec<&Arc<FileAccess>> = sd.files.iter().collect();
        fs.sort_by_key(|f| f.filename());
        let f0 = fs
            .first()
            .ok_or_else(|| Error::Invalid(format!("{source}: no files")))?;
        let ix = f0.get_index(source, "image")?;
        let mut counts: BTreeSet<u64> = ix.1.iter().copied().collect();
        counts.remove(&0);
        if counts.len() > 1 {
            eprintln!("warning: Varying number of frames per train: {counts:?}");
        }
        let fpt = counts.iter().next().copied().unwrap_or(0);
        let (_, shape) = f0.key_dtype_shape(source, "image.data")?;
        let dims = shape[shape.len().saturating_sub(2)..].to_vec();
        Ok((dims, fpt, fpt.saturating_mul(self.train_ids.len() as u64)))
    }
}

/// Match `(.+/(?:DET|CORR))/(\d+)CH` at the start: (detector name, module number string).
pub fn detector_source_match(s: &str) -> Option<(String, String)> {
    // Greedy `.+` then backtrack: find the last position where the rest matches.
    let b = s.as_bytes();
    let mut best = None;
    for (i, _) in s.match_indices('/') {
        // name = s[..i] must end with "/DET" or "/CORR" and be more than that
        let name = &s[..i];
        let ok = (name.ends_with("/DET") && name.len() > 4)
            || (name.ends_with("/CORR") && name.len() > 5);
        if !ok {
            continue;
        }
        let mut j = i + 1;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > i + 1 && s[j..].starts_with("CH") {
            best = Some((name.to_string(), s[i + 1..j].to_string()));
        }
    }
    best
}
