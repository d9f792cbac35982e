//! ZeroMQ sources with JSON payloads.
//!
//! - [`subscriber_job`]: a SUB socket; every message (the last frame of a multipart message, or
//!   a single frame `"topic {json}"`) is one row, taken from named fields. Constant read mode:
//!   the getter waits up to 100 ms for a message, so a stop is seen quickly.
//! - [`request_job`]: a REQ socket polled on a period with a JSON request (default
//!   `{"cmd": "status"}`, the `xsp3-acquire serve` control socket); the reply must be an object
//!   with `"ok": true`, and the named numeric fields become a row. A request without a reply in
//!   `timeout` is an error and the socket is recreated (a REQ socket cannot send twice).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::job::{DropReason, SourceStats};
use crate::log::daq_log;
use crate::time::{Clock, SystemClock};

use super::{entries_from_json, parse_fields, time_from_json, JsonError, JsonField};
use crate::column::Dtype;
use crate::error::DaqError;
use crate::job::{DaqJob, ReadMode, Reading};
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

/// A ZeroMQ endpoint to connect to: `tcp://host:port` (port 1-65535) or `ipc://path` (at most
/// 107 bytes, a Unix socket path).
fn endpoint(v: &toml::Value) -> Result<String, SettingError> {
    let bad = |why: &str| SettingError::invalid("endpoint", shown(v), why);
    let e = v.as_str().ok_or_else(|| {
        SettingError::wrong_type("endpoint", v, "a string like \"tcp://127.0.0.1:5556\"")
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
        "not a ZeroMQ endpoint to connect to, like \"tcp://127.0.0.1:5556\" or \"ipc:///tmp/x\"",
    ))
}

/// A checked subscriber job.
#[derive(Debug, Clone, PartialEq)]
pub struct SubConfig {
    pub endpoint: String,
    pub topic: String,
    pub fields: Vec<JsonField>,
    /// The message field holding the time; `None` stamps arrival.
    pub time_field: Option<String>,
    /// The message field holding the sender's row sequence number: gaps count as dropped.
    pub sequence_field: Option<String>,
    /// Messages the SUB socket holds before ZeroMQ drops (its receive high-water mark).
    pub socket_queue: i32,
}

impl SubConfig {
    /// Reads and checks the settings of `source = "zmq_sub"`.
    pub fn from_table(table: &toml::Table) -> Result<SubConfig, SettingError> {
        let s: SubSettings = setting::from_table(table, "source \"zmq_sub\"")?;
        let socket_queue = match &s.socket_queue {
            None => SOCKET_QUEUE,
            Some(v) => match v.as_integer() {
                Some(n) if (1..=i64::from(i32::MAX)).contains(&n) => n as i32,
                Some(_) => {
                    return Err(SettingError::invalid(
                        "socket_queue",
                        shown(v),
                        format!("messages, from 1 to {}", i32::MAX),
                    ))
                }
                None => {
                    return Err(SettingError::wrong_type(
                        "socket_queue",
                        v,
                        "a number of messages",
                    ))
                }
            },
        };
        Ok(SubConfig {
            endpoint: endpoint(&s.endpoint)?,
            topic: s.topic.unwrap_or_default(),
            fields: parse_fields(&s.fields, Dtype::F64)?,
            time_field: s.time_field,
            sequence_field: s.sequence_field,
            socket_queue,
        })
    }

