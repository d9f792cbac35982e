//! [`DaqJob`]: a group of datasets filled by a getter on a schedule, and its row buffer.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;

use super::column::{Column, Dtype, Entry};
use super::error::DaqError;
use super::log::{self, Level};
use super::setting::SettingError;
pub(crate) use super::stats::{bounded_message, DropCounters};
pub use super::stats::{DropReason, Dropped, SourceStats};

/// Default HDF5 chunk length along the append axis (the reference's 2**6).
pub const DEFAULT_CHUNK_LENGTH: usize = 64;
/// Default limit of buffered rows per job.
pub const DEFAULT_MAX_BUFFER_ROWS: usize = 10_000_000;
/// Default limit of buffered bytes per job (time and every dataset). Beyond either limit a job
/// with back-pressure stops reading its source; any other job drops the sample and counts it.
/// Once a job's buffer holds half of either limit, the daemon's writer writes that job's rows
/// at once (an early write) instead of waiting for the write period.
pub const DEFAULT_MAX_BUFFER_BYTES: usize = 64 << 20;
/// One dataset of a job: `/<group>/<name>`, element type and the shape of one entry
/// (empty for scalars; the file's shape is `(rows, *shape)`).
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetSpec {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Written as the dataset's `units` attribute when set.
    pub unit: Option<String>,
    /// For fixed-length strings: cut a longer string to the size (at a UTF-8 character
    /// boundary) instead of refusing the row.
    pub truncate: bool,
}

impl DatasetSpec {
    /// A scalar dataset.
    pub fn scalar(name: impl Into<String>, dtype: Dtype) -> Self {
        DatasetSpec {
            name: name.into(),
            dtype,
            shape: Vec::new(),
            unit: None,
            truncate: false,
        }
    }
    /// A dataset whose entries have `shape`.
    pub fn array(name: impl Into<String>, dtype: Dtype, shape: &[usize]) -> Self {
        DatasetSpec {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
            unit: None,
            truncate: false,
        }
    }
    /// Sets the `units` attribute.
    pub fn with_unit(mut self, unit: impl Into<String>) -> Self {
        self.unit = Some(unit.into());
        self
    }
    /// Cuts fixed-length strings that are too long instead of refusing them (see
    /// [`DatasetSpec::truncate`]).
    pub fn with_truncate(mut self, on: bool) -> Self {
        self.truncate = on;
        self
    }
    /// Elements per entry.
    pub fn entry_len(&self) -> usize {
        self.shape.iter().product()
    }
    /// `text` as this dataset stores it: cut to a fixed-length string's size when
    /// [`DatasetSpec::truncate`] is set, otherwise unchanged.
    pub fn fit_text<'a>(&self, text: &'a str) -> &'a str {
        match self.dtype {
            Dtype::FixedStr(n) if self.truncate && text.len() > n => {
                let mut end = n;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                &text[..end]
            }
            _ => text,
        }
    }
}

/// When a job's getter runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadMode {
    /// Every period, on a fixed grid from the start (missed slots are skipped and counted).
    Periodic(Duration),
    /// Again as soon as the getter returns; the getter is expected to block (socket, pipe).
    Constant,
    /// Once per [`Trigger::trigger`] call.
    Triggered,
}

/// What a getter returns.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    /// Nothing this time (the reference's `None`).
    Skip,
    /// One entry per dataset; the job stamps the time.
    Row(Vec<Entry>),
    /// Time (Unix seconds) and one entry per dataset, for jobs with getter-provided time.
    TimedRow(f64, Vec<Entry>),
    /// Bulk mode: many rows; `columns[i]` holds `time.len()` entries of dataset `i`, flattened.
    Rows {
        time: Vec<f64>,
        columns: Vec<Column>,
    },
}

/// A getter's error: anything that can be displayed.
pub type GetterError = Box<dyn std::error::Error + Send + Sync>;
/// The getter closure.
pub type Getter = Box<dyn FnMut() -> Result<Reading, GetterError> + Send>;
/// Called on every error once `consecutive` has reached the job's limit.
pub type ErrorHandler = Box<dyn FnMut(&ErrorReport<'_>) + Send>;

/// What the error handler is told.
#[derive(Debug)]
pub struct ErrorReport<'a> {
    pub group: &'a str,
    pub consecutive: u64,
    pub total: u64,
    pub error: &'a str,
}

/// An attribute value (group, root or user attributes).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// Wakes a worker thread; shared by the worker and every trigger of its jobs.
#[derive(Debug, Default)]
pub(crate) struct Wake {
    pub(crate) generation: Mutex<u64>,
    pub(crate) cv: Condvar,
}

