//! [`DaqDaemon`]: runs the jobs' read schedules on worker threads and writes their buffers to
//! HDF5 every write period.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::error::DaqError;
use super::hdf::{Filters, JobLayout};
use super::job::{
    lock, AttrValue, DaqJob, Drained, Dropped, JobHandle, JobStatus, ReadMode, Trigger, Wake,
};
use super::log::daq_log;
use super::names::FileNames;
use super::setting::SettingError;
use super::time::{iso_stamp, Clock, Rollover, SystemClock, Unit};
use super::writer::{FileSettings, FileWriter, Rng, WriteMode, WriteReport};

/// Daemon settings. [`Default`] gives the reference's defaults: write every 60 s, daily
/// rollover, files `DAQ_{from}_{to}.h5` in the current directory, no compression.
#[derive(Clone)]
pub struct DaemonConfig {
    /// Written as the root attribute `name`.
    pub name: String,
    /// Created (with parents) when missing.
    pub directory: PathBuf,
    /// File names: `DAQ_{date_from}_{date_to}.h5` by default.
    pub file_names: FileNames,
    pub write_period: Duration,
    /// Each interval is drawn uniformly from `[period - jitter, period + jitter]`.
    pub write_jitter: Option<Duration>,
    pub rollover: Rollover,
    /// Also roll over once a file reaches this size.
    pub max_file_bytes: Option<u64>,
    /// deflate level 1-9.
    pub deflate: Option<u8>,
    pub shuffle: bool,
    pub mode: WriteMode,
    /// Remove files that received no rows when they are closed (sdaq does this always).
    pub delete_empty_files: bool,
    /// Extra root attributes.
    pub attrs: Vec<(String, AttrValue)>,
    /// Time source for sample stamps and rollover.
    pub clock: Arc<dyn Clock>,
    /// Run the periodic writer thread (turn off to drive writes with [`DaqDaemon::write_now`]).
    pub auto_write: bool,
}

impl std::fmt::Debug for DaemonConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonConfig")
            .field("name", &self.name)
            .field("directory", &self.directory)
            .field("write_period", &self.write_period)
            .field("rollover", &self.rollover)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            name: String::new(),
            directory: PathBuf::from("."),
            file_names: FileNames::default(),
            write_period: Duration::from_secs(60),
            write_jitter: None,
            rollover: Rollover {
                count: 1,
                unit: Unit::Days,
            },
            max_file_bytes: None,
            deflate: None,
            shuffle: false,
            mode: WriteMode::Close,
            delete_empty_files: false,
            attrs: Vec::new(),
            clock: Arc::new(SystemClock),
            auto_write: true,
        }
    }
}

/// Root attribute names the daemon writes itself.
pub const RESERVED_ATTRS: &[&str] = &[
    "name",
    "write_period",
    "write_period_jitter",
    "rollover_interval",
    "max_file_bytes",
    "write_mode",
    "software",
    "run_start",
    "run_end",
    "file_start",
    "file_end",
    "previous_file_id",
    "file_id",
    "following_file_id",
    "recovered",
];

/// The daemon's state for `status`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DaemonStatus {
    pub name: String,
    pub running: bool,
    pub directory: PathBuf,
    pub mode: String,
    pub run_start: f64,
    pub run_start_iso: String,
    pub current_file: Option<PathBuf>,
    pub files_closed: usize,
    pub writes: u64,
    /// Writes made before the write period was up because a job's buffer passed half of its
    /// limit (included in `writes`; each job's status counts its own).
    pub early_writes: u64,
    pub write_errors: u64,
    pub last_write_error: Option<String>,
    pub last_write_seconds: f64,
    pub rows_written: u64,
    /// Rows dropped, all jobs (each job's status has the reasons).
    pub rows_dropped: u64,
    pub rows_pending_retry: u64,
    pub jobs: Vec<JobStatus>,
}

/// What [`DaqDaemon::stop`] leaves behind.
#[derive(Debug, Clone, PartialEq)]
pub struct StopReport {
    /// Every file of the run, in order, with its final name.
    pub files: Vec<PathBuf>,
    pub rows_written: u64,
    /// Every job's counters after the final write.
    pub jobs: Vec<JobStatus>,
    /// Why the final write or the closing of the last file failed; rows it could not write are
    /// counted in the jobs' `dropped_by.write_failed`.
    pub final_error: Option<String>,
    /// Jobs whose thread did not end within [`STOP_GRACE`] (a getter that blocks); their
    /// buffered rows were written, the thread was left behind.
    pub stuck_jobs: Vec<String>,
}

