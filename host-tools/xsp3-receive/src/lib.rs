//! Receives the Xspress3 frame stream of [`xspress3::protocol`] and writes each series into the
//! acquisition file layout with the same [`AcqFileWriter`] `xsp3-acquire` uses (docs/protocol.md,
//! section "xsp3-receive").
//!
//! The receiving thread reads the socket with a short receive timeout (so a stop request, the
//! idle timeout and the periodic flush are noticed without spinning) and copies each image
//! straight from the ZMQ message into a contiguous batch of `chunk_frames` frames; a writer
//! thread per series writes full batches, cut to end on chunk boundaries, so each is one HDF5
//! direct chunk write. The few batch buffers are allocated once per series and cycle between the
//! two threads; when all wait to be written, receiving waits too and PULL's back-pressure
//! reaches the sender.
//!
//! Nothing from the network can make the receiver panic or write outside its root:
//!
//! - the file name comes from `--file` or else the header and is checked with
//!   [`layout::check_name`] (no absolute paths, no `..`), and every file is created under the root;
//! - a malformed message (bad JSON, wrong part count, wrong payload size, unknown encoding, an
//!   image whose shape differs from its header's) is counted, reported and skipped, and the
//!   receiver keeps running: a long-running receiver must survive a broken or hostile peer;
//! - every frame that does not reach the file is counted by cause (upstream SDK losses reported in
//!   `series_end`, frames a PUB sender refused, gaps in `msg_number`, discarded images, a series
//!   that ended without `series_end`) and recorded in the file's drop record.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use acq_core::engine::LostRange;
use acq_core::geometry::{FrameMeta, Geometry, N_SCALERS};
use serde::{Deserialize, Serialize};

use h5util::attrs::{set_scalar, set_str};
use xspress3::layout;
use xspress3::protocol::{self, Header, ImageHeader, Message, ProtocolError, SeriesEnd};
use xspress3::{AcqDescription, AcqFileWriter, DropRecord, OutputConfig};

/// The socket type a receiver connects with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SocketKind {
    /// Lossless with the sender's PUSH: back-pressure reaches the sender.
    Pull,
    /// With the sender's PUB, subscribed to everything; messages beyond the receive high-water
    /// mark are dropped by ZMQ and show up as `msg_number` gaps.
    Sub,
}

/// What a receiver does with each series.
#[derive(Clone, Debug)]
pub enum ReceiveMode {
    /// Write files under `root`.
    Write(WriteConfig),
    /// Write nothing; only count (the binary's `--print`).
    Print,
}

/// Where and how a writing receiver writes.
#[derive(Clone, Debug)]
pub struct WriteConfig {
    /// Every file is created inside this directory.
    pub root: PathBuf,
    /// Base name used instead of the header's `filename` for every series.
    pub file: Option<String>,
    pub frames_per_file: Option<u64>,
    /// Replace existing files. The header's `overwritable` alone never replaces a file.
    pub overwrite: bool,
    pub swmr: bool,
    /// Flush files this often; a partly filled batch older than this is written too.
    pub flush_interval: Duration,
}

#[derive(Clone, Debug)]
pub struct ReceiverConfig {
    pub endpoint: String,
    pub kind: SocketKind,
    pub mode: ReceiveMode,
    /// Messages ZMQ queues before PULL applies back-pressure (or SUB drops).
    pub high_water_mark: i32,
    /// Stop after the first series has ended.
    pub once: bool,
    /// Stop when no message arrived for this long.
    pub timeout: Option<Duration>,
    /// Written into files as the `receiver` attribute, e.g. "xsp3-receive 0.1.0".
    pub software: String,
}

/// Why the receiver could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("stream socket {endpoint}: {what}: {source}")]
    Zmq {
        endpoint: String,
        what: &'static str,
        #[source]
        source: zmq::Error,
    },
    #[error("cannot create the output root {path}: {source}")]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Progress reported while the receiver runs.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A header opened series `index`; `file` is the base name written, if any.
    SeriesStart {
        index: u64,
        filename: String,
        file: Option<String>,
        n_channels: u32,
        n_bins: u32,
        n_frames: u64,
    },
    /// About once a second while messages arrive.
    Rate(RateReport),
    /// A series ended (by `series_end` or otherwise); its final account.
    SeriesEnd(Box<SeriesSummary>),
    /// A problem worth a line: a refused header, a malformed message, a write error.
    Error { message: String },
}

#[derive(Clone, Debug, Serialize)]
pub struct RateReport {
    /// The open series, if any.
    pub series: Option<u64>,
    /// Frames received in the open series so far.
    pub frames: u64,
    /// Over the last report interval.
    pub frames_per_s: f64,
    pub mb_per_s: f64,
    /// `msg_number` gaps in the open series so far.
    pub msg_gaps: u64,
    /// Malformed messages since the receiver started.
    pub malformed: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct FileSummary {
    pub path: PathBuf,
    pub frames: u64,
}

/// One series as the receiver saw it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SeriesSummary {
    /// Counted from 1 since the receiver started.
    pub index: u64,
    /// The header's `filename`.
    pub filename: String,
    /// The base name written under the root (`--file` or the header's), if any.
    pub written_as: Option<String>,
    pub files: Vec<FileSummary>,
    pub frames_requested: u64,
    /// Valid image messages received.
    pub frames_received: u64,
    pub frames_written: u64,
    pub bytes_received: u64,
    /// Gaps in `msg_number`, and the image messages missing in them.
    pub msg_gaps: u64,
    pub msg_missing: u64,
    /// Lost before the stream, as the sender's `series_end` reports (SDK overruns).
    pub frames_lost_upstream: u64,
    /// Refused by the sender's PUB socket at its high-water mark (`series_end.stream_drops`).
    pub sender_stream_drops: u64,
    /// Images received but not used: malformed for this series, out of order, or received after
    /// a write error.
    pub frames_discarded: u64,
    /// Times receiving waited because every batch buffer was waiting to be written: the writer
    /// (disk) was slower than the stream at those moments.
    pub writer_waits: u64,
    /// Frames missing from the file in total (what the file's `frames_lost` says); 0 in print
    /// mode and for series that were not written.
    pub frames_lost: u64,
    pub series_end_received: bool,
    /// Why the series ended other than by `series_end`, if it did.
    pub end_note: Option<String>,
    /// The receiver was stopped (signal) before `series_end`: the series is incomplete on
    /// purpose, which alone does not count as data lost.
    pub interrupted: bool,
    /// The sender's `series_end.error`.
    pub sender_error: Option<String>,
    /// The first errors of the series.
    pub errors: Vec<String>,
    /// Errors counted but not listed.
    pub errors_not_listed: u64,
    pub elapsed_s: f64,
    pub frames_per_s: f64,
    pub mb_per_s: f64,
}

