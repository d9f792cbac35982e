//! Opening collections: a run directory (with the run map cache), one file, or a
//! list of files; files are opened in parallel.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::data_collection::DataCollection;
use super::error::{Error, Result};
use super::file_access::{CachedInfo, FileAccess};
use super::file_map::{FileMap, MetadataReads};
use super::fnmatch::Pattern;
use super::interrupt;
use super::read_plan::{self, ReadPlan};
use super::runmap::RunFilesMap;
use super::warning::Warning;

/// Options for opening runs and files.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// fnmatch glob on file names (run directories only).
    pub include: String,
    /// Read and write `karabo_data_map.json`.
    pub use_cache: bool,
    /// Threads used to open files (0: chosen by the number of files read without a
    /// read plan; 1: the calling thread only).
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

/// Most threads opening files by default. A file opened without a read plan (the
/// first of its aggregator, or one on its own) is read by a walk whose page faults
/// follow one another; such walks run side by side up to this many, as a network
/// filesystem rewards many reads in flight, whatever the number of cores.
const OPEN_IO_DEPTH: usize = 64;

/// Fewest threads opening files by default (or one per CPU if more). Files opened
/// with a plan need few: their pages were asked for ahead ([`OPEN_AHEAD_THREADS`]),
/// and each thread more costs CPU time (its start, its stack and malloc arena, and
/// the contention of all of them on the process's memory map lock).
const OPEN_WALKERS: usize = 8;

/// Threads that map files ahead of the threads reading them, asking for each file's
/// planned pages (or its head) at once: `POSIX_FADV_WILLNEED` returns without
/// waiting, so the reads of many files are in flight while the walks parse the ones
/// that came in. Two, because mapping a file and queueing its reads costs CPU time
/// of its own (tens of microseconds here: an open, an fstat, two fadvise calls, an
/// mmap and an madvise).
const OPEN_AHEAD_THREADS: usize = 2;

/// How far (in files) the threads mapping ahead run before the walks at most: it
/// bounds the pages in flight (a few hundred KiB per file) on runs of thousands of files.
const OPEN_AHEAD_FILES: usize = 256;

/// An open from the run map that takes longer than this waited on the filesystem
/// (a warm one is a stat of a few microseconds): the other threads are started then.
const SLOW_CACHED_OPEN: Duration = Duration::from_micros(500);

/// How a file is opened by [`open_parallel`].
#[derive(Clone, Copy)]
enum Role {
    /// From its run map entry (read anew if the entry no longer matches the file).
    Cached,
    /// The only file of its aggregator: read with the generic prefetch.
    Alone,
    /// The first file of aggregator `n` to open: its accesses make the plan.
    Leader(usize),
    /// Another file of aggregator `n`: opened with the leader's plan.
    Follower(usize),
}

/// The read plan of one aggregator, published once its leader is open.
#[derive(Default)]
struct PlanSlot {
    plan: Mutex<Option<Option<ReadPlan>>>,
    ready: Condvar,
}

impl PlanSlot {
    fn publish(&self, plan: Option<ReadPlan>) {
        let mut g = self.plan.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            *g = Some(plan);
        }
        self.ready.notify_all();
    }

    /// Blocks until the leader has published (it was taken from the queue before
    /// any follower, and never waits itself, so this ends), or until an interrupt
    /// (after which leaders not yet taken are never opened): `None` then.
    fn wait(&self) -> Option<ReadPlan> {
        let mut g = self.plan.lock().unwrap_or_else(|e| e.into_inner());
        while g.is_none() {
            if interrupt::interrupted() {
                return None;
            }
            g = self
                .ready
                .wait_timeout(g, Duration::from_millis(10))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        g.clone().flatten()
    }
}

/// Publishes "no plan" for a leader that ends without one (an error, a panic, an
/// interrupt), so that its followers never wait for ever.
struct PublishOnDrop<'a>(Option<&'a PlanSlot>);

impl Drop for PublishOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.0 {
            slot.publish(None);
        }
    }
}

