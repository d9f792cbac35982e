//! System values: load average, memory, disk usage and CPU temperature (where the kernel
//! exposes one), read from /proc, /sys and statvfs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::column::{Dtype, Entry};
use crate::error::{DaqError, ParseError};
use crate::job::{DaqJob, DatasetSpec, ReadMode, Reading};
use crate::setting::{self, shown, SettingError};
use crate::sys::disk_usage;

/// The `[[job]]` settings of `source = "system"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    fields: Option<toml::Value>,
    disk: Option<PathBuf>,
}

/// A checked system job: which values, and the path whose file system is measured.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemConfig {
    pub fields: Vec<SystemField>,
    pub disk: PathBuf,
}

impl SystemConfig {
    /// Reads and checks the source's settings; without `fields`, [`default_fields`].
    pub fn from_table(table: &toml::Table) -> Result<SystemConfig, SettingError> {
        let s: Settings = setting::from_table(table, "source \"system\"")?;
        let fields = match &s.fields {
            None => default_fields(),
            Some(v) => {
                let list = v.as_array().ok_or_else(|| {
                    SettingError::wrong_type("fields", v, "a list of system value names")
                })?;
                let mut out = Vec::new();
                for (k, x) in list.iter().enumerate() {
                    let at = format!("fields[{k}]");
                    let name = match x {
                        toml::Value::String(n) => n.as_str(),
                        toml::Value::Table(t) => match t.get("name").and_then(|n| n.as_str()) {
                            Some(n) if t.len() == 1 => n,
                            _ => {
                                return Err(SettingError::wrong_type(
                                    at,
                                    x,
                                    "a system value name (the system source takes names only)",
                                ))
                            }
                        },
                        other => return Err(SettingError::wrong_type(at, other, "a name")),
                    };
                    match name.parse::<SystemField>() {
                        Ok(f) if !out.contains(&f) => out.push(f),
                        Ok(_) => return Err(SettingError::invalid(at, shown(x), "appears twice")),
                        Err(e) => return Err(SettingError::invalid(at, shown(x), e.problem)),
                    }
                }
                if out.is_empty() {
                    return Err(SettingError::invalid(
                        "fields",
                        "[]",
                        "needs at least one field",
                    ));
                }
                out
            }
        };
        Ok(SystemConfig {
            fields,
            disk: s.disk.unwrap_or_else(|| PathBuf::from(".")),
        })
    }

    /// The job, sampling every `period`.
    pub fn job(&self, group: &str, period: Duration) -> Result<DaqJob, DaqError> {
        job(group, &self.fields, self.disk.clone())?.with_mode(ReadMode::Periodic(period))
    }
}

/// A system value that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: unexpected content {content:?}")]
    Content { path: &'static str, content: String },
}

/// A value the system source can sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemField {
    Load1,
    Load5,
    Load15,
    MemTotal,
    MemAvailable,
    MemUsedFraction,
    DiskTotal,
    DiskFree,
    DiskUsedFraction,
    CpuTemp,
}

/// Every field, in dataset order.
pub const ALL_FIELDS: [SystemField; 10] = [
    SystemField::Load1,
    SystemField::Load5,
    SystemField::Load15,
    SystemField::MemTotal,
    SystemField::MemAvailable,
    SystemField::MemUsedFraction,
    SystemField::DiskTotal,
    SystemField::DiskFree,
    SystemField::DiskUsedFraction,
    SystemField::CpuTemp,
];

impl SystemField {
    /// Dataset name.
    pub fn name(self) -> &'static str {
        match self {
            SystemField::Load1 => "load1",
            SystemField::Load5 => "load5",
            SystemField::Load15 => "load15",
            SystemField::MemTotal => "mem_total",
            SystemField::MemAvailable => "mem_available",
            SystemField::MemUsedFraction => "mem_used_fraction",
            SystemField::DiskTotal => "disk_total",
            SystemField::DiskFree => "disk_free",
            SystemField::DiskUsedFraction => "disk_used_fraction",
            SystemField::CpuTemp => "cpu_temp",
        }
    }
    fn unit(self) -> Option<&'static str> {
        match self {
            SystemField::MemTotal
            | SystemField::MemAvailable
            | SystemField::DiskTotal
            | SystemField::DiskFree => Some("bytes"),
            SystemField::CpuTemp => Some("degC"),
            _ => None,
        }
    }
}

impl std::str::FromStr for SystemField {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        ALL_FIELDS
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                ParseError::unknown(
                    "system field",
                    s,
                    &ALL_FIELDS.map(SystemField::name).join(", "),
                )
            })
    }
}

fn read(path: &'static str) -> Result<String, SystemError> {
    std::fs::read_to_string(path).map_err(|source| SystemError::Read {
        path: path.to_string(),
        source,
    })
}

