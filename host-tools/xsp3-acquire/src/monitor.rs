//! The live monitor: a REP socket that answers any request with the latest complete frame.
//!
//! It reads the ring as a lossy consumer, so it never slows the acquisition: between requests
//! the producer skips it, and on a request it jumps to the newest frame, copies it into a buffer
//! sized once per acquisition, and releases the slot at once. The reply is two parts: JSON
//! (`htype: "image"`, `frame`, `shape`, `type`, `exptime`, and beyond MAX IV's fields the frame's
//! `scalers`, `dead_time_correction` and, with software ROIs, `rois`) and the MCA bytes. Before
//! the first frame the reply is `htype: "none"` with an empty second part.
//!
//! Everything beyond the copy (dead-time correction, ROI sums, JSON) is done per request, on the
//! monitor's own thread: however fast frames come, the monitor's cost follows its clients' rate.

use std::sync::atomic::{AtomicBool, Ordering};

use acq_core::deadtime::{channel_scalers, dead_time};
use acq_core::geometry::{Geometry, N_SCALERS};
use acq_core::ring::Consumer;
use acq_core::wait::Wait;
use serde_json::{json, Value};
use xspress3::roi::{frame_values, Roi};
use xspress3::AcqDescription;

#[derive(Debug, thiserror::Error)]
#[error("monitor socket {endpoint}: {what}: {source}")]
pub struct MonitorError {
    pub endpoint: String,
    pub what: &'static str,
    #[source]
    pub source: zmq::Error,
}

/// Polling period of the REP socket: how quickly the monitor notices the session's end.
const POLL_MS: i64 = 50;

pub struct Monitor {
    socket: zmq::Socket,
    endpoint: String,
    geometry: Geometry,
    exptime: f64,
    /// What the dead-time correction and the ROI sums of the acquisition need.
    event_widths: Vec<u32>,
    rois: Vec<Roi>,
    /// The latest frame's ROI sums `[roi][chan]`, taken from its ring slot.
    latest_rois: Vec<u64>,
    latest: Vec<u32>,
    latest_scalers: Vec<u32>,
    latest_frame: Option<u64>,
    answered: u64,
}

impl Monitor {
    pub fn bind(
        ctx: &zmq::Context,
        endpoint: &str,
        geometry: Geometry,
        exptime: f64,
    ) -> Result<Self, MonitorError> {
        let err = |what| {
            let endpoint = endpoint.to_string();
            move |source| MonitorError {
                endpoint,
                what,
                source,
            }
        };
        let socket = ctx.socket(zmq::REP).map_err(err("create"))?;
        socket.set_linger(0).map_err(err("set linger"))?;
        socket.bind(endpoint).map_err(err("bind"))?;
        Ok(Monitor {
            socket,
            endpoint: endpoint.to_string(),
            geometry,
            exptime,
            event_widths: Vec::new(),
            rois: Vec::new(),
            latest_rois: Vec::new(),
            latest: vec![0; geometry.mca_words()],
            latest_scalers: vec![0; geometry.scaler_words()],
            latest_frame: None,
            answered: 0,
        })
    }

    /// Requests answered so far.
    pub fn answered(&self) -> u64 {
        self.answered
    }

    /// Starts the acquisition `desc`: no frame of it yet. Its geometry may differ from the
    /// last one (`bins`, `rebin`), so the buffers are sized here, before the detector is armed.
    pub fn begin(&mut self, desc: &AcqDescription) {
        self.exptime = desc.params.exposure_ticks as f64 / desc.clock_hz;
        if desc.geometry != self.geometry {
            self.geometry = desc.geometry;
            self.latest = vec![0; desc.geometry.mca_words()];
            self.latest_scalers = vec![0; desc.geometry.scaler_words()];
        }
        self.event_widths.clone_from(&desc.event_widths);
        self.rois.clone_from(&desc.rois);
        self.latest_rois = vec![0; desc.rois.len() * desc.geometry.n_channels()];
        self.latest_frame = None;
        self.answered = 0;
    }

