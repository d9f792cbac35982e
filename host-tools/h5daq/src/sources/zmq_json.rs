//! ZeroMQ sources with JSON payloads.
//!
//! - [`subscriber_job`]: a SUB socket; every message (the last frame of a multipart message, or
//!   a single frame `"topic {json}"`) is one row, taken from named fields. Constant read mode:
//!   the getter waits up to 100 ms for a message, so a stop is seen quickly.
//! - [`request_job`]: a REQ socket polled on a period with a JSON request (default
//!   `{"cmd": "status"}`, the `xsp3-acquire serve` control socket); the reply must be an object
//!   with `"ok": true`, and the named numeric fields become a row. A request without a reply in
//!   `timeout` is an error and the socket is recreated (a REQ socket cannot send twice).

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;

use crate::job::{DropReason, SourceStats};
use crate::log::daq_log;
use crate::time::{Clock, SystemClock};

use super::{entries_from_json, parse_fields, time_from_json, JsonError, JsonField};
use crate::column::{Column, ConvertError, Dtype};
use crate::error::DaqError;
use crate::job::{lock, DaqJob, ReadMode, Reading, ReadingSpare};
use crate::setting::{self, shown, SettingError};

/// The `[[job]]` settings of `source = "zmq_sub"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubSettings {
    endpoint: toml::Value,
    fields: toml::Value,
    topic: Option<String>,
    time_field: Option<String>,
    sequence_field: Option<String>,
    socket_queue: Option<toml::Value>,
}

/// The `[[job]]` settings of `source = "zmq_req"` and `"xsp3_status"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReqSettings {
    endpoint: toml::Value,
    fields: toml::Value,
    request: Option<toml::Value>,
    timeout: Option<toml::Value>,
}

/// A ZeroMQ endpoint (the value of `setting`): `tcp://host:port` (port 1-65535) or
/// `ipc://path` (at most 107 bytes, a Unix socket path).
fn endpoint(setting: &str, v: &toml::Value) -> Result<String, SettingError> {
    let bad = |why: &str| SettingError::invalid(setting, shown(v), why);
    let e = v.as_str().ok_or_else(|| {
        SettingError::wrong_type(setting, v, "a string like \"tcp://127.0.0.1:5556\"")
    })?;
    if let Some(rest) = e.strip_prefix("tcp://") {
        let port = rest.rsplit_once(':').map(|(_, p)| p);
        return match port.map(str::parse::<u16>) {
            Some(Ok(p)) if p > 0 => Ok(e.to_string()),
            Some(_) => Err(bad("the port must be a number from 1 to 65535")),
            None => Err(bad("needs a port, like \"tcp://127.0.0.1:5556\"")),
        };
    }
    if let Some(path) = e.strip_prefix("ipc://") {
        return if path.is_empty() || path.len() > 107 {
            Err(bad("an ipc path must be 1 to 107 bytes"))
        } else {
            Ok(e.to_string())
        };
    }
    Err(bad(
        "not a ZeroMQ endpoint, like \"tcp://127.0.0.1:5556\" or \"ipc:///tmp/x\"",
    ))
}

/// The `[[job]]` settings of `source = "zmq_pull"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PullSettings {
    endpoint: Option<toml::Value>,
    bind: Option<toml::Value>,
    fields: toml::Value,
    time_field: Option<String>,
    sequence_field: Option<String>,
    socket_queue: Option<toml::Value>,
}

/// The socket of a ZeroMQ stream source.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamSocket {
    /// `zmq_sub`: a SUB socket connected to `endpoint`, subscribed to `topic`. Lossy: beyond
    /// the queues, rows are dropped (and counted).
    Sub { endpoint: String, topic: String },
    /// `zmq_pull`: a PULL socket bound to or connected to `endpoint`. Lossless: a full queue
    /// holds the socket back, so ZeroMQ blocks the PUSH sender.
    Pull { endpoint: String, bind: bool },
}

/// A checked stream job (`zmq_sub` or `zmq_pull`).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    pub socket: StreamSocket,
    pub fields: Vec<JsonField>,
    /// The message field holding the time; `None` stamps arrival.
    pub time_field: Option<String>,
    /// The message field holding the sender's row sequence number: gaps count as dropped.
    pub sequence_field: Option<String>,
    /// Messages the socket holds (its receive high-water mark): beyond it a SUB socket drops
    /// and a PULL socket makes the sender wait.
    pub socket_queue: i32,
}

fn socket_queue(v: Option<&toml::Value>, default: i32) -> Result<i32, SettingError> {
    match v {
        None => Ok(default),
        Some(v) => match v.as_integer() {
            Some(n) if (1..=i64::from(i32::MAX)).contains(&n) => Ok(n as i32),
            Some(_) => Err(SettingError::invalid(
                "socket_queue",
                shown(v),
                format!("messages, from 1 to {}", i32::MAX),
            )),
            None => Err(SettingError::wrong_type(
                "socket_queue",
                v,
                "a number of messages",
            )),
        },
    }
}

impl StreamConfig {
    /// Reads and checks the settings of `source = "zmq_sub"`.
    pub fn sub_from_table(table: &toml::Table) -> Result<StreamConfig, SettingError> {
        let s: SubSettings = setting::from_table(table, "source \"zmq_sub\"")?;
        Ok(StreamConfig {
            socket: StreamSocket::Sub {
                endpoint: endpoint("endpoint", &s.endpoint)?,
                topic: s.topic.unwrap_or_default(),
            },
            fields: parse_fields(&s.fields, Dtype::F64)?,
            time_field: s.time_field,
            sequence_field: s.sequence_field,
            socket_queue: socket_queue(s.socket_queue.as_ref(), SUB_SOCKET_QUEUE)?,
        })
    }

    /// Reads and checks the settings of `source = "zmq_pull"`: exactly one of `bind` and
    /// `endpoint` (connect).
    pub fn pull_from_table(table: &toml::Table) -> Result<StreamConfig, SettingError> {
        let s: PullSettings = setting::from_table(table, "source \"zmq_pull\"")?;
        let (endpoint, bind) = match (&s.endpoint, &s.bind) {
            (Some(e), None) => (endpoint("endpoint", e)?, false),
            (None, Some(b)) => (endpoint("bind", b)?, true),
            (Some(_), Some(b)) => {
                return Err(SettingError::invalid(
                    "bind",
                    shown(b),
                    "give either bind (the producer connects) or endpoint (h5daq connects), not both",
                ))
            }
            (None, None) => {
                return Err(SettingError::missing(
                    "endpoint",
                    "source \"zmq_pull\" needs bind = \"tcp://127.0.0.1:PORT\" or endpoint = \"tcp://HOST:PORT\"",
                ))
            }
        };
        Ok(StreamConfig {
            socket: StreamSocket::Pull { endpoint, bind },
            fields: parse_fields(&s.fields, Dtype::F64)?,
            time_field: s.time_field,
            sequence_field: s.sequence_field,
            socket_queue: socket_queue(s.socket_queue.as_ref(), PULL_SOCKET_QUEUE)?,
        })
    }

