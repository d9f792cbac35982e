//! The receiving side, as `karabo_bridge.Client`: REQ (sends `next`, once per pending reply),
//! SUB (subscribed to everything) or PULL; high-water mark 1, linger 0. Parts stay ZeroMQ
//! messages: arrays are read in place. Sizes are bounded before anything is allocated: ZeroMQ
//! drops a peer that announces a part larger than `max_part_bytes`, and a message with more
//! than `max_parts` parts is drained and refused.
//!
//! A REQ client whose server goes away while it waits for a reply would wait for ever, even
//! once a server is back on the endpoint (the request went to the one that died; ZeroMQ
//! reconnects but REQ still waits for that reply, as `karabo_bridge.Client` does). Ours
//! watches its connection (a socket monitor) and asks again on the new connection
//! (`ZMQ_REQ_RELAXED`; `ZMQ_REQ_CORRELATE` drops a late reply to the old request), at the
//! next receive timeout.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::protocol::{decode, DecodeError};
use crate::train::Train;

/// The client's socket type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum ClientSocket {
    /// For a REP server: asks for each train with `next`.
    Req,
    /// For a PUB server.
    Sub,
    /// For a PUSH server.
    Pull,
}

impl ClientSocket {
    /// The client socket matching a server socket type (`REP`, `PUB`, `PUSH`), as
    /// karabo-bridge-glimpse's `-z` maps them.
    #[cfg(feature = "files")]
    pub fn for_server(server: crate::serve::SocketType) -> ClientSocket {
        match server {
            crate::serve::SocketType::Rep => ClientSocket::Req,
            crate::serve::SocketType::Pub => ClientSocket::Sub,
            crate::serve::SocketType::Push => ClientSocket::Pull,
        }
    }
}

/// How to connect.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub endpoint: String,
    pub socket: ClientSocket,
    /// Give up a receive after this many milliseconds (`None`: wait for ever).
    pub timeout_ms: Option<i32>,
    /// Largest message part accepted (ZeroMQ's maximum message size).
    pub max_part_bytes: i64,
    /// Most parts in one train message.
    pub max_parts: usize,
}

impl ClientConfig {
    pub fn new(endpoint: &str, socket: ClientSocket) -> ClientConfig {
        ClientConfig {
            endpoint: endpoint.to_string(),
            socket,
            timeout_ms: None,
            max_part_bytes: 4 << 30,
            max_parts: 1 << 16,
        }
    }
}

/// Why no train came.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bridge socket {endpoint}: {what}: {source}")]
    Zmq {
        endpoint: String,
        what: &'static str,
        #[source]
        source: zmq::Error,
    },
    #[error("no data received from {endpoint} in the last {ms} ms")]
    Timeout { endpoint: String, ms: i32 },
    /// The message arrived but is not a valid train; the client can go on.
    #[error("malformed message ({parts} parts, {bytes} bytes): {error}")]
    Malformed {
        parts: usize,
        bytes: u64,
        error: Box<DecodeError>,
    },
    #[error("malformed message: more than {max} parts")]
    TooManyParts { max: usize },
    /// A signal interrupted the wait (the caller checks its stop flag and calls again).
    #[error("interrupted")]
    Interrupted,
}

/// A train as received.
pub struct Received {
    pub train: Train,
    pub parts: usize,
    pub bytes: u64,
}

/// Numbers the monitor endpoints of the clients of this process.
static MONITORS: AtomicU64 = AtomicU64::new(0);

/// A connected client.
pub struct Client {
    config: ClientConfig,
    socket: zmq::Socket,
    /// REQ: a `next` was sent and its reply not received yet.
    pending: bool,
    /// REQ: the socket's connection events (disconnected, handshake done).
    monitor: Option<zmq::Socket>,
    /// REQ: the connection was lost while `pending`: the request is asked again once a
    /// connection is made.
    lost_while_pending: bool,
    /// REQ: requests sent again after the server went away.
    pub requests_resent: u64,
}

