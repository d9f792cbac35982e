//! Logging for the DAQ writer: level, text or JSON lines, console and/or a file rotated by size
//! (the reference's open TODO). Without [`init`], warnings and errors go to stderr.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use super::error::{DaqError, ParseError};
use super::time::{iso_stamp, Clock, SystemClock};

/// Severity, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

impl Level {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

impl std::str::FromStr for Level {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Ok(Level::Error),
            "warn" | "warning" => Ok(Level::Warn),
            "info" => Ok(Level::Info),
            "debug" => Ok(Level::Debug),
            _ => Err(ParseError::unknown(
                "log level",
                s,
                "error, warn, info or debug",
            )),
        }
    }
}

/// Line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `2026-11-21T18:50:50.612Z INFO  message`
    Text,
    /// `{"time":"2026-11-21T18:50:50.612Z","level":"info","msg":"message"}`
    Json,
}

impl std::str::FromStr for Format {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            other => Err(ParseError::unknown("log format", other, "text or json")),
        }
    }
}

/// Logging configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub level: Level,
    pub format: Format,
    /// Also write to stderr.
    pub console: bool,
    /// Append to this file.
    pub file: Option<PathBuf>,
    /// Rotate the file when it grows past this size (0: never).
    pub max_bytes: u64,
    /// Rotated files to keep (`file.1` newest ... `file.N`).
    pub keep: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: Level::Info,
            format: Format::Text,
            console: true,
            file: None,
            max_bytes: 10 * 1024 * 1024,
            keep: 5,
        }
    }
}

struct Sink {
    cfg: LogConfig,
    file: Option<(File, u64)>,
}

static LOGGER: OnceLock<Mutex<Sink>> = OnceLock::new();

fn sink() -> &'static Mutex<Sink> {
    LOGGER.get_or_init(|| {
        Mutex::new(Sink {
            cfg: LogConfig {
                level: Level::Warn,
                ..LogConfig::default()
            },
            file: None,
        })
    })
}

fn open_log(path: &Path) -> Result<(File, u64), DaqError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(DaqError::io(dir))?;
    }
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(DaqError::io(path))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((f, len))
}

/// Installs the configuration (replacing any earlier one). Fails when the file cannot be opened.
pub fn init(cfg: LogConfig) -> Result<(), DaqError> {
    let file = match &cfg.file {
        Some(p) => Some(open_log(p)?),
        None => None,
    };
    let mut s = sink().lock().unwrap_or_else(|p| p.into_inner());
    s.cfg = cfg;
    s.file = file;
    Ok(())
}

fn json_escape(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

/// Emits a message if `level` passes the configured level.
pub fn emit(level: Level, args: fmt::Arguments<'_>) {
    let mut s = sink().lock().unwrap_or_else(|p| p.into_inner());
    if level > s.cfg.level {
        return;
    }
    let now = iso_stamp(SystemClock.now());
    let msg = args.to_string();
    let line = match s.cfg.format {
        Format::Text => format!("{now} {:<5} {msg}\n", level.name().to_ascii_uppercase()),
        Format::Json => format!(
            "{{\"time\":\"{now}\",\"level\":\"{}\",\"msg\":{}}}\n",
            level.name(),
            json_escape(&msg)
        ),
    };
    if s.cfg.console {
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
    let (max_bytes, keep) = (s.cfg.max_bytes, s.cfg.keep);
    let path = s.cfg.file.clone();
    if let (Some((f, len)), Some(path)) = (s.file.as_mut(), path) {
        if f.write_all(line.as_bytes()).is_ok() {
            *len += line.len() as u64;
        }
        if max_bytes > 0 && *len >= max_bytes {
            rotate(&path, keep);
            s.file = open_log(&path).ok();
        }
    }
}

fn numbered(path: &Path, i: u32) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{i}"));
    PathBuf::from(p)
}

/// `file.(keep-1)` -> `file.keep`, ..., `file` -> `file.1`; with `keep == 0` the file is truncated.
fn rotate(path: &Path, keep: u32) {
    if keep == 0 {
        let _ = std::fs::remove_file(path);
        return;
    }
    let _ = std::fs::remove_file(numbered(path, keep));
    for i in (1..keep).rev() {
        let _ = std::fs::rename(numbered(path, i), numbered(path, i + 1));
    }
    let _ = std::fs::rename(path, numbered(path, 1));
}

macro_rules! daq_log {
    ($level:ident, $($arg:tt)*) => {
        $crate::log::emit($crate::log::Level::$level, format_args!($($arg)*))
    };
}
pub(crate) use daq_log;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        for i in 0..4 {
            std::fs::write(&p, format!("{i}")).unwrap();
            rotate(&p, 2);
        }
        assert_eq!(std::fs::read_to_string(numbered(&p, 1)).unwrap(), "3");
        assert_eq!(std::fs::read_to_string(numbered(&p, 2)).unwrap(), "2");
        assert!(!numbered(&p, 3).exists());
    }
}
