//! The file side of the daemon: which file rows go to, rollover by calendar time and by size,
//! chaining ids, run/file attributes, renaming, the two crash-safety modes, and what a write
//! does when the disk is full, a write fails or the file disappears (see `docs/daq.md`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use hdf5::File;

use super::column::Column;
use super::error::{DaqError, ParseError};
use super::hdf::{self, Filters, JobLayout};
use super::job::{AttrValue, Drained, DropReason, Dropped, JobHandle};
use super::log::daq_log;
use super::names::FileNames;
use super::time::{compact_stamp, Rollover};

/// How the file is kept between writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Open, append, flush and close at every write (the reference's way): a kill between writes
    /// leaves a closed, consistent file that any reader opens.
    Close,
    /// Keep the file open in SWMR-write mode and flush after every write: readers can follow it
    /// live (`swmr=True`); after a kill it opens in SWMR-read mode, or normally after
    /// `h5daq recover` (h5clear -s), with everything up to the last flush.
    Swmr,
}

impl WriteMode {
    /// `close` or `swmr`.
    pub fn name(self) -> &'static str {
        match self {
            WriteMode::Close => "close",
            WriteMode::Swmr => "swmr",
        }
    }
}

impl std::str::FromStr for WriteMode {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s {
            "close" => Ok(WriteMode::Close),
            "swmr" => Ok(WriteMode::Swmr),
            other => Err(ParseError::unknown("write mode", other, "close or swmr")),
        }
    }
}

/// Settings of the file side.
#[derive(Debug, Clone)]
pub struct FileSettings {
    pub directory: PathBuf,
    pub names: FileNames,
    pub rollover: Rollover,
    pub max_file_bytes: Option<u64>,
    pub filters: Filters,
    pub mode: WriteMode,
    /// Remove a file that received no rows when it is closed (the chain of ids skips it).
    pub delete_empty_files: bool,
    /// Root attributes written when a file is created (besides the run/file ones).
    pub attrs: Vec<(String, AttrValue)>,
}

/// The file being written.
#[derive(Debug)]
struct Current {
    path: PathBuf,
    from: f64,
    to: f64,
    file_id: u64,
    rows: u64,
    /// Rows of each job in this file.
    rows_per_job: Vec<u64>,
    /// Device and inode at creation: a file deleted or replaced under the daemon is noticed.
    identity: (u64, u64),
    /// The drop counts last written into the file's group attributes, per job.
    drops_written: Vec<Dropped>,
    /// The open file in SWMR mode.
    handle: Option<File>,
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// What one write did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteReport {
    pub rows: u64,
    /// Rows written per job, in job order.
    pub per_job: Vec<u64>,
    pub files_closed: Vec<PathBuf>,
    pub current: Option<PathBuf>,
    pub seconds: f64,
    /// Rows kept for the next write because the file system had no room for them (the
    /// message says how much was free).
    pub held_back: u64,
    pub short_of_space: Option<String>,
}

/// Rows per job not yet in a file, the current file and the run's file list.
pub(crate) struct FileWriter {
    settings: FileSettings,
    jobs: Vec<JobLayout>,
    /// The jobs' counters: rows written and dropped are counted here as they happen.
    handles: Vec<JobHandle>,
    pending: Vec<Drained>,
    current: Option<Current>,
    next_from: f64,
    /// The calendar boundary the next file keeps (after a size rollover or a lost file, the
    /// interval goes on).
    next_to: Option<f64>,
    run_start: f64,
    previous_id: u64,
    next_id: u64,
    rng: Rng,
    finished: Vec<PathBuf>,
    chunk_cache: usize,
}

/// xorshift64*: jitter and file ids (not cryptographic; ids only need to be distinct).
#[derive(Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn seeded() -> Rng {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        if let Ok(bytes) = std::fs::read("/proc/sys/kernel/random/uuid") {
            for b in bytes {
                seed = (seed ^ u64::from(b)).wrapping_mul(0x100_0000_01B3);
            }
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Rng(seed ^ nanos ^ u64::from(std::process::id()).rotate_left(32) | 1)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn id(&mut self) -> u64 {
        loop {
            let v = self.next_u64();
            if v != 0 {
                return v;
            }
        }
    }
}

