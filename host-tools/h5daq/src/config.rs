//! The `h5daq run CONFIG.toml` file: daemon settings, logging and jobs from built-in sources.
//! The settings common to every job are read here; each source reads and checks its own keys
//! (see [`crate::sources`]). Errors name the file, the line, the setting and the value. See
//! `docs/daq.md` for the reference.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::daemon::{DaemonConfig, RESERVED_ATTRS};
use crate::job::{AttrValue, DaqJob, ReadMode};
use crate::log::{Format, Level, LogConfig};
use crate::names::FileNames;
use crate::setting::{self, shown, value_position, SettingError};
use crate::sources::command::CommandConfig;
use crate::sources::system::SystemConfig;
use crate::sources::zmq_json::{ReqConfig, StreamConfig};
use crate::time::Rollover;
use crate::writer::WriteMode;

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, or a daemon/log key of the wrong type or unknown.
    #[error("{}{}: syntax: {message}", path.display(), at(*position))]
    Syntax {
        path: PathBuf,
        /// Line and column, 1-based.
        position: Option<(usize, usize)>,
        message: String,
    },
    /// A setting is invalid, missing or unknown.
    #[error("{}{}: {problem}", path.display(), at(*position))]
    Setting {
        path: PathBuf,
        position: Option<(usize, usize)>,
        problem: Box<SettingError>,
    },
    /// The file declares no job.
    #[error("{}: no [[job]] tables; declare at least one job", path.display())]
    NoJobs { path: PathBuf },
}

fn at(position: Option<(usize, usize)>) -> String {
    position.map_or(String::new(), |(l, c)| format!(":{l}:{c}"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    daemon: Option<RawDaemon>,
    #[serde(default)]
    log: Option<RawLog>,
    #[serde(default, rename = "job")]
    jobs: Vec<Spanned<toml::Table>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    name: Option<String>,
    directory: Option<PathBuf>,
    file_prefix: Option<Spanned<String>>,
    file_name: Option<Spanned<String>>,
    write_period: Option<Spanned<toml::Value>>,
    write_period_jitter: Option<Spanned<toml::Value>>,
    rollover: Option<Spanned<String>>,
    max_file_size: Option<Spanned<toml::Value>>,
    compression: Option<Spanned<i64>>,
    shuffle: Option<bool>,
    mode: Option<Spanned<String>>,
    delete_empty_files: Option<bool>,
    control_socket: Option<PathBuf>,
    attrs: Option<Spanned<toml::Table>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
    console: Option<bool>,
    file: Option<PathBuf>,
    max_file_size: Option<Spanned<toml::Value>>,
    keep: Option<u32>,
}

/// The keys every job takes; all other keys of a `[[job]]` table belong to its source.
const COMMON_KEYS: [&str; 10] = [
    "group",
    "source",
    "period",
    "trigger",
    "thread_id",
    "dedup",
    "chunk_length",
    "error_limit",
    "buffer_size",
    "attrs",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommonSettings {
    group: String,
    source: String,
    period: Option<toml::Value>,
    trigger: Option<bool>,
    thread_id: Option<u32>,
    dedup: Option<bool>,
    chunk_length: Option<i64>,
    error_limit: Option<i64>,
    buffer_size: Option<toml::Value>,
    attrs: Option<toml::Table>,
}

/// The source of a configured job, with its checked settings.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceConfig {
    System(SystemConfig),
    /// `zmq_sub` and `zmq_pull`.
    ZmqStream(StreamConfig),
    ZmqReq(ReqConfig),
    Command(CommandConfig),
}

/// A configured job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobConfig {
    pub group: String,
    pub source: SourceConfig,
    pub period: Duration,
    /// Read on `h5daq trigger` (the control socket's `trigger` command) instead of a period.
    pub trigger: bool,
    pub thread_id: Option<u32>,
    pub dedup: bool,
    pub chunk_length: usize,
    pub error_limit: u64,
    /// Most bytes of rows held between writes.
    pub buffer_bytes: usize,
    pub attrs: Vec<(String, AttrValue)>,
}

/// A parsed config file.
#[derive(Debug, Clone)]
pub struct DaqConfig {
    pub path: PathBuf,
    pub daemon: DaemonConfig,
    pub log: LogConfig,
    pub control_socket: PathBuf,
    pub jobs: Vec<JobConfig>,
}

struct Ctx<'a> {
    path: &'a Path,
    src: &'a str,
}

