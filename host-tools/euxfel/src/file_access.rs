//! One EuXFEL HDF5 file: metadata read once at open, index and keys read lazily.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use super::error::{Error, Result};
use super::h5::{DType, H5File};

/// Information from a file name `RAW-R0450-DA01-S00000.h5`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilenameInfo {
    pub category: String,
    pub run: u32,
    pub aggregator: String,
    pub sequence: u32,
}

impl FilenameInfo {
    /// Parse like EXtra-data's `([A-Z]+)-R(\d{4})-(\w+)(?:-S(\d{5}))?.h5` (matched at the start).
    pub fn parse(name: &str) -> Option<FilenameInfo> {
        let b = name.as_bytes();
        let mut i = 0;
        while i < b.len() && b[i].is_ascii_uppercase() {
            i += 1;
        }
        if i == 0 || b.get(i) != Some(&b'-') || b.get(i + 1) != Some(&b'R') {
            return None;
        }
        let category = name[..i].to_string();
        let r0 = i + 2;
        if b.len() < r0 + 5 || !b[r0..r0 + 4].iter().all(u8::is_ascii_digit) || b[r0 + 4] != b'-' {
            return None;
        }
        let run: u32 = name[r0..r0 + 4].parse().ok()?;
        let rest = &name[r0 + 5..];
        // \w+ is greedy and may contain '-'? No: \w excludes '-'. Then (?:-S\d{5})? then any char then 'h5'.
        let wlen = rest
            .char_indices()
            .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
            .map_or(rest.len(), |(p, _)| p);
        if wlen == 0 {
            return None;
        }
        let agg = &rest[..wlen];
        let after = &rest[wlen..];
        let rb = after.as_bytes();
        let (seq, tail) = if rb.len() >= 7
            && rb[0] == b'-'
            && rb[1] == b'S'
            && rb[2..7].iter().all(u8::is_ascii_digit)
        {
            (after[2..7].parse().ok()?, &after[7..])
        } else {
            (0, after)
        };
        // '.h5' where '.' is any char.
        let tc: Vec<char> = tail.chars().take(3).collect();
        if tc.len() < 3 || tc[1] != 'h' || tc[2] != '5' {
            // \w+ backtracking: the regex could also match a shorter aggregator when the
            // name continues with word chars; real names never need that.
            return None;
        }
        Some(FilenameInfo {
            category,
            run,
            aggregator: agg.to_string(),
            sequence: if agg == "OVERVIEW" { 0 } else { seq },
        })
    }
}

/// Global limit on simultaneously open HDF5 handles (LRU).
struct OpenLimiter {
    max: usize,
    /// Most recently used at the back.
    order: Vec<(usize, std::sync::Weak<FileAccess>)>,
}

fn limiter() -> &'static Mutex<OpenLimiter> {
    static L: OnceLock<Mutex<OpenLimiter>> = OnceLock::new();
    L.get_or_init(|| {
        Mutex::new(OpenLimiter {
            max: default_max_open(),
            order: Vec::new(),
        })
    })
}

fn default_max_open() -> usize {
    if let Some(n) = std::env::var("EUXFEL_MAX_OPEN_FILES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        return n.max(1);
    }
    // Half of the soft fd limit, like EXtra-data (which first raises soft to hard).
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(3)
                        .and_then(|v| v.parse::<usize>().ok())
                })
        })
        .unwrap_or(1024);
    (soft / 2).max(16)
}

/// Set the maximum number of simultaneously open files (for tests and tools).
pub fn set_max_open_files(n: usize) {
    if let Ok(mut l) = limiter().lock() {
        l.max = n.max(1);
    }
}

static NEXT_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Cached metadata from the run map (or from opening the file).
#[derive(Debug, Clone)]
pub(crate) struct CachedInfo {
    pub train_ids: Vec<u64>,
    pub control_sources: BTreeSet<String>,
    pub instrument_sources: BTreeSet<String>,
    pub legacy_sources: BTreeMap<String, String>,
    pub flag: Vec<bool>,
}

type IndexPair = Arc<(Vec<u64>, Vec<u64>)>;
/// RUN entries: key -> (dtype, stored shape).
pub(crate) type RunEntries = BTreeMap<String, (DType, Vec<usize>)>;

