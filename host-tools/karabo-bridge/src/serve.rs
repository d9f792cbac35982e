//! The bridge server: one ZeroMQ socket (REP, PUB or PUSH) bound like karabo_bridge's `Sender`
//! (send and receive high-water mark 1, linger 0 while serving, then unlimited so the last
//! trains queued are delivered), fed by a reader thread that encodes the next train while this
//! one is sent. Small trains travel from the reader to the sender in batches: one thread
//! hand-off per train cost more than reading and encoding a control train (profiled: a third
//! of the server's time in context switches).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::files::{FileTrains, OmittedKey, ReadError};
use crate::protocol::{encode, EncodeError, Protocol, Timestamp};

/// How long one wait (on the socket, or for the rate limit) lasts before the stop flag is
/// checked again.
const POLL_SLICE: Duration = Duration::from_millis(100);
/// How long the REP sender keeps asking for the next request (the PUSH sender for room for
/// the next train) without sleeping after a small train. A request answered within this time finds the sender awake: a sleeping sender costs
/// a round trip two thread wake-ups, each from an idle CPU on a VM (profiled: as long as the
/// server's own work per control train). Longer than one round trip of a Python client (about
/// 100-150 us).
const REQUEST_SPIN: Duration = Duration::from_micros(300);
/// Replies of at least this size are not followed by the spin: their round trip is long
/// enough that the wake-ups hardly count, and the CPU is wanted by ZeroMQ's I/O thread sending
/// them and by the reader (measured: spinning after 4 MB trains lost a quarter of the rate).
const SPIN_BELOW_BYTES: u64 = 256 << 10;
/// Largest request a REP server reads.
const MAX_REQUEST_BYTES: i64 = 64 << 10;
/// Batches of encoded trains waiting to be sent while the next batch is read.
const READ_AHEAD: usize = 1;
/// A batch ends at this many trains or once it holds this many bytes (so one large train is a
/// batch of its own); without a rate limit or dummy timestamps only, which both want each train
/// encoded just before it is sent.
const BATCH_TRAINS: usize = 64;
const BATCH_BYTES: u64 = 1 << 20;

/// The server's socket type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum SocketType {
    /// Answers each `next` request with one train (the default).
    Rep,
    /// Sends to every subscriber; a slow one loses trains (high-water mark 1).
    Pub,
    /// Sends to one puller at a time, waiting for one.
    Push,
}

/// Where and how to serve.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// A ZeroMQ endpoint to bind, e.g. `tcp://127.0.0.1:4545`.
    pub endpoint: String,
    pub socket: SocketType,
    pub protocol: Protocol,
    pub dummy_timestamps: bool,
    /// At most this many trains per second.
    pub rate: Option<f64>,
    /// Start over after the last train.
    pub repeat: bool,
}

/// The endpoint for a port number (loopback, or every interface with `bind_all`) or an
/// endpoint given as is. EXtra-data binds every interface for a bare port.
pub fn endpoint_for(port_or_endpoint: &str, bind_all: bool) -> String {
    if !port_or_endpoint.is_empty() && port_or_endpoint.bytes().all(|b| b.is_ascii_digit()) {
        let host = if bind_all { "*" } else { "127.0.0.1" };
        format!("tcp://{host}:{port_or_endpoint}")
    } else {
        port_or_endpoint.to_string()
    }
}

/// Why serving failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("bridge socket {endpoint}: {what}: {source}")]
    Zmq {
        endpoint: String,
        what: &'static str,
        #[source]
        source: zmq::Error,
    },
    #[error("cannot start the reader thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("the reader thread panicked")]
    ReaderPanicked,
}

/// A train the server could not send, and why.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("train {train_id}: {source}")]
    Read {
        train_id: u64,
        #[source]
        source: ReadError,
    },
    #[error("train {train_id}: {source}")]
    Encode {
        train_id: u64,
        #[source]
        source: EncodeError,
    },
}