    /// The job (connects the socket).
    pub fn job(&self, group: &str) -> Result<DaqJob, DaqError> {
        subscriber_job(group, self)
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
            endpoint: endpoint(&s.endpoint)?,
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
pub fn parse_message(frames: &[Vec<u8>]) -> Result<serde_json::Value, MessageError> {
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

/// Messages the SUB socket itself may hold by default (its receive high-water mark).
const SOCKET_QUEUE: i32 = 100_000;

/// Messages queued between the receiving thread and the job.
const MESSAGE_QUEUE: usize = 10_000;

/// Bytes of the messages queued between the receiving thread and the job (large binary
/// messages fill this before the message count).
const MESSAGE_QUEUE_BYTES: usize = 256 << 20;

/// Most rows one batched binary message may carry.
const MAX_BATCH_ROWS: usize = 1 << 20;

/// A message, when it arrived, and how many rows the receiving thread dropped at the full
/// queue since the message before it (so a sequence gap is not counted twice).
struct Message {
    arrived: f64,
    frames: Vec<Vec<u8>>,
    queue_dropped_before: u64,
}

impl Message {
    fn bytes(&self) -> usize {
        self.frames.iter().map(Vec::len).sum()
    }
}

/// Rows a message carries: a batched binary message's `"rows"`, otherwise 1.
fn message_rows(frames: &[Vec<u8>]) -> u64 {
    binary_header(frames)
        .and_then(|(h, _)| h.get("rows").and_then(serde_json::Value::as_u64))
        .unwrap_or(1)
}

/// Takes every message off the socket as it arrives (so the socket's own queue never
/// overflows while the job is busy) into `tx`; the rows of a message that finds `tx` full, or
/// the queued bytes (`queued`, which the job lowers as it takes messages) at
/// [`MESSAGE_QUEUE_BYTES`], are dropped and counted (`source_queue`). Ends when `stop` is set
/// or the job is gone.
fn receive(
    sock: zmq::Socket,
    tx: SyncSender<Message>,
    queued: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    stats: SourceStats,
    group: String,
) {
    let mut dropped_since_last = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let frames = match sock.recv_multipart(0) {
            Ok(f) => f,
            Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => continue,
            Err(e) => {
                daq_log!(Error, "job {group}: receive: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let msg = Message {
            arrived: SystemClock.now(),
            frames,
            queue_dropped_before: dropped_since_last,
        };
        let bytes = msg.bytes();
        // One message is always taken, however large, when nothing is queued.
        let q = queued.load(Ordering::SeqCst);
        let room = q == 0 || q + bytes <= MESSAGE_QUEUE_BYTES;
        let full = if room {
            queued.fetch_add(bytes, Ordering::SeqCst);
            match tx.try_send(msg) {
                Ok(()) => {
                    dropped_since_last = 0;
                    None
                }
                Err(TrySendError::Full(msg)) => {
                    queued.fetch_sub(bytes, Ordering::SeqCst);
                    Some(msg)
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        } else {
            Some(msg)
        };
        if let Some(msg) = full {
            let rows = message_rows(&msg.frames);
            dropped_since_last += rows;
            stats.dropped(DropReason::SourceQueue, rows);
        }
    }
}

/// The rows of one message: one row, or the rows of a batched binary message (one column per
/// field, `time.len()` entries each).
enum MessageRows {
    One(f64, Vec<crate::column::Entry>),
    Batch {
        time: Vec<f64>,
        columns: Vec<crate::column::Column>,
    },
}

/// A parsed message: its sequence number (when the job has a sequence field and the message
/// one that could be read), the rows it claims, and its rows or why it has none.
struct Received {
    seq: Option<u64>,
    claimed_rows: u64,
    rows: Result<MessageRows, ZmqReadError>,
}

/// The rows of a message with their time (the message's own, or its arrival), or bad input.
fn message_rows_of(msg: &Message, fields: &[JsonField], keys: &MessageKeys) -> Received {
    let mut claimed_rows = 1;
    let (obj, rows) = match binary_header(&msg.frames) {
        Some((header, raw)) => {
            claimed_rows = header
                .get("rows")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(1);
            let rows = binary_rows(&header, raw, fields, msg.arrived, keys.time.as_deref());
            (Some(header), rows)
        }
        None => match parse_message(&msg.frames) {
            Ok(obj) => {
                let rows = entries_from_json(&obj, fields)
                    .map_err(ZmqReadError::from)
                    .and_then(|e| {
                        let t = match keys.time.as_deref() {
                            Some(k) => time_from_json(&obj, k)?,
                            None => msg.arrived,
                        };
                        Ok(MessageRows::One(t, e))
                    });
                (Some(obj), rows)
            }
            Err(e) => (None, Err(e.into())),
        },
    };
    let seq = keys
        .sequence
        .as_deref()
        .zip(obj.as_ref())
        .and_then(|(k, o)| super::lookup(o, k))
        .and_then(serde_json::Value::as_u64);
    Received {
        seq,
        claimed_rows,
        rows,
    }
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
fn binary_header(frames: &[Vec<u8>]) -> Option<(serde_json::Value, &[Vec<u8>])> {
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

/// The arrays of a binary message, each decoded from its raw frame (`rows` entries of its
/// shape, little-endian, any numeric dtype).
fn decode_arrays<'h>(
    header: &'h serde_json::Value,
    raw: &[Vec<u8>],
    rows: usize,
) -> Result<Vec<(&'h str, crate::column::Column)>, BinaryError> {
    use crate::column::Dtype;
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
    let mut decoded = Vec::with_capacity(arrays.len());
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
        let elements = shape
            .iter()
            .try_fold(rows, |acc, &n| acc.checked_mul(n))
            .unwrap_or(usize::MAX);
        let col = column_from_le_bytes(dt, bytes)
            .filter(|c| c.len() == elements)
            .ok_or_else(|| BinaryError::Size {
                key: key.to_string(),
                bytes: bytes.len(),
                rows,
                shape,
                dtype: dt,
            })?;
        decoded.push((key, col));
    }
    Ok(decoded)
}

/// The rows of a binary message: one row (arrays from raw frames, every other field from the
/// header as in JSON messages), or with `"rows": N` a batch of N rows in which every field is a
/// raw array of N entries, stamped with the arrival time or the header's list of N times.
fn binary_rows(
    header: &serde_json::Value,
    raw: &[Vec<u8>],
    fields: &[JsonField],
    arrived: f64,
    time_key: Option<&str>,
) -> Result<MessageRows, ZmqReadError> {
    use crate::column::{Column, Entry};
    let batch = match header.get("rows") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| (1..=MAX_BATCH_ROWS).contains(n))
                .ok_or_else(|| BinaryError::Rows(v.to_string()))?,
        ),
    };
    let rows = batch.unwrap_or(1);
    let decoded = decode_arrays(header, raw, rows)?;
    let mut columns = Vec::with_capacity(fields.len());
    let mut entries = Vec::with_capacity(fields.len());
    for f in fields {
        match decoded.iter().find(|(k, _)| *k == f.key) {
            Some((key, col)) => {
                let want = f.spec.entry_len() * rows;
                if col.len() != want {
                    return Err(BinaryError::Elements {
                        key: key.to_string(),
                        elements: col.len(),
                        want,
                    }
                    .into());
                }
                let mut typed = Column::with_capacity(f.spec.dtype, want);
                typed
                    .extend_from(col)
                    .map_err(|source| JsonError::DoesNotFit {
                        key: key.to_string(),
                        source,
                    })?;
                if batch.is_some() {
                    columns.push(typed);
                } else {
                    entries.push(Entry::Array(typed));
                }
            }
            None if batch.is_some() => {
                return Err(BinaryError::BatchField { key: f.key.clone() }.into())
            }
            None => entries.extend(entries_from_json(header, std::slice::from_ref(f))?),
        }
    }
    let Some(rows) = batch else {
        let t = match time_key {
            Some(k) => time_from_json(header, k)?,
            None => arrived,
        };
        return Ok(MessageRows::One(t, entries));
    };
    let time = match time_key {
        None => vec![arrived; rows],
        Some(k) => super::lookup(header, k)
            .and_then(|v| v.as_array())
            .filter(|a| a.len() == rows)
            .and_then(|a| a.iter().map(serde_json::Value::as_f64).collect())
            .ok_or_else(|| BinaryError::BatchTime {
                key: k.to_string(),
                rows,
            })?,
    };
    Ok(MessageRows::Batch { time, columns })
}

/// Little-endian elements of `dtype` (numpy's native order on x86 and ARM), copied out of a
/// frame whatever its alignment; `None` when the length is not a whole number of elements or
/// the dtype is not numeric.
fn column_from_le_bytes(
    dtype: crate::column::Dtype,
    bytes: &[u8],
) -> Option<crate::column::Column> {
    use crate::column::{Column, Dtype};
    macro_rules! read {
        ($t:ty, $var:ident) => {{
            const N: usize = std::mem::size_of::<$t>();
            let chunks = bytes.chunks_exact(N);
            if !chunks.remainder().is_empty() {
                return None;
            }
            Column::$var(
                chunks
                    .map(|c| {
                        let mut a = [0u8; N];
                        a.copy_from_slice(c);
                        <$t>::from_le_bytes(a)
                    })
                    .collect(),
            )
        }};
    }
    Some(match dtype {
        Dtype::F64 => read!(f64, F64),
        Dtype::F32 => read!(f32, F32),
        Dtype::I64 => read!(i64, I64),
        Dtype::I32 => read!(i32, I32),
        Dtype::I16 => read!(i16, I16),
        Dtype::I8 => read!(i8, I8),
        Dtype::U64 => read!(u64, U64),
        Dtype::U32 => read!(u32, U32),
        Dtype::U16 => read!(u16, U16),
        Dtype::U8 => read!(u8, U8),
        Dtype::FixedStr(_) | Dtype::Str => return None,
    })
}

/// A SUB socket on the config's endpoint (connect), subscribed to its topic. A thread takes
/// messages off the socket as they arrive; each is one row (or a batch of rows), stamped at
/// arrival unless a time field names its time. A message that is not a row is counted as bad
/// input; gaps in the sequence field are counted as dropped; at stop the queued messages are
/// still stored.
fn subscriber_job(group: &str, cfg: &SubConfig) -> Result<DaqJob, DaqError> {
    let ctx = zmq::Context::new();
    let sock = ctx
        .socket(zmq::SUB)
        .map_err(DaqError::zmq(format!("job {group}: SUB socket")))?;
    sock.set_linger(0).map_err(DaqError::zmq("set linger"))?;
    sock.set_rcvtimeo(100)
        .map_err(DaqError::zmq("set receive timeout"))?;
    // The receiving thread drains the socket into a counted queue; the socket's queue covers
    // the moments that thread does not run (beyond it ZeroMQ drops, which only the sequence
    // field reveals).
    sock.set_rcvhwm(cfg.socket_queue)
        .map_err(DaqError::zmq("set receive high-water mark"))?;
    let endpoint = &cfg.endpoint;
    sock.connect(endpoint).map_err(DaqError::zmq(format!(
        "job {group}: connect to {endpoint:?}"
    )))?;
    sock.set_subscribe(cfg.topic.as_bytes())
        .map_err(DaqError::zmq(format!(
            "job {group}: subscribe to {:?}",
            cfg.topic
        )))?;
    let fields = cfg.fields.clone();
    let keys = MessageKeys {
        time: cfg.time_field.clone(),
        sequence: cfg.sequence_field.clone(),
    };
    let specs = fields.iter().map(|f| f.spec.clone()).collect();
    let stats = SourceStats::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::sync_channel::<Message>(MESSAGE_QUEUE);
    let queued = Arc::new(AtomicUsize::new(0));
    {
        let (stop, stats, name) = (Arc::clone(&stop), stats.clone(), group.to_string());
        let queued = Arc::clone(&queued);
        std::thread::Builder::new()
            .name("daq-zmq-sub".into())
            .spawn(move || {
                let _keep_context_alive = ctx;
                receive(sock, tx, queued, stop, stats, name)
            })
            .map_err(DaqError::thread("a ZeroMQ receiver thread"))?;
    }
    let (stop2, stats2, name) = (Arc::clone(&stop), stats.clone(), group.to_string());
    let (stats3, name3) = (stats.clone(), group.to_string());
    let dtypes: Vec<Dtype> = fields.iter().map(|f| f.spec.dtype).collect();
    let mut gaps = SequenceGaps::default();
    let mut take = move |msg: &Message| -> Option<MessageRows> {
        queued.fetch_sub(msg.bytes(), Ordering::SeqCst);
        let r = message_rows_of(msg, &fields, &keys);
        if keys.sequence.is_some() {
            let gap = gaps.see(r.seq, r.claimed_rows, msg.queue_dropped_before);
            if gap > 0 {
                stats2.dropped(DropReason::SequenceGap, gap);
            }
        }
        match r.rows {
            Ok(rows) => Some(rows),
            Err(e) => {
                stats2.bad_input(&name, &e);
                None
            }
        }
    };
    let job = DaqJob::new(group, specs, move || {
        if stop2.load(Ordering::SeqCst) {
            // The final read: every message still queued, as rows.
            let mut rows = Vec::new();
            while let Ok(msg) = rx.try_recv() {
                rows.extend(take(&msg));
            }
            return Ok(rows_of(rows, &dtypes, &stats3, &name3));
        }
        let mut wait = Duration::from_millis(100);
        loop {
            let msg = match rx.recv_timeout(wait) {
                Ok(m) => m,
                Err(_) => return Ok(Reading::Skip),
            };
            match take(&msg) {
                Some(MessageRows::One(t, e)) => return Ok(Reading::TimedRow(t, e)),
                Some(MessageRows::Batch { time, columns }) => {
                    return Ok(Reading::Rows { time, columns })
                }
                // Go on with the next message without pausing.
                None => wait = Duration::ZERO,
            }
        }
    })?;
    Ok(job
        .with_mode(ReadMode::Constant)?
        .with_provided_time(true)
        .with_final_read(true)
        .with_source_stats(stats)
        .with_on_stop(move || stop.store(true, Ordering::SeqCst)))
}

/// Rows as one bulk reading (one column per field, flattened); a row whose values do not fit
/// the fields' dtypes is bad input.
fn rows_of(rows: Vec<MessageRows>, dtypes: &[Dtype], stats: &SourceStats, group: &str) -> Reading {
    use crate::column::Column;
    let mut columns: Vec<Column> = dtypes
        .iter()
        .map(|d| Column::with_capacity(*d, 0))
        .collect();
    let mut kept = Vec::with_capacity(rows.len());
    for r in rows {
        let before: Vec<usize> = columns.iter().map(Column::len).collect();
        let (time, pushed) = match r {
            MessageRows::One(t, row) => (
                vec![t],
                columns
                    .iter_mut()
                    .zip(row)
                    .try_for_each(|(c, e)| c.push_entry(&e)),
            ),
            MessageRows::Batch {
                time,
                columns: cols,
            } => (
                time,
                columns
                    .iter_mut()
                    .zip(&cols)
                    .try_for_each(|(c, src)| c.extend_from(src)),
            ),
        };
        match pushed {
            Ok(()) => kept.extend(time),
            Err(e) => {
                for (c, n) in columns.iter_mut().zip(before) {
                    c.truncate(n);
                }
                stats.bad_input(group, &e);
            }
        }
    }
    if kept.is_empty() {
        Reading::Skip
    } else {
        Reading::Rows {
            time: kept,
            columns,
        }
    }
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
    use crate::column::{Column, Dtype, Entry};
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

    fn one(rows: Result<MessageRows, ZmqReadError>) -> Vec<Entry> {
        match rows {
            Ok(MessageRows::One(_, e)) => e,
            Ok(MessageRows::Batch { .. }) => panic!("a batch"),
            Err(e) => panic!("{e}"),
        }
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
        let e = one(binary_rows(&h, rest, &fields(), 7.0, None));
        assert_eq!(e[0], Entry::Array(Column::F64(vec![1.5, 2.5, -3.0])));
        assert!(matches!(e[1], Entry::Scalar(crate::column::Scalar::Float(x)) if x.is_nan()));
        let err = |header: &str, raw: Vec<Vec<u8>>| {
            let h: serde_json::Value = serde_json::from_str(header).unwrap();
            match binary_rows(&h, &raw, &fields(), 7.0, None) {
                Ok(_) => panic!("accepted {header}"),
                Err(e) => e.to_string(),
            }
        };
        let h = r#"{"t": 1, "arrays": [{"key": "s", "dtype": "float32", "shape": [3]}]}"#;
        assert!(err(h, vec![]).contains("1 arrays, the message has 0 raw frames"));
        assert!(err(h, vec![raw[..8].to_vec()]).contains("8 bytes for 1 rows of shape [3]"));
        let big_endian = r#"{"t": 1, "arrays": [{"key": "s", "dtype": ">f4", "shape": [3]}]}"#;
        assert!(err(big_endian, vec![raw.clone()]).contains("little-endian"));
        let wrong = r#"{"t": 1, "arrays": [{"key": "s", "dtype": "float32", "shape": [1, 2]}]}"#;
        assert!(err(wrong, vec![raw[..8].to_vec()]).contains("the field takes 3"));
        assert!(
            binary_header(&[header.to_vec()]).is_none(),
            "one frame is JSON"
        );
    }

    #[test]
    fn a_batched_header_carries_many_rows() {
        let s: Vec<u8> = (0..6).flat_map(|x| (x as f32).to_le_bytes()).collect();
        let t: Vec<u8> = [10i64, 20].iter().flat_map(|x| x.to_le_bytes()).collect();
        let header = r#"{"rows": 2, "seq": 5, "when": [1.0, 2.0], "arrays": [
            {"key": "s", "dtype": "float32", "shape": [3]}, {"key": "t", "dtype": "int64", "shape": []}]}"#;
        let frames = vec![header.as_bytes().to_vec(), s.clone(), t.clone()];
        assert_eq!(message_rows(&frames), 2);
        let (h, raw) = binary_header(&frames).unwrap();
        match binary_rows(&h, raw, &fields(), 7.0, None) {
            Ok(MessageRows::Batch { time, columns }) => {
                assert_eq!(time, vec![7.0, 7.0], "stamped at arrival");
                assert_eq!(columns[0], Column::F64(vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]));
                assert_eq!(columns[1], Column::F64(vec![10.0, 20.0]));
            }
            _ => panic!("not a batch"),
        }
        match binary_rows(&h, raw, &fields(), 7.0, Some("when")) {
            Ok(MessageRows::Batch { time, .. }) => assert_eq!(time, vec![1.0, 2.0]),
            _ => panic!("not a batch"),
        }
        let e = |header: &str, raw: &[Vec<u8>]| {
            let h: serde_json::Value = serde_json::from_str(header).unwrap();
            match binary_rows(&h, raw, &fields(), 7.0, Some("when")) {
                Ok(_) => panic!("accepted {header}"),
                Err(e) => e.to_string(),
            }
        };
        let s_only = r#"{"rows": 2, "t": 1, "when": [1, 2], "arrays": [{"key": "s", "dtype": "float32", "shape": [3]}]}"#;
        assert!(e(s_only, std::slice::from_ref(&s)).contains("every field from a raw array"));
        let short_time = r#"{"rows": 2, "when": [1], "arrays": [{"key": "s", "dtype": "float32", "shape": [3]},
            {"key": "t", "dtype": "int64", "shape": []}]}"#;
        assert!(e(short_time, &[s.clone(), t.clone()]).contains("list of 2 times"));
        let zero = r#"{"rows": 0, "arrays": []}"#;
        assert!(e(zero, &[]).contains("1 to"));
    }

    #[test]
    fn a_full_queue_drops_whole_messages_and_counts_their_rows() {
        let ctx = zmq::Context::new();
        let pull = ctx.socket(zmq::PULL).unwrap();
        pull.set_rcvtimeo(20).unwrap();
        pull.bind("inproc://queue-test").unwrap();
        let push = ctx.socket(zmq::PUSH).unwrap();
        push.connect("inproc://queue-test").unwrap();
        let (tx, rx) = mpsc::sync_channel::<Message>(2);
        // The byte limit reached: every message is dropped.
        let queued = Arc::new(AtomicUsize::new(MESSAGE_QUEUE_BYTES));
        let (stop, stats) = (Arc::new(AtomicBool::new(false)), SourceStats::default());
        let thread = {
            let (queued, stop, stats) = (Arc::clone(&queued), Arc::clone(&stop), stats.clone());
            std::thread::spawn(move || receive(pull, tx, queued, stop, stats, "q".into()))
        };
        let batch = br#"{"rows": 5, "arrays": [{"key": "s", "dtype": "f4", "shape": []}]}"#;
        push.send_multipart([&batch[..], &[0u8; 20][..]], 0)
            .unwrap();
        push.send(&b"{}"[..], 0).unwrap();
        let t0 = std::time::Instant::now();
        while stats.drops().source_queue < 6 {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "{:?}",
                stats.drops()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // Room again: three messages, the channel takes two, the third is dropped.
        queued.store(0, Ordering::SeqCst);
        for _ in 0..3 {
            push.send(&b"{}"[..], 0).unwrap();
        }
        let t0 = std::time::Instant::now();
        while stats.drops().source_queue < 7 {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "{:?}",
                stats.drops()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let first = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(
            first.queue_dropped_before, 6,
            "5 + 1 rows dropped before it"
        );
        assert_eq!(
            queued.load(Ordering::SeqCst),
            4,
            "two messages of 2 bytes queued"
        );
        stop.store(true, Ordering::SeqCst);
        thread.join().unwrap();
        assert_eq!(stats.drops().source_queue, 7);
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
