//! ZeroMQ sources with JSON payloads.
//!
//! - [`subscriber_job`]: a SUB socket; every message (the last frame of a multipart message, or
//!   a single frame `"topic {json}"`) is one row, taken from named fields. Constant read mode:
//!   the getter waits up to 100 ms for a message, so a stop is seen quickly.
//! - [`request_job`]: a REQ socket polled on a period with a JSON request (default
//!   `{"cmd": "status"}`, the `xsp3-acquire serve` control socket); the reply must be an object
//!   with `"ok": true`, and the named numeric fields become a row. A request without a reply in
//!   `timeout` is an error and the socket is recreated (a REQ socket cannot send twice).

use std::sync::atomic::{AtomicBool, Ordering};
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
}

impl SubConfig {
    /// Reads and checks the settings of `source = "zmq_sub"`.
    pub fn from_table(table: &toml::Table) -> Result<SubConfig, SettingError> {
        let s: SubSettings = setting::from_table(table, "source \"zmq_sub\"")?;
        Ok(SubConfig {
            endpoint: endpoint(&s.endpoint)?,
            topic: s.topic.unwrap_or_default(),
            fields: parse_fields(&s.fields, Dtype::F64)?,
            time_field: s.time_field,
        })
    }

    /// The job (connects the socket).
    pub fn job(&self, group: &str) -> Result<DaqJob, DaqError> {
        subscriber_job(
            group,
            &self.endpoint,
            &self.topic,
            self.fields.clone(),
            self.time_field.clone(),
        )
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

/// Messages the SUB socket itself may hold (its receive high-water mark).
const SOCKET_QUEUE: i32 = 100_000;

/// Messages queued between the receiving thread and the job.
const MESSAGE_QUEUE: usize = 10_000;

/// A message and when it arrived.
struct Message {
    arrived: f64,
    frames: Vec<Vec<u8>>,
}

/// Takes every message off the socket as it arrives (so the socket's own queue never
/// overflows unseen) into `tx`; a message that finds `tx` full is dropped and counted
/// (`source_queue`). Ends when `stop` is set or the job is gone.
fn receive(
    sock: zmq::Socket,
    tx: SyncSender<Message>,
    stop: Arc<AtomicBool>,
    stats: SourceStats,
    group: String,
) {
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
        };
        match tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => stats.dropped(DropReason::SourceQueue, 1),
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

/// The row of a message with its time (the message's own, or its arrival), or bad input.
fn message_row(
    msg: &Message,
    fields: &[JsonField],
    time_key: Option<&str>,
) -> Result<(f64, Vec<crate::column::Entry>), ZmqReadError> {
    let (obj, entries) = match binary_header(&msg.frames) {
        Some((header, raw)) => {
            let entries = entries_from_binary(&header, raw, fields)?;
            (header, entries)
        }
        None => {
            let obj = parse_message(&msg.frames)?;
            let entries = entries_from_json(&obj, fields)?;
            (obj, entries)
        }
    };
    let t = match time_key {
        Some(k) => time_from_json(&obj, k)?,
        None => msg.arrived,
    };
    Ok((t, entries))
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
    #[error("array {key:?}: {bytes} bytes for shape {shape:?} of {dtype}")]
    Size {
        key: String,
        bytes: usize,
        shape: Vec<usize>,
        dtype: crate::column::Dtype,
    },
    #[error("array {key:?}: {elements} elements, the field takes {want}")]
    Elements {
        key: String,
        elements: usize,
        want: usize,
    },
}

/// Each field's entry: arrays named in the header from their raw frames (any numeric dtype,
/// converted exactly to the field's), every other field from the header as in JSON messages.
fn entries_from_binary(
    header: &serde_json::Value,
    raw: &[Vec<u8>],
    fields: &[JsonField],
) -> Result<Vec<crate::column::Entry>, ZmqReadError> {
    use crate::column::{Column, Dtype, Entry};
    let arrays = header
        .get("arrays")
        .and_then(|a| a.as_array())
        .map_or(&[][..], Vec::as_slice);
    if arrays.len() != raw.len() {
        return Err(BinaryError::FrameCount {
            arrays: arrays.len(),
            frames: raw.len(),
        }
        .into());
    }
    let mut decoded: Vec<(&str, Column)> = Vec::with_capacity(arrays.len());
    for (i, (a, bytes)) in arrays.iter().zip(raw).enumerate() {
        let key = a.get("key").and_then(|k| k.as_str());
        let dtype = a.get("dtype").and_then(|d| d.as_str());
        let shape: Option<Vec<usize>> = a.get("shape").and_then(|s| s.as_array()).and_then(|s| {
            s.iter()
                .map(|n| n.as_u64().and_then(|n| usize::try_from(n).ok()))
                .collect()
        });
        let (Some(key), Some(dtype), Some(shape)) = (key, dtype, shape) else {
            return Err(BinaryError::BadEntry(i).into());
        };
        let dt = dtype
            .trim_start_matches('=')
            .parse::<Dtype>()
            .map_err(|_| BinaryError::Dtype {
                key: key.to_string(),
                dtype: dtype.to_string(),
            })?;
        let elements: usize = shape.iter().product();
        let col = column_from_le_bytes(dt, bytes)
            .filter(|c| c.len() == elements)
            .ok_or_else(|| BinaryError::Size {
                key: key.to_string(),
                bytes: bytes.len(),
                shape: shape.clone(),
                dtype: dt,
            })?;
        decoded.push((key, col));
    }
    let mut out = Vec::with_capacity(fields.len());
    for f in fields {
        match decoded.iter().find(|(k, _)| *k == f.key) {
            Some((key, col)) => {
                let want = f.spec.entry_len();
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
                out.push(Entry::Array(typed));
            }
            None => {
                let one = entries_from_json(header, std::slice::from_ref(f))?;
                out.extend(one);
            }
        }
    }
    Ok(out)
}

/// Little-endian elements of `dtype` (numpy's native order on x86 and ARM), copied out of a
/// frame whatever its alignment; `None` when the length is not a whole number of elements.
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
    })
}

