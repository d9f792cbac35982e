//! The run map cache `karabo_data_map.json`, field-compatible with EXtra-data's
//! `RunFilesMap`: one JSON object per file (sorted by file name, indent 2) with
//! `filename`, `mtime` (float st_mtime), `size`, `train_ids`, `control_sources`,
//! `instrument_sources`, `legacy_sources`, `suspect_train_indices`. An entry is
//! trusted only if the file's size and mtime match. Written atomically (temp file
//! in the same directory + rename); permission errors are ignored.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::file_access::{stat_mtime_size, CachedInfo, FileAccess};

mod scan;

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
    /// Entries by file name: after [`RunFilesMap::load`] only those matching their
    /// files; after [`RunFilesMap::read`] all, each checked when its file is opened.
    pub files_data: BTreeMap<String, MapEntry>,
    /// Names whose entries [`RunFilesMap::take`] handed to an opening file, with the
    /// size and mtime they recorded (the opened file is the entry from then on).
    taken: HashMap<String, (f64, u64)>,
}

/// Whether a map entry's mtime and size describe a file with this stat.
pub(crate) fn stat_matches(entry_mtime: f64, entry_size: u64, mtime: f64, size: u64) -> bool {
    // serde_json's float parser may be 1 ULP off the correctly rounded value Python
    // writes and reads; accept a few ULPs (the stat value is kept, so a rewrite
    // stays valid for EXtra-data).
    let tol = mtime.abs() * 4.0 * f64::EPSILON;
    (mtime - entry_mtime).abs() <= tol && size == entry_size
}

/// The entries of a map file's text. The scanner of the map's plain layout first,
/// then a whole typed parse (no intermediate
/// JSON tree); when it fails, entry by entry, so that one bad entry does not drop
/// the rest.
fn parse_entries(text: &[u8]) -> Vec<MapEntry> {
    if let Some(entries) = scan::entries(text) {
        return entries;
    }
    if let Ok(entries) = serde_json::from_slice::<Vec<MapEntry>>(text) {
        return entries;
    }
    match serde_json::from_slice::<Vec<serde_json::Value>>(text) {
        Ok(items) => items
            .into_iter()
            .filter_map(|it| serde_json::from_value::<MapEntry>(it).ok())
            .collect(),
        Err(_) => Vec::new(),
    }
}

impl RunFilesMap {
    /// Read `<dir>/karabo_data_map.json` without checking entries against the files:
    /// opening checks each file's entry with the stat it makes anyway (one stat per
    /// file, not two). Entries with a `/` in their name are dropped.
    pub fn read(dir: &Path) -> RunFilesMap {
        let directory = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let files_data = match std::fs::read(directory.join(MAP_FILE)) {
            Ok(text) => parse_entries(&text)
                .into_iter()
                .filter(|e| !e.filename.contains('/'))
                .map(|e| (e.filename.clone(), e))
                .collect(),
            Err(_) => BTreeMap::new(),
        };
        RunFilesMap {
            directory,
            files_data,
            taken: HashMap::new(),
        }
    }

    /// Load `<dir>/karabo_data_map.json`, keeping only entries whose size and
    /// mtime match the files (stale or incomplete entries are dropped silently).
    pub fn load(dir: &Path) -> RunFilesMap {
        let mut map = Self::read(dir);
        map.retain_matching();
        map
    }

    /// Drop entries whose file is missing or has another size or mtime; keep the
    /// exact stat mtime in the others.
    fn retain_matching(&mut self) {
        let dir = &self.directory;
        self.files_data
            .retain(|name, e| match stat_mtime_size(&dir.join(name)) {
                Ok((mtime, size)) if stat_matches(e.mtime, e.size, mtime, size) => {
                    e.mtime = mtime;
                    true
                }
                _ => false,
            });
    }

    /// Hand the entry of file `name` (of this directory) to the file being opened,
    /// as the metadata it is opened with when its size and mtime match.
    pub(crate) fn take(&mut self, name: &str) -> Option<CachedInfo> {
        let e = self.files_data.remove(name)?;
        self.taken.insert(e.filename.clone(), (e.mtime, e.size));
        let mut flag = vec![true; e.train_ids.len()];
        for &i in &e.suspect_train_indices {
            if let Some(f) = flag.get_mut(i) {
                *f = false;
            }
        }
        Some(CachedInfo {
            mtime: e.mtime,
            size: e.size,
            train_ids: e.train_ids,
            control_sources: e.control_sources.into_iter().collect(),
            instrument_sources: e.instrument_sources.into_iter().collect(),
            legacy_sources: e.legacy_sources,
            flag,
        })
    }

