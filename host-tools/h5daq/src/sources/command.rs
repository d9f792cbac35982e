//! External-command jobs (the reference's `DAQJobExtern`): a long-running command whose stdout
//! lines are rows. Lines starting with the comment prefix are logged. The command runs in its
//! own process group; at stop the group gets SIGTERM, then SIGKILL after 5 s. A command that
//! exits is an error (counted, handler after the limit) and is started again after the error
//! delay.
//!
//! A reader thread takes the output as bytes (any encoding; invalid UTF-8 is replaced), stamps
//! each line when it arrives, cuts lines longer than `max_line_length` (counted as bad input,
//! the rest of the line skipped without buffering it) and hands lines over through a bounded
//! queue. The job has back-pressure: while its buffer is full it reads no lines, the queue and
//! then the pipe fill, and the command blocks in its writes; no row is dropped. A line that is
//! not a row is counted as bad input and the job goes on with the next line.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::parse_fields;
use crate::column::{Column, ConvertError, Dtype, Entry, Scalar};
use crate::error::DaqError;
use crate::job::{
    bounded_message, lock, DaqJob, DatasetSpec, DropReason, ReadMode, Reading, SourceStats,
};
use crate::log::daq_log;
use crate::setting::{self, shown, SettingError};
use crate::sys::{kill_process_group, Signal};
use crate::time::{Clock, SystemClock};

/// How to parse a command's lines.
#[derive(Debug, Clone, PartialEq)]
pub struct LineFormat {
    /// Field separator; `None` splits on any whitespace.
    pub delimiter: Option<String>,
    /// Lines starting with this are logged, not parsed.
    pub comment: String,
    /// The first field is the time (Unix seconds).
    pub provide_time: bool,
}

impl Default for LineFormat {
    fn default() -> Self {
        LineFormat {
            delimiter: None,
            comment: "#".into(),
            provide_time: false,
        }
    }
}

/// The `[[job]]` settings of `source = "command"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    command: toml::Value,
    fields: toml::Value,
    delimiter: Option<String>,
    comment: Option<String>,
    provide_time: Option<bool>,
    bulk: Option<bool>,
    max_line_length: Option<i64>,
    run: Option<String>,
}

/// Default longest line, bytes; longer lines are bad input.
pub const DEFAULT_MAX_LINE_LENGTH: usize = 1 << 20;
/// Lines queued between the reader thread and the job.
const LINE_QUEUE: usize = 1024;
/// Most lines one bulk read takes.
const MAX_BULK_LINES: usize = 100_000;

/// A checked command job: what to run and how to parse its lines.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandConfig {
    pub argv: Vec<String>,
    pub specs: Vec<DatasetSpec>,
    pub format: LineFormat,
    pub bulk: bool,
    /// `run = "once"`: the command runs once per read (every period or trigger) and its output
    /// lines are that read's rows (the reference's `DAQJobExtern` as sdaq users use it);
    /// otherwise it runs continuously and every line is a row.
    pub once: bool,
    /// Longest line in bytes.
    pub max_line_length: usize,
}