fn load_avg() -> Result<[f64; 3], SystemError> {
    let s = read("/proc/loadavg")?;
    let mut it = s.split_whitespace().map(str::parse::<f64>);
    let mut out = [0.0; 3];
    for o in &mut out {
        *o = it
            .next()
            .and_then(Result::ok)
            .ok_or_else(|| SystemError::Content {
                path: "/proc/loadavg",
                content: s.clone(),
            })?;
    }
    Ok(out)
}

fn meminfo() -> Result<(f64, f64), SystemError> {
    let s = read("/proc/meminfo")?;
    let field = |name: &str| -> Option<f64> {
        let line = s.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024.0)
    };
    let missing = |what: &str| SystemError::Content {
        path: "/proc/meminfo",
        content: format!("no {what} line"),
    };
    let total = field("MemTotal:").ok_or_else(|| missing("MemTotal"))?;
    let avail = field("MemAvailable:").ok_or_else(|| missing("MemAvailable"))?;
    Ok((total, avail))
}

/// The highest temperature of the thermal zones (°C), `None` when the host exposes none.
pub fn cpu_temperature() -> Option<f64> {
    let mut best: Option<f64> = None;
    let dirs = std::fs::read_dir("/sys/class/thermal").ok()?;
    for e in dirs.flatten() {
        if !e.file_name().to_string_lossy().starts_with("thermal_zone") {
            continue;
        }
        if let Ok(s) = std::fs::read_to_string(e.path().join("temp")) {
            if let Ok(milli) = s.trim().parse::<f64>() {
                let c = milli / 1000.0;
                best = Some(best.map_or(c, |b: f64| b.max(c)));
            }
        }
    }
    best
}

/// One sample of `fields`; `disk` is the path whose file system is measured.
pub fn sample(fields: &[SystemField], disk: &Path) -> Result<Vec<f64>, SystemError> {
    let need = |f: &[SystemField]| fields.iter().any(|x| f.contains(x));
    let load = if need(&[SystemField::Load1, SystemField::Load5, SystemField::Load15]) {
        load_avg()?
    } else {
        [0.0; 3]
    };
    let mem = if need(&[
        SystemField::MemTotal,
        SystemField::MemAvailable,
        SystemField::MemUsedFraction,
    ]) {
        meminfo()?
    } else {
        (0.0, 0.0)
    };
    let dsk = if need(&[
        SystemField::DiskTotal,
        SystemField::DiskFree,
        SystemField::DiskUsedFraction,
    ]) {
        let (t, _, a) = disk_usage(disk).map_err(|source| SystemError::Read {
            path: disk.display().to_string(),
            source,
        })?;
        (t as f64, a as f64)
    } else {
        (0.0, 0.0)
    };
    Ok(fields
        .iter()
        .map(|f| match f {
            SystemField::Load1 => load[0],
            SystemField::Load5 => load[1],
            SystemField::Load15 => load[2],
            SystemField::MemTotal => mem.0,
            SystemField::MemAvailable => mem.1,
            SystemField::MemUsedFraction => 1.0 - mem.1 / mem.0,
            SystemField::DiskTotal => dsk.0,
            SystemField::DiskFree => dsk.1,
            SystemField::DiskUsedFraction => 1.0 - dsk.1 / dsk.0,
            SystemField::CpuTemp => cpu_temperature().unwrap_or(f64::NAN),
        })
        .collect())
}

/// The default fields: all of them, `cpu_temp` only where the host has a thermal zone.
pub fn default_fields() -> Vec<SystemField> {
    let temp = cpu_temperature().is_some();
    ALL_FIELDS
        .into_iter()
        .filter(|f| *f != SystemField::CpuTemp || temp)
        .collect()
}

/// A job sampling `fields` (float64 datasets named after the fields).
fn job(group: &str, fields: &[SystemField], disk: PathBuf) -> Result<DaqJob, DaqError> {
    let specs = fields
        .iter()
        .map(|f| {
            let s = DatasetSpec::scalar(f.name(), Dtype::F64);
            match f.unit() {
                Some(u) => s.with_unit(u),
                None => s,
            }
        })
        .collect();
    let fields = fields.to_vec();
    DaqJob::new(group, specs, move || {
        let v = sample(&fields, &disk)?;
        Ok(Reading::Row(v.into_iter().map(Entry::from).collect()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_plausible() {
        let v = sample(&ALL_FIELDS, Path::new("/")).unwrap();
        assert!(v[0] >= 0.0);
        assert!(v[3] > 1e6 && v[4] <= v[3]);
        assert!((0.0..=1.0).contains(&v[5]));
        assert!(v[6] > 0.0 && v[7] <= v[6]);
        assert!("cpu_temp".parse::<SystemField>().is_ok());
        assert!("cpu".parse::<SystemField>().is_err());
    }
}
