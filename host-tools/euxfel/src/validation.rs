//! Validation of EuXFEL files and run directories: EXtra-data's checks
//! (`extra_data.validation`, same names, messages and extra fields) and the
//! cross-file checks it lacks.
//!
//! Each file is checked on its own ([`validate_file`]), in parallel over the files
//! of a run ([`validate_run`]); the run checks then work on the per-file
//! [`FileSummary`]s only, never on the files themselves.
//!
//! Where EXtra-data's validator crashes or misreports, the real problem is
//! reported instead: a control index whose `count` length differs from `first`
//! (EXtra-data raises a numpy broadcast error) gives "Index first & count have
//! different number of entries"; index datasets padded with zero entries past the
//! last train (EXtra-data's own legacy AGIPD example) are not a problem; a read
//! that fails inside a check gives a "Could not read dataset" problem.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use serde::{Deserialize, Serialize};

use super::display::shape_repr;
use super::error::Error;
use super::file_access::FileAccess;
use super::filename::FilenameInfo;
use super::meta::{MetaError, MetaReader, MetaResult};
use super::runmap::{RunFilesMap, MAP_FILE};

/// EXtra-data's checks on each file, in its order.
const XD_FILE_CHECKS: [&str; 5] = [
    "train_ids_nonzero",
    "train_ids_order",
    "index_control",
    "index_instrument",
    "control_timestamps_order",
];
/// EXtra-data's checks on a run directory.
const XD_RUN_CHECKS: [&str; 1] = ["run_json_cache"];
/// Checks EXtra-data lacks: on each file, then on the run.
const EXTRA_FILE_CHECKS: [&str; 1] = ["train_ids_unique"];
const EXTRA_RUN_CHECKS: [&str; 4] = [
    "source_conflicts",
    "run_map_entries",
    "sequence_gaps",
    "format_versions",
];

/// Every check name, in the order `--list` prints them (EXtra-data's first).
pub fn check_names() -> Vec<&'static str> {
    XD_FILE_CHECKS
        .iter()
        .chain(&XD_RUN_CHECKS)
        .chain(&EXTRA_FILE_CHECKS)
        .chain(&EXTRA_RUN_CHECKS)
        .copied()
        .collect()
}

/// Which checks to run.
#[derive(Debug, Clone, Default)]
pub struct Checks {
    skip: BTreeSet<String>,
}

impl Checks {
    /// All checks except `skip`; unknown names are returned as the error (sorted).
    pub fn skipping(skip: &[String]) -> std::result::Result<Checks, Vec<String>> {
        let known = check_names();
        let unknown: BTreeSet<String> = skip
            .iter()
            .filter(|s| !known.contains(&s.as_str()))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(unknown.into_iter().collect());
        }
        Ok(Checks {
            skip: skip.iter().cloned().collect(),
        })
    }

    fn runs(&self, name: &str) -> bool {
        !self.skip.contains(name)
    }
}

/// One problem: EXtra-data's message and extra fields, and the check that found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Name of the check (`open` for opening a file, `run` for a run without usable files).
    pub check: String,
    pub msg: String,
    /// Extra fields (`file`, `dataset`, ...), printed sorted by name.
    #[serde(flatten)]
    pub fields: BTreeMap<String, String>,
}

impl Problem {
    fn new(check: &str, msg: impl Into<String>) -> Problem {
        Problem {
            check: check.into(),
            msg: msg.into(),
            fields: BTreeMap::new(),
        }
    }

    fn with(mut self, key: &str, value: impl std::fmt::Display) -> Problem {
        self.fields.insert(key.into(), value.to_string());
        self
    }
}

/// Problems as EXtra-data prints them (`str(ValidationError)`): per problem an empty
/// line, the message, then `  key: value` lines sorted by key.
pub fn problems_text(problems: &[Problem]) -> String {
    let mut lines = Vec::new();
    for p in problems {
        lines.push(String::new());
        lines.push(p.msg.clone());
        for (k, v) in &p.fields {
            lines.push(format!("  {k}: {v}"));
        }
    }
    lines.join("\n")
}