impl CommandConfig {
    /// Reads and checks the source's settings (every key of the job table but the common ones).
    pub fn from_table(table: &toml::Table) -> Result<CommandConfig, SettingError> {
        let s: Settings = setting::from_table(table, "source \"command\"")?;
        let argv = match &s.command {
            toml::Value::String(c) if !c.trim().is_empty() => {
                vec!["/bin/sh".to_string(), "-c".to_string(), c.clone()]
            }
            toml::Value::Array(a) if !a.is_empty() => {
                let argv: Option<Vec<String>> =
                    a.iter().map(|x| x.as_str().map(str::to_string)).collect();
                match argv {
                    Some(v) if !v[0].is_empty() => v,
                    _ => {
                        return Err(SettingError::wrong_type(
                            "command",
                            &s.command,
                            "an array of argument strings with a program first",
                        ))
                    }
                }
            }
            other => {
                return Err(SettingError::wrong_type(
                    "command",
                    other,
                    "a non-empty string (run by /bin/sh -c) or array of arguments",
                ))
            }
        };
        check_program(&argv[0])
            .map_err(|why| SettingError::invalid("command", shown(&s.command), why))?;
        if let Some(d) = &s.delimiter {
            if d.is_empty() {
                return Err(SettingError::invalid(
                    "delimiter",
                    "\"\"",
                    "must not be empty (leave it out to split on whitespace)",
                ));
            }
        }
        let specs = parse_fields(&s.fields, Dtype::F64)?
            .into_iter()
            .map(|f| f.spec)
            .collect();
        let max_line_length = match s.max_line_length {
            None => DEFAULT_MAX_LINE_LENGTH,
            Some(n) if (16..=1 << 30).contains(&n) => n as usize,
            Some(n) => {
                return Err(SettingError::invalid(
                    "max_line_length",
                    n,
                    "must be 16 to 1073741824 bytes",
                ))
            }
        };
        let once = match s.run.as_deref() {
            None | Some("continuous") => false,
            Some("once") => true,
            Some(other) => {
                return Err(SettingError::invalid(
                    "run",
                    format!("{other:?}"),
                    "use \"continuous\" (a long-running command, a row per line) or \"once\" (run once per period)",
                ))
            }
        };
        if once && s.bulk == Some(true) {
            return Err(SettingError::invalid(
                "bulk",
                true,
                "with run = \"once\" every output line of a run is already a row",
            ));
        }
        Ok(CommandConfig {
            once,
            max_line_length,
            argv,
            specs,
            format: LineFormat {
                delimiter: s.delimiter,
                comment: s.comment.unwrap_or_else(|| "#".into()),
                provide_time: s.provide_time.unwrap_or(false),
            },
            bulk: s.bulk.unwrap_or(false),
        })
    }

    /// The job (the command starts at the first read).
    pub fn job(&self, group: &str, period: Duration) -> Result<DaqJob, DaqError> {
        if self.once {
            once_job(group, self, period)
        } else {
            job(group, self, period)
        }
    }
}

/// Whether `program` can be started: an executable path, or a name found on `PATH`.
fn check_program(program: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return if executable(std::path::Path::new(program)) {
            Ok(())
        } else {
            Err(format!("{program:?} is not an executable file"))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|d| executable(&d.join(program))) {
        Ok(())
    } else {
        Err(format!("program {program:?} is not found on PATH"))
    }
}

/// Why a line is not a row.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineProblem {
    #[error("no time field")]
    NoTime,
    #[error("time {token:?} is not a number")]
    BadTime { token: String },
    #[error("too few fields for dataset {dataset:?}")]
    TooFew { dataset: String },
    #[error("dataset {dataset:?}: {token:?} is not a number")]
    NotNumber { dataset: String, token: String },
    #[error("dataset {dataset:?}: {source}")]
    DoesNotFit {
        dataset: String,
        #[source]
        source: ConvertError,
    },
    #[error("unexpected extra field {token:?}")]
    Extra { token: String },
}

/// A line that is not a row: the line and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line:?}: {problem}")]
pub struct LineError {
    pub line: String,
    pub problem: LineProblem,
}

