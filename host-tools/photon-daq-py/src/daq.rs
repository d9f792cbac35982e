//! `photon_daq._native` classes over h5daq: a job whose getter is a Python callable
//! and the daemon running such jobs. `photon_daq.daq` gives them sdaq's names and
//! argument checks.
//!
//! The getter runs on the job's Rust thread and takes the GIL only for the call and
//! the conversion of its result; every blocking call from Python (start, stop, a
//! write, trigger-and-wait) releases the GIL, so a job waiting for the GIL can
//! always finish and `stop()` cannot deadlock.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use h5daq::{
    AttrValue, Clock, Column, DaemonConfig, DaqDaemon, DaqError, DaqJob, DatasetSpec, Dtype, Entry,
    GetterError, JobHandle, ReadMode, Reading, Rollover, Scalar, SystemClock, Trigger, Unit,
};
use numpy::{PyReadonlyArray1, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyFloat, PyInt, PyList, PyModule, PyTuple};

/// A job thread's own Python thread state, kept from its first getter call until the
/// thread ends. Without it every call would attach a thread that has no state, so
/// `PyGILState_Ensure` would create one and the release delete it again; Python 3.11
/// maps and unmaps a frame stack for each, which was half the cost of a row.
struct KeptThreadState;

thread_local! {
    static KEPT_THREAD_STATE: RefCell<Option<KeptThreadState>> = const { RefCell::new(None) };
}

impl KeptThreadState {
    /// Called attached (inside `Python::attach`): one more `PyGILState_Ensure` than
    /// releases, so the thread state outlives the caller's attach.
    fn keep(_py: Python<'_>) {
        KEPT_THREAD_STATE.with(|k| {
            if let Ok(mut k) = k.try_borrow_mut() {
                if k.is_none() {
                    // SAFETY: the `Python` token proves this thread holds the GIL with a
                    // thread state; a nested ensure only counts up (`PyGILState_LOCKED`)
                    // and is balanced by the release in `drop` on this same thread.
                    let state = unsafe { ffi::PyGILState_Ensure() };
                    debug_assert!(state == ffi::PyGILState_STATE::PyGILState_LOCKED);
                    *k = Some(KeptThreadState);
                }
            }
        });
    }
}

impl Drop for KeptThreadState {
    /// At thread exit: attach with the kept state, then give back both ensures, the
    /// last of which deletes the thread state.
    fn drop(&mut self) {
        // SAFETY: `Py_IsInitialized` may be called at any time. When it is true, this
        // thread still has the state `keep` counted up (nothing else deletes a state
        // whose count is above zero), so the ensure attaches it (count 2, GIL held) and
        // the two releases return the count to 0 in the order that keeps the GIL until
        // the state is deleted: first the nested LOCKED one, then the UNLOCKED one.
        unsafe {
            if ffi::Py_IsInitialized() != 0 {
                let state = ffi::PyGILState_Ensure();
                ffi::PyGILState_Release(ffi::PyGILState_STATE::PyGILState_LOCKED);
                ffi::PyGILState_Release(state);
            }
        }
    }
}

/// The numpy module, imported once.
fn numpy(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static NUMPY: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    NUMPY
        .get_or_try_init(py, || Ok::<_, PyErr>(py.import("numpy")?.unbind()))
        .map(|m| m.bind(py))
}

fn daq_err(e: DaqError) -> PyErr {
    match e {
        DaqError::Setting(_) | DaqError::Config(_) => PyValueError::new_err(e.to_string()),
        DaqError::Io { .. } => pyo3::exceptions::PyOSError::new_err(e.to_string()),
        _ => PyRuntimeError::new_err(e.to_string()),
    }
}

fn dtype(name: &str) -> PyResult<Dtype> {
    Ok(match name {
        "float64" => Dtype::F64,
        "float32" => Dtype::F32,
        "int64" => Dtype::I64,
        "int32" => Dtype::I32,
        "int16" => Dtype::I16,
        "int8" => Dtype::I8,
        "uint64" => Dtype::U64,
        "uint32" => Dtype::U32,
        "uint16" => Dtype::U16,
        "uint8" => Dtype::U8,
        other => {
            return Err(PyTypeError::new_err(format!(
                "dtype {other} is not supported (numeric types only)"
            )))
        }
    })
}

