//! xsp3-receive: receives the Xspress3 frame stream of `xsp3-acquire` and writes each series into
//! the same HDF5 layout, or prints rates with `--print`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use xsp3_receive::{
    Event, Outcome, RateReport, ReceiveMode, Receiver, ReceiverConfig, SeriesSummary, SocketKind,
    StopReason, Summary, WriteConfig,
};
use xspress3::units::parse_duration;

const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_START: u8 = 3;
const EXIT_DATA_LOST: u8 = 4;

#[derive(Parser)]
#[command(
    version,
    about = "Receive the Xspress3 frame stream and write it as HDF5 (or print rates)",
    long_about = "Receive the Xspress3 frame stream of xsp3-acquire (PULL, or SUB with --sub) and \
write every series into the acquisition file layout under --root, with the same writer \
xsp3-acquire uses. Runs for successive series until --once, --timeout or Ctrl-C.\n\n\
File names: --file NAME if given, else the header's `filename`; a series whose header has an \
empty filename (and no --file) is received and counted but not written. Names are relative to \
--root; an absolute name, one with a `..` component or one that passes a symbolic link is \
refused (the series is not written, the receiver reports it and goes on). Existing files are replaced only with --overwrite.\n\n\
Malformed messages are skipped, counted and reported; the receiver keeps running. Gaps in \
msg_number, frames the sender lost or refused, and a series that ends without series_end are \
recorded in the file (frames_lost, lost_frame_ranges, stream_gaps).\n\n\
Exit codes: 0 every series complete; 1 something failed but no frame was lost (a malformed \
message outside any series, no series at all with --once and --timeout); 2 bad arguments; 3 could \
not start (socket, output root); 4 data lost: a frame was lost or discarded anywhere (upstream, \
in the stream, unacknowledged, malformed, refused name or header, a write error, a sender error), \
or --timeout expired mid-series. SIGINT and SIGTERM finish the open file and exit 0 unless data \
was lost before."
)]
struct Cli {
    /// Endpoint of the sender's stream, e.g. tcp://127.0.0.1:9999.
    #[arg(long, value_name = "ENDPOINT")]
    connect: String,
    /// Connect a SUB socket (for a sender with --stream-type pub); default PULL.
    #[arg(long)]
    sub: bool,
    /// Directory every file is written in (created if missing). Required unless --print.
    #[arg(long, value_name = "DIR", required_unless_present = "print")]
    root: Option<PathBuf>,
    /// Base file name for every series, instead of the header's `filename`.
    #[arg(long, value_name = "NAME")]
    file: Option<String>,
    /// Replace existing files (the sender's `overwritable` alone never does).
    #[arg(long)]
    overwrite: bool,
    /// Start a new file every N frames (NAME_00000.h5, NAME_00001.h5, ...).
    #[arg(long, value_name = "N")]
    frames_per_file: Option<u64>,
    /// Write with SWMR so readers can follow the file live.
    #[arg(long)]
    swmr: bool,
    /// Flush files this often (bounds what a crash can lose).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    flush_interval: Duration,
    /// Write nothing: print frames/s, MB/s and msg_number gaps once a second, and a summary per
    /// series.
    #[arg(long)]
    print: bool,
    /// Exit after the first series has ended.
    #[arg(long)]
    once: bool,
    /// Exit when no message arrived for this long, e.g. 10s (non-zero if mid-series).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Messages ZMQ queues in the receiver before PULL applies back-pressure (or SUB drops);
    /// each holds one frame (64 KiB at 4 x 4096), so this bounds the receiver's memory.
    #[arg(long, default_value_t = 1000)]
    hwm: i32,
    /// Do not acknowledge written frames on the sender's back channel (acknowledged PUSH,
    /// docs/protocol.md): behave as a plain PULL client.
    #[arg(long)]
    no_ack: bool,
    /// JSON Lines on stdout: one object per finished series (and per second with --print), then
    /// the summary.
    #[arg(long)]
    json: bool,
    /// No progress lines on stderr (errors are still printed).
    #[arg(long, short)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.frames_per_file == Some(0) {
        eprintln!("xsp3-receive: --frames-per-file must be at least 1");
        return ExitCode::from(EXIT_USAGE);
    }
    if cli.timeout == Some(Duration::ZERO) {
        eprintln!("xsp3-receive: --timeout must be longer than 0");
        return ExitCode::from(EXIT_USAGE);
    }
    let mode = match (&cli.root, cli.print) {
        (Some(root), false) => ReceiveMode::Write(WriteConfig {
            root: root.clone(),
            file: cli.file.clone(),
            frames_per_file: cli.frames_per_file,
            overwrite: cli.overwrite,
            swmr: cli.swmr,
            flush_interval: cli.flush_interval,
        }),
        _ => ReceiveMode::Print,
    };
    let config = ReceiverConfig {
        endpoint: cli.connect.clone(),
        kind: if cli.sub {
            SocketKind::Sub
        } else {
            SocketKind::Pull
        },
        mode,
        high_water_mark: cli.hwm,
        once: cli.once,
        timeout: cli.timeout,
        software: format!("xsp3-receive {}", env!("CARGO_PKG_VERSION")),
        // Print mode writes nothing, so it has nothing to acknowledge.
        acknowledge: !cli.no_ack && !cli.print,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(&stop)) {
            eprintln!("xsp3-receive: cannot install the signal handler: {e}");
            return ExitCode::from(EXIT_START);
        }
    }
    let ctx = zmq::Context::new();
    let receiver = match Receiver::connect(&ctx, config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("xsp3-receive: {e}");
            return ExitCode::from(EXIT_START);
        }
    };
    let mut out = Output {
        json: cli.json,
        print: cli.print,
        quiet: cli.quiet,
    };
    let summary = receiver.run(&stop, &mut |e| out.event(e));
    out.summary(&summary);
    match summary.outcome() {
        Outcome::Complete => ExitCode::SUCCESS,
        Outcome::Failed => ExitCode::from(EXIT_FAILED),
        Outcome::DataLost => ExitCode::from(EXIT_DATA_LOST),
    }
}