impl SeriesSummary {
    /// Whether any frame of the series is missing or anything failed.
    pub fn data_lost(&self) -> bool {
        !self.errors.is_empty()
            || (self.end_note.is_some() && !self.interrupted)
            || self.msg_missing > 0
            || self.frames_lost_upstream > 0
            || self.sender_stream_drops > 0
            || self.frames_discarded > 0
    }
}

/// Why the receiver stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// `once`: the first series ended.
    #[default]
    Once,
    /// The stop flag was set (SIGINT / SIGTERM).
    Signal,
    /// No message for `timeout`.
    Timeout,
    /// The socket failed.
    SocketError,
}

/// Everything the receiver did, for the final report and the exit code.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub endpoint: String,
    pub socket: Option<SocketKind>,
    pub stopped_by: StopReason,
    pub elapsed_s: f64,
    /// The series, oldest first (the last [`MAX_SERIES_LISTED`]).
    pub series: Vec<SeriesSummary>,
    /// Series that ended, and those of them that lost data (also those no longer listed).
    pub series_ended: u64,
    pub series_failed: u64,
    pub messages: u64,
    pub frames_received: u64,
    pub bytes_received: u64,
    /// Messages that could not be decoded or did not fit their series.
    pub malformed_messages: u64,
    /// Images that arrived outside a series (before any header, or after its `series_end`).
    pub orphan_images: u64,
    /// `series_end` messages outside a series (a sender may send a second one on stop).
    pub stray_series_ends: u64,
    /// A series was still open when the timeout or a socket error ended the receiver.
    pub ended_mid_series: bool,
    /// Problems that belong to no series (and the series' own, repeated).
    pub errors: Vec<String>,
}

impl Summary {
    /// Exit status 1: a frame was lost or discarded anywhere, a message was malformed, a file
    /// could not be written, or the receiver stopped in the middle of a series (not by a signal).
    pub fn failed(&self) -> bool {
        !self.errors.is_empty()
            || self.malformed_messages > 0
            || self.orphan_images > 0
            || self.ended_mid_series
            || self.series_failed > 0
    }
}

/// How long one blocking receive waits before the loop checks the stop flag and timers.
const RECV_SLICE: Duration = Duration::from_millis(100);
/// Rate reports this often.
const RATE_EVERY: Duration = Duration::from_secs(1);
/// Largest message part accepted: the largest frame (256 x 4096 u32) and some room. ZMQ drops
/// the connection of a peer that sends more.
const MAX_PART_BYTES: i64 = 8 << 20;
/// Series kept in the summary of a long-running receiver; older ones are only counted.
pub const MAX_SERIES_LISTED: usize = 1000;
/// Batch buffers per series: one being filled, the others queued for or in the writer thread.
const BATCHES: usize = 4;
/// Lost ranges kept per series; more are counted in `lost_ranges_overflow`.
const MAX_LOST_RANGES: usize = 4096;
/// Error lines reported per series (and outside series); the rest are only counted.
const MAX_REPORTED_ERRORS: usize = 20;

/// Parts of one message: the first three are kept, further parts are received into a spare and
/// only counted.
struct Parts {
    kept: [zmq::Message; 3],
    spare: zmq::Message,
    n: usize,
}

/// Frames copied from messages, waiting to be written as one batch.
struct Batch {
    mca: Vec<u32>,
    scalers: Vec<u32>,
    meta: Vec<FrameMeta>,
    len: usize,
}

/// Work for a series' writer thread.
enum Job {
    Write(Batch),
    Flush,
}

/// What a writer thread hands back when its series ends.
struct WriterEnd {
    writer: AcqFileWriter,
    /// Frames of batches not written after a write error.
    discarded: u64,
}

/// A series' files. The writer runs on its own thread so that receiving and copying overlap with
/// HDF5 writes; [`BATCHES`] batch buffers, allocated when the series opens, cycle between the
/// two threads. When every buffer is waiting to be written the receiving thread waits too, and
/// the back-pressure reaches the sender through the socket (PULL).
struct FileSink {
    geometry: Geometry,
    jobs: Option<mpsc::SyncSender<Job>>,
    free: mpsc::Receiver<Batch>,
    /// The batch being filled.
    filling: Option<Batch>,
    thread: Option<JoinHandle<WriterEnd>>,
    /// The writer thread's first error.
    failure: Arc<Mutex<Option<String>>>,
    failure_reported: bool,
    chunk: usize,
    /// Whether file boundaries fall on chunk boundaries (no rollover, or a multiple of a chunk),
    /// so that batches can be cut to end on one.
    aligned: bool,
    submitted: u64,
    /// Times the receiving thread waited for the writer (every batch buffer was full).
    writer_waits: u64,
    /// Frames that make the batch being filled end on a chunk boundary.
    target: usize,
    last_submit: Instant,
}

struct Series {
    summary: SeriesSummary,
    /// `None` when the header was refused: its images are discarded.
    geometry: Option<Geometry>,
    n_frames: u64,
    sink: Option<FileSink>,
    next_msg: u64,
    prev_frame: Option<u64>,
    /// Frame-number spans `[first, end)` missing between received frames.
    spans: Vec<(u64, u64)>,
    spans_overflow: u64,
    frames_backwards: u64,
    /// A write failed: the sink is closed and later images are discarded.
    write_failed: bool,
    reported: usize,
    started: Instant,
    /// For rate reports.
    last_frames: u64,
}

