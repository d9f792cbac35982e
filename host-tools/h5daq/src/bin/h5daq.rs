//! h5daq: an H5DAQ-style DAQ daemon. Jobs declared in a TOML file sample values on a schedule
//! and are appended to HDF5 groups; `status` and `stop` talk to a running daemon over its local
//! control socket; `recover` finishes files left by a killed daemon.
//!
//! Exit codes: 0 success; 1 runtime failure (HDF5, file system, a job source); 2 bad command
//! line or config file; 3 no daemon answers on the control socket.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use h5daq::config::ConfigError;
use h5daq::config::DaqConfig;
use h5daq::control::{self, ControlServer};
use h5daq::{AttrValue, DaqDaemon, DaqError, FileNames};

#[derive(Parser, Debug)]
#[command(
    name = "h5daq",
    version,
    about = "H5DAQ-style DAQ daemon: scheduled jobs appended to HDF5 files",
    long_about = "H5DAQ-style DAQ daemon: jobs declared in a TOML config sample values on a \
                  schedule; every write period their rows are appended to /<group>/<dataset> and \
                  /<group>/time of DAQ_{from}_{to}.h5, rolled over by calendar time and size. \
                  See docs/daq.md for the config reference.\n\nExit codes: 0 ok, 1 runtime \
                  failure, 2 bad command line or config, 3 no daemon answers."
)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a daemon from a config file until Ctrl-C, SIGTERM or `h5daq stop`; then make the
    /// final write, rename the last file to the real end time and exit 0.
    Run {
        /// The TOML config file (see examples/h5daq.toml).
        config: PathBuf,
        /// Only check the config (and that every job can be built), then exit.
        #[arg(long)]
        check: bool,
        /// Stop by itself after this many seconds (for demos and tests).
        #[arg(long, value_name = "SECONDS")]
        duration: Option<f64>,
        /// A root attribute of this run's files (repeatable; over [daemon.attrs]): an integer,
        /// a number, true/false, or else a string.
        #[arg(long = "attr", value_name = "KEY=VALUE")]
        attrs: Vec<String>,
    },
    /// Show a running daemon's state: files, writes, per-job counters.
    Status {
        /// Find the control socket from this config file.
        #[arg(short, long, conflicts_with = "socket")]
        config: Option<PathBuf>,
        /// The control socket (default: ./h5daq.sock).
        #[arg(short, long)]
        socket: Option<PathBuf>,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ask a running daemon to stop (final write and rename) and wait until it has; exits 1 when
    /// rows were dropped or the final write failed.
    Stop {
        /// Find the control socket from this config file.
        #[arg(short, long, conflicts_with = "socket")]
        config: Option<PathBuf>,
        /// The control socket (default: ./h5daq.sock).
        #[arg(short, long)]
        socket: Option<PathBuf>,
        /// Seconds to wait for the daemon to finish.
        #[arg(long, default_value_t = 30.0)]
        timeout: f64,
        /// Print the daemon's final report as JSON (rows written and dropped per job).
        #[arg(long)]
        json: bool,
    },
    /// Make a running daemon read a job with `trigger = true` once now.
    Trigger {
        /// The job's group.
        job: String,
        /// Find the control socket from this config file.
        #[arg(short, long, conflicts_with = "socket")]
        config: Option<PathBuf>,
        /// The control socket (default: ./h5daq.sock).
        #[arg(short, long)]
        socket: Option<PathBuf>,
    },
    /// Finish files left by a killed daemon: clear the HDF5 open-for-write flag (h5clear -s)
    /// where needed, set file_end to the last stored time, rename to the real end time.
    Recover {
        /// Files, or directories whose DAQ files (by --prefix or --format) are checked.
        paths: Vec<PathBuf>,
        /// File name prefix.
        #[arg(long, default_value = "DAQ", conflicts_with = "format")]
        prefix: String,
        /// File name format (a config's `file_name`), e.g. "DAQ_{date_from}_{date_to}.hdf5".
        #[arg(long)]
        format: Option<String>,
        /// Also when a daemon answers on <directory>/h5daq.sock (it may be writing the files).
        #[arg(long)]
        force: bool,
    },
}

