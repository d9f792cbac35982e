//! System values: load average, memory, disk usage and CPU temperature (where the kernel
//! exposes one), read from /proc, /sys and statvfs.

use std::path::{Path, PathBuf};

use crate::column::{Dtype, Entry};
use crate::error::DaqError;
use crate::job::{DaqJob, DatasetSpec, Reading};
use crate::sys::disk_usage;

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
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ALL_FIELDS
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown system field {s:?} (use {})",
                    ALL_FIELDS.map(SystemField::name).join(", ")
                )
            })
    }
}

fn load_avg() -> Result<[f64; 3], String> {
    let s = std::fs::read_to_string("/proc/loadavg").map_err(|e| format!("/proc/loadavg: {e}"))?;
    let mut it = s.split_whitespace().map(str::parse::<f64>);
    let mut out = [0.0; 3];
    for o in &mut out {
        *o = it
            .next()
            .and_then(Result::ok)
            .ok_or_else(|| format!("/proc/loadavg: unexpected content {s:?}"))?;
    }
    Ok(out)
}

fn meminfo() -> Result<(f64, f64), String> {
    let s = std::fs::read_to_string("/proc/meminfo").map_err(|e| format!("/proc/meminfo: {e}"))?;
    let field = |name: &str| -> Option<f64> {
        let line = s.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024.0)
    };
    let total = field("MemTotal:").ok_or("/proc/meminfo: no MemTotal")?;
    let avail = field("MemAvailable:").ok_or("/proc/meminfo: no MemAvailable")?;
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
pub fn sample(fields: &[SystemField], disk: &Path) -> Result<Vec<f64>, String> {
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
        let (t, _, a) = disk_usage(disk).map_err(|e| format!("{}: {e}", disk.display()))?;
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
pub fn job(group: &str, fields: &[SystemField], disk: PathBuf) -> Result<DaqJob, DaqError> {
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