    /// The job (binds or connects the socket).
    pub fn job(&self, group: &str) -> Result<DaqJob, DaqError> {
        stream_job(group, self)
    }
}

/// A checked request/reply poller.
#[derive(Debug, Clone, PartialEq)]
pub struct ReqConfig {
    pub endpoint: String,
    pub request: serde_json::Value,
    pub fields: Vec<JsonField>,
    /// `None`: the read period, at most 1 s.
    pub timeout: Option<Duration>,
}

impl ReqConfig {
    /// Reads and checks the settings of `source = "zmq_req"`, or of `"xsp3_status"` when
    /// `xsp3_status` (whose request defaults to `{"cmd": "status"}`).
    pub fn from_table(table: &toml::Table, xsp3_status: bool) -> Result<ReqConfig, SettingError> {
        let owner = if xsp3_status {
            "source \"xsp3_status\""
        } else {
            "source \"zmq_req\""
        };
        let s: ReqSettings = setting::from_table(table, owner)?;
        let request = match &s.request {
            Some(toml::Value::Table(t)) => toml_to_json(&toml::Value::Table(t.clone())),
            Some(other) => {
                return Err(SettingError::wrong_type(
                    "request",
                    other,
                    "a table, e.g. { cmd = \"status\" }",
                ))
            }
            None if xsp3_status => serde_json::json!({"cmd": "status"}),
            None => {
                return Err(SettingError::missing(
                    "request",
                    "source \"zmq_req\" needs a request table",
                ))
            }
        };
        let timeout = match &s.timeout {
            Some(v) => Some(setting::seconds("timeout", v, 0.001)?),
            None => None,
        };
        Ok(ReqConfig {
            endpoint: endpoint("endpoint", &s.endpoint)?,
            request,
            fields: parse_fields(&s.fields, Dtype::F64)?,
            timeout,
        })
    }

    /// The job, polling every `period`.
    pub fn job(&self, group: &str, period: Duration) -> Result<DaqJob, DaqError> {
        request_job(
            group,
            &self.endpoint,
            self.request.clone(),
            self.fields.clone(),
            period,
            self.timeout.unwrap_or(period.min(Duration::from_secs(1))),
        )
    }
}

fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    match v {
        toml::Value::String(s) => serde_json::Value::String(s.clone()),
        toml::Value::Integer(i) => serde_json::Value::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(a) => serde_json::Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => serde_json::Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

/// A message that is not a JSON object.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MessageError {
    #[error("empty message")]
    Empty,
    #[error("message is not JSON ({error}): {shown:?}")]
    NotJson { error: String, shown: String },
    #[error("message is not a JSON object: {0}")]
    NotObject(String),
}

