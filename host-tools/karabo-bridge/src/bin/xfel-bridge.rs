//! xfel-bridge: receives Karabo Bridge streams: `glimpse` prints one train, `monitor` counts
//! trains, rates and missing train IDs, `record` writes the trains as a EuXFEL run.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use karabo_bridge::client::{Client, ClientConfig, ClientError, ClientSocket, Received};
use karabo_bridge::dtype::{Dtype, Kind, Scalar};
use karabo_bridge::record::{RecordError, Recording};
use karabo_bridge::serve::{SocketType, TrainRanges};
use karabo_bridge::train::{Array, Entry, SourceTrain};
use rmpv::Value;

const EXIT_FAILED: u8 = 1;
const EXIT_START: u8 = 3;
/// How long one receive waits before the stop flag and the timeout are checked.
const SLICE_MS: i32 = 200;
/// Array values shown by glimpse.
const HEAD: usize = 8;
/// Malformed-message descriptions kept in the monitor's summary.
const MAX_ERRORS: usize = 20;

#[derive(Parser)]
#[command(
    version,
    about = "Receive and inspect Karabo Bridge streams",
    long_about = "Receive Karabo Bridge trains (protocols 1.0 and 2.2) from a server with REQ (for a REP \
server, the default), SUB (-z PUB) or PULL (-z PUSH). Malformed messages (odd part counts, \
unknown content, truncated msgpack, shapes that disagree with the payload) are counted and \
reported, never fatal.\n\n\
Exit codes: 0 fine; 1 malformed messages were received, or no train came within --timeout, \
or (record) a train or source was left out, or a write error ended the recording (the trains \
recorded and lost are listed as train ID ranges); 2 bad arguments; 3 could not connect or \
(record) could not \
create the output; (record) 128+N stopped by signal N (SIGINT 130, SIGTERM 143), the trains \
received until then written (1 if trains were lost). With --json, glimpse and record print a start failure \
as {\"error\": ..., \"exit_code\": 3}."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Connect {
    /// ZeroMQ endpoint of the server, e.g. tcp://127.0.0.1:4545.
    endpoint: String,
    /// The server's socket type (REP, PUB or PUSH); the client uses REQ, SUB or PULL.
    #[arg(short = 'z', long, value_enum, default_value = "REP")]
    server_socket: SocketType,
    /// Give up after this many seconds without a train.
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,
    /// Largest message part accepted, in bytes (a peer announcing more is disconnected).
    #[arg(long, default_value_t = 4 << 30, value_name = "BYTES")]
    max_part_bytes: i64,
    /// One JSON object on stdout instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Print one train's sources, keys, types, shapes and values (karabo-bridge-glimpse).
    Glimpse {
        #[command(flatten)]
        connect: Connect,
        /// More values of each array.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Print trains/s, MB/s, train IDs and missing trains once a second (karabo-bridge-monitor).
    Monitor {
        #[command(flatten)]
        connect: Connect,
        /// Stop after N trains.
        #[arg(long, value_name = "N")]
        ntrains: Option<u64>,
    },
    /// Write the received trains into a EuXFEL run directory (until --trains N, --timeout or
    /// SIGINT); EXtra-data reads it.
    Record {
        #[command(flatten)]
        connect: Connect,
        /// The run directory (created); the files are RAW-R<run>-DA01-S<nnnnn>.h5.
        #[arg(short, long, value_name = "RUN_DIR")]
        output: PathBuf,
        /// Stop after N trains recorded.
        #[arg(long, value_name = "N")]
        trains: Option<u64>,
        /// Trains per sequence file: each file is complete once it holds them, so a write
        /// error or a crash loses at most the file being written.
        #[arg(long, value_name = "N", default_value_t = 500,
              value_parser = clap::value_parser!(u32).range(1..))]
        trains_per_file: u32,
        /// Proposal number in METADATA.
        #[arg(long, default_value_t = 0)]
        proposal: u32,
        /// Run number in METADATA and the file name.
        #[arg(long, default_value_t = 1)]
        run: u32,
        /// Remove the run's existing sequence files first (else they make it fail to start).
        #[arg(long)]
        overwrite: bool,
    },
}