/// A connected receiver. See the module documentation.
pub struct Receiver {
    config: ReceiverConfig,
    socket: zmq::Socket,
    parts: Parts,
    series: Option<Series>,
    next_index: u64,
    summary: Summary,
    reported: usize,
}

fn zmq_err(endpoint: &str, what: &'static str) -> impl FnOnce(zmq::Error) -> ReceiveError {
    let endpoint = endpoint.to_string();
    move |source| ReceiveError::Zmq {
        endpoint,
        what,
        source,
    }
}

impl Receiver {
    /// Creates the root (if writing) and connects the socket.
    pub fn connect(ctx: &zmq::Context, config: ReceiverConfig) -> Result<Self, ReceiveError> {
        if let ReceiveMode::Write(w) = &config.mode {
            std::fs::create_dir_all(&w.root).map_err(|source| ReceiveError::Root {
                path: w.root.clone(),
                source,
            })?;
        }
        let ep = config.endpoint.as_str();
        let socket = match config.kind {
            SocketKind::Pull => ctx.socket(zmq::PULL),
            SocketKind::Sub => ctx.socket(zmq::SUB),
        }
        .map_err(zmq_err(ep, "create"))?;
        socket
            .set_rcvhwm(config.high_water_mark)
            .map_err(zmq_err(ep, "set high-water mark"))?;
        socket
            .set_rcvtimeo(RECV_SLICE.as_millis() as i32)
            .map_err(zmq_err(ep, "set receive timeout"))?;
        socket
            .set_maxmsgsize(MAX_PART_BYTES)
            .map_err(zmq_err(ep, "set maximum message size"))?;
        socket.set_linger(0).map_err(zmq_err(ep, "set linger"))?;
        if config.kind == SocketKind::Sub {
            socket
                .set_subscribe(b"")
                .map_err(zmq_err(ep, "subscribe"))?;
        }
        socket.connect(ep).map_err(zmq_err(ep, "connect"))?;
        let summary = Summary {
            endpoint: config.endpoint.clone(),
            socket: Some(config.kind),
            ..Summary::default()
        };
        Ok(Receiver {
            config,
            socket,
            parts: Parts {
                kept: [
                    zmq::Message::new(),
                    zmq::Message::new(),
                    zmq::Message::new(),
                ],
                spare: zmq::Message::new(),
                n: 0,
            },
            series: None,
            next_index: 1,
            summary,
            reported: 0,
        })
    }

    /// Receives until `once` is satisfied, `stop` is set, the timeout expires or the socket
    /// fails; then finishes the open series (its file stays readable) and returns the account.
    pub fn run(mut self, stop: &AtomicBool, events: &mut dyn FnMut(&Event)) -> Summary {
        let started = Instant::now();
        let mut last_msg = Instant::now();
        let mut last_rate = Instant::now();
        let mut rate_bytes = 0u64;
        loop {
            if stop.load(Ordering::Relaxed) {
                self.summary.stopped_by = StopReason::Signal;
                self.finish_open(
                    "the receiver was stopped (signal) before series_end",
                    true,
                    events,
                );
                break;
            }
            match self.recv() {
                Ok(true) => {
                    last_msg = Instant::now();
                    let before = self.summary.bytes_received;
                    self.dispatch(events);
                    rate_bytes += self.summary.bytes_received - before;
                    if self.config.once && self.summary.series_ended > 0 {
                        self.summary.stopped_by = StopReason::Once;
                        break;
                    }
                    self.flush_if_due(events);
                }
                Ok(false) => {
                    self.flush_if_due(events);
                    if let Some(timeout) = self.config.timeout {
                        if last_msg.elapsed() >= timeout {
                            self.summary.stopped_by = StopReason::Timeout;
                            self.on_timeout(timeout, events);
                            break;
                        }
                    }
                }
                Err(e) => {
                    self.summary.stopped_by = StopReason::SocketError;
                    let message = format!("stream socket {}: receive: {e}", self.config.endpoint);
                    self.error(message, events);
                    if self.series.is_some() {
                        self.summary.ended_mid_series = true;
                    }
                    self.finish_open("the socket failed before series_end", false, events);
                    break;
                }
            }
            let since = last_rate.elapsed();
            if since >= RATE_EVERY {
                last_rate = Instant::now();
                events(&Event::Rate(self.rate(since, rate_bytes)));
                rate_bytes = 0;
            }
        }
        self.summary.elapsed_s = started.elapsed().as_secs_f64();
        self.summary
    }

    fn rate(&mut self, since: Duration, bytes: u64) -> RateReport {
        let secs = since.as_secs_f64().max(1e-9);
        let (series, frames, new, gaps) = match self.series.as_mut() {
            Some(s) => {
                let new = s.summary.frames_received - s.last_frames;
                s.last_frames = s.summary.frames_received;
                (
                    Some(s.summary.index),
                    s.summary.frames_received,
                    new,
                    s.summary.msg_gaps,
                )
            }
            None => (None, 0, 0, 0),
        };
        RateReport {
            series,
            frames,
            frames_per_s: new as f64 / secs,
            mb_per_s: bytes as f64 / secs / 1e6,
            msg_gaps: gaps,
            malformed: self.summary.malformed_messages,
        }
    }

    fn on_timeout(&mut self, timeout: Duration, events: &mut dyn FnMut(&Event)) {
        if self.series.is_some() {
            self.summary.ended_mid_series = true;
            let note = format!("no message for {timeout:?} before series_end");
            let message = format!("stream {}: {note}", self.config.endpoint);
            self.error(message, events);
            self.finish_open(&note, false, events);
        } else if self.config.once && self.summary.series_ended == 0 {
            let message = format!(
                "stream {}: no series received within {timeout:?}",
                self.config.endpoint
            );
            self.error(message, events);
        }
    }

