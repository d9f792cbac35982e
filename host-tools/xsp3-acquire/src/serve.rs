//! `xsp3-acquire serve`: a daemon controlled over a ZMQ REP socket with JSON commands.
//!
//! Requests are JSON objects with a `cmd`: `configure` (acquisition parameters, windows,
//! thresholds, output), `arm`, `trigger`, `stop`, `status` and `shutdown`. Replies are
//! `{"ok": true, ...}` or `{"ok": false, "error": "..."}`. Malformed JSON, unknown commands,
//! commands in the wrong state and out-of-range values get an error reply; none stops the daemon.
//!
//! The control loop runs on the calling thread; each armed acquisition runs in a session thread
//! that owns the engine and gives it back when it ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use acq_core::detector::Detector;
use acq_core::engine::{Acquisition, EngineError, EngineState};
use clap::ValueEnum;
use sdk_shim::Xspress3;
use serde_json::{json, Map, Value};

use crate::monitor::Monitor;
use crate::request::{prepare, AcqRequest, RequestError, Site};
use crate::session::{run_session_with, SessionConfig, SessionControl, SessionError, Summary};
use crate::StreamKind;
use xspress3::AcqDescription;

pub struct ServeConfig {
    pub control_endpoint: String,
    /// The stream of a `configure` that names none (`"stream": null` asks for none).
    pub default_stream: Option<DefaultStream>,
    /// Further stream endpoints a `configure` may ask for; any other is refused, so a control
    /// client cannot bind sockets (or ipc paths) the operator did not allow.
    pub allowed_streams: Vec<String>,
    /// Where files go (`out_dir`; without it, no files are written), the monitor, ring and
    /// status lines: the same for every acquisition.
    pub site: Site,
}