/// What the run checks need of one opened file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileSummary {
    /// Absolute path.
    pub path: PathBuf,
    pub format_version: String,
    pub train_ids: Vec<u64>,
    pub suspect_train_indices: Vec<usize>,
    pub control_sources: BTreeSet<String>,
    pub instrument_sources: BTreeSet<String>,
    pub legacy_sources: BTreeMap<String, String>,
}

/// The result of checking one file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileResult {
    /// The path as given (joined to the run directory as given).
    pub path: PathBuf,
    pub problems: Vec<Problem>,
    /// `None` if the file could not be opened.
    pub summary: Option<FileSummary>,
}

/// Open a file as EXtra-data's validator does: a file that cannot be read at all is
/// "Could not access file" (with the OS error), one that reads but does not open is
/// "Could not open HDF5 file".
fn open_file(path: &Path) -> std::result::Result<Arc<FileAccess>, Problem> {
    FileAccess::open(path).map_err(|e| {
        let access = std::fs::File::open(path).and_then(|mut f| {
            let mut b = [0u8; 16];
            std::io::Read::read(&mut f, &mut b)
        });
        match access {
            Err(os) => Problem::new("open", "Could not access file").with("error", os),
            Ok(_) => Problem::new("open", "Could not open HDF5 file").with("error", e),
        }
        .with("file", path.display())
    })
}

/// Check one file.
pub fn validate_file(path: &Path, checks: &Checks) -> FileResult {
    let fa = match open_file(path) {
        Ok(fa) => fa,
        Err(p) => {
            return FileResult {
                path: path.into(),
                problems: vec![p],
                summary: None,
            }
        }
    };
    let mut problems = Vec::new();
    let file = fa.path.display().to_string();
    type FileCheck = fn(&Arc<FileAccess>, &mut Vec<Problem>);
    let all: [(&str, FileCheck); 6] = [
        ("train_ids_nonzero", train_ids_nonzero),
        ("train_ids_order", train_ids_order),
        ("index_control", index_control),
        ("index_instrument", index_instrument),
        ("control_timestamps_order", control_timestamps_order),
        ("train_ids_unique", train_ids_unique),
    ];
    for (name, check) in all {
        if checks.runs(name) {
            let start = problems.len();
            check(&fa, &mut problems);
            for p in &mut problems[start..] {
                p.check = name.into();
                p.fields.insert("file".into(), file.clone());
            }
        }
    }
    let summary = FileSummary {
        path: fa.path.clone(),
        format_version: fa.format_version().unwrap_or_default(),
        train_ids: fa.train_ids.clone(),
        suspect_train_indices: fa
            .validity_flag
            .iter()
            .enumerate()
            .filter(|(_, &v)| !v)
            .map(|(i, _)| i)
            .collect(),
        control_sources: fa.control_sources.clone(),
        instrument_sources: fa.instrument_sources.clone(),
        legacy_sources: fa.legacy_sources.clone(),
    };
    fa.close();
    FileResult {
        path: path.into(),
        problems,
        summary: Some(summary),
    }
}

/// A read inside a check failed: the problem names the dataset and the error.
fn read_problem(dataset: &str, e: &Error) -> Problem {
    Problem::new("", "Could not read dataset")
        .with("dataset", dataset)
        .with("error", e)
}

/// Run `rule` on the file's metadata readers; a failure becomes a problem.
fn read<T>(
    fa: &Arc<FileAccess>,
    dataset: &str,
    problems: &mut Vec<Problem>,
    rule: impl Fn(&dyn MetaReader) -> MetaResult<T>,
) -> Option<T> {
    match fa.read_meta(rule) {
        Ok(v) => Some(v),
        Err(e) => {
            problems.push(read_problem(dataset, &e));
            None
        }
    }
}