    /// Receives one whole message into `self.parts`. `Ok(false)`: nothing within the slice.
    fn recv(&mut self) -> Result<bool, zmq::Error> {
        let p = &mut self.parts;
        match self.socket.recv(&mut p.kept[0], 0) {
            Ok(()) => {}
            Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => return Ok(false),
            Err(e) => return Err(e),
        }
        p.n = 1;
        // The remaining parts of a multipart message are already queued (ZMQ delivers messages
        // atomically), so these receives do not wait.
        while self.socket.get_rcvmore()? {
            let target = if p.n < p.kept.len() {
                &mut p.kept[p.n]
            } else {
                &mut p.spare
            };
            loop {
                match self.socket.recv(target, 0) {
                    Ok(()) => break,
                    Err(zmq::Error::EINTR) | Err(zmq::Error::EAGAIN) => continue,
                    Err(e) => return Err(e),
                }
            }
            p.n += 1;
        }
        self.summary.messages += 1;
        Ok(true)
    }

    fn dispatch(&mut self, events: &mut dyn FnMut(&Event)) {
        #[derive(Deserialize)]
        struct Kind<'a> {
            #[serde(borrow)]
            htype: Cow<'a, str>,
        }
        let is_image =
            serde_json::from_slice::<Kind>(&self.parts.kept[0]).is_ok_and(|k| k.htype == "image");
        if is_image {
            match check_image(&self.parts) {
                Ok(header) => self.on_image(header, events),
                Err(e) => self.malformed(e.to_string(), events),
            }
            return;
        }
        // Headers and series ends are rare: the canonical decoder, on owned copies.
        let owned: Vec<Vec<u8>> = (0..self.parts.n)
            .map(|i| self.parts.kept.get(i).map_or(Vec::new(), |m| m.to_vec()))
            .collect();
        match protocol::decode(&owned) {
            Ok(Message::Header(h)) => self.on_header(*h, events),
            Ok(Message::SeriesEnd(end)) => self.on_series_end(end, events),
            // Only reached if the decoder disagrees with the peek above.
            Ok(Message::Image { header, .. }) => self.malformed(
                format!("image {}: unexpected decoding path", header.frame),
                events,
            ),
            Err(e) => self.malformed(e.to_string(), events),
        }
    }

    fn malformed(&mut self, problem: String, events: &mut dyn FnMut(&Event)) {
        self.summary.malformed_messages += 1;
        let where_ = match &self.series {
            Some(s) => format!("series {}", s.summary.index),
            None => "no series open".to_string(),
        };
        let message = format!(
            "stream {}: malformed message skipped ({where_}): {problem}",
            self.config.endpoint
        );
        match self.series.as_mut() {
            Some(s) => {
                s.fail(message, events);
            }
            None => self.error(message, events),
        }
    }

    /// A problem outside any series (or fatal to the receiver).
    fn error(&mut self, message: String, events: &mut dyn FnMut(&Event)) {
        if self.reported < MAX_REPORTED_ERRORS {
            self.reported += 1;
            events(&Event::Error {
                message: message.clone(),
            });
        }
        if self.summary.errors.len() < MAX_REPORTED_ERRORS {
            self.summary.errors.push(message);
        }
    }

    fn on_header(&mut self, header: Header, events: &mut dyn FnMut(&Event)) {
        if self.series.is_some() {
            self.finish_open("a new header arrived before series_end", false, events);
            if self.config.once {
                return;
            }
        }
        let index = self.next_index;
        self.next_index += 1;
        let ep = self.config.endpoint.clone();
        let mut summary = SeriesSummary {
            index,
            filename: header.filename.clone(),
            frames_requested: header.n_frames,
            ..SeriesSummary::default()
        };
        let mut errors = Vec::new();
        let desc = header.description();
        let geometry = desc.as_ref().ok().map(|d| d.geometry);
        let name = match &self.config.mode {
            ReceiveMode::Print => None,
            ReceiveMode::Write(w) => w
                .file
                .clone()
                .or_else(|| (!header.filename.is_empty()).then(|| header.filename.clone())),
        };
        let mut sink = None;
        match (&self.config.mode, desc, name) {
            (_, Err(problem), _) => errors.push(format!(
                "stream {ep}: series {index}: header refused, its images are discarded: {problem}"
            )),
            (ReceiveMode::Write(w), Ok(desc), Some(name)) => match check_target(w, &name) {
                Err(e) => errors.push(format!(
                    "stream {ep}: series {index}: file name `{}` refused, nothing is written for \
                     this series: {e}",
                    name.escape_debug()
                )),
                Ok(()) => match FileSink::open(w, &name, desc) {
                    Ok(s) => {
                        summary.written_as = Some(name);
                        sink = Some(s);
                    }
                    Err(e) => errors.push(format!(
                        "stream {ep}: series {index}: cannot write `{name}`: {e}"
                    )),
                },
            },
            _ => {}
        }
        events(&Event::SeriesStart {
            index,
            filename: header.filename.clone(),
            file: summary.written_as.clone(),
            n_channels: header.n_channels,
            n_bins: header.n_bins,
            n_frames: header.n_frames,
        });
        let mut series = Series {
            summary,
            geometry,
            n_frames: header.n_frames,
            sink,
            next_msg: 0,
            prev_frame: None,
            spans: Vec::new(),
            spans_overflow: 0,
            frames_backwards: 0,
            write_failed: false,
            reported: 0,
            started: Instant::now(),
            last_frames: 0,
        };
        for e in errors {
            series.fail(e, events);
        }
        self.series = Some(series);
    }

    fn on_image(&mut self, header: ImageHeader, events: &mut dyn FnMut(&Event)) {
        let Some(s) = self.series.as_mut() else {
            self.summary.orphan_images += 1;
            if self.summary.orphan_images == 1 {
                let message = format!(
                    "stream {}: image msg_number {} (frame {}) arrived outside a series and is \
                     discarded (header missed?); further ones are only counted",
                    self.config.endpoint, header.msg_number, header.frame
                );
                self.error(message, events);
            }
            return;
        };
        let Some(g) = s.geometry else {
            // The header was refused: already reported once.
            s.summary.frames_discarded += 1;
            s.next_msg = header.msg_number.saturating_add(1);
            return;
        };
        let (nch, nbins) = (g.n_channels() as u32, g.n_bins() as u32);
        if header.shape != [nch, nbins] || header.scaler_shape != [nch, N_SCALERS as u32] {
            self.summary.malformed_messages += 1;
            s.summary.frames_discarded += 1;
            s.next_msg = s.next_msg.max(header.msg_number.saturating_add(1));
            let message = format!(
                "stream {}: series {}: image msg_number {} (frame {}) has shape {:?} and scaler \
                 shape {:?}, the header says [{nch}, {nbins}] and [{nch}, {N_SCALERS}]; discarded",
                self.config.endpoint,
                s.summary.index,
                header.msg_number,
                header.frame,
                header.shape,
                header.scaler_shape
            );
            s.fail(message, events);
            return;
        }
        if header.msg_number < s.next_msg {
            s.summary.frames_discarded += 1;
            let message = format!(
                "stream {}: series {}: image msg_number {} (frame {}) arrived after msg_number {}; \
                 out of order, discarded",
                self.config.endpoint,
                s.summary.index,
                header.msg_number,
                header.frame,
                s.next_msg - 1
            );
            s.fail(message, events);
            return;
        }
        if header.msg_number > s.next_msg {
            let missing = header.msg_number - s.next_msg;
            s.summary.msg_gaps += 1;
            s.summary.msg_missing = s.summary.msg_missing.saturating_add(missing);
            let message = format!(
                "stream {}: series {}: msg_number gap: {} missing before msg_number {} (frame {})",
                self.config.endpoint, s.summary.index, missing, header.msg_number, header.frame
            );
            s.report(message, events);
        }
        s.next_msg = header.msg_number.saturating_add(1);
        let first_expected = s.prev_frame.map_or(0, |p| p.saturating_add(1));
        if header.frame > first_expected {
            s.add_span(first_expected, header.frame);
        } else if header.frame < first_expected {
            s.frames_backwards += 1;
        }
        s.prev_frame = Some(header.frame);
        let bytes = (self.parts.kept[1].len() + self.parts.kept[2].len()) as u64;
        s.summary.frames_received += 1;
        s.summary.bytes_received += bytes;
        self.summary.frames_received += 1;
        self.summary.bytes_received += bytes;
        let Some(sink) = s.sink.as_mut() else {
            if s.write_failed {
                s.summary.frames_discarded += 1;
            }
            return;
        };
        let meta = FrameMeta {
            frame_number: header.frame,
            timestamp_ns: header.timestamp_ns,
            flags: header.flags,
            sdk_err_flags: 0,
        };
        let pushed = sink.push(&self.parts.kept[1], &self.parts.kept[2], meta);
        let ep = &self.config.endpoint;
        if let Err(message) = pushed {
            s.summary.frames_discarded += 1;
            s.close_broken_sink(format!("stream {ep}: {message}"), events);
        } else if let Some(failure) = sink.new_failure() {
            let message = format!(
                "stream {ep}: series {}: write error, the rest of the series is discarded: \
                 {failure}",
                s.summary.index
            );
            s.fail(message, events);
        }
    }

    fn on_series_end(&mut self, end: SeriesEnd, events: &mut dyn FnMut(&Event)) {
        if self.series.is_none() {
            self.summary.stray_series_ends += 1;
            return;
        }
        self.finish_series(Some(end), None, events);
    }

    /// Finishes the open series, if any, without `series_end`; `interrupted`: on purpose (stop).
    fn finish_open(&mut self, note: &str, interrupted: bool, events: &mut dyn FnMut(&Event)) {
        if let Some(s) = self.series.as_mut() {
            s.summary.interrupted = interrupted;
            self.finish_series(None, Some(note.to_string()), events);
        }
    }

    /// Writes what is buffered, the drop record and the receiver's attributes, and closes the
    /// files of the open series.
    fn finish_series(
        &mut self,
        end: Option<SeriesEnd>,
        note: Option<String>,
        events: &mut dyn FnMut(&Event),
    ) {
        let Some(mut s) = self.series.take() else {
            return;
        };
        let ep = self.config.endpoint.clone();
        let mut ranges: Vec<LostRange> = Vec::new();
        let mut overflow = 0u64;
        let mut sdk_overruns = 0;
        let mut stream_gaps = s.summary.msg_gaps;
        let mut end_missing = 0u64;
        let after_last = s.prev_frame.map_or(0, |p| p.saturating_add(1));
        match &end {
            Some(e) => {
                s.summary.series_end_received = true;
                s.summary.frames_lost_upstream = e.frames_lost;
                s.summary.sender_stream_drops = e.stream_drops;
                s.summary.sender_error = e.error.clone();
                sdk_overruns = e.sdk_overruns;
                overflow = e.lost_ranges_overflow;
                ranges.extend(e.lost_ranges.iter().map(|r| LostRange {
                    first: r[0],
                    count: r[1],
                }));
                if e.frames_sent > s.next_msg {
                    // Image messages lost after the last one received.
                    let missing = e.frames_sent - s.next_msg;
                    s.summary.msg_gaps += 1;
                    s.summary.msg_missing = s.summary.msg_missing.saturating_add(missing);
                    stream_gaps += 1;
                    let message = format!(
                        "stream {ep}: series {}: msg_number gap: the last {missing} image \
                         messages of {} are missing",
                        s.summary.index, e.frames_sent
                    );
                    s.report(message, events);
                    s.add_span(after_last, after_last.saturating_add(missing));
                }
            }
            None => {
                // The missing series_end is a gap in the stream; frames after the last one
                // received are missing if the header promised more.
                stream_gaps += 1;
                if s.n_frames > after_last {
                    end_missing = s.n_frames - after_last;
                    s.add_span(after_last, s.n_frames);
                }
                let message = format!(
                    "stream {ep}: series {}: ended without series_end ({}), {} frames received{}",
                    s.summary.index,
                    note.as_deref().unwrap_or("unknown reason"),
                    s.summary.frames_received,
                    if end_missing > 0 {
                        format!(", {end_missing} of {} missing", s.n_frames)
                    } else {
                        String::new()
                    }
                );
                if !s.summary.interrupted {
                    s.summary.errors.push(message.clone());
                }
                s.report(message, events);
            }
        }
        s.summary.end_note = note;
        if s.frames_backwards > 0 {
            let message = format!(
                "stream {ep}: series {}: frame numbers went backwards {} times",
                s.summary.index, s.frames_backwards
            );
            s.report(message, events);
        }
        if let Some(sink) = &s.sink {
            s.summary.writer_waits = sink.writer_waits;
        }
        let closed = s.sink.take().map(FileSink::close);
        if let Some(Err(message)) = &closed {
            s.write_failed = true;
            s.fail(
                format!("stream {ep}: series {}: {message}", s.summary.index),
                events,
            );
        }
        if let Some(Ok((end, failure))) = closed {
            if let Some(failure) = failure {
                let message = format!(
                    "stream {ep}: series {}: write error, the rest of the series is discarded: \
                     {failure}",
                    s.summary.index
                );
                s.fail(message, events);
            }
            s.summary.frames_discarded += end.discarded;
            let mut sdk = ranges.clone();
            sdk.sort_by_key(|r| r.first);
            for &(first, end) in &s.spans {
                carve(first, end, &sdk, &mut ranges);
            }
            ranges.sort_by_key(|r| (r.first, r.count));
            if ranges.len() > MAX_LOST_RANGES {
                overflow += (ranges.len() - MAX_LOST_RANGES) as u64;
                ranges.truncate(MAX_LOST_RANGES);
            }
            overflow += s.spans_overflow;
            let frames_lost = s
                .summary
                .frames_lost_upstream
                .saturating_add(s.summary.sender_stream_drops)
                .saturating_add(s.summary.msg_missing)
                .saturating_add(s.summary.frames_discarded)
                .saturating_add(end_missing);
            s.summary.frames_lost = frames_lost;
            let drops = DropRecord {
                frames_lost,
                lost_ranges: ranges,
                lost_ranges_overflow: overflow,
                sdk_overruns,
                stream_gaps,
            };
            s.summary.frames_written = end.writer.frames_written();
            match end.writer.finish(&drops) {
                Ok(files) => {
                    for (path, _) in &files {
                        if let Err(e) = annotate(path, &self.config.software, &s.summary) {
                            let message = format!(
                                "stream {ep}: {}: receiver attributes: {e}",
                                path.display()
                            );
                            s.fail(message, events);
                        }
                    }
                    s.summary.files = files
                        .into_iter()
                        .map(|(path, frames)| FileSummary { path, frames })
                        .collect();
                }
                Err(e) => {
                    let message = format!("stream {ep}: series {}: {e}", s.summary.index);
                    s.fail(message, events);
                }
            }
        }
        let secs = s.started.elapsed().as_secs_f64().max(1e-9);
        s.summary.elapsed_s = secs;
        s.summary.frames_per_s = s.summary.frames_received as f64 / secs;
        s.summary.mb_per_s = s.summary.bytes_received as f64 / secs / 1e6;
        for e in &s.summary.errors {
            if self.summary.errors.len() < MAX_REPORTED_ERRORS {
                self.summary.errors.push(e.clone());
            }
        }
        events(&Event::SeriesEnd(Box::new(s.summary.clone())));
        self.summary.series_ended += 1;
        if s.summary.data_lost() {
            self.summary.series_failed += 1;
        }
        if self.summary.series.len() >= MAX_SERIES_LISTED {
            self.summary.series.remove(0);
        }
        self.summary.series.push(s.summary);
    }

    /// Submits a partly filled batch that has waited longer than the flush interval, and has the
    /// file flushed.
    fn flush_if_due(&mut self, events: &mut dyn FnMut(&Event)) {
        let ReceiveMode::Write(w) = &self.config.mode else {
            return;
        };
        let interval = w.flush_interval;
        let Some(s) = self.series.as_mut() else {
            return;
        };
        let Some(sink) = s.sink.as_mut() else {
            return;
        };
        if let Err(message) = sink.flush_if_due(interval) {
            let message = format!("stream {}: {message}", self.config.endpoint);
            s.close_broken_sink(message, events);
        }
    }
}

