//! xsp3-acquire: the Xspress3 acquisition process for the detector's rack server.
//!
//! `run` does one acquisition and exits with a summary; `serve` is a daemon driven over a ZMQ
//! control socket. Both feed an HDF5 writer, a ZMQ data stream and a live monitor at once.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use acq_core::detector::TriggerMode;
use clap::{Args, Parser, Subcommand};
use sdk_shim::{OpenParams, Xspress3};
use xsp3_acquire::serve::{serve, DefaultStream, ServeConfig};
use xsp3_acquire::{
    backend_name, new_engine, prepare, run_session, AcqRequest, Outcome, RequestError,
    SessionControl, Site, Span, StreamKind, Summary,
};

/// Exit codes.
const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_START: u8 = 3;
const EXIT_DATA_LOST: u8 = 4;

#[derive(Parser)]
#[command(
    version,
    about = "Xspress3 acquisition: SDK -> zero-copy ring -> HDF5 writer, ZMQ stream and live monitor",
    long_about = "Xspress3 acquisition: SDK -> zero-copy ring -> HDF5 writer, ZMQ stream and live monitor.\n\n\
The default backend is the simulated SDK, so every command works without hardware.\n\n\
Exit codes: 0 every frame acquired reached every sink; 1 something failed but no frame was lost \
(e.g. the monitor socket); 2 bad arguments; 3 could not start (detector, existing file, socket \
bind); 4 data lost: frames were lost at some stage (SDK overrun, PUB refusal, a stream that could \
not deliver, a write error) or the detector failed. The summary says which stage and which frames."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One acquisition, then exit with a summary.
    Run(Box<RunArgs>),
    /// A daemon controlled over a ZMQ REP socket with JSON commands (configure, arm, trigger,
    /// stop, status, shutdown).
    Serve(Box<ServeArgs>),
}

#[derive(Args, Clone)]
struct DetectorArgs {
    /// Channels to read (the simulator's box size when simulated).
    #[arg(long, default_value_t = 4)]
    channels: u32,
    /// Depth of the SDK's circular frame buffer.
    #[arg(long, default_value_t = 16384)]
    sdk_buffer: i32,
    /// Ring capacity in frames between the SDK and the sinks (rounded up to whole write batches).
    #[arg(long, default_value_t = 4096)]
    ring_frames: usize,
    /// Simulated-SDK parameter KEY=VALUE (repeatable): seed, content=spectrum|pattern,
    /// full_speed, ext_trigger_hz, event_width, error_at_frame, stall_at_frame, slow_rx_hz, ...
    /// (docs/sdk-sim.md lists them all).
    #[arg(long = "sim", value_name = "KEY=VALUE")]
    sim: Vec<String>,
    /// File of simulated-SDK parameters, `key = value` per line.
    #[arg(long, value_name = "FILE")]
    sim_config: Option<PathBuf>,
    /// Fail the acquisition when the detector runs ahead but no frame completes for this long
    /// (a stalled readout); 0 turns the watchdog off.
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    progress_timeout: Span,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    request: AcqRequest,
    /// Write HDF5 files into this directory (created if missing).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Bind the live monitor (REP, latest frame on request) here, e.g. tcp://127.0.0.1:9998.
    #[arg(long, value_name = "ENDPOINT")]
    monitor: Option<String>,
    /// Serve the live spectrum page (docs/viewer.md) on this address, e.g. 127.0.0.1:8080. It
    /// reads the monitor, so it needs --monitor and never slows the acquisition.
    #[arg(long, value_name = "IP:PORT", requires = "monitor")]
    http: Option<String>,
    #[command(flatten)]
    detector: DetectorArgs,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// No status line.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct ServeArgs {
    /// Bind the control socket (REP, JSON commands) here.
    #[arg(long, default_value = "tcp://127.0.0.1:9997", value_name = "ENDPOINT")]
    control: String,
    /// Default stream endpoint for acquisitions (a `configure` can override it).
    #[arg(long, value_name = "ENDPOINT")]
    stream: Option<String>,
    /// A further stream endpoint a `configure` may ask for (repeatable); any endpoint other than
    /// these and --stream is refused.
    #[arg(long, value_name = "ENDPOINT")]
    allow_stream: Vec<String>,
    /// The default stream's type (a `configure` can override it).
    #[arg(long, value_enum, default_value_t = AcqRequest::DEFAULT.stream_type)]
    stream_type: StreamKind,
    /// Bind the live monitor here for every acquisition.
    #[arg(long, value_name = "ENDPOINT")]
    monitor: Option<String>,
    /// Serve the live spectrum page (docs/viewer.md) on this address, e.g. 127.0.0.1:8080, for
    /// the daemon's whole life. It reads the monitor and the control socket, so it needs
    /// --monitor and never slows an acquisition.
    #[arg(long, value_name = "IP:PORT", requires = "monitor")]
    http: Option<String>,
    /// Output directory for acquisitions; `configure` names files inside it.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[command(flatten)]
    detector: DetectorArgs,
    /// No status line.
    #[arg(long, short)]
    quiet: bool,
}