/// Appends every job's rows and flushes; if any append or the flush fails, the jobs appended
/// before it are shrunk back too, so the file holds exactly what it held before the call.
fn write_rows(file: &File, jobs: &[JobLayout], rows: &[(usize, Drained)]) -> Result<u64, DaqError> {
    let mut done: Vec<(usize, usize)> = Vec::new();
    let mut n = 0;
    let mut res = Ok(());
    for (j, d) in rows.iter().filter(|(_, d)| d.rows() > 0) {
        let before = match hdf::rows_in(file, &jobs[*j]) {
            Ok(b) => b,
            Err(e) => {
                res = Err(e);
                break;
            }
        };
        // `append` rolls its own job back on failure.
        if let Err(e) = hdf::append(file, &jobs[*j], d) {
            res = Err(e);
            break;
        }
        done.push((*j, before));
        n += d.rows() as u64;
    }
    if res.is_ok() {
        res = file
            .flush()
            .map_err(DaqError::hdf5(format!("{}: flush", file.filename())));
    }
    if let Err(e) = res {
        for (j, before) in done {
            if let Err(r) = hdf::truncate(file, &jobs[j], before) {
                daq_log!(Error, "{r}");
            }
        }
        // Best effort: the rollback's own metadata.
        let _ = file.flush();
        return Err(e);
    }
    Ok(n)
}

/// Bytes a write of the first `rows[j]` rows of each job's `pending` rows may add to a file:
/// every chunk it touches in full (with its checksum), the global heap objects of
/// variable-length strings (text, a 16-byte header, 8-byte alignment, and a new 4 KiB heap
/// collection per dataset), plus room for chunk-index and heap metadata. Deliberately generous:
/// a write that would not fit is not started.
fn bytes_needed(jobs: &[JobLayout], pending: &[Drained], rows: &[usize]) -> u64 {
    const METADATA_MARGIN: u64 = 256 << 10;
    let mut total = METADATA_MARGIN;
    for ((job, d), &k) in jobs.iter().zip(pending).zip(rows) {
        for (spec, col) in job.datasets.iter().zip(&d.columns) {
            if k > 0 && spec.dtype == crate::column::Dtype::Str {
                let n = k * spec.entry_len();
                let text = col.heap_bytes(0..n) as u64;
                total += text + 24 * n as u64 + 4096;
            }
        }
        let k = k as u64;
        if k == 0 {
            continue;
        }
        let time_chunk = job.time_chunk_rows() as u64;
        total += (k.div_ceil(time_chunk) + 1) * (time_chunk * 8 + 4);
        for spec in &job.datasets {
            let entry = (spec.entry_len() * spec.dtype.size()) as u64;
            let chunk_rows = job.chunk_rows(entry as usize) as u64;
            total += (k.div_ceil(chunk_rows) + 1) * (chunk_rows * entry + 4);
        }
    }
    total
}

/// Splits rows into those with `time < boundary` and the rest.
fn split_before(d: Drained, boundary: f64, entry_lens: &[usize]) -> (Drained, Drained) {
    if d.time.iter().all(|&t| t < boundary) {
        let empty = empty_like(&d);
        return (d, empty);
    }
    if d.time.iter().all(|&t| t >= boundary) {
        let empty = empty_like(&d);
        return (empty, d);
    }
    let mut a = empty_like(&d);
    let mut b = empty_like(&d);
    for (i, &t) in d.time.iter().enumerate() {
        let dst = if t < boundary { &mut a } else { &mut b };
        dst.time.push(t);
        for (j, c) in d.columns.iter().enumerate() {
            let e = entry_lens[j];
            dst.columns[j].extend_range(c, i * e..(i + 1) * e);
        }
    }
    (a, b)
}

/// Splits rows into the first `k` and the rest.
fn split_rows(mut d: Drained, k: usize, entry_lens: &[usize]) -> (Drained, Drained) {
    let k = k.min(d.rows());
    let tail = Drained {
        time: d.time.split_off(k),
        columns: d
            .columns
            .iter_mut()
            .zip(entry_lens)
            .map(|(c, e)| c.split_off(k * e))
            .collect(),
    };
    (d, tail)
}

fn empty_like(d: &Drained) -> Drained {
    Drained {
        time: Vec::new(),
        columns: d
            .columns
            .iter()
            .map(|c| Column::with_capacity(c.dtype(), 0))
            .collect(),
    }
}