/// One EuXFEL HDF5 file (EXtra-data's `FileAccess`).
pub struct FileAccess {
    id: usize,
    /// Absolute path.
    pub path: PathBuf,
    pub train_ids: Vec<u64>,
    /// `true` for good trains (INDEX/flag; guessed for 0.5; inverted for 1.1).
    pub validity_flag: Vec<bool>,
    pub control_sources: BTreeSet<String>,
    pub instrument_sources: BTreeSet<String>,
    /// Legacy (soft-linked) source name -> canonical name.
    pub legacy_sources: BTreeMap<String, String>,
    /// st_mtime as a float (like Python's os.stat) and size when metadata was read.
    pub mtime: f64,
    pub size: u64,
    format_version: OnceLock<String>,
    /// Map used by the pure-Rust reader (None: the file needs libhdf5).
    raw_map: OnceLock<Option<Arc<memmap2::Mmap>>>,
    handle: Mutex<Option<Arc<H5File>>>,
    index_cache: Mutex<HashMap<(String, String), IndexPair>>,
    keys_cache: Mutex<HashMap<String, Arc<BTreeSet<String>>>>,
}

impl std::fmt::Debug for FileAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileAccess({:?})", self.path)
    }
}

pub(crate) fn stat_mtime_size(path: &Path) -> Result<(f64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    // Python: st_mtime = sec + nsec * 1e-9 as a double.
    let mtime = m.mtime() as f64 + m.mtime_nsec() as f64 * 1e-9;
    Ok((mtime, m.size()))
}

impl FileAccess {
    /// Open a file and read its metadata (train IDs, sources, flags).
    pub fn open(path: impl AsRef<Path>) -> Result<Arc<FileAccess>> {
        Self::open_with_cache(path.as_ref(), None)
    }

    pub(crate) fn open_with_cache(
        path: &Path,
        cache: Option<CachedInfo>,
    ) -> Result<Arc<FileAccess>> {
        let path = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
        let (mtime, size) = stat_mtime_size(&path)?;
        let mut fa = FileAccess {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            path: path.clone(),
            train_ids: Vec::new(),
            validity_flag: Vec::new(),
            control_sources: BTreeSet::new(),
            instrument_sources: BTreeSet::new(),
            legacy_sources: BTreeMap::new(),
            mtime,
            size,
            format_version: OnceLock::new(),
            raw_map: OnceLock::new(),
            handle: Mutex::new(None),
            index_cache: Mutex::new(HashMap::new()),
            keys_cache: Mutex::new(HashMap::new()),
        };
        if let Some(c) = cache {
            fa.train_ids = c.train_ids;
            fa.control_sources = c.control_sources;
            fa.instrument_sources = c.instrument_sources;
            fa.legacy_sources = c.legacy_sources;
            fa.validity_flag = c.flag;
            return Ok(Arc::new(fa));
        }
        let map = map_file(&path)?;
        let raw = if raw_disabled() {
            None
        } else {
            read_meta_raw(&path, &map)?
        };
        if let Some(m) = raw {
            let _ = fa.format_version.set(m.fv);
            fa.train_ids = m.train_ids;
            fa.validity_flag = m.flag;
            fa.control_sources = m.sources.0;
            fa.instrument_sources = m.sources.1;
            fa.legacy_sources = m.sources.2;
            let _ = fa.raw_map.set(Some(map));
            return Ok(Arc::new(fa));
        }
        let _ = fa.raw_map.set(None);
        drop(map);
        let h = Arc::new(H5File::open(&path)?);
        let fv = read_format_version(&h)?;
        let _ = fa.format_version.set(fv.clone());
        if !h.has("INDEX/trainId") {
            return Err(Error::structure(&path, "INDEX/trainId dataset not found"));
        }
        let tids = h.read_u64("INDEX/trainId", None)?;
        // Trailing zero padding (and any zeros) are dropped, like tid[tid != 0].
        fa.train_ids = tids.into_iter().filter(|&t| t != 0).collect();
        let (c, i, l) = read_data_sources(&h, &fv)?;
        fa.control_sources = c;
        fa.instrument_sources = i;
        fa.legacy_sources = l;
        let n = fa.train_ids.len();
        fa.validity_flag = if fv == "0.5" {
            guess_valid_trains(&fa.train_ids)
        } else {
            if !h.has("INDEX/flag") {
                return Err(Error::structure(&path, "INDEX/flag dataset not found"));
            }
            let flag = h.read_i64("INDEX/flag", n)?;
            if flag.len() < n {
                return Err(Error::structure(
                    &path,
                    format!("INDEX/flag has {} entries for {n} train IDs", flag.len()),
                ));
            }
            let mut v: Vec<bool> = flag.iter().map(|&x| x != 0).collect();
            if fv == "1.1" {
                for x in v.iter_mut() {
                    *x = !*x;
                }
            }
            v
        };
        let fa = Arc::new(fa);
        fa.install_handle(h);
        Ok(fa)
    }