enum Failure {
    Usage(String),
    Runtime(String),
    NoDaemon(String),
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        match e {
            ConfigError::Read { .. } => Failure::Runtime(e.to_string()),
            other => Failure::Usage(other.to_string()),
        }
    }
}

impl From<DaqError> for Failure {
    fn from(e: DaqError) -> Self {
        match e {
            DaqError::Config(c) => c.into(),
            DaqError::Setting(s) => Failure::Usage(s.to_string()),
            other => Failure::Runtime(other.to_string()),
        }
    }
}

/// Makes SIGINT and SIGTERM set `signalled` to the signal's number instead of killing the
/// process; the main loop then stops the daemon.
fn install_stop_handlers(signalled: &Arc<AtomicUsize>) -> Result<(), Failure> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_usize(sig, Arc::clone(signalled), sig as usize)
            .map_err(|e| Failure::Runtime(format!("cannot handle signal {sig}: {e}")))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let res = match args.cmd {
        Cmd::Run {
            config,
            check,
            duration,
            attrs,
        } => run(&config, check, duration, &attrs),
        Cmd::Status {
            config,
            socket,
            json,
        } => status(config, socket, json),
        Cmd::Stop {
            config,
            socket,
            timeout,
            json,
        } => stop(config, socket, timeout, json),
        Cmd::Trigger {
            job,
            config,
            socket,
        } => trigger(&job, config, socket),
        Cmd::Recover {
            paths,
            prefix,
            format,
            force,
        } => recover(&paths, &prefix, format.as_deref(), force),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("h5daq: {m}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(m)) => {
            eprintln!("h5daq: {m}");
            ExitCode::from(1)
        }
        Err(Failure::NoDaemon(m)) => {
            eprintln!("h5daq: {m}");
            ExitCode::from(3)
        }
    }
}

/// `key=value` from the command line as an attribute: an integer, a number, a boolean, or else
/// the text.
fn cli_attr(arg: &str) -> Result<(String, AttrValue), Failure> {
    let (k, v) = arg
        .split_once('=')
        .ok_or_else(|| Failure::Usage(format!("--attr {arg:?}: use KEY=VALUE")))?;
    let k = k.trim();
    if k.is_empty() || k.contains(['/', '\0']) {
        return Err(Failure::Usage(format!(
            "--attr {arg:?}: the key must be a plain name"
        )));
    }
    if h5daq::RESERVED_ATTRS.contains(&k) {
        return Err(Failure::Usage(format!(
            "--attr {arg:?}: {k:?} is written by the daemon itself; choose another name"
        )));
    }
    let value = if let Ok(i) = v.parse::<i64>() {
        AttrValue::Int(i)
    } else if let Ok(f) = v.parse::<f64>() {
        AttrValue::Float(f)
    } else if let Ok(b) = v.parse::<bool>() {
        AttrValue::Bool(b)
    } else {
        AttrValue::Str(v.to_string())
    };
    Ok((k.to_string(), value))
}