impl Ctx<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = self.src.get(..offset.min(self.src.len())).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let col = before
            .rfind('\n')
            .map_or(before.chars().count(), |i| before[i + 1..].chars().count())
            + 1;
        (line, col)
    }
    /// The `table.key` whose value is written at `offset` (`key = value` on that line, under
    /// the last `[table]` header above it).
    fn setting_at(&self, offset: usize) -> Option<String> {
        let before = self.src.get(..offset)?;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let key = before[line_start..].split_once('=')?.0.trim();
        if key.is_empty() {
            return None;
        }
        let table = before[..line_start]
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
        Some(match table {
            Some(t) if !t.is_empty() => format!("{t}.{key}"),
            _ => key.to_string(),
        })
    }

    fn error(&self, offset: usize, problem: SettingError) -> ConfigError {
        ConfigError::Setting {
            path: self.path.to_path_buf(),
            position: Some(self.line_col(offset)),
            problem: Box::new(problem),
        }
    }
    /// An error of a job's setting, placed at the setting's value when it is written on a line
    /// of its own, else at the job's table.
    fn job_error(&self, span: &std::ops::Range<usize>, i: usize, e: SettingError) -> ConfigError {
        let key = e
            .setting()
            .split(['.', '[', ' '])
            .next()
            .unwrap_or_default()
            .to_string();
        let offset = value_position(self.src, span.clone(), &key).unwrap_or(span.start);
        self.error(offset, e.within(&format!("job[{i}]")))
    }
}

/// Shortest write period: each write opens, appends, flushes and closes the file.
const MIN_WRITE_PERIOD: f64 = 0.01;
/// Shortest read period (a thread wakes this often).
const MIN_READ_PERIOD: f64 = 0.0001;

fn seconds(
    ctx: &Ctx<'_>,
    v: &Spanned<toml::Value>,
    what: &str,
    min: f64,
) -> Result<Duration, ConfigError> {
    setting::seconds(what, v.get_ref(), min).map_err(|e| ctx.error(v.span().start, e))
}

fn parse_size(what: &str, v: &toml::Value) -> Result<u64, SettingError> {
    let bad = |reason: &str| SettingError::invalid(what, shown(v), reason);
    let bytes = match v {
        toml::Value::Integer(b) if *b > 0 => return Ok(*b as u64),
        toml::Value::Integer(_) => return Err(bad("must be > 0")),
        toml::Value::Float(f) => *f,
        toml::Value::String(t) => {
            let t = t.trim();
            let split = t
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(t.len());
            let (num, unit) = t.split_at(split);
            let n: f64 = num.parse().map_err(|_| bad("not a size like \"100 MB\""))?;
            let mult = match unit.trim().to_ascii_lowercase().as_str() {
                "" | "b" => 1.0,
                "kb" | "k" => 1e3,
                "mb" | "m" => 1e6,
                "gb" | "g" => 1e9,
                "kib" => 1024.0,
                "mib" => 1024.0 * 1024.0,
                "gib" => 1024.0 * 1024.0 * 1024.0,
                _ => return Err(bad("unknown size unit (use B, kB, MB, GB, KiB, MiB, GiB)")),
            };
            n * mult
        }
        other => {
            return Err(SettingError::wrong_type(
                what,
                other,
                "a byte count or a size like \"100 MB\"",
            ))
        }
    };
    if !(1.0..1.8e19).contains(&bytes) {
        return Err(bad("must be at least 1 byte"));
    }
    Ok(bytes as u64)
}

fn attrs(what: &str, t: &toml::Table) -> Result<Vec<(String, AttrValue)>, SettingError> {
    let mut out = Vec::new();
    for (k, v) in t {
        let a = match v {
            toml::Value::String(s) => AttrValue::Str(s.clone()),
            toml::Value::Integer(i) => AttrValue::Int(*i),
            toml::Value::Float(f) => AttrValue::Float(*f),
            toml::Value::Boolean(b) => AttrValue::Bool(*b),
            toml::Value::Datetime(d) => AttrValue::Str(d.to_string()),
            other => {
                return Err(SettingError::wrong_type(
                    format!("{what}.{k}"),
                    other,
                    "an attribute value (a string, number or boolean)",
                ))
            }
        };
        out.push((k.clone(), a));
    }
    Ok(out)
}

impl DaqConfig {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<DaqConfig, ConfigError> {
        let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        DaqConfig::parse(path, &src)
    }

