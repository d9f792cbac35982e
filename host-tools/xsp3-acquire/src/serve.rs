//! `xsp3-acquire serve`: a daemon controlled over a ZMQ REP socket with JSON commands.
//!
//! Requests are JSON objects with a `cmd`: `configure` (acquisition parameters, windows,
//! thresholds, output), `arm`, `trigger`, `stop`, `status` and `shutdown`. Replies are
//! `{"ok": true, ...}` or `{"ok": false, "error": "..."}`. Malformed JSON, unknown commands,
//! commands in the wrong state and out-of-range values get an error reply; none stops the daemon.
//!
//! The control loop runs on the calling thread; each armed acquisition runs in a session thread
//! that owns the engine and gives it back when it ends.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use acq_core::detector::{AcqParams, Detector, GapMode, TriggerMode};
use acq_core::engine::{Acquisition, EngineState};
use acq_core::geometry::Geometry;
use sdk_shim::Xspress3;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::session::{run_session, SessionConfig, SessionControl, SessionError, Summary};
use crate::sender::{StreamConfig, StreamKind};
use xspress3::layout::check_name;
use xspress3::units::{exposure_ticks, parse_duration};
use xspress3::{AcqDescription, OutputConfig};

pub struct ServeConfig {
    pub control_endpoint: String,
    pub default_stream: Option<StreamConfig>,
    pub monitor: Option<String>,
    /// Where `configure`'s file names are created; without it, no files are written.
    pub out_dir: Option<PathBuf>,
    pub ring_frames: usize,
    pub status_lines: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("control socket {endpoint}: {what}: {source}")]
    Zmq {
        endpoint: String,
        what: &'static str,
        #[source]
        source: zmq::Error,
    },
    #[error("detector: {0}")]
    Detector(String),
}

type Engine = Acquisition<Xspress3, fn() -> u64>;
type SessionResult = (Engine, Result<Summary, SessionError>);

/// The parameters of a `configure` request. Unknown fields are refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Configure {
    cmd: String,
    #[serde(default = "default_frames")]
    frames: u64,
    /// Seconds (number) or a duration string such as "1ms".
    #[serde(default)]
    exposure: Option<Value>,
    #[serde(default)]
    trigger: Option<String>,
    #[serde(default)]
    gap_ns: Option<u32>,
    /// `[[win, low, high], ...]`, applied to all channels.
    #[serde(default)]
    windows: Vec<[u32; 3]>,
    #[serde(default)]
    good_threshold: Option<u32>,
    /// Base file name inside the daemon's output directory; absent: no file.
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    frames_per_file: Option<u64>,
    #[serde(default)]
    overwrite: bool,
    #[serde(default)]
    swmr: bool,
    /// Stream endpoint for this acquisition (overrides the daemon's default); `null`: none.
    #[serde(default)]
    stream: Option<Option<String>>,
    #[serde(default)]
    stream_type: Option<String>,
}

fn default_frames() -> u64 {
    1000
}

struct Daemon {
    config: ServeConfig,
    engine: Option<Engine>,
    session: Option<(JoinHandle<SessionResult>, Arc<SessionControl>)>,
    pending: Option<(AcqDescription, SessionConfig)>,
    last: Option<Summary>,
    last_error: Option<String>,
    zmq: zmq::Context,
}

