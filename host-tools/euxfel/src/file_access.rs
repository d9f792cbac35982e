//! One EuXFEL HDF5 file (EXtra-data's `FileAccess`): metadata read once at open,
//! index and keys read lazily and cached.
//!
//! Metadata and index reads run the rules of [`crate::meta`] on the pure-Rust walk
//! over the file's memory map first, and on libhdf5 where the walk cannot answer.
//! The file is mapped once; the libhdf5 handle (bounded process-wide, see
//! [`crate::open_files`]) shares that map for bulk reads.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use super::dtype::DType;
use super::error::{Error, Result};
use super::file_map::{FileMap, MetadataReads};
use super::filename::FilenameInfo;
use super::h5::H5File;
use super::meta::{self, MetaError, MetaReader, MetaResult, RawMeta};
use super::open_files;
use super::rawh5::{Piece, RawDataset, RawError, RawFile};
use super::read_plan::ReadPlan;

/// Largest batch of rows `visit_rows` reads through libhdf5 at once.
pub(crate) const BATCH_BYTES: usize = 16 << 20;
/// Streamed map bytes are dropped from the resident set in runs of this size.
const RELEASE_BYTES: u64 = 16 << 20;

static NEXT_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Cached metadata from the run map, trusted only if the file's stat matches.
#[derive(Debug, Clone)]
pub(crate) struct CachedInfo {
    /// The mtime and size the map recorded.
    pub mtime: f64,
    pub size: u64,
    pub train_ids: Vec<u64>,
    pub control_sources: BTreeSet<String>,
    pub instrument_sources: BTreeSet<String>,
    pub legacy_sources: BTreeMap<String, String>,
    pub flag: Vec<bool>,
}

/// `(first, count)` of one index group, one entry per train of the file.
pub type IndexPair = Arc<(Vec<u64>, Vec<u64>)>;
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
    /// The file's one memory map, made at open (or on first use for files known
    /// from the run map).
    map: Mutex<Option<FileMap>>,
    /// The open-time metadata came from the raw walk, without libhdf5.
    meta_without_libhdf5: bool,
    handle: Mutex<Option<Arc<H5File>>>,
    index_cache: Mutex<HashMap<(String, String), IndexPair>>,
    keys_cache: Mutex<HashMap<String, Arc<BTreeSet<String>>>>,
    /// Dataset headers found by the raw walk, by path: resolving a path walks the
    /// group B-trees, which cost more than a small read (trains() reads each key
    /// once per block). The map, whose addresses they hold, lives as long as this.
    raw_datasets: Mutex<HashMap<String, Arc<RawDataset>>>,
}

impl std::fmt::Debug for FileAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileAccess({:?})", self.path)
    }
}

pub(crate) fn stat_mtime_size(path: &Path) -> Result<(f64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    Ok((mtime_seconds(&m), m.size()))
}

/// st_mtime as Python gives it: sec + nsec * 1e-9 as a double.
pub(crate) fn mtime_seconds(m: &std::fs::Metadata) -> f64 {
    use std::os::unix::fs::MetadataExt;
    m.mtime() as f64 + m.mtime_nsec() as f64 * 1e-9
}

/// `EUXFEL_NO_RAW` set: always use libhdf5 (for comparisons and benchmarks).
fn raw_disabled() -> bool {
    std::env::var_os("EUXFEL_NO_RAW").is_some()
}

/// A lock whose holder panicked still guards consistent data here (caches and an
/// optional handle, each replaced whole), so poisoning is ignored.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The error a rule's failure means for the caller.
fn rule_error(path: &Path, e: MetaError) -> Error {
    match e {
        MetaError::Failed(e) => e,
        MetaError::NotFound(object) => Error::missing(path, object),
        MetaError::Unreadable => Error::structure(path, "unreadable metadata"),
    }
}

/// Run a metadata rule on the raw walk over `map`, and on libhdf5 (opened by
/// `libhdf5`) where the walk cannot answer.
fn read_with<T>(
    path: &Path,
    map: &FileMap,
    libhdf5: impl FnOnce() -> Result<Arc<H5File>>,
    rule: impl Fn(&dyn MetaReader) -> MetaResult<T>,
) -> Result<T> {
    if !raw_disabled() {
        if let Ok(file) = map.raw() {
            match rule(&RawMeta { file, path }) {
                Ok(v) => return Ok(v),
                Err(MetaError::Unreadable) => {}
                Err(e) => return Err(rule_error(path, e)),
            }
        }
    }
    let h = libhdf5()?;
    rule(&*h).map_err(|e| rule_error(path, e))
}