/// A failure with the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: EXIT_USAGE,
        message: message.into(),
    }
}

fn start(message: impl Into<String>) -> Failure {
    Failure {
        code: EXIT_START,
        message: message.into(),
    }
}

fn open_detector(args: &DetectorArgs) -> Result<Xspress3, Failure> {
    let mut params = OpenParams {
        progress_timeout_ms: u32::try_from(args.progress_timeout.0.as_millis()).map_err(|_| {
            usage(format!(
                "--progress-timeout {}: at most {} ms",
                args.progress_timeout,
                u32::MAX
            ))
        })?,
        ..OpenParams::default()
    };
    if let Some(path) = &args.sim_config {
        let text = std::fs::read_to_string(path)
            .map_err(|e| usage(format!("--sim-config {}: {e}", path.display())))?;
        params
            .apply_config(&text)
            .map_err(|e| usage(format!("--sim-config {}: {e}", path.display())))?;
    }
    for kv in &args.sim {
        params
            .set_arg(kv)
            .map_err(|e| usage(format!("--sim {kv}: {e}")))?;
    }
    if args.channels == 0 || args.channels > 256 {
        return Err(usage(format!(
            "--channels {} is outside 1..=256",
            args.channels
        )));
    }
    params.sim.n_channels = args.channels;
    params.n_channels = args.channels as i32;
    params.num_tf = args.sdk_buffer;
    Xspress3::open(&params).map_err(|e| {
        start(format!(
            "cannot open the Xspress3 {}: {} ({}): {}",
            if sdk_shim::SIMULATED {
                "(simulated SDK)"
            } else {
                "system"
            },
            e.name(),
            e.code(),
            e.message()
        ))
    })
}

fn wall_clock_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn stop_on_signals(control: &SessionControl) -> Result<(), Failure> {
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&control.stop))
            .map_err(|e| start(format!("cannot install the signal handler: {e}")))?;
    }
    Ok(())
}

/// Default base file name of `run`: files are `xspress3.h5` unless `--file` says otherwise.
const RUN_FILE: &str = "xspress3";

fn run(args: RunArgs) -> Result<Summary, Failure> {
    let dev = open_detector(&args.detector)?;
    let mut engine = new_engine(dev, wall_clock_ns as fn() -> u64)
        .map_err(|e| start(format!("detector: {e}")))?;
    let mut request = args.request;
    request.file.get_or_insert_with(|| RUN_FILE.to_string());
    let site = Site {
        out_dir: args.out,
        monitor: args.monitor.clone(),
        ring_frames: args.detector.ring_frames,
        status_every: (!args.quiet).then_some(Duration::from_secs(1)),
    };
    let (desc, config) = prepare(&mut engine, &request, &site).map_err(|e| match e {
        RequestError::Detector { .. } | RequestError::Engine(_) => start(e.to_string()),
        _ => usage(e.to_string()),
    })?;
    let control = Arc::new(SessionControl::default());
    stop_on_signals(&control)?;
    // Kept alive until the session ends: dropping it stops the page.
    let _viewer = match (&args.http, &args.monitor) {
        (Some(http), Some(monitor)) => {
            let (status_of, windows) = (Arc::clone(&control), desc.windows.clone());
            let source = xsp3_viewer::Source::monitor(xsp3_viewer::connect_endpoint(monitor))
                .with_status_fn(move || {
                    let mut status = serde_json::to_value(status_of.snapshot()).unwrap_or_default();
                    status["windows"] = serde_json::json!(windows);
                    status
                });
            Some(xsp3_viewer::serve(http, source).map_err(|e| start(e.to_string()))?)
        }
        _ => None,
    };
    // `run` issues the software triggers itself: one per frame requested in `software`, the
    // first only in `software_first`.
    let triggers = match desc.params.trigger {
        TriggerMode::Software => desc.params.n_frames.max(1),
        TriggerMode::SoftwareFirst => 1,
        _ => 0,
    };
    control
        .soft_triggers
        .store(triggers, std::sync::atomic::Ordering::Relaxed);
    let zmq = zmq::Context::new();
    run_session(&mut engine, &desc, &config, &control, &zmq).map_err(|e| start(e.to_string()))
}

