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

use serde::Deserialize;

use super::parse_fields;
use crate::column::{Column, ConvertError, Dtype, Entry, Scalar};
use crate::error::DaqError;
use crate::job::{lock, DaqJob, DatasetSpec, ReadMode, Reading};
use crate::log::daq_log;
use crate::setting::{self, SettingError};
use crate::sys::{kill_process_group, Signal};

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
}

/// A checked command job: what to run and how to parse its lines.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandConfig {
    pub argv: Vec<String>,
    pub specs: Vec<DatasetSpec>,
    pub format: LineFormat,
    pub bulk: bool,
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
        Ok(CommandConfig {
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
        job(
            group,
            self.argv.clone(),
            self.specs.clone(),
            self.format.clone(),
            self.bulk,
            period,
        )
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

struct Running {
    child: Child,
    lines: Receiver<String>,
}

fn spawn(argv: &[String]) -> Result<Running, CommandError> {
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
        .map_err(start_error)?;
    Ok(Running { child, lines: rx })
}

/// Ends a process group: SIGTERM, up to `grace` to exit, then SIGKILL.
fn terminate(child: &mut Child, grace: Duration) {
    let pgid = child.id();
    let _ = kill_process_group(pgid, Signal::TERM);
    let t0 = Instant::now();
    while t0.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            // The leader exited; make sure the rest of its group follows.
            let _ = kill_process_group(pgid, Signal::KILL);
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = kill_process_group(pgid, Signal::KILL);
    let _ = child.wait();
}

/// A job running `argv` and parsing its stdout. In bulk mode every read takes all lines that
/// arrived within `period` (the reference's extend mode); otherwise each line is one read.
fn job(
    group: &str,
    argv: Vec<String>,
    specs: Vec<DatasetSpec>,
    fmt: LineFormat,
    bulk: bool,
    period: Duration,
) -> Result<DaqJob, DaqError> {
    if argv.is_empty() {
        return Err(SettingError::invalid(
            format!("job {group:?}: command"),
            "[]",
            "empty command",
        )
        .into());
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
                let _ = kill_process_group(run.child.id(), Signal::KILL);
                *guard = None;
                return Err(CommandError::Ended {
                    argv: argv.clone(),
                    status,
                }
                .into());
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
            )
            .map_err(CommandError::from)?;
            if bulk {
                time.push(t.unwrap_or(f64::NAN));
                for (c, e) in cols.iter_mut().zip(entries) {
                    match e {
                        Entry::Scalar(s) => c.push_scalar(s).map_err(CommandError::from)?,
                        Entry::Array(a) => c.extend_from(&a).map_err(CommandError::from)?,
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