impl FileAccess {
    /// Open a file and read its metadata (train IDs, sources, flags).
    pub fn open(path: impl AsRef<Path>) -> Result<Arc<FileAccess>> {
        Self::open_with_cache(path.as_ref(), None, MetadataReads::Generic, None).map(|(f, _)| f)
    }

    /// A file whose metadata is not read yet.
    fn unread(path: PathBuf, mtime: f64, size: u64) -> FileAccess {
        FileAccess {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            path,
            train_ids: Vec::new(),
            validity_flag: Vec::new(),
            control_sources: BTreeSet::new(),
            instrument_sources: BTreeSet::new(),
            legacy_sources: BTreeMap::new(),
            mtime,
            size,
            format_version: OnceLock::new(),
            map: Mutex::new(None),
            meta_without_libhdf5: false,
            handle: Mutex::new(None),
            index_cache: Mutex::new(HashMap::new()),
            keys_cache: Mutex::new(HashMap::new()),
            raw_datasets: Mutex::new(HashMap::new()),
        }
    }

    /// Open a file from its run map entry when that matches the file, else by
    /// reading its metadata with `reads`; with [`MetadataReads::Record`], also the
    /// plan made from that reading (for the other files of its aggregator).
    pub(crate) fn open_with_cache(
        path: &Path,
        cache: Option<CachedInfo>,
        reads: MetadataReads<'_>,
        mapped: Option<FileMap>,
    ) -> Result<(Arc<FileAccess>, Option<ReadPlan>)> {
        let path = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
        if let Some(c) = cache {
            let (mtime, size) = stat_mtime_size(&path)?;
            if super::runmap::stat_matches(c.mtime, c.size, mtime, size) {
                let mut fa = Self::unread(path, mtime, size);
                fa.train_ids = c.train_ids;
                fa.control_sources = c.control_sources;
                fa.instrument_sources = c.instrument_sources;
                fa.legacy_sources = c.legacy_sources;
                fa.validity_flag = c.flag;
                return Ok((Arc::new(fa), None));
            }
        }
        // The map's own fstat gives the mtime and size: no second stat of the path.
        let map = match mapped {
            Some(m) => m,
            None => FileMap::open_with(&path, reads)?,
        };
        let mut fa = Self::unread(path, map.mtime(), map.len());
        let mut opened: Option<Arc<H5File>> = None;
        let m = read_with(
            &fa.path,
            &map,
            || {
                let h = Arc::new(H5File::open(&fa.path, map.clone())?);
                opened = Some(h.clone());
                Ok(h)
            },
            meta::open_meta,
        );
        let plan = map.finish_recording();
        let m = m?;
        let _ = fa.format_version.set(m.format_version);
        fa.train_ids = m.train_ids;
        fa.validity_flag = m.flag;
        fa.control_sources = m.sources.control;
        fa.instrument_sources = m.sources.instrument;
        fa.legacy_sources = m.sources.legacy;
        fa.meta_without_libhdf5 = opened.is_none();
        *lock(&fa.map) = Some(map);
        let fa = Arc::new(fa);
        if let Some(h) = opened {
            *lock(&fa.handle) = Some(h);
            open_files::touch(fa.id, &fa);
        }
        Ok((fa, plan))
    }

    /// The file's memory map (made on first use for files opened from the run map).
    fn map(&self) -> Result<FileMap> {
        let mut g = lock(&self.map);
        if let Some(m) = g.as_ref() {
            return Ok(m.clone());
        }
        let m = FileMap::open(&self.path)?;
        *g = Some(m.clone());
        Ok(m)
    }

    /// Run a metadata rule (raw walk first, libhdf5 where it cannot answer).
    pub(crate) fn read_meta<T>(
        self: &Arc<Self>,
        rule: impl Fn(&dyn MetaReader) -> MetaResult<T>,
    ) -> Result<T> {
        let map = self.map()?;
        read_with(&self.path, &map, || self.file(), rule)
    }

    /// Close the HDF5 handle (it is reopened on demand).
    pub fn close(&self) {
        *lock(&self.handle) = None;
    }

    /// Whether the open-time metadata was read by the pure-Rust reader (no libhdf5).
    pub fn read_without_libhdf5(&self) -> bool {
        self.meta_without_libhdf5
    }

    /// Whether the HDF5 handle is currently open.
    pub fn is_open(&self) -> bool {
        lock(&self.handle).is_some()
    }