fn all_train_ids(fa: &Arc<FileAccess>, problems: &mut Vec<Problem>) -> Option<Vec<u64>> {
    read(fa, "INDEX/trainId", problems, |r| {
        r.read_ints("INDEX/trainId", None)
    })
}

fn train_ids_nonzero(fa: &Arc<FileAccess>, problems: &mut Vec<Problem>) {
    let Some(tids) = all_train_ids(fa, problems) else {
        return;
    };
    if let Some(first0) = tids.iter().position(|&t| t == 0) {
        if tids[first0..].iter().any(|&t| t != 0) {
            problems.push(
                Problem::new("", "Zeroes in trainId index before last train ID")
                    .with("dataset", "INDEX/trainId"),
            );
        }
    }
}

fn train_ids_order(fa: &Arc<FileAccess>, problems: &mut Vec<Problem>) {
    let Some(tids) = all_train_ids(fa, problems) else {
        return;
    };
    let nonzero: Vec<u64> = tids.into_iter().filter(|&t| t != 0).collect();
    if let Some(pos) = nonzero.windows(2).position(|w| w[1] <= w[0]) {
        problems.push(
            Problem::new(
                "",
                format!(
                    "Train IDs are not strictly increasing, e.g. at {pos} ({} >= {})",
                    nonzero[pos],
                    nonzero[pos + 1]
                ),
            )
            .with("dataset", "INDEX/trainId"),
        );
    }
}

fn train_ids_unique(fa: &Arc<FileAccess>, problems: &mut Vec<Problem>) {
    let Some(tids) = all_train_ids(fa, problems) else {
        return;
    };
    let mut sorted: Vec<u64> = tids.into_iter().filter(|&t| t != 0).collect();
    sorted.sort_unstable();
    let dups: BTreeSet<u64> = sorted
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect();
    if let Some(first) = dups.first() {
        problems.push(
            Problem::new(
                "",
                format!("Duplicate train IDs ({}), e.g. {first}", dups.len()),
            )
            .with("dataset", "INDEX/trainId"),
        );
    }
}

/// An index group's arrays, read whole (EXtra-data's `_get_index` in validation).
struct IndexArrays {
    first: Vec<u64>,
    count: Vec<u64>,
    first_shape: Vec<usize>,
    count_shape: Vec<usize>,
}

/// First and count (or first/last/status) of `INDEX/<base>`, whole. Arrays that
/// are not 1-D are returned empty with their shapes.
fn index_arrays(r: &dyn MetaReader, base: &str) -> MetaResult<IndexArrays> {
    let first_path = format!("{base}/first");
    let first_shape = r.dtype_shape(&first_path)?.1;
    let (count_path, legacy) = match r.dtype_shape(&format!("{base}/count")) {
        Ok(_) => (format!("{base}/count"), false),
        Err(MetaError::NotFound(_)) => (format!("{base}/last"), true),
        Err(e) => return Err(e),
    };
    let mut count_shape = r.dtype_shape(&count_path)?.1;
    let mut arrays = IndexArrays {
        first: Vec::new(),
        count: Vec::new(),
        first_shape,
        count_shape: count_shape.clone(),
    };
    if arrays.first_shape.len() != 1 || count_shape.len() != 1 {
        return Ok(arrays);
    }
    arrays.first = r.read_ints(&first_path, None)?;
    arrays.count = if legacy {
        let last = r.read_ints(&count_path, None)?;
        let status = r.read_ints(&format!("{base}/status"), None)?;
        if last.len() != status.len() || last.len() != arrays.first.len() {
            // numpy cannot broadcast these; report the lengths that differ.
            count_shape = vec![last.len().min(status.len())];
            arrays.count_shape = count_shape;
            return Ok(arrays);
        }
        arrays
            .first
            .iter()
            .zip(&last)
            .zip(&status)
            .map(|((&f, &l), &s)| l.wrapping_sub(f).wrapping_add(1).wrapping_mul(s))
            .collect()
    } else {
        r.read_ints(&count_path, None)?
    };
    Ok(arrays)
}