impl Series {
    /// Records an error of the series (the first few are kept) and reports it.
    fn fail(&mut self, message: String, events: &mut dyn FnMut(&Event)) {
        if self.summary.errors.len() < MAX_REPORTED_ERRORS {
            self.summary.errors.push(message.clone());
        } else {
            self.summary.errors_not_listed += 1;
        }
        self.report(message, events);
    }

    fn report(&mut self, message: String, events: &mut dyn FnMut(&Event)) {
        if self.reported < MAX_REPORTED_ERRORS {
            self.reported += 1;
            events(&Event::Error { message });
        }
    }

    fn add_span(&mut self, first: u64, end: u64) {
        if self.spans.len() < MAX_LOST_RANGES {
            self.spans.push((first, end));
        } else {
            self.spans_overflow += 1;
        }
    }

    /// The writer thread is gone (it can only panic): closes what it left, discards the rest
    /// of the series.
    fn close_broken_sink(&mut self, message: String, events: &mut dyn FnMut(&Event)) {
        self.write_failed = true;
        if let Some(sink) = self.sink.take() {
            drop(sink.close());
        }
        self.fail(message, events);
    }
}

/// Checks an image message with [`protocol::image_header`]; the payload stays in the message,
/// from which the receiver copies it straight into its batch.
fn check_image(parts: &Parts) -> Result<ImageHeader, ProtocolError> {
    if parts.n != parts.kept.len() {
        return Err(ProtocolError::Parts {
            htype: "image",
            got: parts.n,
            expected: parts.kept.len(),
        });
    }
    protocol::image_header(&parts.kept)
}

