//! One acquisition: the engine feeding a ring, and the ring feeding up to three sinks, each on its
//! own thread: the HDF5 writer (lossless), the ZMQ stream (lossless over PUSH) and the monitor
//! (lossy).
//!
//! Everything is allocated and every socket and file is opened before the detector is armed, so
//! nothing is lost to start-up. Sinks never call back into the producer: they only release ring
//! slots. A sink that fails records its error and goes on draining the ring, counting the frames
//! it could not take with their ranges; the engine loop then stops the detector and the session
//! ends. A stop always ends the session: a stream whose peer takes nothing gives up after
//! [`STOP_STALL`](crate::sender::STOP_STALL) (at most [`STOP_DRAIN`](crate::sender::STOP_DRAIN)
//! after the stop). At the end, the engine's drop record goes to the writer (file attributes) and
//! the stream (`series_end`).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use acq_core::detector::Detector;
use acq_core::detector::TriggerMode;
use acq_core::engine::{Acquisition, Clock, EngineError, LostRange, StepOutcome};
use acq_core::geometry::FrameMeta;
use acq_core::ring::{Consumer, FrameRing, Policy, Producer, RingConfig, SlotBuffers};
use acq_core::wait::ParkWait;
use serde::Serialize;

use crate::monitor::Monitor;
use crate::sender::{PartialSend, SendGate, StreamConfig, StreamSender};
use xspress3::layout::chunk_frames;
use xspress3::protocol::{Header, RoiValues, SeriesEnd};
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

impl SessionConfig {
    /// The same sinks, but files and receivers must not replace existing files.
    pub(crate) fn forbid_overwrite(&mut self) {
        self.series_overwritable = false;
        if let Some(out) = &mut self.output {
            out.overwrite = false;
        }
    }
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
    /// `armed`, `running`, `draining` (the detector is done, the sinks are not; the control
    /// socket reports it as `running`), `stopping` (after a stop), then at the end `done` (every
    /// frame acquired reached every
    /// sink), `incomplete` (frames were lost, see the counters) or `failed` (an error; see
    /// `errors`).
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
    /// Acquired but not delivered to the stream: its peer took nothing after a stop, or the
    /// stream failed.
    pub stream_unsent: u64,
    /// Acquired but not written: the file failed.
    pub frames_unwritten: u64,
    /// Sent to acknowledging receivers and never acknowledged: lost with a receiver that died.
    pub stream_unacked: u64,
    /// Every frame missing somewhere: `frames_lost + stream_drops + stream_unsent +
    /// stream_unacked + frames_unwritten`. Non-zero means the exit status says "data lost".
    pub frames_lost_total: u64,
    /// Software triggers not passed to the detector because the acquisition could not use them
    /// (more than its frames, a second one in `software_first`, or after its end).
    pub triggers_ignored: u64,
    /// Monitor requests answered.
    pub monitor_requests: u64,
    pub ring_slots: u64,
    pub ring_fill: u64,
    pub ring_high_water: u64,
    pub ring_full_events: u64,
    /// Over the whole session so far.
    pub rate_hz: f64,
    pub mb_per_s: f64,
    /// True once the session ended with nothing lost and nothing failed.
    pub complete: bool,
    /// The software ROIs' values of the latest frame the file or the stream took (`rois_frame`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rois: Vec<RoiValues>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rois_frame: Option<u64>,
    pub errors: Vec<String>,
}

/// The end of a session.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    #[serde(flatten)]
    pub status: Status,
    /// `[first, count]` of frames lost before readout.
    pub lost_ranges: Vec<[u64; 2]>,
    /// Lost ranges counted in `frames_lost` but not listed (beyond the engine's 64).
    pub lost_ranges_overflow: u64,
    /// `[first, count]` of frames the stream could not deliver.
    pub unsent_ranges: Vec<[u64; 2]>,
    /// `[first, count]` of frames the file could not take.
    pub unwritten_ranges: Vec<[u64; 2]>,
    /// `[first, count]` of frames sent to acknowledging receivers and never acknowledged.
    pub unacked_ranges: Vec<[u64; 2]>,
    /// Acknowledged PUSH: the frames each receiver acknowledged, in the order they joined.
    pub acked_by_receiver: Vec<u64>,
    /// A detector failure: its message and the first frame it cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detector_error: Option<DetectorFailure>,
    pub files: Vec<FileSummary>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DetectorFailure {
    pub message: String,
    /// The first frame not acquired: frames before it were read and delivered.
    pub frame: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct FileSummary {
    pub path: PathBuf,
    pub frames: u64,
}

/// How a session ended, from the point of view of the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every frame acquired reached every sink; nothing failed.
    Complete,
    /// Something failed, but no frame was lost (e.g. the monitor socket).
    Failed,
    /// Frames were lost (any stage) or the detector failed.
    DataLost,
}

