//! Opening collections: a run directory (with the run map cache), one file, or a
//! list of files; files are opened in parallel.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::data_collection::DataCollection;
use super::error::{Error, Result};
use super::file_access::{CachedInfo, FileAccess};
use super::fnmatch::Pattern;
use super::interrupt;
use super::runmap::RunFilesMap;
use super::warning::Warning;

/// Options for opening runs and files.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// fnmatch glob on file names (run directories only).
    pub include: String,
    /// Read and write `karabo_data_map.json`.
    pub use_cache: bool,
    /// Threads used to open files (0: 16, or one per CPU if more; opening is I/O-bound).
    pub threads: usize,
    /// Include trains flagged as suspect (EXtra-data's default: true).
    pub inc_suspect_trains: bool,
    /// Open a run from its valid virtual overview file when it has one (see [`crate::overview`]).
    pub use_overview: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            include: "*".into(),
            use_cache: true,
            threads: 0,
            inc_suspect_trains: true,
            use_overview: true,
        }
    }
}

/// Files opened at the same time by default. Opening is I/O-bound (a few small
/// reads per file, mostly waiting on the filesystem): a network filesystem rewards
/// many reads in flight, whatever the number of cores.
const OPEN_IO_DEPTH: usize = 64;

/// An open from the run map that takes longer than this waited on the filesystem
/// (a warm one is a stat of a few microseconds): the other threads are started then.
const SLOW_CACHED_OPEN: Duration = Duration::from_micros(500);

/// Open files on `threads` threads (0: [`OPEN_IO_DEPTH`], or one per CPU if more);
/// results in input order. When every file has a run map entry, the calling thread
/// starts alone and starts the others only once an open waits on the filesystem:
/// with warm caches, starting 64 threads costs more than the 340 stats they share.
fn open_parallel(
    paths: &[PathBuf],
    cache: HashMap<PathBuf, CachedInfo>,
    threads: usize,
) -> Vec<Result<Arc<FileAccess>>> {
    let nthreads = if threads == 0 {
        std::thread::available_parallelism().map_or(OPEN_IO_DEPTH, |n| n.get().max(OPEN_IO_DEPTH))
    } else {
        threads
    }
    .min(paths.len().max(1));
    let all_cached = threads == 0 && cache.len() == paths.len();
    // Each file's entry moves to the thread opening it (no copy of its train IDs).
    let cache = Mutex::new(cache);
    let next = AtomicUsize::new(0);
    // One file per call; None when there is nothing left (or after Ctrl-C, when the
    // files not yet opened stay unopened: the caller stops).
    let open_next = || {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let p = paths.get(i)?;
        if interrupt::interrupted() {
            return None;
        }
        let cached = cache.lock().ok().and_then(|mut c| c.remove(p));
        Some((i, FileAccess::open_with_cache(p, cached)))
    };
    let work = || std::iter::from_fn(open_next).collect::<Vec<_>>();
    let mut results = if nthreads <= 1 {
        work()
    } else {
        std::thread::scope(|s| {
            let mut done = Vec::new();
            if all_cached {
                loop {
                    let t0 = Instant::now();
                    let Some(r) = open_next() else {
                        return done;
                    };
                    done.push(r);
                    if t0.elapsed() > SLOW_CACHED_OPEN {
                        break;
                    }
                }
            }
            let handles: Vec<_> = (1..nthreads).map(|_| s.spawn(work)).collect();
            done.extend(work());
            for h in handles {
                done.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
            }
            done
        })
    };
    results.sort_unstable_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

impl DataCollection {
    /// Open a run directory (EXtra-data's `RunDirectory`). Files that cannot be
    /// opened are left out, each with a [`Warning::SkippedFile`] in
    /// [`DataCollection::warnings`].
    pub fn open_run(dir: impl AsRef<Path>, opts: &OpenOptions) -> Result<DataCollection> {
        let dir = dir.as_ref();
        if let Some(dc) = super::overview::open_if_valid(dir, opts) {
            return Ok(dc);
        }
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
        let mut map = opts.use_cache.then(|| RunFilesMap::read(dir));
        let mut cache = HashMap::new();
        if let Some(m) = map.as_mut() {
            for (name, p) in names.iter().zip(&paths) {
                if let Some(ci) = m.take(name) {
                    cache.insert(p.clone(), ci);
                }
            }
        }
        let dc = Self::from_paths_inner(&paths, cache, opts, true)?;
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
        Self::from_paths_inner(paths, HashMap::new(), opts, false)
    }

    fn from_paths_inner(
        paths: &[PathBuf],
        cache: HashMap<PathBuf, CachedInfo>,
        opts: &OpenOptions,
        is_single_run: bool,
    ) -> Result<DataCollection> {
        let results = open_parallel(paths, cache, opts.threads);
        interrupt::check()?;
        let mut files = Vec::new();
        let mut failed = Vec::new();
        for (p, r) in paths.iter().zip(results) {
            match r {
                Ok(f) => files.push(f),
                Err(e) => failed.push((p.clone(), Arc::new(e))),
            }
        }
        if files.is_empty() {
            return Err(Error::AllUnusable(failed));
        }
        let mut dc = Self::from_files(files, opts.inc_suspect_trains, is_single_run)?;
        dc.warnings = failed
            .into_iter()
            .map(|(path, error)| Warning::SkippedFile { path, error })
            .collect();
        Ok(dc)
    }
}