    fn install_handle(self: &Arc<Self>, h: Arc<H5File>) {
        if let Ok(mut g) = self.handle.lock() {
            *g = Some(h);
        }
        self.touch();
    }

    fn touch(self: &Arc<Self>) {
        let mut to_close = Vec::new();
        if let Ok(mut l) = limiter().lock() {
            l.order
                .retain(|(id, w)| *id != self.id && w.strong_count() > 0);
            l.order.push((self.id, Arc::downgrade(self)));
            while l.order.len() > l.max {
                let (_, w) = l.order.remove(0);
                if let Some(fa) = w.upgrade() {
                    to_close.push(fa);
                }
            }
        }
        for fa in to_close {
            fa.close();
        }
    }

    /// Close the HDF5 handle (it is reopened on demand).
    pub fn close(&self) {
        if let Ok(mut g) = self.handle.lock() {
            *g = None;
        }
    }

    /// Whether the open-time metadata was read by the pure-Rust reader (no libhdf5).
    pub fn read_without_libhdf5(&self) -> bool {
        matches!(self.raw_map.get(), Some(Some(_)))
    }

    /// Whether the HDF5 handle is currently open.
    pub fn is_open(&self) -> bool {
        self.handle.lock().map(|g| g.is_some()).unwrap_or(false)
    }

    pub(crate) fn file(self: &Arc<Self>) -> Result<Arc<H5File>> {
        {
            let g = self
                .handle
                .lock()
                .map_err(|_| Error::Invalid("file handle lock poisoned".into()))?;
            if let Some(h) = g.as_ref() {
                let h = h.clone();
                drop(g);
                self.touch();
                return Ok(h);
            }
        }
        let h = Arc::new(H5File::open(&self.path)?);
        if let Ok(mut g) = self.handle.lock() {
            *g = Some(h.clone());
        }
        self.touch();
        Ok(h)
    }