    /// Write the map if an opened file of this directory had no entry, or one that
    /// does not match it (EXtra-data's `RunFilesMap.save`). Returns whether the map
    /// was written.
    pub fn save(&mut self, files: &[Arc<FileAccess>]) -> bool {
        let ours: Vec<&Arc<FileAccess>> = files
            .iter()
            .filter(|f| f.path.parent() == Some(self.directory.as_path()))
            .collect();
        let need = ours.iter().any(|f| {
            let name = f.filename();
            let recorded = match self.taken.get(&name) {
                Some(&(mtime, size)) => Some((mtime, size)),
                None => self.files_data.get(&name).map(|e| (e.mtime, e.size)),
            };
            !recorded.is_some_and(|(mtime, size)| stat_matches(mtime, size, f.mtime, f.size))
        });
        if !need {
            return false;
        }
        // Entries of files not opened now are kept only while they match their files.
        for f in &ours {
            self.files_data.remove(&f.filename());
        }
        self.retain_matching();
        for f in ours {
            let name = f.filename();
            self.files_data.insert(name.clone(), entry_of(name, f));
        }
        self.write().is_ok()
    }

    fn write(&self) -> std::io::Result<()> {
        let entries: Vec<&MapEntry> = self.files_data.values().collect();
        let text = to_python_json(&entries);
        let target = self.directory.join(MAP_FILE);
        let (tmp, mut f) = tempfile_in(&self.directory)?;
        // A write that fails (a full disk, a file size limit) leaves no partial file behind.
        let written = f.write_all(&text).and_then(|()| f.flush()).and_then(|()| {
            drop(f);
            std::fs::rename(&tmp, &target)
        });
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}

/// The map entry describing an opened file.
fn entry_of(filename: String, f: &FileAccess) -> MapEntry {
    MapEntry {
        filename,
        mtime: f.mtime,
        size: f.size,
        train_ids: f.train_ids.clone(),
        control_sources: f.control_sources.iter().cloned().collect(),
        instrument_sources: f.instrument_sources.iter().cloned().collect(),
        legacy_sources: f.legacy_sources.clone(),
        suspect_train_indices: f.suspect_train_indices(),
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
/// field order, written straight into one buffer (a 340-file run's map is about
/// 1.2 MB, written by every listing that opens the run without one).
fn to_python_json(entries: &[&MapEntry]) -> Vec<u8> {
    let ints: usize = entries
        .iter()
        .map(|e| e.train_ids.len() + e.suspect_train_indices.len())
        .sum();
    let mut out = Vec::with_capacity(512 * entries.len() + INT_LINE_MAX * ints + 3);
    out.push(b'[');
    for (i, e) in entries.iter().enumerate() {
        out.extend_from_slice(if i == 0 { b"\n  {\n" } else { b",\n  {\n" });
        field(&mut out, "filename", false);
        push_json_string(&mut out, &e.filename);
        field(&mut out, "mtime", true);
        out.extend_from_slice(python_float_repr(e.mtime).as_bytes());
        field(&mut out, "size", true);
        out.extend_from_slice(itoa::Buffer::new().format(e.size).as_bytes());
        field(&mut out, "train_ids", true);
        push_int_list(&mut out, e.train_ids.iter().copied());
        field(&mut out, "control_sources", true);
        push_string_list(&mut out, &e.control_sources);
        field(&mut out, "instrument_sources", true);
        push_string_list(&mut out, &e.instrument_sources);
        field(&mut out, "legacy_sources", true);
        if e.legacy_sources.is_empty() {
            out.extend_from_slice(b"{}");
        } else {
            out.extend_from_slice(b"{\n");
            for (j, (k, v)) in e.legacy_sources.iter().enumerate() {
                if j > 0 {
                    out.extend_from_slice(b",\n");
                }
                out.extend_from_slice(b"      ");
                push_json_string(&mut out, k);
                out.extend_from_slice(b": ");
                push_json_string(&mut out, v);
            }
            out.extend_from_slice(b"\n    }");
        }
        field(&mut out, "suspect_train_indices", true);
        push_int_list(&mut out, e.suspect_train_indices.iter().map(|&t| t as u64));
        out.extend_from_slice(b"\n  }");
    }
    out.extend_from_slice(if entries.is_empty() { b"]" } else { b"\n]" });
    out
}

/// The start of an entry's field: `"name": ` at the entry's indent, after a comma
/// unless it is the first.
fn field(out: &mut Vec<u8>, name: &str, after_another: bool) {
    if after_another {
        out.extend_from_slice(b",\n");
    }
    out.extend_from_slice(b"    ");
    push_json_string(out, name);
    out.extend_from_slice(b": ");
}

/// Separator and indent before an item of a list inside an entry.
const ITEM_PREFIX: &[u8; 8] = b",\n      ";
/// The longest line of an integer list: the prefix and a u64's 20 digits.
const INT_LINE_MAX: usize = ITEM_PREFIX.len() + 20;

/// A list of integers inside an entry: `[]`, or one per line at indent 6 (the
/// train ID lists are most of a map).
fn push_int_list(out: &mut Vec<u8>, items: impl ExactSizeIterator<Item = u64>) {
    if items.len() == 0 {
        out.extend_from_slice(b"[]");
        return;
    }
    out.push(b'[');
    let mut digits = itoa::Buffer::new();
    for (i, v) in items.enumerate() {
        // The first item has no comma before it.
        out.extend_from_slice(&ITEM_PREFIX[usize::from(i == 0)..]);
        out.extend_from_slice(digits.format(v).as_bytes());
    }
    out.extend_from_slice(b"\n    ]");
}

/// A list of strings inside an entry: `[]`, or one per line at indent 6.
fn push_string_list(out: &mut Vec<u8>, items: &[String]) {
    if items.is_empty() {
        out.extend_from_slice(b"[]");
        return;
    }
    out.push(b'[');
    for (i, s) in items.iter().enumerate() {
        out.extend_from_slice(&ITEM_PREFIX[usize::from(i == 0)..]);
        push_json_string(out, s);
    }
    out.extend_from_slice(b"\n    ]");
}

/// A JSON string literal, escaped as serde_json escapes it.
fn push_json_string(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail, and a str always serializes.
    let _ = serde_json::to_writer(&mut *out, s);
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
    use super::{python_float_repr, to_python_json, MapEntry};

    fn entry(i: usize) -> MapEntry {
        MapEntry {
            filename: format!("RAW-R0001-DA{:02}-S{i:05}.h5", i % 3),
            mtime: 1763749123.25 + i as f64,
            size: 1000 + i as u64,
            train_ids: (0..(i % 4) as u64).map(|t| 10000 + t).collect(),
            control_sources: if i % 2 == 0 {
                vec!["A/B/C".into()]
            } else {
                Vec::new()
            },
            instrument_sources: vec!["A/B/C:output".into(), "D/\"E\"".into()],
            legacy_sources: if i == 1 {
                [("OLD/X".to_string(), "NEW/X".to_string())].into()
            } else {
                Default::default()
            },
            suspect_train_indices: if i % 5 == 0 { vec![0, 2] } else { Vec::new() },
        }
    }

    // The layout of Python's json.dump(entries, indent=2), as EXtra-data writes it.
    #[test]
    fn map_text_is_pythons_indent_2_layout() {
        let e = [entry(1), entry(2)];
        let text = String::from_utf8(to_python_json(&e.iter().collect::<Vec<_>>())).expect("utf-8");
        let expected = r#"[
  {
    "filename": "RAW-R0001-DA01-S00001.h5",
    "mtime": 1763749124.25,
    "size": 1001,
    "train_ids": [
      10000
    ],
    "control_sources": [],
    "instrument_sources": [
      "A/B/C:output",
      "D/\"E\""
    ],
    "legacy_sources": {
      "OLD/X": "NEW/X"
    },
    "suspect_train_indices": []
  },
  {
    "filename": "RAW-R0001-DA02-S00002.h5",
    "mtime": 1763749125.25,
    "size": 1002,
    "train_ids": [
      10000,
      10001
    ],
    "control_sources": [
      "A/B/C"
    ],
    "instrument_sources": [
      "A/B/C:output",
      "D/\"E\""
    ],
    "legacy_sources": {},
    "suspect_train_indices": []
  }
]"#;
        assert_eq!(text, expected);
        assert_eq!(to_python_json(&[]), b"[]");
    }

    // Integer lists: the first item without a comma, the widest u64, zero; and a
    // large map parses back to what was rendered.
    #[test]
    fn integer_lists_and_large_maps_parse_back() {
        let mut e = entry(2);
        e.train_ids = vec![0, u64::MAX, 7];
        e.suspect_train_indices = vec![1];
        let text = String::from_utf8(to_python_json(&[&e])).expect("utf-8");
        assert!(text
            .contains("\"train_ids\": [\n      0,\n      18446744073709551615,\n      7\n    ],"));
        assert!(text.contains("\"suspect_train_indices\": [\n      1\n    ]\n  }\n]"));
        let many: Vec<MapEntry> = (0..301).map(entry).collect();
        let refs: Vec<&MapEntry> = many.iter().collect();
        let parsed: serde_json::Value =
            serde_json::from_slice(&to_python_json(&refs)).expect("valid JSON");
        let arr = parsed.as_array().expect("a list");
        assert_eq!(arr.len(), 301);
        for (p, e) in arr.iter().zip(&many) {
            assert_eq!(p["filename"], e.filename.as_str());
            assert_eq!(p["size"], e.size);
            assert_eq!(p["train_ids"], serde_json::json!(e.train_ids));
        }
    }

    #[test]
    fn float_repr_like_python() {
        assert_eq!(python_float_repr(1763749123.456789), "1763749123.456789");
        assert_eq!(python_float_repr(1763749123.0), "1763749123.0");
        assert_eq!(python_float_repr(0.5), "0.5");
        assert_eq!(python_float_repr(0.0001), "0.0001");
        assert_eq!(python_float_repr(1e-5), "1e-05");
    }
}

#[cfg(test)]
mod open_tests {
    use super::{RunFilesMap, MAP_FILE};
    use crate::{DataCollection, OpenOptions};
    use fixtures::euxfel::{make_run, RunSpec};
    use serde_json::Value;

    fn entries(dir: &std::path::Path) -> Vec<Value> {
        let text = std::fs::read_to_string(dir.join(MAP_FILE)).expect("map");
        match serde_json::from_str(&text).expect("json") {
            Value::Array(a) => a,
            other => panic!("not a list: {other}"),
        }
    }

    fn write_entries(dir: &std::path::Path, e: &[Value]) {
        let text = serde_json::to_string(e).expect("json");
        std::fs::write(dir.join(MAP_FILE), text).expect("write map");
    }

    // An entry is used only while its file's size and mtime match; stale, broken and
    // orphaned entries are replaced or dropped when the map is rewritten.
    #[test]
    fn entries_are_trusted_only_when_the_file_matches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = RunSpec {
            trains_per_sequence: 5,
            sequences: 2,
            modules: 1,
            frames: 1,
            frame_height: 2,
            frame_width: 2,
            ..RunSpec::default()
        };
        make_run(dir.path(), &spec).expect("fixture");
        let opts = OpenOptions::default();
        let truth = DataCollection::open_run(dir.path(), &opts).expect("open");
        let written = entries(dir.path());
        assert_eq!(written.len(), truth.files.len());
        let first = truth.train_ids[0];

        // A matching entry is believed: its (made-up) train IDs are what opens.
        let mut e = written.clone();
        e[0]["train_ids"] = serde_json::json!([1, 2, 3, 4, 5]);
        write_entries(dir.path(), &e);
        let dc = DataCollection::open_run(dir.path(), &opts).expect("open");
        assert_eq!(dc.train_ids[0], 1);

        // A size that differs: the file is read, and the entry rewritten from it.
        e[0]["size"] = Value::from(e[0]["size"].as_u64().expect("size") + 1);
        // An unparsable entry and one for a file that is gone.
        e[1]["train_ids"] = Value::from("x");
        let mut orphan = written[0].clone();
        orphan["filename"] = Value::from("RAW-R0450-GONE-S00000.h5");
        e.push(orphan);
        write_entries(dir.path(), &e);
        let dc = DataCollection::open_run(dir.path(), &opts).expect("open");
        assert_eq!(dc.train_ids, truth.train_ids);
        assert_eq!(dc.train_ids[0], first);
        let mut rewritten = entries(dir.path());
        let mut expected = written.clone();
        let key = |v: &Value| v["filename"].as_str().unwrap_or_default().to_string();
        rewritten.sort_by_key(key);
        expected.sort_by_key(key);
        assert_eq!(rewritten, expected);

        // validate's view: only matching entries.
        e[0] = written[0].clone();
        write_entries(dir.path(), &e);
        let loaded = RunFilesMap::load(dir.path());
        assert_eq!(loaded.files_data.len(), written.len() - 1);
    }
}