fn run(config: &Path, check: bool, duration: Option<f64>, attrs: &[String]) -> Result<(), Failure> {
    let mut cfg = DaqConfig::load(config)?;
    for a in attrs {
        let (k, v) = cli_attr(a)?;
        cfg.daemon.attrs.retain(|(old, _)| *old != k);
        cfg.daemon.attrs.push((k, v));
    }
    if let Some(d) = duration {
        if !(d.is_finite() && d > 0.0) {
            return Err(Failure::Usage(format!(
                "--duration {d}: must be a positive number"
            )));
        }
    }
    let jobs = cfg.build_jobs()?;
    if check {
        let groups: Vec<String> = jobs.iter().map(|j| j.group().to_string()).collect();
        // The daemon's own checks too (settings, threads), without starting anything.
        DaqDaemon::new(cfg.daemon.clone(), jobs)?;
        println!(
            "{}: ok ({} jobs: {})",
            config.display(),
            groups.len(),
            groups.join(", ")
        );
        return Ok(());
    }
    h5daq::log::init(cfg.log.clone())?;
    let signalled = Arc::new(AtomicUsize::new(0));
    install_stop_handlers(&signalled)?;
    let d = &cfg.daemon;
    let mut new_daemon = DaqDaemon::new(d.clone(), jobs)?;
    let daemon: Arc<Mutex<Option<DaqDaemon>>> = Arc::new(Mutex::new(None));
    let stop_requested = Arc::new(AtomicBool::new(false));
    let outcome = Arc::new(Outcome::default());
    let handler: control::Handler = {
        let (daemon, stop_requested) = (Arc::clone(&daemon), Arc::clone(&stop_requested));
        let outcome = Arc::clone(&outcome);
        Arc::new(
            move |req: &serde_json::Value| match req.get("cmd").and_then(|c| c.as_str()) {
                Some("status") => {
                    let guard = daemon.lock().unwrap_or_else(|p| p.into_inner());
                    match guard.as_ref() {
                        Some(d) => serde_json::json!({"ok": true, "status": d.status()}),
                        None => {
                            serde_json::json!({"ok": true, "status": null, "stopping": stop_requested.load(Ordering::SeqCst)})
                        }
                    }
                }
                Some("stop") => {
                    stop_requested.store(true, Ordering::SeqCst);
                    let wait = req
                        .get("wait")
                        .and_then(|w| w.as_f64())
                        .filter(|w| *w > 0.0);
                    match wait {
                        // Answer once the final write is done, with what it stored and lost.
                        Some(secs) => outcome.wait(Duration::from_secs_f64(secs.min(3600.0))),
                        None => {
                            serde_json::json!({"ok": true, "stopping": true, "pid": std::process::id()})
                        }
                    }
                }
                Some("trigger") => {
                    let job = req.get("job").and_then(|j| j.as_str()).unwrap_or_default();
                    let guard = daemon.lock().unwrap_or_else(|p| p.into_inner());
                    match guard.as_ref().map(|d| d.trigger(job)) {
                        Some(Some(t)) => {
                            t.trigger();
                            serde_json::json!({"ok": true, "triggered": job})
                        }
                        Some(None) => {
                            serde_json::json!({"ok": false, "error": format!("no job {job:?} reads on trigger (set trigger = true in its [[job]])")})
                        }
                        None => {
                            serde_json::json!({"ok": false, "error": "the daemon is not running"})
                        }
                    }
                }
                other => {
                    serde_json::json!({"ok": false, "error": format!("unknown command {other:?} (use status, stop or trigger)")})
                }
            },
        )
    };
    // The socket first: a second daemon on the same config is refused before it starts a
    // command or creates a file.
    let server = ControlServer::start(&cfg.control_socket, handler)?;
    new_daemon.start()?;
    *daemon.lock().unwrap_or_else(|p| p.into_inner()) = Some(new_daemon);
    println!(
        "h5daq: {} jobs writing to {} every {} s (rollover {}{}, mode {}); control socket {}; Ctrl-C to stop",
        cfg.jobs.len(),
        d.directory.display(),
        d.write_period.as_secs_f64(),
        d.rollover,
        d.max_file_bytes.map(|b| format!(" or {b} bytes")).unwrap_or_default(),
        d.mode.name(),
        server.path().display()
    );
    let t0 = Instant::now();
    let reason = loop {
        match signalled.load(Ordering::SeqCst) {
            0 => {}
            sig => break format!("signal {sig}"),
        }
        if stop_requested.load(Ordering::SeqCst) {
            break "stop request".to_string();
        }
        if duration.is_some_and(|s| t0.elapsed().as_secs_f64() >= s) {
            break "--duration elapsed".to_string();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    println!("h5daq: stopping ({reason}): final write");
    let taken = daemon.lock().unwrap_or_else(|p| p.into_inner()).take();
    let stopped = match taken {
        Some(d) => d.stop(),
        None => Err(DaqError::NotStarted),
    };
    let report = match stopped {
        Ok(r) => r,
        Err(e) => {
            outcome.set(serde_json::json!({"ok": false, "error": e.to_string()}));
            drop(server);
            return Err(Failure::Runtime(e.to_string()));
        }
    };
    outcome.set(serde_json::json!({
        "ok": true,
        "stopped": true,
        "lossless": report.is_lossless(),
        "rows_written": report.rows_written,
        "rows_dropped": report.rows_dropped(),
        "final_error": report.final_error,
        "stuck_jobs": report.stuck_jobs,
        "jobs": report.jobs,
        "files": report.files,
    }));
    // Dropping the server waits for a `stop --wait` client to get its answer.
    drop(server);
    println!("h5daq: {} rows written; files:", report.rows_written);
    for f in &report.files {
        println!("  {}", f.display());
    }
    if report.is_lossless() {
        return Ok(());
    }
    Err(Failure::Runtime(loss_message(&report)))
}

/// What a run lost: rows dropped per job and reason, the final write's error, stuck jobs.
fn loss_message(report: &h5daq::StopReport) -> String {
    let mut parts = Vec::new();
    for j in report.jobs.iter().filter(|j| j.dropped > 0) {
        let reasons: Vec<String> = j
            .dropped_by
            .by_reason()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| format!("{} {n}", r.name()))
            .collect();
        parts.push(format!(
            "job {}: {} rows dropped ({})",
            j.group,
            j.dropped,
            reasons.join(", ")
        ));
    }
    if let Some(e) = &report.final_error {
        parts.push(format!("final write failed: {e}"));
    }
    if !report.stuck_jobs.is_empty() {
        parts.push(format!(
            "job threads that did not stop: {}",
            report.stuck_jobs.join(", ")
        ));
    }
    format!("data was lost: {}", parts.join("; "))
}

/// The result of the final write, handed from the main thread to a control client waiting in
/// `stop`.
#[derive(Default)]
struct Outcome {
    value: Mutex<Option<serde_json::Value>>,
    ready: std::sync::Condvar,
}

impl Outcome {
    fn set(&self, v: serde_json::Value) {
        *self.value.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
        self.ready.notify_all();
    }
    fn wait(&self, timeout: Duration) -> serde_json::Value {
        let guard = self.value.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .ready
            .wait_timeout_while(guard, timeout, |v| v.is_none())
            .unwrap_or_else(|p| p.into_inner());
        guard.clone().unwrap_or_else(|| {
            serde_json::json!({"ok": false, "error": format!("the final write did not finish within {} s", timeout.as_secs_f64())})
        })
    }
}

fn socket_path(config: Option<PathBuf>, socket: Option<PathBuf>) -> Result<PathBuf, Failure> {
    match (config, socket) {
        (_, Some(s)) => Ok(s),
        (Some(c), None) => Ok(DaqConfig::load(&c)?.control_socket),
        (None, None) => Ok(PathBuf::from("h5daq.sock")),
    }
}

fn ask(path: &Path, cmd: &str) -> Result<serde_json::Value, Failure> {
    control::request(
        path,
        &serde_json::json!({ "cmd": cmd }),
        Duration::from_secs(5),
    )
    .map_err(|e| {
        Failure::NoDaemon(format!(
            "no h5daq daemon answers on {}: {e}",
            path.display()
        ))
    })
}

fn fmt_time(t: f64) -> String {
    if t.is_finite() {
        h5daq::time::iso_stamp(t)
    } else {
        "-".into()
    }
}

fn status(config: Option<PathBuf>, socket: Option<PathBuf>, json: bool) -> Result<(), Failure> {
    let path = socket_path(config, socket)?;
    let reply = ask(&path, "status")?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reply).unwrap_or_else(|_| reply.to_string())
        );
        return Ok(());
    }
    let Some(st) = reply.get("status").filter(|s| !s.is_null()) else {
        let what = if reply.get("stopping") == Some(&serde_json::Value::Bool(true)) {
            "stopping"
        } else {
            "starting"
        };
        println!("daemon on {} is {what}", path.display());
        return Ok(());
    };
    let s = |k: &str| st.get(k).cloned().unwrap_or(serde_json::Value::Null);
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    println!(
        "daemon     {} ({})",
        s("name").as_str().unwrap_or(""),
        if s("running") == true {
            "running"
        } else {
            "stopped"
        }
    );
    println!("started    {}", fmt_time(num(&s("run_start"))));
    println!("directory  {}", s("directory").as_str().unwrap_or("?"));
    println!("mode       {}", s("mode").as_str().unwrap_or("?"));
    println!("file       {}", s("current_file").as_str().unwrap_or("-"));
    println!(
        "writes     {} ({} early, {} failed), {} rows written, {} closed files, last write {:.1} ms",
        s("writes"),
        s("early_writes"),
        s("write_errors"),
        s("rows_written"),
        s("files_closed"),
        num(&s("last_write_seconds")) * 1e3
    );
    if let Some(e) = s("last_write_error").as_str() {
        println!("last error {e}");
    }
    println!("dropped    {} rows", s("rows_dropped"));
    println!(
        "{:<20} {:>10} {:>10} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}  last error",
        "job", "reads", "written", "buffered", "dedup", "dropped", "bad", "missed", "errors"
    );
    let jobs: Vec<&serde_json::Value> = st
        .get("jobs")
        .and_then(|j| j.as_array())
        .into_iter()
        .flatten()
        .collect();
    for j in &jobs {
        let g = |k: &str| j.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        println!(
            "{:<20} {:>10} {:>10} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}  {}",
            j.get("group").and_then(|v| v.as_str()).unwrap_or("?"),
            g("reads"),
            g("written"),
            g("buffered"),
            g("deduplicated"),
            g("dropped"),
            g("bad_input"),
            g("missed_periods"),
            g("errors"),
            j.get("last_error").and_then(|v| v.as_str()).unwrap_or("-")
        );
    }
    for j in &jobs {
        let group = j.get("group").and_then(|v| v.as_str()).unwrap_or("?");
        let reasons: Vec<String> = j
            .get("dropped_by")
            .and_then(|d| d.as_object())
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| v.as_u64().filter(|n| *n > 0).map(|n| format!("{k} {n}")))
            .collect();
        if !reasons.is_empty() {
            println!("{group}: dropped {}", reasons.join(", "));
        }
        if let Some(b) = j.get("last_bad_input").and_then(|v| v.as_str()) {
            println!("{group}: last bad input: {b}");
        }
    }
    Ok(())
}