/// Largest `first + count` over the file's trains (numpy's wrapping uint64 sum), if
/// it is past `rows`; `None` when the arrays cannot be combined (lengths differ).
fn end_outside(ix: &IndexArrays, ntrains: usize, rows: u64) -> Option<u64> {
    let n = ntrains.min(ix.first.len());
    if ix.count.len().min(ntrains) != n {
        return None;
    }
    let max_end = ix.first[..n]
        .iter()
        .zip(&ix.count[..n])
        .map(|(&f, &c)| f.wrapping_add(c))
        .max()?;
    (max_end > rows).then_some(max_end)
}

/// The file's trains as the index checks see them.
#[derive(Clone, Copy)]
struct Trains {
    /// Non-zero train IDs.
    n: usize,
    /// Length of `INDEX/trainId` when its zeros are trailing padding only.
    padded_len: Option<usize>,
}

fn trains(fa: &Arc<FileAccess>, problems: &mut Vec<Problem>) -> Option<Trains> {
    let raw = all_train_ids(fa, problems)?;
    let n = raw.iter().filter(|&&t| t != 0).count();
    let trailing = raw[..n].iter().all(|&t| t != 0);
    Some(Trains {
        n,
        padded_len: (trailing && raw.len() > n).then_some(raw.len()),
    })
}

/// EXtra-data's `_check_index`, except that an index padded like `INDEX/trainId`
/// (same length, zero entries where the train IDs are padding) is not a problem.
fn check_index(ix: &IndexArrays, trains: Trains, dataset: &str, problems: &mut Vec<Problem>) {
    let ntrains = trains.n;
    let shape_problem = |msg: &str| {
        Problem::new("", msg)
            .with("dataset", dataset)
            .with("first_shape", shape_repr(&ix.first_shape))
            .with("count_shape", shape_repr(&ix.count_shape))
    };
    if ix.first_shape.len() != 1 || ix.count_shape.len() != 1 {
        problems.push(shape_problem("Index first / count are not 1D"));
        return;
    }
    if ix.first.len() != ix.count.len() || ix.first_shape != ix.count_shape {
        problems.push(shape_problem(
            "Index first & count have different number of entries",
        ));
        return;
    }
    let padding_only = trains.padded_len == Some(ix.first.len())
        && ix.first[ntrains..].iter().all(|&f| f == 0)
        && ix.count[ntrains..].iter().all(|&c| c == 0);
    let n = if padding_only {
        ntrains
    } else {
        if ix.first.len() != ntrains {
            problems.push(
                Problem::new("", "Index has wrong number of entries")
                    .with("dataset", dataset)
                    .with("index_shape", shape_repr(&ix.first_shape))
                    .with("trainids_shape", shape_repr(&[ntrains])),
            );
        }
        ix.first.len()
    };
    check_index_contiguous(&ix.first[..n], &ix.count[..n], dataset, problems);
}

fn check_index_contiguous(
    first: &[u64],
    count: &[u64],
    dataset: &str,
    problems: &mut Vec<Problem>,
) {
    let Some(&f0) = first.first() else {
        return;
    };
    if f0 != 0 {
        problems.push(Problem::new("", "Index doesn't start at 0").with("dataset", dataset));
    }
    // numpy computes these gaps in float64 (int64 - uint64); i128 is exact.
    let gaps: Vec<i128> = (0..first.len().saturating_sub(1))
        .map(|i| first[i + 1] as i128 - first[i].wrapping_add(count[i]) as i128)
        .collect();
    let report = |pred: fn(&i128) -> bool, what: &str, op: &str, problems: &mut Vec<Problem>| {
        let n = gaps.iter().filter(|g| pred(g)).count();
        if let Some(pos) = gaps.iter().position(pred) {
            problems.push(
                Problem::new(
                    "",
                    format!(
                        "{what} ({n}) in index, e.g. at {pos} ({} + {} {op} {})",
                        first[pos],
                        count[pos],
                        first[pos + 1]
                    ),
                )
                .with("dataset", dataset),
            );
        }
    };
    report(|g| *g > 0, "Gaps", "<", problems);
    report(|g| *g < 0, "Overlaps", ">", problems);
}

