//! xfel-validate: check EuXFEL files and run directories, with the checks, output
//! and exit codes of EXtra-data's `extra-data-validate`, plus cross-file checks.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use euxfel::cli::RunLookup;
use euxfel::validation::{
    check_names, merge, problems_text, validate_file, validate_run, Checks, Problem, Progress,
    Report, Shard,
};
use euxfel::{catch_interrupt, stop_signal, Error, StopSignal};

#[derive(Parser, Debug)]
#[command(
    name = "xfel-validate",
    about = "Validate EuXFEL HDF5 files or run directories (EXtra-data's extra-data-validate checks \
             and cross-file checks). Exit status: 0 no problems, 1 problems found, bad arguments or a \
             report that could not be written, 2 usage error, 130 interrupted (Ctrl-C, SIGINT), 143 \
             terminated (SIGTERM: kill, a Slurm cancel or time limit); a second signal ends it at once."
)]
struct Args {
    /// HDF5 file or run directory of HDF5 files.
    #[arg(
        required_unless_present_any = ["list", "proposal", "merge"],
        conflicts_with_all = ["proposal", "merge"]
    )]
    path: Option<PathBuf>,
    #[command(flatten)]
    lookup: RunLookup,
    /// List available checks (options for --skip).
    #[arg(short = 'l', long = "list")]
    list: bool,
    /// Skip a named check (may be used several times).
    #[arg(long)]
    skip: Vec<String>,
    /// Print the result as JSON (path, run, problems) instead of text.
    #[arg(long)]
    json: bool,
    /// Files checked at the same time (0: one per CPU).
    #[arg(short = 'j', long = "jobs", default_value_t = 0)]
    jobs: usize,
    /// Check share I of N of a run's files (0 <= I < N, e.g. a Slurm array task); the
    /// run checks are left to --merge.
    #[arg(long, value_name = "I/N")]
    shard: Option<Shard>,
    /// Merge the --json results of every shard of a run into the report of the whole
    /// run (with the run checks), as an unsharded run prints it.
    #[arg(long, num_args = 1.., value_name = "RESULTS", conflicts_with_all = ["shard", "proposal"])]
    merge: Vec<PathBuf>,
}

/// EXtra-data's `progress_bar`: `Progress: i/N [###   ]`, at most 50 wide.
fn progress_line(p: &Progress<'_>) -> String {
    let line = format!("Progress: {}/{} []", p.done, p.total);
    let columns: usize = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(80);
    let length = columns.saturating_sub(line.len()).min(50);
    let filled = length * p.done / p.total.max(1);
    let mut s = format!(
        "Progress: {}/{} [{}{}]\n{} problems",
        p.done,
        p.total,
        "#".repeat(filled),
        " ".repeat(length - filled),
        p.problems
    );
    if let Some(last) = p.last_bad {
        s.push_str(&format!(" in {} files (last: {last})", p.bad_files));
    }
    s
}

/// Write `text` to stdout now; a failed write (a full disk, a closed pipe) is an
/// error, so that a cut report never ends with exit 0.
fn emit(text: &str) -> Result<(), u8> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) => {
            // A reader that left (`| head`) needs no message.
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                eprintln!("xfel-validate: cannot write the report: {e}");
            }
            Err(1)
        }
    }
}

/// `--json`: the report (per-file results with their summaries, which --merge
/// reads back), with every problem and `ok` at the top for scripts.
#[derive(serde::Serialize)]
struct JsonOut<'a> {
    ok: bool,
    problems: &'a [Problem],
    #[serde(flatten)]
    report: &'a Report,
}

/// `--json` for several run directories (`--data default` or `all` finding proc and raw):
/// one document, with every problem and `ok` at the top as for one.
#[derive(serde::Serialize)]
struct JsonRuns<'a> {
    ok: bool,
    problems: &'a [Problem],
    reports: &'a [Report],
}

/// `--json` when there is no report (a run not found, results that cannot be
/// merged, Ctrl-C): still one document for scripts, `{"ok": false, "error": ...}`.
#[derive(serde::Serialize, serde::Deserialize)]
struct JsonError {
    ok: bool,
    error: String,
}

/// A failure without a report: the message on stderr, and with `--json` the
/// document saying so on stdout; exit status `code`.
fn fail(a: &Args, msg: &str, code: u8) -> Result<u8, u8> {
    eprintln!("xfel-validate: {msg}");
    if a.json {
        let doc = JsonError {
            ok: false,
            error: msg.into(),
        };
        if let Ok(s) = serde_json::to_string(&doc) {
            emit(&format!("{s}\n"))?;
        }
    }
    Ok(code)
}

fn read_results(paths: &[PathBuf]) -> Result<Vec<Report>, String> {
    paths
        .iter()
        .map(|p| {
            let bad = |e: &dyn std::fmt::Display| {
                format!(
                    "{}: not the --json result of an xfel-validate shard ({e})",
                    p.display()
                )
            };
            let text = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
            if text.trim_ascii().is_empty() {
                return Err(format!(
                    "{}: empty: its shard did not finish (killed, or failed before its report)",
                    p.display()
                ));
            }
            serde_json::from_slice(&text).map_err(|e| {
                // The --json of a shard that failed says why.
                match serde_json::from_slice::<JsonError>(&text) {
                    Ok(failed) => format!("{}: the shard failed: {}", p.display(), failed.error),
                    Err(_) => bad(&e),
                }
            })
        })
        .collect()
}

fn run(a: &Args) -> u8 {
    match try_run(a) {
        Ok(code) | Err(code) => code,
    }
}

