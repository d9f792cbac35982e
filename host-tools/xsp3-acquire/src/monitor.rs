//! The live monitor: a REP socket that answers any request with the latest complete frame.
//!
//! It reads the ring as a lossy consumer, so it never slows the acquisition: between requests
//! the producer skips it, and on a request it jumps to the newest frame, copies it into a buffer
//! sized once at start, and releases the slot at once. The reply is two parts: JSON
//! (`htype: "image"`, `frame`, `shape`, `type`, `exptime`, `frames_seen`) and the MCA bytes. Before
//! the first frame the reply is `htype: "none"` with an empty second part.

use std::sync::atomic::{AtomicBool, Ordering};

use acq_core::geometry::Geometry;
use acq_core::ring::Consumer;
use acq_core::wait::Wait;
use serde_json::json;

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
    latest: Vec<u32>,
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
            latest: vec![0; geometry.mca_words()],
            latest_frame: None,
            answered: 0,
        })
    }

    /// Requests answered so far.
    pub fn answered(&self) -> u64 {
        self.answered
    }

    /// Starts an acquisition with `exptime` per frame: no frame of it yet.
    pub fn begin(&mut self, exptime: f64) {
        self.exptime = exptime;
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
            self.latest_frame = Some(grant.meta()[0].frame_number);
            grant.release(1);
        }
    }

    fn reply(&mut self) -> Result<(), MonitorError> {
        let shape = [self.geometry.n_channels(), self.geometry.n_bins()];
        let (header, payload): (_, &[u8]) = match self.latest_frame {
            Some(frame) => (
                json!({
                    "htype": "image",
                    "frame": frame,
                    "shape": shape,
                    "type": "uint32",
                    "exptime": self.exptime,
                }),
                bytemuck::cast_slice(&self.latest),
            ),
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

    fn err(&self, what: &'static str) -> impl FnOnce(zmq::Error) -> MonitorError {
        let endpoint = self.endpoint.clone();
        move |source| MonitorError {
            endpoint,
            what,
            source,
        }
    }
}