/// Rows of a dataset (its first dimension; 0 for a scalar).
fn rows(fa: &Arc<FileAccess>, dataset: &str, problems: &mut Vec<Problem>) -> Option<u64> {
    read(fa, dataset, problems, |r| r.dtype_shape(dataset))
        .map(|(_, shape)| shape.first().copied().unwrap_or(0) as u64)
}

fn keys(fa: &Arc<FileAccess>, source: &str, problems: &mut Vec<Problem>) -> Vec<String> {
    match fa.get_keys(source) {
        Ok(k) => k.iter().cloned().collect(),
        Err(e) => {
            problems.push(read_problem(source, &e));
            Vec::new()
        }
    }
}

fn index_control(fa: &Arc<FileAccess>, problems: &mut Vec<Problem>) {
    let n = fa.train_ids.len();
    let Some(t) = trains(fa, problems) else {
        return;
    };
    for src in &fa.control_sources {
        let base = format!("INDEX/{src}");
        let Some(ix) = read(fa, &base, problems, |r| index_arrays(r, &base)) else {
            continue;
        };
        for key in keys(fa, src, problems) {
            let ds = format!("CONTROL/{src}/{}", key.replace('.', "/"));
            let Some(dim0) = rows(fa, &ds, problems) else {
                continue;
            };
            if let Some(max_end) = end_outside(&ix, n, dim0) {
                problems.push(
                    Problem::new(
                        "",
                        format!("Index referring to data ({max_end}) outside dataset ({dim0})"),
                    )
                    .with("dataset", &ds),
                );
                // One per source: every key of a bad source would repeat it.
                break;
            }
        }
        check_index(&ix, t, &base, problems);
    }
}

fn index_instrument(fa: &Arc<FileAccess>, problems: &mut Vec<Problem>) {
    let n = fa.train_ids.len();
    let Some(t) = trains(fa, problems) else {
        return;
    };
    for src in &fa.instrument_sources {
        let mut groups: BTreeMap<String, Option<IndexArrays>> = BTreeMap::new();
        for key in keys(fa, src, problems) {
            let ds = format!("INSTRUMENT/{src}/{}", key.replace('.', "/"));
            let group = key.split('.').next().unwrap_or("").to_string();
            let base = format!("INDEX/{src}/{group}");
            let ix = groups
                .entry(group)
                .or_insert_with(|| read(fa, &base, problems, |r| index_arrays(r, &base)));
            let Some(ix) = ix else {
                continue;
            };
            let Some(dim0) = rows(fa, &ds, problems) else {
                continue;
            };
            if let Some(max_end) = end_outside(ix, n, dim0) {
                problems.push(
                    Problem::new(
                        "",
                        format!("Index referring to data ({max_end}) outside dataset ({dim0})"),
                    )
                    .with("dataset", &ds),
                );
            }
        }
        for (group, ix) in &groups {
            if let Some(ix) = ix {
                check_index(ix, t, &format!("INDEX/{src}/{group}"), problems);
            }
        }
    }
}

fn control_timestamps_order(fa: &Arc<FileAccess>, problems: &mut Vec<Problem>) {
    for src in &fa.control_sources {
        for key in keys(fa, src, problems) {
            if !key.ends_with(".timestamp") {
                continue;
            }
            let ds = format!("CONTROL/{src}/{}", key.replace('.', "/"));
            let Some(ts) = read(fa, &ds, problems, |r| r.read_ints(&ds, None)) else {
                continue;
            };
            let nonzero = match ts.iter().position(|&t| t == 0) {
                Some(first0) => {
                    if ts[first0..].iter().any(|&t| t != 0) {
                        problems.push(
                            Problem::new("", "Zeroes in Timestamp before last train ID")
                                .with("dataset", &ds),
                        );
                    }
                    &ts[..first0]
                }
                None => &ts[..],
            };
            if let Some(pos) = nonzero.windows(2).position(|w| w[1] < w[0]) {
                problems.push(
                    Problem::new(
                        "",
                        format!(
                            "Timestamp is decreasing, e.g. at {} ({} < {})",
                            pos + 1,
                            ts[pos + 1],
                            ts[pos]
                        ),
                    )
                    .with("dataset", &ds),
                );
            }
        }
    }
}