/// Copies little-endian u32 words from `bytes` (exactly `4 * dst.len()` long) into `dst`.
fn copy_le(dst: &mut [u32], bytes: &[u8]) {
    bytemuck::cast_slice_mut::<u32, u8>(dst).copy_from_slice(bytes);
    if cfg!(target_endian = "big") {
        for w in dst.iter_mut() {
            *w = u32::from_le(*w);
        }
    }
}

/// Appends the frames of `[first, end)` not covered by `sdk` (sorted by `first`) to `out`.
fn carve(first: u64, end: u64, sdk: &[LostRange], out: &mut Vec<LostRange>) {
    let mut start = first;
    for r in sdk {
        let r_end = r.first.saturating_add(r.count);
        if r_end <= start {
            continue;
        }
        if r.first >= end {
            break;
        }
        if r.first > start {
            out.push(LostRange {
                first: start,
                count: r.first - start,
            });
        }
        start = start.max(r_end);
        if start >= end {
            return;
        }
    }
    if start < end {
        out.push(LostRange {
            first: start,
            count: end - start,
        });
    }
}

impl FileSink {
    /// Creates the first file (so an existing file or a bad directory fails here, before any
    /// frame) and starts the writer thread.
    fn open(w: &WriteConfig, name: &str, desc: AcqDescription) -> Result<FileSink, String> {
        let geometry = desc.geometry;
        let mut writer = AcqFileWriter::create(
            OutputConfig {
                dir: w.root.clone(),
                name: name.to_string(),
                frames_per_file: w.frames_per_file,
                overwrite: w.overwrite,
                swmr: w.swmr,
                flush_interval: w.flush_interval,
            },
            desc,
        )
        .map_err(|e| e.to_string())?;
        let chunk = writer.chunk_frames();
        let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Job>(BATCHES + 1);
        let (free_tx, free_rx) = mpsc::sync_channel::<Batch>(BATCHES);
        for _ in 0..BATCHES {
            let batch = Batch {
                mca: vec![0; chunk * geometry.mca_words()],
                scalers: vec![0; chunk * geometry.scaler_words()],
                meta: vec![FrameMeta::default(); chunk],
                len: 0,
            };
            // Cannot fail: the channel has room for every batch and its receiver is alive.
            let _ = free_tx.send(batch);
        }
        let failure = Arc::new(Mutex::new(None));
        let thread_failure = Arc::clone(&failure);
        let thread = std::thread::Builder::new()
            .name("xsp3-receive writer".into())
            .spawn(move || {
                let mut discarded = 0u64;
                let mut broken = false;
                let (mw, sw) = (geometry.mca_words(), geometry.scaler_words());
                for job in jobs_rx {
                    let result = match job {
                        Job::Write(mut batch) => {
                            let n = batch.len;
                            let result = if broken {
                                discarded += n as u64;
                                Ok(())
                            } else {
                                writer.write_batch(
                                    &batch.mca[..n * mw],
                                    &batch.scalers[..n * sw],
                                    &batch.meta[..n],
                                )
                            };
                            if result.is_err() {
                                discarded += n as u64;
                            }
                            batch.len = 0;
                            let _ = free_tx.send(batch);
                            result
                        }
                        Job::Flush if !broken => writer.flush(),
                        Job::Flush => Ok(()),
                    };
                    if let Err(e) = result {
                        broken = true;
                        *thread_failure
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
                    }
                }
                WriterEnd { writer, discarded }
            })
            .map_err(|e| format!("cannot start the writer thread: {e}"))?;
        Ok(FileSink {
            geometry,
            jobs: Some(jobs_tx),
            free: free_rx,
            filling: None,
            thread: Some(thread),
            failure,
            failure_reported: false,
            chunk,
            aligned: w.frames_per_file.is_none_or(|f| f % chunk as u64 == 0),
            submitted: 0,
            writer_waits: 0,
            target: chunk,
            last_submit: Instant::now(),
        })
    }