impl Wake {
    pub(crate) fn notify(&self) {
        let mut g = lock(&self.generation);
        *g = g.wrapping_add(1);
        self.cv.notify_all();
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the buffers stay valid
/// because every mutation keeps them consistent before it can panic).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Requests reads of a [`ReadMode::Triggered`] job (cheap to clone, usable from any thread).
#[derive(Debug, Clone)]
pub struct Trigger {
    pub(crate) shared: Arc<JobShared>,
}

impl Trigger {
    /// Requests one read; reads requested faster than the getter runs are all performed.
    pub fn trigger(&self) {
        self.shared.pending.fetch_add(1, Ordering::SeqCst);
        if let Some(w) = lock(&self.shared.wake).as_ref() {
            w.notify();
        }
    }
}

/// Counters of one job, readable while it runs.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub reads: AtomicU64,
    pub rows: AtomicU64,
    pub skipped: AtomicU64,
    pub deduplicated: AtomicU64,
    pub dropped: DropCounters,
    pub errors: AtomicU64,
    pub consecutive_errors: AtomicU64,
    pub missed_periods: AtomicU64,
    pub written: AtomicU64,
    pub times_out_of_range: AtomicU64,
    pub early_writes: AtomicU64,
}

/// State shared between a job's worker, the daemon's writer and triggers.
#[derive(Debug)]
pub(crate) struct JobShared {
    pub(crate) buffer: Mutex<JobBuffer>,
    pub(crate) counters: Counters,
    pub(crate) last_error: Mutex<Option<String>>,
    pub(crate) pending: AtomicU64,
    pub(crate) wake: Mutex<Option<Arc<Wake>>>,
    pub(crate) source: Mutex<SourceStats>,
    /// The daemon's writer, woken when the buffer passes its high-water mark (none when the
    /// daemon writes only on [`super::DaqDaemon::write_now`]).
    pub(crate) writer_wake: Mutex<Option<Arc<Wake>>>,
    /// Set when the buffer passed its high-water mark; the writer clears it when it takes the
    /// rows.
    pub(crate) flush_wanted: AtomicBool,
}

/// A snapshot of a job's counters.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct JobStatus {
    pub group: String,
    /// Getter calls.
    pub reads: u64,
    /// Rows accepted into the buffer.
    pub rows: u64,
    /// Rows appended to files.
    pub written: u64,
    /// Rows waiting in the buffer.
    pub buffered: u64,
    pub skipped: u64,
    pub deduplicated: u64,
    /// Rows dropped, all reasons.
    pub dropped: u64,
    /// Rows dropped by reason.
    pub dropped_by: Dropped,
    /// Input the source could not use (lines or messages that are not rows), counted and
    /// logged at most once a second; it does not pause the job.
    pub bad_input: u64,
    pub last_bad_input: Option<String>,
    pub errors: u64,
    pub consecutive_errors: u64,
    /// Periodic slots skipped because the getter overran its period (a shared thread, a slow
    /// getter).
    pub missed_periods: u64,
    /// Rows stored with a (provided) time before their file's start or in the future.
    pub times_out_of_range: u64,
    /// Writes of this job's rows before the write period was up, because its buffer passed
    /// half of its limit.
    pub early_writes: u64,
    pub last_error: Option<String>,
}

/// A job: a group of datasets, a getter and a read schedule. Built with [`DaqJob::new`] and the
/// `with_*` methods, then handed to a [`super::DaqDaemon`].
pub struct DaqJob {
    pub(crate) group: String,
    pub(crate) datasets: Vec<DatasetSpec>,
    pub(crate) getter: Getter,
    pub(crate) mode: ReadMode,
    pub(crate) thread_id: Option<u32>,
    pub(crate) provide_time: bool,
    pub(crate) bulk: bool,
    pub(crate) error_limit: u64,
    pub(crate) error_handler: Option<ErrorHandler>,
    pub(crate) error_delay: Duration,
    pub(crate) attrs: Vec<(String, AttrValue)>,
    pub(crate) chunk_length: usize,
    pub(crate) backpressure: bool,
    pub(crate) final_read: bool,
    pub(crate) on_stop: Option<Box<dyn FnMut() + Send>>,
    pub(crate) reading_spare: Option<ReadingSpare>,
    pub(crate) shared: Arc<JobShared>,
}

/// The emptied time and columns of a job's last [`Reading::Rows`], handed back for its getter
/// to fill again (see [`DaqJob::with_reading_spare`]).
pub type ReadingSpare = Arc<Mutex<Option<(Vec<f64>, Vec<Column>)>>>;

impl std::fmt::Debug for DaqJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaqJob")
            .field("group", &self.group)
            .field("datasets", &self.datasets)
            .field("mode", &self.mode)
            .field("thread_id", &self.thread_id)
            .finish_non_exhaustive()
    }
}

/// Checks an HDF5 object name: non-empty, no `/`, not `.`.
fn check_name(what: &str, name: &str) -> Result<(), SettingError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." || name.contains('\0') {
        return Err(SettingError::invalid(
            what,
            format!("{name:?}"),
            "must be non-empty and contain no '/' or NUL",
        ));
    }
    Ok(())
}

impl DaqJob {
    /// A periodic job (1 s, like the reference) with automatic time and de-duplication off.
    /// Fails when the group or a dataset name is invalid, repeated, or `time`.
    pub fn new<F>(group: &str, datasets: Vec<DatasetSpec>, getter: F) -> Result<DaqJob, DaqError>
    where
        F: FnMut() -> Result<Reading, GetterError> + Send + 'static,
    {
        check_name("group", group)?;
        let dataset = |i: usize| format!("job {group:?}: datasets[{i}]");
        if datasets.is_empty() {
            return Err(SettingError::invalid(
                format!("job {group:?}: datasets"),
                "[]",
                "a job needs at least one dataset",
            )
            .into());
        }
        for (i, d) in datasets.iter().enumerate() {
            check_name(&dataset(i), &d.name)?;
            if d.name == "time" {
                return Err(SettingError::invalid(
                    dataset(i),
                    "\"time\"",
                    "reserved for the time column",
                )
                .into());
            }
            if datasets[..i].iter().any(|o| o.name == d.name) {
                return Err(SettingError::invalid(
                    dataset(i),
                    format!("{:?}", d.name),
                    "appears twice",
                )
                .into());
            }
            if d.shape.contains(&0) {
                return Err(SettingError::invalid(
                    format!("{}.shape", dataset(i)),
                    format!("{:?}", d.shape),
                    "has a zero-length axis",
                )
                .into());
            }
        }
        let buffer = JobBuffer::new(&datasets, DEFAULT_MAX_BUFFER_ROWS, DEFAULT_MAX_BUFFER_BYTES);
        Ok(DaqJob {
            group: group.to_string(),
            datasets,
            getter: Box::new(getter),
            mode: ReadMode::Periodic(Duration::from_secs(1)),
            thread_id: None,
            provide_time: false,
            bulk: false,
            error_limit: 2,
            error_handler: None,
            error_delay: Duration::from_secs(1),
            attrs: Vec::new(),
            chunk_length: DEFAULT_CHUNK_LENGTH,
            backpressure: false,
            final_read: false,
            on_stop: None,
            reading_spare: None,
            shared: Arc::new(JobShared {
                buffer: Mutex::new(buffer),
                counters: Counters::default(),
                last_error: Mutex::new(None),
                pending: AtomicU64::new(0),
                wake: Mutex::new(None),
                source: Mutex::new(SourceStats::default()),
                writer_wake: Mutex::new(None),
                flush_wanted: AtomicBool::new(false),
            }),
        })
    }

