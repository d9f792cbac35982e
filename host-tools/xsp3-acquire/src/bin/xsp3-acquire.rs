//! xsp3-acquire: the Xspress3 acquisition process for the detector's rack server.
//!
//! `run` does one acquisition and exits with a summary; `serve` is a daemon driven over a ZMQ
//! control socket. Both feed an HDF5 writer, a ZMQ data stream and a live monitor at once.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use acq_core::detector::{AcqParams, Detector, GapMode, TriggerMode};
use acq_core::engine::Acquisition;
use clap::{Args, Parser, Subcommand, ValueEnum};
use sdk_shim::{OpenParams, Xspress3};
use xsp3_acquire::sender::{StreamConfig, StreamKind};
use xsp3_acquire::serve::{serve, ServeConfig};
use xsp3_acquire::{backend_name, describe, run_session, SessionConfig, SessionControl, Summary};
use xspress3::units::{exposure_ticks, parse_duration};
use xspress3::OutputConfig;

/// Exit codes.
const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_START: u8 = 3;

#[derive(Parser)]
#[command(
    version,
    about = "Xspress3 acquisition: SDK -> zero-copy ring -> HDF5 writer, ZMQ stream and live monitor",
    long_about = "Xspress3 acquisition: SDK -> zero-copy ring -> HDF5 writer, ZMQ stream and live monitor.\n\n\
The default backend is the simulated SDK, so every command works without hardware.\n\n\
Exit codes: 0 success; 1 the acquisition failed or lost data to a sink error (the summary says \
which stage); 2 bad arguments; 3 could not start (detector, existing file, socket bind)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One acquisition, then exit with a summary.
    Run(RunArgs),
    /// A daemon controlled over a ZMQ REP socket with JSON commands (configure, arm, trigger,
    /// stop, status, shutdown).
    Serve(ServeArgs),
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
}