fn connect(ctx: &zmq::Context, c: &Connect) -> Result<Client, ClientError> {
    let mut config = ClientConfig::new(&c.endpoint, ClientSocket::for_server(c.server_socket));
    config.timeout_ms = Some(SLICE_MS);
    config.max_part_bytes = c.max_part_bytes;
    Client::connect(ctx, config)
}

/// What one wait for a train gave.
enum Next {
    Train(Received),
    Malformed(String),
    /// The stop flag or the timeout ended the wait.
    End,
}

fn next(
    client: &mut Client,
    stop: &AtomicBool,
    timeout: Option<Duration>,
    since: Instant,
) -> Result<Next, ClientError> {
    loop {
        if stop.load(Ordering::Relaxed) || timeout.is_some_and(|t| since.elapsed() >= t) {
            return Ok(Next::End);
        }
        match client.next_train() {
            Ok(r) => return Ok(Next::Train(r)),
            Err(ClientError::Timeout { .. } | ClientError::Interrupted) => {}
            Err(e @ (ClientError::Malformed { .. } | ClientError::TooManyParts { .. })) => {
                return Ok(Next::Malformed(e.to_string()))
            }
            Err(e) => return Err(e),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stop = Arc::new(AtomicBool::new(false));
    // Which signal stopped it (0: none), for record's exit status.
    let stopped_by = Arc::new(AtomicUsize::new(0));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let registered = signal_hook::flag::register(signal, Arc::clone(&stop)).and_then(|_| {
            signal_hook::flag::register_usize(signal, Arc::clone(&stopped_by), signal as usize)
        });
        if let Err(e) = registered {
            eprintln!("xfel-bridge: cannot install the signal handler: {e}");
            return ExitCode::from(EXIT_START);
        }
    }
    // A file-size limit (ulimit -f) would kill the process at the write that crosses it
    // (SIGXFSZ), leaving neither a finished file nor a summary; handled, the write fails
    // (EFBIG) and `record` ends as on any write error.
    if let Err(e) = signal_hook::flag::register(
        signal_hook::consts::SIGXFSZ,
        Arc::new(AtomicBool::new(false)),
    ) {
        eprintln!("xfel-bridge: cannot install the signal handler: {e}");
        return ExitCode::from(EXIT_START);
    }
    let ctx = zmq::Context::new();
    let (Command::Glimpse { connect: c, .. }
    | Command::Monitor { connect: c, .. }
    | Command::Record { connect: c, .. }) = &cli.command;
    // glimpse and record with --json: a start failure is an object on stdout too.
    let json_errors = c.json && !matches!(cli.command, Command::Monitor { .. });
    let start_failed = |e: &dyn std::fmt::Display| {
        eprintln!("xfel-bridge: {e}");
        if json_errors {
            println!(
                "{}",
                serde_json::json!({"error": e.to_string(), "exit_code": EXIT_START})
            );
        }
        ExitCode::from(EXIT_START)
    };
    let mut client = match connect(&ctx, c) {
        Ok(client) => client,
        Err(e) => return start_failed(&e),
    };
    let timeout = c.timeout.map(Duration::from_secs_f64);
    // record: trains were lost (a write error), which outweighs a signal in the exit status.
    let mut lost = false;
    let result = match &cli.command {
        Command::Glimpse { connect, verbose } => {
            glimpse(&mut client, connect, *verbose, &stop, timeout)
        }
        Command::Monitor { connect, ntrains } => {
            monitor(&mut client, connect, *ntrains, &stop, timeout)
        }
        Command::Record {
            connect,
            output,
            trains,
            trains_per_file,
            proposal,
            run,
            overwrite,
        } => {
            let opts = euxfel_write::RecordOptions {
                proposal: *proposal,
                run: *run,
                overwrite: *overwrite,
                trains_per_file: Some(*trains_per_file as usize),
            };
            match euxfel_write::Recorder::create(output, &opts) {
                Ok(rec) => record(
                    &mut client,
                    Recording::new(rec),
                    output,
                    connect,
                    *trains,
                    &stop,
                    timeout,
                    &mut lost,
                ),
                Err(e) => return start_failed(&format!("cannot start the recording: {e}")),
            }
        }
    };
    let signal = stopped_by.load(Ordering::Relaxed);
    match result {
        // A recording stopped by a signal (its trains written) says so: 128 + N.
        Ok(_) if signal > 0 && !lost && matches!(cli.command, Command::Record { .. }) => {
            ExitCode::from(128u8.saturating_add(u8::try_from(signal).unwrap_or(127)))
        }
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_FAILED),
        Err(e) => {
            eprintln!("xfel-bridge: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Waits for one valid train (reporting malformed messages) and prints it. Ok(false): none came
/// or malformed messages came first.
fn glimpse(
    client: &mut Client,
    c: &Connect,
    verbose: bool,
    stop: &AtomicBool,
    timeout: Option<Duration>,
) -> Result<bool, ClientError> {
    let started = Instant::now();
    let mut malformed = 0;
    let received = loop {
        match next(client, stop, timeout, started)? {
            Next::Train(r) => break r,
            Next::Malformed(e) => {
                malformed += 1;
                eprintln!("xfel-bridge: {e}");
            }
            Next::End => {
                eprintln!("xfel-bridge: no train received from {}", c.endpoint);
                return Ok(false);
            }
        }
    };
    let took = started.elapsed();
    let train = &received.train;
    if c.json {
        let sources: serde_json::Map<String, serde_json::Value> = train
            .sources
            .iter()
            .map(|(name, st)| (name.clone(), source_json(st, verbose)))
            .collect();
        let out = serde_json::json!({
            "train_id": train.train_id(),
            "parts": received.parts,
            "bytes": received.bytes,
            "malformed_before": malformed,
            "sources": sources,
        });
        println!("{out}");
        return Ok(malformed == 0);
    }
    println!(
        "Train ID: {} --------------------------",
        train.train_id().unwrap_or(0)
    );
    println!(
        "Data from {} sources, {} parts, {} bytes, took {:.2} ms",
        train.sources.len(),
        received.parts,
        received.bytes,
        took.as_secs_f64() * 1e3
    );
    println!();
    for (i, (name, st)) in train.sources.iter().enumerate() {
        println!(
            "Source {}: {name:?} @ {}",
            i + 1,
            st.train_id().unwrap_or(0)
        );
        match st.metadata.iter().find(|(k, _)| k == "timestamp") {
            Some((_, ts)) => println!("timestamp: {ts}"),
            None => println!("No timestamp"),
        }
        println!("data:");
        let mut entries: Vec<&(String, Entry)> = st.data.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, entry) in entries {
            print_entry("", key, entry, verbose);
        }
        println!("metadata:");
        for (key, value) in &st.metadata {
            print_value("", key, value);
        }
        println!();
    }
    Ok(malformed == 0)
}

/// Python's type name of a decoded value, as karabo-bridge-glimpse shows it.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Nil => "NoneType",
        Value::Boolean(_) => "bool",
        Value::Integer(_) => "int",
        Value::F32(_) | Value::F64(_) => "float",
        Value::String(_) => "str",
        Value::Binary(_) => "bytes",
        Value::Array(_) => "list",
        Value::Map(_) => "dict",
        Value::Ext(..) => "ExtType",
    }
}

fn print_value(ind: &str, key: &str, value: &Value) {
    if let Value::Map(entries) = value {
        println!("{ind} + [dict] {}", printable(key));
        let inner = format!("{ind}  ");
        for (k, v) in entries {
            print_value(
                &inner,
                &k.as_str().map_or_else(|| k.to_string(), str::to_string),
                v,
            );
        }
        return;
    }
    let mut line = format!(
        "{ind} - [{}] {}, {}",
        type_name(value),
        printable(key),
        printable(&python_text(value))
    );
    if line.chars().count() > 80 {
        line = line.chars().take(77).collect::<String>() + "...";
    }
    println!("{line}");
}

/// How Python's `str.format` shows a decoded value: strings bare, bytes as `b'...'`.
fn python_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.as_str().map_or_else(
            || String::from_utf8_lossy(s.as_bytes()).into_owned(),
            str::to_string,
        ),
        Value::Binary(b) => {
            let mut out = String::from("b'");
            for &c in b {
                match c {
                    b'\\' => out.push_str("\\\\"),
                    b'\'' => out.push_str("\\'"),
                    b'\n' => out.push_str("\\n"),
                    b'\r' => out.push_str("\\r"),
                    b'\t' => out.push_str("\\t"),
                    0x20..=0x7e => out.push(c as char),
                    _ => out.push_str(&format!("\\x{c:02x}")),
                }
            }
            out.push('\'');
            out
        }
        Value::Boolean(true) => "True".into(),
        Value::Boolean(false) => "False".into(),
        Value::Nil => "None".into(),
        Value::F32(f) => float_text(f64::from(*f)).unwrap_or_else(|| value.to_string()),
        Value::F64(f) => float_text(*f).unwrap_or_else(|| value.to_string()),
        other => other.to_string(),
    }
}

