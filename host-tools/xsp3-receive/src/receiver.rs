//! The receiving loop: the socket, whole-message receives, decoding, and the dispatch of each
//! message to its series.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use xspress3::layout;
use xspress3::protocol::{
    self, ack_endpoint, BackChannel, Header, ImageHeader, Message, ProtocolError, SeriesEnd,
    HELLO_PERIOD,
};

use crate::config::{ReceiveMode, ReceiverConfig, SocketKind};
use crate::report::{Event, RateReport, SeriesSummary, StopReason, Summary, MAX_SERIES_LISTED};
use crate::series::{ImageOutcome, Series, MAX_REPORTED_ERRORS};
use crate::sink::FileSink;

/// How long one blocking receive waits before the loop checks the stop flag and timers.
const RECV_SLICE: Duration = Duration::from_millis(100);
/// Rate reports this often.
const RATE_EVERY: Duration = Duration::from_secs(1);
/// Acknowledged PUSH: how long an image that arrives before its series' header waits for the
/// header on the back channel (the two sockets are not ordered with each other).
const HEADER_WAIT: Duration = Duration::from_secs(1);
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

/// The receiver's end of the sender's back channel (acknowledged PUSH).
struct Back {
    socket: zmq::Socket,
    endpoint: String,
    last_hello: Instant,
    /// The sender answered our hello: acknowledged mode, with the message number we joined at
    /// until a series opens with it.
    joined: bool,
    joined_at: u64,
}