/// `"{type}: {message}"` of a Python exception, as the job's error text.
fn err_text(py: Python<'_>, e: PyErr) -> GetterError {
    let name = e
        .get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".into());
    format!("{name}: {}", e.value(py)).into()
}

/// One dataset entry from a Python value, converted as numpy assigns a value to a row
/// of sdaq's buffer (`buffer[i][pos] = value`): broadcast to the entry's shape, cast
/// to the dtype (floats truncate into integer types, out-of-range integers are
/// errors). Values numpy would store unchanged skip numpy.
fn entry(py: Python<'_>, v: &Bound<'_, PyAny>, spec: &DatasetSpec) -> PyResult<Entry> {
    if spec.shape.is_empty() {
        if let Some(s) = exact_scalar(v, spec.dtype) {
            return Ok(Entry::Scalar(s));
        }
    } else if let Some(c) = exact_array(v, spec) {
        return Ok(Entry::Array(c));
    }
    let np = numpy(py)?;
    let arr = np.call_method1("asarray", (v, spec.dtype.name()))?;
    let shape = PyTuple::new(py, &spec.shape)?;
    let flat = np
        .call_method1("broadcast_to", (arr, shape))?
        .call_method0("ravel")?;
    if spec.shape.is_empty() {
        return Ok(Entry::Scalar(match spec.dtype {
            Dtype::F64 | Dtype::F32 => Scalar::Float(flat.get_item(0)?.extract()?),
            Dtype::U64 => Scalar::UInt(flat.get_item(0)?.extract()?),
            _ => Scalar::Int(flat.get_item(0)?.extract()?),
        }));
    }
    Ok(Entry::Array(column(&flat, spec.dtype)?))
}

/// A Python float or int (bool included) that numpy would store unchanged in `dtype`;
/// `None` sends the value through numpy (casts, huge integers into floats).
fn exact_scalar(v: &Bound<'_, PyAny>, dtype: Dtype) -> Option<Scalar> {
    let float = matches!(dtype, Dtype::F64 | Dtype::F32);
    if v.is_instance_of::<PyFloat>() {
        let x: f64 = v.extract().ok()?;
        // A finite value beyond f32's range: numpy stores inf, h5daq refuses it.
        let fits = dtype == Dtype::F64 || !x.is_finite() || (x as f32).is_finite();
        return (float && fits).then_some(Scalar::Float(x));
    }
    if v.is_instance_of::<PyInt>() {
        // Out-of-range integers are errors in both numpy and h5daq.
        let s = match v.extract::<i64>() {
            Ok(i) => Scalar::Int(i),
            Err(_) => Scalar::UInt(v.extract::<u64>().ok()?),
        };
        let exact_limit = if dtype == Dtype::F32 {
            1 << 24
        } else {
            1 << 53
        };
        return match s {
            Scalar::Int(i) if float && i.unsigned_abs() > exact_limit => None,
            Scalar::UInt(_) if float => None,
            s => Some(s),
        };
    }
    None
}

/// A C-contiguous numpy array of exactly the dataset's dtype and entry shape, copied
/// once; `None` for anything else.
fn exact_array(v: &Bound<'_, PyAny>, spec: &DatasetSpec) -> Option<Column> {
    fn take<T: numpy::Element + Copy>(v: &Bound<'_, PyAny>, shape: &[usize]) -> Option<Vec<T>> {
        let a: PyReadonlyArrayDyn<'_, T> = v.extract().ok()?;
        if a.shape() != shape {
            return None;
        }
        a.as_slice().ok().map(<[T]>::to_vec)
    }
    let shape = &spec.shape;
    Some(match spec.dtype {
        Dtype::F64 => Column::F64(take(v, shape)?),
        Dtype::F32 => Column::F32(take(v, shape)?),
        Dtype::I64 => Column::I64(take(v, shape)?),
        Dtype::I32 => Column::I32(take(v, shape)?),
        Dtype::I16 => Column::I16(take(v, shape)?),
        Dtype::I8 => Column::I8(take(v, shape)?),
        Dtype::U64 => Column::U64(take(v, shape)?),
        Dtype::U32 => Column::U32(take(v, shape)?),
        Dtype::U16 => Column::U16(take(v, shape)?),
        Dtype::U8 => Column::U8(take(v, shape)?),
        Dtype::FixedStr(_) | Dtype::Str => return None,
    })
}