/// Python's `nan`, `inf` and `-inf` (None for finite numbers).
fn float_text(f: f64) -> Option<String> {
    if f.is_nan() {
        Some("nan".into())
    } else if f.is_infinite() {
        Some(if f > 0.0 { "inf" } else { "-inf" }.into())
    } else {
        None
    }
}

/// Text from the sender with its control characters escaped (a name or string could
/// otherwise move the cursor, clear or retitle the terminal).
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn print_entry(ind: &str, key: &str, entry: &Entry, verbose: bool) {
    match entry {
        Entry::Value(v) => print_value(ind, key, v),
        Entry::Scalar(s) => println!(
            "{ind} - [{}] {}, {}",
            s.dtype,
            printable(key),
            scalar_text(s.dtype, &s.bytes)
        ),
        Entry::Array(a) => {
            let n = if verbose { 4 * HEAD } else { HEAD };
            // JSON has no NaN or infinity: those are shown as Python does.
            let head: Vec<String> = head_values(a, n)
                .iter()
                .zip(head_floats(a, n))
                .map(|(v, f)| {
                    f.and_then(float_text)
                        .unwrap_or_else(|| printable(&v.to_string()))
                })
                .collect();
            let total = a.shape.iter().product::<usize>();
            let key = printable(key);
            println!(
                "{ind} - [ndarray] {key}, {}, {}, [{}{}]",
                a.dtype,
                shape_text(&a.shape),
                head.join(", "),
                if total > head.len() { ", ..." } else { "" }
            );
        }
    }
}