/// A SUB socket on `endpoint` (connect), subscribed to `topic`. A thread takes messages off
/// the socket as they arrive; each is one row, stamped at arrival unless `time_key` names its
/// time. A message that is not a row is counted as bad input; at stop the queued messages are
/// still stored.
fn subscriber_job(
    group: &str,
    endpoint: &str,
    topic: &str,
    fields: Vec<JsonField>,
    time_key: Option<String>,
) -> Result<DaqJob, DaqError> {
    let ctx = zmq::Context::new();
    let sock = ctx
        .socket(zmq::SUB)
        .map_err(DaqError::zmq(format!("job {group}: SUB socket")))?;
    sock.set_linger(0).map_err(DaqError::zmq("set linger"))?;
    sock.set_rcvtimeo(100)
        .map_err(DaqError::zmq("set receive timeout"))?;
    // The receiving thread drains the socket into a counted queue; a deep socket queue covers
    // the moments that thread does not run (ZeroMQ drops beyond it without counting).
    sock.set_rcvhwm(SOCKET_QUEUE)
        .map_err(DaqError::zmq("set receive high-water mark"))?;
    sock.connect(endpoint).map_err(DaqError::zmq(format!(
        "job {group}: connect to {endpoint:?}"
    )))?;
    sock.set_subscribe(topic.as_bytes())
        .map_err(DaqError::zmq(format!(
            "job {group}: subscribe to {topic:?}"
        )))?;
    let specs = fields.iter().map(|f| f.spec.clone()).collect();
    let stats = SourceStats::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::sync_channel::<Message>(MESSAGE_QUEUE);
    {
        let (stop, stats, name) = (Arc::clone(&stop), stats.clone(), group.to_string());
        std::thread::Builder::new()
            .name("daq-zmq-sub".into())
            .spawn(move || {
                let _keep_context_alive = ctx;
                receive(sock, tx, stop, stats, name)
            })
            .map_err(DaqError::thread("a ZeroMQ receiver thread"))?;
    }
    let (stop2, stats2, name) = (Arc::clone(&stop), stats.clone(), group.to_string());
    let job = DaqJob::new(group, specs, move || {
        if stop2.load(Ordering::SeqCst) {
            // The final read: every message still queued, as rows.
            let mut time = Vec::new();
            let mut rows: Vec<Vec<crate::column::Entry>> = Vec::new();
            while let Ok(msg) = rx.try_recv() {
                match message_row(&msg, &fields, time_key.as_deref()) {
                    Ok((t, e)) => {
                        time.push(t);
                        rows.push(e);
                    }
                    Err(e) => stats2.bad_input(&name, &e),
                }
            }
            return Ok(rows_of(time, rows, &fields, &stats2, &name));
        }
        let mut wait = Duration::from_millis(100);
        loop {
            let msg = match rx.recv_timeout(wait) {
                Ok(m) => m,
                Err(_) => return Ok(Reading::Skip),
            };
            match message_row(&msg, &fields, time_key.as_deref()) {
                Ok((t, e)) => return Ok(Reading::TimedRow(t, e)),
                Err(e) => stats2.bad_input(&name, &e),
            }
            // Go on with the next message without pausing.
            wait = Duration::ZERO;
        }
    })?;
    Ok(job
        .with_mode(ReadMode::Constant)?
        .with_provided_time(true)
        .with_final_read(true)
        .with_source_stats(stats)
        .with_on_stop(move || stop.store(true, Ordering::SeqCst)))
}

