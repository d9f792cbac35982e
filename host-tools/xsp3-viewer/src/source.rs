//! Where the live data comes from: a poller thread asks the monitor socket (REQ to its REP) for
//! the latest frame and a status source for the counters, and keeps the newest of each.
//!
//! The monitor is a lossy consumer of the acquisition's ring, so however often this asks, the
//! acquisition is never slowed. `xsp3-acquire serve` binds its monitor only while an acquisition
//! runs: between acquisitions requests time out, and the last frame is kept (the page stays on
//! it). A REQ socket that got no reply cannot send again, so it is replaced after a timeout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{json, Value};

/// A function returning the status object (counters) of the process the viewer is embedded in.
pub type StatusFn = Arc<dyn Fn() -> Value + Send + Sync>;

/// Where the counters shown beside the spectra come from.
#[derive(Clone, Default)]
pub enum StatusSource {
    /// No counters.
    #[default]
    None,
    /// `{"cmd": "status"}` to an `xsp3-acquire serve` control socket.
    Control(String),
    /// A function of the embedding process (e.g. a session's status snapshot as JSON).
    Function(StatusFn),
}

/// What the viewer watches. Build with [`Source::monitor`] and the `with_*` methods.
#[derive(Clone)]
pub struct Source {
    /// The monitor socket (REP) to ask for the latest frame.
    pub monitor: String,
    pub status: StatusSource,
    /// In-window limits `[window, low, high]` for all channels, drawn on the spectra. A status
    /// object with a `windows` field (`[[low0, high0, low1, high1], ...]` per channel) overrides
    /// them.
    pub windows: Vec<[u32; 3]>,
    /// How often the monitor and the status are asked; the page cannot update faster.
    pub poll_interval: Duration,
    /// How long to wait for a reply before counting the peer as absent.
    pub timeout: Duration,
    /// The ZeroMQ context: pass the embedding process's own to reach an `inproc://` monitor.
    pub context: Option<zmq::Context>,
}

impl Source {
    /// Polls `monitor_endpoint` 20 times a second, without counters.
    pub fn monitor(monitor_endpoint: impl Into<String>) -> Source {
        Source {
            monitor: monitor_endpoint.into(),
            status: StatusSource::None,
            windows: Vec::new(),
            poll_interval: Duration::from_millis(50),
            timeout: Duration::from_millis(500),
            context: None,
        }
    }

    /// Counters from an `xsp3-acquire serve` control socket.
    pub fn with_control(mut self, control_endpoint: impl Into<String>) -> Source {
        self.status = StatusSource::Control(control_endpoint.into());
        self
    }

    /// Counters from a function of the embedding process.
    pub fn with_status_fn(mut self, status: impl Fn() -> Value + Send + Sync + 'static) -> Source {
        self.status = StatusSource::Function(Arc::new(status));
        self
    }

    pub fn with_windows(mut self, windows: Vec<[u32; 3]>) -> Source {
        self.windows = windows;
        self
    }

    pub fn with_poll_interval(mut self, interval: Duration) -> Source {
        self.poll_interval = interval;
        self
    }

    pub fn with_context(mut self, context: zmq::Context) -> Source {
        self.context = Some(context);
        self
    }
}

/// The endpoint to connect to for a socket bound at `bind_endpoint`: a wildcard host (`*`,
/// `0.0.0.0`, `[::]`) becomes the loopback address, anything else is returned as it is.
pub fn connect_endpoint(bind_endpoint: &str) -> String {
    for wildcard in ["tcp://*:", "tcp://0.0.0.0:"] {
        if let Some(port) = bind_endpoint.strip_prefix(wildcard) {
            return format!("tcp://127.0.0.1:{port}");
        }
    }
    if let Some(port) = bind_endpoint.strip_prefix("tcp://[::]:") {
        return format!("tcp://[::1]:{port}");
    }
    bind_endpoint.to_string()
}

/// One frame as the monitor served it.
#[derive(Clone, Debug, Serialize)]
pub struct Frame {
    /// The detector's frame number.
    pub number: u64,
    /// `[n_channels, n_bins]`.
    pub shape: [usize; 2],
    /// Live time per frame, seconds.
    pub exptime: f64,
    /// Milliseconds since the Unix epoch when the monitor's reply arrived.
    pub received_ms: u64,
    /// `[channel][bin]` counts.
    pub spectra: Vec<Vec<u32>>,
    /// Beyond MAX IV's reply (xsp3-acquire sends them): the frame's scalers `[channel][9]` in
    /// SDK order, its dead-time correction per channel (`None` where saturated) and its ROI
    /// values (`[{name, counts, dtc}]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scalers: Option<Vec<[u32; 9]>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_time_correction: Option<Vec<Option<f64>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rois: Option<Vec<Value>>,
}

