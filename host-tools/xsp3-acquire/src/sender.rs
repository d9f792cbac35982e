//! Sends a series of frames on a ZMQ socket in the protocol of [`xspress3::protocol`].
//!
//! PUSH (the default) is lossless: when receivers fall behind, sends wait, the ring fills and the
//! backlog ends up in the SDK's buffer, where any overrun is counted. PUB is lossy: the socket is
//! set to refuse (not silently drop) at its high-water mark, and each refused frame is counted.
//! PUB is implemented with an XPUB socket, which sees subscriptions, so a session can wait for its
//! first subscriber before arming: a receiver started first then gets the header too.
//!
//! A blocked send never blocks forever once the session is stopping: see [`SendGate`]. Control
//! messages (`header`, `series_end`) are never refused by PUB: they wait for room.
//!
//! With [`StreamFormat::Karabo`] the same socket carries Karabo Bridge 2.2 trains instead (see
//! [`KaraboTrains`]): one train per frame or per N frames, read by `karabo_bridge.Client` (PULL
//! for PUSH, SUB for PUB); no header or `series_end`, no acknowledgements.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use acq_core::geometry::{FrameMeta, Geometry};

use acq_core::deadtime::{channel_scalers, dead_time};
use acq_core::geometry::{Scaler, N_SCALERS};
use karabo_bridge::dtype::{Dtype, Kind};
use karabo_bridge::train::{Array, Entry, Payload, SourceTrain, Train};
use rmpv::Value;
use xspress3::protocol::{Header, ImageHeader, RoiValues, SeriesEnd};
use xspress3::roi::{self, Roi};

use crate::ack::AckChannel;
use xspress3::protocol::ack_endpoint;

/// The stream's socket type; the names are the command line's and `configure`'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StreamKind {
    Push,
    Pub,
}

/// What the stream carries; the names are the command line's and `configure`'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StreamFormat {
    /// The frame protocol of `xspress3::protocol` (header, images, series_end).
    Native,
    /// Karabo Bridge 2.2 trains (EuXFEL's `karabo_bridge.Client`).
    Karabo,
}

/// The trains of [`StreamFormat::Karabo`]: frame `f` belongs to train
/// `first_train + f / frames_per_train`, as `xfel-write xspress3` maps frames to trains.
#[derive(Clone, Debug, PartialEq)]
pub struct KaraboConfig {
    /// The source name, e.g. `XSPRESS3/DET/XSP3:daqOutput`.
    pub source: String,
    /// At least 1.
    pub frames_per_train: u64,
    /// At least 1.
    pub first_train: u64,
}

#[derive(Clone, Debug)]
pub struct StreamConfig {
    pub endpoint: String,
    pub kind: StreamKind,
    /// `Some`: Karabo Bridge trains instead of the native frame stream.
    pub karabo: Option<KaraboConfig>,
    /// Messages queued per peer before PUSH waits or PUB refuses.
    pub high_water_mark: i32,
    /// PUB only: how long to wait for a first subscriber before the acquisition starts.
    pub subscriber_wait: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("stream socket {endpoint}: {what}: {source}")]
    Zmq {
        endpoint: String,
        what: &'static str,
        #[source]
        source: zmq::Error,
    },
    #[error("stream socket {endpoint}: the receiver took nothing; gave up sending {what}")]
    GaveUp {
        endpoint: String,
        what: &'static str,
    },
}

/// How long a blocked PUSH send waits before it asks the gate whether to give up.
const SEND_SLICE: Duration = Duration::from_millis(100);
/// How often a PUB control message refused at the high-water mark is tried again.
const CONTROL_RETRY: Duration = Duration::from_millis(5);
/// Once a stop was requested, the stream gives up when no message could be sent for this long...
pub const STOP_STALL: Duration = Duration::from_secs(1);
/// ... or this long after the stop, whichever comes first.
pub const STOP_DRAIN: Duration = Duration::from_secs(5);
/// A PUB control message waits at most this long for room (a subscriber that reads nothing for
/// that long will not read it anyway).
pub const CONTROL_WAIT: Duration = Duration::from_secs(5);

/// Tells blocked sends when to give up: after a stop, once the peer made no progress for
/// [`STOP_STALL`] or [`STOP_DRAIN`] has passed since the stop. Until then a PUSH send waits for
/// its receiver: lossless.
#[derive(Debug, Default)]
pub struct SendGate {
    stopped_at: OnceLock<Instant>,
}