fn column(flat: &Bound<'_, PyAny>, dt: Dtype) -> PyResult<Column> {
    fn vec<T: numpy::Element + Copy>(a: &Bound<'_, PyAny>) -> PyResult<Vec<T>> {
        let a: PyReadonlyArray1<'_, T> = a.extract()?;
        Ok(a.as_array().to_vec())
    }
    Ok(match dt {
        Dtype::F64 => Column::F64(vec(flat)?),
        Dtype::F32 => Column::F32(vec(flat)?),
        Dtype::I64 => Column::I64(vec(flat)?),
        Dtype::I32 => Column::I32(vec(flat)?),
        Dtype::I16 => Column::I16(vec(flat)?),
        Dtype::I8 => Column::I8(vec(flat)?),
        Dtype::U64 => Column::U64(vec(flat)?),
        Dtype::U32 => Column::U32(vec(flat)?),
        Dtype::U16 => Column::U16(vec(flat)?),
        Dtype::U8 => Column::U8(vec(flat)?),
        Dtype::FixedStr(_) | Dtype::Str => {
            return Err(PyTypeError::new_err(format!(
                "dtype {dt} is not supported (numeric types only)"
            )))
        }
    })
}

/// How a job interprets its getter's result.
struct Shape {
    specs: Vec<DatasetSpec>,
    provide_time: bool,
    extend_mode: bool,
}

impl Shape {
    /// sdaq's rules: `None` or falsy skips; otherwise a sequence of one item per label,
    /// with the time first when the getter provides it.
    fn reading(&self, py: Python<'_>, r: &Bound<'_, PyAny>) -> PyResult<Reading> {
        if r.is_none() || !r.is_truthy()? {
            return Ok(Reading::Skip);
        }
        // sdaq takes `list(result)`; a list or tuple is read without an iterator.
        let items: Vec<Bound<'_, PyAny>> = if let Ok(l) = r.cast::<PyList>() {
            l.iter().collect()
        } else if let Ok(t) = r.cast::<PyTuple>() {
            t.iter().collect()
        } else {
            r.try_iter()?.collect::<PyResult<_>>()?
        };
        let timed = self.provide_time || self.extend_mode;
        let want = self.specs.len() + usize::from(timed);
        if items.len() != want {
            return Err(PyValueError::new_err(format!(
                "getter returned {} items, expected {want}",
                items.len()
            )));
        }
        if self.extend_mode {
            let np = numpy(py)?;
            let t = np.call_method1("asarray", (&items[0], "float64"))?;
            let time: Vec<f64> = column(&t.call_method0("ravel")?, Dtype::F64).and_then(|c| {
                if let Column::F64(v) = c {
                    Ok(v)
                } else {
                    Err(PyTypeError::new_err("time must be float64"))
                }
            })?;
            let mut columns = Vec::with_capacity(self.specs.len());
            for (item, spec) in items[1..].iter().zip(&self.specs) {
                let a = np.call_method1("asarray", (item, spec.dtype.name()))?;
                columns.push(column(&a.call_method0("ravel")?, spec.dtype)?);
            }
            return Ok(Reading::Rows { time, columns });
        }
        let (time, values) = if timed {
            (Some(items[0].extract::<f64>()?), &items[1..])
        } else {
            (None, &items[..])
        };
        let entries = values
            .iter()
            .zip(&self.specs)
            .map(|(v, s)| entry(py, v, s))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(match time {
            Some(t) => Reading::TimedRow(t, entries),
            None => Reading::Row(entries),
        })
    }
}

/// sdaq's `error_count`: one up for every failed read (the getter raised, or its result
/// did not fit the datasets), back to 0 when a row is stored; a skipped read (`None`)
/// leaves it as it is. h5daq's own consecutive count restarts at a skip.
#[derive(Debug, Default)]
struct ErrorCount {
    count: AtomicU64,
    /// The count before the current read returned a row, restored (plus one) if the
    /// row then does not fit.
    before_row: AtomicU64,
    row_returned: AtomicBool,
}