    /// Parses config text; `path` is used in messages.
    pub fn parse(path: &Path, src: &str) -> Result<DaqConfig, ConfigError> {
        let ctx = Ctx { path, src };
        let raw: RawConfig = toml::from_str(src).map_err(|e| {
            let position = e.span().map(|s| ctx.line_col(s.start));
            match e.span().and_then(|s| ctx.setting_at(s.start)) {
                // A value of the wrong type under [daemon] or [log]: name the setting.
                Some(setting)
                    if e.message().starts_with("invalid type:")
                        || e.message().starts_with("invalid value:") =>
                {
                    ConfigError::Setting {
                        path: path.to_path_buf(),
                        position,
                        problem: Box::new(SettingError::Type {
                            setting,
                            value: setting::serde_value(e.message()),
                            expected: setting::plain_expected(e.message()),
                        }),
                    }
                }
                _ => ConfigError::Syntax {
                    path: path.to_path_buf(),
                    position,
                    message: e.message().trim().to_string(),
                },
            }
        })?;
        let daemon = match &raw.daemon {
            Some(d) => d,
            None => &RawDaemon::default(),
        };
        let d = parse_daemon(&ctx, daemon)?;
        let control_socket = daemon
            .control_socket
            .clone()
            .unwrap_or_else(|| d.directory.join("h5daq.sock"));
        // sockaddr_un holds 108 bytes with the terminating NUL.
        let socket_len = control_socket.as_os_str().len();
        if socket_len > 107 {
            let (key, at) = match daemon.control_socket {
                Some(_) => ("daemon.control_socket", "control_socket"),
                None => ("daemon.directory", "directory"),
            };
            let offset = src
                .find(&format!("{at} ="))
                .or_else(|| src.find(&format!("{at}=")))
                .unwrap_or(0);
            return Err(ctx.error(
                offset,
                SettingError::invalid(
                    key,
                    format!("{:?}", control_socket.display().to_string()),
                    format!("the control socket path is {socket_len} bytes; a Unix socket path holds at most 107"),
                ),
            ));
        }
        let log = match &raw.log {
            Some(l) => parse_log(&ctx, l)?,
            None => LogConfig::default(),
        };
        if raw.jobs.is_empty() {
            return Err(ConfigError::NoJobs {
                path: path.to_path_buf(),
            });
        }
        let mut jobs: Vec<JobConfig> = Vec::new();
        for (i, table) in raw.jobs.iter().enumerate() {
            let span = table.span();
            let job = parse_job(table.get_ref()).map_err(|e| ctx.job_error(&span, i, e))?;
            if jobs.iter().any(|o| o.group == job.group) {
                let e = SettingError::invalid(
                    "group",
                    format!("{:?}", job.group),
                    "is used by an earlier job",
                );
                return Err(ctx.job_error(&span, i, e));
            }
            jobs.push(job);
        }
        for (i, (job, table)) in jobs.iter().zip(&raw.jobs).enumerate() {
            let Some(id) = job.thread_id else { continue };
            let blocking = matches!(
                job.source,
                SourceConfig::ZmqStream(_) | SourceConfig::Command(_)
            );
            let shared = jobs
                .iter()
                .enumerate()
                .find(|(k, o)| *k != i && o.thread_id == Some(id));
            if let (true, Some((_, other))) = (blocking, shared) {
                let e = SettingError::invalid(
                    "thread_id",
                    id,
                    format!(
                        "this job's source waits for input as it arrives and would hold back job {:?} on the shared thread; give it its own thread_id",
                        other.group
                    ),
                );
                return Err(ctx.job_error(&table.span(), i, e));
            }
        }
        Ok(DaqConfig {
            path: path.to_path_buf(),
            daemon: d,
            log,
            control_socket,
            jobs,
        })
    }

    /// Builds the jobs (opening sockets; commands start at the first read).
    pub fn build_jobs(&self) -> Result<Vec<DaqJob>, crate::DaqError> {
        self.jobs.iter().map(JobConfig::build).collect()
    }
}