#[derive(Args)]
struct RunArgs {
    /// Frames to acquire (0: until stopped with Ctrl-C).
    #[arg(long, default_value_t = 1000)]
    frames: u64,
    /// Exposure per frame, e.g. 1ms, 250us, 2s.
    #[arg(long, default_value = "1ms", value_parser = parse_duration)]
    exposure: Duration,
    /// How frames are started.
    #[arg(long, value_enum, default_value_t = Trigger::Internal)]
    trigger: Trigger,
    /// Dead time between internally timed frames.
    #[arg(long, value_enum, default_value_t = Gap::Ns25)]
    gap: Gap,
    /// In-window scaler limits WIN:LOW:HIGH (window 0 or 1, inclusive bins), for all channels.
    #[arg(long, value_name = "WIN:LOW:HIGH")]
    window: Vec<String>,
    /// AllGood threshold (bin) for all channels.
    #[arg(long)]
    good_threshold: Option<u32>,
    #[command(flatten)]
    detector: DetectorArgs,
    #[command(flatten)]
    sinks: SinkArgs,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// No status line.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args, Clone)]
struct SinkArgs {
    /// Write HDF5 files into this directory (created if missing).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Base file name inside --out, also announced to stream receivers.
    #[arg(long, value_name = "NAME", default_value = "xspress3")]
    file: String,
    /// Start a new file every N frames (NAME_00000.h5, NAME_00001.h5, ...).
    #[arg(long, value_name = "N")]
    frames_per_file: Option<u64>,
    /// Replace existing files.
    #[arg(long)]
    overwrite: bool,
    /// Write with SWMR so readers can follow the file live.
    #[arg(long)]
    swmr: bool,
    /// Flush files this often (bounds what a crash can lose).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    flush_interval: Duration,
    /// Bind the data stream here, e.g. tcp://127.0.0.1:9999.
    #[arg(long, value_name = "ENDPOINT")]
    stream: Option<String>,
    /// push: lossless with back-pressure; pub: lossy, refused frames counted.
    #[arg(long, value_enum, default_value_t = StreamType::Push)]
    stream_type: StreamType,
    /// Messages queued per receiver before PUSH waits or PUB refuses.
    #[arg(long, default_value_t = 1000)]
    stream_hwm: i32,
    /// With --stream-type pub: wait this long for a first subscriber before starting, so a
    /// receiver that is already running gets the header.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    stream_wait: Duration,
    /// Bind the live monitor (REP, latest frame on request) here, e.g. tcp://127.0.0.1:9998.
    #[arg(long, value_name = "ENDPOINT")]
    monitor: Option<String>,
}

#[derive(Args)]
struct ServeArgs {
    /// Bind the control socket (REP, JSON commands) here.
    #[arg(long, default_value = "tcp://127.0.0.1:9997", value_name = "ENDPOINT")]
    control: String,
    /// Default stream endpoint for acquisitions (a `configure` can override it).
    #[arg(long, value_name = "ENDPOINT")]
    stream: Option<String>,
    #[arg(long, value_enum, default_value_t = StreamType::Push)]
    stream_type: StreamType,
    /// Bind the live monitor here for every acquisition.
    #[arg(long, value_name = "ENDPOINT")]
    monitor: Option<String>,
    /// Output directory for acquisitions; `configure` names files inside it.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[command(flatten)]
    detector: DetectorArgs,
    /// No status line.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Trigger {
    Internal,
    Software,
    SoftwareFirst,
    External,
    ExternalFirst,
    Gate,
}

impl From<Trigger> for TriggerMode {
    fn from(t: Trigger) -> Self {
        match t {
            Trigger::Internal => TriggerMode::Internal,
            Trigger::Software => TriggerMode::Software,
            Trigger::SoftwareFirst => TriggerMode::SoftwareFirst,
            Trigger::External => TriggerMode::External,
            Trigger::ExternalFirst => TriggerMode::ExternalFirst,
            Trigger::Gate => TriggerMode::Gate,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Gap {
    #[value(name = "25ns")]
    Ns25,
    #[value(name = "200ns")]
    Ns200,
    #[value(name = "500ns")]
    Ns500,
    #[value(name = "1us")]
    Us1,
}

impl From<Gap> for GapMode {
    fn from(g: Gap) -> Self {
        match g {
            Gap::Ns25 => GapMode::Ns25,
            Gap::Ns200 => GapMode::Ns200,
            Gap::Ns500 => GapMode::Ns500,
            Gap::Us1 => GapMode::Us1,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum StreamType {
    Push,
    Pub,
}

impl From<StreamType> for StreamKind {
    fn from(s: StreamType) -> Self {
        match s {
            StreamType::Push => StreamKind::Push,
            StreamType::Pub => StreamKind::Pub,
        }
    }
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
    let mut params = OpenParams::default();
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

fn parse_window(text: &str) -> Result<(u32, u32, u32), Failure> {
    let parts: Vec<&str> = text.split(':').collect();
    let bad = || {
        usage(format!(
            "--window {text}: expected WIN:LOW:HIGH, e.g. 0:500:700"
        ))
    };
    let [win, low, high] = parts.as_slice() else {
        return Err(bad());
    };
    let p = |s: &str| s.trim().parse::<u32>().map_err(|_| bad());
    let (win, low, high) = (p(win)?, p(low)?, p(high)?);
    if win > 1 || low > high {
        return Err(usage(format!(
            "--window {text}: window must be 0 or 1 and LOW <= HIGH"
        )));
    }
    Ok((win, low, high))
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

fn run(args: RunArgs) -> Result<Summary, Failure> {
    let mut dev = open_detector(&args.detector)?;
    for w in &args.window {
        let (win, low, high) = parse_window(w)?;
        dev.set_window(None, win, low, high)
            .map_err(|e| usage(format!("--window {w}: {}", e.message())))?;
    }
    if let Some(thr) = args.good_threshold {
        dev.set_good_threshold(None, thr)
            .map_err(|e| usage(format!("--good-threshold {thr}: {}", e.message())))?;
    }
    let clock_hz = dev.info().clock_hz;
    let params = AcqParams {
        n_frames: args.frames,
        exposure_ticks: exposure_ticks(args.exposure, clock_hz).map_err(usage)?,
        gap: args.gap.into(),
        trigger: args.trigger.into(),
        debounce_ticks: 0,
    };
    let desc = describe(&dev, params).map_err(|e| start(format!("detector geometry: {e}")))?;
    let mut engine = Acquisition::new(dev, wall_clock_ns as fn() -> u64, 256)
        .map_err(|e| start(format!("detector: {e}")))?;
    engine
        .configure(&params)
        .map_err(|e| usage(format!("configure: {e}")))?;
    let control = SessionControl::default();
    stop_on_signals(&control)?;
    if params.trigger.is_software() {
        // `run` issues the software triggers itself: one per frame requested.
        control
            .soft_triggers
            .store(args.frames.max(1), std::sync::atomic::Ordering::Relaxed);
    }
    let config = session_config(&args.sinks, args.detector.ring_frames, !args.quiet)?;
    let zmq = zmq::Context::new();
    run_session(&mut engine, &desc, &config, &control, &zmq).map_err(|e| start(e.to_string()))
}

fn session_config(
    sinks: &SinkArgs,
    ring_frames: usize,
    status: bool,
) -> Result<SessionConfig, Failure> {
    let output = sinks.out.as_ref().map(|dir| OutputConfig {
        dir: dir.clone(),
        name: sinks.file.clone(),
        frames_per_file: sinks.frames_per_file,
        overwrite: sinks.overwrite,
        swmr: sinks.swmr,
        flush_interval: sinks.flush_interval,
    });
    if sinks.frames_per_file == Some(0) {
        return Err(usage("--frames-per-file must be at least 1"));
    }
    Ok(SessionConfig {
        series_name: sinks.file.clone(),
        series_overwritable: sinks.overwrite,
        output,
        stream: sinks.stream.as_ref().map(|endpoint| StreamConfig {
            endpoint: endpoint.clone(),
            kind: sinks.stream_type.into(),
            high_water_mark: sinks.stream_hwm,
            subscriber_wait: sinks.stream_wait,
        }),
        monitor: sinks.monitor.clone(),
        ring_frames,
        status_every: status.then_some(Duration::from_secs(1)),
    })
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
            run(args).map(|summary| {
                print_summary(&summary, json);
                summary.failed()
            })
        }
        Command::Serve(args) => serve_main(args).map(|()| false),
    };
    match result {
        Ok(false) => ExitCode::SUCCESS,
        Ok(true) => ExitCode::from(EXIT_FAILED),
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
    let shutdown: Arc<AtomicBool> = Arc::clone(&control.stop);
    let config = ServeConfig {
        control_endpoint: args.control,
        default_stream: args.stream.map(|endpoint| StreamConfig {
            endpoint,
            kind: args.stream_type.into(),
            high_water_mark: 1000,
            subscriber_wait: Duration::from_secs(1),
        }),
        monitor: args.monitor,
        out_dir: args.out,
        ring_frames: args.detector.ring_frames,
        status_lines: !args.quiet,
    };
    serve(dev, wall_clock_ns, config, shutdown).map_err(|e| start(e.to_string()))
}