/// Progress while serving.
pub enum ServeEvent<'a> {
    /// The socket is bound; the endpoint it reports (with the port picked for port 0).
    Bound(&'a str),
    Sent {
        count: u64,
        train_id: u64,
    },
    /// A train was skipped.
    Skipped(&'a TrainError),
    /// A train was sent without a key that could not be read for it; `first`: the first time
    /// this key of this source was left out.
    KeyOmitted {
        train_id: u64,
        omitted: &'a OmittedKey,
        first: bool,
    },
    /// A request other than `next` was answered with an error.
    BadRequest(&'a [u8]),
}

/// What the server did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ServeSummary {
    pub endpoint: String,
    pub trains_sent: u64,
    pub bytes_sent: u64,
    pub first_train: Option<u64>,
    pub last_train: Option<u64>,
    /// Trains that could not be read or encoded (each reported).
    pub trains_skipped: u64,
    /// Their train IDs.
    pub skipped_train_ranges: TrainRanges,
    /// Trains sent without some of their keys (keys that could not be read for them).
    pub trains_incomplete: u64,
    /// Each key left out of some trains, in the order first seen.
    pub keys_omitted: Vec<KeyOmitted>,
    /// Files of the data that could not be opened and were left out (filled in by the caller,
    /// which opens the data; each reported).
    pub files_skipped: u64,
    pub bad_requests: u64,
    /// PUSH: receivers that disconnected while serving. What was queued to one (in ZeroMQ's
    /// and the kernel's buffers, up to several MB) went with it: those trains are lost, and
    /// the server cannot tell how many.
    pub receivers_disconnected: u64,
    /// The last train ID sent when each disconnection was seen (the first 100).
    pub disconnected_after_train: Vec<Option<u64>>,
    pub elapsed_s: f64,
    /// The stop flag ended serving before the last train, or while the last trains were
    /// being delivered.
    pub stopped: bool,
    /// The stop flag came while trains already sent were still queued for a peer that did not
    /// take them: those may not have been delivered (see [`deliver`]).
    pub delivery_interrupted: bool,
}

impl ServeSummary {
    pub fn trains_per_s(&self) -> f64 {
        self.trains_sent as f64 / self.elapsed_s.max(1e-9)
    }

    /// Whether anything of the data was left out (a train, a key of a train, a file).
    pub fn incomplete(&self) -> bool {
        self.trains_skipped > 0 || self.trains_incomplete > 0 || self.files_skipped > 0
    }

    /// Counts `omitted` for train `train_id` (sent); true if this key was not left out before.
    fn omit(&mut self, train_id: u64, omitted: &OmittedKey) -> bool {
        let known = self
            .keys_omitted
            .iter_mut()
            .find(|k| k.source == omitted.source && k.key == omitted.key);
        match known {
            Some(k) => {
                k.train_ranges.insert(train_id);
                false
            }
            None => {
                let mut train_ranges = TrainRanges::default();
                train_ranges.insert(train_id);
                self.keys_omitted.push(KeyOmitted {
                    source: omitted.source.clone(),
                    key: omitted.key.clone(),
                    train_ranges,
                    file: omitted.file.clone(),
                    first_error: omitted.error.to_string(),
                });
                true
            }
        }
    }
}

/// A key of a source left out of the trains it could not be read for.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KeyOmitted {
    pub source: String,
    pub key: String,
    pub train_ranges: TrainRanges,
    /// The file of the first train it was left out of, and why.
    pub file: Option<std::path::PathBuf>,
    pub first_error: String,
}

/// A set of train IDs as sorted, disjoint inclusive ranges `[first, last]` (bounded by the
/// runs of consecutive IDs, not by the number of trains; a train counted twice, as with
/// `--loop`, is counted once).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct TrainRanges(Vec<[u64; 2]>);

impl TrainRanges {
    pub fn insert(&mut self, tid: u64) {
        // The first range that ends at or after tid - 1 (could take tid at its end).
        let i = self.0.partition_point(|r| r[1].saturating_add(1) < tid);
        match self.0.get(i).copied() {
            Some([a, b]) if a <= tid && tid <= b => {}
            Some([a, b]) if b.saturating_add(1) == tid => {
                self.0[i] = [a, tid];
                // It may now touch the next range.
                if let Some(&[c, d]) = self.0.get(i + 1) {
                    if c == tid.saturating_add(1) {
                        self.0[i] = [a, d];
                        self.0.remove(i + 1);
                    }
                }
            }
            Some([a, b]) if a == tid.saturating_add(1) => self.0[i] = [tid, b],
            _ => self.0.insert(i, [tid, tid]),
        }
    }