/// The exit status; `Err` once the output could not be written.
fn try_run(a: &Args) -> Result<u8, u8> {
    if a.list {
        let mut s = String::from("Available checks:\n");
        for name in check_names() {
            let _ = writeln!(s, "  {name}");
        }
        emit(&s)?;
        return Ok(0);
    }
    let checks = match Checks::skipping(&a.skip) {
        Ok(c) => c,
        Err(unknown) => {
            let msg = format!("Unknown names passed to --skip: {}", unknown.join(", "));
            if a.json {
                return fail(a, &msg, 1);
            }
            emit(&format!("{msg}\n"))?;
            return Ok(1);
        }
    };
    if !a.merge.is_empty() {
        let merged =
            read_results(&a.merge).and_then(|r| merge(r, &checks).map_err(|e| e.to_string()));
        return match merged {
            Ok(report) => {
                if !a.json {
                    emit(&format!(
                        "Checking run directory: {}\n\n",
                        report.path.display()
                    ))?;
                }
                print_reports(a, &[report])
            }
            Err(e) => fail(a, &e, 1),
        };
    }
    let paths: Vec<PathBuf> = match a.lookup.directories() {
        Ok(Some(dirs)) => {
            for w in dirs.missing() {
                eprintln!("{w}");
            }
            dirs.found().into_iter().map(|o| o.dir.clone()).collect()
        }
        Ok(None) => a.path.iter().cloned().collect(),
        Err(e) => return fail(a, &e.to_string(), 1),
    };
    if a.shard.is_some() {
        // A share of one run's files: --merge takes the shards of one directory.
        match paths.as_slice() {
            [p] if p.is_dir() => {}
            [p] => {
                let msg = format!("--shard takes a run directory: {} is not one", p.display());
                return fail(a, &msg, 1);
            }
            _ => {
                let msg = format!(
                    "--shard takes one run directory, not {} (use --data raw or proc)",
                    paths.len()
                );
                return fail(a, &msg, 1);
            }
        }
    }
    // Each directory of the run (for `--data default`: proc, then raw) in turn; problems in
    // any: exit 1.
    let (mut reports, mut code) = (Vec::new(), 0);
    for p in &paths {
        match validate(a, p, &checks)? {
            Ok(r) if a.json => reports.push(r),
            Ok(r) => code = code.max(print_reports(a, &[r])?),
            Err(c) => return Ok(c.max(code)),
        }
    }
    if a.json {
        code = print_reports(a, &reports)?;
    }
    Ok(code)
}

/// The report of a file or run directory (its `Checking ...` header printed), or
/// the exit status if there is none to print.
fn validate(a: &Args, path: &Path, checks: &Checks) -> Result<Result<Report, u8>, u8> {
    if path.is_dir() {
        if !a.json {
            emit(&format!("Checking run directory: {}\n\n", path.display()))?;
        }
        let tty = !a.json && std::io::stderr().is_terminal();
        let shown = |p: Progress<'_>| {
            if tty {
                // Clear the two lines of the previous progress, then print this one.
                eprint!("\x1b[2K\x1b[1A\x1b[2K\r{}", progress_line(&p));
            }
        };
        return match validate_run(path, checks, a.jobs, a.shard, shown) {
            Ok(r) => Ok(Ok(r)),
            Err(Error::Interrupted) => {
                // No report of a partial validation.
                let sig = stop_signal().unwrap_or(StopSignal::Interrupt);
                if a.json || sig == StopSignal::Terminate {
                    // `xfel-validate: terminated` (Python dies of SIGTERM without a word).
                    return fail(a, sig.verb(), sig.exit_code()).map(Err);
                }
                // EXtra-data's line for Ctrl-C.
                emit("\n^C (validation cancelled)\n")?;
                Ok(Err(sig.exit_code()))
            }
            Err(e) => fail(a, &e.to_string(), 1).map(Err),
        };
    }
    if !a.json {
        emit(&format!("Checking file: {}\n", path.display()))?;
    }
    let file = validate_file(path, checks);
    if file.summary.is_none() && !a.json {
        // EXtra-data prints the opening problem alone, without the summary line.
        emit(&format!("{}\n", problems_text(&file.problems)))?;
        return Ok(Err(1));
    }
    Ok(Ok(Report {
        path: path.into(),
        run: false,
        shard: None,
        directory: None,
        run_files: 1,
        skipped: checks.skipped(),
        files: vec![file],
        run_problems: Vec::new(),
    }))
}

/// The end of the output and the exit status: in text, the result of each report
/// (after its `Checking ...` header); in JSON, one document for all.
fn print_reports(a: &Args, reports: &[Report]) -> Result<u8, u8> {
    let problems: Vec<Problem> = reports.iter().flat_map(Report::problems).collect();
    let code = u8::from(!problems.is_empty());
    if a.json {
        let ok = problems.is_empty();
        let json = match reports {
            [report] => serde_json::to_string(&JsonOut {
                ok,
                problems: &problems,
                report,
            }),
            _ => serde_json::to_string(&JsonRuns {
                ok,
                problems: &problems,
                reports,
            }),
        };
        return match json {
            Ok(s) => emit(&format!("{s}\n")).map(|()| code),
            Err(e) => {
                eprintln!("xfel-validate: {e}");
                Ok(1)
            }
        };
    }
    let mut s = String::new();
    for report in reports {
        let problems = report.problems();
        s.push('\n');
        if problems.is_empty() {
            s.push_str("No problems found\n");
        } else {
            let _ = writeln!(s, "Validation failed! {} problems:", problems.len());
            let _ = writeln!(s, "{}", problems_text(&problems));
        }
    }
    emit(&s).map(|()| code)
}

fn main() -> ExitCode {
    let a = Args::parse();
    if let Err(e) = catch_interrupt() {
        eprintln!("xfel-validate: Ctrl-C and SIGTERM will end the process at once: {e}");
    }
    ExitCode::from(run(&a))
}