/// Progress of a run validation, reported after each file.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    pub done: usize,
    pub total: usize,
    pub problems: usize,
    pub bad_files: usize,
    /// Name of the last file with problems.
    pub last_bad: Option<&'a str>,
}

/// The result of validating a run directory or a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The path as given.
    pub path: PathBuf,
    /// `true` for a run directory.
    pub run: bool,
    /// The share of the run's files checked, if not all (run checks not done).
    pub shard: Option<Shard>,
    /// Per file, in file name order.
    pub files: Vec<FileResult>,
    /// Problems of the run checks.
    pub run_problems: Vec<Problem>,
}

/// Share `index` of `count` (0-based, `I/N` on the command line, as Slurm's
/// `$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`): the files whose position in
/// name order is `index` modulo `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Shard, String> {
        let bad = || format!("{s:?} is not I/N with 0 <= I < N");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Combine the reports of every shard of one run into the report of the whole
/// run, run checks included: the same as validating it unsharded.
pub fn merge(reports: Vec<Report>, checks: &Checks) -> Result<Report, Error> {
    let Some(first) = reports.first() else {
        return Err(Error::ShardResults("no results to merge".into()));
    };
    let (path, count) = (first.path.clone(), first.shard.map_or(1, |s| s.count));
    let mut seen = vec![false; count];
    let mut files = Vec::new();
    for r in reports {
        if r.path != path || !r.run {
            return Err(Error::ShardResults(format!(
                "results of {} and {} cannot be merged (one run directory only)",
                path.display(),
                r.path.display()
            )));
        }
        let shard = r.shard.unwrap_or(Shard { index: 0, count: 1 });
        if shard.count != count || std::mem::replace(&mut seen[shard.index], true) {
            return Err(Error::ShardResults(format!(
                "shard {shard} does not fit the others (of {count}) or comes twice"
            )));
        }
        files.extend(r.files);
    }
    if let Some(missing) = seen.iter().position(|s| !s) {
        return Err(Error::ShardResults(format!(
            "the results of shard {missing}/{count} are missing"
        )));
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let run_problems = run_checks(&path, &files, checks);
    Ok(Report {
        path,
        run: true,
        shard: None,
        files,
        run_problems,
    })
}

impl Report {
    /// Every problem: per file in name order, then the run's.
    pub fn problems(&self) -> Vec<Problem> {
        self.files
            .iter()
            .flat_map(|f| f.problems.iter().cloned())
            .chain(self.run_problems.iter().cloned())
            .collect()
    }
}

/// The `.h5` files of a run directory, sorted.
fn h5_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".h5"))
        .collect();
    names.sort();
    Ok(names.into_iter().map(|n| dir.join(n)).collect())
}

