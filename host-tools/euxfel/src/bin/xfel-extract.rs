//! xfel-extract: write one key of EuXFEL run data as NumPy .npy files.
//!
//! `DIR/data.npy` holds the selected data (first axis = entries), `DIR/train_ids.npy`
//! one train ID per entry (uint64). Strings are written as a fixed-width unicode array,
//! compound keys as structured arrays. Ctrl-C stops it, removes its outputs and exits 130.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use euxfel::cli::RunLookup;
use euxfel::{DataCollection, OpenOptions, TrainSelection, Warning};

#[derive(Parser, Debug)]
#[command(
    name = "xfel-extract",
    about = "Extract one key of EuXFEL run data to NumPy .npy files (data.npy, train_ids.npy)"
)]
struct Args {
    /// RUN SOURCE KEY: the run directory or single .h5 file (left out with --proposal and
    /// --run), the source (e.g. SA1_XTD2_XGM/DOOCS/MAIN:output) and the key (e.g.
    /// data.intensityTD; control keys may omit '.value').
    #[arg(num_args = 2..=3, required = true, value_names = ["RUN", "SOURCE", "KEY"])]
    positional: Vec<String>,
    #[command(flatten)]
    lookup: RunLookup,
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Trains to select: 'A:B' (train IDs, B exclusive; either may be empty) or a
    /// comma-separated list 'A,B,C'. With --by-index they are positions instead
    /// (negative from the end; write --trains=-4: so the value is not taken for an option).
    #[arg(long)]
    trains: Option<String>,
    /// Interpret --trains as positions in the run (Python slice semantics), not train IDs.
    #[arg(long)]
    by_index: bool,
    /// Neither read nor write the run map cache (karabo_data_map.json).
    #[arg(long)]
    no_cache: bool,
    /// Print a JSON summary (source, key, dtype, shape, entries, trains, output paths) on stdout.
    #[arg(long)]
    json: bool,
}

fn parse_trains(s: &str, by_index: bool) -> Result<TrainSelection, String> {
    let bad = |v: &str| format!("--trains: {v:?} is not an integer");
    if let Some((a, b)) = s.split_once(':') {
        if by_index {
            let p = |v: &str| -> Result<Option<i64>, String> {
                if v.is_empty() {
                    Ok(None)
                } else {
                    v.trim().parse().map(Some).map_err(|_| bad(v))
                }
            };
            Ok(TrainSelection::IndexRange(p(a)?, p(b)?, None))
        } else {
            let p = |v: &str| -> Result<Option<u64>, String> {
                if v.is_empty() {
                    Ok(None)
                } else {
                    v.trim().parse().map(Some).map_err(|_| bad(v))
                }
            };
            Ok(TrainSelection::IdRange(p(a)?, p(b)?))
        }
    } else if by_index {
        let v: Result<Vec<i64>, _> = s
            .split(',')
            .map(|x| x.trim().parse().map_err(|_| bad(x)))
            .collect();
        Ok(TrainSelection::IndexList(v?))
    } else {
        let v: Result<Vec<u64>, _> = s
            .split(',')
            .map(|x| x.trim().parse().map_err(|_| bad(x)))
            .collect();
        Ok(TrainSelection::IdList(v?))
    }
}

fn run(a: &Args) -> Result<String, String> {
    let opts = OpenOptions {
        use_cache: !a.no_cache,
        ..OpenOptions::default()
    };
    let by_number = a.lookup.proposal.is_some();
    let (run, source, key) = match (by_number, a.positional.as_slice()) {
        (false, [run, source, key]) => (Some(PathBuf::from(run)), source, key),
        (true, [source, key]) => (None, source, key),
        (false, _) => {
            return Err("give RUN SOURCE KEY, or SOURCE KEY with --proposal and --run".into())
        }
        (true, _) => return Err("with --proposal and --run, give SOURCE KEY only".into()),
    };
    let dc = match &run {
        Some(run) if run.is_dir() => DataCollection::open_run(run, &opts),
        Some(run) => DataCollection::open_file(run),
        None => match (&a.lookup.proposal, &a.lookup.run) {
            (Some(p), Some(r)) => {
                let root = euxfel::data_root(a.lookup.data_root.as_deref());
                euxfel::open_run_by_number(&root, p, r, a.lookup.data, &opts)
            }
            _ => return Err("--proposal and --run go together".into()),
        },
    }
    .map_err(|e| {
        print_warnings(&e.skipped_files());
        e.to_string()
    })?;
    print_warnings(dc.warnings());
    let mut kd = dc.key(source, key).map_err(|e| e.to_string())?;
    if let Some(t) = &a.trains {
        let sel = parse_trains(t, a.by_index)?;
        kd = kd.select_trains(&sel).map_err(|e| e.to_string())?;
        print_warnings(kd.warnings());
    }
    let shape = kd.shape();
    let files = euxfel::extract_key(&kd, &a.out).map_err(|e| e.to_string())?;
    let summary = serde_json::json!({
        "source": kd.source,
        "key": kd.key,
        "dtype": kd.dtype.numpy_name(),
        "shape": shape,
        "entries": kd.len(),
        "trains": kd.train_ids.len(),
        "data": path_str(&files.data),
        "train_ids": path_str(&files.train_ids),
    });
    if a.json {
        Ok(summary.to_string())
    } else {
        Ok(format!(
            "{} {}: {} entries, dtype {}, shape {:?} -> {}",
            kd.source,
            kd.key,
            kd.len(),
            kd.dtype.numpy_name(),
            shape,
            a.out.display()
        ))
    }
}

fn print_warnings(warnings: &[Warning]) {
    for w in warnings {
        eprintln!("{w}");
    }
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn main() -> ExitCode {
    let a = Args::parse();
    if let Err(e) = euxfel::catch_interrupt() {
        eprintln!("xfel-extract: Ctrl-C will end the process at once: {e}");
    }
    match run(&a) {
        Ok(msg) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        // Whatever failed after Ctrl-C failed because of it; the outputs are removed.
        Err(_) if euxfel::interrupted() => {
            eprintln!("xfel-extract: interrupted");
            ExitCode::from(euxfel::EXIT_INTERRUPTED)
        }
        Err(e) => {
            eprintln!("xfel-extract: {e}");
            ExitCode::FAILURE
        }
    }
}