fn stop(
    config: Option<PathBuf>,
    socket: Option<PathBuf>,
    timeout: f64,
    json: bool,
) -> Result<(), Failure> {
    if !(timeout.is_finite() && timeout > 0.0) {
        return Err(Failure::Usage(format!(
            "--timeout {timeout}: must be a positive number of seconds"
        )));
    }
    let path = socket_path(config, socket)?;
    if !json {
        println!("h5daq: stop requested; waiting for the final write");
    }
    // The daemon answers when its final write is done; allow a little longer for the reply.
    let reply = control::request(
        &path,
        &serde_json::json!({"cmd": "stop", "wait": timeout}),
        Duration::from_secs_f64(timeout + 5.0),
    )
    .map_err(|e| match e {
        DaqError::Io { ref source, .. }
            if matches!(
                source.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Failure::Runtime(format!(
                "the daemon did not finish within {timeout} s ({} still answers)",
                path.display()
            ))
        }
        other => Failure::NoDaemon(format!(
            "no h5daq daemon answers on {}: {other}",
            path.display()
        )),
    })?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reply).unwrap_or_else(|_| reply.to_string())
        );
    }
    if reply.get("ok") != Some(&serde_json::Value::Bool(true)) {
        let why = reply
            .get("error")
            .and_then(|e| e.as_str())
            .map_or_else(|| reply.to_string(), str::to_string);
        return Err(Failure::Runtime(format!(
            "the daemon failed to stop cleanly: {why}"
        )));
    }
    let num = |k: &str| reply.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    if reply.get("lossless") == Some(&serde_json::Value::Bool(true)) {
        if !json {
            println!(
                "h5daq: stopped; {} rows written, none dropped",
                num("rows_written")
            );
        }
        return Ok(());
    }
    let mut why = Vec::new();
    for j in reply
        .get("jobs")
        .and_then(|j| j.as_array())
        .into_iter()
        .flatten()
    {
        let dropped = j.get("dropped").and_then(|v| v.as_u64()).unwrap_or(0);
        if dropped == 0 {
            continue;
        }
        let reasons: Vec<String> = j
            .get("dropped_by")
            .and_then(|d| d.as_object())
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| v.as_u64().filter(|n| *n > 0).map(|n| format!("{k} {n}")))
            .collect();
        why.push(format!(
            "job {}: {dropped} rows dropped ({})",
            j.get("group").and_then(|g| g.as_str()).unwrap_or("?"),
            reasons.join(", ")
        ));
    }
    if let Some(e) = reply.get("final_error").and_then(|e| e.as_str()) {
        why.push(format!("final write failed: {e}"));
    }
    if !json {
        println!(
            "h5daq: stopped; {} rows written, {} dropped",
            num("rows_written"),
            num("rows_dropped")
        );
    }
    Err(Failure::Runtime(format!(
        "data was lost: {}",
        why.join("; ")
    )))
}