impl Summary {
    pub fn outcome(&self) -> Outcome {
        if self.status.frames_lost_total > 0 || self.detector_error.is_some() {
            Outcome::DataLost
        } else if !self.status.errors.is_empty() {
            Outcome::Failed
        } else {
            Outcome::Complete
        }
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

/// Frame ranges `[first, count]`, adjacent ones merged; beyond [`MAX_RANGES`] only counted.
#[derive(Debug, Default)]
struct FrameRanges {
    ranges: Vec<[u64; 2]>,
    frames: u64,
}

/// Ranges listed per sink; more are counted in the frame totals only.
const MAX_RANGES: usize = 4096;

impl FrameRanges {
    fn add_meta(&mut self, meta: &[FrameMeta]) {
        for m in meta {
            self.frames += 1;
            let full = self.ranges.len() >= MAX_RANGES;
            match self.ranges.last_mut() {
                Some(last) if last[0] + last[1] == m.frame_number => last[1] += 1,
                _ if !full => self.ranges.push([m.frame_number, 1]),
                _ => {}
            }
        }
    }
}

/// Counters the sink threads publish.
#[derive(Default)]
struct SinkCounters {
    written: AtomicU64,
    flushed: AtomicU64,
    sent: AtomicU64,
    stream_drops: AtomicU64,
    monitor_requests: AtomicU64,
    triggers_ignored: AtomicU64,
    failed: AtomicBool,
    errors: Mutex<Vec<String>>,
    unsent: Mutex<FrameRanges>,
    unwritten: Mutex<FrameRanges>,
    /// The ROI values of the latest frame a sink took, with its frame number.
    latest_rois: Mutex<Option<(u64, Vec<RoiValues>)>>,
    /// Sent, never acknowledged by an acknowledging receiver.
    unacked: Mutex<FrameRanges>,
    /// Frames each acknowledging receiver acknowledged.
    acked_by_receiver: Mutex<Vec<u64>>,
}

impl SinkCounters {
    /// Publishes the ROI values of the last frame of a batch the file or the stream took
    /// (`last`: its ROI values and frame number).
    fn publish_rois(&self, last: Option<(u64, Vec<RoiValues>)>) {
        let Some((frame, values)) = last else {
            return;
        };
        let mut latest = lock(&self.latest_rois);
        if latest.as_ref().is_none_or(|(f, _)| *f <= frame) {
            *latest = Some((frame, values));
        }
    }
}

impl SinkCounters {
    fn fail(&self, error: String) {
        lock(&self.errors).push(error);
        self.failed.store(true, Ordering::Release);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How often the engine loop refreshes the shared status.
const STATUS_REFRESH: Duration = Duration::from_millis(100);
/// How long the engine loop sleeps when the detector has no new frame.
const IDLE_SLEEP: Duration = Duration::from_micros(100);
/// How often the file sink looks again at a partial batch that is not yet due.
const PARTIAL_POLL: Duration = Duration::from_millis(2);

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
            .map(|s| {
                StreamSender::bind(zmq, s, geometry, exptime)
                    .map(|tx| tx.with_rois(desc.rois.clone(), desc.event_widths.clone()))
            })
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
    /// The detector's failure, set once the engine loop ended.
    detector_error: OnceLock<DetectorFailure>,
    /// Set once the producer closed the ring: the monitor stops serving, the file sink writes
    /// what is left without waiting for a whole batch.
    ring_closed: AtomicBool,
    /// When blocked stream sends give up.
    gate: SendGate,
}

type RingConsumer<'r, 'm> = Consumer<'r, 'm, ParkWait, SINKS>;
type RingProducer<'r, 'm> = Producer<'r, 'm, ParkWait, SINKS>;

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
    run_session_with(engine, desc, config, control, zmq, None)
}

/// [`run_session`], with the monitor socket of a daemon that keeps it across acquisitions
/// (`config.monitor` is then `None`).
pub(crate) fn run_session_with<D: Detector, K: Clock>(
    engine: &mut Acquisition<D, K>,
    desc: &AcqDescription,
    config: &SessionConfig,
    control: &SessionControl,
    zmq: &zmq::Context,
    kept_monitor: Option<&mut Monitor>,
) -> Result<Summary, SessionError> {
    let geometry = desc.geometry;
    let batch = chunk_frames(geometry);
    let slots = config.ring_frames.max(batch).div_ceil(batch) * batch;
    let Sinks {
        mut writer,
        mut sender,
        monitor: mut own_monitor,
    } = Sinks::open(desc, config, zmq)?;
    let mut monitor = own_monitor.as_mut().or(kept_monitor);
    if let Some(m) = monitor.as_mut() {
        m.begin(desc);
    }

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
    let flush_interval = config.output.as_ref().map(|o| o.flush_interval);
    let started = Instant::now();
    let status_of = |engine: &Acquisition<D, K>, state: &str| {
        let mut st = build_status(engine, &ring.stats(), &shared.counters, started, desc);
        st.state = state.to_string();
        st
    };
    let mut status = StatusLine::new(config.status_every);
    // Why the acquisition could not start or go on, other than the detector (written into the
    // files, which otherwise look complete).
    let mut engine_failure = None;
    std::thread::scope(|s| {
        let mut sinks = Vec::new();
        // A sink whose thread cannot start (a process limit) fails the acquisition before the
        // detector is armed: no frame is taken that a sink would not see.
        let mut not_started = Vec::new();
        if let (Some(w), Some(flush)) = (writer.as_mut(), flush_interval) {
            let (end, shared) = (&mut writer_end, &shared);
            let sink = move || write_files(w, end, batch, flush, shared);
            start_sink(s, "file writer", sink, &mut sinks, &mut not_started);
        }
        if let Some(tx) = sender.as_mut() {
            let (end, shared, header) = (&mut stream_end, &shared, &header);
            let sink = move || send_stream(tx, end, batch, header, desc, shared);
            start_sink(s, "stream", sink, &mut sinks, &mut not_started);
        }
        if let Some(m) = monitor {
            let (end, shared) = (&mut monitor_end, &shared);
            let sink = move || serve_monitor(m, end, shared);
            start_sink(s, "monitor", sink, &mut sinks, &mut not_started);
        }
        let mut publish = |st: Status| {
            status.maybe_print(&st);
            *lock(&control.status) = st;
        };
        let failure = if !not_started.is_empty() {
            Some(not_started.join("; "))
        } else {
            drive_engine(
                engine,
                &mut producer,
                control,
                &shared,
                |engine: &Acquisition<D, K>| {
                    let state = if control.stop.load(Ordering::Relaxed) {
                        "stopping".to_string()
                    } else {
                        format!("{:?}", engine.state()).to_lowercase()
                    };
                    publish(status_of(engine, &state))
                },
            )
        };
        if let Some(e) = failure {
            lock(&shared.counters.errors).push(e.clone());
            engine_failure = Some(e);
        }
        let _ = shared.final_drops.set(drop_record(engine.stats()));
        producer.close();
        shared.ring_closed.store(true, Ordering::Release);
        // The sinks drain what the ring holds; a stop still bounds how long the stream waits.
        while sinks.iter().any(|h| !h.is_finished()) {
            // "stopping" only after a stop: a normal end is still running until the sinks are
            // done (a control client reads the final counters once the state changes).
            let state = if control.stop.load(Ordering::Relaxed) {
                shared.gate.stop();
                "stopping"
            } else {
                "draining"
            };
            publish(status_of(engine, state));
            std::thread::sleep(STATUS_REFRESH);
        }
    });
    status.finish();

    let mut files = Vec::new();
    let mut flushed = None;
    if let Some(mut w) = writer.take() {
        if let Some(d) = shared.detector_error.get() {
            w.record_acquisition_error(&d.message, d.frame);
        } else if let Some(e) = &engine_failure {
            w.record_acquisition_error(e, engine.stats().frames_read);
        }
        files = close_files(w, &shared);
        flushed = Some(files.iter().map(|f| f.frames).sum::<u64>());
    }
    let mut st = build_status(engine, &ring.stats(), &shared.counters, started, desc);
    if let Some(flushed) = flushed.filter(|_| st.errors.is_empty()) {
        // Closed files are on disk.
        st.frames_flushed = flushed;
    }
    let summary = Summary {
        lost_ranges: engine
            .stats()
            .lost_ranges
            .iter()
            .map(|r| [r.first, r.count])
            .collect(),
        lost_ranges_overflow: engine.stats().lost_ranges_overflow,
        unsent_ranges: lock(&shared.counters.unsent).ranges.clone(),
        unwritten_ranges: lock(&shared.counters.unwritten).ranges.clone(),
        unacked_ranges: lock(&shared.counters.unacked).ranges.clone(),
        acked_by_receiver: lock(&shared.counters.acked_by_receiver).clone(),
        detector_error: shared.detector_error.get().cloned(),
        files,
        status: st,
    };
    let outcome = summary.outcome();
    let mut summary = summary;
    summary.status.complete = outcome == Outcome::Complete;
    summary.status.state = match outcome {
        Outcome::Complete => "done",
        Outcome::DataLost if summary.status.errors.is_empty() => "incomplete",
        Outcome::DataLost | Outcome::Failed => "failed",
    }
    .to_string();
    *lock(&control.status) = summary.status.clone();
    Ok(summary)
}

/// Software triggers an acquisition can use: one per frame in `software` mode (unbounded for
/// an unbounded acquisition), the first only in `software_first`.
fn usable_triggers(params: Option<&acq_core::detector::AcqParams>) -> u64 {
    match params {
        Some(p) if p.trigger == TriggerMode::SoftwareFirst => 1,
        Some(p) if p.trigger == TriggerMode::Software && p.n_frames > 0 => p.n_frames,
        Some(p) if p.trigger == TriggerMode::Software => u64::MAX,
        _ => 0,
    }
}

/// The engine loop: arms, issues software triggers, moves frames into the ring and stops on
/// request or when a sink fails; after a detector fault it salvages the frames the detector
/// completed before it. `refresh` publishes the status several times a second. Returns the
/// engine's failure, if any.
/// Starts a sink's thread, or records why it could not start.
fn start_sink<'scope>(
    s: &'scope std::thread::Scope<'scope, '_>,
    name: &str,
    sink: impl FnOnce() + Send + 'scope,
    sinks: &mut Vec<std::thread::ScopedJoinHandle<'scope, ()>>,
    not_started: &mut Vec<String>,
) {
    match std::thread::Builder::new().spawn_scoped(s, sink) {
        Ok(h) => sinks.push(h),
        Err(e) => not_started.push(format!("cannot start the {name} thread: {e}")),
    }
}

fn drive_engine<D: Detector, K: Clock>(
    engine: &mut Acquisition<D, K>,
    producer: &mut RingProducer<'_, '_>,
    control: &SessionControl,
    shared: &Shared,
    mut refresh: impl FnMut(&Acquisition<D, K>),
) -> Option<String> {
    let counters = &shared.counters;
    if let Err(e) = engine.arm() {
        return Some(engine_error(engine, &e));
    }
    control.armed.store(true, Ordering::Release);
    let mut triggers_left = usable_triggers(engine.params());
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
            shared.gate.stop();
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
            if triggers_left == 0 || stopped {
                counters.triggers_ignored.fetch_add(1, Ordering::Relaxed);
            } else {
                triggers_left -= 1;
                if let Err(e) = engine.soft_trigger() {
                    let message = engine_error(engine, &e);
                    salvage(engine, producer, shared, &mut refresh);
                    return Some(message);
                }
            }
        }
        match engine.step(producer) {
            Ok(StepOutcome::Moved(_)) | Ok(StepOutcome::Lost(_)) => {}
            Ok(StepOutcome::Idle) if !trigger => std::thread::sleep(IDLE_SLEEP),
            Ok(StepOutcome::Idle) => {}
            Ok(StepOutcome::RingFull) => std::thread::sleep(IDLE_SLEEP),
            Ok(StepOutcome::Done) => {
                // Triggers still queued have no frame to start.
                let queued = control.soft_triggers.swap(0, Ordering::AcqRel);
                counters
                    .triggers_ignored
                    .fetch_add(queued, Ordering::Relaxed);
                return None;
            }
            Err(e) => {
                let message = engine_error(engine, &e);
                salvage(engine, producer, shared, &mut refresh);
                return Some(message);
            }
        }
        if last_refresh.elapsed() >= STATUS_REFRESH {
            last_refresh = Instant::now();
            refresh(engine);
        }
    }
}