/// Formats the receiver's events: progress on stderr (stdout with --print), finished series and
/// the summary on stdout, errors on stderr.
struct Output {
    json: bool,
    print: bool,
    quiet: bool,
}

impl Output {
    fn event(&mut self, event: &Event) {
        match event {
            Event::Error { message } => eprintln!("xsp3-receive: {message}"),
            Event::SeriesStart {
                index,
                filename,
                file,
                n_channels,
                n_bins,
                n_frames,
            } => {
                if self.quiet || self.json {
                    return;
                }
                let target = match (self.print, file) {
                    (true, _) => "print only".to_string(),
                    (false, Some(f)) => format!("writing `{f}`"),
                    (false, None) => "not written".to_string(),
                };
                let line = format!(
                    "series {index}: header `{}` ({n_channels} ch x {n_bins} bins, {} frames): {target}",
                    filename.escape_debug(),
                    if *n_frames == 0 { "unbounded".to_string() } else { n_frames.to_string() }
                );
                self.progress(&line);
            }
            Event::Rate(r) => self.rate(r),
            Event::SeriesEnd(s) => self.series_end(s),
        }
    }

    fn progress(&self, line: &str) {
        if self.print {
            println!("{line}");
        } else {
            eprintln!("xsp3-receive: {line}");
        }
    }

    fn rate(&self, r: &RateReport) {
        if self.json {
            if self.print {
                json_line(&Event::Rate(r.clone()));
            }
            return;
        }
        if self.quiet && !self.print {
            return;
        }
        let series = r
            .series
            .map_or("no series".to_string(), |i| format!("series {i}"));
        self.progress(&format!(
            "{series}: {} frames | {:.1} frames/s {:.1} MB/s | msg gaps {} | malformed {}",
            r.frames, r.frames_per_s, r.mb_per_s, r.msg_gaps, r.malformed
        ));
    }