fn trigger(job: &str, config: Option<PathBuf>, socket: Option<PathBuf>) -> Result<(), Failure> {
    let path = socket_path(config, socket)?;
    let reply = control::request(
        &path,
        &serde_json::json!({"cmd": "trigger", "job": job}),
        Duration::from_secs(5),
    )
    .map_err(|e| {
        Failure::NoDaemon(format!(
            "no h5daq daemon answers on {}: {e}",
            path.display()
        ))
    })?;
    if reply.get("ok") == Some(&serde_json::Value::Bool(true)) {
        println!("h5daq: triggered {job}");
        return Ok(());
    }
    let why = reply
        .get("error")
        .and_then(|e| e.as_str())
        .map_or_else(|| reply.to_string(), str::to_string);
    Err(Failure::Usage(why))
}

fn recover(
    paths: &[PathBuf],
    prefix: &str,
    format: Option<&str>,
    force: bool,
) -> Result<(), Failure> {
    let names = match format {
        Some(f) => f
            .parse::<FileNames>()
            .map_err(|e| Failure::Usage(format!("--format: {e}")))?,
        None => FileNames::prefix(prefix),
    };
    if paths.is_empty() {
        return Err(Failure::Usage(
            "recover: name at least one file or directory".into(),
        ));
    }
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let sock = p.join("h5daq.sock");
            if !force && sock.exists() && ask(&sock, "status").is_ok() {
                return Err(Failure::Usage(format!(
                    "{}: a daemon is running there ({}); stop it first or use --force",
                    p.display(),
                    sock.display()
                )));
            }
            let rd = std::fs::read_dir(p)
                .map_err(|e| Failure::Runtime(format!("{}: {e}", p.display())))?;
            let mut v: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| names.parse(n).is_some())
                })
                .collect();
            v.sort();
            files.extend(v);
        } else if p.exists() {
            files.push(p.clone());
        } else {
            return Err(Failure::Usage(format!(
                "{}: no such file or directory",
                p.display()
            )));
        }
    }
    let mut failed = 0;
    for f in &files {
        match h5daq::recover(f, &names) {
            Ok(Some(r)) => println!(
                "recovered {} -> {}{}",
                r.original.display(),
                r.path.display(),
                if r.cleared_flags {
                    " (cleared open-for-write flag)"
                } else {
                    ""
                }
            ),
            Ok(None) => println!("ok        {}", f.display()),
            Err(DaqError::EmptyFile { .. }) => println!(
                "empty     {} (0 bytes, no rows: nothing to recover; it can be removed)",
                f.display()
            ),
            Err(e) => {
                failed += 1;
                eprintln!("failed    {}: {e}", f.display());
            }
        }
    }
    if failed > 0 {
        return Err(Failure::Runtime(format!(
            "{failed} of {} files could not be recovered",
            files.len()
        )));
    }
    Ok(())
}