impl ErrorCount {
    fn read_started(&self) {
        self.row_returned.store(false, Ordering::Relaxed);
    }
    fn row_returned(&self) {
        let before = self.count.swap(0, Ordering::Relaxed);
        self.before_row.store(before, Ordering::Relaxed);
        self.row_returned.store(true, Ordering::Relaxed);
    }
    /// Counts a failed read; returns the new count and whether the getter had returned
    /// rows (which h5daq then refused).
    fn failed(&self) -> (u64, bool) {
        let had_rows = self.row_returned.swap(false, Ordering::Relaxed);
        let base = if had_rows {
            self.before_row.load(Ordering::Relaxed)
        } else {
            self.count.load(Ordering::Relaxed)
        };
        self.count.store(base + 1, Ordering::Relaxed);
        (base + 1, had_rows)
    }
}

/// How far a job's reads have got, so that `trigger_read()` returns when its own read
/// is recorded (rows buffered, or the error counted and handled), and not when an
/// earlier one is.
#[derive(Debug, Default)]
struct Progress {
    /// Getter calls that have returned.
    finished: AtomicU64,
    /// Rows the getter returned, those of them h5daq refused (the error handler ran),
    /// and the rows of the latest call.
    rows_returned: AtomicU64,
    rows_refused: AtomicU64,
    last_rows: AtomicU64,
    /// Error handler calls that have returned.
    handled: AtomicU64,
    /// Set when the job's daemon has stopped: no read is coming any more.
    stopped: AtomicBool,
    /// `finished` at the first trigger, and the triggers since.
    tickets: Mutex<Option<(u64, u64)>>,
}

impl Progress {
    fn getter_returned(&self, rows: u64) {
        self.rows_returned.fetch_add(rows, Ordering::SeqCst);
        self.last_rows.store(rows, Ordering::SeqCst);
        self.finished.fetch_add(1, Ordering::SeqCst);
    }

    /// The `finished` count at which the read of the trigger being issued is done. In
    /// trigger mode no read runs before the first trigger, so `finished` is then a base.
    fn ticket(&self) -> PyResult<u64> {
        let mut t = self
            .tickets
            .lock()
            .map_err(|_| PyRuntimeError::new_err("job lock poisoned"))?;
        let (base, issued) = t.get_or_insert((self.finished.load(Ordering::SeqCst), 0));
        *issued += 1;
        Ok(*base + *issued)
    }

    /// Whether read `target` has returned and every row and error so far is recorded.
    fn settled(&self, h: &JobHandle, target: u64) -> bool {
        if self.finished.load(Ordering::SeqCst) < target {
            return false;
        }
        let s = h.status();
        let recorded = s.rows + s.deduplicated + s.dropped_by.buffer_full;
        let returned =
            self.rows_returned.load(Ordering::SeqCst) - self.rows_refused.load(Ordering::SeqCst);
        s.errors == self.handled.load(Ordering::SeqCst) && recorded == returned
    }
}