    fn series_end(&self, s: &SeriesSummary) {
        if self.json {
            json_line(&Event::SeriesEnd(Box::new(s.clone())));
            return;
        }
        let mut o = std::io::stdout().lock();
        let _ = writeln!(
            o,
            "series {}: {} frames received ({:.1} frames/s, {:.1} MB/s){}{}",
            s.index,
            s.frames_received,
            s.frames_per_s,
            s.mb_per_s,
            match (&s.written_as, self.print) {
                (_, true) => String::new(),
                (Some(_), false) => format!(", {} written", s.frames_written),
                (None, false) => ", not written".to_string(),
            },
            if s.series_end_received {
                ""
            } else {
                ", no series_end"
            }
        );
        if s.msg_gaps > 0 {
            let _ = writeln!(
                o,
                "  msg gaps {} ({} messages missing)",
                s.msg_gaps, s.msg_missing
            );
        }
        if s.frames_lost_upstream > 0 || s.sender_stream_drops > 0 {
            let _ = writeln!(
                o,
                "  sender   {} frames lost before the stream, {} refused by PUB",
                s.frames_lost_upstream, s.sender_stream_drops
            );
        }
        if s.writer_waits > 0 {
            let _ = writeln!(
                o,
                "  writer   receiving waited for the disk {} times",
                s.writer_waits
            );
        }
        if s.frames_discarded > 0 {
            let _ = writeln!(o, "  discarded {} frames", s.frames_discarded);
        }
        for f in &s.files {
            let _ = writeln!(o, "  file     {} ({} frames)", f.path.display(), f.frames);
        }
        if let Some(e) = &s.sender_error {
            let _ = writeln!(o, "  sender error: {e}");
        }
        if s.sender_frames_unsent > 0 || s.frames_unacked > 0 {
            let _ = writeln!(
                o,
                "  sender   {} frames not delivered, {} never acknowledged by a receiver",
                s.sender_frames_unsent, s.frames_unacked
            );
        }
    }

    fn summary(&self, s: &Summary) {
        if self.json {
            #[derive(serde::Serialize)]
            struct Line<'a> {
                event: &'static str,
                failed: bool,
                #[serde(flatten)]
                summary: &'a Summary,
            }
            json_line(&Line {
                event: "summary",
                failed: s.failed(),
                summary: s,
            });
            return;
        }
        let mut o = std::io::stdout().lock();
        if s.outcome() == Outcome::DataLost {
            // The line a user must not miss: bold red on a terminal.
            let (on, off) = if std::io::stdout().is_terminal() {
                ("\x1b[1;31m", "\x1b[0m")
            } else {
                ("", "")
            };
            let _ = writeln!(
                o,
                "{on}xsp3-receive: DATA LOST in {} of {} series (see each series above){off}",
                s.series_failed
                    .max(u64::from(s.orphan_images > 0 || s.ended_mid_series)),
                s.series_ended
            );
        }
        let _ = writeln!(
            o,
            "xsp3-receive: {} after {:.2} s (stopped by {}): {} series, {} frames, {:.1} MB",
            match s.outcome() {
                Outcome::Complete => "done",
                Outcome::Failed => "failed",
                Outcome::DataLost => "incomplete",
            },
            s.elapsed_s,
            match s.stopped_by {
                StopReason::Once => "--once",
                StopReason::Signal => "signal",
                StopReason::Timeout => "--timeout",
                StopReason::SocketError => "socket error",
            },
            s.series_ended,
            s.frames_received,
            s.bytes_received as f64 / 1e6
        );
        if s.malformed_messages > 0 || s.orphan_images > 0 || s.stray_series_ends > 0 {
            let _ = writeln!(
                o,
                "  malformed {} messages, {} images outside a series, {} stray series_end",
                s.malformed_messages, s.orphan_images, s.stray_series_ends
            );
        }
        for e in &s.errors {
            let _ = writeln!(o, "  error    {e}");
        }
    }
}

fn json_line<T: serde::Serialize>(value: &T) {
    if let Ok(text) = serde_json::to_string(value) {
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "{text}");
        let _ = o.flush();
    }
}
