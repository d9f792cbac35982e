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

use super::error::Error;
use super::file_access::FileAccess;
use super::interrupt;

mod file_checks;
mod run_checks;

use file_checks::{
    control_timestamps_order, index_control, index_instrument, train_ids_nonzero, train_ids_order,
    train_ids_unique,
};
use run_checks::{
    format_versions, run_json_cache, run_map_entries, sequence_gaps, source_conflicts,
};

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

    /// The names of the skipped checks, sorted.
    pub fn skipped(&self) -> Vec<String> {
        self.skip.iter().cloned().collect()
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

/// Paths in `--json` as text: a name that is not UTF-8 is written with U+FFFD in
/// place of its bad bytes (JSON holds text only) instead of failing the report.
mod lossy_path {
    use std::path::{Path, PathBuf};

    pub fn serialize<S: serde::Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&p.to_string_lossy())
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: serde::Serializer>(
            p: &Option<PathBuf>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match p {
                Some(p) => super::serialize(p, s),
                None => s.serialize_none(),
            }
        }
    }
}

/// What the run checks need of one opened file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileSummary {
    /// Absolute path.
    #[serde(serialize_with = "lossy_path::serialize")]
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
    #[serde(serialize_with = "lossy_path::serialize")]
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
        // Opened as the reader opens files: a FIFO must not wait for a writer.
        let access = crate::file_map::open_for_reading(path).and_then(|mut f| {
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
        suspect_train_indices: fa.suspect_train_indices(),
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
    #[serde(serialize_with = "lossy_path::serialize")]
    pub path: PathBuf,
    /// `true` for a run directory.
    pub run: bool,
    /// The share of the run's files checked, if not all (run checks not done).
    pub shard: Option<Shard>,
    /// The run directory as an absolute path (`None` for a single file): shards of
    /// the same path given from different working directories are different runs.
    #[serde(serialize_with = "lossy_path::option::serialize")]
    pub directory: Option<PathBuf>,
    /// The number of `.h5` files of the whole run directory, every shard included.
    pub run_files: usize,
    /// The checks skipped (`--skip`), sorted: shards made with different ones
    /// cannot be merged.
    pub skipped: Vec<String>,
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
/// run, run checks included: the same as validating it unsharded. Results that do
/// not make up exactly one run, each file checked once with the same checks
/// (`checks`, or those of the shards if `checks` skips none), are refused.
pub fn merge(reports: Vec<Report>, checks: &Checks) -> Result<Report, Error> {
    let refuse = |msg: String| Err(Error::ShardResults(msg));
    let Some(first) = reports.first() else {
        return refuse("no results to merge".into());
    };
    let (path, directory, run_files, skipped) = (
        first.path.clone(),
        first.directory.clone(),
        first.run_files,
        first.skipped.clone(),
    );
    let count = first.shard.map_or(1, |s| s.count);
    if !checks.skip.is_empty() && checks.skipped() != skipped {
        return refuse(format!(
            "the results were made skipping [{}], not [{}] as --skip asks",
            skipped.join(", "),
            checks.skipped().join(", ")
        ));
    }
    // A set, not a vector of `count` flags: `count` comes from a file.
    let mut seen = BTreeSet::new();
    let mut files = Vec::new();
    for r in reports {
        if !r.run {
            return refuse(format!(
                "the results of {} are of a file, not of a run directory's shard",
                r.path.display()
            ));
        }
        if r.path != path || r.directory != directory {
            let dir = |r: &Report| {
                r.directory
                    .as_ref()
                    .unwrap_or(&r.path)
                    .display()
                    .to_string()
            };
            return refuse(format!(
                "results of {} and {} cannot be merged (the shards of one run directory only)",
                directory.as_ref().unwrap_or(&path).display(),
                dir(&r)
            ));
        }
        if r.run_files != run_files {
            return refuse(format!(
                "the run had {run_files} files for one shard, {} for another: its files \
                 changed between the shards",
                r.run_files
            ));
        }
        if r.skipped != skipped {
            return refuse(format!(
                "results made skipping [{}] and [{}] cannot be merged (use the same --skip \
                 for every shard)",
                skipped.join(", "),
                r.skipped.join(", ")
            ));
        }
        let shard = r.shard.unwrap_or(Shard { index: 0, count: 1 });
        if shard.count != count || shard.index >= count || !seen.insert(shard.index) {
            return refuse(format!(
                "shard {shard} does not fit the others (of {count}) or comes twice"
            ));
        }
        files.extend(r.files.into_iter().map(|f| (shard.index, f)));
    }
    // The first index not seen is at most the number of shards seen.
    if let Some(missing) = (0..count).find(|i| !seen.contains(i)) {
        return refuse(format!(
            "the results of shard {missing}/{count} are missing"
        ));
    }
    files.sort_by(|a, b| a.1.path.cmp(&b.1.path));
    // Each file where its shard takes it, and as many as the run has: the files did
    // not change between the shards.
    let misplaced = files.iter().enumerate().find(|(i, (s, _))| i % count != *s);
    if let Some((_, (s, f))) = misplaced {
        return refuse(format!(
            "{} is not a file of shard {s}/{count}: the run's files changed between the shards",
            f.path.display()
        ));
    }
    if files.len() != run_files {
        return refuse(format!(
            "the shards hold {} files, the run {run_files}: the run's files changed between \
             the shards",
            files.len()
        ));
    }
    let files: Vec<FileResult> = files.into_iter().map(|(_, f)| f).collect();
    let checks = Checks {
        skip: skipped.iter().cloned().collect(),
    };
    // The run map checks read the run directory itself: without it they would
    // pass silently.
    let reads_map = checks.runs("run_json_cache") || checks.runs("run_map_entries");
    if let Some(d) = directory.as_ref().filter(|d| reads_map && !d.is_dir()) {
        return refuse(format!(
            "the run directory {} is not here: the run map checks read it (merge where the \
             shards ran, or skip run_json_cache and run_map_entries in every shard)",
            d.display()
        ));
    }
    // The run map is read where the shards found the run, whatever the working
    // directory of the merge.
    let run_problems = run_checks(&path, directory.as_deref(), &files, &checks);
    Ok(Report {
        path,
        run: true,
        shard: None,
        directory,
        run_files,
        skipped,
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
    // Names as the OS gives them: one that is not UTF-8 is still a file to check.
    let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| n.as_encoded_bytes().ends_with(b".h5"))
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
    let run_files = paths.len();
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
        let (next, paths) = (&next, &paths);
        let worker = |tx: mpsc::Sender<(usize, FileResult)>| loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(p) = paths.get(i) else {
                break;
            };
            if interrupt::interrupted() {
                break;
            }
            if tx.send((i, validate_file(p, checks))).is_err() {
                break;
            }
        };
        // Threads that cannot start (a process limit) leave their files to the others; with
        // none, this thread validates them all before it reports.
        let mut started = 0;
        for _ in 0..nthreads {
            let tx = tx.clone();
            match std::thread::Builder::new().spawn_scoped(s, move || worker(tx)) {
                Ok(_) => started += 1,
                Err(_) => break,
            }
        }
        if started == 0 {
            worker(tx.clone());
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
    interrupt::check()?;
    let files: Vec<FileResult> = slots.into_iter().flatten().collect();
    let run_problems = match shard {
        Some(_) => Vec::new(),
        None => run_checks(dir, None, &files, checks),
    };
    // Ctrl-C during the run checks (reading the run map) cancels too: no report.
    interrupt::check()?;
    Ok(Report {
        path: dir.into(),
        run: true,
        shard,
        directory: Some(std::path::absolute(dir).map_err(|e| Error::io(dir, e))?),
        run_files,
        skipped: checks.skipped(),
        files,
        run_problems,
    })
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A run directory as given (for the problems' fields) and where it is (to read
/// its run map).
pub(crate) struct RunDir<'a> {
    pub given: &'a Path,
    pub absolute: &'a Path,
}

/// The checks on a whole run, from the per-file results; `absolute`: where the
/// directory `dir` is (else `dir` is read from the working directory).
pub fn run_checks(
    dir: &Path,
    absolute: Option<&Path>,
    files: &[FileResult],
    checks: &Checks,
) -> Vec<Problem> {
    let run_dir = RunDir {
        given: dir,
        absolute: absolute.unwrap_or(dir),
    };
    let summaries: Vec<&FileSummary> = files.iter().filter_map(|f| f.summary.as_ref()).collect();
    let mut problems = Vec::new();
    if summaries.is_empty() {
        problems
            .push(Problem::new("run", "No usable files found").with("directory", dir.display()));
    }
    type RunCheck = fn(&RunDir<'_>, &[&FileSummary], &mut Vec<Problem>);
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
            check(&run_dir, &summaries, &mut problems);
            for p in &mut problems[start..] {
                p.check = name.into();
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

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