impl StopReport {
    /// Rows dropped in the run, all jobs and reasons.
    pub fn rows_dropped(&self) -> u64 {
        self.jobs.iter().map(|j| j.dropped).sum()
    }
    /// True when every row the sources produced is in a file and nothing failed.
    pub fn is_lossless(&self) -> bool {
        self.rows_dropped() == 0 && self.final_error.is_none() && self.stuck_jobs.is_empty()
    }
}

/// How long [`DaqDaemon::stop`] waits for a job's thread after its stop hook ran.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(Default)]
struct WriteStats {
    writes: u64,
    early_writes: u64,
    errors: u64,
    last_error: Option<String>,
    last_seconds: f64,
}

struct Shared {
    writer: Mutex<FileWriter>,
    stats: Mutex<WriteStats>,
    handles: Vec<JobHandle>,
    clock: Arc<dyn Clock>,
    stop: AtomicBool,
    /// Set once the jobs' stop hooks have run: the final reads may start.
    final_reads: AtomicBool,
    /// Wakes the writer at stop and when a job asks for an early write.
    writer_wake: Arc<Wake>,
}

/// Runs jobs and writes their data. See the crate docs.
pub struct DaqDaemon {
    cfg: DaemonConfig,
    jobs: Vec<DaqJob>,
    shared: Option<Arc<Shared>>,
    workers: Vec<(Arc<Wake>, JoinHandle<()>)>,
    writer_thread: Option<JoinHandle<()>>,
    on_stop: Vec<Box<dyn FnMut() + Send>>,
    handles: Vec<JobHandle>,
    triggers: BTreeMap<String, Trigger>,
    run_start: f64,
    running: bool,
}

impl std::fmt::Debug for DaqDaemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaqDaemon")
            .field("cfg", &self.cfg)
            .field("running", &self.running)
            .finish()
    }
}

impl DaqDaemon {
    /// Checks the settings and the jobs (group names must be unique).
    pub fn new(cfg: DaemonConfig, jobs: Vec<DaqJob>) -> Result<DaqDaemon, DaqError> {
        let secs = |d: Duration| format!("{} s", d.as_secs_f64());
        if cfg.write_period.is_zero() {
            return Err(SettingError::invalid("write_period", "0 s", "must be > 0").into());
        }
        if let Some(j) = cfg.write_jitter {
            if j >= cfg.write_period {
                return Err(SettingError::invalid(
                    "write_period_jitter",
                    secs(j),
                    format!(
                        "must be smaller than write_period ({})",
                        secs(cfg.write_period)
                    ),
                )
                .into());
            }
        }
        if let Some(l) = cfg.deflate {
            if !(1..=9).contains(&l) {
                return Err(SettingError::invalid("deflate", l, "use 1-9").into());
            }
        }
        if let Err(why) = cfg.file_names.check() {
            return Err(
                SettingError::invalid("file_names", format!("{:?}", cfg.file_names), why).into(),
            );
        }
        if let Some(0) = cfg.max_file_bytes {
            return Err(SettingError::invalid("max_file_bytes", 0, "must be > 0").into());
        }
        for (k, _) in &cfg.attrs {
            if RESERVED_ATTRS.contains(&k.as_str()) {
                return Err(SettingError::invalid(
                    format!("attrs.{k}"),
                    "",
                    "this attribute is written by the daemon itself; choose another name",
                )
                .into());
            }
        }
        if jobs.is_empty() {
            return Err(
                SettingError::invalid("jobs", "[]", "a daemon needs at least one job").into(),
            );
        }
        for (i, j) in jobs.iter().enumerate() {
            if jobs[..i].iter().any(|o| o.group == j.group) {
                return Err(SettingError::invalid(
                    format!("jobs[{i}].group"),
                    format!("{:?}", j.group),
                    "another job writes this group",
                )
                .into());
            }
        }
        // A constant-mode getter blocks while it waits for input: on a shared thread it would
        // hold back every other job of that thread (a 10 ms job would lose most of its reads).
        for (i, j) in jobs.iter().enumerate() {
            let Some(id) = j.thread_id else { continue };
            let other = jobs
                .iter()
                .enumerate()
                .find(|(k, o)| *k != i && o.thread_id == Some(id));
            if let (ReadMode::Constant, Some((_, o))) = (j.mode, other) {
                return Err(SettingError::invalid(
                    format!("job {:?}: thread_id", j.group),
                    id,
                    format!(
                        "this job reads constantly (its source blocks while it waits for input) and cannot share a thread with job {:?}; give it its own thread",
                        o.group
                    ),
                )
                .into());
            }
        }
        let handles = jobs.iter().map(DaqJob::handle).collect();
        let triggers = jobs
            .iter()
            .filter(|j| j.mode == ReadMode::Triggered)
            .map(|j| (j.group.clone(), j.trigger()))
            .collect();
        Ok(DaqDaemon {
            cfg,
            jobs,
            shared: None,
            workers: Vec::new(),
            writer_thread: None,
            on_stop: Vec::new(),
            handles,
            triggers,
            run_start: f64::NAN,
            running: false,
        })
    }