/// Serves until `shutdown` is set (signal) or a `shutdown` command arrives.
pub fn serve(
    dev: Xspress3,
    clock: fn() -> u64,
    config: ServeConfig,
    shutdown: Arc<AtomicBool>,
) -> Result<(), ServeError> {
    let zmq = zmq::Context::new();
    let endpoint = config.control_endpoint.clone();
    let err = |what| {
        let endpoint = endpoint.clone();
        move |source| ServeError::Zmq {
            endpoint,
            what,
            source,
        }
    };
    let socket = zmq.socket(zmq::REP).map_err(err("create"))?;
    socket.set_linger(0).map_err(err("set linger"))?;
    socket.bind(&endpoint).map_err(err("bind"))?;
    let engine =
        Acquisition::new(dev, clock, 256).map_err(|e| ServeError::Detector(e.to_string()))?;
    let mut daemon = Daemon {
        config,
        engine: Some(engine),
        session: None,
        pending: None,
        last: None,
        last_error: None,
        zmq,
    };
    eprintln!("xsp3-acquire: serving on {endpoint}");
    loop {
        daemon.reap();
        if shutdown.load(Ordering::Relaxed) {
            daemon.stop_and_join();
            return Ok(());
        }
        if socket.poll(zmq::POLLIN, 50).map_err(err("poll"))? == 0 {
            continue;
        }
        let request = socket.recv_bytes(0).map_err(err("receive"))?;
        let (reply, quit) = daemon.handle(&request);
        socket
            .send(reply.to_string().as_bytes(), 0)
            .map_err(err("send"))?;
        if quit {
            daemon.stop_and_join();
            return Ok(());
        }
    }
}

fn error(message: impl Into<String>) -> Value {
    json!({"ok": false, "error": message.into()})
}

impl Daemon {
    fn handle(&mut self, request: &[u8]) -> (Value, bool) {
        let value: Value = match serde_json::from_slice(request) {
            Ok(v) => v,
            Err(e) => return (error(format!("malformed JSON: {e}")), false),
        };
        let Some(cmd) = value.get("cmd").and_then(Value::as_str) else {
            return (error("request needs a string field `cmd`"), false);
        };
        let reply = match cmd {
            "configure" => self.configure(&value),
            "arm" => self.arm(),
            "trigger" => self.trigger(&value),
            "stop" => self.stop(),
            "status" => Ok(self.status()),
            "shutdown" => return (json!({"ok": true, "state": "shutdown"}), true),
            other => Err(format!(
                "unknown command `{other}` (configure, arm, trigger, stop, status, shutdown)"
            )),
        };
        (reply.unwrap_or_else(error), false)
    }

    fn running(&self) -> bool {
        self.session.is_some()
    }