/// A connected receiver. See the crate documentation.
pub struct Receiver {
    config: ReceiverConfig,
    socket: zmq::Socket,
    back: Option<Back>,
    /// The header of the open series (acknowledged PUSH sends it on both sockets).
    open_header: Option<Header>,
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
        let back = match (
            config.acknowledge && config.kind == SocketKind::Pull,
            ack_endpoint(ep),
        ) {
            (true, Some(endpoint)) => {
                let back = ctx
                    .socket(zmq::DEALER)
                    .map_err(zmq_err(&endpoint, "create"))?;
                back.set_linger(0)
                    .map_err(zmq_err(&endpoint, "set linger"))?;
                back.set_maxmsgsize(MAX_PART_BYTES)
                    .map_err(zmq_err(&endpoint, "set maximum message size"))?;
                back.connect(&endpoint)
                    .map_err(zmq_err(&endpoint, "connect"))?;
                Some(Back {
                    socket: back,
                    endpoint,
                    // Say hello at once.
                    last_hello: Instant::now() - HELLO_PERIOD,
                    joined: false,
                    joined_at: 0,
                })
            }
            _ => None,
        };
        socket.connect(ep).map_err(zmq_err(ep, "connect"))?;
        let summary = Summary {
            endpoint: config.endpoint.clone(),
            socket: Some(config.kind),
            ..Summary::default()
        };
        Ok(Receiver {
            config,
            socket,
            back,
            open_header: None,
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
            if self.service_back(events) {
                last_msg = Instant::now();
                if self.config.once && self.summary.series_ended > 0 {
                    self.summary.stopped_by = StopReason::Once;
                    break;
                }
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
                    self.flush_idle(events);
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
        let acknowledged = self.back.as_ref().is_some_and(|b| b.joined);
        match protocol::decode(&owned) {
            // Acknowledged: headers and series ends come on the back channel, to every receiver.
            Ok(Message::Header(_)) | Ok(Message::SeriesEnd(_)) if acknowledged => {}
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
        if self.series.is_some() && self.open_header.as_ref() == Some(&header) {
            // Acknowledged PUSH: the header of the open series again, on the other socket (we
            // joined while it started). The series is now an acknowledged one.
            if let (Some(back), Some(series)) = (
                self.back.as_mut().filter(|b| b.joined),
                self.series.as_mut(),
            ) {
                if !series.summary.acknowledged {
                    series.share(0);
                }
                back.joined_at = 0;
            }
            return;
        }
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
        let joined_at = self
            .back
            .as_ref()
            .filter(|b| b.joined)
            .map_or(0, |b| b.joined_at);
        let name = match &self.config.mode {
            ReceiveMode::Print => None,
            ReceiveMode::Write(w) => w
                .file
                .clone()
                .or_else(|| (!header.filename.is_empty()).then(|| header.filename.clone()))
                // A receiver that joins a running series (restarted after a crash) writes the
                // rest into a file of its own, never over the file of the one before it.
                .map(|name| match joined_at {
                    0 => name,
                    k => format!("{name}_from_msg_{k}"),
                }),
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
        self.open_header = Some(header.clone());
        let mut series = Series::new(summary, geometry, header.n_frames, sink);
        if let Some(back) = self.back.as_mut().filter(|b| b.joined) {
            series.share(back.joined_at);
            back.joined_at = 0;
        }
        for e in errors {
            series.fail(e, events);
        }
        self.series = Some(series);
    }

    fn on_image(&mut self, header: ImageHeader, events: &mut dyn FnMut(&Event)) {
        if self.series.is_none() && self.back.is_some() {
            self.await_header(events);
        }
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

impl Receiver {
    /// Acknowledged PUSH: says hello when due, takes what the sender sent on the back channel
    /// (join, header, series_end) and acknowledges what the open series has made safe. True
    /// when a header or series_end arrived.
    fn service_back(&mut self, events: &mut dyn FnMut(&Event)) -> bool {
        let Some(back) = self.back.as_mut() else {
            return false;
        };
        if self.series.is_none() && back.last_hello.elapsed() >= HELLO_PERIOD {
            back.last_hello = Instant::now();
            let hello = serde_json::to_vec(&BackChannel::Hello).unwrap_or_default();
            // A full queue (sender gone) only delays the next hello.
            let _ = back.socket.send(hello, zmq::DONTWAIT);
        }
        let mut any = false;
        while let Some(back) = self.back.as_mut() {
            let bytes = match back.socket.recv_bytes(zmq::DONTWAIT) {
                Ok(bytes) => bytes,
                Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => break,
                Err(e) => {
                    let message = format!("back channel {}: receive: {e}", back.endpoint);
                    self.back = None;
                    self.error(message, events);
                    break;
                }
            };
            if let Ok(BackChannel::Join { next_msg_number }) = serde_json::from_slice(&bytes) {
                back.joined = true;
                back.joined_at = next_msg_number;
                continue;
            }
            if !back.joined {
                // Whatever answers on that port without a join is not an xsp3 sender.
                continue;
            }
            any = true;
            self.summary.messages += 1;
            match protocol::decode(&[bytes]) {
                Ok(Message::Header(h)) => self.on_header(*h, events),
                Ok(Message::SeriesEnd(end)) => self.on_series_end(end, events),
                Ok(Message::Image { .. }) => {
                    self.malformed("an image on the back channel".into(), events)
                }
                Err(e) => self.malformed(format!("back channel: {e}"), events),
            }
        }
        self.send_acks(events);
        any
    }

    /// Acknowledges what the open series made safe since the last call.
    fn send_acks(&mut self, events: &mut dyn FnMut(&Event)) {
        let (Some(back), Some(series)) = (self.back.as_ref(), self.series.as_mut()) else {
            return;
        };
        if !back.joined {
            return;
        }
        let msgs = series.take_acks();
        if msgs.is_empty() {
            return;
        }
        let ack = serde_json::to_vec(&BackChannel::Ack { msgs }).unwrap_or_default();
        if let Err(e) = back.socket.send(ack, 0) {
            let message = format!("back channel {}: acknowledge: {e}", back.endpoint);
            self.error(message, events);
        }
    }

    /// Acknowledged PUSH, nothing arrived for a receive slice: flushes the open series' file so
    /// its frames can be acknowledged without waiting for the flush interval.
    fn flush_idle(&mut self, events: &mut dyn FnMut(&Event)) {
        if !self.back.as_ref().is_some_and(|b| b.joined) {
            return;
        }
        if let Some(s) = self.series.as_mut() {
            s.flush_now(&self.config.endpoint, events);
        }
    }

    /// Acknowledged PUSH: an image came before its series' header; the header is on its way on
    /// the back channel (sent first, but on another socket). Waits for it, at most
    /// [`HEADER_WAIT`].
    fn await_header(&mut self, events: &mut dyn FnMut(&Event)) {
        let deadline = Instant::now() + HEADER_WAIT;
        while self.series.is_none() && Instant::now() < deadline {
            let Some(back) = self.back.as_ref() else {
                return;
            };
            match back.socket.poll(zmq::POLLIN, 20) {
                Ok(n) if n > 0 => {
                    self.service_back(events);
                }
                Ok(_) | Err(zmq::Error::EINTR) => {
                    // Not joined yet (the sender has not seen our hello): say it again.
                    if let Some(back) = self.back.as_mut().filter(|b| !b.joined) {
                        back.last_hello = Instant::now() - HELLO_PERIOD;
                    }
                    self.service_back(events);
                }
                Err(_) => return,
            }
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