/// Calls `f` attached to the interpreter. A thread that had no Python thread state
/// (a job thread) keeps the one made now for its lifetime (see [`KeptThreadState`]).
fn attached<R>(f: impl FnOnce(Python<'_>) -> R) -> Option<R> {
    // SAFETY: PyGILState_GetThisThreadState may be called without the GIL; it only
    // reads this thread's slot of the thread-state key.
    let fresh = unsafe { ffi::PyGILState_GetThisThreadState() }.is_null();
    Python::try_attach(|py| {
        if fresh {
            KeptThreadState::keep(py);
        }
        f(py)
    })
}

/// A DAQ job with a Python getter; moved into a daemon when one is built with it.
#[pyclass(frozen, module = "photon_daq._native")]
pub struct Job {
    job: Mutex<Option<DaqJob>>,
    handle: JobHandle,
    trigger: Trigger,
    triggered: bool,
    errors: Arc<ErrorCount>,
    progress: Arc<Progress>,
}

#[pymethods]
impl Job {
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (group, labels, dtypes, shapes, getter, read_mode, read_period,
        thread_id, provide_time, extend_mode, compress, chunk_length, error_count_limit,
        handle_error_function, constant_read_error_delay, attrs))]
    fn new(
        group: &str,
        labels: Vec<String>,
        dtypes: Vec<String>,
        shapes: Vec<Vec<usize>>,
        getter: Py<PyAny>,
        read_mode: &str,
        read_period: f64,
        thread_id: Option<u32>,
        provide_time: bool,
        extend_mode: bool,
        compress: bool,
        chunk_length: usize,
        error_count_limit: u64,
        handle_error_function: Option<Py<PyAny>>,
        constant_read_error_delay: f64,
        attrs: Vec<(String, Attr)>,
    ) -> PyResult<Job> {
        let specs = labels
            .iter()
            .zip(&dtypes)
            .zip(&shapes)
            .map(|((l, d), s)| Ok(DatasetSpec::array(l.clone(), dtype(d)?, s)))
            .collect::<PyResult<Vec<_>>>()?;
        let shape = Shape {
            specs: specs.clone(),
            provide_time,
            extend_mode,
        };
        let errors = Arc::new(ErrorCount::default());
        let getter_errors = Arc::clone(&errors);
        let progress = Arc::new(Progress::default());
        let getter_progress = Arc::clone(&progress);
        let getter_fn = move || -> Result<Reading, GetterError> {
            getter_errors.read_started();
            let reading = attached(|py| match getter.call0(py) {
                Ok(r) => shape.reading(py, r.bind(py)).map_err(|e| err_text(py, e)),
                Err(e) => Err(err_text(py, e)),
            })
            .unwrap_or_else(|| Err("the Python interpreter is shutting down".into()));
            let rows = match &reading {
                Ok(Reading::Row(_) | Reading::TimedRow(..)) => 1,
                Ok(Reading::Rows { time, .. }) => time.len() as u64,
                Ok(Reading::Skip) | Err(_) => 0,
            };
            if matches!(
                reading,
                Ok(Reading::Row(_) | Reading::TimedRow(..) | Reading::Rows { .. })
            ) {
                getter_errors.row_returned();
            }
            getter_progress.getter_returned(rows);
            reading
        };
        let mode = match read_mode {
            "schedule" => {
                ReadMode::Periodic(Duration::try_from_secs_f64(read_period).map_err(|_| {
                    PyValueError::new_err(format!("read_period {read_period} is not valid"))
                })?)
            }
            "constant" => ReadMode::Constant,
            "trigger" => ReadMode::Triggered,
            other => return Err(PyValueError::new_err(format!("read mode {other:?}"))),
        };
        let delay = Duration::try_from_secs_f64(constant_read_error_delay).map_err(|_| {
            PyValueError::new_err(format!(
                "constant_read_error_delay {constant_read_error_delay} is not valid"
            ))
        })?;
        let handler_errors = Arc::clone(&errors);
        let handler_progress = Arc::clone(&progress);
        let mut job = DaqJob::new(group, specs, getter_fn)
            .and_then(|j| j.with_mode(mode))
            .map_err(daq_err)?
            .with_provided_time(provide_time)
            .with_bulk(extend_mode)
            .with_dedup(compress)
            .with_chunk_length(chunk_length)
            .with_error_delay(delay)
            // A constant job whose buffer is full waits for the write instead of dropping
            // rows (sdaq's buffers have no limit; the getter is simply called later).
            .with_backpressure(mode == ReadMode::Constant)
            .with_attrs(attrs.into_iter().map(|(k, v)| (k, v.0)).collect())
            // Called on every error; sdaq's count decides whether the Python handler runs.
            .with_error_handler(1, move |_| {
                let (count, had_rows) = handler_errors.failed();
                if had_rows {
                    let rows = handler_progress.last_rows.load(Ordering::SeqCst);
                    handler_progress
                        .rows_refused
                        .fetch_add(rows, Ordering::SeqCst);
                }
                if let Some(handler) = handle_error_function.as_ref() {
                    if count >= error_count_limit {
                        attached(|py| {
                            if let Err(e) = handler.call0(py) {
                                e.print(py);
                            }
                        });
                    }
                }
                handler_progress.handled.fetch_add(1, Ordering::SeqCst);
            });
        if let Some(id) = thread_id {
            job = job.with_thread_id(id);
        }
        let handle = job.handle();
        let trigger = job.trigger();
        Ok(Job {
            job: Mutex::new(Some(job)),
            handle,
            trigger,
            triggered: mode == ReadMode::Triggered,
            errors,
            progress,
        })
    }

    /// One read now, finished when this returns: on this thread before the job is in
    /// a running daemon, else by the job's thread (triggered jobs only) while this waits.
    fn trigger_read(&self, py: Python<'_>) -> PyResult<()> {
        let mut slot = self
            .job
            .lock()
            .map_err(|_| PyRuntimeError::new_err("job lock poisoned"))?;
        if let Some(job) = slot.as_mut() {
            py.detach(|| job.read_once(&|| SystemClock.now()));
            return Ok(());
        }
        drop(slot);
        if !self.triggered {
            return Err(PyRuntimeError::new_err(
                "trigger_read() on a running daemon needs read_mode='trigger'",
            ));
        }
        let target = self.progress.ticket()?;
        self.trigger.trigger();
        let p = &self.progress;
        let done = || p.settled(&self.handle, target) || p.stopped.load(Ordering::SeqCst);
        // Polls with the GIL released; every 50 ms Python's signal handlers run, so
        // Ctrl-C ends a wait for a getter that does not return.
        while !py.detach(|| {
            for _ in 0..250 {
                if done() {
                    return true;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            false
        }) {
            py.check_signals()?;
        }
        Ok(())
    }

    /// Requests one read of a triggered job in a running daemon and returns at once
    /// (sdaq's start() reads every triggered job once this way).
    fn trigger(&self) -> PyResult<()> {
        if self.triggered {
            self.progress.ticket()?;
            self.trigger.trigger();
        }
        Ok(())
    }

    /// sdaq's `error_count` (see [`ErrorCount`]).
    fn error_count(&self) -> u64 {
        self.errors.count.load(Ordering::Relaxed)
    }

    /// Counters: reads, rows, written, buffered, skipped, deduplicated, dropped, errors,
    /// early writes (of a buffer half full before the write period was up).
    fn status(&self) -> (u64, u64, u64, u64, u64, u64, u64, u64, u64) {
        let s = self.handle.status();
        (
            s.reads,
            s.rows,
            s.written,
            s.buffered,
            s.skipped,
            s.deduplicated,
            s.dropped,
            s.errors,
            s.early_writes,
        )
    }
}

/// An attribute value from Python (str, bool, int or float).
pub struct Attr(AttrValue);

impl<'a, 'py> FromPyObject<'a, 'py> for Attr {
    type Error = PyErr;
    fn extract(v: pyo3::Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if v.is_instance_of::<PyBool>() {
            return Ok(Attr(AttrValue::Bool(v.extract()?)));
        }
        if let Ok(i) = v.extract::<i64>() {
            return Ok(Attr(AttrValue::Int(i)));
        }
        if let Ok(f) = v.extract::<f64>() {
            return Ok(Attr(AttrValue::Float(f)));
        }
        if let Ok(s) = v.extract::<String>() {
            return Ok(Attr(AttrValue::Str(s)));
        }
        Err(PyTypeError::new_err(
            "attributes must be str, bool, int or float",
        ))
    }
}

/// The h5daq daemon over jobs built from [`Job`]s.
#[pyclass(frozen, module = "photon_daq._native")]
pub struct Daemon {
    daemon: Mutex<Option<DaqDaemon>>,
    /// The jobs' progress, marked stopped when the daemon stops or is dropped, so a
    /// `trigger_read()` waiting in another thread returns.
    progress: Vec<Arc<Progress>>,
}

fn unit(name: &str) -> PyResult<Unit> {
    Ok(match name {
        "years" => Unit::Years,
        "months" => Unit::Months,
        "weeks" => Unit::Weeks,
        "days" => Unit::Days,
        "hours" => Unit::Hours,
        "minutes" => Unit::Minutes,
        "seconds" => Unit::Seconds,
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown rollover interval {other:?}"
            )))
        }
    })
}