/// After a detector fault: moves what the detector completed before it into the ring, and
/// records the failure with the first frame it cost.
fn salvage<D: Detector, K: Clock>(
    engine: &mut Acquisition<D, K>,
    producer: &mut RingProducer<'_, '_>,
    shared: &Shared,
    refresh: &mut impl FnMut(&Acquisition<D, K>),
) {
    let Some(fault) = engine.fault() else {
        return;
    };
    let message = format!(
        "detector {} failed: {} ({}): {}",
        fault.operation, fault.name, fault.code, fault.message
    );
    let mut last_refresh = Instant::now();
    loop {
        match engine.salvage(producer) {
            Ok(StepOutcome::Moved(_)) => {}
            // A failed sink will not release its slots: stop there.
            Ok(StepOutcome::RingFull) if shared.counters.failed.load(Ordering::Acquire) => break,
            Ok(StepOutcome::RingFull) => std::thread::sleep(IDLE_SLEEP),
            Ok(_) | Err(_) => break,
        }
        if last_refresh.elapsed() >= STATUS_REFRESH {
            last_refresh = Instant::now();
            refresh(engine);
        }
    }
    let _ = shared.detector_error.set(DetectorFailure {
        message,
        frame: engine.next_frame(),
    });
}

/// The file sink: writes whole aligned batches, and a partial batch once its oldest frame has
/// waited a flush interval (so slow triggers reach the disk too), until the ring is closed and
/// drained. After a write error it goes on taking frames, counting them unwritten.
fn write_files(
    w: &mut AcqFileWriter,
    end: &mut RingConsumer<'_, '_>,
    batch: usize,
    flush_interval: Duration,
    shared: &Shared,
) {
    let counters = &shared.counters;
    let mut failed = false;
    let mut pending_since: Option<Instant> = None;
    loop {
        let available = end.available();
        if available == 0 {
            pending_since = None;
            if end.wait_available(1) == 0 {
                return;
            }
            continue;
        }
        let since = *pending_since.get_or_insert_with(Instant::now);
        // Frames to the next chunk boundary: whole chunks stay aligned after a partial write.
        let aligned = batch - (w.frames_written() % batch as u64) as usize;
        let due = failed
            || available >= aligned as u64
            || shared.ring_closed.load(Ordering::Acquire)
            || since.elapsed() >= flush_interval;
        if !due {
            std::thread::sleep(PARTIAL_POLL.min(flush_interval.saturating_sub(since.elapsed())));
            continue;
        }
        let Some(grant) = end.read(aligned) else {
            continue;
        };
        let n = grant.len();
        if failed {
            lock(&counters.unwritten).add_meta(grant.meta());
        } else {
            let mut result =
                w.write_batch(grant.mca(), grant.scalers(), grant.rois(), grant.meta());
            if result.is_ok() {
                counters.publish_rois(last_roi_values(
                    w.description(),
                    grant.rois(),
                    grant.scalers(),
                    grant.meta(),
                ));
            }
            if result.is_ok() && n < aligned {
                // A partial batch is written because it is due: make it visible now.
                result = w.flush();
            }
            if let Err(e) = result {
                counters.fail(format!("writer: {e}"));
                failed = true;
                lock(&counters.unwritten).add_meta(grant.meta());
            }
        }
        grant.release(n);
        if end.available() == 0 {
            pending_since = None;
        }
        counters
            .written
            .store(w.frames_written(), Ordering::Relaxed);
        counters
            .flushed
            .store(w.frames_flushed(), Ordering::Relaxed);
    }
}