    fn configure(&mut self, value: &Value) -> Result<Value, String> {
        if self.running() {
            return Err("cannot configure while an acquisition runs; stop it first".into());
        }
        let req: Configure =
            serde_json::from_value(value.clone()).map_err(|e| format!("configure: {e}"))?;
        debug_assert_eq!(req.cmd, "configure");
        let engine = self.engine.as_mut().ok_or("detector unavailable")?;
        let info = engine.detector().info().clone();
        let geometry =
            Geometry::new(info.n_channels, info.n_bins).map_err(|e| format!("detector: {e}"))?;
        let exposure = match &req.exposure {
            None => Duration::from_millis(1),
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .ok_or_else(|| format!("exposure {n} is not a valid number of seconds"))?,
            Some(Value::String(s)) => parse_duration(s).map_err(|e| format!("exposure: {e}"))?,
            Some(other) => {
                return Err(format!(
                    "exposure {other}: give seconds or a string like \"1ms\""
                ))
            }
        };
        let trigger = match req.trigger.as_deref() {
            None => TriggerMode::Internal,
            Some(name) => TriggerMode::from_name(name).ok_or_else(|| {
                format!("trigger `{name}`: use internal, software, software_first, external, external_first or gate")
            })?,
        };
        let gap = match req.gap_ns {
            None | Some(25) => GapMode::Ns25,
            Some(200) => GapMode::Ns200,
            Some(500) => GapMode::Ns500,
            Some(1000) => GapMode::Us1,
            Some(other) => return Err(format!("gap_ns {other}: use 25, 200, 500 or 1000")),
        };
        let n_bins = geometry.n_bins() as u32;
        for &[win, low, high] in &req.windows {
            if win > 1 || low > high || high >= n_bins {
                return Err(format!(
                    "window [{win}, {low}, {high}]: window is 0 or 1, and 0 <= low <= high < {n_bins}"
                ));
            }
        }
        if let Some(thr) = req.good_threshold {
            if thr >= n_bins {
                return Err(format!("good_threshold {thr} is outside 0..{n_bins}"));
            }
        }
        if req.frames_per_file == Some(0) {
            return Err("frames_per_file must be at least 1".into());
        }
        let output = match (&req.file, &self.config.out_dir) {
            (None, _) => None,
            (Some(_), None) => {
                return Err("this daemon writes no files: start it with --out DIR".into())
            }
            (Some(name), Some(dir)) => {
                check_name(name).map_err(|e| format!("file: {e}"))?;
                Some(OutputConfig {
                    dir: dir.clone(),
                    name: name.clone(),
                    frames_per_file: req.frames_per_file,
                    overwrite: req.overwrite,
                    swmr: req.swmr,
                    flush_interval: Duration::from_secs(1),
                })
            }
        };
        let stream_kind = match req.stream_type.as_deref() {
            None | Some("push") => StreamKind::Push,
            Some("pub") => StreamKind::Pub,
            Some(other) => return Err(format!("stream_type `{other}`: use push or pub")),
        };
        let stream = match &req.stream {
            None => self.config.default_stream.clone(),
            Some(None) => None,
            Some(Some(endpoint)) => Some(StreamConfig {
                endpoint: endpoint.clone(),
                kind: stream_kind,
                high_water_mark: 1000,
                subscriber_wait: Duration::from_secs(1),
            }),
        };
        let params = AcqParams {
            n_frames: req.frames,
            exposure_ticks: exposure_ticks(exposure, info.clock_hz)?,
            gap,
            trigger,
            debounce_ticks: 0,
        };
        let dev = engine.detector_mut();
        for &[win, low, high] in &req.windows {
            dev.set_window(None, win, low, high)
                .map_err(|e| format!("window: {}", e.message()))?;
        }
        if let Some(thr) = req.good_threshold {
            dev.set_good_threshold(None, thr)
                .map_err(|e| format!("good_threshold: {}", e.message()))?;
        }
        let desc = super::describe(dev, params).map_err(|e| format!("detector: {e}"))?;
        engine
            .configure(&params)
            .map_err(|e| match engine.fault() {
                Some(f) => format!("configure: {} ({}): {}", f.name, f.code, f.message),
                None => format!("configure: {e}"),
            })?;
        let session = SessionConfig {
            series_name: req.file.clone().unwrap_or_default(),
            series_overwritable: req.overwrite,
            output,
            stream,
            monitor: self.config.monitor.clone(),
            ring_frames: self.config.ring_frames,
            status_every: self.config.status_lines.then_some(Duration::from_secs(1)),
        };
        self.pending = Some((desc, session));
        Ok(json!({"ok": true, "state": "configured", "exposure_ticks": params.exposure_ticks}))
    }

