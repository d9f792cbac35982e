//! xfel-write: write EuXFEL run data: copies and virtual files of selections, virtual
//! overview files of runs.
//!
//! Exit codes: 0 success (for `overview --check`: the overview file matches the run),
//! 1 failure (for `overview --check`: the overview file is outdated), 2 usage error,
//! 128 + N when signal N (SIGINT, SIGTERM) stopped a write.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use euxfel::{DataCollection, OpenOptions, TrainSelection, Warning};
use euxfel_write::{Progress, Summary, WriteOptions};

#[derive(Parser, Debug)]
#[command(
    name = "xfel-write",
    about = "Write EuXFEL run data: copies and virtual files of selections, virtual overview files"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Copy a selection into one new file (EXtra-data's DataCollection.write).
    Copy(SelectArgs),
    /// Write a selection as virtual datasets into the run's files (EXtra-data's write_virtual).
    Virtual(SelectArgs),
    /// Write (or --check) the virtual overview file of a run (python -m extra_data.voview).
    Overview(OverviewArgs),
    /// Convert an xsp3-acquire acquisition (one file or a rollover set) into a EuXFEL run.
    Xspress3(Xspress3Args),
}

#[derive(Args, Debug)]
struct Xspress3Args {
    /// Acquisition file(s), in frame order (NAME.h5, or NAME_00000.h5 NAME_00001.h5 ...).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Output run directory (created if missing).
    #[arg(short, long)]
    out: PathBuf,
    /// Device name: sources DEVICE (CONTROL) and DEVICE:daqOutput (INSTRUMENT).
    #[arg(long, default_value = "XSPRESS3/DET/XSP3")]
    device: String,
    /// Run number (file name and METADATA).
    #[arg(long, default_value_t = 1)]
    run: u32,
    /// Proposal number (METADATA).
    #[arg(long, default_value_t = 0)]
    proposal: u32,
    /// Train ID of the first frame (without a train_id timing dataset).
    #[arg(long, default_value_t = 1)]
    first_train: u64,
    /// Frames per train (without a train_id timing dataset).
    #[arg(long, default_value_t = 1)]
    frames_per_train: u64,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct SelectArgs {
    /// Run directory or single .h5 file.
    run: PathBuf,
    /// Output file.
    #[arg(short, long)]
    out: PathBuf,
    /// Source glob (fnmatch, repeatable); default all sources.
    #[arg(long = "source")]
    sources: Vec<String>,
    /// Key glob applied to every --source (control keys get '.value' as in EXtra-data).
    #[arg(long, default_value = "*")]
    key: String,
    /// Trains: 'A:B' (train IDs, B exclusive; either may be empty) or 'A,B,C'. With
    /// --by-index they are positions (write --trains=-4: for negative values).
    #[arg(long)]
    trains: Option<String>,
    /// Interpret --trains as positions in the run, not train IDs.
    #[arg(long)]
    by_index: bool,
    /// Leave out trains flagged as suspect (INDEX/flag 0).
    #[arg(long)]
    exc_suspect_trains: bool,
    /// Neither read nor write the run map cache (karabo_data_map.json).
    #[arg(long)]
    no_cache: bool,
    /// copy: build the output in memory and write it out in one go when the selected
    /// sources' files add up to at most this many bytes (0: never; write chunk by chunk).
    #[arg(long, default_value_t = euxfel_write::DEFAULT_STAGE_MAX_BYTES)]
    stage_max_bytes: u64,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct OverviewArgs {
    /// Run directory.
    run: PathBuf,
    /// Overview file (default RUN/overview.h5).
    #[arg(short, long)]
    out: Option<PathBuf>,
    /// Only check whether the existing overview file matches the run's files.
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct Common {
    /// Replace an existing output file.
    #[arg(long)]
    overwrite: bool,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    json: bool,
}

fn parse_trains(s: &str, by_index: bool) -> Result<TrainSelection, String> {
    let bad = |v: &str| format!("--trains: {v:?} is not an integer");
    fn opt<T: std::str::FromStr>(
        v: &str,
        bad: &dyn Fn(&str) -> String,
    ) -> Result<Option<T>, String> {
        if v.trim().is_empty() {
            Ok(None)
        } else {
            v.trim().parse().map(Some).map_err(|_| bad(v))
        }
    }
    fn list<T: std::str::FromStr>(s: &str, bad: &dyn Fn(&str) -> String) -> Result<Vec<T>, String> {
        s.split(',')
            .map(|x| x.trim().parse().map_err(|_| bad(x)))
            .collect()
    }
    Ok(match (s.split_once(':'), by_index) {
        (Some((a, b)), true) => TrainSelection::IndexRange(opt(a, &bad)?, opt(b, &bad)?, None),
        (Some((a, b)), false) => TrainSelection::IdRange(opt(a, &bad)?, opt(b, &bad)?),
        (None, true) => TrainSelection::IndexList(list(s, &bad)?),
        (None, false) => TrainSelection::IdList(list(s, &bad)?),
    })
}

fn print_warnings(warnings: &[Warning]) {
    for w in warnings {
        eprintln!("xfel-write: {w}");
    }
}

fn open(a: &SelectArgs) -> Result<DataCollection, String> {
    let opts = OpenOptions {
        use_cache: !a.no_cache,
        inc_suspect_trains: !a.exc_suspect_trains,
        ..OpenOptions::default()
    };
    let dc = if a.run.is_dir() {
        DataCollection::open_run(&a.run, &opts)
    } else {
        DataCollection::open_file(&a.run).and_then(|dc| {
            if a.exc_suspect_trains {
                DataCollection::from_files(dc.files.clone(), false, true)
            } else {
                Ok(dc)
            }
        })
    }
    .map_err(|e| {
        print_warnings(&e.skipped_files());
        e.to_string()
    })?;
    print_warnings(dc.warnings());
    let mut dc = if a.sources.is_empty() {
        if a.key == "*" {
            dc
        } else {
            dc.select(&[("*".into(), a.key.clone())], false, false)
                .map_err(|e| e.to_string())?
        }
    } else {
        let pats: Vec<(String, String)> = a
            .sources
            .iter()
            .map(|s| (s.clone(), a.key.clone()))
            .collect();
        dc.select(&pats, false, false).map_err(|e| e.to_string())?
    };
    if let Some(t) = &a.trains {
        dc = dc
            .select_trains(&parse_trains(t, a.by_index)?)
            .map_err(|e| e.to_string())?;
        print_warnings(dc.warnings());
    }
    Ok(dc)
}

/// Progress on stderr when it is a terminal.
fn progress_printer() -> impl FnMut(&Progress) {
    let tty = std::io::stderr().is_terminal();
    move |p: &Progress| {
        if tty {
            eprint!(
                "\r{}/{} datasets, {:.1} MB",
                p.datasets_done,
                p.datasets_total,
                p.bytes as f64 / 1e6
            );
            if p.datasets_done == p.datasets_total {
                eprintln!();
            }
        }
    }
}

/// SIGINT and SIGTERM during a write: the first sets `stop`, so the write ends at its next
/// chunk and removes its partial file; a second one ends the process at once (its partial
/// file is then removed by the next write of the same output).
struct Signals {
    stop: Arc<AtomicBool>,
    /// The number of the last signal received, 0 for none.
    which: Arc<AtomicUsize>,
}

impl Signals {
    fn new() -> Signals {
        Signals {
            stop: Arc::new(AtomicBool::new(false)),
            which: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Installs the handlers; returns the flag the writers watch.
    fn install(&self) -> Result<Option<Arc<AtomicBool>>, String> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        for sig in [SIGINT, SIGTERM] {
            // Registered first, so it sees the flag as it was before this signal sets it.
            signal_hook::flag::register_conditional_shutdown(
                sig,
                128 + sig,
                Arc::clone(&self.stop),
            )
            .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&self.stop)))
            .and_then(|_| {
                signal_hook::flag::register_usize(sig, Arc::clone(&self.which), sig as usize)
            })
            .map_err(|e| format!("cannot handle signal {sig}: {e}"))?;
        }
        Ok(Some(Arc::clone(&self.stop)))
    }

    /// 128 + the signal's number if a signal arrived.
    fn exit_code(&self) -> Option<ExitCode> {
        match self.which.load(Ordering::SeqCst) {
            0 => None,
            sig => Some(ExitCode::from(u8::try_from(128 + sig).unwrap_or(u8::MAX))),
        }
    }
}

fn report_stale(removed: &[PathBuf]) {
    for p in removed {
        eprintln!(
            "xfel-write: removed {}, left by an earlier write that was killed",
            p.display()
        );
    }
}

fn paths_json(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

fn summary_json(cmd: &str, s: &Summary) -> serde_json::Value {
    serde_json::json!({
        "command": cmd,
        "path": s.path.to_string_lossy(),
        "sources": s.sources,
        "datasets": s.datasets,
        "trains": s.trains,
        "rows": s.rows,
        "direct_chunks": s.direct_chunks,
        "rows_through_memory": s.rows_through_memory,
        "rows_from_map": s.rows_from_map,
        "bytes": s.bytes,
        "virtual_mappings": s.virtual_mappings,
        "staged": s.staged,
        "stale_partials_removed": paths_json(&s.stale_partials_removed),
    })
}

fn report(cmd: &str, s: &Summary, json: bool) {
    report_stale(&s.stale_partials_removed);
    if json {
        println!("{}", summary_json(cmd, s));
    } else {
        println!(
            "{}: {} sources, {} datasets, {} trains -> {}",
            cmd,
            s.sources,
            s.datasets,
            s.trains,
            s.path.display()
        );
    }
}

fn run(cli: Cli, signals: &Signals) -> Result<ExitCode, String> {
    match cli.cmd {
        Cmd::Copy(a) => {
            let opts = WriteOptions {
                overwrite: a.common.overwrite,
                stop: signals.install()?,
                stage_max_bytes: a.stage_max_bytes,
            };
            let dc = open(&a)?;
            let s = euxfel_write::write(&dc, &a.out, &opts, &mut progress_printer())
                .map_err(|e| e.to_string())?;
            report("copy", &s, a.common.json);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Virtual(a) => {
            let opts = WriteOptions {
                overwrite: a.common.overwrite,
                stop: signals.install()?,
                ..WriteOptions::default()
            };
            let dc = open(&a)?;
            let s = euxfel_write::write_virtual(&dc, &a.out, &opts, &mut progress_printer())
                .map_err(|e| e.to_string())?;
            report("virtual", &s, a.common.json);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Overview(a) => overview(&a, signals),
        Cmd::Xspress3(a) => {
            let opts = euxfel_write::Xspress3Options {
                device: a.device.clone(),
                proposal: a.proposal,
                run: a.run,
                first_train: a.first_train,
                frames_per_train: a.frames_per_train,
                overwrite: a.common.overwrite,
                stop: signals.install()?,
            };
            let s = euxfel_write::convert_xspress3(&a.files, &a.out, &opts)
                .map_err(|e| e.to_string())?;
            report_stale(&s.stale_partials_removed);
            if a.common.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "command": "xspress3",
                        "path": s.path.to_string_lossy(),
                        "frames": s.frames,
                        "trains": s.trains,
                        "keys": s.keys,
                        "train_ids_from_timing": s.train_ids_from_timing,
                        "stale_partials_removed": paths_json(&s.stale_partials_removed),
                    })
                );
            } else {
                println!(
                    "xspress3: {} frames in {} trains -> {}",
                    s.frames,
                    s.trains,
                    s.path.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn overview(a: &OverviewArgs, signals: &Signals) -> Result<ExitCode, String> {
    if !a.run.is_dir() {
        return Err(format!("{}: not a run directory", a.run.display()));
    }
    if a.check {
        let path = a
            .out
            .clone()
            .unwrap_or_else(|| euxfel::overview::default_path(&a.run));
        let ok = euxfel_write::check_overview(&a.run, Some(&path)).map_err(|e| e.to_string())?;
        if a.common.json {
            println!(
                "{}",
                serde_json::json!({"command": "overview-check", "path": path.to_string_lossy(), "valid": ok})
            );
        } else {
            println!("Checking {} ...", path.display());
            if ok {
                println!("Source files match, overview file can be used");
            } else {
                println!("Source files don't match, overview file outdated");
            }
        }
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let opts = WriteOptions {
        overwrite: a.common.overwrite,
        stop: signals.install()?,
        ..WriteOptions::default()
    };
    let s = euxfel_write::write_overview(&a.run, a.out.as_deref(), &opts, &mut progress_printer())
        .map_err(|e| e.to_string())?;
    report("overview", &s, a.common.json);
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let signals = Signals::new();
    match run(cli, &signals) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xfel-write: {e}");
            signals.exit_code().unwrap_or(ExitCode::FAILURE)
        }
    }
}