    /// Sets the read mode. A periodic job needs a non-zero period.
    pub fn with_mode(mut self, mode: ReadMode) -> Result<Self, DaqError> {
        if let ReadMode::Periodic(p) = mode {
            if p.is_zero() {
                return Err(SettingError::invalid(
                    format!("job {:?}: period", self.group),
                    "0 s",
                    "the read period must be > 0",
                )
                .into());
            }
        }
        self.mode = mode;
        Ok(self)
    }
    /// Jobs with the same thread id run on one thread, so their getters never overlap.
    pub fn with_thread_id(mut self, id: u32) -> Self {
        self.thread_id = Some(id);
        self
    }
    /// The getter returns [`Reading::TimedRow`] (time first) instead of the job stamping it.
    pub fn with_provided_time(mut self, on: bool) -> Self {
        self.provide_time = on;
        self
    }
    /// Bulk mode: the getter returns [`Reading::Rows`]; implies provided time, no de-duplication.
    pub fn with_bulk(mut self, on: bool) -> Self {
        self.bulk = on;
        if on {
            self.provide_time = true;
            lock(&self.shared.buffer).dedup = false;
        }
        self
    }
    /// De-duplication: of a run of identical rows only the first and the last are kept (the
    /// last one's time follows the run). Ignored in bulk mode.
    pub fn with_dedup(self, on: bool) -> Self {
        lock(&self.shared.buffer).dedup = on && !self.bulk;
        self
    }
    /// After `limit` consecutive errors (getter errors, panics, or rows that do not fit the
    /// datasets) `handler` is called, and again on every further error until a read succeeds.
    pub fn with_error_handler<H>(mut self, limit: u64, handler: H) -> Self
    where
        H: FnMut(&ErrorReport<'_>) + Send + 'static,
    {
        self.error_limit = limit.max(1);
        self.error_handler = Some(Box::new(handler));
        self
    }
    /// In constant mode, the pause after an error before the next read (default 1 s).
    pub fn with_error_delay(mut self, d: Duration) -> Self {
        self.error_delay = d;
        self
    }
    /// Attributes of the job's group.
    pub fn with_attrs(mut self, attrs: Vec<(String, AttrValue)>) -> Self {
        self.attrs = attrs;
        self
    }
    /// HDF5 chunk length along the append axis (default 64).
    pub fn with_chunk_length(mut self, n: usize) -> Self {
        self.chunk_length = n.max(1);
        self
    }
    /// Limit of buffered rows (default 10 M); see [`DEFAULT_MAX_BUFFER_BYTES`].
    pub fn with_max_buffer_rows(self, n: usize) -> Self {
        lock(&self.shared.buffer).max_rows = n.max(1);
        self
    }
    /// Limit of buffered bytes (default [`DEFAULT_MAX_BUFFER_BYTES`]); one row always fits.
    pub fn with_max_buffer_bytes(self, n: usize) -> Self {
        lock(&self.shared.buffer).max_bytes = n.max(1);
        self
    }
    /// Back-pressure (constant read mode): while the buffer is full the getter is not called,
    /// so a source that blocks on its input (a pipe) is read no faster than rows are written,
    /// instead of rows being dropped. What one read returns is always taken whole (the buffer
    /// may exceed its limit by one reading).
    pub fn with_backpressure(mut self, on: bool) -> Self {
        self.backpressure = on;
        self
    }
    /// At stop, after the stop hooks ran, the getter is called once more to hand over what the
    /// source still holds (lines already read from a command); those rows are taken even when
    /// the buffer is full. The getter must return promptly then.
    pub fn with_final_read(mut self, on: bool) -> Self {
        self.final_read = on;
        self
    }
    /// After buffering a [`Reading::Rows`], the job clears its vectors and leaves them in
    /// `spare`, where the getter takes them for its next reading: a getter returning many rows
    /// per read then fills warm memory instead of allocating (and page-faulting) afresh.
    pub fn with_reading_spare(mut self, spare: ReadingSpare) -> Self {
        self.reading_spare = Some(spare);
        self
    }
    /// Attaches the source's bad-input and drop counters to the job's status.
    pub fn with_source_stats(self, stats: SourceStats) -> Self {
        *lock(&self.shared.source) = stats;
        self
    }
    /// Called once when the daemon stops (before it waits for the job's thread), e.g. to end
    /// an external process the getter is blocked on.
    pub fn with_on_stop<F: FnMut() + Send + 'static>(mut self, f: F) -> Self {
        self.on_stop = Some(Box::new(f));
        self
    }

    /// The group name.
    pub fn group(&self) -> &str {
        &self.group
    }
    /// The datasets (without `time`).
    pub fn datasets(&self) -> &[DatasetSpec] {
        &self.datasets
    }
    /// The read mode.
    pub fn mode(&self) -> ReadMode {
        self.mode
    }
    /// The thread id, if any.
    pub fn thread_id(&self) -> Option<u32> {
        self.thread_id
    }
    /// A handle to trigger reads.
    pub fn trigger(&self) -> Trigger {
        Trigger {
            shared: Arc::clone(&self.shared),
        }
    }
    /// A handle to this job's buffer and counters that stays valid after the job moves into a
    /// daemon.
    pub fn handle(&self) -> JobHandle {
        JobHandle {
            group: self.group.clone(),
            shared: Arc::clone(&self.shared),
        }
    }