    pub fn filename(&self) -> String {
        self.path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    pub fn filename_info(&self) -> Option<FilenameInfo> {
        FilenameInfo::parse(&self.filename())
    }

    pub fn aggregator(&self) -> Option<String> {
        self.filename_info().map(|i| i.aggregator)
    }

    /// Format version: `METADATA/dataFormatVersion[0]`, or "0.5" when absent.
    pub fn format_version(self: &Arc<Self>) -> Result<String> {
        if let Some(v) = self.format_version.get() {
            return Ok(v.clone());
        }
        let h = self.file()?;
        let v = read_format_version(&h)?;
        let _ = self.format_version.set(v.clone());
        Ok(v)
    }

    pub fn valid_train_ids(&self) -> Vec<u64> {
        self.train_ids
            .iter()
            .zip(&self.validity_flag)
            .filter(|(_, &f)| f)
            .map(|(&t, _)| t)
            .collect()
    }

    pub fn all_sources(&self) -> BTreeSet<String> {
        self.control_sources
            .union(&self.instrument_sources)
            .cloned()
            .collect()
    }

    /// Index groups of a source: `{""}` for control, the children of `INDEX/<src>` otherwise.
    pub fn index_groups(self: &Arc<Self>, source: &str) -> Result<BTreeSet<String>> {
        if self.control_sources.contains(source) {
            return Ok(BTreeSet::from([String::new()]));
        }
        if !self.instrument_sources.contains(source) {
            return Err(Error::SourceName {
                source_name: source.into(),
                hint: format!(" in {}", self.path.display()),
            });
        }
        let h = self.file()?;
        let g = h.group(&format!("INDEX/{source}"))?;
        let names = g
            .member_names()
            .map_err(|e| Error::h5(&self.path, &format!("INDEX/{source}"), e))?;
        Ok(names.into_iter().collect())
    }

    /// `(first, count)` arrays of a source's index group, truncated to the number of trains.
    /// The legacy `first/last/status` form gives `count = (last - first + 1) * status`.
    pub fn get_index(self: &Arc<Self>, source: &str, group: &str) -> Result<IndexPair> {
        let k = (source.to_string(), group.to_string());
        if let Ok(c) = self.index_cache.lock() {
            if let Some(v) = c.get(&k) {
                return Ok(v.clone());
            }
        }
        let n = self.train_ids.len();
        if let Some(v) = self.get_index_raw(source, group, n) {
            let v = Arc::new(v);
            if let Ok(mut c) = self.index_cache.lock() {
                c.insert(k, v.clone());
            }
            return Ok(v);
        }
        let h = self.file()?;
        let base = if group.is_empty() {
            format!("INDEX/{source}")
        } else {
            format!("INDEX/{source}/{group}")
        };
        let first = h.read_u64(&format!("{base}/first"), Some(n))?;
        let count = if h.has(&format!("{base}/count")) {
            h.read_u64(&format!("{base}/count"), Some(n))?
        } else if h.has(&format!("{base}/last")) && h.has(&format!("{base}/status")) {
            let last = h.read_u64(&format!("{base}/last"), Some(n))?;
            let status = h.read_u64(&format!("{base}/status"), Some(n))?;
            first
                .iter()
                .zip(&last)
                .zip(&status)
                .map(|((&f, &l), &s)| l.wrapping_sub(f).wrapping_add(1).wrapping_mul(s))
                .collect()
        } else {
            return Err(Error::structure(
                &self.path,
                format!("{base}: neither count nor last/status datasets"),
            ));
        };
        if first.len() < n || count.len() < n {
            return Err(Error::structure(
                &self.path,
                format!(
                    "{base}: index has {} first / {} count entries for {n} trains",
                    first.len(),
                    count.len()
                ),
            ));
        }
        let v = Arc::new((first, count));
        if let Ok(mut c) = self.index_cache.lock() {
            c.insert(k, v.clone());
        }
        Ok(v)
    }

    /// The index through the pure-Rust reader, if the file's structures allow it.
    fn get_index_raw(&self, source: &str, group: &str, n: usize) -> Option<(Vec<u64>, Vec<u64>)> {
        if raw_disabled() {
            return None;
        }
        let map = self
            .raw_map
            .get_or_init(|| map_file(&self.path).ok())
            .clone()?;
        let f = super::rawh5::RawFile::new(&map).ok()?;
        let base = if group.is_empty() {
            format!("INDEX/{source}")
        } else {
            format!("INDEX/{source}/{group}")
        };
        let n64 = n as u64;
        let first = f.read_ints(&format!("{base}/first"), Some(n64)).ok()?;
        let count = match f.read_ints(&format!("{base}/count"), Some(n64)) {
            Ok(c) => c,
            Err(super::rawh5::RawError::NotFound(_)) => {
                let last = f.read_ints(&format!("{base}/last"), Some(n64)).ok()?;
                let status = f.read_ints(&format!("{base}/status"), Some(n64)).ok()?;
                first
                    .iter()
                    .zip(&last)
                    .zip(&status)
                    .map(|((&f, &l), &s)| l.wrapping_sub(f).wrapping_add(1).wrapping_mul(s))
                    .collect()
            }
            Err(_) => return None,
        };
        if first.len() < n || count.len() < n {
            return None; // let the libhdf5 path report it
        }
        Some((first, count))
    }

    fn section_of(&self, source: &str) -> Result<&'static str> {
        if self.control_sources.contains(source) {
            Ok("CONTROL")
        } else if self.instrument_sources.contains(source) {
            Ok("INSTRUMENT")
        } else {
            Err(Error::SourceName {
                source_name: source.into(),
                hint: format!(" in {}", self.path.display()),
            })
        }
    }

    /// All keys (datasets below `CONTROL/<src>` or `INSTRUMENT/<src>`), with `.` separators.
    pub fn get_keys(self: &Arc<Self>, source: &str) -> Result<Arc<BTreeSet<String>>> {
        if let Ok(c) = self.keys_cache.lock() {
            if let Some(v) = c.get(source) {
                return Ok(v.clone());
            }
        }
        let section = self.section_of(source)?;
        let h = self.file()?;
        let mut res = BTreeSet::new();
        walk_datasets(&h, &format!("{section}/{source}"), "", &mut res)?;
        let v = Arc::new(res);
        if let Ok(mut c) = self.keys_cache.lock() {
            c.insert(source.to_string(), v.clone());
        }
        Ok(v)
    }

