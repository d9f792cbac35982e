//! The run map cache `karabo_data_map.json`, field-compatible with EXtra-data's
//! `RunFilesMap`: one JSON object per file (sorted by file name, indent 2) with
//! `filename`, `mtime` (float st_mtime), `size`, `train_ids`, `control_sources`,
//! `instrument_sources`, `legacy_sources`, `suspect_train_indices`. An entry is
//! trusted only if the file's size and mtime match. Written atomically (temp file
//! in the same directory + rename); permission errors are ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::file_access::{stat_mtime_size, CachedInfo, FileAccess};

/// File name of the cache in the run directory.
pub const MAP_FILE: &str = "karabo_data_map.json";

/// One file's entry, as EXtra-data writes it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MapEntry {
    pub filename: String,
    pub mtime: f64,
    pub size: u64,
    pub train_ids: Vec<u64>,
    pub control_sources: Vec<String>,
    pub instrument_sources: Vec<String>,
    pub legacy_sources: BTreeMap<String, String>,
    pub suspect_train_indices: Vec<usize>,
}

/// The loaded map of one run directory.
#[derive(Debug)]
pub struct RunFilesMap {
    pub directory: PathBuf,
    /// Valid entries by file name.
    pub files_data: BTreeMap<String, MapEntry>,
}

impl RunFilesMap {
    /// Load `<dir>/karabo_data_map.json`, keeping only entries whose size and
    /// mtime match the files (stale or incomplete entries are dropped silently).
    pub fn load(dir: &Path) -> RunFilesMap {
        let directory = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let mut files_data = BTreeMap::new();
        if let Ok(text) = std::fs::read_to_string(directory.join(MAP_FILE)) {
            // Entries are parsed one by one so that one bad entry does not drop the rest.
            if let Ok(serde_json::Value::Array(items)) =
                serde_json::from_str::<serde_json::Value>(&text)
            {
                for it in items {
                    let Ok(e) = serde_json::from_value::<MapEntry>(it) else {
                        continue;
                    };
                    if e.filename.contains('/') {
                        continue;
                    }
                    if let Ok((mtime, size)) = stat_mtime_size(&directory.join(&e.filename)) {
                        // serde_json's float parser may be 1 ULP off the correctly rounded
                        // value Python writes and reads; accept a few ULPs and keep the
                        // exact stat value, so a rewrite stays valid for EXtra-data.
                        let tol = mtime.abs() * 4.0 * f64::EPSILON;
                        if (mtime - e.mtime).abs() <= tol && size == e.size {
                            let mut e = e;
                            e.mtime = mtime;
                            files_data.insert(e.filename.clone(), e);
                        }
                    }
                }
            }
        }
        RunFilesMap {
            directory,
            files_data,
        }
    }

    /// Cached info for a file of this directory, if a valid entry exists.
    pub(crate) fn get(&self, path: &Path) -> Option<CachedInfo> {
        let abs = std::path::absolute(path).ok()?;
        if abs.parent()? != self.directory {
            return None;
        }
        let name = abs.file_name()?.to_string_lossy().into_owned();
        let e = self.files_data.get(&name)?;
        let mut flag = vec![true; e.train_ids.len()];
        for &i in &e.suspect_train_indices {
            if let Some(f) = flag.get_mut(i) {
                *f = false;
            }
        }
        Some(CachedInfo {
            train_ids: e.train_ids.clone(),
            control_sources: e.control_sources.iter().cloned().collect::<BTreeSet<_>>(),
            instrument_sources: e.instrument_sources.iter().cloned().collect(),
            legacy_sources: e.legacy_sources.clone(),
            flag,
        })
    }

    /// Add entries for files that lacked one and write the map if anything changed.
    /// Returns whether the map was written.
    pub fn save(&mut self, files: &[Arc<FileAccess>]) -> bool {
        let mut need = false;
        for f in files {
            if f.path.parent() != Some(self.directory.as_path()) {
                continue;
            }
            let name = f.filename();
            if self.files_data.contains_key(&name) {
                continue;
            }
            need = true;
            self.files_data.insert(
                name.clone(),
                MapEntry {
                    filename: name,
                    mtime: f.mtime,
                    size: f.size,
                    train_ids: f.train_ids.clone(),
                    control_sources: f.control_sources.iter().cloned().collect(),
                    instrument_sources: f.instrument_sources.iter().cloned().collect(),
                    legacy_sources: f.legacy_sources.clone(),
                    suspect_train_indices: f
                        .validity_flag
                        .iter()
                        .enumerate()
                        .filter(|(_, &v)| !v)
                        .map(|(i, _)| i)
                        .collect(),
                },
            );
        }
        if !need {
            return false;
        }
        self.write().is_ok()
    }

