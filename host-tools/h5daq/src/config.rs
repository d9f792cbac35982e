//! The `h5daq run CONFIG.toml` file: daemon settings, logging and jobs from built-in sources.
//! Errors name the file, the line and the field. See `docs/daq.md` for the reference.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::column::Dtype;
use super::daemon::{DaemonConfig, RESERVED_ATTRS};
use super::error::DaqError;
use super::job::{AttrValue, DaqJob, DatasetSpec, ReadMode};
use super::log::{Format, Level, LogConfig};
use super::sources::command::{self, LineFormat};
use super::sources::system::{self, SystemField};
use super::sources::zmq_json;
use super::sources::JsonField;
use super::time::Rollover;
use super::writer::WriteMode;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    daemon: Option<Spanned<RawDaemon>>,
    #[serde(default)]
    log: Option<Spanned<RawLog>>,
    #[serde(default, rename = "job")]
    jobs: Vec<Spanned<RawJob>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(i64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    name: Option<String>,
    directory: Option<PathBuf>,
    file_prefix: Option<Spanned<String>>,
    write_period: Option<Spanned<f64>>,
    write_period_jitter: Option<Spanned<f64>>,
    rollover: Option<Spanned<String>>,
    max_file_size: Option<Spanned<Size>>,
    compression: Option<Spanned<i64>>,
    shuffle: Option<bool>,
    mode: Option<Spanned<String>>,
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
    max_file_size: Option<Spanned<Size>>,
    keep: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawField {
    Name(String),
    Full(RawFieldFull),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFieldFull {
    name: String,
    dtype: Option<String>,
    shape: Option<Vec<usize>>,
    unit: Option<String>,
    key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawCommand {
    Shell(String),
    Argv(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    group: Spanned<String>,
    source: Spanned<String>,
    period: Option<Spanned<f64>>,
    thread_id: Option<u32>,
    dedup: Option<bool>,
    chunk_length: Option<Spanned<i64>>,
    error_limit: Option<Spanned<i64>>,
    attrs: Option<Spanned<toml::Table>>,
    fields: Option<Spanned<Vec<RawField>>>,
    // system
    disk: Option<PathBuf>,
    // zmq_sub, zmq_req / xsp3_status
    endpoint: Option<Spanned<String>>,
    topic: Option<String>,
    time_field: Option<String>,
    request: Option<Spanned<toml::Value>>,
    timeout: Option<Spanned<f64>>,
    // command
    command: Option<Spanned<RawCommand>>,
    delimiter: Option<String>,
    comment: Option<String>,
    provide_time: Option<bool>,
    bulk: Option<bool>,
}

/// The source of a configured job.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceConfig {
    System {
        fields: Vec<SystemField>,
        disk: PathBuf,
    },
    ZmqSub {
        endpoint: String,
        topic: String,
        fields: Vec<JsonField>,
        time_field: Option<String>,
    },
    ZmqReq {
        endpoint: String,
        request: serde_json::Value,
        fields: Vec<JsonField>,
        timeout: Duration,
    },
    Command {
        argv: Vec<String>,
        specs: Vec<DatasetSpec>,
        format: LineFormat,
        bulk: bool,
    },
}

/// A configured job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobConfig {
    pub group: String,
    pub source: SourceConfig,
    pub period: Duration,
    pub thread_id: Option<u32>,
    pub dedup: bool,
    pub chunk_length: usize,
    pub error_limit: u64,
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
    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        what: &str,
        msg: impl std::fmt::Display,
    ) -> Result<T, DaqError> {
        let (l, c) = self.line_col(span.start);
        Err(DaqError::Config(format!(
            "{}:{l}:{c}: {what}: {msg}",
            self.path.display()
        )))
    }
}

fn seconds(ctx: &Ctx<'_>, v: &Spanned<f64>, what: &str) -> Result<Duration, DaqError> {
    let x = *v.get_ref();
    if !(x.is_finite() && x > 0.0 && x < 1e9) {
        return ctx.err(
            v.span(),
            what,
            format!("must be a positive number of seconds, got {x}"),
        );
    }
    Ok(Duration::from_secs_f64(x))
}

fn parse_size(s: &Size) -> Result<u64, String> {
    match s {
        Size::Bytes(b) if *b > 0 => Ok(*b as u64),
        Size::Bytes(b) => Err(format!("must be > 0, got {b}")),
        Size::Text(t) => {
            let t = t.trim();
            let split = t
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(t.len());
            let (num, unit) = t.split_at(split);
            let n: f64 = num
                .parse()
                .map_err(|_| format!("{t:?} is not a size like \"100 MB\""))?;
            let mult = match unit.trim().to_ascii_lowercase().as_str() {
                "" | "b" => 1.0,
                "kb" | "k" => 1e3,
                "mb" | "m" => 1e6,
                "gb" | "g" => 1e9,
                "kib" => 1024.0,
                "mib" => 1024.0 * 1024.0,
                "gib" => 1024.0 * 1024.0 * 1024.0,
                other => {
                    return Err(format!(
                        "unknown size unit {other:?} (use B, kB, MB, GB, KiB, MiB, GiB)"
                    ))
                }
            };
            let b = n * mult;
            if b < 1.0 {
                return Err(format!("{t:?} must be at least 1 byte"));
            }
            Ok(b as u64)
        }
    }
}

fn attrs(
    ctx: &Ctx<'_>,
    t: &Spanned<toml::Table>,
    what: &str,
) -> Result<Vec<(String, AttrValue)>, DaqError> {
    let mut out = Vec::new();
    for (k, v) in t.get_ref() {
        let a = match v {
            toml::Value::String(s) => AttrValue::Str(s.clone()),
            toml::Value::Integer(i) => AttrValue::Int(*i),
            toml::Value::Float(f) => AttrValue::Float(*f),
            toml::Value::Boolean(b) => AttrValue::Bool(*b),
            toml::Value::Datetime(d) => AttrValue::Str(d.to_string()),
            other => {
                return ctx.err(
                    t.span(),
                    &format!("{what}.{k}"),
                    format!(
                        "attributes must be strings, numbers or booleans, got {}",
                        other.type_str()
                    ),
                )
            }
        };
        out.push((k.clone(), a));
    }
    Ok(out)
}

fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    match v {
        toml::Value::String(s) => serde_json::Value::String(s.clone()),
        toml::Value::Integer(i) => serde_json::Value::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(a) => serde_json::Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => serde_json::Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

impl DaqConfig {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<DaqConfig, DaqError> {
        let src = std::fs::read_to_string(path).map_err(DaqError::io(path))?;
        DaqConfig::parse(path, &src)
    }

    /// Parses config text; `path` is used in messages.
    pub fn parse(path: &Path, src: &str) -> Result<DaqConfig, DaqError> {
        let ctx = Ctx { path, src };
        let raw: RawConfig = match toml::from_str(src) {
            Ok(r) => r,
            Err(e) => {
                let msg = e.message().trim().to_string();
                return match e.span() {
                    Some(s) => ctx.err(s, "syntax", msg),
                    None => Err(DaqError::Config(format!("{}: {msg}", path.display()))),
                };
            }
        };
        let mut d = DaemonConfig::default();
        let rd = raw.daemon.as_ref().map(|s| s.get_ref());
        let dflt = RawDaemon::default();
        let rd = rd.unwrap_or(&dflt);
        if let Some(n) = &rd.name {
            d.name = n.clone();
        }
        if let Some(dir) = &rd.directory {
            d.directory = dir.clone();
        }
        if let Some(p) = &rd.file_prefix {
            let v = p.get_ref();
            if v.is_empty() || v.contains(['/', '\0']) || v.starts_with('.') {
                return ctx.err(
                    p.span(),
                    "daemon.file_prefix",
                    format!("{v:?} is not a plain file name part"),
                );
            }
            d.file_prefix = v.clone();
        }
        if let Some(p) = &rd.write_period {
            d.write_period = seconds(&ctx, p, "daemon.write_period")?;
        }
        if let Some(j) = &rd.write_period_jitter {
            let jit = seconds(&ctx, j, "daemon.write_period_jitter")?;
            if jit >= d.write_period {
                return ctx.err(
                    j.span(),
                    "daemon.write_period_jitter",
                    format!(
                        "{} s must be smaller than write_period {} s",
                        jit.as_secs_f64(),
                        d.write_period.as_secs_f64()
                    ),
                );
            }
            d.write_jitter = Some(jit);
        }
        if let Some(r) = &rd.rollover {
            d.rollover = match r.get_ref().parse::<Rollover>() {
                Ok(v) => v,
                Err(e) => return ctx.err(r.span(), "daemon.rollover", e),
            };
        }
        if let Some(s) = &rd.max_file_size {
            d.max_file_bytes = Some(match parse_size(s.get_ref()) {
                Ok(v) => v,
                Err(e) => return ctx.err(s.span(), "daemon.max_file_size", e),
            });
        }
        if let Some(c) = &rd.compression {
            match *c.get_ref() {
                0 => d.deflate = None,
                l @ 1..=9 => d.deflate = Some(l as u8),
                l => {
                    return ctx.err(
                        c.span(),
                        "daemon.compression",
                        format!("deflate level must be 0 (off) to 9, got {l}"),
                    )
                }
            }
        }
        d.shuffle = rd.shuffle.unwrap_or(false);
        if let Some(m) = &rd.mode {
            d.mode = match m.get_ref().parse::<WriteMode>() {
                Ok(v) => v,
                Err(e) => return ctx.err(m.span(), "daemon.mode", e),
            };
        }
        if let Some(a) = &rd.attrs {
            d.attrs = attrs(&ctx, a, "daemon.attrs")?;
            if let Some((k, _)) = d
                .attrs
                .iter()
                .find(|(k, _)| RESERVED_ATTRS.contains(&k.as_str()))
            {
                return ctx.err(
                    a.span(),
                    &format!("daemon.attrs.{k}"),
                    "this attribute is written by the daemon itself; choose another name",
                );
            }
        }
        let control_socket = rd
            .control_socket
            .clone()
            .unwrap_or_else(|| d.directory.join("h5daq.sock"));

        let mut log = LogConfig::default();
        if let Some(l) = &raw.log {
            let l = l.get_ref();
            if let Some(v) = &l.level {
                log.level = match v.get_ref().parse::<Level>() {
                    Ok(x) => x,
                    Err(e) => return ctx.err(v.span(), "log.level", e),
                };
            }
            if let Some(v) = &l.format {
                log.format = match v.get_ref().parse::<Format>() {
                    Ok(x) => x,
                    Err(e) => return ctx.err(v.span(), "log.format", e),
                };
            }
            if let Some(c) = l.console {
                log.console = c;
            }
            log.file = l.file.clone();
            if let Some(s) = &l.max_file_size {
                log.max_bytes = match parse_size(s.get_ref()) {
                    Ok(v) => v,
                    Err(e) => return ctx.err(s.span(), "log.max_file_size", e),
                };
            }
            if let Some(k) = l.keep {
                log.keep = k;
            }
        }

        if raw.jobs.is_empty() {
            return Err(DaqError::Config(format!(
                "{}: no [[job]] tables; declare at least one job",
                path.display()
            )));
        }
        let mut jobs: Vec<JobConfig> = Vec::new();
        for (i, sj) in raw.jobs.iter().enumerate() {
            let j = sj.get_ref();
            let job = parse_job(&ctx, i, j)?;
            if jobs.iter().any(|o| o.group == job.group) {
                return ctx.err(
                    j.group.span(),
                    &format!("job[{i}].group"),
                    format!("{:?} is used by an earlier job", job.group),
                );
            }
            jobs.push(job);
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
    pub fn build_jobs(&self) -> Result<Vec<DaqJob>, DaqError> {
        self.jobs.iter().map(JobConfig::build).collect()
    }
}

fn field_specs(
    ctx: &Ctx<'_>,
    what: &str,
    fields: &Spanned<Vec<RawField>>,
    default_dtype: Dtype,
) -> Result<Vec<JsonField>, DaqError> {
    let mut out: Vec<JsonField> = Vec::new();
    if fields.get_ref().is_empty() {
        return ctx.err(fields.span(), what, "needs at least one field");
    }
    for (k, f) in fields.get_ref().iter().enumerate() {
        let (name, dtype, shape, unit, key) = match f {
            RawField::Name(n) => (n.clone(), None, None, None, None),
            RawField::Full(x) => (
                x.name.clone(),
                x.dtype.clone(),
                x.shape.clone(),
                x.unit.clone(),
                x.key.clone(),
            ),
        };
        let fw = format!("{what}[{k}] ({name:?})");
        if name.is_empty() || name.contains('/') || name == "time" || name == "." {
            return ctx.err(
                fields.span(),
                &fw,
                "a dataset name must be non-empty, contain no '/' and not be \"time\"",
            );
        }
        if out.iter().any(|o| o.spec.name == name) {
            return ctx.err(fields.span(), &fw, "appears twice");
        }
        let dtype = match dtype {
            None => default_dtype,
            Some(s) => match s.parse::<Dtype>() {
                Ok(d) => d,
                Err(e) => return ctx.err(fields.span(), &format!("{fw}.dtype"), e),
            },
        };
        let shape = shape.unwrap_or_default();
        if shape.contains(&0) {
            return ctx.err(
                fields.span(),
                &format!("{fw}.shape"),
                format!("{shape:?} has a zero-length axis"),
            );
        }
        let mut spec = DatasetSpec::array(name.clone(), dtype, &shape);
        spec.unit = unit;
        out.push(JsonField {
            spec,
            key: key.unwrap_or(name),
        });
    }
    Ok(out)
}

fn parse_job(ctx: &Ctx<'_>, i: usize, j: &RawJob) -> Result<JobConfig, DaqError> {
    let w = |f: &str| format!("job[{i}].{f}");
    let group = j.group.get_ref().clone();
    if group.is_empty() || group.contains('/') || group == "." {
        return ctx.err(
            j.group.span(),
            &w("group"),
            format!("{group:?} must be non-empty and contain no '/'"),
        );
    }
    let period = match &j.period {
        Some(p) => seconds(ctx, p, &w("period"))?,
        None => Duration::from_secs(1),
    };
    let chunk_length = match &j.chunk_length {
        Some(c) if *c.get_ref() >= 1 && *c.get_ref() <= 1 << 24 => *c.get_ref() as usize,
        Some(c) => {
            return ctx.err(
                c.span(),
                &w("chunk_length"),
                format!("must be 1..=16777216, got {}", c.get_ref()),
            )
        }
        None => super::job::DEFAULT_CHUNK_LENGTH,
    };
    let error_limit = match &j.error_limit {
        Some(c) if *c.get_ref() >= 1 => *c.get_ref() as u64,
        Some(c) => {
            return ctx.err(
                c.span(),
                &w("error_limit"),
                format!("must be >= 1, got {}", c.get_ref()),
            )
        }
        None => 2,
    };
    let attrs = match &j.attrs {
        Some(a) => attrs(ctx, a, &w("attrs"))?,
        None => Vec::new(),
    };
    let src = j.source.get_ref().as_str();
    // Which keys each source takes; any other source-specific key is an error naming it.
    let allowed: &[&str] = match src {
        "system" => &["disk"],
        "zmq_sub" => &["endpoint", "topic", "time_field"],
        "zmq_req" | "xsp3_status" => &["endpoint", "request", "timeout"],
        "command" => &["command", "delimiter", "comment", "provide_time", "bulk"],
        other => {
            return ctx.err(j.source.span(), &w("source"), format!("unknown source {other:?} (use system, zmq_sub, zmq_req, xsp3_status or command)"));
        }
    };
    let present: [(&str, Option<std::ops::Range<usize>>); 11] = [
        ("disk", j.disk.as_ref().map(|_| j.source.span())),
        ("endpoint", j.endpoint.as_ref().map(Spanned::span)),
        ("topic", j.topic.as_ref().map(|_| j.source.span())),
        ("time_field", j.time_field.as_ref().map(|_| j.source.span())),
        ("request", j.request.as_ref().map(Spanned::span)),
        ("timeout", j.timeout.as_ref().map(Spanned::span)),
        ("command", j.command.as_ref().map(Spanned::span)),
        ("delimiter", j.delimiter.as_ref().map(|_| j.source.span())),
        ("comment", j.comment.as_ref().map(|_| j.source.span())),
        (
            "provide_time",
            j.provide_time.as_ref().map(|_| j.source.span()),
        ),
        ("bulk", j.bulk.as_ref().map(|_| j.source.span())),
    ];
    for (k, span) in present {
        if let Some(span) = span {
            if !allowed.contains(&k) {
                return ctx.err(span, &w(k), format!("not a setting of source {src:?}"));
            }
        }
    }
    let need_fields = |what: &str| -> Result<&Spanned<Vec<RawField>>, DaqError> {
        match &j.fields {
            Some(f) => Ok(f),
            None => ctx.err(
                j.source.span(),
                &w("fields"),
                format!("source {what:?} needs a list of fields"),
            ),
        }
    };
    let need_endpoint = || -> Result<String, DaqError> {
        match &j.endpoint {
            Some(e) if e.get_ref().contains("://") => Ok(e.get_ref().clone()),
            Some(e) => ctx.err(
                e.span(),
                &w("endpoint"),
                format!(
                    "{:?} is not a ZeroMQ endpoint like \"tcp://127.0.0.1:5556\"",
                    e.get_ref()
                ),
            ),
            None => ctx.err(
                j.source.span(),
                &w("endpoint"),
                format!("source {src:?} needs an endpoint"),
            ),
        }
    };
    let source = match src {
        "system" => {
            let fields = match &j.fields {
                None => system::default_fields(),
                Some(f) => {
                    let mut v = Vec::new();
                    for (k, x) in f.get_ref().iter().enumerate() {
                        let name = match x {
                            RawField::Name(n) => n.as_str(),
                            RawField::Full(x) => x.name.as_str(),
                        };
                        match name.parse::<SystemField>() {
                            Ok(sf) if !v.contains(&sf) => v.push(sf),
                            Ok(_) => {
                                return ctx.err(
                                    f.span(),
                                    &format!("{}[{k}]", w("fields")),
                                    format!("{name:?} appears twice"),
                                )
                            }
                            Err(e) => {
                                return ctx.err(f.span(), &format!("{}[{k}]", w("fields")), e)
                            }
                        }
                    }
                    if v.is_empty() {
                        return ctx.err(f.span(), &w("fields"), "needs at least one field");
                    }
                    v
                }
            };
            SourceConfig::System {
                fields,
                disk: j.disk.clone().unwrap_or_else(|| PathBuf::from(".")),
            }
        }
        "zmq_sub" => SourceConfig::ZmqSub {
            endpoint: need_endpoint()?,
            topic: j.topic.clone().unwrap_or_default(),
            fields: field_specs(ctx, &w("fields"), need_fields(src)?, Dtype::F64)?,
            time_field: j.time_field.clone(),
        },
        "zmq_req" | "xsp3_status" => {
            let request = match &j.request {
                Some(r) => {
                    let v = toml_to_json(r.get_ref());
                    if !v.is_object() {
                        return ctx.err(
                            r.span(),
                            &w("request"),
                            "must be a table, e.g. { cmd = \"status\" }",
                        );
                    }
                    v
                }
                None if src == "xsp3_status" => serde_json::json!({"cmd": "status"}),
                None => {
                    return ctx.err(
                        j.source.span(),
                        &w("request"),
                        "source \"zmq_req\" needs a request table",
                    )
                }
            };
            let timeout = match &j.timeout {
                Some(t) => seconds(ctx, t, &w("timeout"))?,
                None => period.min(Duration::from_secs(1)),
            };
            SourceConfig::ZmqReq {
                endpoint: need_endpoint()?,
                request,
                fields: field_specs(ctx, &w("fields"), need_fields(src)?, Dtype::F64)?,
                timeout,
            }
        }
        _ => {
            let argv =
                match &j.command {
                    Some(c) => match c.get_ref() {
                        RawCommand::Shell(s) if !s.trim().is_empty() => {
                            vec!["/bin/sh".to_string(), "-c".to_string(), s.clone()]
                        }
                        RawCommand::Argv(v) if !v.is_empty() && !v[0].is_empty() => v.clone(),
                        _ => return ctx.err(
                            c.span(),
                            &w("command"),
                            "must be a non-empty string (run by /bin/sh -c) or array of arguments",
                        ),
                    },
                    None => {
                        return ctx.err(
                            j.source.span(),
                            &w("command"),
                            "source \"command\" needs a command",
                        )
                    }
                };
            let specs = field_specs(ctx, &w("fields"), need_fields(src)?, Dtype::F64)?
                .into_iter()
                .map(|f| f.spec)
                .collect();
            let format = LineFormat {
                delimiter: j.delimiter.clone(),
                comment: j.comment.clone().unwrap_or_else(|| "#".into()),
                provide_time: j.provide_time.unwrap_or(false),
            };
            SourceConfig::Command {
                argv,
                specs,
                format,
                bulk: j.bulk.unwrap_or(false),
            }
        }
    };
    Ok(JobConfig {
        group,
        source,
        period,
        thread_id: j.thread_id,
        dedup: j.dedup.unwrap_or(false),
        chunk_length,
        error_limit,
        attrs,
    })
}

impl JobConfig {
    /// Builds the job.
    pub fn build(&self) -> Result<DaqJob, DaqError> {
        let g = self.group.as_str();
        let job = match &self.source {
            SourceConfig::System { fields, disk } => {
                system::job(g, fields, disk.clone())?.with_mode(ReadMode::Periodic(self.period))?
            }
            SourceConfig::ZmqSub {
                endpoint,
                topic,
                fields,
                time_field,
            } => zmq_json::subscriber_job(g, endpoint, topic, fields.clone(), time_field.clone())?,
            SourceConfig::ZmqReq {
                endpoint,
                request,
                fields,
                timeout,
            } => zmq_json::request_job(
                g,
                endpoint,
                request.clone(),
                fields.clone(),
                self.period,
                *timeout,
            )?,
            SourceConfig::Command {
                argv,
                specs,
                format,
                bulk,
            } => command::job(
                g,
                argv.clone(),
                specs.clone(),
                format.clone(),
                *bulk,
                self.period,
            )?,
        };
        let group = self.group.clone();
        let mut job = job
            .with_dedup(self.dedup)
            .with_chunk_length(self.chunk_length)
            .with_attrs(self.attrs.clone())
            .with_error_handler(self.error_limit, move |r| {
                super::log::emit(
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
        Ok(job)
    }
}
