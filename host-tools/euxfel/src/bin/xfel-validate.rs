//! xfel-validate: check EuXFEL files and run directories, with the checks, output
//! and exit codes of EXtra-data's `extra-data-validate`, plus cross-file checks.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use euxfel::cli::RunLookup;
use euxfel::validation::{
    check_names, merge, problems_text, validate_file, validate_run, Checks, Problem, Progress,
    Report, Shard,
};
use euxfel::{catch_interrupt, Error, EXIT_INTERRUPTED};

#[derive(Parser, Debug)]
#[command(
    name = "xfel-validate",
    about = "Validate EuXFEL HDF5 files or run directories (EXtra-data's extra-data-validate checks \
             and cross-file checks). Exit status: 0 no problems, 1 problems found or bad arguments, \
             2 usage error."
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

/// `--json`: the report (per-file results with their summaries, which --merge
/// reads back), with every problem and `ok` at the top for scripts.
#[derive(serde::Serialize)]
struct JsonOut<'a> {
    ok: bool,
    problems: &'a [Problem],
    #[serde(flatten)]
    report: &'a Report,
}

fn read_results(paths: &[PathBuf]) -> Result<Vec<Report>, String> {
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
        })
        .collect()
}

fn run(a: &Args) -> u8 {
    if a.list {
        println!("Available checks:");
        for name in check_names() {
            println!("  {name}");
        }
        return 0;
    }
    let checks = match Checks::skipping(&a.skip) {
        Ok(c) => c,
        Err(unknown) => {
            println!("Unknown names passed to --skip: {}", unknown.join(", "));
            return 1;
        }
    };
    if !a.merge.is_empty() {
        let merged =
            read_results(&a.merge).and_then(|r| merge(r, &checks).map_err(|e| e.to_string()));
        return match merged {
            Ok(report) => {
                if !a.json {
                    println!("Checking run directory: {}", report.path.display());
                    println!();
                }
                print_report(a, &report)
            }
            Err(e) => {
                eprintln!("xfel-validate: {e}");
                1
            }
        };
    }
    let paths = match a.lookup.directories() {
        Ok(Some(dirs)) => dirs,
        Ok(None) => a.path.iter().cloned().collect(),
        Err(e) => {
            eprintln!("xfel-validate: {e}");
            return 1;
        }
    };
    // Each directory of the run (raw, proc) in turn; problems in any: exit 1.
    let mut code = 0;
    for p in &paths {
        code = code.max(validate(a, p, &checks));
        if code == EXIT_INTERRUPTED {
            break;
        }
    }
    code
}

fn validate(a: &Args, path: &Path, checks: &Checks) -> u8 {
    let report = if path.is_dir() {
        if !a.json {
            println!("Checking run directory: {}", path.display());
            println!();
        }
        let tty = !a.json && std::io::stderr().is_terminal();
        let shown = |p: Progress<'_>| {
            if tty {
                // Clear the two lines of the previous progress, then print this one.
                eprint!("\x1b[2K\x1b[1A\x1b[2K\r{}", progress_line(&p));
            }
        };
        match validate_run(path, checks, a.jobs, a.shard, shown) {
            Ok(r) => r,
            Err(Error::Interrupted) => {
                // EXtra-data's line; no report of a partial validation.
                if a.json {
                    eprintln!("xfel-validate: interrupted");
                } else {
                    println!();
                    println!("^C (validation cancelled)");
                }
                return EXIT_INTERRUPTED;
            }
            Err(e) => {
                eprintln!("xfel-validate: {e}");
                return 1;
            }
        }
    } else {
        if !a.json {
            println!("Checking file: {}", path.display());
        }
        let file = validate_file(path, checks);
        if file.summary.is_none() && !a.json {
            // EXtra-data prints the opening problem alone, without the summary line.
            println!("{}", problems_text(&file.problems));
            return 1;
        }
        Report {
            path: path.into(),
            run: false,
            shard: None,
            files: vec![file],
            run_problems: Vec::new(),
        }
    };
    print_report(a, &report)
}

/// The end of the output (after the `Checking ...` header) and the exit status.
fn print_report(a: &Args, report: &Report) -> u8 {
    let problems = report.problems();
    if a.json {
        let out = JsonOut {
            ok: problems.is_empty(),
            problems: &problems,
            report,
        };
        match serde_json::to_string(&out) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("xfel-validate: {e}");
                return 1;
            }
        }
    } else {
        println!();
        if problems.is_empty() {
            println!("No problems found");
        } else {
            println!("Validation failed! {} problems:", problems.len());
            println!("{}", problems_text(&problems));
        }
    }
    u8::from(!problems.is_empty())
}

fn main() -> ExitCode {
    let a = Args::parse();
    if let Err(e) = catch_interrupt() {
        eprintln!("xfel-validate: Ctrl-C will end the process at once: {e}");
    }
    ExitCode::from(run(&a))
}