fn append_drained(dst: &mut Drained, src: Drained) {
    if dst.time.is_empty() {
        *dst = src;
        return;
    }
    dst.time.extend_from_slice(&src.time);
    for (d, s) in dst.columns.iter_mut().zip(&src.columns) {
        d.extend_range(s, 0..s.len());
    }
}

impl FileWriter {
    pub(crate) fn new(
        settings: FileSettings,
        jobs: Vec<JobLayout>,
        handles: Vec<JobHandle>,
        run_start: f64,
    ) -> Self {
        let mut rng = Rng::seeded();
        let next_id = rng.id();
        let chunk_cache = jobs
            .iter()
            .map(JobLayout::max_chunk_bytes)
            .max()
            .unwrap_or(0)
            * 2;
        let pending = jobs
            .iter()
            .map(|j| Drained {
                time: Vec::new(),
                columns: j
                    .datasets
                    .iter()
                    .map(|d| Column::with_capacity(d.dtype, 0))
                    .collect(),
            })
            .collect();
        FileWriter {
            settings,
            jobs,
            handles,
            pending,
            current: None,
            next_from: run_start,
            next_to: None,
            run_start,
            previous_id: 0,
            next_id,
            rng,
            finished: Vec::new(),
            chunk_cache,
        }
    }

    pub(crate) fn current_path(&self) -> Option<&Path> {
        self.current.as_ref().map(|c| c.path.as_path())
    }

    pub(crate) fn finished(&self) -> &[PathBuf] {
        &self.finished
    }

    pub(crate) fn pending_rows(&self) -> u64 {
        self.pending.iter().map(|d| d.rows() as u64).sum()
    }

    fn root_attrs(&self, from: f64) -> Vec<(String, AttrValue)> {
        let s = &self.settings;
        let mut v = vec![
            ("run_start".to_string(), AttrValue::Float(self.run_start)),
            ("run_end".to_string(), AttrValue::Float(f64::NAN)),
            ("file_start".to_string(), AttrValue::Float(from)),
            ("file_end".to_string(), AttrValue::Float(f64::NAN)),
            (
                "rollover_interval".to_string(),
                AttrValue::Str(s.rollover.to_string()),
            ),
            (
                "max_file_bytes".to_string(),
                AttrValue::Int(s.max_file_bytes.map_or(0, |b| b as i64)),
            ),
            (
                "write_mode".to_string(),
                AttrValue::Str(s.mode.name().to_string()),
            ),
            (
                "software".to_string(),
                AttrValue::Str(format!("h5daq {}", env!("CARGO_PKG_VERSION"))),
            ),
        ];
        // The u64 ids are written separately; user attributes come last (the config rejects
        // reserved names).
        v.extend(s.attrs.iter().cloned());
        v
    }

    fn open_new(&mut self) -> Result<(), DaqError> {
        let from = self.next_from;
        let to = self
            .next_to
            .take()
            .filter(|t| *t > from)
            .unwrap_or_else(|| self.settings.rollover.next_after(from));
        let path = self
            .settings
            .names
            .free_path(&self.settings.directory, from, to - 0.001, None);
        let file_id = self.next_id;
        let attrs = self.root_attrs(from);
        let created = self.create_file(&path, &attrs, file_id);
        let handle = match created {
            Ok(h) => h,
            Err(e) => {
                // A file that could not be set up completely holds no rows: leave none behind.
                if let Err(r) = std::fs::remove_file(&path) {
                    if r.kind() != std::io::ErrorKind::NotFound {
                        daq_log!(Warn, "could not remove {}: {r}", path.display());
                    }
                }
                return Err(e);
            }
        };
        let identity = identity(&path).unwrap_or_default();
        daq_log!(
            Info,
            "new file {} (rollover at {})",
            path.display(),
            compact_stamp(to)
        );
        self.next_id = self.rng.id();
        let n = self.jobs.len();
        self.current = Some(Current {
            path,
            from,
            to,
            file_id,
            rows: 0,
            rows_per_job: vec![0; n],
            identity,
            drops_written: vec![Dropped::default(); n],
            handle,
        });
        Ok(())
    }