    /// The train IDs of `self` that are not in `other`.
    pub fn without(&self, other: &TrainRanges) -> TrainRanges {
        let mut out = Vec::new();
        for &[a, b] in &self.0 {
            // The first ID of [a, b] not yet handled (None: all of it).
            let mut from = Some(a);
            for &[c, d] in &other.0 {
                let Some(start) = from else { break };
                if d < start || c > b {
                    continue;
                }
                if c > start {
                    out.push([start, c - 1]);
                }
                from = d.checked_add(1).filter(|&n| n <= b);
            }
            if let Some(start) = from {
                out.push([start, b]);
            }
        }
        TrainRanges(out)
    }

    /// How many train IDs.
    pub fn trains(&self) -> u64 {
        self.0.iter().map(|[a, b]| b - a + 1).sum()
    }

    pub fn ranges(&self) -> &[[u64; 2]] {
        &self.0
    }
}

impl std::fmt::Display for TrainRanges {
    /// `10100-10399, 10500`; more than 8 ranges end in `... (N ranges)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 8;
        for (i, [a, b]) in self.0.iter().take(SHOWN).enumerate() {
            let sep = if i > 0 { ", " } else { "" };
            if a == b {
                write!(f, "{sep}{a}")?;
            } else {
                write!(f, "{sep}{a}-{b}")?;
            }
        }
        if self.0.len() > SHOWN {
            write!(f, ", ... ({} ranges)", self.0.len())?;
        }
        Ok(())
    }
}

/// Disconnections listed in [`ServeSummary::disconnected_after_train`].
const MAX_DISCONNECTS_LISTED: usize = 100;

/// Numbers the monitor endpoints of the servers of this process.
static MONITORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// PUSH: a socket receiving `socket`'s disconnection events.
fn watch_disconnects(
    ctx: &zmq::Context,
    socket: &zmq::Socket,
    ep: &str,
) -> Result<zmq::Socket, ServeError> {
    let at = format!(
        "inproc://xfel-serve-monitor-{}",
        MONITORS.fetch_add(1, Ordering::Relaxed)
    );
    socket
        .monitor(&at, zmq::SocketEvent::DISCONNECTED as i32)
        .map_err(zmq_err(ep, "monitor"))?;
    let events = ctx
        .socket(zmq::PAIR)
        .map_err(zmq_err(ep, "create monitor"))?;
    events.set_linger(0).map_err(zmq_err(ep, "set linger"))?;
    events
        .connect(&at)
        .map_err(zmq_err(ep, "connect monitor"))?;
    Ok(events)
}

/// Counts the disconnections `events` reported since the last call.
fn count_disconnects(events: &zmq::Socket, summary: &mut ServeSummary) {
    // Every event is a disconnection (the only one watched): two frames each.
    while let Ok(event) = events.recv_multipart(zmq::DONTWAIT) {
        if event.len() != 2 {
            continue;
        }
        summary.receivers_disconnected += 1;
        if summary.disconnected_after_train.len() < MAX_DISCONNECTS_LISTED {
            summary.disconnected_after_train.push(summary.last_train);
        }
    }
}

/// An encoded train from the reader thread, with the keys left out of it.
type Encoded = Result<(u64, Vec<zmq::Message>, Vec<OmittedKey>), TrainError>;

fn zmq_err<'a>(
    endpoint: &'a str,
    what: &'static str,
) -> impl FnOnce(zmq::Error) -> ServeError + 'a {
    move |source| ServeError::Zmq {
        endpoint: endpoint.to_string(),
        what,
        source,
    }
}

/// Binds the socket as karabo_bridge's `Sender` does.
fn bind(ctx: &zmq::Context, config: &ServeConfig) -> Result<zmq::Socket, ServeError> {
    let ep = config.endpoint.as_str();
    let socket = ctx
        .socket(match config.socket {
            SocketType::Rep => zmq::REP,
            SocketType::Pub => zmq::PUB,
            SocketType::Push => zmq::PUSH,
        })
        .map_err(zmq_err(ep, "create"))?;
    socket.set_linger(0).map_err(zmq_err(ep, "set linger"))?;
    // REP drops a reply silently when its peer's pipe counts as full, and at high request
    // rates libzmq's count of a high-water mark of 1 can still include the reply before: the
    // client then waits for ever (seen at several thousand trains/s). Request and reply
    // alternate, so REP never queues more than one reply per client anyway.
    let send_hwm = if config.socket == SocketType::Rep {
        0
    } else {
        1
    };
    socket
        .set_sndhwm(send_hwm)
        .map_err(zmq_err(ep, "set send HWM"))?;
    socket
        .set_rcvhwm(1)
        .map_err(zmq_err(ep, "set receive HWM"))?;
    if config.socket == SocketType::Rep {
        // Requests are `next`: a peer announcing a larger one is disconnected by ZeroMQ
        // before it is read (a bad request is echoed in the error reply).
        socket
            .set_maxmsgsize(MAX_REQUEST_BYTES)
            .map_err(zmq_err(ep, "set maximum message size"))?;
    }
    socket.bind(ep).map_err(zmq_err(ep, "bind"))?;
    Ok(socket)
}