impl SendGate {
    /// Starts the stop clock (the first call counts).
    pub fn stop(&self) {
        let _ = self.stopped_at.set(Instant::now());
    }

    pub(crate) fn give_up(&self, last_progress: Instant) -> bool {
        self.stopped_at.get().is_some_and(|&stopped| {
            stopped.elapsed() >= STOP_DRAIN || last_progress.elapsed() >= STOP_STALL
        })
    }
}

/// A batch that was sent only in part: its first `done` frames went out (or were refused by PUB).
#[derive(Debug)]
pub struct PartialSend {
    pub done: usize,
    pub error: StreamError,
}

pub struct StreamSender {
    socket: zmq::Socket,
    config: StreamConfig,
    geometry: Geometry,
    exptime: f64,
    /// Software ROIs sent with every frame, and the event widths of their dead-time correction.
    rois: Vec<Roi>,
    event_widths: Vec<u32>,
    /// Number of the next image message; refused images use up a number too, so receivers see
    /// PUB drops as gaps.
    msg_number: u64,
    sent: u64,
    drops: u64,
    json: Vec<u8>,
    /// When a message was last accepted by the socket.
    last_progress: Instant,
    /// PUSH: the back channel of acknowledging receivers.
    ack: Option<AckChannel>,
    /// Karabo Bridge format: the train being filled.
    karabo: Option<KaraboTrains>,
}

