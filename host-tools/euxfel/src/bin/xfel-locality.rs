//! xfel-locality: where the files of a run directory are on dCache, with the output
//! and exit status of EXtra-data's `extra-data-locality` (bitmask: 1 only on tape,
//! 2 unavailable, 4 unknown locality; 255 if the path does not exist), and 8 when
//! the output could not be written.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use euxfel::locality::{get_locality, locality_code};

#[derive(Parser, Debug)]
#[command(
    name = "xfel-locality",
    about = "Checks locality of files in the directory. Exit status: bitmask of 1 (only on tape), \
             2 (unavailable), 4 (unknown locality), 8 (the output could not be written); 255 if the \
             path is not found."
)]
struct Args {
    /// Run directory of HDF5 files (or one file).
    path: PathBuf,
}

/// Exit status bit when the output could not be written (a full disk, a closed
/// pipe): the counts a script reads from it are missing.
const EXIT_NOT_WRITTEN: u8 = 8;

/// Python's `repr` of a string, as EXtra-data prints the unknown localities.
fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut r = String::from(quote);
    for c in s.chars() {
        match c {
            '\\' => r.push_str("\\\\"),
            '\n' => r.push_str("\\n"),
            '\r' => r.push_str("\\r"),
            '\t' => r.push_str("\\t"),
            c if c == quote => {
                r.push('\\');
                r.push(c);
            }
            c if (c as u32) < 0x20 || (0x7f..0xa0).contains(&(c as u32)) => {
                r.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => r.push(c),
        }
    }
    r.push(quote);
    r
}

/// Writes to stdout that remember the first error.
struct Out {
    error: Option<std::io::Error>,
}

impl Out {
    fn write(&mut self, text: &str) {
        if self.error.is_none() {
            let mut out = std::io::stdout().lock();
            if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                self.error = Some(e);
            }
        }
    }
}

fn run(a: &Args) -> u8 {
    let mut out = Out { error: None };
    let code = check(a, &mut out);
    match out.error {
        None => code,
        Some(e) => {
            // A reader that left (`| head`) needs no message.
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                eprintln!("xfel-locality: cannot write the output: {e}");
            }
            code | EXIT_NOT_WRITTEN
        }
    }
}

fn check(a: &Args, out: &mut Out) -> u8 {
    let base = &a.path;
    if !base.exists() {
        out.write(&format!("Path '{}' is not found\n", a.path.display()));
        return 255;
    }
    let mut files: Vec<PathBuf> = if base.is_dir() {
        std::fs::read_dir(base)
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
    out.write(&format!(
        "Checking {} files in {}\n",
        files.len(),
        a.path.display()
    ));
    let mut by_loc: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in &files {
        // A pseudo-file that cannot be read makes the locality unknown.
        let loc = get_locality(f).unwrap_or_else(|e| format!("error: {e}"));
        by_loc
            .entry(loc)
            .or_default()
            .push(f.to_string_lossy().into_owned());
        let n = |k: &str| by_loc.get(k).map_or(0, Vec::len);
        let ondisk = n("NOT_ON_DCACHE") + n("ONLINE_AND_NEARLINE") + n("ONLINE");
        out.write(&format!(
            "{ondisk} on disk, {} only on tape, {} unavailable    \r",
            n("NEARLINE"),
            n("UNAVAILABLE")
        ));
    }
    let mut end = String::from("\n");
    let mut code = 0;
    for (loc, label, bit) in [
        ("NEARLINE", "Only on tape:", 1),
        ("UNAVAILABLE", "Unavailable:", 2),
    ] {
        if let Some(fs) = by_loc.get(loc) {
            code |= bit;
            let _ = writeln!(end, "{label}");
            for f in fs {
                let _ = writeln!(end, "  {f}");
            }
        }
    }
    let unknown: BTreeSet<&String> = by_loc.keys().filter(|l| locality_code(l) == 0).collect();
    if !unknown.is_empty() {
        code |= 4;
        let items: Vec<String> = unknown.iter().map(|l| py_repr(l)).collect();
        let _ = writeln!(end, "Unknown locality: {{{}}}", items.join(", "));
    }
    out.write(&end);
    code
}

fn main() -> ExitCode {
    ExitCode::from(run(&Args::parse()))
}
