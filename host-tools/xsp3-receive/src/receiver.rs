//! The receiving loop: the socket, whole-message receives, decoding, and the dispatch of each
//! message to its series.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use xspress3::layout;
use xspress3::protocol::{self, Header, ImageHeader, Message, ProtocolError, SeriesEnd};

use crate::config::{ReceiveMode, ReceiverConfig, SocketKind};
use crate::report::{Event, RateReport, SeriesSummary, StopReason, Summary, MAX_SERIES_LISTED};
use crate::series::{ImageOutcome, Series, MAX_REPORTED_ERRORS};
use crate::sink::FileSink;

/// How long one blocking receive waits before the loop checks the stop flag and timers.
const RECV_SLICE: Duration = Duration::from_millis(100);
/// Rate reports this often.
const RATE_EVERY: Duration = Duration::from_secs(1);
/// Largest message part accepted: the largest frame (256 x 4096 u32) and some room. ZMQ drops
/// the connection of a peer that sends more.
const MAX_PART_BYTES: i64 = 8 << 20;

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
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Parts of one message: the first three are kept, further parts are received into a spare and
/// only counted.
struct Parts {
    kept: [zmq::Message; 3],
    spare: zmq::Message,
    n: usize,
}

impl Parts {
    fn new() -> Parts {
        Parts {
            kept: [
                zmq::Message::new(),
                zmq::Message::new(),
                zmq::Message::new(),
            ],
            spare: zmq::Message::new(),
            n: 0,
        }
    }
}

/// A connected receiver. See the crate documentation.
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
            parts: Parts::new(),
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
            Some(s) => (
                Some(s.summary.index),
                s.summary.frames_received,
                s.frames_since_last_rate(),
                s.summary.msg_gaps,
            ),
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
            (ReceiveMode::Write(w), Ok(desc), Some(name)) => match layout::check_name(&name)
                .and_then(|()| {
                    layout::confine(
                        &w.root,
                        &layout::file_name(&name, w.frames_per_file.map(|_| 0)),
                    )
                }) {
                Err(e) => errors.push(format!(
                    "stream {ep}: series {index}: file name `{}` refused, nothing is written for \
                     this series: {e}",
                    name.escape_debug()
                )),
                Ok(_) => match FileSink::open(w, &name, desc) {
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
        let mut series = Series::new(summary, geometry, header.n_frames, sink);
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
        let [_, mca, scalers] = &self.parts.kept;
        match s.on_image(&header, mca, scalers, &self.config.endpoint, events) {
            ImageOutcome::Received { bytes } => {
                self.summary.frames_received += 1;
                self.summary.bytes_received += bytes;
            }
            ImageOutcome::Malformed => self.summary.malformed_messages += 1,
            ImageOutcome::Discarded => {}
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

    /// Finishes the open series (its files, see [`Series::finish`]) and adds it to the summary.
    fn finish_series(
        &mut self,
        end: Option<SeriesEnd>,
        note: Option<String>,
        events: &mut dyn FnMut(&Event),
    ) {
        let Some(s) = self.series.take() else {
            return;
        };
        let s = s.finish(
            end,
            note,
            &self.config.endpoint,
            &self.config.software,
            events,
        );
        for e in &s.errors {
            if self.summary.errors.len() < MAX_REPORTED_ERRORS {
                self.summary.errors.push(e.clone());
            }
        }
        events(&Event::SeriesEnd(Box::new(s.clone())));
        self.summary.series_ended += 1;
        if s.data_lost() {
            self.summary.series_failed += 1;
        }
        if self.summary.series.len() >= MAX_SERIES_LISTED {
            self.summary.series.remove(0);
        }
        self.summary.series.push(s);
    }

    /// Submits a partly filled batch that has waited longer than the flush interval, and has the
    /// file flushed.
    fn flush_if_due(&mut self, events: &mut dyn FnMut(&Event)) {
        let ReceiveMode::Write(w) = &self.config.mode else {
            return;
        };
        if let Some(s) = self.series.as_mut() {
            s.flush_if_due(w.flush_interval, &self.config.endpoint, events);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::copy_le;

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
            rois: Vec::new(),
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