    /// Whether a key exists (checked directly, without walking).
    pub fn has_source_key(self: &Arc<Self>, source: &str, key: &str) -> Result<bool> {
        if let Ok(c) = self.keys_cache.lock() {
            if let Some(v) = c.get(source) {
                return Ok(v.contains(key));
            }
        }
        let section = self.section_of(source)?;
        let h = self.file()?;
        let p = format!("{section}/{source}/{}", key.replace('.', "/"));
        Ok(h.has(&p) && h.h5.dataset(&p).is_ok())
    }

    /// dtype and shape of a key's dataset.
    pub fn key_dtype_shape(
        self: &Arc<Self>,
        source: &str,
        key: &str,
    ) -> Result<(DType, Vec<usize>)> {
        let section = self.section_of(source)?;
        let p = format!("{section}/{source}/{}", key.replace('.', "/"));
        self.dataset_dtype_shape(&p)
    }

    /// Read rows of a fixed-size dataset straight from the map (pure Rust).
    /// `Ok(false)`: the layout needs libhdf5 (filters, other structures).
    pub(crate) fn read_rows_mapped(
        &self,
        p: &str,
        start: u64,
        count: u64,
        row_bytes: usize,
        out: &mut [u8],
    ) -> Result<bool> {
        use super::rawh5::{RawError, RawFile};
        if raw_disabled() {
            return Ok(false);
        }
        let Some(map) = self
            .raw_map
            .get_or_init(|| map_file(&self.path).ok())
            .clone()
        else {
            return Ok(false);
        };
        let r = RawFile::new(&map).and_then(|f| {
            f.dataset(p)
                .and_then(|ds| f.read_row_range(&ds, start, count, row_bytes as u64, out))
        });
        match r {
            Ok(()) => Ok(true),
            Err(RawError::Corrupt(m)) => Err(Error::structure(&self.path, format!("{p}: {m}"))),
            Err(_) => Ok(false),
        }
    }

    /// `INDEX/timestamp` (ns since the Unix epoch, UTC) for this file's trains, or
    /// `None` if the file has none (format 0.5).
    pub fn timestamps(self: &Arc<Self>) -> Result<Option<Vec<u64>>> {
        const P: &str = "INDEX/timestamp";
        // Raw reads are by position in INDEX/trainId (zeros included), so read the
        // full datasets and keep the entries of non-zero train IDs.
        if !raw_disabled() {
            if let Some(map) = self
                .raw_map
                .get_or_init(|| map_file(&self.path).ok())
                .clone()
            {
                use super::rawh5::{RawError, RawFile};
                let r = RawFile::new(&map).and_then(|f| {
                    let tids = f.read_ints("INDEX/trainId", None)?;
                    match f.read_ints(P, None) {
                        Ok(ts) => Ok(Some((tids, ts))),
                        Err(RawError::NotFound(_)) => Ok(None),
                        Err(e) => Err(e),
                    }
                });
                match r {
                    Ok(None) => return Ok(None),
                    Ok(Some((tids, ts))) => {
                        return Ok(Some(
                            tids.iter()
                                .zip(ts.iter().chain(std::iter::repeat(&0)))
                                .filter(|(&t, _)| t != 0)
                                .map(|(_, &s)| s)
                                .collect(),
                        ))
                    }
                    Err(_) => {}
                }
            }
        }
        let h = self.file()?;
        if !h.has(P) {
            return Ok(None);
        }
        let tids = h.read_u64("INDEX/trainId", None)?;
        let ts = h.read_u64(P, None)?;
        Ok(Some(
            tids.iter()
                .zip(ts.iter().chain(std::iter::repeat(&0)))
                .filter(|(&t, _)| t != 0)
                .map(|(_, &s)| s)
                .collect(),
        ))
    }