    fn arm(&mut self) -> Result<Value, String> {
        if self.running() {
            return Err("an acquisition is already running".into());
        }
        let (desc, session) = self
            .pending
            .clone()
            .ok_or("not configured: send configure first")?;
        let mut engine = self.engine.take().ok_or("detector unavailable")?;
        let control = Arc::new(SessionControl::default());
        let zmq = self.zmq.clone();
        let ctl = Arc::clone(&control);
        let handle = std::thread::spawn(move || {
            let result = run_session(&mut engine, &desc, &session, &ctl, &zmq);
            (engine, result)
        });
        self.session = Some((handle, control));
        self.last_error = None;
        // Report start-up failures (existing file, socket in use) in the reply.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let armed = self
                .session
                .as_ref()
                .is_some_and(|(_, c)| c.armed.load(Ordering::Acquire));
            if armed {
                return Ok(json!({"ok": true, "state": "running"}));
            }
            if self.session.as_ref().is_some_and(|(h, _)| h.is_finished()) {
                self.reap();
                return match &self.last_error {
                    Some(e) => Err(format!("arm: {e}")),
                    None => Ok(json!({"ok": true, "state": "done"})),
                };
            }
            if Instant::now() > deadline {
                return Ok(json!({"ok": true, "state": "arming"}));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn trigger(&mut self, value: &Value) -> Result<Value, String> {
        let count = match value.get("count") {
            None => 1,
            Some(v) => v
                .as_u64()
                .filter(|&n| (1..=1_000_000).contains(&n))
                .ok_or_else(|| format!("count {v}: give an integer in 1..=1000000"))?,
        };
        let Some((_, control)) = &self.session else {
            return Err("no acquisition is running: arm first".into());
        };
        let software = self
            .pending
            .as_ref()
            .is_some_and(|(d, _)| d.params.trigger.is_software());
        if !software {
            return Err(
                "trigger needs a software trigger mode (software or software_first)".into(),
            );
        }
        control.soft_triggers.fetch_add(count, Ordering::AcqRel);
        Ok(json!({"ok": true, "queued": count}))
    }

    fn stop(&mut self) -> Result<Value, String> {
        match &self.session {
            Some((_, control)) => {
                control.stop.store(true, Ordering::Relaxed);
                Ok(json!({"ok": true, "state": "stopping"}))
            }
            None => Ok(json!({"ok": true, "state": self.idle_state()})),
        }
    }

    fn idle_state(&self) -> String {
        if self.last_error.is_some() {
            return "failed".into();
        }
        match self.engine.as_ref().map(|e| e.state()) {
            Some(EngineState::Fault) => "fault".into(),
            Some(EngineState::Done) => "done".into(),
            Some(EngineState::Configured) => "configured".into(),
            _ if self.pending.is_some() => "configured".into(),
            _ => "idle".into(),
        }
    }

    fn status(&self) -> Value {
        let mut out = Map::new();
        out.insert("ok".into(), Value::Bool(true));
        let state = match &self.session {
            Some((_, control)) => {
                let st = control.snapshot();
                if let Ok(Value::Object(fields)) = serde_json::to_value(&st) {
                    out.extend(fields);
                }
                "running".to_string()
            }
            None => {
                if let Some(summary) = &self.last {
                    if let Ok(Value::Object(fields)) = serde_json::to_value(summary) {
                        out.extend(fields);
                    }
                }
                self.idle_state()
            }
        };
        out.insert("state".into(), Value::String(state));
        if let Some(e) = &self.last_error {
            out.insert("last_error".into(), Value::String(e.clone()));
        }
        if let Some((desc, _)) = &self.pending {
            out.insert("frames_requested".into(), json!(desc.params.n_frames));
            out.insert("trigger".into(), json!(desc.params.trigger.name()));
        }
        Value::Object(out)
    }

    /// Collects a finished session: the engine comes back, the summary is kept.
    fn reap(&mut self) {
        if !self.session.as_ref().is_some_and(|(h, _)| h.is_finished()) {
            return;
        }
        let Some((handle, _)) = self.session.take() else {
            return;
        };
        match handle.join() {
            Ok((engine, result)) => {
                self.engine = Some(engine);
                match result {
                    Ok(summary) => {
                        self.last_error = (!summary.status.errors.is_empty())
                            .then(|| summary.status.errors.join("; "));
                        self.last = Some(summary);
                    }
                    Err(e) => self.last_error = Some(e.to_string()),
                }
            }
            Err(_) => {
                self.last_error = Some("the acquisition thread panicked; restart the daemon".into())
            }
        }
    }

    fn stop_and_join(&mut self) {
        if let Some((_, control)) = &self.session {
            control.stop.store(true, Ordering::Relaxed);
        }
        while self.session.is_some() {
            self.reap();
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
