//! xfel-serve: serves EuXFEL files and runs on the Karabo Bridge, as EXtra-data's
//! `karabo-bridge-serve-files` and `karabo-bridge-serve-run`.

use std::io::{IsTerminal, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use euxfel::DataOrigin;
use euxfel::{DataCollection, OpenOptions, TrainSelection, Warning};
use karabo_bridge::files::{FileTrains, KEY_BEING_READ, TRAIN_BEING_READ};
use karabo_bridge::protocol::Protocol;
use karabo_bridge::serve::{
    deliver, endpoint_for, serve, ServeConfig, ServeEvent, ServeSummary, SocketType,
};

const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_START: u8 = 3;

#[derive(Parser)]
#[command(
    version,
    about = "Serve EuXFEL files and runs on the Karabo Bridge",
    long_about = "Serve EuXFEL files or runs on the Karabo Bridge (ZeroMQ + msgpack), train by train, \
as EXtra-data's karabo-bridge-serve-files (`xfel-serve files`) and karabo-bridge-serve-run \
(`xfel-serve run`) do, for karabo_bridge.Client and the C++ client.\n\n\
A bare port number binds 127.0.0.1 only (EXtra-data binds every interface); --bind-all binds \
every interface, and a full endpoint (tcp://HOST:PORT, ipc://PATH) is used as given. Port 0 \
picks a free port; the endpoint is printed as `Streamer started on: ENDPOINT`.\n\n\
A key that cannot be read for a train (a dataset shorter than its index, a corrupt chunk) is \
left out of that train only: the train is sent with its other keys (a detector module's stacked \
key as a missing module with --append-detector-modules). The summary (and --json: keys_omitted, \
skipped_train_ranges) names each key left out with the train IDs it is missing from.\n\n\
Exit codes: 0 every train sent whole (or stopped by SIGINT/SIGTERM); 1 something of the data was \
left out: a file that could not be opened, a train that could not be read or encoded (skipped), \
a key that could not be read for some trains (those trains sent without it), each reported and \
serving going on; or a file shrank while it was served (reported, serving ends); 2 bad \
arguments, or `run` without --include (the sources are listed); 3 could not start (data, \
selection, socket)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a file or run directory (karabo-bridge-serve-files PATH PORT).
    Files {
        /// An EuXFEL HDF5 file or a run directory.
        path: PathBuf,
        /// TCP port (on 127.0.0.1 unless --bind-all) or ZeroMQ endpoint.
        port: String,
        /// Serve only matching sources ('*' is a wildcard).
        #[arg(long, default_value = "*")]
        source: String,
        /// Serve only matching keys of the selected sources.
        #[arg(long, default_value = "*")]
        key: String,
        /// Only trains where every selected source has data.
        #[arg(long)]
        require_all: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Serve a run by proposal and run number (karabo-bridge-serve-run PROPOSAL RUN).
    Run {
        /// Proposal number (2012, p002012) or proposal directory.
        proposal: String,
        /// Run number (243, r0243).
        run: String,
        /// TCP port (on 127.0.0.1 unless --bind-all) or ZeroMQ endpoint; 0 picks a free port.
        #[arg(long, default_value = "0")]
        port: String,
        /// Sources to serve, `SRC_GLOB` or `SRC_GLOB[KEY_GLOB]` (repeat). Without it the run's
        /// sources are listed.
        #[arg(long, value_name = "PATTERN")]
        include: Vec<String>,
        /// Serve trains where some selected sources are missing (default: only trains where
        /// all have data).
        #[arg(long)]
        allow_partial: bool,
        /// Which data of the run, as EXtra-data's open_run `data=`: all (raw, then proc
        /// replacing raw sources of the same name; karabo-bridge-serve-run's choice),
        /// default (proc, then raw replacing), raw, proc, another location of the proposal
        /// (usr/Shared/x) or a comma list of them.
        #[arg(long, default_value = "all")]
        data: DataOrigin,
        /// Data root holding INSTRUMENT/CYCLE/pPROPOSAL (default $EXTRA_DATA_DATA_ROOT, else
        /// /gpfs/exfel/exp).
        #[arg(long, value_name = "DIR")]
        data_root: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args)]
struct Common {
    /// ZeroMQ socket type.
    #[arg(short = 'z', long, value_enum, default_value = "REP")]
    socket_type: SocketType,
    /// Karabo Bridge protocol version.
    #[arg(long, value_enum, default_value = "2.2")]
    protocol: Protocol,
    /// Add timestamp, timestamp.sec and timestamp.frac from the machine clock to the metadata.
    #[arg(long)]
    dummy_timestamps: bool,
    /// Stack the AGIPD, DSSC or LPD module sources into one source <DETECTOR>/DET/APPEND.
    #[arg(long)]
    append_detector_modules: bool,
    /// Serve only trains with FIRST <= train ID < STOP (either may be left out: `:STOP`).
    #[arg(long, value_name = "FIRST:STOP")]
    train_range: Option<String>,
    /// Send at most HZ trains per second (no limit by default).
    #[arg(long, value_name = "HZ")]
    rate: Option<f64>,
    /// Start over at the first train after the last (not after a pass in which no train
    /// could be sent).
    #[arg(long = "loop")]
    repeat: bool,
    /// Bind a bare port number on every interface instead of 127.0.0.1.
    #[arg(long)]
    bind_all: bool,
    /// The summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

fn parse_range(text: &str) -> Result<TrainSelection, String> {
    let (a, b) = text
        .split_once(':')
        .ok_or_else(|| format!("--train-range {text:?}: expected FIRST:STOP"))?;
    let parse = |s: &str| -> Result<Option<u64>, String> {
        if s.is_empty() {
            Ok(None)
        } else {
            s.parse()
                .map(Some)
                .map_err(|_| format!("--train-range {text:?}: {s:?} is not a train ID"))
        }
    };
    Ok(TrainSelection::IdRange(parse(a)?, parse(b)?))
}

/// `src_glob[key_glob]` or `src_glob`.
fn parse_include(pattern: &str) -> Result<(String, String), String> {
    match pattern.split_once('[') {
        None => Ok((pattern.to_string(), "*".to_string())),
        Some((src, rest)) => rest
            .strip_suffix(']')
            .map(|key| (src.to_string(), key.to_string()))
            .ok_or_else(|| format!("Missing final ] in {pattern:?}")),
    }
}

/// Trains sent so far, for the SIGBUS handler.
static TRAINS_SENT: AtomicU64 = AtomicU64::new(0);

/// Appends `bytes` to `buf` at `*len`, as far as it holds them (no allocation: this runs in a
/// signal handler).
fn push_bytes(buf: &mut [u8], len: &mut usize, bytes: &[u8]) {
    for &b in bytes {
        if let Some(slot) = buf.get_mut(*len) {
            *slot = b;
            *len += 1;
        }
    }
}

fn push_number(buf: &mut [u8], len: &mut usize, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    push_bytes(buf, len, &digits[i..]);
}

/// Whether the summary goes out as JSON (for the SIGBUS handler: its report is JSON too).
static JSON_SUMMARY: AtomicBool = AtomicBool::new(false);

/// Appends `bytes` to `buf` as the inside of a JSON string (no allocation: signal handler).
fn push_json_escaped(buf: &mut [u8], len: &mut usize, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // A file name that is not UTF-8 would make the whole object invalid: its non-ASCII
    // bytes become '?'.
    let utf8 = std::str::from_utf8(bytes).is_ok();
    for &b in bytes {
        match b {
            b'"' | b'\\' => push_bytes(buf, len, &[b'\\', b]),
            0..=0x1f => push_bytes(
                buf,
                len,
                &[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ],
            ),
            0x80..=0xff if !utf8 => push_bytes(buf, len, b"?"),
            _ => push_bytes(buf, len, &[b]),
        }
    }
}

/// A read from a memory-mapped file that has shrunk since it was opened (truncated or
/// rewritten while served) faults with SIGBUS: the process cannot go on, but it says why and
/// where (on stderr, and with --json as `{"error": ..., "exit_code": 1, "trains_sent": N}` on
/// stdout) before it ends with exit status 1.
extern "C" fn on_bus_error(_signal: libc::c_int) {
    let mut buf = [0u8; 1024];
    let mut len = 0;
    let train_id = TRAIN_BEING_READ.load(Ordering::Relaxed);
    let trains_sent = TRAINS_SENT.load(Ordering::Relaxed);
    push_bytes(&mut buf, &mut len, b"bus error reading train ");
    push_number(&mut buf, &mut len, train_id);
    let key = KEY_BEING_READ.load(Ordering::Relaxed);
    if !key.is_null() {
        // SAFETY: non-null only while `FileTrains::for_each` borrows the KeyData it points to;
        // SIGBUS is raised on the thread whose read faulted, which is inside that call.
        let key = unsafe { &*key };
        push_bytes(&mut buf, &mut len, b", key ");
        push_bytes(&mut buf, &mut len, key.key.as_bytes());
        push_bytes(&mut buf, &mut len, b" of ");
        push_bytes(&mut buf, &mut len, key.source.as_bytes());
        let file = key
            .files
            .iter()
            .find(|f| f.train_ids.binary_search(&train_id).is_ok());
        if let Some(file) = file {
            push_bytes(&mut buf, &mut len, b" in ");
            push_bytes(&mut buf, &mut len, file.path.as_os_str().as_bytes());
        }
    }
    push_bytes(
        &mut buf,
        &mut len,
        b": a file of the data shrank while it was served (truncated or rewritten); stopped \
after ",
    );
    push_number(&mut buf, &mut len, trains_sent);
    push_bytes(&mut buf, &mut len, b" trains sent");
    let message = &buf[..len];
    let mut line = [0u8; 1100];
    let mut line_len = 0;
    push_bytes(&mut line, &mut line_len, b"xfel-serve: ");
    push_bytes(&mut line, &mut line_len, message);
    push_bytes(&mut line, &mut line_len, b"\n");
    // Escaped, a message byte takes up to 6.
    let mut json = [0u8; 6 * 1024 + 128];
    let mut json_len = 0;
    if JSON_SUMMARY.load(Ordering::Relaxed) {
        push_bytes(&mut json, &mut json_len, b"{\"error\":\"");
        push_json_escaped(&mut json, &mut json_len, message);
        push_bytes(
            &mut json,
            &mut json_len,
            b"\",\"exit_code\":1,\"trains_sent\":",
        );
        push_number(&mut json, &mut json_len, trains_sent);
        push_bytes(&mut json, &mut json_len, b"}\n");
    }
    // SAFETY: write(2) and _exit(2) are async-signal-safe; `line` and `json` live on this
    // stack frame and hold `line_len` and `json_len` initialised bytes.
    unsafe {
        libc::write(2, line.as_ptr().cast(), line_len);
        if json_len > 0 {
            libc::write(1, json.as_ptr().cast(), json_len);
        }
        libc::_exit(i32::from(EXIT_FAILED));
    }
}

fn handle_bus_errors() -> std::io::Result<()> {
    // SAFETY: a zeroed sigaction is a valid value (no flags, empty mask after sigemptyset);
    // the handler only calls async-signal-safe functions and never returns.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_bus_error as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Reports why serving did not start: on stderr, and with `--json` also as
/// `{"error": ..., "exit_code": ...}` on stdout so that the output always parses.
fn fail(json: bool, code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("xfel-serve: {message}");
    if json {
        println!(
            "{}",
            serde_json::json!({"error": message.to_string(), "exit_code": code})
        );
    }
    ExitCode::from(code)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = match &cli.command {
        Command::Files { common, .. } | Command::Run { common, .. } => common.json,
    };
    let opts = OpenOptions::default();
    // Warnings of opening the data (files left out) and of selecting trains, printed below.
    let mut warnings: Vec<Warning> = Vec::new();
    let (data, port, common) = match cli.command {
        Command::Files {
            path,
            port,
            source,
            key,
            require_all,
            common,
        } => {
            let opened = if path.is_dir() {
                DataCollection::open_run(&path, &opts)
            } else {
                DataCollection::open_file(&path)
            };
            // Errors of opening name the file; those of selecting get the path given.
            let selected = opened.map_err(|e| e.to_string()).and_then(|dc| {
                warnings.extend(dc.warnings().iter().cloned());
                dc.select(&[(source, key)], require_all, false)
                    .map_err(|e| format!("{}: {e}", path.display()))
            });
            (selected, port, common)
        }
        Command::Run {
            proposal,
            run,
            port,
            include,
            allow_partial,
            data,
            data_root,
            common,
        } => {
            let root = euxfel::data_root(data_root.as_deref());
            let dc = match euxfel::open_run_by_number(&root, &proposal, &run, &data, &opts) {
                Ok((dc, missing)) => {
                    // As open_run warns, before the files left out.
                    for m in missing {
                        eprintln!("xfel-serve: {m}");
                    }
                    warnings.extend(dc.warnings().iter().cloned());
                    dc
                }
                Err(e) => return fail(json, EXIT_START, e),
            };
            if include.is_empty() {
                if json {
                    // The sources go with the error object.
                    let sources: Vec<String> = dc.all_sources().into_iter().collect();
                    eprintln!("xfel-serve: Please select at least one source with --include");
                    println!(
                        "{}",
                        serde_json::json!({
                            "error": "Please select at least one source with --include",
                            "exit_code": EXIT_USAGE,
                            "sources": sources,
                        })
                    );
                    return ExitCode::from(EXIT_USAGE);
                }
                println!("Available sources:");
                for s in dc.all_sources() {
                    println!("  {s}");
                }
                return fail(
                    json,
                    EXIT_USAGE,
                    "Please select at least one source with --include",
                );
            }
            let patterns: Result<Vec<_>, _> = include.iter().map(|p| parse_include(p)).collect();
            let patterns = match patterns {
                Ok(p) => p,
                Err(e) => return fail(json, EXIT_USAGE, e),
            };
            let selected = dc
                .select(&patterns, !allow_partial, allow_partial)
                .map_err(|e| e.to_string());
            (selected, port, common)
        }
    };
    let mut dc = match data {
        Ok(dc) => dc,
        Err(e) => return fail(json, EXIT_START, e),
    };
    if let Some(range) = &common.train_range {
        let sel = match parse_range(range) {
            Ok(s) => s,
            Err(e) => return fail(json, EXIT_USAGE, e),
        };
        dc = match dc.select_trains(&sel) {
            Ok(dc) => dc,
            Err(e) => return fail(json, EXIT_START, e),
        };
        warnings.extend(dc.warnings().iter().cloned());
    }
    let mut files_skipped = 0;
    for w in &warnings {
        eprintln!("xfel-serve: {w}");
        files_skipped += u64::from(matches!(w, Warning::SkippedFile { .. }));
    }
    if common.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return fail(
            json,
            EXIT_USAGE,
            "--rate must be a positive number of trains per second",
        );
    }
    let n_trains = dc.train_ids.len();
    let trains = match FileTrains::new(dc, common.append_detector_modules) {
        Ok(t) => t,
        Err(e) => return fail(json, EXIT_START, e),
    };
    if common.append_detector_modules {
        match trains.detector() {
            Some(det) => eprintln!(
                "xfel-serve: {} modules of {} served as {}",
                det.modules.len(),
                det.name,
                det.append_source()
            ),
            None => eprintln!(
                "xfel-serve: --append-detector-modules: no AGIPD, DSSC or LPD modules in the \
                 selection; sources are served unchanged"
            ),
        }
    }
    let config = ServeConfig {
        endpoint: endpoint_for(&port, common.bind_all),
        socket: common.socket_type,
        protocol: common.protocol,
        dummy_timestamps: common.dummy_timestamps,
        rate: common.rate,
        repeat: common.repeat,
    };
    JSON_SUMMARY.store(common.json, Ordering::Relaxed);
    if let Err(e) = handle_bus_errors() {
        return fail(
            json,
            EXIT_START,
            format!("cannot install the SIGBUS handler: {e}"),
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(&stop)) {
            return fail(
                json,
                EXIT_START,
                format!("cannot install the signal handler: {e}"),
            );
        }
    }
    let ctx = zmq::Context::new();
    let mut progress = Progress::new(n_trains);
    let result = serve(&ctx, trains, &config, &stop, &mut |event| {
        progress.event(event)
    });
    progress.finish();
    let mut summary = match result {
        Ok(s) => s,
        Err(e) => return fail(json, EXIT_START, e),
    };
    summary.files_skipped = files_skipped;
    // The summary is printed once the trains sent are delivered, or a signal gave up on them.
    if !deliver(ctx, &stop) {
        summary.stopped = true;
        summary.delivery_interrupted = true;
    }
    report(&summary, common.json);
    if summary.incomplete() {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

/// `Sent i/N trains - Train ID ... - x Hz` on a terminal, as EXtra-data prints it (every 5
/// trains, the rate over the last 10).
struct Progress {
    n_trains: usize,
    tty: bool,
    times: std::collections::VecDeque<Instant>,
    last: Option<(u64, u64, f64)>,
}

impl Progress {
    fn new(n_trains: usize) -> Progress {
        Progress {
            n_trains,
            tty: std::io::stdout().is_terminal(),
            times: std::collections::VecDeque::from([Instant::now()]),
            last: None,
        }
    }

    fn event(&mut self, event: ServeEvent<'_>) {
        match event {
            ServeEvent::Bound(endpoint) => {
                println!("Streamer started on: {endpoint}");
                let _ = std::io::stdout().flush();
            }
            ServeEvent::Skipped(e) => eprintln!("xfel-serve: skipped {e}"),
            // Once per key: the summary has every train it is missing from.
            ServeEvent::KeyOmitted {
                train_id,
                omitted,
                first: true,
            } => eprintln!(
                "xfel-serve: train {train_id} sent without {} {}{}: {} (further trains \
                 without it are counted in the summary)",
                omitted.source,
                omitted.key,
                in_file(omitted.file.as_deref()),
                omitted.error
            ),
            ServeEvent::KeyOmitted { .. } => {}
            // The first 80 bytes: a request can be up to 64 KiB.
            ServeEvent::BadRequest(request) => eprintln!(
                "xfel-serve: Unrecognised request ({} bytes): {:?}",
                request.len(),
                String::from_utf8_lossy(&request[..request.len().min(80)])
            ),
            // Off a terminal nothing is printed: no clock reading per train.
            ServeEvent::Sent { count, .. } if !self.tty => {
                TRAINS_SENT.store(count, Ordering::Relaxed);
            }
            ServeEvent::Sent { count, train_id } => {
                TRAINS_SENT.store(count, Ordering::Relaxed);
                let now = Instant::now();
                let mut rate = self.last.map_or(0.0, |l| l.2);
                if count % 5 == 0 {
                    if let Some(first) = self.times.front() {
                        rate = self.times.len() as f64
                            / now.duration_since(*first).as_secs_f64().max(1e-9);
                    }
                    self.last = Some((count, train_id, rate));
                    self.print('\r');
                }
                self.last = Some((count, train_id, rate));
                if self.times.len() == 10 {
                    self.times.pop_front();
                }
                self.times.push_back(now);
            }
        }
    }

    fn print(&self, end: char) {
        if let (true, Some((count, tid, rate))) = (self.tty, self.last) {
            let mut o = std::io::stdout().lock();
            let _ = write!(
                o,
                "Sent {count}/{} trains - Train ID {tid} - {rate:.1} Hz{end}",
                self.n_trains
            );
            let _ = o.flush();
        }
    }

    fn finish(&self) {
        self.print('\n');
    }
}

/// ` in FILE`, or nothing.
fn in_file(file: Option<&std::path::Path>) -> String {
    file.map_or(String::new(), |f| format!(" in {}", f.display()))
}

fn report(s: &ServeSummary, json: bool) {
    if json {
        if let Ok(text) = serde_json::to_string(s) {
            println!("{text}");
        }
        return;
    }
    let ids = match (s.first_train, s.last_train) {
        (Some(a), Some(b)) => format!(" (train IDs {a} to {b})"),
        _ => String::new(),
    };
    println!(
        "xfel-serve: {} {} trains{ids} in {:.2} s: {:.1} trains/s, {:.1} MB/s{}{}",
        if s.stopped { "stopped after" } else { "sent" },
        s.trains_sent,
        s.elapsed_s,
        s.trains_per_s(),
        s.bytes_sent as f64 / s.elapsed_s.max(1e-9) / 1e6,
        if s.trains_skipped > 0 {
            format!(
                ", {} trains skipped (IDs {})",
                s.trains_skipped, s.skipped_train_ranges
            )
        } else {
            String::new()
        },
        if s.bad_requests > 0 {
            format!(", {} bad requests", s.bad_requests)
        } else {
            String::new()
        },
    );
    if s.trains_incomplete > 0 {
        println!(
            "xfel-serve: {} trains sent without keys that could not be read:",
            s.trains_incomplete
        );
        for k in &s.keys_omitted {
            println!(
                "xfel-serve:   {} {}{}: left out of {} trains (IDs {}): {}",
                k.source,
                k.key,
                in_file(k.file.as_deref()),
                k.train_ranges.trains(),
                k.train_ranges,
                k.first_error
            );
        }
    }
    if s.receivers_disconnected > 0 {
        let after: Vec<String> = s
            .disconnected_after_train
            .iter()
            .map(|t| t.map_or("none".into(), |t| t.to_string()))
            .collect();
        println!(
            "xfel-serve: {} receivers disconnected while trains were pushed (after train IDs {}): \
             the trains queued to each (ZeroMQ and TCP buffers, up to several MB) were lost \
             with it",
            s.receivers_disconnected,
            after.join(", ")
        );
    }
    if s.delivery_interrupted {
        println!(
            "xfel-serve: stopped while the last trains sent were still queued for a receiver \
             that did not take them: they may not have been delivered"
        );
    }
    if s.files_skipped > 0 {
        println!(
            "xfel-serve: {} files of the data could not be opened and were left out",
            s.files_skipped
        );
    }
}
