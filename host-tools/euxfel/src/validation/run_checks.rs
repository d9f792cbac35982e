//! The checks on a whole run, from the per-file summaries only (so they run the
//! same on a merge of shards): EXtra-data's `run_json_cache`, and
//! `source_conflicts`, `run_map_entries`, `sequence_gaps`, `format_versions`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::{file_name, FileSummary, Problem, RunDir};
use crate::filename::FilenameInfo;
use crate::runmap::{MapEntry, RunFilesMap, MAP_FILE};

/// Entries of the run map that are valid (size and mtime match) for `f`.
fn map_entry<'a>(map: &'a RunFilesMap, f: &FileSummary) -> Option<&'a MapEntry> {
    if f.path.parent() != Some(map.directory.as_path()) {
        return None;
    }
    map.files_data.get(&file_name(&f.path))
}

/// The run map's file as EXtra-data names it: in the directory as given.
fn cache_file(dir: &RunDir<'_>) -> PathBuf {
    dir.given.join(MAP_FILE)
}

pub(super) fn run_json_cache(
    dir: &RunDir<'_>,
    files: &[&FileSummary],
    problems: &mut Vec<Problem>,
) {
    let map = RunFilesMap::load(dir.absolute);
    for f in files {
        let Some(e) = map_entry(&map, f) else {
            continue;
        };
        let ctrl: BTreeSet<String> = e.control_sources.iter().cloned().collect();
        let inst: BTreeSet<String> = e.instrument_sources.iter().cloned().collect();
        if ctrl != f.control_sources || inst != f.instrument_sources || e.train_ids != f.train_ids {
            problems.push(
                Problem::new("", "Incorrect data map cache entry")
                    .with("cache_file", cache_file(dir).display())
                    .with("data_file", f.path.display()),
            );
        }
    }
}

/// A run map that is there but cannot be read as a JSON list (cut short, a
/// directory): the reader ignores it, as EXtra-data does, so it is never used.
fn unreadable_map(dir: &RunDir<'_>) -> Option<String> {
    let text = match std::fs::read(dir.absolute.join(MAP_FILE)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(e.to_string()),
    };
    serde_json::from_slice::<Vec<serde_json::Value>>(&text)
        .err()
        .map(|e| e.to_string())
}

/// What run_json_cache does not compare: legacy names and suspect trains; and a
/// run map that cannot be read.
pub(super) fn run_map_entries(
    dir: &RunDir<'_>,
    files: &[&FileSummary],
    problems: &mut Vec<Problem>,
) {
    if let Some(error) = unreadable_map(dir) {
        problems.push(
            Problem::new("", "Data map cache file cannot be read")
                .with("cache_file", cache_file(dir).display())
                .with("error", error),
        );
        return;
    }
    let map = RunFilesMap::load(dir.absolute);
    for f in files {
        let Some(e) = map_entry(&map, f) else {
            continue;
        };
        let mut differ = Vec::new();
        if e.legacy_sources != f.legacy_sources {
            differ.push("legacy_sources");
        }
        if e.suspect_train_indices != f.suspect_train_indices {
            differ.push("suspect_train_indices");
        }
        if !differ.is_empty() {
            problems.push(
                Problem::new(
                    "",
                    format!("Data map cache entry disagrees on {}", differ.join(", ")),
                )
                .with("cache_file", cache_file(dir).display())
                .with("data_file", f.path.display()),
            );
        }
    }
}

/// The same train of the same source in two files: EXtra-data refuses to open
/// the run ("sources have conflicting data").
pub(super) fn source_conflicts(
    _dir: &RunDir<'_>,
    files: &[&FileSummary],
    problems: &mut Vec<Problem>,
) {
    let mut by_source: BTreeMap<&str, Vec<&FileSummary>> = BTreeMap::new();
    for f in files {
        for s in f.control_sources.iter().chain(&f.instrument_sources) {
            by_source.entry(s).or_default().push(f);
        }
    }
    for (source, fs) in by_source {
        if fs.len() < 2 {
            continue;
        }
        let mut owner: BTreeMap<u64, &FileSummary> = BTreeMap::new();
        let mut clashes: BTreeMap<u64, (String, String)> = BTreeMap::new();
        for f in &fs {
            for &t in f.train_ids.iter().collect::<BTreeSet<_>>() {
                match owner.get(&t) {
                    Some(o) => {
                        clashes
                            .entry(t)
                            .or_insert_with(|| (file_name(&o.path), file_name(&f.path)));
                    }
                    None => {
                        owner.insert(t, f);
                    }
                }
            }
        }
        if let Some((&t, (a, b))) = clashes.iter().next() {
            problems.push(
                Problem::new(
                    "",
                    format!(
                        "Same train IDs of one source in several files ({} trains), e.g. train {t} in {a} and {b}",
                        clashes.len()
                    ),
                )
                .with("source", source),
            );
        }
    }
}

/// Sequence files missing between the first and the last of one aggregator.
pub(super) fn sequence_gaps(dir: &RunDir<'_>, files: &[&FileSummary], problems: &mut Vec<Problem>) {
    let mut seqs: BTreeMap<(String, u32, String), BTreeSet<u32>> = BTreeMap::new();
    for f in files {
        if let Some(info) = FilenameInfo::parse(&file_name(&f.path)) {
            if info.aggregator == "OVERVIEW" {
                continue;
            }
            seqs.entry((info.category, info.run, info.aggregator))
                .or_default()
                .insert(info.sequence);
        }
    }
    for ((category, run, agg), present) in seqs {
        let Some(&last) = present.last() else {
            continue;
        };
        let missing: Vec<String> = (0..last)
            .filter(|s| !present.contains(s))
            .map(|s| format!("S{s:05}"))
            .collect();
        if !missing.is_empty() {
            problems.push(
                Problem::new(
                    "",
                    format!(
                        "Missing sequence files ({}) of {category}-R{run:04}-{agg}, e.g. {}",
                        missing.len(),
                        missing[0]
                    ),
                )
                .with("directory", dir.given.display()),
            );
        }
    }
}

/// Files of one run written with different format versions.
pub(super) fn format_versions(
    dir: &RunDir<'_>,
    files: &[&FileSummary],
    problems: &mut Vec<Problem>,
) {
    let mut by_version: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for f in files {
        by_version
            .entry(&f.format_version)
            .or_default()
            .push(file_name(&f.path));
    }
    if by_version.len() > 1 {
        let parts: Vec<String> = by_version
            .iter()
            .map(|(v, fs)| format!("{v} ({} files, e.g. {})", fs.len(), fs[0]))
            .collect();
        problems.push(
            Problem::new(
                "",
                format!("Files have different format versions: {}", parts.join(", ")),
            )
            .with("directory", dir.given.display()),
        );
    }
}