/// The order files are opened in: the first file of each aggregator without a
/// run map entry (its leader), then the others; and the number of aggregators.
fn open_order(
    paths: &[PathBuf],
    cache: &HashMap<PathBuf, CachedInfo>,
) -> (Vec<(usize, Role)>, usize) {
    let mut families: HashMap<&str, (usize, usize)> = HashMap::new(); // name -> (id, files)
    let mut family_of = Vec::with_capacity(paths.len());
    for p in paths {
        let name = p.file_name().and_then(|n| n.to_str());
        let fam = match name {
            Some(n) if !cache.contains_key(p) => {
                let next = families.len();
                let e = families.entry(read_plan::family(n)).or_insert((next, 0));
                e.1 += 1;
                Some(e.0)
            }
            _ => None,
        };
        family_of.push(fam);
    }
    let shared: Vec<bool> = {
        let mut v = vec![false; families.len()];
        for &(id, n) in families.values() {
            v[id] = n > 1;
        }
        v
    };
    let mut led = vec![false; families.len()];
    let mut leaders = Vec::new();
    let mut others = Vec::new();
    for (i, fam) in family_of.into_iter().enumerate() {
        match fam {
            _ if cache.contains_key(&paths[i]) => others.push((i, Role::Cached)),
            Some(f) if shared[f] && !led[f] => {
                led[f] = true;
                leaders.push((i, Role::Leader(f)));
            }
            Some(f) if shared[f] => others.push((i, Role::Follower(f))),
            _ => others.push((i, Role::Alone)),
        }
    }
    leaders.extend(others);
    (leaders, families.len())
}