    /// Creates the file with its groups, datasets and attributes; the open handle in SWMR mode.
    fn create_file(
        &self,
        path: &Path,
        attrs: &[(String, AttrValue)],
        file_id: u64,
    ) -> Result<Option<File>, DaqError> {
        let file = hdf::create(
            path,
            &self.jobs,
            self.settings.filters,
            attrs,
            self.chunk_cache,
        )?;
        let ids = [
            ("previous_file_id", self.previous_id),
            ("file_id", file_id),
            ("following_file_id", 0),
        ];
        for (k, v) in ids {
            hdf::set_attr_u64(&file, k, v)
                .map_err(DaqError::hdf5(format!("{}: attribute {k}", path.display())))?;
        }
        match self.settings.mode {
            WriteMode::Close => {
                file.close()
                    .map_err(DaqError::hdf5(format!("{}: close", path.display())))?;
                Ok(None)
            }
            WriteMode::Swmr => {
                file.start_swmr()
                    .map_err(DaqError::hdf5(format!("{}: start SWMR", path.display())))?;
                file.flush()
                    .map_err(DaqError::hdf5(format!("{}: flush", path.display())))?;
                Ok(Some(file))
            }
        }
    }

    /// A current file that was deleted, moved or replaced since it was created: its rows are
    /// counted as lost and the next write starts a new file in the same interval, chained to it.
    fn check_current_file(&mut self) {
        let Some(cur) = self.current.as_ref() else {
            return;
        };
        if identity(&cur.path) == Some(cur.identity) {
            return;
        }
        let Some(cur) = self.current.take() else {
            return;
        };
        daq_log!(
            Error,
            "{} was deleted or moved while the daemon was writing it; its {} rows are counted as lost (file_lost) and writing goes on in a new file",
            cur.path.display(),
            cur.rows
        );
        for (h, n) in self.handles.iter().zip(&cur.rows_per_job) {
            h.count_dropped(DropReason::FileLost, *n);
        }
        // An open SWMR handle refers to the unlinked file: closing it loses nothing more.
        drop(cur.handle);
        self.previous_id = cur.file_id;
        self.next_from = cur.from;
        self.next_to = Some(cur.to);
    }