/// Serves every train of `trains` (again and again with `repeat`) until the end or until `stop`
/// is set. Returns what was done; a train that cannot be read is reported and skipped. The last
/// trains may still be queued when it returns: [`deliver`] then waits for them.
pub fn serve(
    ctx: &zmq::Context,
    trains: FileTrains,
    config: &ServeConfig,
    stop: &AtomicBool,
    events: &mut dyn FnMut(ServeEvent<'_>),
) -> Result<ServeSummary, ServeError> {
    let socket = bind(ctx, config)?;
    let endpoint = socket
        .get_last_endpoint()
        .map_err(zmq_err(&config.endpoint, "get endpoint"))?
        .unwrap_or_else(|raw| String::from_utf8_lossy(&raw).into_owned());
    events(ServeEvent::Bound(&endpoint));
    let mut summary = ServeSummary {
        endpoint,
        ..ServeSummary::default()
    };
    let started = Instant::now();
    let (tx, rx) = mpsc::sync_channel::<Vec<Encoded>>(READ_AHEAD);
    let protocol = config.protocol;
    let dummy = config.dummy_timestamps;
    let batch_trains = if dummy || config.rate.is_some() {
        1
    } else {
        BATCH_TRAINS
    };
    let repeat = config.repeat;
    let reader_stop_flag = AtomicBool::new(false);
    let reader_stop = &reader_stop_flag;
    let result = std::thread::scope(|scope| {
        // The reader owns the sending end: when it ends, the sender sees the end of the trains.
        let reader = std::thread::Builder::new()
            .name("xfel-serve reader".into())
            .spawn_scoped(scope, move || loop {
                // A pass that has no train to send ends --loop too: starting over would only
                // skip the same trains again, for ever.
                let mut any_sendable = false;
                let mut batch = Vec::new();
                let mut batch_bytes = 0u64;
                trains.for_each(&mut |train_id, train| {
                    let encoded = train
                        .map_err(|source| TrainError::Read { train_id, source })
                        .and_then(|read| {
                            let ts = dummy.then(Timestamp::now);
                            encode(read.train, protocol, ts.as_ref())
                                .map_err(|source| TrainError::Encode { train_id, source })
                                .map(|parts| (train_id, parts, read.omitted))
                        });
                    if let Ok((_, parts, _)) = &encoded {
                        any_sendable = true;
                        batch_bytes += parts.iter().map(|p| p.len() as u64).sum::<u64>();
                    }
                    batch.push(encoded);
                    if batch.len() < batch_trains && batch_bytes < BATCH_BYTES {
                        return true;
                    }
                    batch_bytes = 0;
                    tx.send(std::mem::take(&mut batch)).is_ok()
                        && !reader_stop.load(Ordering::Relaxed)
                });
                let ended = !repeat || !any_sendable || reader_stop.load(Ordering::Relaxed);
                if (!batch.is_empty() && tx.send(batch).is_err()) || ended {
                    break;
                }
            })
            .map_err(ServeError::Thread)?;
        let disconnects = match config.socket {
            SocketType::Push => Some(watch_disconnects(ctx, &socket, &config.endpoint)?),
            _ => None,
        };
        let sent = send_all(
            &socket,
            config,
            &rx,
            stop,
            &mut summary,
            events,
            disconnects.as_ref(),
        );
        if let Some(d) = &disconnects {
            count_disconnects(d, &mut summary);
        }
        // Unblock and end the reader whatever happened to the sender.
        reader_stop.store(true, Ordering::Relaxed);
        drop(rx);
        let joined = reader.join().map_err(|_| ServeError::ReaderPanicked);
        sent.and(joined)
    });
    summary.elapsed_s = started.elapsed().as_secs_f64();
    result?;
    if !summary.stopped {
        // Everything was queued: wait for ZeroMQ to deliver it before the socket closes.
        socket
            .set_linger(-1)
            .map_err(zmq_err(&config.endpoint, "set linger"))?;
    }
    Ok(summary)
}

/// Ends `ctx` once ZeroMQ has delivered what its closed sockets still hold (the last trains,
/// queued with an unlimited linger) or once `stop` is set, whichever comes first. Returns false
/// if `stop` cut the delivery short. A peer that takes no more (a stopped process, a full
/// receive queue) holds the context's end for ever: its wait runs on a thread of its own so
/// that a signal still ends the process.
pub fn deliver(ctx: zmq::Context, stop: &AtomicBool) -> bool {
    let (done_tx, done) = mpsc::channel::<()>();
    let waiting = std::thread::Builder::new()
        .name("xfel-serve delivery".into())
        .spawn(move || {
            drop(ctx);
            let _ = done_tx.send(());
        });
    // Without a thread the context was ended (waited for) when the closure was dropped.
    if waiting.is_err() {
        return true;
    }
    loop {
        match done.recv_timeout(POLL_SLICE) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return true,
            Err(mpsc::RecvTimeoutError::Timeout) if stop.load(Ordering::Relaxed) => return false,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
}

fn send_all(
    socket: &zmq::Socket,
    config: &ServeConfig,
    rx: &mpsc::Receiver<Vec<Encoded>>,
    stop: &AtomicBool,
    summary: &mut ServeSummary,
    events: &mut dyn FnMut(ServeEvent<'_>),
    disconnects: Option<&zmq::Socket>,
) -> Result<(), ServeError> {
    let ep = config.endpoint.as_str();
    let interval = config
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));
    let mut next_due = Instant::now();
    let mut spin = REQUEST_SPIN;
    for encoded in rx.iter().flatten() {
        let (train_id, parts, omitted) = match encoded {
            Ok(x) => x,
            Err(e) => {
                summary.trains_skipped += 1;
                let (TrainError::Read { train_id, .. } | TrainError::Encode { train_id, .. }) = e;
                summary.skipped_train_ranges.insert(train_id);
                events(ServeEvent::Skipped(&e));
                // Trains that are all skipped never wait for a peer, where stop is checked.
                if stop.load(Ordering::Relaxed) {
                    summary.stopped = true;
                    return Ok(());
                }
                continue;
            }
        };
        if let Some(interval) = interval {
            // Sleep in slices so that a stop request is seen even at a low rate.
            loop {
                let now = Instant::now();
                if next_due <= now || stop.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep((next_due - now).min(POLL_SLICE));
            }
            next_due = next_due.max(Instant::now()) + interval;
        }
        let ready = match config.socket {
            SocketType::Rep => wait_for_next(socket, ep, spin, stop, summary, events)?,
            SocketType::Push => {
                if let Some(d) = disconnects {
                    count_disconnects(d, summary);
                }
                wait_writable(socket, ep, spin, stop)?
            }
            SocketType::Pub => !stop.load(Ordering::Relaxed),
        };
        if !ready {
            summary.stopped = true;
            return Ok(());
        }
        let bytes: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let n = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            let flags = if i + 1 < n { zmq::SNDMORE } else { 0 };
            socket.send(part, flags).map_err(zmq_err(ep, "send"))?;
        }
        spin = if bytes < SPIN_BELOW_BYTES {
            REQUEST_SPIN
        } else {
            Duration::ZERO
        };
        summary.trains_sent += 1;
        summary.bytes_sent += bytes;
        summary.first_train.get_or_insert(train_id);
        summary.last_train = Some(train_id);
        summary.trains_incomplete += u64::from(!omitted.is_empty());
        for o in &omitted {
            let first = summary.omit(train_id, o);
            events(ServeEvent::KeyOmitted {
                train_id,
                omitted: o,
                first,
            });
        }
        events(ServeEvent::Sent {
            count: summary.trains_sent,
            train_id,
        });
    }
    Ok(())
}