    /// Auxiliary sources (`METADATA/auxiliarySources/<SECTION>`, format 2025+):
    /// section -> source names (entry minus the section prefix and the index group).
    pub fn auxiliary_sources(self: &Arc<Self>) -> Result<BTreeMap<String, BTreeSet<String>>> {
        const BASE: &str = "METADATA/auxiliarySources";
        let mut lists: Option<Vec<(String, Vec<String>)>> = None;
        if !raw_disabled() {
            if let Some(map) = self
                .raw_map
                .get_or_init(|| map_file(&self.path).ok())
                .clone()
            {
                use super::rawh5::{RawError, RawFile};
                let r = RawFile::new(&map).and_then(|f| match f.resolve(BASE) {
                    Err(RawError::NotFound(_)) => Ok(Vec::new()),
                    Err(e) => Err(e),
                    Ok(addr) => {
                        let mut names: Vec<String> = f.members(addr)?.into_keys().collect();
                        names.sort();
                        names
                            .into_iter()
                            .map(|n| {
                                let v = f.read_strings(&format!("{BASE}/{n}"))?;
                                Ok((n, v))
                            })
                            .collect()
                    }
                });
                lists = r.ok();
            }
        }
        let lists = match lists {
            Some(l) => l,
            None => {
                let h = self.file()?;
                if !h.has(BASE) {
                    Vec::new()
                } else {
                    let g = h.group(BASE)?;
                    let mut names = g
                        .member_names()
                        .map_err(|e| Error::h5(&self.path, BASE, e))?;
                    names.sort();
                    let mut out = Vec::new();
                    for n in names {
                        let v = h.read_strings(&format!("{BASE}/{n}"))?;
                        out.push((n, v));
                    }
                    out
                }
            }
        };
        let mut res = BTreeMap::new();
        for (section, ids) in lists {
            let mut set = BTreeSet::new();
            for id in ids {
                if id.is_empty() {
                    continue;
                }
                let rest = id.get(section.len() + 1..).unwrap_or("");
                let src = rest.rsplit_once('/').map_or("", |(s, _)| s);
                set.insert(src.to_string());
            }
            res.insert(section, set);
        }
        Ok(res)
    }

    /// dtype and shape of the dataset at `path`, from the map when possible.
    pub fn dataset_dtype_shape(self: &Arc<Self>, p: &str) -> Result<(DType, Vec<usize>)> {
        if !raw_disabled() {
            if let Some(map) = self
                .raw_map
                .get_or_init(|| map_file(&self.path).ok())
                .clone()
            {
                use super::rawh5::{RawFile, RawType};
                if let Ok(ds) = RawFile::new(&map).and_then(|f| f.dataset(p)) {
                    let dt = match ds.dtype {
                        RawType::Int { size, signed: true } => Some(DType::Int(size)),
                        RawType::Int {
                            size,
                            signed: false,
                        } => Some(DType::UInt(size)),
                        RawType::Float { size } if size == 4 || size == 8 => {
                            Some(DType::Float(size))
                        }
                        RawType::FixedString { size } => Some(DType::FixedStr(size)),
                        RawType::VlenString => Some(DType::VlenStr),
                        _ => None,
                    };
                    // Booleans are enums (handled by libhdf5 below); shapes need usize.
                    if let Some(dt) = dt {
                        if let Ok(shape) = ds
                            .shape
                            .iter()
                            .map(|&d| usize::try_from(d))
                            .collect::<std::result::Result<Vec<usize>, _>>()
                        {
                            return Ok((dt, shape));
                        }
                    }
                }
            }
        }
        let h = self.file()?;
        let ds = h.dataset(p)?;
        let d = ds
            .dtype()
            .and_then(|t| t.to_descriptor())
            .map_err(|e| Error::h5(&self.path, p, e))?;
        Ok((DType::from_descriptor(&d), ds.shape()))
    }

    /// Values of the RUN section of a source, `{key: (dtype, shape, value)}` as display strings.
    pub(crate) fn run_entries(self: &Arc<Self>, source: &str) -> Result<Option<RunEntries>> {
        let h = self.file()?;
        let base = format!("RUN/{source}");
        if !h.has(&base) {
            return Ok(None);
        }
        let mut keys = BTreeSet::new();
        walk_datasets(&h, &base, "", &mut keys)?;
        let mut out = BTreeMap::new();
        for k in keys {
            let p = format!("{base}/{}", k.replace('.', "/"));
            let ds = h.dataset(&p)?;
            let d = ds
                .dtype()
                .and_then(|t| t.to_descriptor())
                .map_err(|e| Error::h5(&self.path, &p, e))?;
            out.insert(k, (DType::from_descriptor(&d), ds.shape()));
        }
        Ok(Some(out))
    }
}