/// The ROI values of the last frame of a batch (from the ROI sums `[frame][roi][chan]` the
/// detector put in the ring), with its frame number; `None` without ROIs.
fn last_roi_values(
    desc: &AcqDescription,
    rois: &[u64],
    scalers: &[u32],
    meta: &[FrameMeta],
) -> Option<(u64, Vec<RoiValues>)> {
    let last = meta.last().filter(|_| !desc.rois.is_empty())?;
    let (g, i) = (desc.geometry, meta.len() - 1);
    let values = xspress3::roi::frame_values(
        &desc.rois,
        &desc.event_widths,
        rois.get(i * g.roi_words()..(i + 1) * g.roi_words())?,
        scalers.get(i * g.scaler_words()..(i + 1) * g.scaler_words())?,
    );
    Some((last.frame_number, values))
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

/// The stream sink: the header, every frame the ring holds, then `series_end`. Once a send gave
/// up (stop with a peer that takes nothing, or another sink failed) or failed, the rest of the
/// frames are taken from the ring and counted unsent with their ranges.
fn send_stream(
    tx: &mut StreamSender,
    end: &mut RingConsumer<'_, '_>,
    batch: usize,
    header: &Header,
    desc: &AcqDescription,
    shared: &Shared,
) {
    let (counters, gate) = (&shared.counters, &shared.gate);
    let mut gave_up = match tx.send_header(header, gate) {
        Ok(()) => false,
        Err(e) => {
            counters.fail(format!("stream: {e}"));
            true
        }
    };
    while end.wait_available(1) > 0 {
        let Some(grant) = end.read(batch) else {
            continue;
        };
        if gave_up {
            lock(&counters.unsent).add_meta(grant.meta());
        } else if let Err(PartialSend { done, error }) = tx.send_frames(
            grant.mca(),
            grant.scalers(),
            grant.rois(),
            grant.meta(),
            gate,
        ) {
            counters.fail(format!("stream: {error}"));
            gave_up = true;
            lock(&counters.unsent).add_meta(&grant.meta()[done..]);
        } else {
            counters.publish_rois(last_roi_values(
                desc,
                grant.rois(),
                grant.scalers(),
                grant.meta(),
            ));
        }
        let n = grant.len();
        grant.release(n);
        counters.sent.store(tx.sent(), Ordering::Relaxed);
        counters.stream_drops.store(tx.drops(), Ordering::Relaxed);
    }
    match tx.settle_acks(gate) {
        Ok((ranges, frames)) => *lock(&counters.unacked) = FrameRanges { ranges, frames },
        Err(e) => counters.fail(format!("stream: {e}")),
    }
    *lock(&counters.acked_by_receiver) = tx.acked_by_receiver();
    let end = series_end(shared, tx);
    if let Err(e) = tx.send_series_end(&end, gate) {
        counters.fail(format!("stream: {e}"));
    }
}

/// The monitor sink: answers requests with the latest frame until the session ends.
fn serve_monitor(m: &mut Monitor, end: &mut RingConsumer<'_, '_>, shared: &Shared) {
    let result = m.serve(end, &shared.ring_closed);
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

fn series_end(shared: &Shared, tx: &StreamSender) -> SeriesEnd {
    let drops = shared.final_drops.get().cloned().unwrap_or_default();
    let errors = lock(&shared.counters.errors).clone();
    let unsent = lock(&shared.counters.unsent);
    let unacked = lock(&shared.counters.unacked);
    SeriesEnd {
        htype: "series_end".into(),
        frames_sent: tx.sent(),
        frames_acquired: tx.sent() + tx.drops() + unsent.frames,
        frames_lost: drops.frames_lost,
        lost_ranges: drops
            .lost_ranges
            .iter()
            .map(|r| [r.first, r.count])
            .collect(),
        lost_ranges_overflow: drops.lost_ranges_overflow,
        sdk_overruns: drops.sdk_overruns,
        stream_drops: tx.drops(),
        frames_unsent: unsent.frames,
        unsent_ranges: unsent.ranges.clone(),
        frames_unacked: unacked.frames,
        unacked_ranges: unacked.ranges.clone(),
        error: (!errors.is_empty()).then(|| errors.join("; ")),
        error_frame: shared.detector_error.get().map(|d| d.frame),
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
    let stream_drops = counters.stream_drops.load(Ordering::Relaxed);
    let stream_unsent = lock(&counters.unsent).frames;
    let frames_unwritten = lock(&counters.unwritten).frames;
    let latest = lock(&counters.latest_rois).clone();
    let stream_unacked = lock(&counters.unacked).frames;
    Status {
        state: format!("{:?}", engine.state()).to_lowercase(),
        elapsed_s: elapsed,
        frames_acquired: e.frames_read,
        frames_written: counters.written.load(Ordering::Relaxed),
        frames_flushed: counters.flushed.load(Ordering::Relaxed),
        frames_sent: counters.sent.load(Ordering::Relaxed),
        frames_lost: e.frames_lost,
        sdk_overruns: e.sdk_overruns,
        stream_drops,
        stream_unsent,
        frames_unwritten,
        stream_unacked,
        frames_lost_total: e.frames_lost
            + stream_drops
            + stream_unsent
            + stream_unacked
            + frames_unwritten,
        triggers_ignored: counters.triggers_ignored.load(Ordering::Relaxed),
        monitor_requests: counters.monitor_requests.load(Ordering::Relaxed),
        ring_slots: ring.slots,
        ring_fill: ring.fill(),
        ring_high_water: ring.high_water,
        ring_full_events: ring.full_events,
        rate_hz: e.frames_read as f64 / elapsed,
        mb_per_s: e.frames_read as f64 * frame_bytes / elapsed / 1e6,
        complete: false,
        errors: lock(&counters.errors).clone(),
        rois: latest.as_ref().map(|(_, v)| v.clone()).unwrap_or_default(),
        rois_frame: latest.as_ref().map(|(f, _)| *f),
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