/// Rows as a bulk reading (one column per field, flattened); a row whose values do not fit the
/// fields' dtypes is bad input.
fn rows_of(
    time: Vec<f64>,
    rows: Vec<Vec<crate::column::Entry>>,
    fields: &[JsonField],
    stats: &SourceStats,
    group: &str,
) -> Reading {
    use crate::column::{Column, Entry};
    let mut columns: Vec<Column> = fields
        .iter()
        .map(|f| Column::with_capacity(f.spec.dtype, 0))
        .collect();
    let mut kept = Vec::with_capacity(time.len());
    for (t, row) in time.into_iter().zip(rows) {
        let before: Vec<usize> = columns.iter().map(Column::len).collect();
        let pushed = columns.iter_mut().zip(row).try_for_each(|(c, e)| match e {
            Entry::Scalar(s) => c.push_scalar(s),
            Entry::Array(a) => c.extend_from(&a),
        });
        match pushed {
            Ok(()) => kept.push(t),
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

    #[test]
    fn raw_frames_after_a_json_header() {
        let raw: Vec<u8> = [1.5f32, 2.5, -3.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let header = br#"{"t": NaN, "arrays": [{"key": "s", "dtype": "<f4", "shape": [3]}]}"#;
        let frames = vec![b"topic".to_vec(), header.to_vec(), raw.clone()];
        let (h, rest) = binary_header(&frames).unwrap();
        let e = entries_from_binary(&h, rest, &fields()).unwrap();
        assert_eq!(e[0], Entry::Array(Column::F64(vec![1.5, 2.5, -3.0])));
        assert!(matches!(e[1], Entry::Scalar(crate::column::Scalar::Float(x)) if x.is_nan()));
        let err = |header: &str, raw: Vec<Vec<u8>>| {
            let h: serde_json::Value = serde_json::from_str(header).unwrap();
            entries_from_binary(&h, &raw, &fields())
                .unwrap_err()
                .to_string()
        };
        let h = r#"{"t": 1, "arrays": [{"key": "s", "dtype": "float32", "shape": [3]}]}"#;
        assert!(err(h, vec![]).contains("1 arrays, the message has 0 raw frames"));
        assert!(err(h, vec![raw[..8].to_vec()]).contains("8 bytes for shape [3]"));
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
    fn python_json_constants_outside_strings() {
        let v = parse_json(br#"{"a": NaN, "b": -Infinity, "c": "NaN Infinity", "d": [Infinity]}"#)
            .unwrap();
        assert!(v["a"].is_null());
        assert_eq!(v["b"], "-Infinity");
        assert_eq!(v["c"], "NaN Infinity");
        assert_eq!(v["d"][0], "Infinity");
    }
}