    /// Between acquisitions: answers a waiting request, if any, with the last frame seen (or
    /// `htype: "none"`), without waiting. True when one was answered.
    pub fn answer_waiting(&mut self) -> Result<bool, MonitorError> {
        if self.socket.poll(zmq::POLLIN, 0).map_err(self.err("poll"))? == 0 {
            return Ok(false);
        }
        self.socket.recv_multipart(0).map_err(self.err("receive"))?;
        self.reply()?;
        Ok(true)
    }

    /// The socket, for a caller that polls it with others.
    pub fn socket(&self) -> &zmq::Socket {
        &self.socket
    }

    /// Serves requests until `done` is set.
    pub fn serve<W: Wait, const C: usize>(
        &mut self,
        consumer: &mut Consumer<'_, '_, W, C>,
        done: &AtomicBool,
    ) -> Result<(), MonitorError> {
        while !done.load(Ordering::Relaxed) {
            let ready = self
                .socket
                .poll(zmq::POLLIN, POLL_MS)
                .map_err(self.err("poll"))?;
            if ready == 0 {
                continue;
            }
            // Any request is accepted; its content does not matter.
            self.socket.recv_multipart(0).map_err(self.err("receive"))?;
            self.refresh(consumer);
            self.reply()?;
        }
        // The last frame stays on show between acquisitions.
        self.refresh(consumer);
        Ok(())
    }

    fn refresh<W: Wait, const C: usize>(&mut self, consumer: &mut Consumer<'_, '_, W, C>) {
        consumer.skip_to_latest(1);
        if let Some(grant) = consumer.read(1) {
            self.latest.copy_from_slice(grant.mca());
            self.latest_scalers.copy_from_slice(grant.scalers());
            let rois = grant.rois();
            // The slot holds as many sums as this acquisition's ROIs (none without ROIs).
            if rois.len() == self.latest_rois.len() {
                self.latest_rois.copy_from_slice(rois);
            }
            self.latest_frame = Some(grant.meta()[0].frame_number);
            grant.release(1);
        }
    }

    fn reply(&mut self) -> Result<(), MonitorError> {
        let (header, payload): (_, &[u8]) = match self.latest_frame {
            Some(frame) => (self.image_header(frame), bytemuck::cast_slice(&self.latest)),
            None => (
                json!({"htype": "none", "shape": [0, 0], "type": "uint32"}),
                &[],
            ),
        };
        let header = header.to_string();
        self.socket
            .send(header.as_bytes(), zmq::SNDMORE)
            .map_err(self.err("send"))?;
        self.socket.send(payload, 0).map_err(self.err("send"))?;
        self.answered += 1;
        Ok(())
    }

    /// The header of the latest frame: MAX IV's fields, then its scalers `[chan][scaler]`, the
    /// dead-time correction per channel (null where saturated) and the ROI values.
    fn image_header(&self, frame: u64) -> Value {
        let channels = self.geometry.n_channels();
        let scalers: Vec<&[u32]> = self.latest_scalers.chunks_exact(N_SCALERS).collect();
        let correction: Vec<Option<f64>> = (0..channels)
            .map(|chan| {
                let sc = channel_scalers(&self.latest_scalers, chan)?;
                let width = *self.event_widths.get(chan)?;
                dead_time(sc, width).ok().map(|d| d.correction)
            })
            .collect();
        let mut header = json!({
            "htype": "image",
            "frame": frame,
            "shape": [channels, self.geometry.n_bins()],
            "type": "uint32",
            "exptime": self.exptime,
            "scalers": scalers,
            "dead_time_correction": correction,
        });
        if !self.rois.is_empty() {
            header["rois"] = json!(frame_values(
                &self.rois,
                &self.event_widths,
                &self.latest_rois,
                &self.latest_scalers,
            ));
        }
        header
    }

    fn err(&self, what: &'static str) -> impl FnOnce(zmq::Error) -> MonitorError {
        let endpoint = self.endpoint.clone();
        move |source| MonitorError {
            endpoint,
            what,
            source,
        }
    }
}