/// numpy's shape repr: `(3,)`, `(2, 3)`, `()`.
fn shape_text(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn scalar_text(dtype: Dtype, bytes: &[u8]) -> String {
    let s = Scalar {
        dtype,
        bytes: bytes.to_vec(),
    };
    s.item().map_or_else(|| "?".into(), |v| python_text(&v))
}

/// The first `n` elements of a float array as floats (`None` for other types).
fn head_floats(a: &Array, n: usize) -> Vec<Option<f64>> {
    a.data
        .chunks_exact(a.dtype.size.max(1))
        .take(n)
        .map(|b| {
            let s = Scalar {
                dtype: a.dtype,
                bytes: b.to_vec(),
            };
            match s.item() {
                Some(Value::F32(f)) => Some(f64::from(f)),
                Some(Value::F64(f)) => Some(f),
                _ => None,
            }
        })
        .collect()
}

/// The first `n` elements of an array as JSON values.
fn head_values(a: &Array, n: usize) -> Vec<serde_json::Value> {
    a.data
        .chunks_exact(a.dtype.size.max(1))
        .take(n)
        .map(|b| {
            let s = Scalar {
                dtype: a.dtype,
                bytes: b.to_vec(),
            };
            match (a.dtype.kind, s.item()) {
                (Kind::Bytes, Some(Value::Binary(b))) => {
                    serde_json::Value::from(String::from_utf8_lossy(&b).into_owned())
                }
                (_, Some(v)) => value_json(&v),
                (_, None) => serde_json::Value::Null,
            }
        })
        .collect()
}

fn value_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Nil => J::Null,
        Value::Boolean(b) => J::from(*b),
        Value::Integer(i) => i
            .as_u64()
            .map(J::from)
            .or_else(|| i.as_i64().map(J::from))
            .unwrap_or(J::Null),
        Value::F32(f) => serde_json::Number::from_f64(*f as f64).map_or(J::Null, J::Number),
        Value::F64(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::String(s) => J::from(s.as_str().map_or_else(
            || String::from_utf8_lossy(s.as_bytes()).into_owned(),
            str::to_string,
        )),
        Value::Binary(b) => J::from(String::from_utf8_lossy(b).into_owned()),
        Value::Array(items) => J::Array(items.iter().map(value_json).collect()),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().map_or_else(|| k.to_string(), str::to_string),
                        value_json(v),
                    )
                })
                .collect(),
        ),
        Value::Ext(..) => J::Null,
    }
}