    /// Runs the getter once and buffers its result; `now` stamps automatic time.
    pub fn read_once(&mut self, now: &dyn Fn() -> f64) {
        self.read(now, false);
    }

    /// The read at stop of a job with [`DaqJob::with_final_read`]: its rows are taken even
    /// when the buffer is full (the source hands over what it still holds, a bounded amount).
    pub(crate) fn read_final(&mut self, now: &dyn Fn() -> f64) {
        self.read(now, true);
    }

    fn read(&mut self, now: &dyn Fn() -> f64, force: bool) {
        let shared = Arc::clone(&self.shared);
        let c = &shared.counters;
        c.reads.fetch_add(1, Ordering::Relaxed);
        let result = catch_unwind(AssertUnwindSafe(|| (self.getter)()));
        let t = now();
        let outcome = match result {
            Err(_) => Err("getter panicked".to_string()),
            Ok(Err(e)) => Err(format!("getter failed: {e}")),
            Ok(Ok(Reading::Skip)) => {
                c.skipped.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            // A job with back-pressure is read only while its buffer has room, and takes the
            // whole reading (a batch may overshoot the limit by itself) instead of dropping it.
            Ok(Ok(reading)) => self.buffer_reading(reading, t, force || self.backpressure),
        };
        match outcome {
            Ok(()) => c.consecutive_errors.store(0, Ordering::Relaxed),
            Err(msg) => self.record_error(msg),
        }
    }

    fn buffer_reading(&mut self, reading: Reading, t_auto: f64, force: bool) -> Result<(), String> {
        let shared = Arc::clone(&self.shared);
        let c = &shared.counters;
        let mut buf = lock(&shared.buffer);
        let outcomes = self.push_reading(&mut buf, reading, t_auto, force);
        let high = buf.above_high_water();
        drop(buf);
        for outcome in outcomes? {
            match outcome {
                Pushed::Rows(n) => {
                    c.rows.fetch_add(n as u64, Ordering::Relaxed);
                }
                Pushed::Deduplicated => {
                    c.deduplicated.fetch_add(1, Ordering::Relaxed);
                }
                Pushed::Dropped(n) => {
                    c.dropped.add(DropReason::BufferFull, n as u64);
                }
            }
        }
        if high {
            self.request_flush();
        }
        Ok(())
    }

    /// Buffers one reading; the caller holds the buffer's lock.
    fn push_reading(
        &self,
        buf: &mut JobBuffer,
        reading: Reading,
        t_auto: f64,
        force: bool,
    ) -> Result<Vec<Pushed>, String> {
        match reading {
            Reading::Skip => Ok(Vec::new()),
            Reading::Row(entries) => {
                if self.provide_time || self.bulk {
                    return Err("getter returned a row without time, but the job expects the getter to provide the time".into());
                }
                Ok(vec![buf.push_row(
                    t_auto,
                    &entries,
                    &self.datasets,
                    force,
                )?])
            }
            Reading::TimedRow(t, entries) => {
                if !self.provide_time || self.bulk {
                    return Err("getter returned a time, but the job stamps the time itself (enable provided time)".into());
                }
                if !t.is_finite() {
                    return Err(format!("getter returned time {t}"));
                }
                Ok(vec![buf.push_row(t, &entries, &self.datasets, force)?])
            }
            Reading::Rows { time, columns } => {
                let pushed = self.push_bulk(buf, &time, &columns, force);
                if let Some(spare) = &self.reading_spare {
                    let (mut time, mut columns) = (time, columns);
                    time.clear();
                    columns.iter_mut().for_each(Column::clear);
                    *lock(spare) = Some((time, columns));
                }
                pushed
            }
        }
    }

    /// Asks the writer for an early write of this job's rows (once per crossing of the
    /// high-water mark: the flag stays set until the writer takes the rows).
    fn request_flush(&self) {
        let shared = &self.shared;
        if shared.flush_wanted.load(Ordering::Relaxed) {
            return;
        }
        if let Some(w) = lock(&shared.writer_wake).as_ref() {
            // The flag is set before the wake-up, so a writer that checks it under the wake's
            // lock cannot miss it.
            shared.flush_wanted.store(true, Ordering::SeqCst);
            w.notify();
        }
    }

    /// Buffers the rows of a [`Reading::Rows`]: all at once (one copy per column), or one at a
    /// time with de-duplication, so that it applies to each.
    fn push_bulk(
        &self,
        buf: &mut JobBuffer,
        time: &[f64],
        columns: &[Column],
        force: bool,
    ) -> Result<Vec<Pushed>, String> {
        if !self.bulk && !self.provide_time {
            return Err("getter returned rows with times, but the job stamps the time itself (enable provided time)".into());
        }
        if self.bulk || !buf.dedup {
            return Ok(vec![buf.push_rows(time, columns, &self.datasets, force)?]);
        }
        let lens: Vec<usize> = self.datasets.iter().map(DatasetSpec::entry_len).collect();
        let mut out = Vec::with_capacity(time.len());
        for (i, &t) in time.iter().enumerate() {
            let entries = row_entries(columns, &self.datasets, &lens, i)?;
            out.push(buf.push_row(t, &entries, &self.datasets, force)?);
        }
        Ok(out)
    }

    fn record_error(&mut self, msg: String) {
        let msg = bounded_message(&msg);
        let c = &self.shared.counters;
        let total = c.errors.fetch_add(1, Ordering::Relaxed) + 1;
        let consecutive = c.consecutive_errors.fetch_add(1, Ordering::Relaxed) + 1;
        log::emit(
            Level::Warn,
            format_args!(
                "job {}: {msg} (consecutive errors: {consecutive})",
                self.group
            ),
        );
        if consecutive >= self.error_limit {
            if let Some(h) = self.error_handler.as_mut() {
                let report = ErrorReport {
                    group: &self.group,
                    consecutive,
                    total,
                    error: msg.as_str(),
                };
                if catch_unwind(AssertUnwindSafe(|| h(&report))).is_err() {
                    log::emit(
                        Level::Error,
                        format_args!("job {}: the error handler panicked", self.group),
                    );
                }
            }
        }
        *lock(&self.shared.last_error) = Some(msg);
    }
}

/// Row `i` of bulk `columns` as one entry per dataset.
fn row_entries(
    columns: &[Column],
    specs: &[DatasetSpec],
    lens: &[usize],
    i: usize,
) -> Result<Vec<Entry>, String> {
    if columns.len() != specs.len() {
        return Err(format!(
            "getter returned {} columns, the job has {} datasets",
            columns.len(),
            specs.len()
        ));
    }
    let mut out = Vec::with_capacity(specs.len());
    for ((c, spec), &e) in columns.iter().zip(specs).zip(lens) {
        if c.len() < (i + 1) * e {
            return Err(format!(
                "dataset {}: too few elements for row {i}",
                spec.name
            ));
        }
        out.push(match (spec.shape.is_empty(), c.get(i)) {
            (true, Some(v)) => Entry::Scalar(v),
            _ => {
                let mut col = Column::with_capacity(c.dtype(), e);
                col.extend_range(c, i * e..(i + 1) * e);
                Entry::Array(col)
            }
        });
    }
    Ok(out)
}

/// A handle on a job's buffer and counters.
#[derive(Debug, Clone)]
pub struct JobHandle {
    pub(crate) group: String,
    pub(crate) shared: Arc<JobShared>,
}

impl JobHandle {
    /// The job's counters now.
    pub fn status(&self) -> JobStatus {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let source = lock(&self.shared.source).clone();
        let dropped_by = self.dropped();
        JobStatus {
            group: self.group.clone(),
            reads: get(&c.reads),
            rows: get(&c.rows),
            written: get(&c.written),
            buffered: lock(&self.shared.buffer).rows() as u64,
            skipped: get(&c.skipped),
            deduplicated: get(&c.deduplicated),
            dropped: dropped_by.total(),
            dropped_by,
            bad_input: source.bad_inputs(),
            last_bad_input: source.last_bad_input(),
            errors: get(&c.errors),
            consecutive_errors: get(&c.consecutive_errors),
            missed_periods: get(&c.missed_periods),
            times_out_of_range: get(&c.times_out_of_range),
            early_writes: get(&c.early_writes),
            last_error: lock(&self.shared.last_error).clone(),
        }
    }