impl StreamSender {
    /// Binds the socket.
    pub fn bind(
        ctx: &zmq::Context,
        config: StreamConfig,
        geometry: Geometry,
        exptime: f64,
    ) -> Result<Self, StreamError> {
        let err = |what: &'static str| {
            let endpoint = config.endpoint.clone();
            move |source| StreamError::Zmq {
                endpoint,
                what,
                source,
            }
        };
        let mut socket = match config.kind {
            StreamKind::Push => ctx.socket(zmq::PUSH),
            StreamKind::Pub => ctx.socket(zmq::XPUB),
        }
        .map_err(err("create"))?;
        socket
            .set_sndhwm(config.high_water_mark)
            .map_err(err("set high-water mark"))?;
        socket.set_linger(2000).map_err(err("set linger"))?;
        if config.kind == StreamKind::Pub {
            refuse_at_high_water_mark(&mut socket).map_err(err("set no-drop"))?;
        } else {
            socket
                .set_sndtimeo(SEND_SLICE.as_millis() as i32)
                .map_err(err("set send timeout"))?;
        }
        socket.bind(&config.endpoint).map_err(err("bind"))?;
        // The back channel is an addition for receivers that acknowledge: if its endpoint is
        // taken, PUSH works as for plain receivers, and the operator is told.
        let ack = match (config.kind, ack_endpoint(&config.endpoint)) {
            _ if config.karabo.is_some() => None,
            (StreamKind::Push, Some(endpoint)) => match AckChannel::bind(ctx, endpoint) {
                Ok(ack) => Some(ack),
                Err(e) => {
                    eprintln!("xsp3-acquire: no acknowledgements on this stream: {e}");
                    None
                }
            },
            _ => None,
        };
        let karabo = config.karabo.clone().map(KaraboTrains::new);
        Ok(StreamSender {
            karabo,
            socket,
            config,
            geometry,
            exptime,
            rois: Vec::new(),
            event_widths: Vec::new(),
            msg_number: 0,
            sent: 0,
            drops: 0,
            json: Vec::with_capacity(512),
            last_progress: Instant::now(),
            ack,
        })
    }

    /// PUB: waits up to `subscriber_wait` for a subscription; true once one arrived. PUSH: true
    /// at once (its sends wait for a receiver anyway).
    pub fn wait_for_subscriber(&self) -> Result<bool, StreamError> {
        if self.config.kind == StreamKind::Push {
            return Ok(true);
        }
        let wait_ms = self
            .config
            .subscriber_wait
            .as_millis()
            .min(i64::MAX as u128) as i64;
        if self
            .socket
            .poll(zmq::POLLIN, wait_ms)
            .map_err(self.zmq_err("wait for a subscriber"))?
            == 0
        {
            return Ok(false);
        }
        // The subscription message itself (0x01 + topic) carries nothing we need.
        self.socket
            .recv_bytes(0)
            .map_err(self.zmq_err("receive a subscription"))?;
        Ok(true)
    }

    /// Image messages each acknowledging receiver acknowledged, in the order they joined.
    pub fn acked_by_receiver(&self) -> Vec<u64> {
        self.ack
            .as_ref()
            .map_or_else(Vec::new, |a| a.acked_by_receiver().to_vec())
    }

    /// Image messages sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Frames a PUB socket refused.
    pub fn drops(&self) -> u64 {
        self.drops
    }

    pub fn endpoint(&self) -> &str {
        &self.config.endpoint
    }

    fn zmq_err(&self, what: &'static str) -> impl FnOnce(zmq::Error) -> StreamError {
        let endpoint = self.config.endpoint.clone();
        move |source| StreamError::Zmq {
            endpoint,
            what,
            source,
        }
    }

    /// Sends the series' header; waits for room even on PUB (bounded by [`CONTROL_WAIT`]).
    pub fn send_header(&mut self, header: &Header, gate: &SendGate) -> Result<(), StreamError> {
        if self.karabo.is_some() {
            return Ok(());
        }
        let json = serde_json::to_vec(header).unwrap_or_default();
        if let Some(ack) = &mut self.ack {
            ack.service(self.msg_number)?;
            ack.start_series(&json)?;
        }
        self.send_control(&json, gate, "send header")
    }

    /// Sends `series_end`; waits for room even on PUB (bounded by [`CONTROL_WAIT`]).
    pub fn send_series_end(&mut self, end: &SeriesEnd, gate: &SendGate) -> Result<(), StreamError> {
        if self.karabo.is_some() {
            // The last train, however many frames it has.
            return self.send_train(gate);
        }
        let json = serde_json::to_vec(end).unwrap_or_default();
        if let Some(ack) = &mut self.ack {
            ack.end_series(&json)?;
        }
        self.send_control(&json, gate, "send series_end")
    }

    /// With acknowledging receivers: waits until every image message sent is acknowledged, the
    /// acknowledgements stall ([`crate::ack::ACK_STALL`]) or the gate gives up after a stop.
    /// Returns the frames sent but never acknowledged, as `[first, count]` ranges, and their
    /// number; nothing without acknowledging receivers.
    pub fn settle_acks(&mut self, gate: &SendGate) -> Result<(Vec<[u64; 2]>, u64), StreamError> {
        let end = self.msg_number;
        let Some(ack) = &mut self.ack else {
            return Ok((Vec::new(), 0));
        };
        let waiting_since = Instant::now();
        ack.begin_settling();
        loop {
            ack.service(end)?;
            if ack.settled(end) || gate.give_up(waiting_since) {
                break;
            }
            std::thread::sleep(CONTROL_RETRY);
        }
        Ok(if ack.in_use() {
            ack.unacked_frames(end)
        } else {
            (Vec::new(), 0)
        })
    }

    fn send_control(
        &mut self,
        json: &[u8],
        gate: &SendGate,
        what: &'static str,
    ) -> Result<(), StreamError> {
        let deadline = Instant::now() + CONTROL_WAIT;
        self.last_progress = Instant::now();
        loop {
            if self.send_parts(&[json], gate, what)? {
                return Ok(());
            }
            // Refused by PUB at its high-water mark: control messages wait for room.
            if Instant::now() >= deadline || gate.give_up(self.last_progress) {
                return Err(StreamError::GaveUp {
                    endpoint: self.config.endpoint.clone(),
                    what,
                });
            }
            std::thread::sleep(CONTROL_RETRY);
        }
    }

    /// Sends one image message per frame of the batch, with its ROI values from `rois` (the
    /// sums `[frame][roi][chan]`; empty without ROIs).
    pub fn send_frames(
        &mut self,
        mca: &[u32],
        scalers: &[u32],
        rois: &[u64],
        meta: &[FrameMeta],
        gate: &SendGate,
    ) -> Result<(), PartialSend> {
        if self.karabo.is_some() {
            return self.send_frames_as_trains(mca, scalers, rois, meta, gate);
        }
        let (mw, sw) = (self.geometry.mca_words(), self.geometry.scaler_words());
        let rw = self.rois.len() * self.geometry.n_channels();
        let shape = [
            self.geometry.n_channels() as u32,
            self.geometry.n_bins() as u32,
        ];
        for (i, m) in meta.iter().enumerate() {
            let header = ImageHeader {
                htype: "image".into(),
                frame: m.frame_number,
                msg_number: self.msg_number,
                shape,
                scaler_shape: [shape[0], 9],
                dtype: "uint32".into(),
                compression: "none".into(),
                exptime: self.exptime,
                timestamp_ns: m.timestamp_ns,
                flags: m.flags,
                rois: self.roi_values(
                    rois.get(i * rw..(i + 1) * rw).unwrap_or_default(),
                    &scalers[i * sw..(i + 1) * sw],
                ),
            };
            self.json.clear();
            // Serialising a struct of numbers and fixed strings into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut self.json, &header);
            let json = std::mem::take(&mut self.json);
            let parts: [&[u8]; 3] = [
                &json,
                bytemuck::cast_slice(&mca[i * mw..(i + 1) * mw]),
                bytemuck::cast_slice(&scalers[i * sw..(i + 1) * sw]),
            ];
            let result = self.send_parts(&parts, gate, "send image");
            self.json = json;
            match result {
                Ok(true) => {
                    self.sent += 1;
                    if let Some(ack) = &mut self.ack {
                        ack.record_sent(self.msg_number, m.frame_number);
                    }
                }
                Ok(false) => self.drops += 1,
                // The message number stays unused: a receiver sees a gap only for frames that
                // were refused, and `series_end` lists the rest as unsent.
                Err(error) => return Err(PartialSend { done: i, error }),
            }
            self.msg_number += 1;
        }
        if let Some(ack) = &mut self.ack {
            ack.service(self.msg_number).map_err(|error| PartialSend {
                done: meta.len(),
                error,
            })?;
        }
        Ok(())
    }

    /// Karabo Bridge format: adds each frame to its train and sends every train that is complete
    /// (or left behind by a frame of a later train).
    fn send_frames_as_trains(
        &mut self,
        mca: &[u32],
        scalers: &[u32],
        rois: &[u64],
        meta: &[FrameMeta],
        gate: &SendGate,
    ) -> Result<(), PartialSend> {
        let (mw, sw) = (self.geometry.mca_words(), self.geometry.scaler_words());
        let rw = self.rois.len() * self.geometry.n_channels();
        for (i, m) in meta.iter().enumerate() {
            let Some(k) = &self.karabo else {
                return Ok(());
            };
            let train = k.train_of(m.frame_number);
            if k.frames > 0 && k.train_id != train {
                self.send_train(gate)
                    .map_err(|error| PartialSend { done: i, error })?;
            }
            let (frame_mca, frame_scalers) =
                (&mca[i * mw..(i + 1) * mw], &scalers[i * sw..(i + 1) * sw]);
            let values = self.roi_values(
                rois.get(i * rw..(i + 1) * rw).unwrap_or_default(),
                frame_scalers,
            );
            let Some(k) = &mut self.karabo else {
                return Ok(());
            };
            k.add(
                train,
                m,
                frame_mca,
                frame_scalers,
                &self.event_widths,
                values,
            );
            if k.frames >= k.config.frames_per_train {
                self.send_train(gate)
                    .map_err(|error| PartialSend { done: i + 1, error })?;
            }
        }
        Ok(())
    }

    /// Sends the train being filled, if it has frames; its frames count as sent, or as dropped
    /// when PUB refuses it.
    fn send_train(&mut self, gate: &SendGate) -> Result<(), StreamError> {
        let Some(k) = &mut self.karabo else {
            return Ok(());
        };
        let frames = k.frames;
        let Some(train) = k.take(self.geometry) else {
            return Ok(());
        };
        // A train of numbers and arrays has nothing msgpack cannot pack.
        let parts = karabo_bridge::protocol::encode_v2(train, None).unwrap_or_default();
        let slices: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
        if slices.is_empty() {
            return Ok(());
        }
        if self.send_parts(&slices, gate, "send train")? {
            self.sent += frames;
        } else {
            self.drops += frames;
        }
        self.msg_number += frames;
        Ok(())
    }

    /// Sends every frame's values of `rois` (their sums come with the frames, dead-time
    /// corrected with `event_widths`) in its image header.
    pub fn with_rois(mut self, rois: Vec<Roi>, event_widths: Vec<u32>) -> Self {
        self.rois = rois;
        self.event_widths = event_widths;
        self
    }

    /// The ROI values of one frame from its sums `[roi][chan]`; empty without ROIs.
    fn roi_values(&self, sums: &[u64], scalers: &[u32]) -> Vec<RoiValues> {
        if self.rois.is_empty() {
            return Vec::new();
        }
        roi::frame_values(&self.rois, &self.event_widths, sums, scalers)
    }

    /// Sends a multipart message. `Ok(false)`: a PUB socket refused it at its high-water mark.
    fn send_parts(
        &mut self,
        parts: &[&[u8]],
        gate: &SendGate,
        what: &'static str,
    ) -> Result<bool, StreamError> {
        let last = parts.len() - 1;
        for (i, part) in parts.iter().enumerate() {
            let more = if i < last { zmq::SNDMORE } else { 0 };
            loop {
                let flags = match self.config.kind {
                    StreamKind::Pub => more | zmq::DONTWAIT,
                    StreamKind::Push => more,
                };
                match self.socket.send(*part, flags) {
                    Ok(()) => break,
                    // PUB at its high-water mark refuses whole messages (at the first part).
                    Err(zmq::Error::EAGAIN) if self.config.kind == StreamKind::Pub && i == 0 => {
                        return Ok(false)
                    }
                    // PUSH waits for a receiver, in slices so a stop can interrupt it and
                    // receivers joining meanwhile get their header.
                    Err(zmq::Error::EAGAIN) if self.config.kind == StreamKind::Push => {
                        if let Some(ack) = &mut self.ack {
                            ack.service(self.msg_number)?;
                        }
                        if gate.give_up(self.last_progress) {
                            return Err(StreamError::GaveUp {
                                endpoint: self.config.endpoint.clone(),
                                what,
                            });
                        }
                    }
                    Err(e) => return Err(self.zmq_err(what)(e)),
                }
            }
        }
        self.last_progress = Instant::now();
        Ok(true)
    }
}