/// Open files on `threads` threads (1: the calling thread alone; 0: one per file
/// walked without a plan, between [`OPEN_WALKERS`] (or one per CPU if more) and
/// [`OPEN_IO_DEPTH`]); results in input order.
///
/// When every file has a run map entry, the calling thread starts alone and starts
/// the others only once an open waits on the filesystem: with warm caches, starting
/// threads costs more than the stats they share. Otherwise the first file of each
/// aggregator is opened first and its accesses become the read plan of the
/// aggregator's other files ([`crate::read_plan`]), and [`OPEN_AHEAD_THREADS`] map
/// the files ahead of the walks, so that their reads are queued long before a walk
/// reaches them.
fn open_parallel(
    paths: &[PathBuf],
    cache: HashMap<PathBuf, CachedInfo>,
    threads: usize,
) -> Vec<Result<Arc<FileAccess>>> {
    let (order, n_families) = open_order(paths, &cache);
    let unplanned = order
        .iter()
        .filter(|(_, r)| matches!(r, Role::Leader(_) | Role::Alone))
        .count();
    let nthreads = if threads == 0 {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        unplanned.clamp(OPEN_WALKERS.max(cpus), OPEN_IO_DEPTH.max(cpus))
    } else {
        threads
    }
    .min(paths.len().max(1));
    let all_cached = threads == 0 && cache.len() == paths.len();
    let open_ahead = nthreads > 1
        && order
            .iter()
            .any(|(_, r)| matches!(r, Role::Follower(_) | Role::Alone));
    let slots: Vec<PlanSlot> = (0..n_families).map(|_| PlanSlot::default()).collect();
    // Each file's entry moves to the thread opening it (no copy of its train IDs).
    let cache = Mutex::new(cache);
    // The map of each file opened without a run map entry, by whichever thread gets
    // to it first: a thread mapping ahead or the walk itself.
    let mapped: Vec<OnceLock<Mutex<Option<Result<FileMap>>>>> =
        (0..paths.len()).map(|_| OnceLock::new()).collect();
    let map_file = |i: usize, reads: MetadataReads<'_>| {
        mapped[i].get_or_init(|| {
            let p = &paths[i];
            let abs = std::path::absolute(p).map_err(|e| Error::io(p, e));
            Mutex::new(Some(abs.and_then(|abs| FileMap::open_with(&abs, reads))))
        })
    };
    let next = AtomicUsize::new(0);
    // One file per call; None when there is nothing left (or after Ctrl-C, when the
    // files not yet opened stay unopened: the caller stops).
    let open_next = || {
        let &(i, role) = order.get(next.fetch_add(1, Ordering::Relaxed))?;
        let leader_slot = match role {
            Role::Leader(f) => slots.get(f),
            _ => None,
        };
        let _unblock_followers = PublishOnDrop(leader_slot);
        let p = &paths[i];
        if interrupt::interrupted() {
            return None;
        }
        let cached = cache.lock().ok().and_then(|mut c| c.remove(p));
        let r = match role {
            Role::Cached => FileAccess::open_with_cache(p, cached, MetadataReads::Generic, None),
            Role::Leader(f) => {
                let r = FileAccess::open_with_cache(p, cached, MetadataReads::Record, None);
                if let (Some(slot), Ok((_, plan))) = (slots.get(f), &r) {
                    slot.publish(plan.clone());
                }
                r
            }
            Role::Alone | Role::Follower(_) => {
                let plan = match role {
                    Role::Follower(f) => slots.get(f).and_then(PlanSlot::wait),
                    _ => None,
                };
                let reads = plan
                    .as_ref()
                    .map_or(MetadataReads::Generic, MetadataReads::Planned);
                let taken = map_file(i, reads)
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                match taken {
                    Some(Err(e)) => Err(e),
                    m => FileAccess::open_with_cache(p, cached, reads, m.and_then(Result::ok)),
                }
            }
        };
        Some((i, r.map(|(f, _)| f)))
    };
    let work = || std::iter::from_fn(open_next).collect::<Vec<_>>();
    // Maps the files in open order ahead of the walks (which take the maps), at most
    // OPEN_AHEAD_FILES ahead; a file the walks reached first is left to them.
    let ahead_cursor = AtomicUsize::new(0);
    let map_ahead = || {
        loop {
            let pos = ahead_cursor.fetch_add(1, Ordering::Relaxed);
            let Some(&(i, role)) = order.get(pos) else {
                return;
            };
            // A poll, not a wake-up per file: it waits only this far ahead.
            while pos >= next.load(Ordering::Relaxed) + OPEN_AHEAD_FILES {
                if interrupt::interrupted() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            if interrupt::interrupted() {
                return;
            }
            if pos < next.load(Ordering::Relaxed) {
                continue;
            }
            let plan = match role {
                Role::Follower(f) => slots.get(f).and_then(PlanSlot::wait),
                Role::Alone => None,
                Role::Cached | Role::Leader(_) => continue,
            };
            let reads = plan
                .as_ref()
                .map_or(MetadataReads::Generic, MetadataReads::Planned);
            map_file(i, reads);
        }
    };
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
            // A thread that cannot be started (a process or address-space limit, as on
            // shared cluster nodes) is not needed: the threads started, the calling
            // thread among them, share its files, and walks map their files themselves.
            let ahead: Vec<_> = (0..if open_ahead { OPEN_AHEAD_THREADS } else { 0 })
                .map_while(|_| std::thread::Builder::new().spawn_scoped(s, map_ahead).ok())
                .collect();
            let handles: Vec<_> = (1..nthreads)
                .map_while(|_| std::thread::Builder::new().spawn_scoped(s, work).ok())
                .collect();
            done.extend(work());
            for h in handles {
                done.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
            }
            for h in ahead {
                h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(order: &[(usize, Role)]) -> Vec<(usize, char, Option<usize>)> {
        order
            .iter()
            .map(|&(i, r)| match r {
                Role::Cached => (i, 'c', None),
                Role::Alone => (i, 'a', None),
                Role::Leader(f) => (i, 'l', Some(f)),
                Role::Follower(f) => (i, 'f', Some(f)),
            })
            .collect()
    }

    #[test]
    fn leaders_open_first_and_cached_files_alone() {
        let names = [
            "RAW-R0001-AGIPD00-S00000.h5",
            "RAW-R0001-AGIPD00-S00001.h5",
            "RAW-R0001-DA01-S00000.h5",
            "RAW-R0001-DA01-S00001.h5",
            "RAW-R0001-DA01-S00002.h5",
            "RAW-R0001-DA02-S00000.h5",
            "odd.h5",
        ];
        let paths: Vec<PathBuf> = names.iter().map(|n| Path::new("/r").join(n)).collect();
        let (order, n) = open_order(&paths, &HashMap::new());
        assert_eq!(n, 4);
        assert_eq!(
            roles(&order),
            vec![
                (0, 'l', Some(0)),
                (2, 'l', Some(1)),
                (1, 'f', Some(0)),
                (3, 'f', Some(1)),
                (4, 'f', Some(1)),
                (5, 'a', None),
                (6, 'a', None),
            ]
        );
        // A file with a run map entry is opened from it: it neither leads nor follows.
        let entry = CachedInfo {
            mtime: 0.0,
            size: 0,
            train_ids: Vec::new(),
            control_sources: Default::default(),
            instrument_sources: Default::default(),
            legacy_sources: Default::default(),
            flag: Vec::new(),
        };
        let cache = HashMap::from([(paths[2].clone(), entry)]);
        let (order, _) = open_order(&paths, &cache);
        assert_eq!(
            roles(&order),
            vec![
                (0, 'l', Some(0)),
                (3, 'l', Some(1)),
                (1, 'f', Some(0)),
                (2, 'c', None),
                (4, 'f', Some(1)),
                (5, 'a', None),
                (6, 'a', None),
            ]
        );
    }
}