    /// Creates the output directory, starts the jobs' threads and the periodic writer. The first
    /// file is created at once, so a bad directory fails here and not a write period later.
    pub fn start(&mut self) -> Result<(), DaqError> {
        if self.running || self.shared.is_some() {
            return Err(DaqError::AlreadyStarted);
        }
        std::fs::create_dir_all(&self.cfg.directory).map_err(DaqError::io(&self.cfg.directory))?;
        let run_start = self.cfg.clock.now();
        self.run_start = run_start;
        let mut attrs = vec![
            ("name".to_string(), AttrValue::Str(self.cfg.name.clone())),
            (
                "write_period".to_string(),
                AttrValue::Float(self.cfg.write_period.as_secs_f64()),
            ),
            (
                "write_period_jitter".to_string(),
                AttrValue::Float(self.cfg.write_jitter.map_or(0.0, |j| j.as_secs_f64())),
            ),
        ];
        attrs.extend(self.cfg.attrs.iter().cloned());
        let settings = FileSettings {
            directory: self.cfg.directory.clone(),
            names: self.cfg.file_names.clone(),
            rollover: self.cfg.rollover,
            max_file_bytes: self.cfg.max_file_bytes,
            filters: Filters {
                deflate: self.cfg.deflate,
                shuffle: self.cfg.shuffle,
            },
            mode: self.cfg.mode,
            delete_empty_files: self.cfg.delete_empty_files,
            attrs,
        };
        let layouts: Vec<JobLayout> = self
            .jobs
            .iter()
            .map(|j| JobLayout {
                group: j.group.clone(),
                datasets: j.datasets.clone(),
                chunk_length: j.chunk_length,
                attrs: j.attrs.clone(),
            })
            .collect();
        let mut writer = FileWriter::new(settings, layouts, self.handles.clone(), run_start);
        let empty = self.handles.iter().map(|h| h.drain(true)).collect();
        writer.write(run_start, empty)?;
        let shared = Arc::new(Shared {
            writer: Mutex::new(writer),
            stats: Mutex::new(WriteStats::default()),
            handles: self.handles.clone(),
            clock: Arc::clone(&self.cfg.clock),
            stop: AtomicBool::new(false),
            final_reads: AtomicBool::new(false),
            writer_wake: Arc::new(Wake::default()),
        });
        if self.cfg.auto_write {
            // Only a writer thread acts on early-write requests.
            for h in &self.handles {
                *lock(&h.shared.writer_wake) = Some(Arc::clone(&shared.writer_wake));
            }
        }

        // Group jobs by thread id; jobs without one get a thread each.
        let mut groups: BTreeMap<Option<u32>, Vec<Vec<DaqJob>>> = BTreeMap::new();
        for mut job in std::mem::take(&mut self.jobs) {
            if let Some(f) = job.on_stop.take() {
                self.on_stop.push(f);
            }
            let slot = groups.entry(job.thread_id).or_default();
            if job.thread_id.is_some() && !slot.is_empty() {
                slot[0].push(job);
            } else {
                slot.push(vec![job]);
            }
        }
        for (id, sets) in groups {
            for jobs in sets {
                let wake = Arc::new(Wake::default());
                for j in &jobs {
                    *lock(&j.shared.wake) = Some(Arc::clone(&wake));
                }
                let name = match id {
                    Some(i) => format!("daq-thread-{i}"),
                    None => format!("daq-{}", jobs[0].group),
                };
                let (sh, w) = (Arc::clone(&shared), Arc::clone(&wake));
                let h = std::thread::Builder::new()
                    .name(name.chars().take(15).collect())
                    .spawn(move || worker(jobs, w, sh))
                    .map_err(DaqError::thread("a job thread"))?;
                self.workers.push((wake, h));
            }
        }
        if self.cfg.auto_write {
            let sh = Arc::clone(&shared);
            let (period, jitter) = (self.cfg.write_period, self.cfg.write_jitter);
            let h = std::thread::Builder::new()
                .name("daq-writer".into())
                .spawn(move || writer_loop(sh, period, jitter))
                .map_err(DaqError::thread("the writer thread"))?;
            self.writer_thread = Some(h);
        }
        self.shared = Some(shared);
        self.running = true;
        daq_log!(
            Info,
            "daemon {:?} started at {} with {} jobs into {}",
            self.cfg.name,
            iso_stamp(run_start),
            self.handles.len(),
            self.cfg.directory.display()
        );
        Ok(())
    }