    /// Removes buffered rows: all of them when `all`, otherwise all but a de-duplication run's
    /// last row, which may still have its time updated.
    pub fn drain(&self, all: bool) -> Drained {
        let mut b = lock(&self.shared.buffer);
        let was_full = b.is_full();
        let d = b.drain(all);
        drop(b);
        if was_full {
            // A job with back-pressure waits for room: wake its thread.
            if let Some(w) = lock(&self.shared.wake).as_ref() {
                w.notify();
            }
        }
        d
    }

    /// Whether the buffer passed its high-water mark since the writer last took its rows.
    pub(crate) fn flush_wanted(&self) -> bool {
        self.shared.flush_wanted.load(Ordering::SeqCst)
    }

    /// Clears the early-write request; true when there was one.
    pub(crate) fn take_flush_request(&self) -> bool {
        self.shared.flush_wanted.swap(false, Ordering::SeqCst)
    }

    /// Counts one early write of this job's rows.
    pub(crate) fn count_early_write(&self) {
        self.shared
            .counters
            .early_writes
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Hands rows already stored back to the job, whose next drain reuses their memory.
    pub(crate) fn recycle(&self, d: Drained) {
        lock(&self.shared.buffer).recycle(d);
    }

    /// Rows dropped so far, by reason (the job's and its source's counts).
    pub fn dropped(&self) -> Dropped {
        let mut d = self.shared.counters.dropped.snapshot();
        let source = lock(&self.shared.source).clone();
        for (r, n) in source.drops().by_reason() {
            d.add(r, n);
        }
        d
    }

    /// Counts `n` rows stored with a time outside their file's interval.
    pub(crate) fn count_times_out_of_range(&self, n: u64) {
        self.shared
            .counters
            .times_out_of_range
            .fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` rows appended to a file.
    pub(crate) fn count_written(&self, n: u64) {
        self.shared.counters.written.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` of this job's rows as dropped for `reason` (by the daemon's writer).
    pub(crate) fn count_dropped(&self, reason: DropReason, n: u64) {
        if n > 0 {
            self.shared.counters.dropped.add(reason, n);
        }
    }

    /// No rows, shaped like this job's drains.
    pub(crate) fn drain_none(&self) -> Drained {
        let b = lock(&self.shared.buffer);
        Drained {
            time: Vec::new(),
            columns: b
                .dtypes
                .iter()
                .map(|d| Column::with_capacity(*d, 0))
                .collect(),
        }
    }
}

/// Rows taken out of a job's buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct Drained {
    pub time: Vec<f64>,
    /// One column per dataset, `time.len() * entry_len` elements each.
    pub columns: Vec<Column>,
}

impl Drained {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.time.len()
    }
}

#[derive(Debug)]
enum Pushed {
    Rows(usize),
    Deduplicated,
    Dropped(usize),
}

/// The rows a job has read and the daemon has not written yet.
#[derive(Debug)]
pub(crate) struct JobBuffer {
    time: Vec<f64>,
    columns: Vec<Column>,
    entry_lens: Vec<usize>,
    dtypes: Vec<Dtype>,
    pub(crate) dedup: bool,
    pub(crate) max_rows: usize,
    pub(crate) max_bytes: usize,
    /// Bytes of one row: its time and every dataset's entry.
    row_bytes: usize,
    /// Bytes of the buffered variable-length strings' text (beyond `row_bytes` per row).
    text_bytes: usize,
    run_len: u32,
    have_last: bool,
    last_bytes: Vec<u8>,
    scratch: Vec<u8>,
    /// Rows the writer has stored, handed back ([`JobHandle::recycle`]): the next drain fills
    /// their allocation instead of a fresh one (no page faults, no growth copies).
    spare: Option<Drained>,
}

