//! xfel-locality: where the files of a run directory are on dCache, with the output
//! and exit status of EXtra-data's `extra-data-locality` (bitmask: 1 only on tape,
//! 2 unavailable, 4 unknown locality; 255 if the path does not exist).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use euxfel::locality::{get_locality, locality_code};

#[derive(Parser, Debug)]
#[command(
    name = "xfel-locality",
    about = "Checks locality of files in the directory. Exit status: bitmask of 1 (only on tape), \
             2 (unavailable), 4 (unknown locality); 255 if the path is not found."
)]
struct Args {
    /// Run directory of HDF5 files (or one file).
    path: String,
}

fn run(a: &Args) -> u8 {
    let base = PathBuf::from(&a.path);
    if !base.exists() {
        println!("Path '{}' is not found", a.path);
        return 255;
    }
    let mut files: Vec<PathBuf> = if base.is_dir() {
        std::fs::read_dir(&base)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| base.join(e.file_name()))
            .filter(|p| p.is_file())
            .collect()
    } else if base.is_file() {
        vec![base.clone()]
    } else {
        Vec::new()
    };
    files.sort();
    println!("Checking {} files in {}", files.len(), a.path);
    let mut by_loc: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut out = std::io::stdout().lock();
    for f in &files {
        // A pseudo-file that cannot be read makes the locality unknown.
        let loc = get_locality(f).unwrap_or_else(|e| format!("error: {e}"));
        by_loc
            .entry(loc)
            .or_default()
            .push(f.to_string_lossy().into_owned());
        let n = |k: &str| by_loc.get(k).map_or(0, Vec::len);
        let ondisk = n("NOT_ON_DCACHE") + n("ONLINE_AND_NEARLINE") + n("ONLINE");
        let _ = write!(
            out,
            "{ondisk} on disk, {} only on tape, {} unavailable    \r",
            n("NEARLINE"),
            n("UNAVAILABLE")
        );
        let _ = out.flush();
    }
    let _ = writeln!(out);
    let mut code = 0;
    for (loc, label, bit) in [
        ("NEARLINE", "Only on tape:", 1),
        ("UNAVAILABLE", "Unavailable:", 2),
    ] {
        if let Some(fs) = by_loc.get(loc) {
            code |= bit;
            let _ = writeln!(out, "{label}");
            for f in fs {
                let _ = writeln!(out, "  {f}");
            }
        }
    }
    let unknown: BTreeSet<&String> = by_loc.keys().filter(|l| locality_code(l) == 0).collect();
    if !unknown.is_empty() {
        code |= 4;
        let items: Vec<String> = unknown.iter().map(|l| format!("'{l}'")).collect();
        let _ = writeln!(out, "Unknown locality: {{{}}}", items.join(", "));
    }
    code
}

fn main() -> ExitCode {
    ExitCode::from(run(&Args::parse()))
}