/// Validate every `.h5` file of a run directory on `threads` threads (0: one per
/// CPU), calling `progress` after each file, then run the run checks.
/// With `shard`, only that share of the files, and no run checks (see [`merge`]).
pub fn validate_run(
    dir: &Path,
    checks: &Checks,
    threads: usize,
    shard: Option<Shard>,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<Report, Error> {
    let mut paths = h5_files(dir)?;
    if let Some(s) = shard {
        paths = paths
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % s.count == s.index)
            .map(|(_, p)| p)
            .collect();
    }
    let total = paths.len();
    let nthreads = if threads == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        threads
    }
    .clamp(1, total.max(1));
    let next = AtomicUsize::new(0);
    let mut slots: Vec<Option<FileResult>> = vec![None; total];
    let (mut nproblems, mut bad) = (0usize, Vec::<String>::new());
    progress(Progress {
        done: 0,
        total,
        problems: 0,
        bad_files: 0,
        last_bad: None,
    });
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel::<(usize, FileResult)>();
        for _ in 0..nthreads {
            let tx = tx.clone();
            let (next, paths) = (&next, &paths);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(p) = paths.get(i) else {
                    break;
                };
                if tx.send((i, validate_file(p, checks))).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for (done, (i, r)) in rx.into_iter().enumerate() {
            if !r.problems.is_empty() {
                nproblems += r.problems.len();
                bad.push(file_name(&r.path));
            }
            slots[i] = Some(r);
            progress(Progress {
                done: done + 1,
                total,
                problems: nproblems,
                bad_files: bad.len(),
                last_bad: bad.last().map(String::as_str),
            });
        }
    });
    let files: Vec<FileResult> = slots.into_iter().flatten().collect();
    let run_problems = match shard {
        Some(_) => Vec::new(),
        None => run_checks(dir, &files, checks),
    };
    Ok(Report {
        path: dir.into(),
        run: true,
        shard,
        files,
        run_problems,
    })
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The checks on a whole run, from the per-file results.
pub fn run_checks(dir: &Path, files: &[FileResult], checks: &Checks) -> Vec<Problem> {
    let summaries: Vec<&FileSummary> = files.iter().filter_map(|f| f.summary.as_ref()).collect();
    let mut problems = Vec::new();
    if summaries.is_empty() {
        problems
            .push(Problem::new("run", "No usable files found").with("directory", dir.display()));
    }
    type RunCheck = fn(&Path, &[&FileSummary], &mut Vec<Problem>);
    let all: [(&str, RunCheck); 5] = [
        ("run_json_cache", run_json_cache),
        ("source_conflicts", source_conflicts),
        ("run_map_entries", run_map_entries),
        ("sequence_gaps", sequence_gaps),
        ("format_versions", format_versions),
    ];
    for (name, check) in all {
        if checks.runs(name) {
            let start = problems.len();
            check(dir, &summaries, &mut problems);
            for p in &mut problems[start..] {
                p.check = name.into();
            }
        }
    }
    problems
}

/// Entries of the run map that are valid (size and mtime match) for `f`.
fn map_entry<'a>(map: &'a RunFilesMap, f: &FileSummary) -> Option<&'a super::runmap::MapEntry> {
    if f.path.parent() != Some(map.directory.as_path()) {
        return None;
    }
    map.files_data.get(&file_name(&f.path))
}

fn run_json_cache(dir: &Path, files: &[&FileSummary], problems: &mut Vec<Problem>) {
    let map = RunFilesMap::load(dir);
    for f in files {
        let Some(e) = map_entry(&map, f) else {
            continue;
        };
        let ctrl: BTreeSet<String> = e.control_sources.iter().cloned().collect();
        let inst: BTreeSet<String> = e.instrument_sources.iter().cloned().collect();
        if ctrl != f.control_sources || inst != f.instrument_sources || e.train_ids != f.train_ids {
            problems.push(
                Problem::new("", "Incorrect data map cache entry")
                    .with("cache_file", map.directory.join(MAP_FILE).display())
                    .with("data_file", f.path.display()),
            );
        }
    }
}

/// What run_json_cache does not compare: legacy names and suspect trains.
fn run_map_entries(dir: &Path, files: &[&FileSummary], problems: &mut Vec<Problem>) {
    let map = RunFilesMap::load(dir);
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
                .with("cache_file", map.directory.join(MAP_FILE).display())
                .with("data_file", f.path.display()),
            );
        }
    }
}

/// The same train of the same source in two files: EXtra-data refuses to open
/// the run ("sources have conflicting data").
fn source_conflicts(_dir: &Path, files: &[&FileSummary], problems: &mut Vec<Problem>) {
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
fn sequence_gaps(dir: &Path, files: &[&FileSummary], problems: &mut Vec<Problem>) {
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
                .with("directory", dir.display()),
            );
        }
    }
}