    fn write(&self) -> std::io::Result<()> {
        let entries: Vec<&MapEntry> = self.files_data.values().collect();
        let text = to_python_json(&entries)?;
        let target = self.directory.join(MAP_FILE);
        let mut tmp = tempfile_in(&self.directory)?;
        tmp.1.write_all(text.as_bytes())?;
        tmp.1.flush()?;
        drop(tmp.1);
        match std::fs::rename(&tmp.0, &target) {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp.0);
                Err(e)
            }
        }
    }
}

/// Create a new unique file next to the target (mode 0600, like mkstemp).
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::os::unix::fs::OpenOptionsExt;
    let pid = std::process::id();
    for i in 0..100u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p = dir.join(format!("{MAP_FILE}.{pid}.{nanos}.{i}.tmp"));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
        {
            Ok(f) => return Ok((p, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("could not create a temporary file"))
}

/// JSON in the layout of Python's `json.dump(obj, indent=2)` with EXtra-data's
/// field order.
fn to_python_json(entries: &[&MapEntry]) -> std::io::Result<String> {
    use serde_json::Value;
    let mut out = String::from("[");
    for (i, e) in entries.iter().enumerate() {
        out.push_str(if i == 0 { "\n  {\n" } else { ",\n  {\n" });
        let fields: Vec<(&str, Value)> = vec![
            ("filename", Value::String(e.filename.clone())),
            ("mtime", Value::Null), // written with Python's float repr below
            ("size", Value::from(e.size)),
            ("train_ids", Value::from(e.train_ids.clone())),
            ("control_sources", Value::from(e.control_sources.clone())),
            (
                "instrument_sources",
                Value::from(e.instrument_sources.clone()),
            ),
            (
                "legacy_sources",
                serde_json::to_value(&e.legacy_sources).map_err(std::io::Error::other)?,
            ),
            (
                "suspect_train_indices",
                Value::from(e.suspect_train_indices.clone()),
            ),
        ];
        let n = fields.len();
        for (j, (k, v)) in fields.into_iter().enumerate() {
            out.push_str("    ");
            out.push_str(&Value::String(k.to_string()).to_string());
            out.push_str(": ");
            if k == "mtime" {
                out.push_str(&python_float_repr(e.mtime));
            } else {
                write_value(&v, 4, &mut out);
            }
            if j + 1 < n {
                out.push(',');
            }
            out.push('\n');
        }
        out.push_str("  }");
    }
    out.push_str(if entries.is_empty() { "]" } else { "\n]" });
    Ok(out)
}

fn write_value(v: &serde_json::Value, ind: usize, out: &mut String) {
    use serde_json::Value;
    let pad = |n: usize| " ".repeat(n);
    match v {
        Value::Array(a) if a.is_empty() => out.push_str("[]"),
        Value::Object(o) if o.is_empty() => out.push_str("{}"),
        Value::Array(a) => {
            out.push_str("[\n");
            for (i, x) in a.iter().enumerate() {
                out.push_str(&pad(ind + 2));
                write_value(x, ind + 2, out);
                if i + 1 < a.len() {
                    out.push(',');
                }
                out.push('\n');
            }
            out.push_str(&pad(ind));
            out.push(']');
        }
        Value::Object(o) => {
            out.push_str("{\n");
            let n = o.len();
            for (i, (k, x)) in o.iter().enumerate() {
                out.push_str(&pad(ind + 2));
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push_str(": ");
                write_value(x, ind + 2, out);
                if i + 1 < n {
                    out.push(',');
                }
                out.push('\n');
            }
            out.push_str(&pad(ind));
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Python's `repr(float)` for finite values: shortest round-trip digits,
/// exponent form when the exponent is < -4 or >= 16.
fn python_float_repr(f: f64) -> String {
    if f == f.trunc() && f.abs() < 1e16 {
        return format!("{f:.1}");
    }
    let s = format!("{f:e}"); // shortest digits, e.g. 1.7637e9
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        // Positional with the same significant digits.
        let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
        let neg = mant.starts_with('-');
        let point = exp + 1; // digits before the decimal point
        let mut r = String::new();
        if neg {
            r.push('-');
        }
        if point <= 0 {
            r.push_str("0.");
            r.push_str(&"0".repeat((-point) as usize));
            r.push_str(&digits);
        } else if point as usize >= digits.len() {
            r.push_str(&digits);
            r.push_str(&"0".repeat(point as usize - digits.len()));
            r.push_str(".0");
        } else {
            r.push_str(&digits[..point as usize]);
            r.push('.');
            r.push_str(&digits[point as usize..]);
        }
        r
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::python_float_repr;
    #[test]
    fn float_repr_like_python() {
        assert_eq!(python_float_repr(1763749123.456789), "1763749123.456789");
        assert_eq!(python_float_repr(1763749123.0), "1763749123.0");
        assert_eq!(python_float_repr(0.5), "0.5");
        assert_eq!(python_float_repr(0.0001), "0.0001");
        assert_eq!(python_float_repr(1e-5), "1e-05");
    }
}