/// Why a command read failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot start {program:?}: {source}")]
    Start {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("command {argv:?} ended ({status})")]
    Ended { argv: Vec<String>, status: String },
    #[error(transparent)]
    Line(#[from] LineError),
    #[error(transparent)]
    Convert(#[from] ConvertError),
}

fn parse_token(tok: &str, dtype: Dtype) -> Option<Scalar> {
    let tok = tok.trim();
    match dtype {
        Dtype::F64 | Dtype::F32 => tok.parse::<f64>().ok().map(Scalar::Float),
        _ => tok
            .parse::<i64>()
            .map(Scalar::Int)
            .or_else(|_| tok.parse::<u64>().map(Scalar::UInt))
            .or_else(|_| tok.parse::<f64>().map(Scalar::Float))
            .ok(),
    }
}

/// Parses one line into (time, entries).
pub fn parse_line(
    line: &str,
    specs: &[DatasetSpec],
    fmt: &LineFormat,
) -> Result<(Option<f64>, Vec<Entry>), LineError> {
    let fail = |problem| LineError {
        line: line.to_string(),
        problem,
    };
    let toks: Vec<&str> = match &fmt.delimiter {
        None => line.split_whitespace().collect(),
        Some(d) => line.split(d.as_str()).collect(),
    };
    let mut it = toks.into_iter();
    let time = if fmt.provide_time {
        let t = it.next().ok_or_else(|| fail(LineProblem::NoTime))?;
        Some(t.trim().parse::<f64>().map_err(|_| {
            fail(LineProblem::BadTime {
                token: t.to_string(),
            })
        })?)
    } else {
        None
    };
    let mut entries = Vec::with_capacity(specs.len());
    for s in specs {
        if s.dtype.is_text() {
            // A string field takes one token as it is (config fields are scalars).
            let tok = it.next().ok_or_else(|| {
                fail(LineProblem::TooFew {
                    dataset: s.name.clone(),
                })
            })?;
            let text = s.fit_text(tok);
            s.dtype.check_text(text).map_err(|source| {
                fail(LineProblem::DoesNotFit {
                    dataset: s.name.clone(),
                    source,
                })
            })?;
            entries.push(Entry::Text(text.to_string()));
            continue;
        }
        let n = s.entry_len();
        let mut col = Column::with_capacity(s.dtype, n);
        for _ in 0..n {
            let tok = it.next().ok_or_else(|| {
                fail(LineProblem::TooFew {
                    dataset: s.name.clone(),
                })
            })?;
            let v = parse_token(tok, s.dtype).ok_or_else(|| {
                fail(LineProblem::NotNumber {
                    dataset: s.name.clone(),
                    token: tok.to_string(),
                })
            })?;
            col.push_scalar(v).map_err(|source| {
                fail(LineProblem::DoesNotFit {
                    dataset: s.name.clone(),
                    source,
                })
            })?;
        }
        entries.push(match (s.shape.is_empty(), col.get(0)) {
            (true, Some(v)) => Entry::Scalar(v),
            _ => Entry::Array(col),
        });
    }
    if let Some(extra) = it.next() {
        return Err(fail(LineProblem::Extra {
            token: extra.to_string(),
        }));
    }
    Ok((time, entries))
}

/// One line of output, stamped when it arrived.
enum Line {
    Text { arrived: f64, text: String },
    TooLong { bytes: usize, head: String },
}

struct Running {
    child: Child,
    lines: Receiver<Line>,
}

/// Reads `out` line by line into `tx` until end of file, a read error, or a closed queue.
/// A line is kept up to `max` bytes; the rest of a longer one is skipped as it is read.
fn read_lines(out: impl Read, tx: SyncSender<Line>, max: usize) {
    let mut r = BufReader::with_capacity(64 << 10, out);
    let mut line: Vec<u8> = Vec::new();
    let mut total = 0usize;
    loop {
        let (done, used) = match r.fill_buf() {
            Ok([]) => return,
            Ok(buf) => match buf.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let room = max.saturating_sub(line.len()).min(i);
                    line.extend_from_slice(&buf[..room]);
                    total += i;
                    (true, i + 1)
                }
                None => {
                    let room = max.saturating_sub(line.len()).min(buf.len());
                    line.extend_from_slice(&buf[..room]);
                    total += buf.len();
                    (false, buf.len())
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        r.consume(used);
        if !done {
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        let msg = if total > max {
            Line::TooLong {
                bytes: total,
                head: text.chars().take(80).collect(),
            }
        } else {
            Line::Text {
                arrived: SystemClock.now(),
                text: text.to_string(),
            }
        };
        line.clear();
        total = 0;
        if tx.send(msg).is_err() {
            return;
        }
    }
}

fn spawn(argv: &[String], max_line: usize) -> Result<Running, CommandError> {
    use std::os::unix::process::CommandExt;
    let start_error = |source| CommandError::Start {
        program: argv.first().cloned().unwrap_or_default(),
        source,
    };
    let (prog, args) = argv.split_first().ok_or_else(|| {
        start_error(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "empty command",
        ))
    })?;
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(start_error)?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| start_error(std::io::Error::other("no stdout pipe")))?;
    let (tx, rx) = mpsc::sync_channel(LINE_QUEUE);
    let spawned = std::thread::Builder::new()
        .name("daq-cmd-reader".into())
        .spawn(move || read_lines(stdout, tx, max_line));
    if let Err(e) = spawned {
        terminate(&mut child, Duration::ZERO);
        return Err(start_error(e));
    }
    Ok(Running { child, lines: rx })
}

/// Waits up to `limit` for `child` to exit; true when it has.
fn exited_within(child: &mut Child, limit: Duration) -> bool {
    let t0 = Instant::now();
    loop {
        if let Ok(Some(_)) | Err(_) = child.try_wait() {
            return true;
        }
        if t0.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Ends a process group: SIGTERM, up to `grace` to exit, then SIGKILL. Bounded: a process that
/// survives SIGKILL (uninterruptible sleep) is left to the system after 1 s more.
fn terminate(child: &mut Child, grace: Duration) {
    let pgid = child.id();
    let _ = kill_process_group(pgid, Signal::TERM);
    let exited = exited_within(child, grace);
    // The leader may be gone with the rest of its group still running: signal the group too.
    let _ = kill_process_group(pgid, Signal::KILL);
    if !exited && !exited_within(child, Duration::from_secs(1)) {
        daq_log!(Error, "command process {pgid} did not end after SIGKILL");
    }
}

/// Turns lines into rows: comments are logged, blank lines skipped, anything else that is not
/// a row is counted as bad input.
struct LineRows {
    group: String,
    specs: Vec<DatasetSpec>,
    format: LineFormat,
    max_line: usize,
    stats: SourceStats,
}

impl LineRows {
    /// The row of `line` with its time (its own, or its arrival), if it is one.
    fn row(&self, line: Line) -> Option<(f64, Vec<Entry>)> {
        let (arrived, text) = match line {
            Line::Text { arrived, text } => (arrived, text),
            Line::TooLong { bytes, head } => {
                self.stats.bad_input(
                    &self.group,
                    &format_args!(
                        "a line of {bytes} bytes is longer than max_line_length {} (starts {head:?})",
                        self.max_line
                    ),
                );
                return None;
            }
        };
        if text.trim().is_empty() {
            return None;
        }
        let comment = self.format.comment.as_str();
        if !comment.is_empty() && text.starts_with(comment) {
            daq_log!(Info, "job {}: {}", self.group, bounded_message(&text));
            return None;
        }
        match parse_line(&text, &self.specs, &self.format) {
            Ok((t, entries)) => Some((t.unwrap_or(arrived), entries)),
            Err(e) => {
                self.stats.bad_input(&self.group, &e);
                None
            }
        }
    }

    /// Appends a row to bulk columns; a value that does not fit the dtype is bad input.
    fn push(&self, time: &mut Vec<f64>, cols: &mut [Column], t: f64, entries: Vec<Entry>) {
        let before: Vec<usize> = cols.iter().map(Column::len).collect();
        let pushed = cols
            .iter_mut()
            .zip(entries)
            .try_for_each(|(c, e)| c.push_entry(&e));
        match pushed {
            Ok(()) => time.push(t),
            Err(e) => {
                for (c, n) in cols.iter_mut().zip(before) {
                    c.truncate(n);
                }
                self.stats.bad_input(&self.group, &e);
            }
        }
    }

    fn empty_columns(&self) -> Vec<Column> {
        self.specs
            .iter()
            .map(|s| Column::with_capacity(s.dtype, 0))
            .collect()
    }
}

fn rows_reading(time: Vec<f64>, columns: Vec<Column>) -> Reading {
    if time.is_empty() {
        Reading::Skip
    } else {
        Reading::Rows { time, columns }
    }
}

/// The final read at stop (the command has been ended): every line the reader still holds or
/// still gets from the pipe, as rows. Lines left when the reader stays blocked are counted.
fn drain_at_stop(run: Running, rows: &LineRows) -> Reading {
    let mut time = Vec::new();
    let mut cols = rows.empty_columns();
    while let Ok(line) = run.lines.recv_timeout(Duration::from_millis(200)) {
        if let Some((t, e)) = rows.row(line) {
            rows.push(&mut time, &mut cols, t, e);
        }
    }
    let mut left = 0;
    while let Ok(Line::Text { text, .. }) = run.lines.try_recv() {
        left += u64::from(!text.trim().is_empty());
    }
    if left > 0 {
        rows.stats.dropped(DropReason::UnreadAtStop, left);
    }
    rows_reading(time, cols)
}

/// A job running the command once per read: its output lines (usually one) are the read's
/// rows, stamped when they arrived. A run that takes longer than the period (at least 1 s) is
/// ended and counts as an error, as does a non-zero exit.
fn once_job(group: &str, cfg: &CommandConfig, period: Duration) -> Result<DaqJob, DaqError> {
    let stats = SourceStats::default();
    let rows = LineRows {
        group: group.to_string(),
        specs: cfg.specs.clone(),
        format: cfg.format.clone(),
        max_line: cfg.max_line_length,
        stats: stats.clone(),
    };
    let argv = cfg.argv.clone();
    let limit = period.max(Duration::from_secs(1));
    // The running command's process group, so a stop can end it without waiting for the read.
    let running = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let running2 = Arc::clone(&running);
    let getter = move || -> Result<Reading, crate::job::GetterError> {
        let mut run = spawn(&argv, rows.max_line)?;
        running2.store(run.child.id(), Ordering::SeqCst);
        let deadline = Instant::now() + limit;
        let mut time = Vec::new();
        let mut cols = rows.empty_columns();
        let mut timed_out = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match run.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some((t, e)) = rows.row(line) {
                        rows.push(&mut time, &mut cols, t, e);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    timed_out = true;
                    break;
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let status = if !timed_out && exited_within(&mut run.child, left) {
            run.child.wait().ok()
        } else {
            terminate(&mut run.child, Duration::ZERO);
            None
        };
        running2.store(0, Ordering::SeqCst);
        let _ = kill_process_group(run.child.id(), Signal::KILL);
        match status {
            Some(s) if s.success() => Ok(rows_reading(time, cols)),
            Some(s) => Err(CommandError::Ended {
                argv: argv.clone(),
                status: s.to_string(),
            }
            .into()),
            None => Err(CommandError::Ended {
                argv: argv.clone(),
                status: format!(
                    "ended after {:.1} s, longer than a read may take",
                    limit.as_secs_f64()
                ),
            }
            .into()),
        }
    };
    let on_stop = move || {
        let pgid = running.load(Ordering::SeqCst);
        if pgid > 1 {
            let _ = kill_process_group(pgid, Signal::KILL);
        }
    };
    Ok(DaqJob::new(group, cfg.specs.clone(), getter)?
        .with_mode(ReadMode::Periodic(period))?
        .with_provided_time(true)
        .with_source_stats(stats)
        .with_on_stop(on_stop))
}

/// A job running the command and parsing its stdout. In bulk mode every read takes all lines
/// that arrived within `period` (the reference's extend mode); otherwise each read yields one
/// row. Each row's time is the line's own (with `provide_time`) or its arrival time. At stop
/// the command is ended first, then the lines already read are taken (a final read).
fn job(group: &str, cfg: &CommandConfig, period: Duration) -> Result<DaqJob, DaqError> {
    if cfg.argv.is_empty() {
        return Err(SettingError::invalid(
            format!("job {group:?}: command"),
            "[]",
            "empty command",
        )
        .into());
    }
    let state: Arc<Mutex<Option<Running>>> = Arc::new(Mutex::new(None));
    let stopped = Arc::new(AtomicBool::new(false));
    let stats = SourceStats::default();
    let (st, stop2) = (Arc::clone(&state), Arc::clone(&stopped));
    let (argv, bulk, max_line) = (cfg.argv.clone(), cfg.bulk, cfg.max_line_length);
    let rows = LineRows {
        group: group.to_string(),
        specs: cfg.specs.clone(),
        // Bulk lines carry their own time (the reference's extend mode).
        format: LineFormat {
            provide_time: cfg.format.provide_time || bulk,
            ..cfg.format.clone()
        },
        max_line,
        stats: stats.clone(),
    };
    let getter = move || -> Result<Reading, crate::job::GetterError> {
        let mut guard = lock(&st);
        if stop2.load(Ordering::SeqCst) {
            return Ok(match guard.take() {
                Some(run) => drain_at_stop(run, &rows),
                None => Reading::Skip,
            });
        }
        if guard.is_none() {
            *guard = Some(spawn(&argv, max_line)?);
            daq_log!(Info, "job {}: started {argv:?}", rows.group);
        }
        let Some(run) = guard.as_mut() else {
            return Ok(Reading::Skip);
        };
        // Bounded so that a stop (which takes this lock) waits at most this long.
        let wait = if bulk {
            period.min(Duration::from_millis(500))
        } else {
            Duration::from_millis(100)
        };
        let mut time = Vec::new();
        let mut cols = rows.empty_columns();
        let mut first = true;
        loop {
            let next = if first {
                first = false;
                run.lines.recv_timeout(wait).map_err(|e| match e {
                    RecvTimeoutError::Timeout => false,
                    RecvTimeoutError::Disconnected => true,
                })
            } else {
                run.lines.try_recv().map_err(|e| match e {
                    TryRecvError::Empty => false,
                    TryRecvError::Disconnected => true,
                })
            };
            let line = match next {
                Ok(l) => l,
                Err(false) => break,
                // Hand over what arrived; the end is noticed at the next read.
                Err(true) if !time.is_empty() => break,
                Err(true) => {
                    // The output ended: the command exited (or closed stdout and is ended).
                    let exited = exited_within(&mut run.child, Duration::from_millis(100));
                    let status = if exited {
                        run.child.wait().map(|s| s.to_string()).unwrap_or_default()
                    } else {
                        terminate(&mut run.child, Duration::from_secs(1));
                        "closed its output".to_string()
                    };
                    let _ = kill_process_group(run.child.id(), Signal::KILL);
                    *guard = None;
                    return Err(CommandError::Ended {
                        argv: argv.clone(),
                        status,
                    }
                    .into());
                }
            };
            let Some((t, entries)) = rows.row(line) else {
                continue;
            };
            if !bulk {
                return Ok(Reading::TimedRow(t, entries));
            }
            rows.push(&mut time, &mut cols, t, entries);
            if time.len() >= MAX_BULK_LINES {
                break;
            }
        }
        Ok(rows_reading(time, cols))
    };
    let on_stop = move || {
        stopped.store(true, Ordering::SeqCst);
        if let Some(run) = lock(&state).as_mut() {
            terminate(&mut run.child, Duration::from_secs(5));
        }
    };
    Ok(DaqJob::new(group, cfg.specs.clone(), getter)?
        .with_mode(ReadMode::Constant)?
        .with_bulk(bulk)
        .with_provided_time(true)
        .with_backpressure(true)
        .with_final_read(true)
        .with_source_stats(stats)
        .with_on_stop(on_stop))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_into_entries() {
        let specs = vec![
            DatasetSpec::scalar("a", Dtype::F32),
            DatasetSpec::array("b", Dtype::I32, &[2]),
        ];
        let f = LineFormat::default();
        let (t, e) = parse_line("1.5 3 -4", &specs, &f).unwrap();
        assert_eq!(t, None);
        assert_eq!(e[0], Entry::Scalar(Scalar::Float(1.5)));
        assert_eq!(e[1], Entry::Array(Column::I32(vec![3, -4])));
        let ft = LineFormat {
            provide_time: true,
            delimiter: Some(",".into()),
            ..f.clone()
        };
        let (t, _) = parse_line("100.25,1,2,3", &specs, &ft).unwrap();
        assert_eq!(t, Some(100.25));
        assert!(matches!(
            parse_line("1 2", &specs, &f).unwrap_err().problem,
            LineProblem::TooFew { .. }
        ));
        assert!(matches!(
            parse_line("1 2 3 4", &specs, &f).unwrap_err().problem,
            LineProblem::Extra { .. }
        ));
        assert!(parse_line("1 x 3", &specs, &f)
            .unwrap_err()
            .to_string()
            .contains("\"x\""));
    }
}
