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

use super::{entries_from_json, time_from_json, JsonField};
use crate::error::DaqError;
use crate::job::{DaqJob, ReadMode, Reading};

/// Parses a message into a JSON object: the last frame, or the part after the first space of a
/// single `"topic {json}"` frame.
pub fn parse_message(frames: &[Vec<u8>]) -> Result<serde_json::Value, String> {
    let last = frames.last().ok_or("empty message")?;
    let v = match serde_json::from_slice::<serde_json::Value>(last) {
        Ok(v) => v,
        Err(e) => {
            let text = String::from_utf8_lossy(last);
            match text.split_once(' ').map(|(_, j)| serde_json::from_str(j)) {
                Some(Ok(v)) => v,
                _ => {
                    let shown: String = text.chars().take(80).collect();
                    return Err(format!("message is not JSON ({e}): {shown:?}"));
                }
            }
        }
    };
    if !v.is_object() {
        return Err(format!("message is not a JSON object: {v}"));
    }
    Ok(v)
}

/// A SUB socket on `endpoint` (connect), subscribed to `topic`.
pub fn subscriber_job(
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
    let job = DaqJob::new(group, specs, move || {
        let _keep_context_alive = &ctx;
        let frames = match sock.recv_multipart(0) {
            Ok(f) => f,
            Err(zmq::Error::EAGAIN) => return Ok(Reading::Skip),
            Err(e) => return Err(format!("receive: {e}").into()),
        };
        let obj = parse_message(&frames)?;
        let entries = entries_from_json(&obj, &fields)?;
        Ok(match &time_key {
            Some(k) => Reading::TimedRow(time_from_json(&obj, k)?, entries),
            None => Reading::Row(entries),
        })
    })?;
    Ok(job
        .with_mode(ReadMode::Constant)?
        .with_provided_time(provided)
        .with_error_delay(Duration::from_millis(100)))
}

/// A REQ socket polling `endpoint` every `period` with `request`.
pub fn request_job(
    group: &str,
    endpoint: &str,
    request: serde_json::Value,
    fields: Vec<JsonField>,
    period: Duration,
    timeout: Duration,
) -> Result<DaqJob, DaqError> {
    let ctx = zmq::Context::new();
    let endpoint = endpoint.to_string();
    let body = serde_json::to_vec(&request)
        .map_err(|e| DaqError::Invalid(format!("job {group}: request: {e}")))?;
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
        let s = match sock.take() {
            Some(s) => s,
            None => connect().map_err(|e| format!("connect to {endpoint:?}: {e}"))?,
        };
        s.send(&body[..], 0)
            .map_err(|e| format!("send to {endpoint:?}: {e}"))?;
        let ready = s
            .poll(zmq::POLLIN, timeout_ms)
            .map_err(|e| format!("poll: {e}"))?;
        if ready == 0 {
            // Dropping the socket abandons the request (lazy pirate).
            return Err(format!(
                "no reply from {endpoint:?} within {:.1} s",
                timeout.as_secs_f64()
            )
            .into());
        }
        let frames = s.recv_multipart(0).map_err(|e| format!("receive: {e}"))?;
        sock = Some(s);
        let obj = parse_message(&frames)?;
        if obj.get("ok") != Some(&serde_json::Value::Bool(true)) {
            let why = obj
                .get("error")
                .map(|e| e.to_string())
                .unwrap_or_else(|| obj.to_string());
            return Err(format!("{endpoint:?} replied not ok: {why}").into());
        }
        Ok(Reading::Row(entries_from_json(&obj, &fields)?))
    })?;
    job.with_mode(ReadMode::Periodic(period))
}