    /// Writes buffered rows now (as the periodic writer does).
    pub fn write_now(&self) -> Result<WriteReport, DaqError> {
        let shared = self.shared.as_ref().ok_or(DaqError::NotStarted)?;
        do_write(shared)
    }

    /// A handle to trigger the reads of job `group`; `None` unless that job reads on trigger
    /// ([`ReadMode::Triggered`]).
    pub fn trigger(&self, group: &str) -> Option<Trigger> {
        self.triggers.get(group).cloned()
    }

    /// Handles to every job's counters and buffer.
    pub fn job_handles(&self) -> &[JobHandle] {
        &self.handles
    }

    /// A snapshot of the daemon's state.
    pub fn status(&self) -> DaemonStatus {
        let (current, closed, pending) = match &self.shared {
            Some(s) => {
                let w = lock(&s.writer);
                (
                    w.current_path().map(PathBuf::from),
                    w.finished().len(),
                    w.pending_rows(),
                )
            }
            None => (None, 0, 0),
        };
        let st = self.shared.as_ref().map(|s| {
            let st = lock(&s.stats);
            (
                st.writes,
                st.early_writes,
                st.errors,
                st.last_error.clone(),
                st.last_seconds,
            )
        });
        let (writes, early_writes, errors, last_error, last_seconds) =
            st.unwrap_or((0, 0, 0, None, 0.0));
        let jobs: Vec<JobStatus> = self.handles.iter().map(JobHandle::status).collect();
        DaemonStatus {
            name: self.cfg.name.clone(),
            running: self.running,
            directory: self.cfg.directory.clone(),
            mode: self.cfg.mode.name().to_string(),
            run_start: self.run_start,
            run_start_iso: if self.run_start.is_finite() {
                iso_stamp(self.run_start)
            } else {
                String::new()
            },
            current_file: current,
            files_closed: closed,
            writes,
            early_writes,
            write_errors: errors,
            last_write_error: last_error,
            last_write_seconds: last_seconds,
            rows_written: jobs.iter().map(|j| j.written).sum(),
            rows_dropped: jobs.iter().map(|j| j.dropped).sum(),
            rows_pending_retry: pending,
            jobs,
        }
    }

    /// Stops the jobs (running their stop hooks), then makes the final write: every buffered
    /// row, `file_end`/`run_end`, and the rename of the last file to the real end time. Returns
    /// in bounded time: a job thread still busy [`STOP_GRACE`] after its stop hook is left
    /// behind (named in the report) and its buffered rows are written. Rows the final write
    /// cannot store are counted as dropped and the report says why ([`StopReport::is_lossless`]).
    pub fn stop(mut self) -> Result<StopReport, DaqError> {
        let shared = self.shared.take().ok_or(DaqError::NotStarted)?;
        shared.stop.store(true, Ordering::SeqCst);
        for f in &mut self.on_stop {
            f();
        }
        shared.final_reads.store(true, Ordering::SeqCst);
        for (wake, _) in &self.workers {
            wake.notify();
        }
        shared.writer_wake.notify();
        let stuck_jobs = join_bounded(std::mem::take(&mut self.workers), STOP_GRACE);
        if let Some(h) = self.writer_thread.take() {
            let _ = h.join();
        }
        self.running = false;
        let now = shared.clock.now();
        let drained = shared.handles.iter().map(|h| h.drain(true)).collect();
        let mut w = lock(&shared.writer);
        let (report, error) = w.finish(now, drained);
        lock(&shared.stats).last_seconds = report.seconds;
        for f in &report.files_closed {
            daq_log!(Info, "file {}", f.display());
        }
        if let Some(e) = &error {
            daq_log!(Error, "final write failed: {e}");
        }
        let jobs: Vec<JobStatus> = shared.handles.iter().map(JobHandle::status).collect();
        for j in jobs.iter().filter(|j| j.dropped > 0) {
            daq_log!(
                Error,
                "job {}: {} rows dropped ({})",
                j.group,
                j.dropped,
                drop_summary(&j.dropped_by)
            );
        }
        daq_log!(Info, "daemon stopped at {}", iso_stamp(now));
        Ok(StopReport {
            files: w.finished().to_vec(),
            rows_written: jobs.iter().map(|j| j.written).sum(),
            jobs,
            final_error: error.map(|e| e.to_string()),
            stuck_jobs,
        })
    }
}