impl JobBuffer {
    pub(crate) fn new(datasets: &[DatasetSpec], max_rows: usize, max_bytes: usize) -> Self {
        JobBuffer {
            time: Vec::new(),
            columns: datasets
                .iter()
                .map(|d| Column::with_capacity(d.dtype, 0))
                .collect(),
            entry_lens: datasets.iter().map(DatasetSpec::entry_len).collect(),
            dtypes: datasets.iter().map(|d| d.dtype).collect(),
            dedup: false,
            max_rows,
            max_bytes,
            row_bytes: 8 + datasets
                .iter()
                .map(|d| d.entry_len() * d.dtype.size())
                .sum::<usize>(),
            text_bytes: 0,
            run_len: 0,
            have_last: false,
            last_bytes: Vec::new(),
            scratch: Vec::new(),
            spare: None,
        }
    }

    pub(crate) fn rows(&self) -> usize {
        self.time.len()
    }

    /// Whether `n` more rows fit; an empty buffer always takes them (a row larger than the
    /// byte limit is not dropped for ever).
    fn fits(&self, n: usize) -> bool {
        let rows = self.time.len();
        rows == 0
            || (rows + n <= self.max_rows
                && (rows + n)
                    .saturating_mul(self.row_bytes)
                    .saturating_add(self.text_bytes)
                    <= self.max_bytes)
    }

    /// Text bytes of the variable-length strings in rows from `lens` (element counts per
    /// column) to the end.
    fn text_bytes_from(&self, lens: &[usize]) -> usize {
        self.columns
            .iter()
            .zip(lens)
            .map(|(c, &l)| c.heap_bytes(l..c.len()))
            .sum()
    }

    /// True when no further row fits.
    pub(crate) fn is_full(&self) -> bool {
        !self.fits(1)
    }

    /// True when the buffer holds at least half of its row or byte limit: the writer should
    /// take its rows now, while the other half still takes new ones.
    pub(crate) fn above_high_water(&self) -> bool {
        let rows = self.time.len();
        rows > 0
            && (rows.saturating_mul(2) >= self.max_rows
                || rows
                    .saturating_mul(self.row_bytes)
                    .saturating_add(self.text_bytes)
                    .saturating_mul(2)
                    >= self.max_bytes)
    }

    fn rollback(&mut self, lens: &[usize]) {
        for (c, &l) in self.columns.iter_mut().zip(lens) {
            c.truncate(l);
        }
    }