    /// Counts and logs rows whose time lies outside the current file's interval by more than a
    /// second (provided times from a source's clock): before its start, or after `now`. They
    /// are stored all the same.
    fn check_times(&self, rows: &[(usize, Drained)], now: f64) {
        let Some(cur) = self.current.as_ref() else {
            return;
        };
        for (j, d) in rows {
            let outside: Vec<f64> = d
                .time
                .iter()
                .copied()
                .filter(|&t| t < cur.from - 1.0 || t > now + 1.0)
                .collect();
            if outside.is_empty() {
                continue;
            }
            let (lo, hi) = outside
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &t| {
                    (a.min(t), b.max(t))
                });
            let h = &self.handles[*j];
            h.count_times_out_of_range(outside.len() as u64);
            daq_log!(
                Warn,
                "job {}: {} rows have times outside {} (from {} to now): {} .. {}; stored all the same",
                h.group,
                outside.len(),
                cur.path.display(),
                compact_stamp(cur.from),
                compact_stamp(lo),
                compact_stamp(hi)
            );
        }
    }

    /// How many of each job's pending rows the file system can take: all of them, or the
    /// largest equal fraction (1/2, 1/4, ...) that fits. A write that cannot finish is not
    /// started (nothing is cut short); with no room even for a few rows, the error names the
    /// free space.
    fn rows_that_fit(&self) -> Result<Vec<usize>, DaqError> {
        let all: Vec<usize> = self.pending.iter().map(Drained::rows).collect();
        let dir = &self.settings.directory;
        let Ok((_, _, available)) = crate::sys::disk_usage(dir) else {
            return Ok(all);
        };
        let needed = bytes_needed(&self.jobs, &self.pending, &all);
        if needed <= available {
            return Ok(all);
        }
        let mut part = all.clone();
        while part.iter().any(|&n| n > 1) {
            for n in &mut part {
                *n /= 2;
            }
            if bytes_needed(&self.jobs, &self.pending, &part) <= available {
                return Ok(part);
            }
        }
        Err(DaqError::NoSpace {
            directory: dir.clone(),
            needed,
            available,
        })
    }

    /// Appends rows `(job index, rows)` to the current file (opening and closing it in close
    /// mode, flushing it in SWMR mode).
    fn append_all(&mut self, rows: &[(usize, Drained)]) -> Result<u64, DaqError> {
        let Some(cur) = self.current.as_mut() else {
            return Err(DaqError::NoOpenFile);
        };
        if rows.iter().all(|(_, d)| d.rows() == 0) {
            return Ok(0);
        }
        let drops: Vec<Dropped> = self.handles.iter().map(JobHandle::dropped).collect();
        let write = |f: &File, cur: &mut Current| -> Result<u64, DaqError> {
            let n = write_rows(f, &self.jobs, rows)?;
            write_drop_attrs(f, &self.jobs, &drops, &mut cur.drops_written);
            Ok(n)
        };
        let n = match cur.handle.take() {
            Some(f) => {
                let r = write(&f, cur);
                cur.handle = Some(f);
                r?
            }
            None => {
                let f = hdf::open_rw(&cur.path, self.chunk_cache)?;
                let r = write(&f, cur);
                let c = f
                    .close()
                    .map_err(DaqError::hdf5(format!("{}: close", cur.path.display())));
                let n = r?;
                c?;
                n
            }
        };
        cur.rows += n;
        for (j, d) in rows {
            let k = d.rows() as u64;
            cur.rows_per_job[*j] += k;
            self.handles[*j].count_written(k);
        }
        Ok(n)
    }

    /// Writes pending rows plus `new` (one `Drained` per job, in job order).
    pub(crate) fn write(&mut self, now: f64, new: Vec<Drained>) -> Result<WriteReport, DaqError> {
        let t0 = Instant::now();
        for (p, d) in self.pending.iter_mut().zip(new) {
            append_drained(p, d);
        }
        self.check_current_file();
        if self.pending_rows() == 0 {
            return self.write_pending(now, t0);
        }
        let fit = self.rows_that_fit()?;
        let all: Vec<usize> = self.pending.iter().map(Drained::rows).collect();
        if fit == all {
            return self.write_pending(now, t0);
        }
        // Write what fits now; the rest stays pending, in order, for the next write.
        let mut later = Vec::with_capacity(self.jobs.len());
        for (j, p) in self.pending.iter_mut().enumerate() {
            let lens: Vec<usize> = self.jobs[j]
                .datasets
                .iter()
                .map(|d| d.entry_len())
                .collect();
            let d = std::mem::replace(
                p,
                Drained {
                    time: vec![],
                    columns: vec![],
                },
            );
            let (head, tail) = split_rows(d, fit[j], &lens);
            *p = head;
            later.push(tail);
        }
        let (written, total) = (fit.iter().sum::<usize>(), all.iter().sum::<usize>());
        let available = crate::sys::disk_usage(&self.settings.directory).map_or(0, |u| u.2);
        let message = format!(
            "{}: no space left on device (ENOSPC) for all rows: {available} bytes available, {written} of {total} pending rows written, the rest kept for the next write",
            self.settings.directory.display()
        );
        let res = self.write_pending(now, t0);
        for (p, tail) in self.pending.iter_mut().zip(later) {
            append_drained(p, tail);
        }
        res.map(|mut r| {
            r.held_back = (total - written) as u64;
            r.short_of_space = Some(message);
            r
        })
    }

    /// Writes every pending row (rollover by time first, then by size).
    fn write_pending(&mut self, now: f64, t0: Instant) -> Result<WriteReport, DaqError> {
        let entry_lens: Vec<Vec<usize>> = self
            .jobs
            .iter()
            .map(|j| j.datasets.iter().map(|d| d.entry_len()).collect())
            .collect();
        let mut report = WriteReport {
            per_job: vec![0; self.jobs.len()],
            ..Default::default()
        };
        loop {
            if self.current.is_none() {
                self.open_new()?;
            }
            let to = self.current.as_ref().map_or(f64::INFINITY, |c| c.to);
            if to <= now {
                // Rollover due: rows before the boundary go to this file.
                let mut early = Vec::new();
                for (j, p) in self.pending.iter_mut().enumerate() {
                    let d = std::mem::replace(
                        p,
                        Drained {
                            time: vec![],
                            columns: vec![],
                        },
                    );
                    let (a, b) = split_before(d, to, &entry_lens[j]);
                    *p = b;
                    early.push((j, a));
                }
                let res = self.append_all(&early);
                if let Err(e) = res {
                    // Put the rows back in front of the later ones.
                    for (j, a) in early {
                        let later = std::mem::replace(&mut self.pending[j], a);
                        append_drained(&mut self.pending[j], later);
                    }
                    return Err(e);
                }
                report.rows += res.unwrap_or(0);
                for (j, a) in &early {
                    report.per_job[*j] += a.rows() as u64;
                }
                if let Some(closed) = self.finalize(to, false, false)? {
                    report.files_closed.push(closed);
                }
                // The next file starts at the boundary of the interval holding the earliest
                // remaining row (no empty files for intervals without data), at most now.
                let earliest = self
                    .pending
                    .iter()
                    .flat_map(|p| p.time.iter().copied())
                    .fold(now, f64::min)
                    .max(to);
                let mut from = to;
                loop {
                    let next = self.settings.rollover.next_after(from);
                    if next > earliest {
                        break;
                    }
                    from = next;
                }
                self.next_from = from;
                continue;
            }
            let all: Vec<(usize, Drained)> = self
                .pending
                .iter_mut()
                .enumerate()
                .map(|(j, p)| {
                    let e = empty_like(p);
                    (j, std::mem::replace(p, e))
                })
                .collect();
            self.check_times(&all, now);
            match self.append_all(&all) {
                Ok(n) => {
                    report.rows += n;
                    for (j, a) in all {
                        report.per_job[j] += a.rows() as u64;
                        self.handles[j].recycle(a);
                    }
                }
                Err(e) => {
                    for (j, d) in all {
                        self.pending[j] = d;
                    }
                    return Err(e);
                }
            }
            break;
        }
        // Rollover by size: close now; the next write opens the next file.
        if let (Some(limit), Some(cur)) = (self.settings.max_file_bytes, self.current.as_ref()) {
            let size = std::fs::metadata(&cur.path).map(|m| m.len()).unwrap_or(0);
            if size >= limit {
                let end = now.max(cur.from);
                let boundary = cur.to;
                if let Some(closed) = self.finalize(end, true, false)? {
                    report.files_closed.push(closed);
                }
                self.next_from = end;
                self.next_to = Some(boundary);
            }
        }
        report.current = self.current.as_ref().map(|c| c.path.clone());
        report.seconds = t0.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Closes the current file: writes `file_end`, `following_file_id` (and `run_end` when the
    /// run ends), renames it to its real end when `rename`. Returns the final path, or `None`
    /// when the file held no rows and `delete_empty_files` removed it.
    fn finalize(
        &mut self,
        end: f64,
        rename: bool,
        run_end: bool,
    ) -> Result<Option<PathBuf>, DaqError> {
        let Some(mut cur) = self.current.take() else {
            return Err(DaqError::NoOpenFile);
        };
        if self.settings.delete_empty_files && cur.rows == 0 {
            drop(cur.handle.take());
            std::fs::remove_file(&cur.path).map_err(DaqError::io(&cur.path))?;
            daq_log!(Info, "removed {} (no rows)", cur.path.display());
            // The chain skips the removed file: the file before it points to the next one.
            if let Some(prev) = self.finished.last() {
                let following = if run_end { 0 } else { self.next_id };
                let res = hdf::open_rw(prev, self.chunk_cache).and_then(|f| {
                    hdf::set_attr_u64(&f, "following_file_id", following).map_err(DaqError::hdf5(
                        format!("{}: attribute following_file_id", prev.display()),
                    ))
                });
                if let Err(e) = res {
                    daq_log!(Warn, "{e}");
                }
            }
            return Ok(None);
        }
        let path = cur.path.clone();
        if let Some(h) = cur.handle.take() {
            h.close()
                .map_err(DaqError::hdf5(format!("{}: close", path.display())))?;
        }
        let following = if run_end { 0 } else { self.next_id };
        {
            let f = hdf::open_rw(&path, self.chunk_cache)?;
            let ctx = |k: &str| format!("{}: attribute {k}", path.display());
            hdf::set_attr(&f, "file_end", &AttrValue::Float(end))
                .map_err(DaqError::hdf5(ctx("file_end")))?;
            if run_end {
                hdf::set_attr(&f, "run_end", &AttrValue::Float(end))
                    .map_err(DaqError::hdf5(ctx("run_end")))?;
            }
            hdf::set_attr_u64(&f, "following_file_id", following)
                .map_err(DaqError::hdf5(ctx("following_file_id")))?;
            let drops: Vec<Dropped> = self.handles.iter().map(JobHandle::dropped).collect();
            write_drop_attrs(&f, &self.jobs, &drops, &mut cur.drops_written);
            f.close()
                .map_err(DaqError::hdf5(format!("{}: close", path.display())))?;
        }
        self.previous_id = cur.file_id;
        let final_path = if rename {
            let target =
                self.settings
                    .names
                    .free_path(&self.settings.directory, cur.from, end, Some(&path));
            if target != path {
                std::fs::rename(&path, &target).map_err(DaqError::io(&path))?;
            }
            target
        } else {
            path
        };
        daq_log!(Info, "closed {} ({} rows)", final_path.display(), cur.rows);
        self.finished.push(final_path.clone());
        Ok(Some(final_path))
    }

    /// The final write: everything pending plus `new`, then the current file is closed with
    /// `file_end = run_end = now`, renamed to the real end, and `run_end` is written into the
    /// run's earlier files (best effort; failures are logged). When the rows cannot be written
    /// they are counted as dropped (`write_failed`) and the first error is returned beside the
    /// report; the last file is still closed if it can be.
    pub(crate) fn finish(
        &mut self,
        now: f64,
        new: Vec<Drained>,
    ) -> (WriteReport, Option<DaqError>) {
        let (mut report, mut error) = match self.write(now, new) {
            Ok(r) => (r, None),
            Err(e) => (WriteReport::default(), Some(e)),
        };
        // A short write (too little space) leaves rows pending too: at stop they are lost.
        if error.is_none() && self.pending_rows() > 0 {
            error = Some(DaqError::ShortOfSpace {
                message: report.short_of_space.take().unwrap_or_default(),
            });
        }
        for (h, p) in self.handles.iter().zip(self.pending.iter_mut()) {
            h.count_dropped(DropReason::WriteFailed, p.rows() as u64);
            *p = empty_like(p);
        }
        if self.current.is_none() {
            if let Err(e) = self.open_new() {
                return (report, error.or(Some(e)));
            }
        }
        let end = now.max(self.current.as_ref().map_or(now, |c| c.from));
        let last = match self.finalize(end, true, true) {
            Ok(p) => p,
            Err(e) => return (report, error.or(Some(e))),
        };
        report.files_closed.extend(last.clone());
        report.current = None;
        for p in &self.finished {
            if Some(p) == last.as_ref() {
                continue;
            }
            let res = hdf::open_rw(p, self.chunk_cache).and_then(|f| {
                hdf::set_attr(&f, "run_end", &AttrValue::Float(end)).map_err(DaqError::hdf5(
                    format!("{}: attribute run_end", p.display()),
                ))
            });
            if let Err(e) = res {
                daq_log!(Warn, "could not write run_end into {}: {e}", p.display());
            }
        }
        (report, error.take())
    }
}

/// Writes a job's drop counts as its group's attributes `dropped_<reason>` (uint64) when they
/// changed since they were last written into this file. Best effort: a failure is logged and
/// retried at the next write.
fn write_drop_attrs(file: &File, jobs: &[JobLayout], drops: &[Dropped], written: &mut [Dropped]) {
    for ((job, now), last) in jobs.iter().zip(drops).zip(written.iter_mut()) {
        if now == last {
            continue;
        }
        let res = file.group(&job.group).and_then(|g| {
            now.by_reason()
                .into_iter()
                .try_for_each(|(r, n)| hdf::set_attr_u64(&g, &format!("dropped_{}", r.name()), n))
        });
        match res {
            Ok(()) => *last = *now,
            Err(e) => daq_log!(
                Warn,
                "{}: /{}: could not write the drop counts: {e}",
                file.filename(),
                job.group
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_by_time() {
        let d = Drained {
            time: vec![1.0, 5.0, 2.0, 7.0],
            columns: vec![Column::U16(vec![1, 1, 5, 5, 2, 2, 7, 7])],
        };
        let (a, b) = split_before(d, 4.0, &[2]);
        assert_eq!(a.time, vec![1.0, 2.0]);
        assert_eq!(a.columns[0], Column::U16(vec![1, 1, 2, 2]));
        assert_eq!(b.time, vec![5.0, 7.0]);
        assert_eq!(b.columns[0], Column::U16(vec![5, 5, 7, 7]));
    }
}