/// Recursively collect dataset names below `base` (joined by '.').
fn walk_datasets(h: &H5File, base: &str, prefix: &str, out: &mut BTreeSet<String>) -> Result<()> {
    use hdf5::LocationType;
    let g = h.group(base)?;
    let names = g.member_names().map_err(|e| Error::h5(&h.path, base, e))?;
    for name in names {
        let info = match g.loc_info_by_name(&name) {
            Ok(i) => i,
            // Dangling links are skipped, as h5py's visititems does.
            Err(_) => continue,
        };
        let full = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match info.loc_type {
            LocationType::Dataset => {
                out.insert(full);
            }
            LocationType::Group => {
                walk_datasets(h, &format!("{base}/{name}"), &full, out)?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn read_format_version(h: &H5File) -> Result<String> {
    if h.has("METADATA/dataFormatVersion") {
        let v = h.read_strings("METADATA/dataFormatVersion")?;
        match v.first() {
            Some(s) => Ok(s.trim_end_matches('\0').to_string()),
            None => Err(Error::structure(
                &h.path,
                "METADATA/dataFormatVersion is empty",
            )),
        }
    } else {
        Ok("0.5".to_string())
    }
}

type Sources = (BTreeSet<String>, BTreeSet<String>, BTreeMap<String, String>);

/// Parse the source list into control, instrument and legacy sources.
fn read_data_sources(h: &H5File, fv: &str) -> Result<Sources> {
    let path = source_list_path(fv);
    if !h.has(path) {
        return Err(Error::structure(&h.path, format!("{path} not found")));
    }
    let ids = h.read_strings(path)?;
    parse_source_ids(&h.path, &ids, |p| soft_link_target(h, p))
}

fn source_list_path(fv: &str) -> &'static str {
    if fv == "0.5" {
        "METADATA/dataSourceId"
    } else {
        "METADATA/dataSources/dataSourceId"
    }
}

/// Parse source list entries (EXtra-data's `_read_data_sources`): empty padding
/// entries ignored, INSTRUMENT entries give `device:pipeline`, soft-linked instrument
/// groups are legacy names.
fn parse_source_ids(
    path: &Path,
    ids: &[String],
    mut soft_link: impl FnMut(&str) -> Option<String>,
) -> Result<Sources> {
    let mut control = BTreeSet::new();
    let mut instrument = BTreeSet::new();
    let mut legacy = BTreeMap::new();
    for id in ids {
        if id.is_empty() {
            continue;
        }
        let (category, h5_source) = id.split_once('/').unwrap_or((id.as_str(), ""));
        match category {
            "INSTRUMENT" => {
                let (device, chan_grp) = h5_source.split_once(':').unwrap_or((h5_source, ""));
                let chan = chan_grp.split_once('/').map_or(chan_grp, |(c, _)| c);
                let source = format!("{device}:{chan}");
                if !instrument.contains(&source) {
                    if let Some(target) = soft_link(&format!("INSTRUMENT/{source}")) {
                        // '/INSTRUMENT/X/Y' -> 'X/Y'
                        let t = target.trim_start_matches('/');
                        let canon = t.split_once('/').map_or("", |(_, r)| r).to_string();
                        legacy.insert(source.clone(), canon);
                    }
                    instrument.insert(source);
                }
            }
            "CONTROL" => {
                control.insert(h5_source.to_string());
            }
            "Karabo_TimerServer" => {}
            other => {
                return Err(Error::UnknownCategory {
                    path: path.into(),
                    category: other.to_string(),
                    entry: id.clone(),
                })
            }
        }
    }
    Ok((control, instrument, legacy))
}

/// Metadata read at open time.
struct OpenMeta {
    fv: String,
    train_ids: Vec<u64>,
    flag: Vec<bool>,
    sources: Sources,
}

/// Read the open-time metadata straight from the mapped bytes (pure Rust).
/// `Ok(None)`: a structure the raw reader does not handle; use libhdf5.
fn read_meta_raw(path: &Path, map: &[u8]) -> Result<Option<OpenMeta>> {
    use super::rawh5::{Link, RawError, RawFile};
    let inner = || -> std::result::Result<Result<OpenMeta>, RawError> {
        let f = RawFile::new(map)?;
        let fv = match f.read_strings("METADATA/dataFormatVersion") {
            Ok(v) => v.into_iter().next().unwrap_or_default(),
            Err(RawError::NotFound(_)) => "0.5".to_string(),
            Err(e) => return Err(e),
        };
        let tids: Vec<u64> = match f.read_ints("INDEX/trainId", None) {
            Ok(t) => t.into_iter().filter(|&t| t != 0).collect(),
            Err(RawError::NotFound(_)) => {
                return Ok(Err(Error::structure(
                    path,
                    "INDEX/trainId dataset not found",
                )))
            }
            Err(e) => return Err(e),
        };
        let lp = source_list_path(&fv);
        let ids = match f.read_strings(lp) {
            Ok(v) => v,
            Err(RawError::NotFound(_)) => {
                return Ok(Err(Error::structure(path, format!("{lp} not found"))))
            }
            Err(e) => return Err(e),
        };
        // Soft-link lookups must not silently fail on unsupported structures.
        let mut link_err: Option<RawError> = None;
        let sources = parse_source_ids(path, &ids, |p| match f.link(p) {
            Ok(Link::Soft(t)) => Some(t),
            Ok(Link::Hard(_)) | Err(RawError::NotFound(_)) => None,
            Err(e) => {
                link_err = Some(e);
                None
            }
        });
        if let Some(e) = link_err {
            return Err(e);
        }
        let sources = match sources {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let n = tids.len();
        let flag = if fv == "0.5" {
            guess_valid_trains(&tids)
        } else {
            let fl = match f.read_ints("INDEX/flag", Some(n as u64)) {
                Ok(v) => v,
                Err(RawError::NotFound(_)) => {
                    return Ok(Err(Error::structure(path, "INDEX/flag dataset not found")))
                }
                Err(e) => return Err(e),
            };
            if fl.len() < n {
                return Ok(Err(Error::structure(
                    path,
                    format!("INDEX/flag has {} entries for {n} train IDs", fl.len()),
                )));
            }
            let mut v: Vec<bool> = fl.iter().map(|&x| x != 0).collect();
            if fv == "1.1" {
                v.iter_mut().for_each(|x| *x = !*x);
            }
            v
        };
        Ok(Ok(OpenMeta {
            fv,
            train_ids: tids,
            flag,
            sources,
        }))
    };
    match inner() {
        Ok(Ok(m)) => Ok(Some(m)),
        Ok(Err(e)) => Err(e),
        Err(_) => Ok(None),
    }
}

/// `EUXFEL_NO_RAW` set: always use libhdf5 (for comparisons and benchmarks).
fn raw_disabled() -> bool {
    std::env::var_os("EUXFEL_NO_RAW").is_some()
}

/// Map a file read-only.
pub(crate) fn map_file(path: &Path) -> Result<Arc<memmap2::Mmap>> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    if len == 0 {
        return Err(Error::NotHdf5 {
            path: path.into(),
            msg: "file is empty".into(),
        });
    }
    // SAFETY: read-only private map of a closed run file. Every access goes through
    // bounds-checked slices of the map (RawFile::slice / H5File::bytes), so no read
    // goes past the length mapped here; files are assumed not to be truncated while
    // open, as EXtra-data assumes (a concurrent truncation could raise SIGBUS).
    unsafe { memmap2::Mmap::map(&f) }
        .map(Arc::new)
        .map_err(|e| Error::io(path, e))
}

/// If `path` is a soft link, its target path.
fn soft_link_target(h: &H5File, path: &str) -> Option<String> {
    h5util::soft_link_target(&h.h5, path)
}

/// Guess valid trains for format 0.5 (no INDEX/flag): at each non-increasing step,
/// invalidate whichever side needs fewer trains dropped (EXtra-data's rule).
pub(crate) fn guess_valid_trains(t: &[u64]) -> Vec<bool> {
    let mut flag = vec![true; t.len()];
    for ix in 0..t.len().saturating_sub(1) {
        if t[ix + 1] <= t[ix] {
            let before: Vec<bool> = t[..=ix].iter().map(|&x| x >= t[ix + 1]).collect();
            let after: Vec<bool> = t[ix + 1..].iter().map(|&x| x <= t[ix]).collect();
            let nb = before.iter().filter(|&&b| b).count();
            let na = after.iter().filter(|&&b| b).count();
            if nb < na {
                for (f, b) in flag[..=ix].iter_mut().zip(before) {
                    *f &= !b;
                }
            } else {
                for (f, a) in flag[ix + 1..].iter_mut().zip(after) {
                    *f &= !a;
                }
            }
        }
    }
    flag
}
