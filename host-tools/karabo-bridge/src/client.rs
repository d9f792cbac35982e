//! The receiving side, as `karabo_bridge.Client`: REQ (sends `next`, once per pending reply),
//! SUB (subscribed to everything) or PULL; high-water mark 1, linger 0. Parts stay ZeroMQ
//! messages: arrays are read in place. Sizes are bounded before anything is allocated: ZeroMQ
//! drops a peer that announces a part larger than `max_part_bytes`, and a message with more
//! than `max_parts` parts is drained and refused.

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

/// A connected client.
pub struct Client {
    config: ClientConfig,
    socket: zmq::Socket,
    /// REQ: a `next` was sent and its reply not received yet.
    pending: bool,
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
        socket.connect(&config.endpoint).map_err(err("connect"))?;
        Ok(Client {
            config,
            socket,
            pending: false,
        })
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
                    return Err(ClientError::Timeout {
                        endpoint: self.config.endpoint.clone(),
                        ms: self.config.timeout_ms.unwrap_or(0),
                    })
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