    fn push_row(
        &mut self,
        t: f64,
        entries: &[Entry],
        specs: &[DatasetSpec],
        force: bool,
    ) -> Result<Pushed, String> {
        if entries.len() != self.columns.len() {
            return Err(format!(
                "getter returned {} entries, the job has {} datasets ({})",
                entries.len(),
                self.columns.len(),
                specs
                    .iter()
                    .map(|d| d.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !force && !self.fits(1) {
            return Ok(Pushed::Dropped(1));
        }
        let lens: Vec<usize> = self.columns.iter().map(Column::len).collect();
        for (i, entry) in entries.iter().enumerate() {
            let want = self.entry_lens[i];
            let res = match entry {
                super::column::Entry::Scalar(s) if want == 1 && specs[i].shape.is_empty() => {
                    self.columns[i].push_scalar(*s).map_err(|e| e.to_string())
                }
                super::column::Entry::Scalar(_) => Err(format!(
                    "an array of shape {:?} is expected, got a scalar",
                    specs[i].shape
                )),
                super::column::Entry::Array(a) if a.len() == want => {
                    self.columns[i].extend_from(a).map_err(|e| e.to_string())
                }
                super::column::Entry::Array(a) => Err(format!(
                    "{} elements (shape {:?}) are expected, got {}",
                    want,
                    specs[i].shape,
                    a.len()
                )),
                super::column::Entry::Text(t) if want == 1 && specs[i].shape.is_empty() => self
                    .columns[i]
                    .push_text(specs[i].fit_text(t))
                    .map_err(|e| e.to_string()),
                super::column::Entry::Text(_) => Err(format!(
                    "an array of shape {:?} is expected, got a string",
                    specs[i].shape
                )),
            };
            if let Err(e) = res {
                self.rollback(&lens);
                return Err(format!("dataset {}: {e}", specs[i].name));
            }
        }
        let had_rows = !self.time.is_empty();
        self.time.push(t);
        let added_text = self.text_bytes_from(&lens);
        self.text_bytes += added_text;
        if !self.dedup {
            return Ok(Pushed::Rows(1));
        }
        self.scratch.clear();
        for (i, c) in self.columns.iter().enumerate() {
            c.row_bytes(lens[i]..lens[i] + self.entry_lens[i], &mut self.scratch);
        }
        if self.have_last && self.scratch == self.last_bytes {
            if self.run_len >= 2 && had_rows {
                // Same as the run's current last row: drop the new row, move the time.
                self.rollback(&lens);
                self.text_bytes -= added_text;
                self.time.pop();
                if let Some(last) = self.time.last_mut() {
                    *last = t;
                }
                return Ok(Pushed::Deduplicated);
            }
            self.run_len = self.run_len.saturating_add(1).max(2);
        } else {
            self.run_len = 1;
            std::mem::swap(&mut self.last_bytes, &mut self.scratch);
            self.have_last = true;
        }
        Ok(Pushed::Rows(1))
    }

    fn push_rows(
        &mut self,
        time: &[f64],
        columns: &[Column],
        specs: &[DatasetSpec],
        force: bool,
    ) -> Result<Pushed, String> {
        let n = time.len();
        if columns.len() != self.columns.len() {
            return Err(format!(
                "getter returned {} columns, the job has {} datasets",
                columns.len(),
                self.columns.len()
            ));
        }
        if let Some(bad) = time.iter().find(|t| !t.is_finite()) {
            return Err(format!("getter returned time {bad}"));
        }
        for (i, c) in columns.iter().enumerate() {
            if c.len() != n * self.entry_lens[i] {
                return Err(format!(
                    "dataset {}: {} rows need {} elements, got {}",
                    specs[i].name,
                    n,
                    n * self.entry_lens[i],
                    c.len()
                ));
            }
        }
        if !force && !self.fits(n) {
            return Ok(Pushed::Dropped(n));
        }
        let lens: Vec<usize> = self.columns.iter().map(Column::len).collect();
        for (i, c) in columns.iter().enumerate() {
            if let Err(e) = self.columns[i].extend_from(c) {
                self.rollback(&lens);
                return Err(format!("dataset {}: {e}", specs[i].name));
            }
        }
        self.time.extend_from_slice(time);
        self.text_bytes += self.text_bytes_from(&lens);
        Ok(Pushed::Rows(n))
    }

    pub(crate) fn drain(&mut self, all: bool) -> Drained {
        let n = self.time.len();
        let keep = usize::from(!all && self.dedup && self.run_len >= 2 && n > 0);
        let split = n - keep;
        let mut spare = self.spare.take().filter(|d| {
            d.columns.len() == self.columns.len()
                && d.columns
                    .iter()
                    .zip(&self.dtypes)
                    .all(|(c, t)| c.dtype() == *t)
        });
        let tail_time = self.time.split_off(split);
        let time = match spare.as_mut() {
            Some(sp) => {
                sp.time.clear();
                sp.time.extend_from_slice(&tail_time);
                std::mem::replace(&mut self.time, std::mem::take(&mut sp.time))
            }
            None => std::mem::replace(&mut self.time, tail_time),
        };
        let mut columns = Vec::with_capacity(self.columns.len());
        for (i, c) in self.columns.iter_mut().enumerate() {
            let tail = c.split_off(split * self.entry_lens[i]);
            let next = match spare.as_mut() {
                Some(sp) => {
                    let mut s = std::mem::replace(
                        &mut sp.columns[i],
                        Column::with_capacity(self.dtypes[i], 0),
                    );
                    s.clear();
                    s.extend_range(&tail, 0..tail.len());
                    s
                }
                None => tail,
            };
            columns.push(std::mem::replace(c, next));
        }
        self.text_bytes = self.text_bytes_from(&vec![0; self.columns.len()]);
        Drained { time, columns }
    }

    /// Keeps `d`'s allocation for the next drain (see [`JobBuffer::spare`]).
    fn recycle(&mut self, d: Drained) {
        if self.spare.is_none() && d.time.capacity() > 0 {
            self.spare = Some(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> Vec<DatasetSpec> {
        vec![
            DatasetSpec::scalar("a", Dtype::F64),
            DatasetSpec::array("b", Dtype::U16, &[2]),
        ]
    }

    #[test]
    fn high_water_is_half_of_the_row_or_byte_limit() {
        let specs = specs();
        let row = |x: u16| vec![Entry::from(1.0), Entry::from(vec![x, x])];
        // By rows: 10 of at most 20.
        let mut b = JobBuffer::new(&specs, 20, usize::MAX);
        assert!(!b.above_high_water(), "an empty buffer asks for nothing");
        for i in 0..10 {
            assert!(!b.above_high_water(), "{i} rows");
            b.push_row(0.0, &row(i), &specs, false).unwrap();
        }
        assert!(b.above_high_water());
        assert!(!b.is_full());
        b.drain(true);
        assert!(!b.above_high_water());
        // By bytes: a row is 8 (time) + 8 + 2 * 2 = 20 bytes; 5 rows of at most 200 bytes.
        let mut b = JobBuffer::new(&specs, usize::MAX, 200);
        for i in 0..4 {
            b.push_row(0.0, &row(i), &specs, false).unwrap();
        }
        assert!(!b.above_high_water());
        b.push_row(0.0, &row(4), &specs, false).unwrap();
        assert!(b.above_high_water());
    }

    #[test]
    fn a_reading_past_the_high_water_mark_wakes_the_writer_once() {
        let mut n = 0.0;
        let mut job = DaqJob::new("g", vec![DatasetSpec::scalar("a", Dtype::F64)], move || {
            n += 1.0;
            Ok(Reading::Row(vec![Entry::from(n)]))
        })
        .unwrap()
        .with_max_buffer_rows(4);
        let writer = Arc::new(Wake::default());
        *lock(&job.shared.writer_wake) = Some(Arc::clone(&writer));
        let generation = || *lock(&writer.generation);
        job.read_once(&|| 0.0);
        assert_eq!(generation(), 0);
        job.read_once(&|| 0.0);
        assert_eq!(generation(), 1, "2 of 4 rows: an early write is asked for");
        job.read_once(&|| 0.0);
        assert_eq!(
            generation(),
            1,
            "asked once until the writer takes the rows"
        );
        let h = job.handle();
        assert!(h.take_flush_request());
        h.drain(true);
        job.read_once(&|| 0.0);
        job.read_once(&|| 0.0);
        assert_eq!(generation(), 2);
    }

    #[test]
    fn dedup_keeps_first_and_last_of_a_run() {
        let specs = specs();
        let mut b = JobBuffer::new(&specs, 100, usize::MAX);
        b.dedup = true;
        let row = |a: f64, x: u16| vec![Entry::from(a), Entry::from(vec![x, x])];
        // d0 d0 d0 d0 d1 d1 d1 d2 d3 d3 d3 -> d0 d0 d1 d1 d2 d3 d3 (the reference's example)
        let seq = [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 3.0, 3.0, 3.0];
        for (i, v) in seq.iter().enumerate() {
            b.push_row(i as f64, &row(*v, *v as u16), &specs, false)
                .unwrap();
        }
        let d = b.drain(true);
        assert_eq!(d.time, vec![0.0, 3.0, 4.0, 6.0, 7.0, 8.0, 10.0]);
        assert_eq!(
            d.columns[0],
            Column::F64(vec![0.0, 0.0, 1.0, 1.0, 2.0, 3.0, 3.0])
        );
        assert_eq!(
            d.columns[1],
            Column::U16(vec![0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 3, 3])
        );
    }

    #[test]
    fn dedup_holds_back_the_open_run_across_drains() {
        let specs = specs();
        let mut b = JobBuffer::new(&specs, 100, usize::MAX);
        b.dedup = true;
        let row = vec![Entry::from(5.0), Entry::from(vec![1u16, 2])];
        for t in 0..3 {
            b.push_row(f64::from(t), &row, &specs, false).unwrap();
        }
        let d = b.drain(false);
        assert_eq!(
            d.time,
            vec![0.0],
            "the run's last row stays for its time to move on"
        );
        b.push_row(3.0, &row, &specs, false).unwrap();
        b.push_row(4.0, &row, &specs, false).unwrap();
        let d = b.drain(true);
        assert_eq!(d.time, vec![4.0]);
        assert_eq!(d.columns[1], Column::U16(vec![1, 2]));
    }

    #[test]
    fn wrong_rows_are_rejected_without_partial_writes() {
        let specs = specs();
        let mut b = JobBuffer::new(&specs, 100, usize::MAX);
        assert!(b.push_row(0.0, &[Entry::from(1.0)], &specs, false).is_err());
        let err = b.push_row(
            0.0,
            &[Entry::from(1.0), Entry::from(vec![1u16])],
            &specs,
            false,
        );
        assert!(err.unwrap_err().contains("dataset b"));
        assert!(b
            .push_row(0.0, &[Entry::from(1.0), Entry::from(7.0)], &specs, false)
            .is_err());
        assert_eq!(b.rows(), 0);
        assert_eq!(
            b.columns[0].len(),
            0,
            "the first dataset's value was rolled back"
        );
        let mut small = JobBuffer::new(&specs, 1, usize::MAX);
        let ok = vec![Entry::from(1.0), Entry::from(vec![1u16, 2])];
        assert!(matches!(
            small.push_row(0.0, &ok, &specs, false),
            Ok(Pushed::Rows(1))
        ));
        assert!(matches!(
            small.push_row(1.0, &ok, &specs, false),
            Ok(Pushed::Dropped(1))
        ));
    }

    fn capacities(d: &Drained) -> (usize, Vec<usize>) {
        let caps = d
            .columns
            .iter()
            .map(|c| match c {
                Column::F64(v) => v.capacity(),
                Column::U16(v) => v.capacity(),
                _ => 0,
            })
            .collect();
        (d.time.capacity(), caps)
    }

    #[test]
    fn a_recycled_drain_is_filled_again_without_new_memory() {
        let specs = specs();
        let mut b = JobBuffer::new(&specs, 10_000, usize::MAX);
        let row = vec![Entry::from(1.0), Entry::from(vec![1u16, 2])];
        for t in 0..1000 {
            b.push_row(f64::from(t), &row, &specs, false).unwrap();
        }
        let mut first = b.drain(true);
        // A capacity that growth from empty to 1000 rows would not give.
        first.time.reserve_exact(10_000);
        let (time_cap, caps) = capacities(&first);
        let time_ptr = first.time.as_ptr();
        b.recycle(first);
        // The spare becomes the buffer at the next drain, emptied.
        b.push_row(1000.0, &row, &specs, false).unwrap();
        let second = b.drain(true);
        assert_eq!(second.time, vec![1000.0]);
        for t in 0..1000 {
            b.push_row(f64::from(t), &row, &specs, false).unwrap();
        }
        let third = b.drain(true);
        assert_eq!(third.rows(), 1000);
        assert_eq!(third.columns[1].len(), 2000);
        assert_eq!(third.time.as_ptr(), time_ptr, "the first drain's memory");
        assert_eq!(capacities(&third), (time_cap, caps));
    }

    #[test]
    fn a_job_hands_the_vectors_of_a_bulk_reading_back_to_its_getter() {
        let spare: ReadingSpare = Arc::default();
        let got = Arc::new(Mutex::new(Vec::new()));
        let mut job = DaqJob::new("g", vec![DatasetSpec::scalar("a", Dtype::F64)], {
            let (spare, got) = (Arc::clone(&spare), Arc::clone(&got));
            move || {
                let (mut time, mut columns) = lock(&spare)
                    .take()
                    .unwrap_or_else(|| (Vec::new(), vec![Column::with_capacity(Dtype::F64, 0)]));
                lock(&got).push((time.len(), time.capacity()));
                time.extend([1.0, 2.0, 3.0]);
                columns[0].extend_from(&Column::F64(vec![4.0, 5.0, 6.0]))?;
                Ok(Reading::Rows { time, columns })
            }
        })
        .unwrap()
        .with_provided_time(true)
        .with_reading_spare(spare);
        for _ in 0..3 {
            job.read_once(&|| 0.0);
        }
        let got = lock(&got).clone();
        assert_eq!(got[0], (0, 0), "nothing to reuse at first");
        assert!(
            got[1..].iter().all(|&(len, cap)| len == 0 && cap >= 3),
            "emptied, with their memory: {got:?}"
        );
        let d = job.handle().drain(true);
        assert_eq!(d.columns[0], Column::F64([4.0, 5.0, 6.0].repeat(3)));
    }
}