/// The newest data, shared between the poller and the HTTP threads.
#[derive(Default)]
pub struct Latest {
    /// Bumped whenever the frame changes, so a page asks only for what is new.
    pub frame_version: u64,
    /// The frame as JSON, serialised once per version.
    pub frame_json: Option<Arc<str>>,
    pub status: Option<Value>,
    pub monitor_ok: bool,
    pub monitor_error: Option<String>,
    pub status_error: Option<String>,
    /// Monitor replies received (frames or "none").
    pub monitor_replies: u64,
    pub polls: u64,
    last_frame: Option<(u64, Vec<u8>)>,
}

pub type Shared = Arc<Mutex<Latest>>;

pub fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Latest> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("{endpoint}: {what}: {source}")]
    Zmq {
        endpoint: String,
        what: &'static str,
        #[source]
        source: zmq::Error,
    },
    #[error("{endpoint}: no reply within {timeout:?}")]
    Timeout { endpoint: String, timeout: Duration },
    #[error("{endpoint}: {what}")]
    Malformed { endpoint: String, what: String },
}

impl PollError {
    fn malformed(endpoint: &str, what: impl Into<String>) -> PollError {
        PollError::Malformed {
            endpoint: endpoint.to_string(),
            what: what.into(),
        }
    }
}

/// A REQ socket that is replaced after a timeout (a REQ without its reply may not send again).
struct Requester {
    context: zmq::Context,
    endpoint: String,
    timeout: Duration,
    socket: Option<zmq::Socket>,
}

impl Requester {
    fn new(context: zmq::Context, endpoint: String, timeout: Duration) -> Requester {
        Requester {
            context,
            endpoint,
            timeout,
            socket: None,
        }
    }

    fn zmq_err(&self, what: &'static str) -> impl FnOnce(zmq::Error) -> PollError {
        let endpoint = self.endpoint.clone();
        move |source| PollError::Zmq {
            endpoint,
            what,
            source,
        }
    }