/// Why a ZeroMQ read failed.
#[derive(Debug, thiserror::Error)]
pub enum ZmqReadError {
    #[error("{what} {endpoint:?}: {source}")]
    Socket {
        what: &'static str,
        endpoint: String,
        #[source]
        source: zmq::Error,
    },
    #[error("no reply from {endpoint:?} within {seconds:.1} s")]
    NoReply { endpoint: String, seconds: f64 },
    #[error("{endpoint:?} replied not ok: {why}")]
    NotOk { endpoint: String, why: String },
    #[error(transparent)]
    Message(#[from] MessageError),
    #[error(transparent)]
    Json(#[from] JsonError),
    #[error(transparent)]
    Binary(#[from] BinaryError),
}

/// Parses a message into a JSON object: the last frame, or the part after the first space of a
/// single `"topic {json}"` frame.
pub fn parse_message<F: Deref<Target = [u8]>>(
    frames: &[F],
) -> Result<serde_json::Value, MessageError> {
    let last = frames.last().ok_or(MessageError::Empty)?;
    let v = match parse_json(last) {
        Ok(v) => v,
        Err(e) => {
            let text = String::from_utf8_lossy(last);
            match text.split_once(' ').map(|(_, j)| parse_json(j.as_bytes())) {
                Some(Ok(v)) => v,
                _ => {
                    let shown: String = text.chars().take(80).collect();
                    return Err(MessageError::NotJson {
                        error: e.to_string(),
                        shown,
                    });
                }
            }
        }
    };
    if !v.is_object() {
        return Err(MessageError::NotObject(v.to_string()));
    }
    Ok(v)
}

/// JSON as Python's `json.dumps` writes it by default: bare `NaN`, `Infinity` and `-Infinity`
/// outside strings are accepted (as `null`, which stands for NaN, and as the strings
/// `"Infinity"` / `"-Infinity"`, which the field readers take as the floats).
fn parse_json(bytes: &[u8]) -> Result<serde_json::Value, serde_json::Error> {
    match serde_json::from_slice(bytes) {
        Ok(v) => Ok(v),
        Err(e) => {
            let text = String::from_utf8_lossy(bytes);
            if !(text.contains("NaN") || text.contains("Infinity")) {
                return Err(e);
            }
            serde_json::from_str(&python_constants_to_json(&text)).map_err(|_| e)
        }
    }
}

fn python_constants_to_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else {
            let replaced = [
                ("NaN", "null"),
                ("-Infinity", "\"-Infinity\""),
                ("Infinity", "\"Infinity\""),
            ]
            .into_iter()
            .find(|(from, _)| rest.starts_with(from));
            if let Some((from, to)) = replaced {
                out.push_str(to);
                rest = &rest[from.len()..];
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Messages a SUB socket itself may hold by default (its receive high-water mark).
const SUB_SOCKET_QUEUE: i32 = 100_000;

/// Messages a PULL socket holds by default before ZeroMQ makes the sender wait (short: the
/// receiving thread's queue behind it is the buffer).
const PULL_SOCKET_QUEUE: i32 = 100;

/// Messages queued between the receiving thread and the job.
const MESSAGE_QUEUE: usize = 10_000;

/// Bytes of the messages queued between the receiving thread and the job (large binary
/// messages fill this before the message count).
const MESSAGE_QUEUE_BYTES: usize = 256 << 20;

/// Most rows one batched binary message may carry.
const MAX_BATCH_ROWS: usize = 1 << 20;

/// A read takes queued messages until it holds this many bytes of rows (or
/// [`READ_ROWS`] rows), so one buffer hand-off and one lock cover many messages.
const READ_BYTES: usize = 4 << 20;

/// Most rows one read takes from the queue (see [`READ_BYTES`]).
const READ_ROWS: usize = 1 << 16;

/// How long a read waits once for more messages when the queue runs dry (a row's time is its
/// arrival, so this only delays its hand-over to the buffer).
const GATHER_PAUSE: Duration = Duration::from_millis(1);

/// A message as ZeroMQ received it (its frames are not copied), when it arrived, and how many
/// rows the receiving thread dropped at the full queue since the message before it (so a
/// sequence gap is not counted twice).
struct Message {
    arrived: f64,
    frames: Vec<zmq::Message>,
    queue_dropped_before: u64,
}

impl Message {
    fn arrived_now(frames: Vec<zmq::Message>, queue_dropped_before: u64) -> Message {
        Message {
            arrived: SystemClock.now(),
            frames,
            queue_dropped_before,
        }
    }

    fn bytes(&self) -> usize {
        self.frames.iter().map(|f| f.len()).sum()
    }
}

/// The frames of one (multipart) message (`flags`: 0 or `zmq::DONTWAIT`; the parts after the
/// first are there already, ZeroMQ delivers a message whole).
fn recv_frames(sock: &zmq::Socket, flags: i32) -> Result<Vec<zmq::Message>, zmq::Error> {
    let mut frames = vec![sock.recv_msg(flags)?];
    while sock.get_rcvmore()? {
        frames.push(sock.recv_msg(0)?);
    }
    Ok(frames)
}

/// Rows a message carries: a batched binary message's `"rows"`, otherwise 1.
fn message_rows<F: Deref<Target = [u8]>>(frames: &[F]) -> u64 {
    binary_header(frames)
        .and_then(|(h, _)| h.get("rows").and_then(serde_json::Value::as_u64))
        .unwrap_or(1)
}

/// The messages between a SUB job's receiving thread and the job, limited in count and bytes.
#[derive(Debug)]
struct Queued {
    /// Bytes and messages queued.
    held: Mutex<(usize, usize)>,
    max_bytes: usize,
    max_messages: usize,
}

impl Queued {
    fn new(max_bytes: usize, max_messages: usize) -> Queued {
        Queued {
            held: Mutex::new((0, 0)),
            max_bytes,
            max_messages,
        }
    }

    /// Adds a message of `n` bytes if it fits (one message always fits when nothing is
    /// queued, however large), or over the limits when `always` (at stop).
    fn add(&self, n: usize, always: bool) -> bool {
        let mut q = lock(&self.held);
        let (b, m) = *q;
        let fits = m == 0 || (m < self.max_messages && b.saturating_add(n) <= self.max_bytes);
        if fits || always {
            *q = (b + n, m + 1);
        }
        fits || always
    }

    /// Takes a message of `n` bytes off the queue.
    fn remove(&self, n: usize) {
        let mut q = lock(&self.held);
        *q = (q.0.saturating_sub(n), q.1.saturating_sub(1));
    }
}

/// A SUB job's receiving thread: takes every message off the socket as it arrives into `tx`,
/// so the socket's own queue (beyond which ZeroMQ drops silently) never overflows while the job
/// is busy. The rows of a message that finds `queued` full are dropped and counted
/// (`source_queue`). When `stop` is set it takes what the socket still holds, at most
/// `drain_limit` messages (so a sender that goes on sending cannot hold the stop up), whatever
/// the queue's limits (the socket held them in memory already; the final read takes them
/// all), and ends; it ends too when the job is gone.
fn receive(
    sock: zmq::Socket,
    tx: Sender<Message>,
    queued: Arc<Queued>,
    stop: Arc<AtomicBool>,
    stats: SourceStats,
    group: String,
    drain_limit: usize,
) {
    let mut dropped_since_last = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let frames = match recv_frames(&sock, 0) {
            Ok(f) => f,
            Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => continue,
            Err(e) => {
                daq_log!(Error, "job {group}: receive: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let msg = Message::arrived_now(frames, dropped_since_last);
        if queued.add(msg.bytes(), false) {
            if tx.send(msg).is_err() {
                return; // the job is gone
            }
            dropped_since_last = 0;
        } else {
            let rows = message_rows(&msg.frames);
            dropped_since_last += rows;
            stats.dropped(DropReason::SourceQueue, rows);
        }
    }
    for _ in 0..drain_limit {
        let Ok(frames) = recv_frames(&sock, zmq::DONTWAIT) else {
            return;
        };
        let msg = Message::arrived_now(frames, dropped_since_last);
        dropped_since_last = 0;
        queued.add(msg.bytes(), true);
        if tx.send(msg).is_err() {
            return;
        }
    }
}

/// Where a stream job's getter takes its messages from.
enum Inbox {
    /// SUB: the queue the receiving thread fills ([`receive`]).
    Queue {
        rx: mpsc::Receiver<Message>,
        queued: Arc<Queued>,
    },
    /// PULL: the socket itself, read by the job's thread: while the job takes nothing (its
    /// buffer is full) the socket's queue fills and ZeroMQ holds the sender back.
    Socket {
        sock: zmq::Socket,
        _context: zmq::Context,
    },
}

impl Inbox {
    /// The next message: when `wait`, waiting up to 100 ms (the socket's receive timeout)
    /// for one; otherwise only one already there.
    fn next(&self, wait: bool) -> Result<Option<Message>, zmq::Error> {
        match self {
            Inbox::Queue { rx, queued } => {
                let msg = if wait {
                    rx.recv_timeout(Duration::from_millis(100)).ok()
                } else {
                    rx.try_recv().ok()
                };
                if let Some(m) = &msg {
                    queued.remove(m.bytes());
                }
                Ok(msg)
            }
            Inbox::Socket { sock, .. } => {
                match recv_frames(sock, if wait { 0 } else { zmq::DONTWAIT }) {
                    Ok(frames) => Ok(Some(Message::arrived_now(frames, 0))),
                    Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        }
    }
}

/// Rows being collected from messages: times and one column per field (flattened).
#[derive(Debug)]
struct Rows {
    time: Vec<f64>,
    columns: Vec<Column>,
}

impl Rows {
    fn new(dtypes: &[Dtype]) -> Rows {
        Rows {
            time: Vec::new(),
            columns: dtypes
                .iter()
                .map(|d| Column::with_capacity(*d, 0))
                .collect(),
        }
    }

    /// Bytes held (rows of the columns and their times).
    fn bytes(&self) -> usize {
        self.time.len() * 8
            + self
                .columns
                .iter()
                .map(|c| c.len() * c.dtype().size())
                .sum::<usize>()
    }
}

/// A message taken: its sequence number (when the job has a sequence field and the message
/// one that could be read), the rows it claims, and whether its rows were appended.
struct Received {
    seq: Option<u64>,
    claimed_rows: u64,
    appended: Result<(), ZmqReadError>,
}

/// Appends the rows of a message to `rows` with their time (the message's own, or its
/// arrival), or leaves `rows` as it was and returns why the message is bad input.
fn append_message<F: Deref<Target = [u8]>>(
    frames: &[F],
    arrived: f64,
    fields: &[JsonField],
    keys: &MessageKeys,
    rows: &mut Rows,
) -> Received {
    let mut claimed_rows = 1;
    let lens: Vec<usize> = rows.columns.iter().map(Column::len).collect();
    let (obj, appended) = match binary_header(frames) {
        Some((header, raw)) => {
            claimed_rows = header
                .get("rows")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(1);
            let r = append_binary(&header, raw, fields, arrived, keys.time.as_deref(), rows);
            (Some(header), r)
        }
        None => match parse_message(frames) {
            Ok(obj) => {
                let r = append_json(&obj, fields, arrived, keys.time.as_deref(), rows);
                (Some(obj), r)
            }
            Err(e) => (None, Err(e.into())),
        },
    };
    if appended.is_err() {
        for (c, n) in rows.columns.iter_mut().zip(lens) {
            c.truncate(n);
        }
    }
    let seq = keys
        .sequence
        .as_deref()
        .zip(obj.as_ref())
        .and_then(|(k, o)| super::lookup(o, k))
        .and_then(serde_json::Value::as_u64);
    Received {
        seq,
        claimed_rows,
        appended,
    }
}

/// Appends the row of a JSON message (columns are rolled back by the caller on error).
fn append_json(
    obj: &serde_json::Value,
    fields: &[JsonField],
    arrived: f64,
    time_key: Option<&str>,
    rows: &mut Rows,
) -> Result<(), ZmqReadError> {
    let entries = entries_from_json(obj, fields)?;
    let t = match time_key {
        Some(k) => time_from_json(obj, k)?,
        None => arrived,
    };
    for ((c, e), f) in rows.columns.iter_mut().zip(&entries).zip(fields) {
        c.push_entry(e).map_err(|source| JsonError::DoesNotFit {
            key: f.key.clone(),
            source,
        })?;
    }
    rows.time.push(t);
    Ok(())
}

/// The message fields a subscriber reads besides the datasets.
struct MessageKeys {
    time: Option<String>,
    sequence: Option<String>,
}

/// Counts the rows lost before h5daq received them from the gaps in the sender's row sequence
/// numbers (a message numbered `s` with `n` rows is followed by `s + n`). Rows the receiving
/// thread dropped itself, and messages whose number could not be read, are not counted again.
/// A number below the expected one (a restarted sender) starts the count afresh.
#[derive(Debug, Default)]
struct SequenceGaps {
    next: Option<u64>,
    /// Rows since the last numbered message already counted elsewhere or not numbered.
    accounted: u64,
}

impl SequenceGaps {
    /// The rows missing before a message numbered `seq` (or none) with `rows` rows, after
    /// `queue_dropped_before` rows the receiving thread counted.
    fn see(&mut self, seq: Option<u64>, rows: u64, queue_dropped_before: u64) -> u64 {
        self.accounted += queue_dropped_before;
        let Some(seq) = seq else {
            self.accounted += rows;
            return 0;
        };
        let gap = match self.next {
            Some(next) if seq >= next => (seq - next).saturating_sub(self.accounted),
            _ => 0,
        };
        self.next = Some(seq.saturating_add(rows));
        self.accounted = 0;
        gap
    }
}

/// A binary message: a JSON header object with an `"arrays"` list (one `{"key", "dtype",
/// "shape"}` per raw frame), then the raw frames in that order (an optional topic frame may
/// come first). Returns the header and the raw frames.
fn binary_header<F: Deref<Target = [u8]>>(frames: &[F]) -> Option<(serde_json::Value, &[F])> {
    if frames.len() < 2 {
        return None;
    }
    // The header is the first or, after a topic frame, the second frame.
    frames.iter().take(2).enumerate().find_map(|(i, f)| {
        let v = parse_json(f).ok()?;
        v.get("arrays")?.as_array()?;
        Some((v, &frames[i + 1..]))
    })
}

/// Why a binary message's arrays do not fit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BinaryError {
    #[error("\"arrays\" entry {0} is not {{\"key\", \"dtype\", \"shape\"}}")]
    BadEntry(usize),
    #[error("the header names {arrays} arrays, the message has {frames} raw frames")]
    FrameCount { arrays: usize, frames: usize },
    #[error("array {key:?}: dtype {dtype:?} is not a little-endian numeric dtype")]
    Dtype { key: String, dtype: String },
    #[error("array {key:?}: {bytes} bytes for {rows} rows of shape {shape:?} of {dtype}")]
    Size {
        key: String,
        bytes: usize,
        rows: usize,
        shape: Vec<usize>,
        dtype: crate::column::Dtype,
    },
    #[error("array {key:?}: {elements} elements, the field takes {want}")]
    Elements {
        key: String,
        elements: usize,
        want: usize,
    },
    #[error("\"rows\" = {0}: a batch holds 1 to {MAX_BATCH_ROWS} rows")]
    Rows(String),
    #[error("field {key:?}: a batched message takes every field from a raw array")]
    BatchField { key: String },
    #[error("time field {key:?}: a batched message needs a list of {rows} times")]
    BatchTime { key: String, rows: usize },
}

/// One raw array of a binary message: the key its header gives, its dtype and its bytes.
type RawArray<'h, 'f> = (&'h str, Dtype, &'f [u8]);

/// The raw arrays of a binary message, checked against its header, each holding `rows`
/// entries of its shape, little-endian, any numeric dtype.
fn raw_arrays<'h, 'f, F: Deref<Target = [u8]>>(
    header: &'h serde_json::Value,
    raw: &'f [F],
    rows: usize,
) -> Result<Vec<RawArray<'h, 'f>>, BinaryError> {
    let arrays = header
        .get("arrays")
        .and_then(|a| a.as_array())
        .map_or(&[][..], Vec::as_slice);
    if arrays.len() != raw.len() {
        return Err(BinaryError::FrameCount {
            arrays: arrays.len(),
            frames: raw.len(),
        });
    }
    let mut checked = Vec::with_capacity(arrays.len());
    for (i, (a, bytes)) in arrays.iter().zip(raw).enumerate() {
        let key = a.get("key").and_then(|k| k.as_str());
        let dtype = a.get("dtype").and_then(|d| d.as_str());
        let shape: Option<Vec<usize>> = a.get("shape").and_then(|s| s.as_array()).and_then(|s| {
            s.iter()
                .map(|n| n.as_u64().and_then(|n| usize::try_from(n).ok()))
                .collect()
        });
        let (Some(key), Some(dtype), Some(shape)) = (key, dtype, shape) else {
            return Err(BinaryError::BadEntry(i));
        };
        let dt = dtype
            .trim_start_matches('=')
            .parse::<Dtype>()
            .ok()
            .filter(|d| !d.is_text())
            .ok_or_else(|| BinaryError::Dtype {
                key: key.to_string(),
                dtype: dtype.to_string(),
            })?;
        let bytes: &[u8] = bytes;
        let expected = shape
            .iter()
            .try_fold(rows, |acc, &n| acc.checked_mul(n))
            .and_then(|n| n.checked_mul(dt.size()));
        if expected != Some(bytes.len()) {
            return Err(BinaryError::Size {
                key: key.to_string(),
                bytes: bytes.len(),
                rows,
                shape,
                dtype: dt,
            });
        }
        checked.push((key, dt, bytes));
    }
    Ok(checked)
}

/// Appends the rows of a binary message to `rows` (the caller rolls the columns back on
/// error): one row (arrays from raw frames, every other field from the header as in JSON
/// messages), or with `"rows": N` a batch of N rows in which every field is a raw array of N
/// entries, stamped with the arrival time or the header's list of N times. Each raw frame is
/// copied once, straight into its column.
fn append_binary<F: Deref<Target = [u8]>>(
    header: &serde_json::Value,
    raw: &[F],
    fields: &[JsonField],
    arrived: f64,
    time_key: Option<&str>,
    rows: &mut Rows,
) -> Result<(), ZmqReadError> {
    let batch = match header.get("rows") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| (1..=MAX_BATCH_ROWS).contains(n))
                .ok_or_else(|| BinaryError::Rows(v.to_string()))?,
        ),
    };
    let n = batch.unwrap_or(1);
    let arrays = raw_arrays(header, raw, n)?;
    let time = match (batch, time_key) {
        (None, Some(k)) => vec![time_from_json(header, k)?],
        (Some(_), Some(k)) => super::lookup(header, k)
            .and_then(|v| v.as_array())
            .filter(|a| a.len() == n)
            .and_then(|a| a.iter().map(serde_json::Value::as_f64).collect())
            .ok_or_else(|| BinaryError::BatchTime {
                key: k.to_string(),
                rows: n,
            })?,
        (_, None) => vec![arrived; n],
    };
    for (f, col) in fields.iter().zip(rows.columns.iter_mut()) {
        match arrays.iter().find(|(k, _, _)| *k == f.key) {
            Some((key, dtype, bytes)) => {
                let (elements, want) = (bytes.len() / dtype.size(), f.spec.entry_len() * n);
                if elements != want {
                    return Err(BinaryError::Elements {
                        key: key.to_string(),
                        elements,
                        want,
                    }
                    .into());
                }
                append_le_bytes(col, *dtype, bytes).map_err(|source| JsonError::DoesNotFit {
                    key: key.to_string(),
                    source,
                })?;
            }
            None if batch.is_some() => {
                return Err(BinaryError::BatchField { key: f.key.clone() }.into())
            }
            None => {
                let e = entries_from_json(header, std::slice::from_ref(f))?;
                for e in &e {
                    col.push_entry(e).map_err(|source| JsonError::DoesNotFit {
                        key: f.key.clone(),
                        source,
                    })?;
                }
            }
        }
    }
    rows.time.extend_from_slice(&time);
    Ok(())
}

/// Appends the little-endian elements of `dtype` in `bytes` (numpy's native order on x86 and
/// ARM; any alignment) to `col`: decoded straight into it when the types match, otherwise
/// converted exactly (a value that does not fit is an error and nothing is appended).
fn append_le_bytes(col: &mut Column, dtype: Dtype, bytes: &[u8]) -> Result<(), ConvertError> {
    macro_rules! same {
        ($t:ty, $v:ident) => {{
            const N: usize = std::mem::size_of::<$t>();
            $v.extend(bytes.chunks_exact(N).map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                <$t>::from_le_bytes(a)
            }));
            return Ok(());
        }};
    }
    match (&mut *col, dtype) {
        (Column::F64(v), Dtype::F64) => same!(f64, v),
        (Column::F32(v), Dtype::F32) => same!(f32, v),
        (Column::I64(v), Dtype::I64) => same!(i64, v),
        (Column::I32(v), Dtype::I32) => same!(i32, v),
        (Column::I16(v), Dtype::I16) => same!(i16, v),
        (Column::I8(v), Dtype::I8) => same!(i8, v),
        (Column::U64(v), Dtype::U64) => same!(u64, v),
        (Column::U32(v), Dtype::U32) => same!(u32, v),
        (Column::U16(v), Dtype::U16) => same!(u16, v),
        (Column::U8(v), Dtype::U8) => same!(u8, v),
        _ => {}
    }
    if dtype.is_text() {
        return Err(ConvertError::Text { dtype });
    }
    let mut decoded = Column::with_capacity(dtype, bytes.len() / dtype.size());
    append_le_bytes(&mut decoded, dtype, bytes)?;
    col.extend_from(&decoded)
}

/// A stream job: a SUB or PULL socket (see [`StreamSocket`]). SUB: a thread takes messages
/// off the socket as they arrive ([`receive`]) into a counted queue. PULL: the job's thread
/// reads the socket itself and has back-pressure: while its buffer is full it takes nothing,
/// the socket's queue fills and the sender waits. Each message is one row (or a batch of
/// rows), stamped at arrival unless a time field names its time; each read takes the messages
/// already there up to [`READ_BYTES`] at once. A message that is not a row is counted as bad
/// input; gaps in the sequence field are counted as dropped; at stop what is queued (and, up to
/// `socket_queue` messages, what the socket holds) is still stored.
fn stream_job(group: &str, cfg: &StreamConfig) -> Result<DaqJob, DaqError> {
    let ctx = zmq::Context::new();
    let (kind, pull) = match &cfg.socket {
        StreamSocket::Sub { .. } => (zmq::SUB, false),
        StreamSocket::Pull { .. } => (zmq::PULL, true),
    };
    let sock = ctx
        .socket(kind)
        .map_err(DaqError::zmq(format!("job {group}: socket")))?;
    sock.set_linger(0).map_err(DaqError::zmq("set linger"))?;
    sock.set_rcvtimeo(100)
        .map_err(DaqError::zmq("set receive timeout"))?;
    // SUB: the receiving thread drains the socket into a counted queue; the socket's queue
    // covers the moments that thread does not run (beyond it ZeroMQ drops, which only the
    // sequence field reveals). PULL: beyond it ZeroMQ blocks the sender.
    sock.set_rcvhwm(cfg.socket_queue)
        .map_err(DaqError::zmq("set receive high-water mark"))?;
    match &cfg.socket {
        StreamSocket::Sub { endpoint, topic } => {
            sock.connect(endpoint).map_err(DaqError::zmq(format!(
                "job {group}: connect to {endpoint:?}"
            )))?;
            sock.set_subscribe(topic.as_bytes())
                .map_err(DaqError::zmq(format!(
                    "job {group}: subscribe to {topic:?}"
                )))?;
        }
        StreamSocket::Pull {
            endpoint,
            bind: true,
        } => sock
            .bind(endpoint)
            .map_err(DaqError::zmq(format!("job {group}: bind to {endpoint:?}")))?,
        StreamSocket::Pull {
            endpoint,
            bind: false,
        } => sock.connect(endpoint).map_err(DaqError::zmq(format!(
            "job {group}: connect to {endpoint:?}"
        )))?,
    }
    let fields = cfg.fields.clone();
    let keys = MessageKeys {
        time: cfg.time_field.clone(),
        sequence: cfg.sequence_field.clone(),
    };
    let specs = fields.iter().map(|f| f.spec.clone()).collect();
    let stats = SourceStats::default();
    let stop = Arc::new(AtomicBool::new(false));
    let drain_limit = usize::try_from(cfg.socket_queue).unwrap_or(0);
    let (inbox, receiver) = if pull {
        let inbox = Inbox::Socket {
            sock,
            _context: ctx,
        };
        (inbox, None)
    } else {
        let (tx, rx) = mpsc::channel::<Message>();
        let queued = Arc::new(Queued::new(MESSAGE_QUEUE_BYTES, MESSAGE_QUEUE));
        let (stop, stats, name) = (Arc::clone(&stop), stats.clone(), group.to_string());
        let q = Arc::clone(&queued);
        let receiver = std::thread::Builder::new()
            .name("daq-zmq-recv".into())
            .spawn(move || {
                let _keep_context_alive = ctx;
                receive(sock, tx, q, stop, stats, name, drain_limit)
            })
            .map_err(DaqError::thread("a ZeroMQ receiver thread"))?;
        (Inbox::Queue { rx, queued }, Some(receiver))
    };
    let (stop2, stats2, name) = (Arc::clone(&stop), stats.clone(), group.to_string());
    let dtypes: Vec<Dtype> = fields.iter().map(|f| f.spec.dtype).collect();
    let mut gaps = SequenceGaps::default();
    let mut take = move |msg: Message, rows: &mut Rows| {
        let r = append_message(&msg.frames, msg.arrived, &fields, &keys, rows);
        if keys.sequence.is_some() {
            let gap = gaps.see(r.seq, r.claimed_rows, msg.queue_dropped_before);
            if gap > 0 {
                stats2.dropped(DropReason::SequenceGap, gap);
            }
        }
        if let Err(e) = r.appended {
            stats2.bad_input(&name, &e);
        }
    };
    let endpoint = match &cfg.socket {
        StreamSocket::Sub { endpoint, .. } | StreamSocket::Pull { endpoint, .. } => {
            endpoint.clone()
        }
    };
    let spare: ReadingSpare = Arc::default();
    let job = DaqJob::new(group, specs, {
        let spare = Arc::clone(&spare);
        move || {
            // The vectors of the last read, handed back by the job: warm memory, no growth.
            let mut rows = match lock(&spare).take() {
                Some((time, columns)) => Rows { time, columns },
                None => Rows::new(&dtypes),
            };
            let failed = |e| ZmqReadError::Socket {
                what: "receive from",
                endpoint: endpoint.clone(),
                source: e,
            };
            if stop2.load(Ordering::SeqCst) {
                // The final read: every message still queued (a SUB job's receiver has
                // drained its socket), or what the PULL socket holds, at most `socket_queue`
                // messages (a sender still sending cannot hold the stop up).
                let limit = if pull { drain_limit } else { usize::MAX };
                for _ in 0..limit {
                    match inbox.next(false) {
                        Ok(Some(msg)) => take(msg, &mut rows),
                        Ok(None) => break,
                        Err(e) if rows.time.is_empty() => return Err(failed(e).into()),
                        Err(_) => break,
                    }
                }
            } else {
                // Wait for one message, then take what is queued behind it up to a read's size.
                // When the queue runs dry, one short pause lets messages gather: without it a
                // job faster than its sender is woken for every message (a futex wake and two
                // context switches each, the largest cost of single-row messages).
                let mut next = inbox.next(true);
                let mut paused = false;
                loop {
                    match next {
                        Ok(Some(msg)) => take(msg, &mut rows),
                        Ok(None) => break,
                        Err(e) if rows.time.is_empty() => return Err(failed(e).into()),
                        // Keep the rows taken; the error comes back at the next read.
                        Err(_) => break,
                    }
                    if rows.time.len() >= READ_ROWS || rows.bytes() >= READ_BYTES {
                        break;
                    }
                    next = inbox.next(false);
                    if matches!(next, Ok(None)) && !paused {
                        paused = true;
                        std::thread::sleep(GATHER_PAUSE);
                        next = inbox.next(false);
                    }
                }
            }
            if rows.time.is_empty() {
                return Ok(Reading::Skip);
            }
            Ok(Reading::Rows {
                time: rows.time,
                columns: rows.columns,
            })
        }
    })?;
    let job = job
        .with_mode(ReadMode::Constant)?
        .with_provided_time(true)
        .with_final_read(true)
        .with_source_stats(stats)
        .with_reading_spare(spare)
        .with_on_stop({
            let mut receiver = receiver;
            move || {
                stop.store(true, Ordering::SeqCst);
                // A SUB job's receiver takes what the socket still holds and ends (within its
                // 100 ms receive timeout): the final read then finds every message.
                if let Some(r) = receiver.take() {
                    if r.join().is_err() {
                        daq_log!(Error, "the ZeroMQ receiver thread panicked");
                    }
                }
            }
        });
    Ok(job.with_backpressure(pull))
}

/// A REQ socket polling `endpoint` every `period` with `request`.
fn request_job(
    group: &str,
    endpoint: &str,
    request: serde_json::Value,
    fields: Vec<JsonField>,
    period: Duration,
    timeout: Duration,
) -> Result<DaqJob, DaqError> {
    let ctx = zmq::Context::new();
    let endpoint = endpoint.to_string();
    let body = request.to_string().into_bytes();
    let connect = {
        let (ctx, endpoint) = (ctx.clone(), endpoint.clone());
        move || -> Result<zmq::Socket, zmq::Error> {
            let s = ctx.socket(zmq::REQ)?;
            s.set_linger(0)?;
            s.connect(&endpoint)?;
            Ok(s)
        }
    };
    // Fail early on a malformed endpoint.
    let first = connect().map_err(DaqError::zmq(format!(
        "job {group}: connect to {endpoint:?}"
    )))?;
    let mut sock = Some(first);
    let timeout_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
    let specs = fields.iter().map(|f| f.spec.clone()).collect();
    let job = DaqJob::new(group, specs, move || {
        let socket_error = |what, source| ZmqReadError::Socket {
            what,
            endpoint: endpoint.clone(),
            source,
        };
        let s = match sock.take() {
            Some(s) => s,
            None => connect().map_err(|e| socket_error("connect to", e))?,
        };
        s.send(&body[..], 0)
            .map_err(|e| socket_error("send to", e))?;
        let ready = s
            .poll(zmq::POLLIN, timeout_ms)
            .map_err(|e| socket_error("poll", e))?;
        if ready == 0 {
            // Dropping the socket abandons the request (lazy pirate).
            return Err(ZmqReadError::NoReply {
                endpoint: endpoint.clone(),
                seconds: timeout.as_secs_f64(),
            }
            .into());
        }
        let frames = s
            .recv_multipart(0)
            .map_err(|e| socket_error("receive from", e))?;
        sock = Some(s);
        let obj = parse_message(&frames).map_err(ZmqReadError::from)?;
        if obj.get("ok") != Some(&serde_json::Value::Bool(true)) {
            let why = obj
                .get("error")
                .map(|e| e.to_string())
                .unwrap_or_else(|| obj.to_string());
            return Err(ZmqReadError::NotOk {
                endpoint: endpoint.clone(),
                why,
            }
            .into());
        }
        Ok(Reading::Row(
            entries_from_json(&obj, &fields).map_err(ZmqReadError::from)?,
        ))
    })?;
    job.with_mode(ReadMode::Periodic(period))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::column::{Column, Dtype};
    use crate::job::DatasetSpec;

    fn fields() -> Vec<JsonField> {
        vec![
            JsonField {
                spec: DatasetSpec::array("s", Dtype::F64, &[3]),
                key: "s".into(),
            },
            JsonField {
                spec: DatasetSpec::scalar("t", Dtype::F64),
                key: "t".into(),
            },
        ]
    }

    fn empty() -> Rows {
        Rows::new(&[Dtype::F64, Dtype::F64])
    }

    /// Appends a binary message to `rows`; the error text when it is refused (and then `rows`
    /// must be unchanged).
    fn append(
        header: &str,
        raw: &[Vec<u8>],
        time_key: Option<&str>,
        rows: &mut Rows,
    ) -> Result<(), String> {
        let h: serde_json::Value = serde_json::from_str(header).unwrap();
        let before: Vec<usize> = rows.columns.iter().map(Column::len).collect();
        let r = append_binary(&h, raw, &fields(), 7.0, time_key, rows);
        if r.is_err() {
            // What append_message does on error.
            for (c, n) in rows.columns.iter_mut().zip(before) {
                c.truncate(n);
            }
        }
        r.map_err(|e| e.to_string())
    }

    #[test]
    fn raw_frames_after_a_json_header() {
        let raw: Vec<u8> = [1.5f32, 2.5, -3.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let header = br#"{"t": NaN, "arrays": [{"key": "s", "dtype": "<f4", "shape": [3]}]}"#;
        let frames = vec![b"topic".to_vec(), header.to_vec(), raw.clone()];
        let (h, rest) = binary_header(&frames).unwrap();
        let mut rows = empty();
        append_binary(&h, rest, &fields(), 7.0, None, &mut rows).unwrap();
        assert_eq!(rows.time, vec![7.0], "stamped at arrival");
        assert_eq!(rows.columns[0], Column::F64(vec![1.5, 2.5, -3.0]));
        assert!(matches!(&rows.columns[1], Column::F64(v) if v.len() == 1 && v[0].is_nan()));
        let mut rows = empty();
        let mut err = |header: &str, raw: Vec<Vec<u8>>| match append(header, &raw, None, &mut rows)
        {
            Ok(()) => panic!("accepted {header}"),
            Err(e) => e,
        };
        let h = r#"{"t": 1, "arrays": [{"key": "s", "dtype": "float32", "shape": [3]}]}"#;
        assert!(err(h, vec![]).contains("1 arrays, the message has 0 raw frames"));
        assert!(err(h, vec![raw[..8].to_vec()]).contains("8 bytes for 1 rows of shape [3]"));
        let big_endian = r#"{"t": 1, "arrays": [{"key": "s", "dtype": ">f4", "shape": [3]}]}"#;
        assert!(err(big_endian, vec![raw.clone()]).contains("little-endian"));
        let wrong = r#"{"t": 1, "arrays": [{"key": "s", "dtype": "float32", "shape": [1, 2]}]}"#;
        assert!(err(wrong, vec![raw[..8].to_vec()]).contains("the field takes 3"));
        let no_t = r#"{"arrays": [{"key": "s", "dtype": "float32", "shape": [3]}]}"#;
        assert!(err(no_t, vec![raw.clone()]).contains("\"t\""));
        assert_eq!(rows.time.len(), 0);
        assert!(
            rows.columns.iter().all(Column::is_empty),
            "a refused message leaves nothing behind: {:?}",
            rows.columns
        );
        assert!(
            binary_header(&[header.to_vec()]).is_none(),
            "one frame is JSON"
        );
    }

    #[test]
    fn raw_bytes_of_any_numeric_dtype_are_converted_exactly() {
        let mut col = Column::with_capacity(Dtype::I64, 0);
        let big = (1i64 << 53) + 1;
        append_le_bytes(&mut col, Dtype::I64, &big.to_le_bytes()).unwrap();
        append_le_bytes(&mut col, Dtype::U8, &[7]).unwrap();
        assert_eq!(col, Column::I64(vec![big, 7]));
        let mut narrow = Column::with_capacity(Dtype::I16, 0);
        assert!(append_le_bytes(&mut narrow, Dtype::I32, &70_000i32.to_le_bytes()).is_err());
        assert!(narrow.is_empty(), "nothing appended on a failed conversion");
    }

    #[test]
    fn a_batched_header_carries_many_rows() {
        let s: Vec<u8> = (0..6).flat_map(|x| (x as f32).to_le_bytes()).collect();
        let t: Vec<u8> = [10i64, 20].iter().flat_map(|x| x.to_le_bytes()).collect();
        let header = r#"{"rows": 2, "seq": 5, "when": [1.0, 2.0], "arrays": [
            {"key": "s", "dtype": "float32", "shape": [3]}, {"key": "t", "dtype": "int64", "shape": []}]}"#;
        let frames = vec![header.as_bytes().to_vec(), s.clone(), t.clone()];
        assert_eq!(message_rows(&frames), 2);
        let mut rows = empty();
        append(header, &[s.clone(), t.clone()], None, &mut rows).unwrap();
        assert_eq!(rows.time, vec![7.0, 7.0], "stamped at arrival");
        assert_eq!(
            rows.columns[0],
            Column::F64(vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
        );
        assert_eq!(rows.columns[1], Column::F64(vec![10.0, 20.0]));
        append(header, &[s.clone(), t.clone()], Some("when"), &mut rows).unwrap();
        assert_eq!(
            rows.time,
            vec![7.0, 7.0, 1.0, 2.0],
            "appended after the first"
        );
        let mut e =
            |header: &str, raw: &[Vec<u8>]| match append(header, raw, Some("when"), &mut rows) {
                Ok(()) => panic!("accepted {header}"),
                Err(e) => e,
            };
        let s_only = r#"{"rows": 2, "t": 1, "when": [1, 2], "arrays": [{"key": "s", "dtype": "float32", "shape": [3]}]}"#;
        assert!(e(s_only, std::slice::from_ref(&s)).contains("every field from a raw array"));
        let short_time = r#"{"rows": 2, "when": [1], "arrays": [{"key": "s", "dtype": "float32", "shape": [3]},
            {"key": "t", "dtype": "int64", "shape": []}]}"#;
        assert!(e(short_time, &[s.clone(), t.clone()]).contains("list of 2 times"));
        let zero = r#"{"rows": 0, "arrays": []}"#;
        assert!(e(zero, &[]).contains("1 to"));
        assert_eq!(
            rows.columns[0].len(),
            12,
            "the refused messages left nothing"
        );
        assert_eq!(rows.columns[1].len(), 4);
    }

    fn pull_pair(name: &str) -> (zmq::Context, zmq::Socket, zmq::Socket) {
        let ctx = zmq::Context::new();
        let pull = ctx.socket(zmq::PULL).unwrap();
        pull.set_rcvtimeo(20).unwrap();
        pull.bind(&format!("inproc://{name}")).unwrap();
        let push = ctx.socket(zmq::PUSH).unwrap();
        push.connect(&format!("inproc://{name}")).unwrap();
        (ctx, pull, push)
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let t0 = std::time::Instant::now();
        while !done() {
            assert!(t0.elapsed() < Duration::from_secs(10), "{what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_full_queue_drops_whole_messages_and_counts_their_rows() {
        let (_ctx, pull, push) = pull_pair("queue-test");
        let (tx, rx) = mpsc::channel::<Message>();
        // The byte limit reached: every message is dropped.
        let queued = Arc::new(Queued::new(100, 2));
        *lock(&queued.held) = (100, 1);
        let (stop, stats) = (Arc::new(AtomicBool::new(false)), SourceStats::default());
        let thread = {
            let (queued, stop, stats) = (Arc::clone(&queued), Arc::clone(&stop), stats.clone());
            std::thread::spawn(move || receive(pull, tx, queued, stop, stats, "q".into(), 2))
        };
        let batch = br#"{"rows": 5, "arrays": [{"key": "s", "dtype": "f4", "shape": []}]}"#;
        push.send_multipart([&batch[..], &[0u8; 20][..]], 0)
            .unwrap();
        push.send(&b"{}"[..], 0).unwrap();
        wait_for("6 rows dropped", || stats.drops().source_queue >= 6);
        // Room again: three messages, the queue takes two, the third is dropped.
        *lock(&queued.held) = (0, 0);
        for _ in 0..3 {
            push.send(&b"{}"[..], 0).unwrap();
        }
        wait_for("7 rows dropped", || stats.drops().source_queue >= 7);
        let first = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(
            first.queue_dropped_before, 6,
            "5 + 1 rows dropped before it"
        );
        assert_eq!(
            *lock(&queued.held),
            (4, 2),
            "two messages of 2 bytes queued"
        );
        stop.store(true, Ordering::SeqCst);
        thread.join().unwrap();
        assert_eq!(stats.drops().source_queue, 7);
    }

    #[test]
    fn at_stop_the_receiver_takes_what_the_socket_holds_up_to_its_limit() {
        let (_ctx, pull, push) = pull_pair("stop-test");
        let (tx, rx) = mpsc::channel::<Message>();
        // A full queue: only the stop's drain takes messages, over the limits.
        let queued = Arc::new(Queued::new(1, 1));
        *lock(&queued.held) = (1, 1);
        for i in 0..5u8 {
            push.send(&[i][..], 0).unwrap();
        }
        // The messages are in the PULL socket's queue before the receiver starts, stopped.
        let t0 = std::time::Instant::now();
        while !pull.get_events().is_ok_and(|e| e.contains(zmq::POLLIN)) {
            assert!(t0.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(5));
        }
        let stats = SourceStats::default();
        let stop = Arc::new(AtomicBool::new(true));
        receive(
            pull,
            tx,
            Arc::clone(&queued),
            stop,
            stats.clone(),
            "s".into(),
            3,
        );
        let got: Vec<u8> = rx.try_iter().map(|m| m.frames[0][0]).collect();
        assert_eq!(
            got,
            vec![0, 1, 2],
            "three taken (the drain limit), in order"
        );
        assert_eq!(*lock(&queued.held), (4, 4));
        assert_eq!(stats.drops().total(), 0);
    }

    #[test]
    fn a_pull_inbox_reads_the_socket_itself() {
        let (ctx, pull, push) = pull_pair("inbox-test");
        let inbox = Inbox::Socket {
            sock: pull,
            _context: ctx,
        };
        assert!(matches!(inbox.next(false), Ok(None)), "nothing there");
        push.send_multipart([&b"h"[..], &b"raw"[..]], 0).unwrap();
        let msg = loop {
            if let Some(m) = inbox.next(true).unwrap() {
                break m;
            }
        };
        assert_eq!(msg.frames.len(), 2, "the frames of one message");
        assert_eq!(&msg.frames[1][..], b"raw");
        assert_eq!(msg.bytes(), 4);
    }

    #[test]
    fn sequence_gaps_count_what_was_not_received_once() {
        let mut g = SequenceGaps::default();
        assert_eq!(
            g.see(Some(100), 1, 0),
            0,
            "the first message starts the count"
        );
        assert_eq!(g.see(Some(101), 1, 0), 0);
        assert_eq!(g.see(Some(110), 1, 0), 8, "102..=109 missing");
        assert_eq!(g.see(Some(120), 1, 3), 6, "3 of 9 counted at the queue");
        assert_eq!(g.see(None, 1, 0), 0, "an unreadable number");
        assert_eq!(
            g.see(Some(125), 4, 0),
            3,
            "121..=124 less the unreadable one"
        );
        assert_eq!(g.see(Some(129), 1, 0), 0, "a batch of 4 covered 125..=128");
        assert_eq!(g.see(Some(3), 1, 0), 0, "a restarted sender");
        assert_eq!(g.see(Some(5), 1, 0), 1);
    }

    #[test]
    fn python_json_constants_outside_strings() {
        let v = parse_json(br#"{"a": NaN, "b": -Infinity, "c": "NaN Infinity", "d": [Infinity]}"#)
            .unwrap();
        assert!(v["a"].is_null());
        assert_eq!(v["b"], "-Infinity");
        assert_eq!(v["c"], "NaN Infinity");
        assert_eq!(v["d"][0], "Infinity");
    }
}