fn print_summary(summary: &Summary, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(summary).unwrap_or_default()
        );
        return;
    }
    let s = &summary.status;
    println!(
        "xsp3-acquire: {} after {:.2} s ({})",
        s.state,
        s.elapsed_s,
        backend_name()
    );
    if summary.outcome() == Outcome::DataLost {
        // The line a user must not miss: bold red on a terminal.
        let (on, off) = if std::io::stdout().is_terminal() {
            ("\x1b[1;31m", "\x1b[0m")
        } else {
            ("", "")
        };
        let detector = match &summary.detector_error {
            Some(d) => format!(", detector failed at frame {}", d.frame),
            None => String::new(),
        };
        println!(
            "{on}  DATA LOST: {} frames ({} before readout, {} refused by PUB, {} not delivered \
             to the stream, {} never acknowledged by a receiver, {} not written){detector}{off}",
            s.frames_lost_total,
            s.frames_lost,
            s.stream_drops,
            s.stream_unsent,
            s.stream_unacked,
            s.frames_unwritten
        );
    }
    println!(
        "  frames   {} acquired, {} written, {} sent, {} lost before readout",
        s.frames_acquired, s.frames_written, s.frames_sent, s.frames_lost
    );
    println!("  rate     {:.1} Hz, {:.1} MB/s", s.rate_hz, s.mb_per_s);
    println!(
        "  ring     {} slots, high water {}, full {} times",
        s.ring_slots, s.ring_high_water, s.ring_full_events
    );
    if s.stream_drops > 0 {
        println!("  stream   {} frames refused by PUB", s.stream_drops);
    }
    for range in &summary.lost_ranges {
        println!("  lost     frames {}..{}", range[0], range[0] + range[1]);
    }
    for range in &summary.unsent_ranges {
        println!("  unsent   frames {}..{}", range[0], range[0] + range[1]);
    }
    for range in &summary.unacked_ranges {
        println!("  unacked  frames {}..{}", range[0], range[0] + range[1]);
    }
    for range in &summary.unwritten_ranges {
        println!("  unwritten frames {}..{}", range[0], range[0] + range[1]);
    }
    if s.triggers_ignored > 0 {
        println!(
            "  triggers {} ignored (more than the acquisition could use)",
            s.triggers_ignored
        );
    }
    for f in &summary.files {
        println!("  file     {} ({} frames)", f.path.display(), f.frames);
    }
    for e in &s.errors {
        println!("  error    {e}");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => {
            let json = args.json;
            run(*args).map(|summary| {
                print_summary(&summary, json);
                summary.outcome()
            })
        }
        Command::Serve(args) => serve_main(*args).map(|()| Outcome::Complete),
    };
    match result {
        Ok(Outcome::Complete) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(EXIT_FAILED),
        Ok(Outcome::DataLost) => ExitCode::from(EXIT_DATA_LOST),
        Err(f) => {
            eprintln!("xsp3-acquire: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn serve_main(args: ServeArgs) -> Result<(), Failure> {
    let dev = open_detector(&args.detector)?;
    let control = SessionControl::default();
    stop_on_signals(&control)?;
    // Kept alive for the daemon's life: dropping it stops the page.
    let _viewer = match (&args.http, &args.monitor) {
        (Some(http), Some(monitor)) => {
            let source = xsp3_viewer::Source::monitor(xsp3_viewer::connect_endpoint(monitor))
                .with_control(xsp3_viewer::connect_endpoint(&args.control));
            Some(xsp3_viewer::serve(http, source).map_err(|e| start(e.to_string()))?)
        }
        _ => None,
    };
    let shutdown: Arc<AtomicBool> = Arc::clone(&control.stop);
    let config = ServeConfig {
        control_endpoint: args.control,
        default_stream: args.stream.map(|endpoint| DefaultStream {
            endpoint,
            kind: args.stream_type,
        }),
        allowed_streams: args.allow_stream,
        site: Site {
            out_dir: args.out,
            monitor: args.monitor,
            ring_frames: args.detector.ring_frames,
            status_every: (!args.quiet).then_some(Duration::from_secs(1)),
        },
    };
    serve(dev, wall_clock_ns, config, shutdown).map_err(|e| start(e.to_string()))
}