    fn exchange(&mut self, request: &[u8]) -> Result<Vec<Vec<u8>>, PollError> {
        let socket = match self.socket.take() {
            Some(s) => s,
            None => {
                let s = self
                    .context
                    .socket(zmq::REQ)
                    .map_err(self.zmq_err("create"))?;
                s.set_linger(0).map_err(self.zmq_err("set linger"))?;
                s.connect(&self.endpoint).map_err(self.zmq_err("connect"))?;
                s
            }
        };
        socket.send(request, 0).map_err(self.zmq_err("send"))?;
        let timeout_ms = i64::try_from(self.timeout.as_millis()).unwrap_or(i64::MAX);
        if socket
            .poll(zmq::POLLIN, timeout_ms)
            .map_err(self.zmq_err("poll"))?
            == 0
        {
            // Dropping the socket discards the pending request.
            return Err(PollError::Timeout {
                endpoint: self.endpoint.clone(),
                timeout: self.timeout,
            });
        }
        let parts = socket.recv_multipart(0).map_err(self.zmq_err("receive"))?;
        self.socket = Some(socket);
        Ok(parts)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Parses a monitor reply: `Ok(None)` before the first frame (`htype: "none"`).
pub fn parse_monitor_reply(
    endpoint: &str,
    parts: &[Vec<u8>],
) -> Result<Option<(Frame, Vec<u8>)>, PollError> {
    let [meta, payload] = parts else {
        return Err(PollError::malformed(
            endpoint,
            format!("{} message parts, expected 2", parts.len()),
        ));
    };
    let meta: Value = serde_json::from_slice(meta)
        .map_err(|e| PollError::malformed(endpoint, format!("header is not JSON: {e}")))?;
    match meta.get("htype").and_then(Value::as_str) {
        Some("image") => {}
        Some("none") => return Ok(None),
        other => {
            return Err(PollError::malformed(
                endpoint,
                format!("htype {other:?}, expected \"image\" or \"none\""),
            ))
        }
    }
    if meta.get("type").and_then(Value::as_str) != Some("uint32") {
        return Err(PollError::malformed(endpoint, "type is not \"uint32\""));
    }
    let shape = meta
        .get("shape")
        .and_then(Value::as_array)
        .and_then(|s| match s.as_slice() {
            [c, b] => Some([c.as_u64()?, b.as_u64()?]),
            _ => None,
        })
        .ok_or_else(|| PollError::malformed(endpoint, "shape is not [channels, bins]"))?;
    // Bounds of the stream protocol (docs/protocol.md): nothing a peer sends can ask for more.
    let [channels, bins] = shape;
    if !(1..=256).contains(&channels) || !(1..=65536).contains(&bins) {
        return Err(PollError::malformed(
            endpoint,
            format!("shape {shape:?} outside 1..=256 channels, 1..=65536 bins"),
        ));
    }
    let (channels, bins) = (channels as usize, bins as usize);
    if payload.len() != channels * bins * 4 {
        return Err(PollError::malformed(
            endpoint,
            format!(
                "{} payload bytes, shape {shape:?} needs {}",
                payload.len(),
                channels * bins * 4
            ),
        ));
    }
    let number = meta
        .get("frame")
        .and_then(Value::as_u64)
        .ok_or_else(|| PollError::malformed(endpoint, "frame is not an integer"))?;
    let exptime = meta.get("exptime").and_then(Value::as_f64).unwrap_or(0.0);
    let scalers = optional(&meta, "scalers", |v| {
        let rows: Vec<[u32; 9]> = serde_json::from_value(v.clone()).ok()?;
        (rows.len() == channels).then_some(rows)
    })
    .map_err(|()| {
        PollError::malformed(
            endpoint,
            format!("scalers are not {channels} rows of 9 counts"),
        )
    })?;
    let dead_time_correction = optional(&meta, "dead_time_correction", |v| {
        let values: Vec<Option<f64>> = serde_json::from_value(v.clone()).ok()?;
        (values.len() == channels).then_some(values)
    })
    .map_err(|()| {
        PollError::malformed(
            endpoint,
            format!("dead_time_correction is not {channels} numbers or nulls"),
        )
    })?;
    let rois = optional(&meta, "rois", |v| v.as_array().cloned())
        .map_err(|()| PollError::malformed(endpoint, "rois is not a list"))?;
    let counts: Vec<u32> = payload
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let spectra = counts.chunks_exact(bins).map(<[u32]>::to_vec).collect();
    let frame = Frame {
        number,
        shape: [channels, bins],
        exptime,
        received_ms: now_ms(),
        spectra,
        scalers,
        dead_time_correction,
        rois,
    };
    Ok(Some((frame, payload.clone())))
}

/// Field `key` of `meta` through `parse`: `Ok(None)` when absent, `Err(())` when it does not
/// parse.
fn optional<T>(
    meta: &Value,
    key: &str,
    parse: impl FnOnce(&Value) -> Option<T>,
) -> Result<Option<T>, ()> {
    match meta.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => parse(v).map(Some).ok_or(()),
    }
}

/// The poller thread: runs until `stop` is set.
pub fn spawn_poller(
    source: Source,
    shared: Shared,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("xsp3-viewer-poll".into())
        .spawn(move || {
            crate::priority::lower_this_thread();
            poll_loop(source, &shared, &stop)
        })
}

fn poll_loop(source: Source, shared: &Shared, stop: &AtomicBool) {
    let context = source.context.clone().unwrap_or_default();
    let mut monitor = Requester::new(context.clone(), source.monitor.clone(), source.timeout);
    let mut control = match &source.status {
        StatusSource::Control(endpoint) => Some(Requester::new(
            context.clone(),
            endpoint.clone(),
            source.timeout,
        )),
        _ => None,
    };
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        poll_monitor(&mut monitor, shared);
        let status = match (&source.status, control.as_mut()) {
            (StatusSource::Control(_), Some(req)) => Some(poll_control(req)),
            (StatusSource::Function(f), _) => Some(Ok(f())),
            _ => None,
        };
        {
            let mut latest = lock(shared);
            latest.polls += 1;
            match status {
                Some(Ok(value)) => {
                    latest.status = Some(value);
                    latest.status_error = None;
                }
                Some(Err(e)) => latest.status_error = Some(e.to_string()),
                None => {}
            }
        }
        next += source.poll_interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

fn poll_monitor(monitor: &mut Requester, shared: &Shared) {
    let reply = monitor
        .exchange(b"give us a frame please!")
        .and_then(|parts| parse_monitor_reply(&monitor.endpoint, &parts));
    let mut latest = lock(shared);
    match reply {
        Ok(reply) => {
            latest.monitor_ok = true;
            latest.monitor_error = None;
            latest.monitor_replies += 1;
            if let Some((frame, bytes)) = reply {
                let changed = latest
                    .last_frame
                    .as_ref()
                    .is_none_or(|(n, b)| *n != frame.number || *b != bytes);
                if changed {
                    latest.frame_version += 1;
                    let json = json!({"version": latest.frame_version, "frame": frame});
                    latest.frame_json = Some(Arc::from(json.to_string()));
                    latest.last_frame = Some((frame.number, bytes));
                }
            }
        }
        Err(e) => {
            latest.monitor_ok = false;
            latest.monitor_error = Some(e.to_string());
        }
    }
}

fn poll_control(control: &mut Requester) -> Result<Value, PollError> {
    let parts = control.exchange(br#"{"cmd": "status"}"#)?;
    let first = parts
        .first()
        .ok_or_else(|| PollError::malformed(&control.endpoint, "empty reply"))?;
    serde_json::from_slice(first)
        .map_err(|e| PollError::malformed(&control.endpoint, format!("reply is not JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(meta: Value, payload: Vec<u8>) -> Vec<Vec<u8>> {
        vec![meta.to_string().into_bytes(), payload]
    }

    #[test]
    fn parses_an_image_reply_channel_major() {
        let counts: Vec<u8> = (0u32..6).flat_map(u32::to_le_bytes).collect();
        let parts = reply(
            json!({"htype": "image", "frame": 7, "shape": [2, 3], "type": "uint32", "exptime": 0.5}),
            counts,
        );
        let (frame, _) = parse_monitor_reply("m", &parts).unwrap().unwrap();
        assert_eq!(frame.number, 7);
        assert_eq!(frame.shape, [2, 3]);
        assert_eq!(frame.spectra, vec![vec![0, 1, 2], vec![3, 4, 5]]);
        assert_eq!(frame.exptime, 0.5);
        assert!(frame.scalers.is_none() && frame.dead_time_correction.is_none());
    }

    #[test]
    fn keeps_the_scalers_dead_time_and_rois_of_xsp3_acquire() {
        let counts: Vec<u8> = (0u32..4).flat_map(u32::to_le_bytes).collect();
        let sc = [[10, 1, 1, 5, 5, 2, 3, 0, 10], [10, 1, 1, 9, 8, 4, 1, 0, 10]];
        let parts = reply(
            json!({"htype": "image", "frame": 3, "shape": [2, 2], "type": "uint32",
                   "scalers": sc, "dead_time_correction": [1.5, null],
                   "rois": [{"name": "Fe", "counts": [1, 2], "dtc": [1.5, null]}]}),
            counts,
        );
        let (frame, _) = parse_monitor_reply("m", &parts).unwrap().unwrap();
        assert_eq!(frame.scalers, Some(sc.to_vec()));
        assert_eq!(frame.dead_time_correction, Some(vec![Some(1.5), None]));
        assert_eq!(frame.rois.unwrap()[0]["name"], "Fe");
    }

    #[test]
    fn wildcard_binds_are_reached_on_loopback() {
        assert_eq!(connect_endpoint("tcp://*:9998"), "tcp://127.0.0.1:9998");
        assert_eq!(
            connect_endpoint("tcp://0.0.0.0:9998"),
            "tcp://127.0.0.1:9998"
        );
        assert_eq!(connect_endpoint("tcp://[::]:9998"), "tcp://[::1]:9998");
        assert_eq!(
            connect_endpoint("tcp://10.0.0.2:9998"),
            "tcp://10.0.0.2:9998"
        );
        assert_eq!(connect_endpoint("inproc://monitor"), "inproc://monitor");
    }

    #[test]
    fn none_before_the_first_frame() {
        let parts = reply(
            json!({"htype": "none", "shape": [0, 0], "type": "uint32"}),
            vec![],
        );
        assert!(parse_monitor_reply("m", &parts).unwrap().is_none());
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let image = |shape: Value, len: usize| {
            reply(
                json!({"htype": "image", "frame": 1, "shape": shape, "type": "uint32"}),
                vec![0; len],
            )
        };
        let cases = [
            (
                image(json!([2, 3]), 20),
                "20 payload bytes, shape [2, 3] needs 24",
            ),
            (image(json!([0, 3]), 0), "outside 1..=256 channels"),
            (image(json!([1, 1_000_000]), 4), "outside 1..=256 channels"),
            (image(json!([2]), 8), "shape is not [channels, bins]"),
            (vec![b"{}".to_vec()], "1 message parts, expected 2"),
            (
                reply(
                    json!({"htype": "image", "frame": 1, "shape": [2, 1], "type": "uint32",
                           "scalers": [[1, 2, 3, 4, 5, 6, 7, 8, 9]]}),
                    vec![0; 8],
                ),
                "scalers are not 2 rows of 9 counts",
            ),
            (
                reply(
                    json!({"htype": "image", "frame": 1, "shape": [1, 1], "type": "uint32",
                           "dead_time_correction": ["x"]}),
                    vec![0; 4],
                ),
                "dead_time_correction is not 1 numbers or nulls",
            ),
            (vec![b"no".to_vec(), vec![]], "header is not JSON"),
            (
                reply(
                    json!({"htype": "image", "frame": 1, "shape": [1, 1], "type": "float64"}),
                    vec![0; 4],
                ),
                "type is not",
            ),
        ];
        for (parts, why) in cases {
            let err = parse_monitor_reply("tcp://m", &parts)
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{err} should say {why}");
            assert!(err.starts_with("tcp://m: "), "{err} names the endpoint");
        }
    }
}