fn source_json(st: &SourceTrain, verbose: bool) -> serde_json::Value {
    let data: serde_json::Map<String, serde_json::Value> = st
        .data
        .iter()
        .map(|(key, entry)| {
            let v = match entry {
                Entry::Value(v) => {
                    serde_json::json!({"type": type_name(v), "value": value_json(v)})
                }
                Entry::Scalar(s) => serde_json::json!({
                    "type": "scalar",
                    "dtype": s.dtype.name(),
                    "value": s.item().map_or(serde_json::Value::Null, |v| value_json(&v)),
                }),
                Entry::Array(a) => serde_json::json!({
                    "type": "ndarray",
                    "dtype": a.dtype.name(),
                    "shape": a.shape,
                    "head": head_values(a, if verbose { 4 * HEAD } else { HEAD }),
                }),
            };
            (key.clone(), v)
        })
        .collect();
    let metadata: serde_json::Map<String, serde_json::Value> = st
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), value_json(v)))
        .collect();
    serde_json::json!({"metadata": metadata, "data": data})
}

/// What the monitor saw.
#[derive(Default, serde::Serialize)]
struct MonitorSummary {
    trains: u64,
    bytes: u64,
    first_train: Option<u64>,
    last_train: Option<u64>,
    /// Train IDs skipped between consecutive trains.
    missing_trains: u64,
    /// Trains whose ID was not above the previous one (a server that started over, or
    /// out-of-order delivery).
    train_id_regressions: u64,
    /// Valid messages without a train ID.
    without_train_id: u64,
    malformed: u64,
    errors: Vec<String>,
    elapsed_s: f64,
}

fn monitor(
    client: &mut Client,
    c: &Connect,
    ntrains: Option<u64>,
    stop: &AtomicBool,
    timeout: Option<Duration>,
) -> Result<bool, ClientError> {
    let started = Instant::now();
    let mut s = MonitorSummary::default();
    let mut last_report = Instant::now();
    let (mut window_trains, mut window_bytes) = (0u64, 0u64);
    let mut last_msg = Instant::now();
    while ntrains.is_none_or(|n| s.trains < n) {
        match next(client, stop, timeout, last_msg)? {
            Next::End => break,
            Next::Malformed(e) => {
                last_msg = Instant::now();
                s.malformed += 1;
                eprintln!("xfel-bridge: {e}");
                if s.errors.len() < MAX_ERRORS {
                    s.errors.push(e);
                }
            }
            Next::Train(r) => {
                last_msg = Instant::now();
                s.trains += 1;
                s.bytes += r.bytes;
                window_trains += 1;
                window_bytes += r.bytes;
                match (r.train.train_id(), s.last_train) {
                    (None, _) => s.without_train_id += 1,
                    (Some(t), Some(last)) if t <= last => {
                        s.train_id_regressions += 1;
                        s.last_train = Some(t);
                    }
                    (Some(t), last) => {
                        if let Some(last) = last {
                            s.missing_trains += t - last - 1;
                        }
                        s.first_train.get_or_insert(t);
                        s.last_train = Some(t);
                    }
                }
            }
        }
        let since_report = last_report.elapsed();
        if since_report >= Duration::from_secs(1) && !c.json {
            let secs = since_report.as_secs_f64();
            println!(
                "{:.0} s: {:.1} trains/s, {:.1} MB/s, last train {}, {} trains missing, {} malformed",
                started.elapsed().as_secs_f64(),
                window_trains as f64 / secs,
                window_bytes as f64 / secs / 1e6,
                s.last_train.map_or("-".into(), |t| t.to_string()),
                s.missing_trains,
                s.malformed
            );
            (window_trains, window_bytes) = (0, 0);
            last_report = Instant::now();
        }
    }
    s.elapsed_s = started.elapsed().as_secs_f64();
    if c.json {
        if let Ok(text) = serde_json::to_string(&s) {
            println!("{text}");
        }
    } else {
        println!(
            "xfel-bridge: {} trains ({} to {}) in {:.2} s, {:.1} MB; {} trains missing, {} malformed messages",
            s.trains,
            s.first_train.map_or("-".into(), |t| t.to_string()),
            s.last_train.map_or("-".into(), |t| t.to_string()),
            s.elapsed_s,
            s.bytes as f64 / 1e6,
            s.missing_trains,
            s.malformed
        );
    }
    let complete = ntrains.is_none_or(|n| s.trains >= n) || stop.load(Ordering::Relaxed);
    Ok(s.malformed == 0 && complete)
}