    /// Copies one frame (payloads already checked against the geometry) into the batch, and
    /// submits the batch when it is full. Waits for a free batch if every one is being written.
    fn push(&mut self, mca: &[u8], scalers: &[u8], meta: FrameMeta) -> Result<(), String> {
        if self.filling.is_none() {
            let batch = match self.free.try_recv() {
                Ok(batch) => batch,
                Err(_) => {
                    self.writer_waits += 1;
                    self.free
                        .recv()
                        .map_err(|_| "the writer thread ended unexpectedly".to_string())?
                }
            };
            self.filling = Some(batch);
        }
        let Some(b) = self.filling.as_mut() else {
            return Ok(());
        };
        let (mw, sw) = (self.geometry.mca_words(), self.geometry.scaler_words());
        let i = b.len;
        copy_le(&mut b.mca[i * mw..(i + 1) * mw], mca);
        copy_le(&mut b.scalers[i * sw..(i + 1) * sw], scalers);
        b.meta[i] = meta;
        b.len += 1;
        if b.len >= self.target {
            self.submit()?;
        }
        Ok(())
    }

    /// Hands the batch being filled (if it has frames) to the writer thread.
    fn submit(&mut self) -> Result<(), String> {
        let Some(batch) = self.filling.take_if(|b| b.len > 0) else {
            return Ok(());
        };
        let n = batch.len as u64;
        self.send(Job::Write(batch))?;
        self.submitted += n;
        self.last_submit = Instant::now();
        let chunk = self.chunk as u64;
        self.target = if self.aligned {
            (chunk - self.submitted % chunk) as usize
        } else {
            self.chunk
        };
        Ok(())
    }

    fn send(&mut self, job: Job) -> Result<(), String> {
        let jobs = self.jobs.as_ref().ok_or("the writer is closed")?;
        jobs.send(job)
            .map_err(|_| "the writer thread ended unexpectedly".to_string())
    }

    fn flush_if_due(&mut self, interval: Duration) -> Result<(), String> {
        let pending = self.filling.as_ref().is_some_and(|b| b.len > 0);
        if pending && self.last_submit.elapsed() >= interval {
            self.submit()?;
            self.send(Job::Flush)?;
        }
        Ok(())
    }

    /// The writer thread's error, once.
    fn new_failure(&mut self) -> Option<String> {
        if self.failure_reported {
            return None;
        }
        let failure = self
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        self.failure_reported = failure.is_some();
        failure
    }

