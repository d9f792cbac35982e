//! External-command jobs (the reference's `DAQJobExtern`): a long-running command whose stdout
//! lines are rows. Lines starting with the comment prefix are logged. The command runs in its
//! own process group; at stop the group gets SIGTERM, then SIGKILL after 5 s. A command that
//! exits is an error (counted, handler after the limit) and is started again after the error
//! delay.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::column::{Column, Dtype, Entry, Scalar};
use crate::error::DaqError;
use crate::job::{lock, DaqJob, DatasetSpec, ReadMode, Reading};
use crate::log::daq_log;
use crate::sys::{kill_process_group, SIGKILL, SIGTERM};

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

/// Parses one line into (time, entries); the error names the field and token.
pub fn parse_line(
    line: &str,
    specs: &[DatasetSpec],
    fmt: &LineFormat,
) -> Result<(Option<f64>, Vec<Entry>), String> {
    let toks: Vec<&str> = match &fmt.delimiter {
        None => line.split_whitespace().collect(),
        Some(d) => line.split(d.as_str()).collect(),
    };
    let mut it = toks.into_iter();
    let time = if fmt.provide_time {
        let t = it
            .next()
            .ok_or_else(|| format!("line {line:?}: no time field"))?;
        Some(
            t.trim()
                .parse::<f64>()
                .map_err(|_| format!("line {line:?}: time {t:?} is not a number"))?,
        )
    } else {
        None
    };
    let mut entries = Vec::with_capacity(specs.len());
    for s in specs {
        let n = s.entry_len();
        let mut col = Column::with_capacity(s.dtype, n);
        for _ in 0..n {
            let tok = it
                .next()
                .ok_or_else(|| format!("line {line:?}: too few fields for dataset {:?}", s.name))?;
            let v = parse_token(tok, s.dtype).ok_or_else(|| {
                format!(
                    "line {line:?}: dataset {:?}: {tok:?} is not a number",
                    s.name
                )
            })?;
            col.push_scalar(v)
                .map_err(|e| format!("line {line:?}: dataset {:?}: {e}", s.name))?;
        }
        entries.push(if s.shape.is_empty() {
            match col.get(0) {
                Some(v) => Entry::Scalar(v),
                None => return Err(format!("line {line:?}: dataset {:?} is empty", s.name)),
            }
        } else {
            Entry::Array(col)
        });
    }
    if let Some(extra) = it.next() {
        return Err(format!("line {line:?}: unexpected extra field {extra:?}"));
    }
    Ok((time, entries))
}

struct Running {
    child: Child,
    lines: Receiver<String>,
}

fn spawn(argv: &[String]) -> Result<Running, String> {
    use std::os::unix::process::CommandExt;
    let (prog, args) = argv.split_first().ok_or("empty command")?;
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {prog:?}: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("daq-cmd-reader".into())
        .spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        })
        .map_err(|e| format!("reader thread: {e}"))?;
    Ok(Running { child, lines: rx })
}

/// Ends a process group: SIGTERM, up to `grace` to exit, then SIGKILL.
fn terminate(child: &mut Child, grace: Duration) {
    let pgid = child.id();
    let _ = kill_process_group(pgid, SIGTERM);
    let t0 = Instant::now();
    while t0.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            // The leader exited; make sure the rest of its group follows.
            let _ = kill_process_group(pgid, SIGKILL);
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = kill_process_group(pgid, SIGKILL);
    let _ = child.wait();
}

/// A job running `argv` and parsing its stdout. In bulk mode every read takes all lines that
/// arrived within `period` (the reference's extend mode); otherwise each line is one read.
pub fn job(
    group: &str,
    argv: Vec<String>,
    specs: Vec<DatasetSpec>,
    fmt: LineFormat,
    bulk: bool,
    period: Duration,
) -> Result<DaqJob, DaqError> {
    if argv.is_empty() {
        return Err(DaqError::Invalid(format!("job {group:?}: empty command")));
    }
    let state: Arc<Mutex<Option<Running>>> = Arc::new(Mutex::new(None));
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (st, stop2) = (Arc::clone(&state), Arc::clone(&stopped));
    let (specs2, name) = (specs.clone(), group.to_string());
    let comment = fmt.comment.clone();
    let provide_time = fmt.provide_time || bulk;
    let getter = move || -> Result<Reading, crate::job::GetterError> {
        if stop2.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(Reading::Skip);
        }
        let mut guard = lock(&st);
        if guard.is_none() {
            *guard = Some(spawn(&argv)?);
            daq_log!(Info, "job {name}: started {argv:?}");
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
        let first = match run.lines.recv_timeout(wait) {
            Ok(l) => Some(l),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                let status = run.child.wait().map(|s| s.to_string()).unwrap_or_default();
                let _ = kill_process_group(run.child.id(), SIGKILL);
                *guard = None;
                return Err(format!("command {argv:?} ended ({status})").into());
            }
        };
        let mut lines: Vec<String> = first.into_iter().collect();
        if bulk {
            lines.extend(run.lines.try_iter());
        }
        drop(guard);
        let mut time = Vec::new();
        let mut cols: Vec<Column> = specs2
            .iter()
            .map(|s| Column::with_capacity(s.dtype, 0))
            .collect();
        let mut single = None;
        for l in lines {
            if l.trim().is_empty() {
                continue;
            }
            if l.starts_with(comment.as_str()) && !comment.is_empty() {
                daq_log!(Info, "job {name}: {l}");
                continue;
            }
            let (t, entries) = parse_line(
                &l,
                &specs2,
                &LineFormat {
                    provide_time,
                    ..fmt.clone()
                },
            )?;
            if bulk {
                time.push(t.unwrap_or(f64::NAN));
                for (c, e) in cols.iter_mut().zip(entries) {
                    match e {
                        Entry::Scalar(s) => c.push_scalar(s)?,
                        Entry::Array(a) => c.extend_from(&a)?,
                    }
                }
            } else {
                single = Some(match t {
                    Some(t) => Reading::TimedRow(t, entries),
                    None => Reading::Row(entries),
                });
            }
        }
        Ok(if bulk {
            if time.is_empty() {
                Reading::Skip
            } else {
                Reading::Rows {
                    time,
                    columns: cols,
                }
            }
        } else {
            single.unwrap_or(Reading::Skip)
        })
    };
    let on_stop = move || {
        stopped.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(mut run) = lock(&state).take() {
            terminate(&mut run.child, Duration::from_secs(5));
        }
    };
    Ok(DaqJob::new(group, specs, getter)?
        .with_mode(ReadMode::Constant)?
        .with_bulk(bulk)
        .with_provided_time(provide_time)
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
        assert!(parse_line("1 2", &specs, &f)
            .unwrap_err()
            .contains("too few"));
        assert!(parse_line("1 2 3 4", &specs, &f)
            .unwrap_err()
            .contains("extra"));
        assert!(parse_line("1 x 3", &specs, &f)
            .unwrap_err()
            .contains("\"x\""));
    }
}