/// What the recorder saw and wrote.
#[derive(Default, serde::Serialize)]
struct RecordSummary {
    /// The complete sequence files written, in order (none when nothing was).
    files: Vec<PathBuf>,
    /// Trains in those files.
    trains: u64,
    recorded_train_ranges: TrainRanges,
    /// Trains received and accepted but in no file: the one whose write failed and those of
    /// a sequence file that could not be finished after it.
    lost_trains: u64,
    lost_train_ranges: TrainRanges,
    bytes: u64,
    /// First and last train recorded.
    first_train: Option<u64>,
    last_train: Option<u64>,
    /// Train IDs skipped between consecutive recorded trains.
    missing_trains: u64,
    /// Trains left out because their ID was 0 or not above the previous one.
    out_of_order: u64,
    without_train_id: u64,
    malformed: u64,
    /// Source-trains left out because the source's keys or shapes changed.
    refused: u64,
    /// `source key` of values the format cannot hold (left out of every train).
    dropped_keys: BTreeSet<String>,
    /// INSTRUMENT sources without a `:` in their name, stored as `<name>:output`.
    renamed: Vec<(String, String)>,
    /// REQ: requests asked again after the server went away while one was pending (a train
    /// it had sent is then among `missing_trains`).
    requests_resent: u64,
    errors: Vec<String>,
    elapsed_s: f64,
}

impl RecordSummary {
    fn error(&mut self, e: String) {
        eprintln!("xfel-bridge: {e}");
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(e);
        }
    }
}