/// Waits until the socket is ready for `event` or `stop` is set (false).
fn wait_for(
    socket: &zmq::Socket,
    ep: &str,
    event: zmq::PollEvents,
    stop: &AtomicBool,
) -> Result<bool, ServeError> {
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let mut items = [socket.as_poll_item(event)];
        match zmq::poll(&mut items, POLL_SLICE.as_millis() as i64) {
            Ok(_) if items[0].get_revents().contains(event) => return Ok(true),
            Ok(_) | Err(zmq::Error::EINTR) => {}
            Err(e) => return Err(zmq_err(ep, "poll")(e)),
        }
    }
}

/// PUSH: waits until a train can be queued or `stop` is set (false). With a send high-water
/// mark of 1 the socket takes the next train once libzmq's I/O thread has taken this one, so a
/// fast puller makes this a hand-off between two threads per train, as a REP round trip is:
/// asks without sleeping for `spin` first, as `next_request` does.
fn wait_writable(
    socket: &zmq::Socket,
    ep: &str,
    spin: Duration,
    stop: &AtomicBool,
) -> Result<bool, ServeError> {
    let spin_until = Instant::now() + spin;
    loop {
        let events = socket.get_events().map_err(zmq_err(ep, "get events"))?;
        if events.contains(zmq::POLLOUT) {
            return Ok(true);
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(false);
        }
        if Instant::now() < spin_until {
            std::thread::yield_now();
        } else {
            return wait_for(socket, ep, zmq::POLLOUT, stop);
        }
    }
}