fn parse_daemon(ctx: &Ctx<'_>, rd: &RawDaemon) -> Result<DaemonConfig, ConfigError> {
    let mut d = DaemonConfig::default();
    if let Some(n) = &rd.name {
        d.name = n.clone();
    }
    if let Some(dir) = &rd.directory {
        d.directory = dir.clone();
    }
    if let Some(p) = &rd.file_prefix {
        let v = p.get_ref();
        if v.is_empty() || v.contains(['/', '\0']) || v.starts_with('.') {
            let e = SettingError::invalid(
                "daemon.file_prefix",
                format!("{v:?}"),
                "not a plain file name part",
            );
            return Err(ctx.error(p.span().start, e));
        }
        d.file_names = FileNames::prefix(v);
    }
    if let Some(f) = &rd.file_name {
        if rd.file_prefix.is_some() {
            let e = SettingError::invalid(
                "daemon.file_name",
                format!("{:?}", f.get_ref()),
                "set file_prefix or file_name, not both",
            );
            return Err(ctx.error(f.span().start, e));
        }
        d.file_names = f.get_ref().parse::<FileNames>().map_err(|e| {
            let e =
                SettingError::invalid("daemon.file_name", format!("{:?}", f.get_ref()), e.problem);
            ctx.error(f.span().start, e)
        })?;
    }
    if let Some(p) = &rd.write_period {
        d.write_period = seconds(ctx, p, "daemon.write_period", MIN_WRITE_PERIOD)?;
    }
    if let Some(j) = &rd.write_period_jitter {
        let jit = seconds(ctx, j, "daemon.write_period_jitter", 0.0)?;
        if jit >= d.write_period {
            let e = SettingError::invalid(
                "daemon.write_period_jitter",
                shown(j.get_ref()),
                format!(
                    "must be smaller than write_period ({} s)",
                    d.write_period.as_secs_f64()
                ),
            );
            return Err(ctx.error(j.span().start, e));
        }
        d.write_jitter = Some(jit);
    }
    if let Some(r) = &rd.rollover {
        d.rollover = r.get_ref().parse::<Rollover>().map_err(|e| {
            let e =
                SettingError::invalid("daemon.rollover", format!("{:?}", r.get_ref()), e.problem);
            ctx.error(r.span().start, e)
        })?;
    }
    if let Some(s) = &rd.max_file_size {
        let b = parse_size("daemon.max_file_size", s.get_ref())
            .map_err(|e| ctx.error(s.span().start, e))?;
        d.max_file_bytes = Some(b);
    }
    if let Some(c) = &rd.compression {
        match *c.get_ref() {
            0 => d.deflate = None,
            l @ 1..=9 => d.deflate = Some(l as u8),
            l => {
                let e = SettingError::invalid(
                    "daemon.compression",
                    l,
                    "the deflate level must be 0 (off) to 9",
                );
                return Err(ctx.error(c.span().start, e));
            }
        }
    }
    d.shuffle = rd.shuffle.unwrap_or(false);
    d.delete_empty_files = rd.delete_empty_files.unwrap_or(false);
    if let Some(m) = &rd.mode {
        d.mode = m.get_ref().parse::<WriteMode>().map_err(|e| {
            let e = SettingError::invalid("daemon.mode", format!("{:?}", m.get_ref()), e.problem);
            ctx.error(m.span().start, e)
        })?;
    }
    if let Some(a) = &rd.attrs {
        d.attrs = attrs("daemon.attrs", a.get_ref()).map_err(|e| ctx.error(a.span().start, e))?;
        if let Some((k, _)) = d
            .attrs
            .iter()
            .find(|(k, _)| RESERVED_ATTRS.contains(&k.as_str()))
        {
            let e = SettingError::invalid(
                format!("daemon.attrs.{k}"),
                "",
                "this attribute is written by the daemon itself; choose another name",
            );
            return Err(ctx.error(a.span().start, e));
        }
    }
    Ok(d)
}

fn parse_log(ctx: &Ctx<'_>, l: &RawLog) -> Result<LogConfig, ConfigError> {
    let mut log = LogConfig::default();
    if let Some(v) = &l.level {
        log.level = v.get_ref().parse::<Level>().map_err(|e| {
            let e = SettingError::invalid("log.level", format!("{:?}", v.get_ref()), e.problem);
            ctx.error(v.span().start, e)
        })?;
    }
    if let Some(v) = &l.format {
        log.format = v.get_ref().parse::<Format>().map_err(|e| {
            let e = SettingError::invalid("log.format", format!("{:?}", v.get_ref()), e.problem);
            ctx.error(v.span().start, e)
        })?;
    }
    if let Some(c) = l.console {
        log.console = c;
    }
    log.file = l.file.clone();
    if let Some(s) = &l.max_file_size {
        log.max_bytes = parse_size("log.max_file_size", s.get_ref())
            .map_err(|e| ctx.error(s.span().start, e))?;
    }
    if let Some(k) = l.keep {
        log.keep = k;
    }
    Ok(log)
}