/// Receives trains into `rec` until `ntrains`, the timeout, a signal or a write error, then
/// completes the run. Ok(false): something was left out or lost, or no train came.
#[allow(clippy::too_many_arguments)]
fn record(
    client: &mut Client,
    mut rec: Recording,
    dir: &Path,
    c: &Connect,
    ntrains: Option<u64>,
    stop: &AtomicBool,
    timeout: Option<Duration>,
    lost: &mut bool,
) -> Result<bool, ClientError> {
    let started = Instant::now();
    let mut s = RecordSummary::default();
    let progress = std::io::stderr().is_terminal();
    let mut last_report = Instant::now();
    let mut window = 0u64;
    let mut last_msg = Instant::now();
    // Trains the writer took, and the one whose write failed.
    let mut appended = TrainRanges::default();
    let mut n_appended = 0u64;
    let mut last_appended: Option<u64> = None;
    let mut failed_train = None;
    let mut write_error = None;
    while ntrains.is_none_or(|n| n_appended < n) {
        match next(client, stop, timeout, last_msg) {
            Ok(Next::End) => break,
            Ok(Next::Malformed(e)) => {
                last_msg = Instant::now();
                s.malformed += 1;
                s.error(e);
            }
            Ok(Next::Train(r)) => {
                last_msg = Instant::now();
                match rec.append(&r.train) {
                    Ok(t) => {
                        n_appended += 1;
                        appended.insert(t.train_id);
                        s.bytes += r.bytes;
                        window += 1;
                        if let Some(last) = last_appended {
                            s.missing_trains += t.train_id - last - 1;
                        }
                        last_appended = Some(t.train_id);
                        s.dropped_keys.extend(t.dropped);
                        for (src, why) in t.refused {
                            s.refused += 1;
                            s.error(format!("train {}: {src} left out: {why}", t.train_id));
                        }
                    }
                    Err(RecordError::NoTrainId) => {
                        s.without_train_id += 1;
                        s.error(RecordError::NoTrainId.to_string());
                    }
                    Err(e @ RecordError::Order(_)) => {
                        s.out_of_order += 1;
                        s.error(e.to_string());
                    }
                    Err(RecordError::Write(e)) => {
                        failed_train = r.train.train_id();
                        write_error = Some(e);
                        break;
                    }
                }
            }
            // A broken connection ends the recording; what came is still written.
            Err(e) => {
                s.error(e.to_string());
                break;
            }
        }
        if progress && last_report.elapsed() >= Duration::from_secs(1) {
            eprintln!(
                "Recorded {} trains - Train ID {} - {:.1} Hz",
                n_appended,
                last_appended.map_or("-".into(), |t| t.to_string()),
                window as f64 / last_report.elapsed().as_secs_f64()
            );
            window = 0;
            last_report = Instant::now();
        }
    }
    s.requests_resent = client.requests_resent;
    if s.requests_resent > 0 {
        eprintln!(
            "xfel-bridge: the server went away {} times while a train was asked for; asked \
             again on reconnection",
            s.requests_resent
        );
    }
    let mut lost_ids = TrainRanges::default();
    if let Some(t) = failed_train {
        lost_ids.insert(t);
    }
    // HDF5's message does not say why a write failed: a full disk is the usual reason.
    let write_failed = |s: &mut RecordSummary, e: &euxfel_write::Error, free: Option<u64>| {
        if matches!(e, euxfel_write::Error::SpaceLow { .. }) {
            // It says how much space there was.
            s.error(format!("recording ended: {e}"));
            return;
        }
        s.error(format!(
            "write error, recording ended: {e} ({} free in {} when it failed)",
            free.map_or("unknown space".into(), |b| format!("{b} bytes")),
            dir.display()
        ))
    };
    let ended_by_error = write_error.is_some();
    match rec.finish() {
        Ok(w) => {
            for e in write_error.iter().chain(&w.error) {
                write_failed(&mut s, e, w.free_at_error);
            }
            for (from, to) in &w.renamed {
                eprintln!("xfel-bridge: {from} stored as {to} (EuXFEL instrument sources are DEVICE:OUTPUT)");
            }
            w.lost_trains.iter().for_each(|&t| lost_ids.insert(t));
            s.files = w.files.into_iter().map(|f| f.path).collect();
            s.renamed = w.renamed;
        }
        Err(euxfel_write::Error::NoTrains) => s.error(format!(
            "no train recorded from {}: nothing written",
            c.endpoint
        )),
        Err(e) => s.error(format!("cannot finish the run in {}: {e}", dir.display())),
    }
    s.recorded_train_ranges = appended.without(&lost_ids);
    s.trains = s.recorded_train_ranges.trains();
    s.first_train = s.recorded_train_ranges.ranges().first().map(|r| r[0]);
    s.last_train = s.recorded_train_ranges.ranges().last().map(|r| r[1]);
    s.lost_trains = lost_ids.trains();
    s.lost_train_ranges = lost_ids;
    *lost = s.lost_trains > 0;
    s.elapsed_s = started.elapsed().as_secs_f64();
    if c.json {
        if let Ok(text) = serde_json::to_string(&s) {
            println!("{text}");
        }
    } else {
        println!(
            "xfel-bridge: {} trains ({} to {}) in {:.2} s, {:.1} MB -> {}; {} trains missing, \
             {} out of order, {} malformed, {} source-trains left out, keys not stored: {}",
            s.trains,
            s.first_train.map_or("-".into(), |t| t.to_string()),
            s.last_train.map_or("-".into(), |t| t.to_string()),
            s.elapsed_s,
            s.bytes as f64 / 1e6,
            match s.files.as_slice() {
                [] => "nothing written".to_string(),
                [one] => one.display().to_string(),
                [first, .., last] => format!(
                    "{} files, {} to {}",
                    s.files.len(),
                    first.display(),
                    last.display()
                ),
            },
            s.missing_trains,
            s.out_of_order,
            s.malformed,
            s.refused,
            if s.dropped_keys.is_empty() {
                "none".to_string()
            } else {
                s.dropped_keys
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
        if s.lost_trains > 0 || ended_by_error {
            println!(
                "xfel-bridge: recorded train IDs {}; lost {} trains (IDs {})",
                if s.trains > 0 {
                    s.recorded_train_ranges.to_string()
                } else {
                    "none".into()
                },
                s.lost_trains,
                s.lost_train_ranges
            );
        }
    }
    let complete = ntrains.is_none_or(|n| n_appended >= n) || stop.load(Ordering::Relaxed);
    Ok(!s.files.is_empty()
        && complete
        && s.lost_trains == 0
        && s.malformed + s.out_of_order + s.without_train_id + s.refused == 0
        && s.errors.is_empty())
}
