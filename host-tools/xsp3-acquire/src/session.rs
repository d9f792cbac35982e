//! One acquisition: the engine feeding a ring, and the ring feeding up to three sinks, each on its
//! own thread: the HDF5 writer (lossless), the ZMQ stream (lossless over PUSH) and the monitor
//! (lossy).
//!
//! Everything is allocated and every socket and file is opened before the detector is armed, so
//! nothing is lost to start-up. Sinks never call back into the producer: they only release ring
//! slots. A sink that fails sets its error; the engine loop then stops the detector and ends the
//! session, and the summary carries the error (the binary exits non-zero). At the end, the engine's
//! drop record goes to the writer (file attributes) and the stream (`series_end`).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use acq_core::detector::Detector;
use acq_core::engine::{Acquisition, Clock, EngineError, EngineState, LostRange, StepOutcome};
use acq_core::ring::{Consumer, FrameRing, Policy, Producer, RingConfig, SlotBuffers};
use acq_core::wait::ParkWait;
use serde::Serialize;

use crate::monitor::Monitor;
use crate::sender::{StreamConfig, StreamSender};
use xspress3::layout::chunk_frames;
use xspress3::protocol::{Header, SeriesEnd};
use xspress3::{AcqDescription, AcqFileWriter, DropRecord, OutputConfig};

/// The sinks and sizes of a session, made by [`crate::prepare`].
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Base file name announced to stream receivers (the stream header's `filename`), whether
    /// or not this process writes files itself; "" for none.
    pub(crate) series_name: String,
    /// Whether receivers may replace an existing file of that name.
    pub(crate) series_overwritable: bool,
    pub(crate) output: Option<OutputConfig>,
    pub(crate) stream: Option<StreamConfig>,
    pub(crate) monitor: Option<String>,
    /// Ring capacity in frames (rounded up to a whole number of write batches).
    pub(crate) ring_frames: usize,
    /// Print a status line this often (a live line on a TTY, log lines otherwise).
    pub(crate) status_every: Option<Duration>,
}

/// Shared between the session and whoever controls it (signal handler, control socket).
#[derive(Debug, Default)]
pub struct SessionControl {
    /// Stop the detector, drain, finish. An `Arc` so a signal handler can set it.
    pub stop: std::sync::Arc<AtomicBool>,
    /// Software triggers requested and not yet issued.
    pub soft_triggers: AtomicU64,
    /// Set once the detector is armed (every sink is ready by then).
    pub armed: AtomicBool,
    /// The latest status, refreshed several times a second while a session runs.
    pub status: Mutex<Status>,
}