/// REP: receives requests until one is `next`; any other is answered with karabo_bridge's
/// `Error: bad request <request>` (the train waits for the next request).
fn wait_for_next(
    socket: &zmq::Socket,
    ep: &str,
    spin: Duration,
    stop: &AtomicBool,
    summary: &mut ServeSummary,
    events: &mut dyn FnMut(ServeEvent<'_>),
) -> Result<bool, ServeError> {
    loop {
        let Some(request) = next_request(socket, ep, spin, stop)? else {
            return Ok(false);
        };
        let first = request.first().map(Vec::as_slice).unwrap_or_default();
        if request.len() == 1 && first == b"next" {
            return Ok(true);
        }
        summary.bad_requests += 1;
        events(ServeEvent::BadRequest(first));
        let mut reply = b"Error: bad request ".to_vec();
        reply.extend_from_slice(first);
        socket.send(reply, 0).map_err(zmq_err(ep, "send"))?;
    }
}

/// The next request, or `None` once `stop` is set. Asks without blocking for `spin` first
/// (yielding the CPU between tries), then sleeps in `poll` slices.
fn next_request(
    socket: &zmq::Socket,
    ep: &str,
    spin: Duration,
    stop: &AtomicBool,
) -> Result<Option<Vec<Vec<u8>>>, ServeError> {
    let spin_until = Instant::now() + spin;
    loop {
        match socket.recv_multipart(zmq::DONTWAIT) {
            Ok(request) => return Ok(Some(request)),
            Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => {}
            Err(e) => return Err(zmq_err(ep, "receive")(e)),
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        if Instant::now() < spin_until {
            std::thread::yield_now();
        } else if !wait_for(socket, ep, zmq::POLLIN, stop)? {
            return Ok(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TrainRanges;

    #[test]
    fn train_ranges_merge_neighbours_and_count_each_train_once() {
        let mut r = TrainRanges::default();
        for t in [5, 6, 7, 10, 9, 1, 7, 8, 3, 2, u64::MAX, 0] {
            r.insert(t);
        }
        assert_eq!(r.ranges(), &[[0, 3], [5, 10], [u64::MAX, u64::MAX]]);
        assert_eq!(r.trains(), 4 + 6 + 1);
        assert_eq!(r.to_string(), format!("0-3, 5-10, {}", u64::MAX));
        let mut cut = TrainRanges::default();
        [0, 3, 7, 8, 10, 11, u64::MAX]
            .iter()
            .for_each(|&t| cut.insert(t));
        assert_eq!(
            r.without(&cut).ranges(),
            &[[1, 2], [5, 6], [9, 9]],
            "{r:?} without {cut:?}"
        );
        assert_eq!(r.without(&TrainRanges::default()), r);
        assert_eq!(r.without(&r), TrainRanges::default());
        let mut many = TrainRanges::default();
        (0..20).for_each(|i| many.insert(i * 2));
        assert_eq!(many.ranges().len(), 20);
        assert!(many.to_string().ends_with(", 14, ... (20 ranges)"));
    }
}
