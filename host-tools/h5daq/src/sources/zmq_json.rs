//! ZeroMQ sources with JSON payloads.
//!
//! - [`subscriber_job`]: a SUB socket; every message (the last frame of a multipart message, or
//!   a single frame `"topic {json}"`) is one row, taken from named fields. Constant read mode:
//!   the getter waits up to 100 ms for a message, so a stop is seen quickly.
//! - [`request_job`]: a REQ socket polled on a period with a JSON request (default
//!   `{"cmd": "status"}`, the `xsp3-acquire serve` control socket); the reply must be an object
//!   with `"ok": true`, and the named numeric fields become a row. A request without a reply in
//!   `timeout` is an error and the socket is recreated (a REQ socket cannot send twice).

use std::time::Duration;

use serde::Deserialize;

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

fn endpoint(v: &toml::Value) -> Result<String, SettingError> {
    match v.as_str() {
        Some(e) if e.contains("://") => Ok(e.to_string()),
        _ => Err(SettingError::invalid(
            "endpoint",
            shown(v),
            "not a ZeroMQ endpoint like \"tcp://127.0.0.1:5556\"",
        )),
    }
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
            Some(v) => Some(setting::seconds("timeout", v)?),
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
}

/// Parses a message into a JSON object: the last frame, or the part after the first space of a
/// single `"topic {json}"` frame.
pub fn parse_message(frames: &[Vec<u8>]) -> Result<serde_json::Value, MessageError> {
    let last = frames.last().ok_or(MessageError::Empty)?;
    let v = match serde_json::from_slice::<serde_json::Value>(last) {
        Ok(v) => v,
        Err(e) => {
            let text = String::from_utf8_lossy(last);
            match text.split_once(' ').map(|(_, j)| serde_json::from_str(j)) {
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

/// A SUB socket on `endpoint` (connect), subscribed to `topic`.
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
    sock.connect(endpoint).map_err(DaqError::zmq(format!(
        "job {group}: connect to {endpoint:?}"
    )))?;
    sock.set_subscribe(topic.as_bytes())
        .map_err(DaqError::zmq(format!(
            "job {group}: subscribe to {topic:?}"
        )))?;
    let specs = fields.iter().map(|f| f.spec.clone()).collect();
    let provided = time_key.is_some();
    let endpoint = endpoint.to_string();
    let job = DaqJob::new(group, specs, move || {
        let _keep_context_alive = &ctx;
        let frames = match sock.recv_multipart(0) {
            Ok(f) => f,
            Err(zmq::Error::EAGAIN) => return Ok(Reading::Skip),
            Err(source) => {
                return Err(ZmqReadError::Socket {
                    what: "receive from",
                    endpoint: endpoint.clone(),
                    source,
                }
                .into())
            }
        };
        let obj = parse_message(&frames).map_err(ZmqReadError::from)?;
        let entries = entries_from_json(&obj, &fields).map_err(ZmqReadError::from)?;
        Ok(match &time_key {
            Some(k) => Reading::TimedRow(
                time_from_json(&obj, k).map_err(ZmqReadError::from)?,
                entries,
            ),
            None => Reading::Row(entries),
        })
    })?;
    Ok(job
        .with_mode(ReadMode::Constant)?
        .with_provided_time(provided)
        .with_error_delay(Duration::from_millis(100)))
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