/// Reads one `[[job]]` table: the common settings here, the rest by the job's source.
fn parse_job(table: &toml::Table) -> Result<JobConfig, SettingError> {
    let (common, own): (toml::Table, toml::Table) = table
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .partition(|(k, _)| COMMON_KEYS.contains(&k.as_str()));
    let c: CommonSettings = setting::from_table(&common, "a job")?;
    let group = c.group;
    if group.is_empty() || group.contains(['/', '\0']) || group == "." || group == ".." {
        return Err(SettingError::invalid(
            "group",
            format!("{group:?}"),
            "must be non-empty and contain no '/'",
        ));
    }
    let period = match &c.period {
        Some(p) => setting::seconds("period", p, MIN_READ_PERIOD)?,
        None => Duration::from_secs(1),
    };
    let chunk_length = match c.chunk_length {
        Some(n) if (1..=1 << 24).contains(&n) => n as usize,
        Some(n) => {
            return Err(SettingError::invalid(
                "chunk_length",
                n,
                "must be 1..=16777216",
            ))
        }
        None => crate::job::DEFAULT_CHUNK_LENGTH,
    };
    let error_limit = match c.error_limit {
        Some(n) if n >= 1 => n as u64,
        Some(n) => return Err(SettingError::invalid("error_limit", n, "must be >= 1")),
        None => 2,
    };
    let attrs = match &c.attrs {
        Some(a) => attrs("attrs", a)?,
        None => Vec::new(),
    };
    let buffer_bytes = match &c.buffer_size {
        Some(v) => usize::try_from(parse_size("buffer_size", v)?)
            .map_err(|_| SettingError::invalid("buffer_size", shown(v), "too large"))?,
        None => crate::job::DEFAULT_MAX_BUFFER_BYTES,
    };
    let source =
        match c.source.as_str() {
            "system" => SourceConfig::System(SystemConfig::from_table(&own)?),
            "zmq_sub" => SourceConfig::ZmqStream(StreamConfig::sub_from_table(&own)?),
            "zmq_pull" => SourceConfig::ZmqStream(StreamConfig::pull_from_table(&own)?),
            "zmq_req" => SourceConfig::ZmqReq(ReqConfig::from_table(&own, false)?),
            "xsp3_status" => SourceConfig::ZmqReq(ReqConfig::from_table(&own, true)?),
            "command" => SourceConfig::Command(CommandConfig::from_table(&own)?),
            other => return Err(SettingError::invalid(
                "source",
                format!("{other:?}"),
                "unknown source (use system, zmq_sub, zmq_pull, zmq_req, xsp3_status or command)",
            )),
        };
    let trigger = c.trigger.unwrap_or(false);
    if trigger {
        let continuous = match &source {
            SourceConfig::ZmqStream(_) => true,
            SourceConfig::Command(cmd) => !cmd.once,
            _ => false,
        };
        if continuous {
            return Err(SettingError::invalid(
                "trigger",
                true,
                "this source reads input as it arrives; only sampled sources (system, zmq_req, xsp3_status, command with run = \"once\") read on trigger",
            ));
        }
        if let Some(p) = &c.period {
            return Err(SettingError::invalid(
                "period",
                shown(p),
                "a job with trigger = true has no period",
            ));
        }
    }
    if let Some(p) = &c.period {
        let unused = match &source {
            SourceConfig::ZmqStream(_) => Some(
                "a ZeroMQ stream source (zmq_sub, zmq_pull) takes every message as it arrives; it has no period",
            ),
            SourceConfig::Command(cmd) if !cmd.bulk && !cmd.once => Some(
                "a command's lines are read as they arrive; period applies only with bulk = true or run = \"once\"",
            ),
            _ => None,
        };
        if let Some(why) = unused {
            return Err(SettingError::invalid("period", shown(p), why));
        }
    }
    Ok(JobConfig {
        group,
        source,
        period,
        trigger,
        thread_id: c.thread_id,
        dedup: c.dedup.unwrap_or(false),
        chunk_length,
        error_limit,
        buffer_bytes,
        attrs,
    })
}

impl JobConfig {
    /// Builds the job.
    pub fn build(&self) -> Result<DaqJob, crate::DaqError> {
        let g = self.group.as_str();
        let job = match &self.source {
            SourceConfig::System(s) => s.job(g, self.period)?,
            SourceConfig::ZmqStream(s) => s.job(g)?,
            SourceConfig::ZmqReq(s) => s.job(g, self.period)?,
            SourceConfig::Command(s) => s.job(g, self.period)?,
        };
        let group = self.group.clone();
        let mut job = job
            .with_dedup(self.dedup)
            .with_chunk_length(self.chunk_length)
            .with_max_buffer_bytes(self.buffer_bytes)
            .with_attrs(self.attrs.clone())
            .with_error_handler(self.error_limit, move |r| {
                crate::log::emit(
                    Level::Error,
                    format_args!(
                        "job {group}: {} consecutive errors (last: {})",
                        r.consecutive, r.error
                    ),
                )
            });
        if let Some(t) = self.thread_id {
            job = job.with_thread_id(t);
        }
        if self.trigger {
            job = job.with_mode(ReadMode::Triggered)?;
        }
        Ok(job)
    }
}