fn secs(what: &str, s: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| PyValueError::new_err(format!("{what} {s}")))
}

#[pymethods]
impl Daemon {
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (jobs, name, write_period, write_period_jitter, directory, file_format,
        rollover_unit, rollover_count, deflate, shuffle, attrs))]
    fn new(
        jobs: Vec<Py<Job>>,
        name: String,
        write_period: f64,
        write_period_jitter: Option<f64>,
        directory: PathBuf,
        file_format: &str,
        rollover_unit: &str,
        rollover_count: u32,
        deflate: Option<u8>,
        shuffle: bool,
        attrs: Vec<(String, Attr)>,
    ) -> PyResult<Daemon> {
        let cfg = DaemonConfig {
            name,
            directory,
            file_names: file_format
                .parse::<h5daq::FileNames>()
                .map_err(|e| PyValueError::new_err(e.to_string()))?,
            write_period: secs("write_period", write_period)?,
            write_jitter: write_period_jitter
                .map(|j| secs("write_period_jitter", j))
                .transpose()?,
            rollover: Rollover {
                count: rollover_count,
                unit: unit(rollover_unit)?,
            },
            deflate,
            shuffle,
            // sdaq removes a file that received no rows.
            delete_empty_files: true,
            attrs: attrs.into_iter().map(|(k, v)| (k, v.0)).collect(),
            ..DaemonConfig::default()
        };
        let mut taken = Vec::with_capacity(jobs.len());
        for j in &jobs {
            let job = j
                .get()
                .job
                .lock()
                .map_err(|_| PyRuntimeError::new_err("job lock poisoned"))?
                .take()
                .ok_or_else(|| PyValueError::new_err("a job can belong to one daemon only"))?;
            taken.push(job);
        }
        let daemon = DaqDaemon::new(cfg, taken).map_err(daq_err)?;
        Ok(Daemon {
            daemon: Mutex::new(Some(daemon)),
            progress: jobs.iter().map(|j| Arc::clone(&j.get().progress)).collect(),
        })
    }

    fn start(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| match self.daemon.lock() {
            Ok(mut d) => d.as_mut().ok_or(DaqError::NotStarted)?.start(),
            Err(_) => Err(DaqError::NotStarted),
        })
        .map_err(daq_err)
    }

    /// Write every buffered row now.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| match self.daemon.lock() {
            Ok(d) => d
                .as_ref()
                .ok_or(DaqError::NotStarted)?
                .write_now()
                .map(drop),
            Err(_) => Err(DaqError::NotStarted),
        })
        .map_err(daq_err)
    }

    /// Stop the jobs and make the final write; returns the run's files. The GIL is
    /// released while job threads end, so a getter waiting for it can finish.
    fn stop(&self, py: Python<'_>) -> PyResult<Vec<PathBuf>> {
        let daemon = self
            .daemon
            .lock()
            .map_err(|_| PyRuntimeError::new_err("daemon lock poisoned"))?
            .take()
            .ok_or_else(|| daq_err(DaqError::NotStarted))?;
        let result = py.detach(|| daemon.stop());
        self.mark_stopped();
        result.map(|r| r.files).map_err(daq_err)
    }

    fn is_running(&self) -> bool {
        self.daemon
            .lock()
            .map(|d| d.as_ref().is_some_and(|d| d.status().running))
            .unwrap_or(false)
    }

    /// The current file, if one is open.
    fn current_file(&self) -> Option<PathBuf> {
        self.daemon
            .lock()
            .ok()?
            .as_ref()
            .and_then(|d| d.status().current_file)
    }
}

impl Drop for Daemon {
    /// A daemon dropped without `stop()` ends its job threads (h5daq's drop); the GIL is
    /// released meanwhile, so a getter waiting for it can return.
    fn drop(&mut self) {
        let daemon = self.daemon.get_mut().ok().and_then(Option::take);
        if let Some(d) = daemon {
            // Without an interpreter to attach to, the closure and `d` drop unattached.
            Python::try_attach(|py| py.detach(move || drop(d)));
        }
        self.mark_stopped();
    }
}

impl Daemon {
    fn mark_stopped(&self) {
        for p in &self.progress {
            p.stopped.store(true, Ordering::SeqCst);
        }
    }
}