/// Files of one run written with different format versions.
fn format_versions(dir: &Path, files: &[&FileSummary], problems: &mut Vec<Problem>) {
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
            .with("directory", dir.display()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrays(first: &[u64], count: &[u64]) -> IndexArrays {
        IndexArrays {
            first: first.to_vec(),
            count: count.to_vec(),
            first_shape: vec![first.len()],
            count_shape: vec![count.len()],
        }
    }

    fn msgs(ix: &IndexArrays, trains: Trains) -> Vec<String> {
        let mut p = Vec::new();
        check_index(ix, trains, "INDEX/x", &mut p);
        p.into_iter().map(|p| p.msg).collect()
    }

    const FOUR: Trains = Trains {
        n: 4,
        padded_len: None,
    };

    #[test]
    fn contiguous_index_is_fine() {
        assert!(msgs(&arrays(&[0, 2, 2, 5], &[2, 0, 3, 1]), FOUR).is_empty());
    }

    #[test]
    fn gaps_overlaps_and_start_as_extra_data_words_them() {
        assert_eq!(
            msgs(&arrays(&[1, 4, 4, 6], &[2, 1, 3, 1]), FOUR),
            [
                "Index doesn't start at 0",
                "Gaps (1) in index, e.g. at 0 (1 + 2 < 4)",
                "Overlaps (2) in index, e.g. at 1 (4 + 1 > 4)",
            ]
        );
    }

    #[test]
    fn length_and_shape_problems() {
        assert_eq!(
            msgs(&arrays(&[0, 1, 2], &[1, 1, 1]), FOUR),
            ["Index has wrong number of entries"]
        );
        assert_eq!(
            msgs(&arrays(&[0, 1, 2, 3], &[1, 1, 1]), FOUR),
            ["Index first & count have different number of entries"]
        );
        let mut two_d = arrays(&[], &[]);
        two_d.first_shape = vec![4, 1];
        two_d.count_shape = vec![4];
        assert_eq!(msgs(&two_d, FOUR), ["Index first / count are not 1D"]);
    }

    #[test]
    fn zero_padding_like_the_train_ids_is_not_a_problem() {
        let padded = arrays(&[0, 1, 2, 3, 0, 0], &[1, 1, 1, 1, 0, 0]);
        let with_padded_tids = Trains {
            n: 4,
            padded_len: Some(6),
        };
        assert!(msgs(&padded, with_padded_tids).is_empty());
        // Without padded train IDs the same arrays are wrong, as for EXtra-data.
        assert_eq!(
            msgs(&padded, FOUR),
            [
                "Index has wrong number of entries",
                "Overlaps (1) in index, e.g. at 3 (3 + 1 > 0)",
            ]
        );
        // Padding positions that hold data are not padding.
        let data_in_padding = arrays(&[0, 1, 2, 3, 4, 0], &[1, 1, 1, 1, 1, 0]);
        assert_eq!(
            msgs(&data_in_padding, with_padded_tids)[0],
            "Index has wrong number of entries"
        );
    }

    #[test]
    fn problems_text_is_extra_data_s() {
        let p = Problem::new("x", "Bad thing")
            .with("file", "/a.h5")
            .with("dataset", "INDEX/trainId");
        assert_eq!(
            problems_text(&[p.clone(), p]),
            "\nBad thing\n  dataset: INDEX/trainId\n  file: /a.h5\n\nBad thing\n  dataset: INDEX/trainId\n  file: /a.h5"
        );
    }

    #[test]
    fn unknown_skip_names_are_refused_sorted() {
        let skip = ["zz".to_string(), "index_control".into(), "aa".into()];
        assert_eq!(
            Checks::skipping(&skip).map(|_| ()),
            Err(vec!["aa".to_string(), "zz".into()])
        );
    }
}