/// `buffer_full 3, write_failed 10` for the reasons with rows.
pub(crate) fn drop_summary(d: &Dropped) -> String {
    d.by_reason()
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| format!("{} {n}", r.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Joins the job threads, waiting at most `grace` in all; returns the names of the threads
/// still running then (they are detached).
fn join_bounded(workers: Vec<(Arc<Wake>, JoinHandle<()>)>, grace: Duration) -> Vec<String> {
    let deadline = Instant::now() + grace;
    let mut stuck = Vec::new();
    for (_, h) in workers {
        while !h.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if h.is_finished() {
            if h.join().is_err() {
                daq_log!(Error, "a job thread panicked");
            }
        } else {
            let name = h.thread().name().unwrap_or("?").to_string();
            daq_log!(
                Error,
                "job thread {name} did not stop within {} s; its buffered rows are written, the thread is left behind",
                grace.as_secs_f64()
            );
            stuck.push(name);
        }
    }
    stuck
}

impl Drop for DaqDaemon {
    fn drop(&mut self) {
        // A daemon dropped without stop(): end the threads; buffered rows are not written.
        if let Some(s) = self.shared.take() {
            s.stop.store(true, Ordering::SeqCst);
            for f in &mut self.on_stop {
                f();
            }
            s.final_reads.store(true, Ordering::SeqCst);
            for (wake, _) in &self.workers {
                wake.notify();
            }
            s.writer_wake.notify();
            join_bounded(std::mem::take(&mut self.workers), STOP_GRACE);
            if let Some(h) = self.writer_thread.take() {
                let _ = h.join();
            }
        }
    }
}

/// Why the writer writes now.
#[derive(Debug, Clone, Copy, PartialEq)]
enum WriteKind {
    /// The write period is up: every job's rows.
    Periodic,
    /// A job's buffer passed its high-water mark: the rows of the jobs that asked, only.
    Early,
}

/// The periodic write: every job's rows (which answers their early-write requests too).
fn do_write(shared: &Shared) -> Result<WriteReport, DaqError> {
    let w = lock(&shared.writer);
    // After a failed write the writer still holds those rows: retry them alone and leave new
    // rows in the jobs' buffers, whose limit then bounds memory (excess samples are dropped
    // and counted there) while the file system is failing.
    let retrying = w.pending_rows() > 0;
    let drained = shared
        .handles
        .iter()
        .map(|h| {
            h.take_flush_request();
            if retrying {
                h.drain_none()
            } else {
                h.drain(false)
            }
        })
        .collect();
    write_rows(shared, w, drained, &[])
}

/// An early write: the rows of the jobs whose buffer passed its high-water mark, only. `None`
/// when no job asks any more, or when the writer still holds the rows of a failed write (only
/// the periodic write retries them).
fn do_early_write(shared: &Shared) -> Result<Option<WriteReport>, DaqError> {
    let w = lock(&shared.writer);
    if w.pending_rows() > 0 {
        return Ok(None);
    }
    let mut asking = Vec::new();
    let drained = shared
        .handles
        .iter()
        .map(|h| {
            if h.take_flush_request() {
                asking.push(h);
                h.drain(false)
            } else {
                h.drain_none()
            }
        })
        .collect();
    if asking.is_empty() {
        return Ok(None);
    }
    write_rows(shared, w, drained, &asking).map(Some)
}

/// Writes `drained` (one entry per job) and counts the write; `early` are the jobs an early
/// write is for (empty for a periodic write).
fn write_rows(
    shared: &Shared,
    mut w: MutexGuard<'_, FileWriter>,
    drained: Vec<Drained>,
    early: &[&JobHandle],
) -> Result<WriteReport, DaqError> {
    let now = shared.clock.now();
    let res = w.write(now, drained);
    drop(w);
    let mut st = lock(&shared.stats);
    match &res {
        Ok(r) => {
            st.last_seconds = r.seconds;
            if let Some(m) = &r.short_of_space {
                st.errors += 1;
                st.last_error = Some(m.clone());
            }
        }
        Err(e) => {
            st.errors += 1;
            st.last_error = Some(e.to_string());
        }
    }
    st.writes += 1;
    if !early.is_empty() {
        st.early_writes += 1;
        early.iter().for_each(|h| h.count_early_write());
    }
    res
}

fn writer_loop(shared: Arc<Shared>, period: Duration, jitter: Option<Duration>) {
    let mut rng = Rng::seeded();
    let mut next = Instant::now();
    let mut reported: Vec<Dropped> = vec![Dropped::default(); shared.handles.len()];
    let mut kind = WriteKind::Periodic;
    loop {
        if kind == WriteKind::Periodic {
            let step = match jitter {
                Some(j) => {
                    let p = period.as_secs_f64() + (rng.unit() * 2.0 - 1.0) * j.as_secs_f64();
                    Duration::from_secs_f64(p.max(0.001))
                }
                None => period,
            };
            next += step;
        }
        // Wait for the next write period, an early-write request, or stop. The requests are
        // checked under the wake's lock, which a job takes to notify after setting its flag.
        let mut g = lock(&shared.writer_wake.generation);
        kind = loop {
            if shared.stop.load(Ordering::SeqCst) {
                return;
            }
            let now = Instant::now();
            if now >= next {
                break WriteKind::Periodic;
            }
            if shared.handles.iter().any(JobHandle::flush_wanted) {
                break WriteKind::Early;
            }
            g = match shared.writer_wake.cv.wait_timeout(g, next - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        };
        drop(g);
        let res = match kind {
            WriteKind::Periodic => do_write(&shared).map(Some),
            WriteKind::Early => do_early_write(&shared),
        };
        match res {
            Ok(None) => {
                if lock(&shared.writer).pending_rows() > 0 {
                    // A failed write's rows wait for the periodic retry, and so do the early
                    // requests (no wake-up per row while the file system is failing).
                    wait_until(&shared, next);
                }
            }
            Ok(Some(WriteReport {
                short_of_space: Some(m),
                ..
            })) => daq_log!(Error, "{m}"),
            Ok(Some(r)) => daq_log!(
                Debug,
                "wrote {} rows in {:.1} ms{}{}",
                r.rows,
                r.seconds * 1e3,
                if kind == WriteKind::Early {
                    " (early: a job's buffer passed half of its limit)"
                } else {
                    ""
                },
                if r.files_closed.is_empty() {
                    ""
                } else {
                    " (rollover)"
                }
            ),
            Err(e) => daq_log!(Error, "write failed (rows kept for the next write): {e}"),
        }
        log_new_drops(&shared.handles, &mut reported);
        let now = Instant::now();
        if kind == WriteKind::Periodic && next < now {
            // A write overran its period: continue from now instead of writing back-to-back.
            next = now;
        }
    }
}

/// Sleeps until `deadline` or stop, ignoring early-write requests.
fn wait_until(shared: &Shared, deadline: Instant) {
    let mut g = lock(&shared.writer_wake.generation);
    while !shared.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        g = match shared.writer_wake.cv.wait_timeout(g, deadline - now) {
            Ok((g, _)) => g,
            Err(p) => p.into_inner().0,
        };
    }
}

/// Logs, after each write, the rows each job dropped since the last report.
fn log_new_drops(handles: &[JobHandle], reported: &mut [Dropped]) {
    for (h, last) in handles.iter().zip(reported.iter_mut()) {
        let now = h.dropped();
        if now.total() > last.total() {
            let mut delta = Dropped::default();
            for ((r, n), (_, m)) in now.by_reason().into_iter().zip(last.by_reason()) {
                delta.add(r, n - m);
            }
            daq_log!(
                Warn,
                "job {}: {} rows dropped since the last write ({}); {} in all",
                h.group,
                delta.total(),
                drop_summary(&delta),
                now.total()
            );
            *last = now;
        }
    }
}

struct Slot {
    job: DaqJob,
    next: Instant,
}

fn worker(jobs: Vec<DaqJob>, wake: Arc<Wake>, shared: Arc<Shared>) {
    if jobs.iter().any(|j| matches!(j.mode, ReadMode::Periodic(_))) {
        // Timer-driven reads: ask for a short slice so a wake-up preempts CPU-bound threads.
        let _ = crate::sys::request_short_slice(Duration::from_micros(100));
    }
    let start = Instant::now();
    let mut slots: Vec<Slot> = jobs
        .into_iter()
        .map(|job| Slot { job, next: start })
        .collect();
    let clock = Arc::clone(&shared.clock);
    let now_fn = move || clock.now();
    read_until_stop(&mut slots, &wake, &shared, &now_fn);
    if slots.iter().any(|s| s.job.final_read) {
        // The final reads come after the stop hooks (which end the sources' processes).
        let mut g = lock(&wake.generation);
        while !shared.final_reads.load(Ordering::SeqCst) {
            g = match wake.cv.wait(g) {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
        }
        drop(g);
        for s in slots.iter_mut().filter(|s| s.job.final_read) {
            s.job.read_final(&now_fn);
        }
    }
}

fn read_until_stop(slots: &mut [Slot], wake: &Wake, shared: &Shared, now_fn: &dyn Fn() -> f64) {
    loop {
        let generation = *lock(&wake.generation);
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let mut pause: Option<Duration> = None;
        let mut busy = false;
        for s in slots.iter_mut() {
            if shared.stop.load(Ordering::SeqCst) {
                return;
            }
            match s.job.mode {
                ReadMode::Periodic(p) => {
                    if Instant::now() >= s.next {
                        s.job.read_once(now_fn);
                        s.next += p;
                        let now = Instant::now();
                        if s.next <= now {
                            // Overran: skip the missed slots, keep the grid.
                            let behind = (now - s.next).as_secs_f64() / p.as_secs_f64();
                            let missed = behind.floor() as u32 + 1;
                            s.next += p * missed;
                            s.job
                                .shared
                                .counters
                                .missed_periods
                                .fetch_add(u64::from(missed), Ordering::Relaxed);
                        }
                    }
                }
                ReadMode::Constant => {
                    if s.job.backpressure && lock(&s.job.shared.buffer).is_full() {
                        // Hold the source back until the writer drains the buffer (which wakes
                        // this thread); the timeout only bounds a missed wake-up.
                        let wait = Duration::from_millis(500);
                        pause = Some(pause.map_or(wait, |p| p.min(wait)));
                        continue;
                    }
                    let job_shared = Arc::clone(&s.job.shared);
                    let c = &job_shared.counters;
                    let errors = c.errors.load(Ordering::Relaxed);
                    let skipped = c.skipped.load(Ordering::Relaxed);
                    s.job.read_once(now_fn);
                    busy = true;
                    if c.errors.load(Ordering::Relaxed) > errors {
                        pause = Some(pause.map_or(s.job.error_delay, |p| p.max(s.job.error_delay)));
                    } else if c.skipped.load(Ordering::Relaxed) > skipped {
                        // A getter with nothing to return must not turn this into a spin loop.
                        pause = Some(pause.unwrap_or(Duration::from_millis(1)));
                    }
                }
                ReadMode::Triggered => {
                    let n = s.job.shared.pending.swap(0, Ordering::SeqCst);
                    for _ in 0..n {
                        s.job.read_once(now_fn);
                    }
                }
            }
        }
        if busy && pause.is_none() {
            continue;
        }
        let earliest = slots
            .iter()
            .filter(|s| matches!(s.job.mode, ReadMode::Periodic(_)))
            .map(|s| s.next)
            .min();
        let now = Instant::now();
        let mut timeout = earliest.map(|e| e.saturating_duration_since(now));
        if let Some(p) = pause {
            timeout = Some(timeout.map_or(p, |t| t.min(p)));
        }
        if timeout == Some(Duration::ZERO) {
            continue;
        }
        let mut g = lock(&wake.generation);
        let deadline = timeout.map(|t| now + t);
        while *g == generation && !shared.stop.load(Ordering::SeqCst) {
            match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break;
                    }
                    g = match wake.cv.wait_timeout(g, d - now) {
                        Ok((g, _)) => g,
                        Err(p) => p.into_inner().0,
                    };
                }
                None => {
                    g = match wake.cv.wait(g) {
                        Ok(g) => g,
                        Err(p) => p.into_inner(),
                    };
                }
            }
        }
    }
}