impl Client {
    pub fn connect(ctx: &zmq::Context, config: ClientConfig) -> Result<Client, ClientError> {
        let err = |what: &'static str| {
            let endpoint = config.endpoint.clone();
            move |source| ClientError::Zmq {
                endpoint,
                what,
                source,
            }
        };
        let socket = ctx
            .socket(match config.socket {
                ClientSocket::Req => zmq::REQ,
                ClientSocket::Sub => zmq::SUB,
                ClientSocket::Pull => zmq::PULL,
            })
            .map_err(err("create"))?;
        if config.socket == ClientSocket::Sub {
            socket.set_subscribe(b"").map_err(err("subscribe"))?;
        }
        socket.set_linger(0).map_err(err("set linger"))?;
        socket.set_sndhwm(1).map_err(err("set send HWM"))?;
        socket.set_rcvhwm(1).map_err(err("set receive HWM"))?;
        socket
            .set_maxmsgsize(config.max_part_bytes)
            .map_err(err("set maximum message size"))?;
        if let Some(ms) = config.timeout_ms {
            socket
                .set_rcvtimeo(ms)
                .map_err(err("set receive timeout"))?;
        }
        let monitor = if config.socket == ClientSocket::Req {
            socket
                .set_req_relaxed(true)
                .map_err(err("set REQ relaxed"))?;
            socket
                .set_req_correlate(true)
                .map_err(err("set REQ correlate"))?;
            let at = format!(
                "inproc://karabo-bridge-client-monitor-{}",
                MONITORS.fetch_add(1, Ordering::Relaxed)
            );
            let events = zmq::SocketEvent::DISCONNECTED as i32
                | zmq::SocketEvent::HANDSHAKE_SUCCEEDED as i32;
            socket.monitor(&at, events).map_err(err("monitor"))?;
            let m = ctx.socket(zmq::PAIR).map_err(err("create monitor"))?;
            m.set_linger(0).map_err(err("set linger"))?;
            m.connect(&at).map_err(err("connect monitor"))?;
            Some(m)
        } else {
            None
        };
        socket.connect(&config.endpoint).map_err(err("connect"))?;
        Ok(Client {
            config,
            socket,
            pending: false,
            monitor,
            lost_while_pending: false,
            requests_resent: 0,
        })
    }

    /// REQ: reads the connection events so far; with `pending`, a connection made after one
    /// lost sends the request again. Returns whether it did.
    fn ask_again_if_reconnected(&mut self) -> Result<bool, ClientError> {
        let Some(monitor) = &self.monitor else {
            return Ok(false);
        };
        let mut resend = false;
        loop {
            let event = match monitor.recv_multipart(zmq::DONTWAIT) {
                Ok(parts) => parts,
                Err(zmq::Error::EAGAIN) => break,
                Err(e) => return Err(self.zmq_err("monitor")(e)),
            };
            // Frame 1: event number (u16, native order) and value (u32).
            let Some(&[a, b]) = event.first().and_then(|f| f.get(..2)) else {
                continue;
            };
            match zmq::SocketEvent::from_raw(u16::from_ne_bytes([a, b])) {
                zmq::SocketEvent::DISCONNECTED => self.lost_while_pending = self.pending,
                zmq::SocketEvent::HANDSHAKE_SUCCEEDED if self.lost_while_pending => {
                    self.lost_while_pending = false;
                    resend = true;
                }
                _ => {}
            }
        }
        if resend {
            self.socket
                .send("next", 0)
                .map_err(self.zmq_err("send request"))?;
            self.requests_resent += 1;
        }
        Ok(resend)
    }

    fn zmq_err(&self, what: &'static str) -> impl FnOnce(zmq::Error) -> ClientError {
        let endpoint = self.config.endpoint.clone();
        move |source| ClientError::Zmq {
            endpoint,
            what,
            source,
        }
    }

    /// Receives the next train's raw parts.
    pub fn next_parts(&mut self) -> Result<Vec<zmq::Message>, ClientError> {
        if self.config.socket == ClientSocket::Req && !self.pending {
            // Connection events before this request do not concern it (ZeroMQ sends it on
            // whatever connection comes next).
            self.ask_again_if_reconnected()?;
            self.lost_while_pending = false;
            self.socket
                .send("next", 0)
                .map_err(self.zmq_err("send request"))?;
            self.pending = true;
        }
        let mut parts = Vec::new();
        let mut too_many = false;
        loop {
            let mut msg = zmq::Message::new();
            match self.socket.recv(&mut msg, 0) {
                Ok(()) => {}
                Err(zmq::Error::EAGAIN) if parts.is_empty() => {
                    self.ask_again_if_reconnected()?;
                    return Err(ClientError::Timeout {
                        endpoint: self.config.endpoint.clone(),
                        ms: self.config.timeout_ms.unwrap_or(0),
                    });
                }
                Err(zmq::Error::EINTR) if parts.is_empty() => return Err(ClientError::Interrupted),
                // The rest of a message is already queued: retry an interrupted receive.
                Err(zmq::Error::EINTR) | Err(zmq::Error::EAGAIN) => continue,
                Err(e) => return Err(self.zmq_err("receive")(e)),
            }
            let more = msg.get_more();
            if parts.len() < self.config.max_parts {
                parts.push(msg);
            } else {
                too_many = true;
            }
            if !more {
                break;
            }
        }
        self.pending = false;
        if too_many {
            return Err(ClientError::TooManyParts {
                max: self.config.max_parts,
            });
        }
        Ok(parts)
    }

    /// Receives and decodes the next train.
    pub fn next_train(&mut self) -> Result<Received, ClientError> {
        let parts = self.next_parts()?;
        let n = parts.len();
        let bytes = parts.iter().map(|p| p.len() as u64).sum();
        match decode(parts) {
            Ok(train) => Ok(Received {
                train,
                parts: n,
                bytes,
            }),
            Err(error) => Err(ClientError::Malformed {
                parts: n,
                bytes,
                error: Box::new(error),
            }),
        }
    }
}