impl SessionControl {
    pub fn snapshot(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What a session is doing, for status lines, the control socket's `status` and the summary.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Status {
    pub state: String,
    pub elapsed_s: f64,
    /// Frames moved out of the detector into the ring.
    pub frames_acquired: u64,
    pub frames_written: u64,
    /// Written and flushed: safe from a crash.
    pub frames_flushed: u64,
    pub frames_sent: u64,
    /// Lost before they were read (SDK buffer overrun).
    pub frames_lost: u64,
    pub sdk_overruns: u64,
    /// Refused by a PUB stream at its high-water mark.
    pub stream_drops: u64,
    /// Monitor requests answered.
    pub monitor_requests: u64,
    pub ring_slots: u64,
    pub ring_fill: u64,
    pub ring_high_water: u64,
    pub ring_full_events: u64,
    /// Over the whole session so far.
    pub rate_hz: f64,
    pub mb_per_s: f64,
    pub errors: Vec<String>,
}

/// The end of a session.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    #[serde(flatten)]
    pub status: Status,
    pub lost_ranges: Vec<[u64; 2]>,
    pub files: Vec<FileSummary>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FileSummary {
    pub path: PathBuf,
    pub frames: u64,
}

impl Summary {
    /// Whether anything failed (the binary's exit code).
    pub fn failed(&self) -> bool {
        !self.status.errors.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("output: {0}")]
    Output(#[from] xspress3::WriteError),
    #[error("{0}")]
    Stream(#[from] crate::sender::StreamError),
    #[error("{0}")]
    Monitor(#[from] crate::monitor::MonitorError),
    #[error("ring: {0}")]
    Ring(acq_core::ring::RingError),
}

/// Counters the sink threads publish.
#[derive(Default)]
struct SinkCounters {
    written: AtomicU64,
    flushed: AtomicU64,
    sent: AtomicU64,
    stream_drops: AtomicU64,
    monitor_requests: AtomicU64,
    failed: AtomicBool,
    errors: Mutex<Vec<String>>,
}

impl SinkCounters {
    fn fail(&self, error: String) {
        self.errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(error);
        self.failed.store(true, Ordering::Release);
    }
}

/// How often the engine loop refreshes the shared status.
const STATUS_REFRESH: Duration = Duration::from_millis(100);
/// How long the engine loop sleeps when the detector has no new frame.
const IDLE_SLEEP: Duration = Duration::from_micros(100);

/// The engine error with the fault's name and message.
fn engine_error<D: Detector, K: Clock>(engine: &Acquisition<D, K>, e: &EngineError) -> String {
    match engine.fault() {
        Some(f) => format!(
            "detector {} failed: {} ({}): {}",
            f.operation, f.name, f.code, f.message
        ),
        None => e.to_string(),
    }
}

/// The sinks of a session, opened before the detector is armed.
struct Sinks {
    writer: Option<AcqFileWriter>,
    sender: Option<StreamSender>,
    monitor: Option<Monitor>,
}

impl Sinks {
    /// Opens every sink `config` asks for: everything that can fail at start fails here.
    fn open(
        desc: &AcqDescription,
        config: &SessionConfig,
        zmq: &zmq::Context,
    ) -> Result<Sinks, SessionError> {
        let geometry = desc.geometry;
        let exptime = desc.params.exposure_ticks as f64 / desc.clock_hz;
        let writer = config
            .output
            .clone()
            .map(|out| AcqFileWriter::create(out, desc.clone()))
            .transpose()?;
        let sender = config
            .stream
            .clone()
            .map(|s| StreamSender::bind(zmq, s, geometry, exptime))
            .transpose()?;
        if let Some(tx) = &sender {
            if !tx.wait_for_subscriber()? && config.status_every.is_some() {
                eprintln!(
                    "xsp3-acquire: no subscriber on {} yet; PUB sends to whoever joins later",
                    tx.endpoint()
                );
            }
        }
        let monitor = config
            .monitor
            .as_deref()
            .map(|endpoint| Monitor::bind(zmq, endpoint, geometry, exptime))
            .transpose()?;
        Ok(Sinks {
            writer,
            sender,
            monitor,
        })
    }
}

/// What the engine loop and the sink threads share.
#[derive(Default)]
struct Shared {
    counters: SinkCounters,
    /// The engine's drop record, set once the engine loop ended.
    final_drops: OnceLock<DropRecord>,
    /// Tells the monitor to stop serving.
    monitor_done: AtomicBool,
    /// Tells a blocked stream send to give up (a sink failed, so the ring will not drain).
    cancel_sends: AtomicBool,
}

type RingConsumer<'r, 'm> = Consumer<'r, 'm, ParkWait, SINKS>;

/// Sinks on the ring: the writer, the stream and the monitor, in this order.
const SINKS: usize = 3;

/// Runs one acquisition with `engine` (configured, not armed) to its end.
pub fn run_session<D: Detector, K: Clock>(
    engine: &mut Acquisition<D, K>,
    desc: &AcqDescription,
    config: &SessionConfig,
    control: &SessionControl,
    zmq: &zmq::Context,
) -> Result<Summary, SessionError> {
    let geometry = desc.geometry;
    let batch = chunk_frames(geometry);
    let slots = config.ring_frames.max(batch).div_ceil(batch) * batch;
    let Sinks {
        mut writer,
        mut sender,
        mut monitor,
    } = Sinks::open(desc, config, zmq)?;

    let mut buffers = SlotBuffers::new(geometry, slots);
    let lossless_if = |present: bool| {
        if present {
            Policy::Lossless
        } else {
            Policy::Lossy
        }
    };
    let ring = FrameRing::new(
        geometry,
        RingConfig { slots, batch },
        [
            lossless_if(writer.is_some()),
            lossless_if(sender.is_some()),
            Policy::Lossy,
        ],
        buffers.memory(),
        ParkWait::new(),
    )
    .map_err(SessionError::Ring)?;
    let (mut producer, [mut writer_end, mut stream_end, mut monitor_end]) =
        ring.split().map_err(SessionError::Ring)?;

    let shared = Shared::default();
    let header = Header::for_acquisition(desc, &config.series_name, config.series_overwritable);
    let started = Instant::now();
    std::thread::scope(|s| {
        if let Some(w) = writer.as_mut() {
            let (writer_end, shared) = (&mut writer_end, &shared);
            s.spawn(move || write_files(w, writer_end, batch, &shared.counters));
        }
        if let Some(tx) = sender.as_mut() {
            let (stream_end, shared, header) = (&mut stream_end, &shared, &header);
            s.spawn(move || send_stream(tx, stream_end, batch, header, shared));
        }
        if let Some(m) = monitor.as_mut() {
            let (monitor_end, shared) = (&mut monitor_end, &shared);
            s.spawn(move || serve_monitor(m, monitor_end, shared));
        }
        let mut status = StatusLine::new(config.status_every);
        let publish = |st: Status| {
            *control
                .status
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = st;
        };
        let failure = drive_engine(engine, &mut producer, control, &shared.counters, |engine| {
            let st = build_status(engine, &ring.stats(), &shared.counters, started, desc);
            status.maybe_print(&st);
            publish(st);
        });
        if let Some(e) = failure {
            shared.counters.fail(e);
        }
        let _ = shared.final_drops.set(drop_record(engine.stats()));
        // A sink that failed will never drain: unblock the others instead of waiting for it.
        if shared.counters.failed.load(Ordering::Acquire) {
            shared.cancel_sends.store(true, Ordering::Relaxed);
        }
        producer.close();
        shared.monitor_done.store(true, Ordering::Relaxed);
        status.finish();
    });

    let files = match writer.take() {
        Some(w) => close_files(w, &shared),
        None => Vec::new(),
    };
    let mut st = build_status(engine, &ring.stats(), &shared.counters, started, desc);
    st.state = match (engine.state(), st.errors.is_empty()) {
        (_, false) => "failed".to_string(),
        (EngineState::Done, true) => "done".to_string(),
        (other, true) => format!("{other:?}").to_lowercase(),
    };
    *control
        .status
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = st.clone();
    Ok(Summary {
        status: st,
        lost_ranges: engine
            .stats()
            .lost_ranges
            .iter()
            .map(|r| [r.first, r.count])
            .collect(),
        files,
    })
}

/// The engine loop: arms, issues software triggers, moves frames into the ring and stops on
/// request or when a sink fails; `refresh` publishes the status several times a second. Returns
/// the engine's failure, if any.
fn drive_engine<D: Detector, K: Clock>(
    engine: &mut Acquisition<D, K>,
    producer: &mut Producer<'_, '_, ParkWait, SINKS>,
    control: &SessionControl,
    counters: &SinkCounters,
    mut refresh: impl FnMut(&Acquisition<D, K>),
) -> Option<String> {
    if let Err(e) = engine.arm() {
        return Some(engine_error(engine, &e));
    }
    control.armed.store(true, Ordering::Release);
    let mut last_refresh = Instant::now();
    let mut stopped = false;
    loop {
        if counters.failed.load(Ordering::Acquire) && !stopped {
            // A sink failed: it no longer takes frames, so the session cannot finish normally.
            let _ = engine.stop();
            return None;
        }
        if control.stop.load(Ordering::Relaxed) && !stopped {
            stopped = true;
            if let Err(e) = engine.stop() {
                return Some(engine_error(engine, &e));
            }
        }
        // One trigger per pass: a burst of queued triggers would outrun the SDK's buffer
        // before the engine reads a frame.
        let trigger = control
            .soft_triggers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if trigger {
            if let Err(e) = engine.soft_trigger() {
                return Some(engine_error(engine, &e));
            }
        }
        match engine.step(producer) {
            Ok(StepOutcome::Moved(_)) | Ok(StepOutcome::Lost(_)) => {}
            Ok(StepOutcome::Idle) if !trigger => std::thread::sleep(IDLE_SLEEP),
            Ok(StepOutcome::Idle) => {}
            Ok(StepOutcome::RingFull) => std::thread::sleep(IDLE_SLEEP),
            Ok(StepOutcome::Done) => return None,
            Err(e) => return Some(engine_error(engine, &e)),
        }
        if last_refresh.elapsed() >= STATUS_REFRESH {
            last_refresh = Instant::now();
            refresh(engine);
        }
    }
}

/// The file sink: writes whole batches until the ring is closed and drained.
fn write_files(
    w: &mut AcqFileWriter,
    end: &mut RingConsumer<'_, '_>,
    batch: usize,
    counters: &SinkCounters,
) {
    while end.wait_available(batch as u64) > 0 {
        let Some(grant) = end.read(batch) else {
            continue;
        };
        if let Err(e) = w.write_batch(grant.mca(), grant.scalers(), grant.meta()) {
            counters.fail(format!("writer: {e}"));
            return;
        }
        let n = grant.len();
        grant.release(n);
        counters
            .written
            .store(w.frames_written(), Ordering::Relaxed);
        counters
            .flushed
            .store(w.frames_flushed(), Ordering::Relaxed);
    }
}

/// Closes the files with the engine's drop record; the files written.
fn close_files(w: AcqFileWriter, shared: &Shared) -> Vec<FileSummary> {
    let drops = shared.final_drops.get().cloned().unwrap_or_default();
    match w.finish(&drops) {
        Ok(done) => done
            .into_iter()
            .map(|(path, frames)| FileSummary { path, frames })
            .collect(),
        Err(e) => {
            shared.counters.fail(format!("writer: {e}"));
            Vec::new()
        }
    }
}

/// The stream sink: the header, every frame the ring holds, then `series_end`.
fn send_stream(
    tx: &mut StreamSender,
    end: &mut RingConsumer<'_, '_>,
    batch: usize,
    header: &Header,
    shared: &Shared,
) {
    let (counters, cancel) = (&shared.counters, &shared.cancel_sends);
    if let Err(e) = tx.send_header(header, cancel) {
        counters.fail(format!("stream: {e}"));
        return;
    }
    while end.wait_available(1) > 0 {
        let Some(grant) = end.read(batch) else {
            continue;
        };
        let sent = tx.send_frames(grant.mca(), grant.scalers(), grant.meta(), cancel);
        let n = grant.len();
        grant.release(n);
        counters.sent.store(tx.sent(), Ordering::Relaxed);
        counters.stream_drops.store(tx.drops(), Ordering::Relaxed);
        if let Err(e) = sent {
            counters.fail(format!("stream: {e}"));
            return;
        }
    }
    let drops = shared.final_drops.get().cloned().unwrap_or_default();
    let end = series_end(&drops, tx, counters);
    if let Err(e) = tx.send_series_end(&end, cancel) {
        counters.fail(format!("stream: {e}"));
    }
}

/// The monitor sink: answers requests with the latest frame until the session ends.
fn serve_monitor(m: &mut Monitor, end: &mut RingConsumer<'_, '_>, shared: &Shared) {
    let result = m.serve(end, &shared.monitor_done);
    shared
        .counters
        .monitor_requests
        .store(m.answered(), Ordering::Relaxed);
    if let Err(e) = result {
        shared.counters.fail(format!("monitor: {e}"));
    }
}

fn drop_record(stats: &acq_core::engine::EngineStats) -> DropRecord {
    DropRecord {
        frames_lost: stats.frames_lost,
        lost_ranges: stats
            .lost_ranges
            .iter()
            .copied()
            .collect::<Vec<LostRange>>(),
        lost_ranges_overflow: stats.lost_ranges_overflow,
        sdk_overruns: stats.sdk_overruns,
        stream_gaps: 0,
    }
}

fn series_end(drops: &DropRecord, tx: &StreamSender, counters: &SinkCounters) -> SeriesEnd {
    let errors = counters
        .errors
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    SeriesEnd {
        htype: "series_end".into(),
        frames_sent: tx.sent(),
        frames_acquired: tx.sent() + tx.drops(),
        frames_lost: drops.frames_lost,
        lost_ranges: drops
            .lost_ranges
            .iter()
            .map(|r| [r.first, r.count])
            .collect(),
        lost_ranges_overflow: drops.lost_ranges_overflow,
        sdk_overruns: drops.sdk_overruns,
        stream_drops: tx.drops(),
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    }
}

fn build_status<D: Detector, K: Clock, const C: usize>(
    engine: &Acquisition<D, K>,
    ring: &acq_core::ring::RingStats<C>,
    counters: &SinkCounters,
    started: Instant,
    desc: &AcqDescription,
) -> Status {
    let e = engine.stats();
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let frame_bytes = desc.geometry.frame_bytes() as f64;
    Status {
        state: format!("{:?}", engine.state()).to_lowercase(),
        elapsed_s: elapsed,
        frames_acquired: e.frames_read,
        frames_written: counters.written.load(Ordering::Relaxed),
        frames_flushed: counters.flushed.load(Ordering::Relaxed),
        frames_sent: counters.sent.load(Ordering::Relaxed),
        frames_lost: e.frames_lost,
        sdk_overruns: e.sdk_overruns,
        stream_drops: counters.stream_drops.load(Ordering::Relaxed),
        monitor_requests: counters.monitor_requests.load(Ordering::Relaxed),
        ring_slots: ring.slots,
        ring_fill: ring.fill(),
        ring_high_water: ring.high_water,
        ring_full_events: ring.full_events,
        rate_hz: e.frames_read as f64 / elapsed,
        mb_per_s: e.frames_read as f64 * frame_bytes / elapsed / 1e6,
        errors: counters
            .errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone(),
    }
}

/// The once-a-second status line: rewritten in place on a TTY, one log line each otherwise.
struct StatusLine {
    every: Option<Duration>,
    last: Instant,
    tty: bool,
    printed: bool,
    last_frames: u64,
}

impl StatusLine {
    fn new(every: Option<Duration>) -> Self {
        StatusLine {
            every,
            last: Instant::now(),
            tty: std::io::stderr().is_terminal(),
            printed: false,
            last_frames: 0,
        }
    }

    fn maybe_print(&mut self, st: &Status) {
        let Some(every) = self.every else {
            return;
        };
        let since = self.last.elapsed();
        if since < every {
            return;
        }
        self.last = Instant::now();
        let khz = (st.frames_acquired - self.last_frames) as f64 / since.as_secs_f64() / 1e3;
        self.last_frames = st.frames_acquired;
        let line = format!(
            "frames {} written {} (flushed {}) sent {} | {khz:.2} kHz {:.1} MB/s | ring {}/{} | lost {} stream drops {}",
            st.frames_acquired,
            st.frames_written,
            st.frames_flushed,
            st.frames_sent,
            st.mb_per_s,
            st.ring_fill,
            st.ring_slots,
            st.frames_lost,
            st.stream_drops,
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
        self.printed = true;
    }

    fn finish(&mut self) {
        if self.tty && self.printed {
            let _ = writeln!(std::io::stderr());
        }
    }
}