/// Sets `ZMQ_XPUB_NODROP` (which `zmq` does not wrap): a PUB socket at its high-water mark then
/// refuses a message with EAGAIN instead of dropping it silently, so the drop can be counted.
fn refuse_at_high_water_mark(socket: &mut zmq::Socket) -> Result<(), zmq::Error> {
    let on: i32 = 1;
    // SAFETY: `as_mut_ptr` is the live libzmq socket owned by `socket` (borrowed mutably for the
    // call); the option value is a 4-byte int read only during the call, as libzmq documents.
    let rc = unsafe {
        zmq_sys::zmq_setsockopt(
            socket.as_mut_ptr(),
            zmq_sys::ZMQ_XPUB_NODROP as i32,
            (&on as *const i32).cast(),
            std::mem::size_of::<i32>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        // SAFETY: zmq_errno only reads libzmq's thread-local error number.
        Err(zmq::Error::from_raw(unsafe { zmq_sys::zmq_errno() }))
    }
}

/// The source's keys (those of `xfel-write xspress3`'s `<device>:daqOutput`): `data.spectra`
/// (u32, channels x bins), the nine scalers (u32 per channel, by name),
/// `data.dead_time_correction` (f64, NaN where saturated), `data.dead_time_saturated` (u8),
/// `data.frame_number` and `data.timestamp` (u64, ns), `data.roi_NAME` (u64) and
/// `data.roi_NAME_dtc` (f64) per channel. With one frame in a train the values are those of the
/// frame; with more, each gets a leading frame axis (as EXtra-data sends instrument data).
pub struct KaraboTrains {
    config: KaraboConfig,
    train_id: u64,
    /// Frames in the train being filled.
    frames: u64,
    first_timestamp_ns: u64,
    spectra: Vec<u8>,
    scalers: [Vec<u8>; N_SCALERS],
    dtc: Vec<u8>,
    saturated: Vec<u8>,
    frame_number: Vec<u8>,
    timestamp: Vec<u8>,
    /// Per ROI: name, sums, corrected sums.
    rois: Vec<(String, Vec<u8>, Vec<u8>)>,
}

impl KaraboTrains {
    fn new(config: KaraboConfig) -> Self {
        KaraboTrains {
            config,
            train_id: 0,
            frames: 0,
            first_timestamp_ns: 0,
            spectra: Vec::new(),
            scalers: Default::default(),
            dtc: Vec::new(),
            saturated: Vec::new(),
            frame_number: Vec::new(),
            timestamp: Vec::new(),
            rois: Vec::new(),
        }
    }

    fn train_of(&self, frame_number: u64) -> u64 {
        self.config
            .first_train
            .saturating_add(frame_number / self.config.frames_per_train.max(1))
    }

    fn add(
        &mut self,
        train: u64,
        m: &FrameMeta,
        mca: &[u32],
        scalers: &[u32],
        event_widths: &[u32],
        rois: Vec<RoiValues>,
    ) {
        if self.frames == 0 {
            self.train_id = train;
            self.first_timestamp_ns = m.timestamp_ns;
        }
        self.frames += 1;
        self.spectra.extend_from_slice(bytemuck::cast_slice(mca));
        let nch = scalers.len() / N_SCALERS;
        for chan in 0..nch {
            let Some(sc) = channel_scalers(scalers, chan) else {
                continue;
            };
            for (column, value) in self.scalers.iter_mut().zip(sc) {
                column.extend_from_slice(&value.to_le_bytes());
            }
            let width = event_widths.get(chan).copied().unwrap_or(0);
            let (dtc, saturated) = match dead_time(sc, width) {
                Ok(d) => (d.correction, 0u8),
                Err(_) => (f64::NAN, 1),
            };
            self.dtc.extend_from_slice(&dtc.to_le_bytes());
            self.saturated.push(saturated);
        }
        self.frame_number
            .extend_from_slice(&m.frame_number.to_le_bytes());
        self.timestamp
            .extend_from_slice(&m.timestamp_ns.to_le_bytes());
        if self.rois.len() != rois.len() {
            self.rois = rois
                .iter()
                .map(|r| (r.name.clone(), Vec::new(), Vec::new()))
                .collect();
        }
        for ((_, sums, dtc), r) in self.rois.iter_mut().zip(rois) {
            for c in r.counts {
                sums.extend_from_slice(&c.to_le_bytes());
            }
            for d in r.dtc {
                dtc.extend_from_slice(&d.unwrap_or(f64::NAN).to_le_bytes());
            }
        }
    }

    /// The train filled so far (`None` without frames); starts an empty one.
    fn take(&mut self, geometry: Geometry) -> Option<Train> {
        if self.frames == 0 {
            return None;
        }
        let frames = std::mem::take(&mut self.frames) as usize;
        let nch = geometry.n_channels();
        // EXtra-data drops the entry axis of a train with one entry.
        let shape = |entry: &[usize]| -> Vec<usize> {
            let mut s = if frames == 1 { vec![] } else { vec![frames] };
            s.extend_from_slice(entry);
            s
        };
        let array = |kind, size, entry: &[usize], bytes: &mut Vec<u8>| {
            Entry::Array(Array {
                dtype: Dtype::new(kind, size),
                shape: shape(entry),
                data: Payload::Owned(std::mem::take(bytes)),
            })
        };
        let mut data = vec![(
            "data.spectra".to_string(),
            array(Kind::UInt, 4, &[nch, geometry.n_bins()], &mut self.spectra),
        )];
        for (scaler, column) in Scaler::ALL.iter().zip(self.scalers.iter_mut()) {
            data.push((
                format!("data.{}", scaler.name()),
                array(Kind::UInt, 4, &[nch], column),
            ));
        }
        data.push((
            "data.dead_time_correction".into(),
            array(Kind::Float, 8, &[nch], &mut self.dtc),
        ));
        data.push((
            "data.dead_time_saturated".into(),
            array(Kind::UInt, 1, &[nch], &mut self.saturated),
        ));
        data.push((
            "data.frame_number".into(),
            array(Kind::UInt, 8, &[], &mut self.frame_number),
        ));
        data.push((
            "data.timestamp".into(),
            array(Kind::UInt, 8, &[], &mut self.timestamp),
        ));
        for (name, sums, dtc) in &mut self.rois {
            let n = sums.len() / 8 / frames;
            data.push((format!("data.roi_{name}"), array(Kind::UInt, 8, &[n], sums)));
            data.push((
                format!("data.roi_{name}_dtc"),
                array(Kind::Float, 8, &[n], dtc),
            ));
        }
        data.sort_by(|a, b| a.0.cmp(&b.0));
        // The frame time of the train's first frame, as karabo_bridge's metadata gives it.
        let (sec, ns) = (
            self.first_timestamp_ns / 1_000_000_000,
            self.first_timestamp_ns % 1_000_000_000,
        );
        let source = self.config.source.clone();
        let metadata = vec![
            ("source".to_string(), Value::from(source.as_str())),
            (
                "timestamp".into(),
                Value::F64(self.first_timestamp_ns as f64 / 1e9),
            ),
            ("timestamp.sec".into(), Value::from(sec.to_string())),
            (
                "timestamp.frac".into(),
                Value::from(format!("{ns:09}000000000")),
            ),
            ("timestamp.tid".into(), Value::from(self.train_id)),
        ];
        let mut train = Train::default();
        train.sources.insert(source, SourceTrain { metadata, data });
        Some(train)
    }
}