/// The daemon's `--stream` and `--stream-type`.
#[derive(Clone, Debug)]
pub struct DefaultStream {
    pub endpoint: String,
    pub kind: StreamKind,
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
    Detector(EngineError),
    #[error(transparent)]
    Monitor(#[from] crate::monitor::MonitorError),
}

/// Why a control request was refused; the reply's `error`.
#[derive(Debug, thiserror::Error)]
enum CommandError {
    #[error("malformed JSON: {0}")]
    Malformed(serde_json::Error),
    #[error("request needs a string field `cmd`")]
    NoCommand,
    #[error("unknown command `{0}` (configure, arm, trigger, stop, status, shutdown)")]
    Unknown(String),
    #[error("configure: {0}")]
    Configure(serde_json::Error),
    #[error("{0}")]
    Request(#[from] RequestError),
    #[error("this daemon writes no files: start it with --out DIR")]
    NoOutDir,
    #[error("stream `{0}` is not allowed: this daemon streams only to {1} (see --stream and --allow-stream)")]
    StreamNotAllowed(String, String),
    #[error("cannot configure while an acquisition runs; stop it first")]
    ConfigureWhileRunning,
    #[error("an acquisition is already running")]
    AlreadyRunning,
    #[error("not configured: send configure first")]
    NotConfigured,
    #[error("detector unavailable")]
    DetectorUnavailable,
    #[error("arm: {0}")]
    Arm(String),
    #[error("count {0}: give an integer in 1..=1000000")]
    TriggerCount(Value),
    #[error("no acquisition is running: arm first")]
    NotRunning,
    #[error("trigger needs a software trigger mode (software or software_first)")]
    NotSoftwareTriggered,
}

type Engine = Acquisition<Xspress3, fn() -> u64>;
type SessionResult = (Engine, Option<Monitor>, Result<Summary, SessionError>);

struct Daemon {
    config: ServeConfig,
    engine: Option<Engine>,
    session: Option<(JoinHandle<SessionResult>, Arc<SessionControl>)>,
    pending: Option<(AcqDescription, SessionConfig)>,
    last: Option<Summary>,
    last_error: Option<String>,
    /// The live monitor, bound for the daemon's whole life: lent to each session, answered by
    /// the control loop in between.
    monitor: Option<Monitor>,
    /// Per channel event widths of the SDK's calibration (they never change).
    calibrated_event_widths: Vec<u32>,
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
    let engine = crate::new_engine(dev, clock).map_err(ServeError::Detector)?;
    let monitor = match &config.site.monitor {
        Some(endpoint) => Some(Monitor::bind(&zmq, endpoint, engine.geometry(), 0.0)?),
        None => None,
    };
    let calibrated_event_widths = engine.detector().calibrated_event_widths().to_vec();
    let mut daemon = Daemon {
        config,
        engine: Some(engine),
        session: None,
        pending: None,
        last: None,
        last_error: None,
        monitor,
        calibrated_event_widths,
        zmq,
    };
    eprintln!("xsp3-acquire: serving on {endpoint}");
    loop {
        daemon.reap();
        if shutdown.load(Ordering::Relaxed) {
            daemon.stop_and_join();
            return Ok(());
        }
        // A signal interrupts the poll (EINTR): look at the shutdown flag again.
        let mut items = vec![socket.as_poll_item(zmq::POLLIN)];
        if let Some(m) = &daemon.monitor {
            items.push(m.socket().as_poll_item(zmq::POLLIN));
        }
        match zmq::poll(&mut items, 50) {
            Ok(0) | Err(zmq::Error::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(err("poll")(e)),
        }
        let control_ready = items[0].is_readable();
        drop(items);
        if let Some(m) = daemon.monitor.as_mut() {
            m.answer_waiting()?;
        }
        if !control_ready {
            continue;
        }
        let request = match socket.recv_bytes(0) {
            Ok(request) => request,
            Err(zmq::Error::EINTR) => continue,
            Err(e) => return Err(err("receive")(e)),
        };
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

fn error(e: CommandError) -> Value {
    json!({"ok": false, "error": e.to_string()})
}

impl Daemon {
    fn handle(&mut self, request: &[u8]) -> (Value, bool) {
        let value: Value = match crate::strict_json::parse(request) {
            Ok(v) => v,
            Err(e) => return (error(CommandError::Malformed(e)), false),
        };
        let Some(cmd) = value.get("cmd").and_then(Value::as_str) else {
            return (error(CommandError::NoCommand), false);
        };
        let reply = match cmd {
            "configure" => self.configure(&value),
            "arm" => self.arm(),
            "trigger" => self.trigger(&value),
            "stop" => self.stop(),
            "status" => Ok(self.status()),
            "shutdown" => return (json!({"ok": true, "state": "shutdown"}), true),
            other => Err(CommandError::Unknown(other.to_string())),
        };
        (reply.unwrap_or_else(error), false)
    }

    fn running(&self) -> bool {
        self.session.is_some()
    }

    fn configure(&mut self, value: &Value) -> Result<Value, CommandError> {
        if self.running() {
            return Err(CommandError::ConfigureWhileRunning);
        }
        let mut fields = value.as_object().cloned().unwrap_or_default();
        fields.remove("cmd");
        if let (false, Some(default)) = (fields.contains_key("stream"), &self.config.default_stream)
        {
            fields.insert("stream".into(), default.endpoint.clone().into());
            if let Some(kind) = default.kind.to_possible_value() {
                fields
                    .entry("stream_type")
                    .or_insert_with(|| kind.get_name().into());
            }
        }
        let request: AcqRequest =
            serde_json::from_value(Value::Object(fields)).map_err(CommandError::Configure)?;
        if request.file.is_some() && self.config.site.out_dir.is_none() {
            return Err(CommandError::NoOutDir);
        }
        if let Some(endpoint) = &request.stream {
            let mut allowed = self
                .config
                .default_stream
                .iter()
                .map(|d| &d.endpoint)
                .chain(&self.config.allowed_streams);
            if !allowed.any(|a| a == endpoint) {
                let list: Vec<&str> = self
                    .config
                    .default_stream
                    .iter()
                    .map(|d| d.endpoint.as_str())
                    .chain(self.config.allowed_streams.iter().map(String::as_str))
                    .collect();
                let list = if list.is_empty() {
                    "nowhere".to_string()
                } else {
                    list.join(", ")
                };
                return Err(CommandError::StreamNotAllowed(endpoint.clone(), list));
            }
        }
        let engine = self
            .engine
            .as_mut()
            .ok_or(CommandError::DetectorUnavailable)?;
        // The daemon keeps its monitor across acquisitions: the session does not bind one.
        let site = Site {
            monitor: None,
            ..self.config.site.clone()
        };
        let (desc, session) = prepare(engine, &request, &site)?;
        let exposure_ticks = desc.params.exposure_ticks;
        self.pending = Some((desc, session));
        Ok(json!({"ok": true, "state": "configured", "exposure_ticks": exposure_ticks}))
    }

    fn arm(&mut self) -> Result<Value, CommandError> {
        if self.running() {
            return Err(CommandError::AlreadyRunning);
        }
        let (desc, session) = self.pending.clone().ok_or(CommandError::NotConfigured)?;
        // `overwrite` is for the acquisition it was configured for: arming again keeps the files
        // of that one (the next arm refuses to start over them).
        if let Some((_, pending)) = &mut self.pending {
            pending.forbid_overwrite();
        }
        let engine = self
            .engine
            .take()
            .ok_or(CommandError::DetectorUnavailable)?;
        let control = Arc::new(SessionControl::default());
        let zmq = self.zmq.clone();
        let ctl = Arc::clone(&control);
        // The engine and monitor go to the thread once it runs: a thread that cannot start (a
        // process limit) leaves them with the daemon, which refuses this arm and stays usable.
        let (hand_over, handed) = std::sync::mpsc::sync_channel::<(Engine, Option<Monitor>)>(1);
        let spawned = std::thread::Builder::new()
            .name("acquisition".into())
            .spawn(move || {
                let Ok((mut engine, mut monitor)) = handed.recv() else {
                    // The daemon sends right after the start; reaped as a failed thread.
                    unreachable!("the daemon hands the engine over once the thread started")
                };
                let result =
                    run_session_with(&mut engine, &desc, &session, &ctl, &zmq, monitor.as_mut());
                (engine, monitor, result)
            });
        let monitor = self.monitor.take();
        let handle = match spawned {
            Ok(handle) => handle,
            Err(e) => {
                self.engine = Some(engine);
                self.monitor = monitor;
                return Err(CommandError::Arm(format!(
                    "cannot start the acquisition thread: {e}"
                )));
            }
        };
        if let Err(back) = hand_over.send((engine, monitor)) {
            // Only if the thread ended before receiving, which it does not do.
            (self.engine, self.monitor) = (Some(back.0 .0), back.0 .1);
            return Err(CommandError::Arm(
                "the acquisition thread ended at its start".into(),
            ));
        }
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
                    Some(e) => Err(CommandError::Arm(e.clone())),
                    None => Ok(json!({"ok": true, "state": "done"})),
                };
            }
            if Instant::now() > deadline {
                return Ok(json!({"ok": true, "state": "arming"}));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn trigger(&mut self, value: &Value) -> Result<Value, CommandError> {
        let count = match value.get("count") {
            None => 1,
            Some(v) => v
                .as_u64()
                .filter(|&n| (1..=1_000_000).contains(&n))
                .ok_or_else(|| CommandError::TriggerCount(v.clone()))?,
        };
        let Some((_, control)) = &self.session else {
            return Err(CommandError::NotRunning);
        };
        let software = self
            .pending
            .as_ref()
            .is_some_and(|(d, _)| d.params.trigger.is_software());
        if !software {
            return Err(CommandError::NotSoftwareTriggered);
        }
        control.soft_triggers.fetch_add(count, Ordering::AcqRel);
        Ok(json!({"ok": true, "queued": count}))
    }

    fn stop(&mut self) -> Result<Value, CommandError> {
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
            // "done", or "incomplete" when frames were lost.
            Some(EngineState::Done) => self
                .last
                .as_ref()
                .map_or_else(|| "done".into(), |s| s.status.state.clone()),
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
                let stopping = st.state == "stopping";
                if let Ok(Value::Object(fields)) = serde_json::to_value(&st) {
                    out.extend(fields);
                }
                // `running` until the session has ended, so a client that waits for another
                // state reads final counters; a stop in progress shows as `stopping: true`.
                out.insert("stopping".into(), Value::Bool(stopping));
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
        self.detector_settings(&mut out);
        Value::Object(out)
    }

    /// What the detector uses: per channel `windows` (`[low0, high0, low1, high1]`),
    /// `event_widths` (those of the dead-time correction) and `calibrated_event_widths`. While
    /// an acquisition runs the engine is lent to it: its configuration holds the same values.
    fn detector_settings(&self, out: &mut Map<String, Value>) {
        let (windows, event_widths) = match (&self.engine, &self.pending) {
            (Some(engine), _) => {
                let dev = engine.detector();
                (dev.windows().to_vec(), dev.info().event_widths.to_vec())
            }
            (None, Some((desc, _))) => (desc.windows.clone(), desc.event_widths.clone()),
            (None, None) => return,
        };
        out.insert("windows".into(), json!(windows));
        out.insert("event_widths".into(), json!(event_widths));
        out.insert(
            "calibrated_event_widths".into(),
            json!(self.calibrated_event_widths),
        );
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
            Ok((engine, monitor, result)) => {
                self.engine = Some(engine);
                self.monitor = monitor;
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