    /// Submits what is left, waits for the writer thread and returns its writer (to finish) and
    /// its error if it was not reported yet.
    fn close(mut self) -> Result<(WriterEnd, Option<String>), String> {
        let submitted = self.submit();
        self.jobs = None;
        let end = self
            .thread
            .take()
            .map(JoinHandle::join)
            .ok_or("the writer thread is gone")?
            .map_err(|_| "the writer thread panicked; the file may lack its final attributes")?;
        submitted?;
        Ok((end, self.new_failure()))
    }
}

/// Checks a base name before anything is created: [`layout::check_name`] (relative, no `..`),
/// and no symbolic link on the way (an existing directory of the name, or with `--overwrite` the
/// first file itself), so that nothing is written outside the root even if a link was planted in
/// it.
fn check_target(w: &WriteConfig, name: &str) -> Result<(), String> {
    layout::check_name(name).map_err(|e| e.to_string())?;
    let relative = std::path::Path::new(name);
    let mut path = w.root.clone();
    let dirs = relative
        .parent()
        .map(|p| p.components().count())
        .unwrap_or(0);
    for component in relative.components().take(dirs) {
        path.push(component);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "{} is a symbolic link; files stay inside the root",
                    path.display()
                ))
            }
            Ok(_) => {}
            Err(_) => return Ok(()),
        }
    }
    let first = layout::file_name(name, w.frames_per_file.map(|_| 0));
    let file = w.root.join(first);
    if std::fs::symlink_metadata(&file).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(format!(
            "{} is a symbolic link; files stay inside the root",
            file.display()
        ));
    }
    Ok(())
}

/// Adds the receiver's own attributes to a finished file: who received it and how the series
/// ended.
fn annotate(path: &std::path::Path, receiver: &str, s: &SeriesSummary) -> hdf5::Result<()> {
    let file = hdf5::File::open_rw(path)?;
    let det = file.group(layout::DETECTOR)?;
    set_str(&det, "receiver", receiver)?;
    set_scalar(&det, "series_end_received", s.series_end_received as u8)?;
    set_scalar(&det, "sender_stream_drops", s.sender_stream_drops)?;
    set_scalar(&det, "frames_discarded", s.frames_discarded)?;
    set_scalar(&det, "msg_missing", s.msg_missing)?;
    if let Some(note) = &s.end_note {
        set_str(&det, "end_note", note)?;
    }
    file.close()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(first: u64, count: u64) -> LostRange {
        LostRange { first, count }
    }

    #[test]
    fn spans_exclude_frames_the_sdk_lost() {
        let sdk = [range(3, 2), range(8, 1)];
        let mut out = Vec::new();
        carve(0, 10, &sdk, &mut out);
        assert_eq!(out, vec![range(0, 3), range(5, 3), range(9, 1)]);
        out.clear();
        carve(3, 5, &sdk, &mut out);
        assert!(out.is_empty(), "fully explained by the SDK: {out:?}");
        out.clear();
        carve(20, 25, &sdk, &mut out);
        assert_eq!(out, vec![range(20, 5)]);
        out.clear();
        carve(u64::MAX - 2, u64::MAX, &[range(u64::MAX - 1, 10)], &mut out);
        assert_eq!(out, vec![range(u64::MAX - 2, 1)]);
    }

    fn image_json(frame: u64, shape: [u32; 2], dtype: &str) -> Vec<u8> {
        serde_json::to_vec(&ImageHeader {
            htype: "image".into(),
            frame,
            msg_number: frame,
            shape,
            scaler_shape: [shape[0], 9],
            dtype: dtype.into(),
            compression: "none".into(),
            exptime: 0.001,
            timestamp_ns: 5,
            flags: 0,
        })
        .unwrap()
    }

    fn parts_of(raw: &[Vec<u8>]) -> Parts {
        let mut kept = [
            zmq::Message::new(),
            zmq::Message::new(),
            zmq::Message::new(),
        ];
        for (slot, part) in kept.iter_mut().zip(raw) {
            *slot = zmq::Message::from(&part[..]);
        }
        Parts {
            kept,
            spare: zmq::Message::new(),
            n: raw.len(),
        }
    }

    /// The receiver's copy-free image check accepts and refuses exactly what the protocol's
    /// decoder does, with the same error.
    #[test]
    fn image_check_agrees_with_the_decoder() {
        let ok = vec![image_json(4, [2, 3], "uint32"), vec![1; 24], vec![2; 72]];
        let cases = vec![
            ok.clone(),
            vec![image_json(4, [2, 3], "uint32")],
            vec![image_json(4, [2, 3], "uint32"), vec![1; 24]],
            vec![image_json(4, [2, 3], "uint32"), vec![1; 23], vec![2; 72]],
            vec![image_json(4, [2, 3], "uint32"), vec![1; 24], vec![2; 73]],
            vec![image_json(4, [2, 3], "float32"), vec![1; 24], vec![2; 72]],
            vec![br#"{"htype":"image"}"#.to_vec(), vec![], vec![]],
            vec![
                image_json(4, [2, 3], "uint32"),
                vec![1; 24],
                vec![2; 72],
                vec![],
            ],
        ];
        for raw in cases {
            let ours = check_image(&parts_of(&raw));
            let theirs = protocol::decode(&raw);
            match (&ours, &theirs) {
                (Ok(h), Ok(Message::Image { header, mca, .. })) => {
                    assert_eq!(h, header);
                    let mut words = vec![0u32; mca.len()];
                    copy_le(&mut words, &raw[1]);
                    assert_eq!(&words, mca);
                }
                (Err(a), Err(b)) => assert_eq!(a, b),
                _ => panic!("disagree on {raw:?}: {ours:?} vs {theirs:?}"),
            }
        }
        // A shape whose byte count overflows is a size error, not a panic.
        let huge = vec![
            image_json(0, [u32::MAX, u32::MAX], "uint32"),
            vec![],
            vec![],
        ];
        assert!(matches!(
            check_image(&parts_of(&huge)),
            Err(ProtocolError::PayloadSize { what: "MCA", .. })
        ));
    }
}