    /// The libhdf5 handle, opened on demand.
    pub(crate) fn file(self: &Arc<Self>) -> Result<Arc<H5File>> {
        let existing = lock(&self.handle).clone();
        let h = match existing {
            Some(h) => h,
            None => {
                let h = Arc::new(H5File::open(&self.path, self.map()?)?);
                *lock(&self.handle) = Some(h.clone());
                h
            }
        };
        open_files::touch(self.id, self);
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

    /// Indices (into `train_ids`) of the trains whose validity flag is false: what
    /// EXtra-data's run map stores as `suspect_train_indices`.
    pub fn suspect_train_indices(&self) -> Vec<usize> {
        self.validity_flag
            .iter()
            .enumerate()
            .filter(|(_, &valid)| !valid)
            .map(|(i, _)| i)
            .collect()
    }

    /// Format version: `METADATA/dataFormatVersion[0]`, or "0.5" when absent.
    pub fn format_version(self: &Arc<Self>) -> Result<String> {
        if let Some(v) = self.format_version.get() {
            return Ok(v.clone());
        }
        let v = self.read_meta(meta::format_version)?;
        Ok(self.format_version.get_or_init(|| v).clone())
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
        match self.section_of(source)? {
            "CONTROL" => Ok(BTreeSet::from([String::new()])),
            _ => self.read_meta(|r| meta::index_groups(r, source)),
        }
    }

    /// `(first, count)` arrays of a source's index group, truncated to the number of trains.
    /// The legacy `first/last/status` form gives `count = (last - first + 1) * status`.
    pub fn get_index(self: &Arc<Self>, source: &str, group: &str) -> Result<IndexPair> {
        let k = (source.to_string(), group.to_string());
        if let Some(v) = lock(&self.index_cache).get(&k) {
            return Ok(v.clone());
        }
        let n = self.train_ids.len();
        let v = Arc::new(self.read_meta(|r| meta::index(r, source, group, n))?);
        lock(&self.index_cache).insert(k, v.clone());
        Ok(v)
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
        if let Some(v) = lock(&self.keys_cache).get(source) {
            return Ok(v.clone());
        }
        let section = self.section_of(source)?;
        let h = self.file()?;
        let mut res = BTreeSet::new();
        walk_datasets(&h, &format!("{section}/{source}"), "", &mut res)?;
        let v = Arc::new(res);
        lock(&self.keys_cache).insert(source.to_string(), v.clone());
        Ok(v)
    }

    /// Whether a key exists (checked directly, without walking).
    pub fn has_source_key(self: &Arc<Self>, source: &str, key: &str) -> Result<bool> {
        if let Some(v) = lock(&self.keys_cache).get(source) {
            return Ok(v.contains(key));
        }
        let section = self.section_of(source)?;
        let h = self.file()?;
        let p = format!("{section}/{source}/{}", key.replace('.', "/"));
        if !h.has(&p) || h.h5.group(&p).is_ok() {
            return Ok(false);
        }
        // A key that exists but does not open says why, instead of "no such key".
        h.h5.dataset(&p)
            .map(|_| true)
            .map_err(|e| Error::h5(&self.path, &p, e))
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

    /// The raw walk's header of dataset `object`, resolved once per file.
    fn raw_dataset(
        &self,
        raw: &RawFile<'_>,
        object: &str,
    ) -> std::result::Result<Arc<RawDataset>, RawError> {
        if let Some(ds) = lock(&self.raw_datasets).get(object) {
            return Ok(ds.clone());
        }
        let ds = Arc::new(raw.dataset(object)?);
        lock(&self.raw_datasets).insert(object.to_string(), ds.clone());
        Ok(ds)
    }

    /// Read rows `[start, start + count)` of a fixed-size dataset into `out`
    /// (`row_bytes` per row): straight from the map where the layout allows it,
    /// else through libhdf5.
    pub(crate) fn read_rows(
        self: &Arc<Self>,
        object: &str,
        start: u64,
        count: u64,
        row_bytes: usize,
        out: &mut [u8],
    ) -> Result<()> {
        self.read_rows_to(object, start, count, row_bytes, out, false)
    }

    /// [`FileAccess::read_rows`] into a buffer that already holds zeros: rows of
    /// unallocated chunks are skipped, so fresh zeroed memory (pages the kernel has
    /// not mapped yet) is never touched for them.
    pub(crate) fn read_rows_into_zeroed(
        self: &Arc<Self>,
        object: &str,
        start: u64,
        count: u64,
        row_bytes: usize,
        out: &mut [u8],
    ) -> Result<()> {
        self.read_rows_to(object, start, count, row_bytes, out, true)
    }

    fn read_rows_to(
        self: &Arc<Self>,
        object: &str,
        start: u64,
        count: u64,
        row_bytes: usize,
        out: &mut [u8],
        out_zeroed: bool,
    ) -> Result<()> {
        if !raw_disabled() {
            let map = self.map()?;
            map.advise_bulk_reads();
            let r = map.raw().and_then(|f| {
                let ds = self.raw_dataset(&f, object)?;
                let rows = ds.shape.first().copied().unwrap_or(0);
                let end = start.saturating_add(count);
                if count > 0 && end > rows {
                    return Ok(Err(Error::IndexOutsideData {
                        path: self.path.clone(),
                        object: object.into(),
                        start,
                        end,
                        rows,
                    }));
                }
                if !out_zeroed {
                    return f
                        .read_row_range(&ds, start, count, row_bytes as u64, out)
                        .map(Ok);
                }
                if out.len() as u64 != count.saturating_mul(row_bytes as u64) {
                    return Err(RawError::Corrupt(
                        "buffer size does not match the rows".into(),
                    ));
                }
                let mut at = 0usize;
                // In a big read, file pages copied out leave the resident set in
                // runs of up to RELEASE_BYTES, so memory stays the output's size
                // (small reads, e.g. per-block, keep them for the next read).
                let big = out.len() as u64 >= RELEASE_BYTES;
                let mut consumed: Option<std::ops::Range<u64>> = None;
                let r = f.visit_row_range(&ds, start, count, row_bytes as u64, &mut |piece| {
                    let n = piece.len();
                    if let Piece::Bytes(b) = piece {
                        out.get_mut(at..at + n)
                            .ok_or_else(|| RawError::Corrupt("rows longer than the buffer".into()))?
                            .copy_from_slice(b);
                        if let Some(off) = map.offset_of(b).filter(|_| big) {
                            let piece = off..off + b.len() as u64;
                            consumed = match consumed.take() {
                                Some(c) if c.end == piece.start => Some(c.start..piece.end),
                                Some(c) => {
                                    map.release(c);
                                    Some(piece)
                                }
                                None => Some(piece),
                            };
                            if let Some(c) = consumed.take_if(|c| c.end - c.start >= RELEASE_BYTES)
                            {
                                map.release(c);
                            }
                        }
                    }
                    at += n;
                    Ok(())
                });
                if let Some(c) = consumed {
                    map.release(c);
                }
                r.map(Ok)
            });
            match r {
                Ok(Err(e)) => return Err(e),
                Ok(Ok(())) => return Ok(()),
                Err(RawError::Corrupt(m)) => {
                    return Err(Error::structure(&self.path, format!("{object}: {m}")))
                }
                Err(RawError::Unsupported(_) | RawError::NotFound(_)) => {}
            }
        }
        let h = self.file()?;
        let ds = h.dataset(object)?;
        h.read_rows_raw(&ds, object, start, count, row_bytes, out)
    }

    /// Rows (first dimension) of a dataset: from the cached layout of the pure-Rust
    /// reader where it parses the dataset, else from libhdf5.
    pub(crate) fn dataset_rows(self: &Arc<Self>, object: &str) -> Result<u64> {
        if !raw_disabled() {
            let map = self.map()?;
            if let Ok(ds) = map.raw().and_then(|raw| self.raw_dataset(&raw, object)) {
                return Ok(ds.shape.first().copied().unwrap_or(0));
            }
        }
        let shape = self.dataset_dtype_shape(object.trim_start_matches('/'))?.1;
        Ok(shape.first().map_or(0, |&r| r as u64))
    }

    /// Hand rows `[start, start + count)` of a fixed-size dataset (`row_bytes` per
    /// row) to `f` in order, in pieces: slices of the map where the layout allows it
    /// (no copy), else batches of at most [`BATCH_BYTES`] read through libhdf5 into
    /// one reused buffer. Memory stays bounded whatever the size of the data.
    pub(crate) fn visit_rows(
        self: &Arc<Self>,
        object: &str,
        start: u64,
        count: u64,
        row_bytes: usize,
        f: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        if count == 0 {
            return Ok(());
        }
        if !raw_disabled() {
            let map = self.map()?;
            map.advise_bulk_reads();
            if let Ok(raw) = map.raw() {
                if let Ok(ds) = self.raw_dataset(&raw, object) {
                    let rows = ds.shape.first().copied().unwrap_or(0);
                    let end = start.saturating_add(count);
                    if end > rows {
                        return Err(Error::IndexOutsideData {
                            path: self.path.clone(),
                            object: object.into(),
                            start,
                            end,
                            rows,
                        });
                    }
                    let zeros = [0u8; 65536];
                    let (mut emitted, mut stopped) = (false, None);
                    // Map bytes handed over, released from the resident set in runs
                    // of RELEASE_BYTES (pieces are often one small chunk each).
                    let mut consumed: Option<std::ops::Range<u64>> = None;
                    let r = raw.visit_row_range(&ds, start, count, row_bytes as u64, &mut |p| {
                        emitted = true;
                        let r = match p {
                            Piece::Bytes(b) => {
                                let r = f(b);
                                if let Some(off) = map.offset_of(b) {
                                    let piece = off..off + b.len() as u64;
                                    consumed = match consumed.take() {
                                        Some(c) if c.end == piece.start => Some(c.start..piece.end),
                                        Some(c) => {
                                            map.release(c);
                                            Some(piece)
                                        }
                                        None => Some(piece),
                                    };
                                    if let Some(c) =
                                        consumed.take_if(|c| c.end - c.start >= RELEASE_BYTES)
                                    {
                                        map.release(c);
                                    }
                                }
                                r
                            }
                            Piece::Zeros(mut n) => {
                                let mut r = Ok(());
                                while n > 0 && r.is_ok() {
                                    let k = n.min(zeros.len() as u64);
                                    r = f(&zeros[..k as usize]);
                                    n -= k;
                                }
                                r
                            }
                        };
                        // The caller's error ends the walk; it is returned below.
                        r.map_err(|e| {
                            stopped = Some(e);
                            RawError::NotFound(String::new())
                        })
                    });
                    if let Some(c) = consumed {
                        map.release(c);
                    }
                    match (r, stopped) {
                        (_, Some(e)) => return Err(e),
                        (Ok(()), None) => return Ok(()),
                        (Err(RawError::Corrupt(m)), None) => {
                            return Err(Error::structure(&self.path, format!("{object}: {m}")))
                        }
                        // Nothing handed over yet: libhdf5 reads it all below.
                        (Err(_), None) if !emitted => {}
                        (Err(e), None) => {
                            return Err(Error::structure(&self.path, format!("{object}: {e}")))
                        }
                    }
                }
            }
        }
        let h = self.file()?;
        let ds = h.dataset(object)?;
        let per_batch = (BATCH_BYTES / row_bytes.max(1)).max(1) as u64;
        let mut buf = Vec::new();
        let mut row = start;
        while row < start + count {
            let n = per_batch.min(start + count - row);
            let nb = n as usize * row_bytes;
            buf.resize(nb, 0);
            h.read_rows_raw(&ds, object, row, n, row_bytes, &mut buf)?;
            f(&buf)?;
            row += n;
        }
        Ok(())
    }

    /// `INDEX/timestamp` (ns since the Unix epoch, UTC) for this file's trains, or
    /// `None` if the file has none (format 0.5).
    pub fn timestamps(self: &Arc<Self>) -> Result<Option<Vec<u64>>> {
        self.read_meta(meta::timestamps)
    }

    /// Auxiliary sources (`METADATA/auxiliarySources/<SECTION>`, format 2025+):
    /// section -> source names (entry minus the section prefix and the index group).
    pub fn auxiliary_sources(self: &Arc<Self>) -> Result<BTreeMap<String, BTreeSet<String>>> {
        self.read_meta(meta::auxiliary_sources)
    }

    /// `(proposal, run)` from the file's METADATA, if it has them.
    pub fn run_ident(self: &Arc<Self>) -> Result<Option<(u64, u64)>> {
        self.read_meta(meta::run_ident)
    }

    /// dtype and shape of the dataset at `object`.
    pub(crate) fn dataset_dtype_shape(
        self: &Arc<Self>,
        object: &str,
    ) -> Result<(DType, Vec<usize>)> {
        self.read_meta(|r| r.dtype_shape(object))
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
            let dtype = DType::of_dataset(&ds).map_err(|e| Error::h5(&self.path, &p, e))?;
            out.insert(k, (dtype, ds.shape()));
        }
        Ok(Some(out))
    }
}

/// Recursively collect dataset names below `base` (joined by '.'), through hard
/// links only, as h5py's `visititems` (soft and external links are not keys).
fn walk_datasets(h: &H5File, base: &str, prefix: &str, out: &mut BTreeSet<String>) -> Result<()> {
    use hdf5::{LinkType, LocationType};
    let g = h.group(base)?;
    let mut names = Vec::new();
    g.iter_visit_default(|name, link| {
        if link.link_type == LinkType::Hard {
            names.push(name.to_string());
        }
        Ok(())
    })
    .map_err(|e| Error::h5(&h.path, base, e))?;
    for name in names {
        let info = match g.loc_info_by_name(&name) {
            Ok(i) => i,
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
