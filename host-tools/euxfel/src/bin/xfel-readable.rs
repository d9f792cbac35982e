//! xfel-readable: check that EuXFEL data files can be read, with the output and
//! exit status of EXtra-data's `extra-data-readable`: one character per file
//! (`.` readable, `T` timed out, `E` the check failed, `X` unavailable or
//! unreadable), access times, then the files that are not readable.
//!
//! Each file is checked in a child process (this binary with `--check-one`), which
//! is killed after `--timeout` seconds: a hanging filesystem cannot hang the check.

use std::fmt::Write as _;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use euxfel::locality::get_locality;
use euxfel::{Error, FileAccess};

#[derive(Parser, Debug)]
#[command(
    name = "xfel-readable",
    about = "Check whether European XFEL data files are readable. Exit status: 0 if all files \
             are readable, 1 otherwise, 2 usage error, 130/143 stopped by SIGINT/SIGTERM."
)]
struct Args {
    /// Folders of input data (or files) to check.
    #[arg(value_name = "INPUT", required_unless_present = "check_one")]
    input: Vec<PathBuf>,
    /// Show the result for all files rather than only unreadable ones.
    #[arg(short = 'a', long = "all")]
    all: bool,
    /// Search directories passed as input recursively for HDF5 files.
    #[arg(short = 'r', long = "recursive")]
    recursive: bool,
    /// Timeout for the access check of one file, in seconds (0 or less: none may
    /// take any time; inf: no limit).
    #[arg(long, default_value_t = 5.0, value_name = "SECS", value_parser = parse_timeout)]
    timeout: f64,
    /// Check one file and print each stage (used by this tool itself).
    #[arg(long, hide = true, value_name = "PATH")]
    check_one: Option<PathBuf>,
}

/// A number of seconds; NaN is not one.
fn parse_timeout(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(t) if !t.is_nan() => Ok(t),
        _ => Err(format!("{s:?} is not a number of seconds")),
    }
}

/// Python's exception class name for an I/O error, as EXtra-data prints it.
fn io_class(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::NotFound => "FileNotFoundError",
        std::io::ErrorKind::PermissionDenied => "PermissionError",
        std::io::ErrorKind::IsADirectory => "IsADirectoryError",
        _ => "OSError",
    }
}

/// The class of exception EXtra-data would see for an error opening a file.
fn error_class(e: &Error) -> &'static str {
    match e {
        Error::Io { source, .. } => io_class(source),
        Error::NotHdf5 { .. } | Error::Hdf5 { .. } | Error::OutOfBounds { .. } => "OSError",
        Error::Missing { .. } | Error::FileStructure { .. } | Error::UnknownCategory { .. } => {
            "FileStructureError"
        }
        _ => "Exception",
    }
}

/// EXtra-data's `check_access`: print each stage before trying it, so that the last
/// line says where a hang happened. Exit status 1 if a check itself failed.
fn check_one(path: &Path) -> u8 {
    let mut out = std::io::stdout().lock();
    let mut say = |s: &str| {
        let _ = writeln!(out, "{s}");
        let _ = out.flush();
    };
    say("any access hangs");
    let start = Instant::now();
    let locality = match get_locality(path) {
        Ok(l) => l,
        Err(e) => {
            say(&format!("locality check raises {}", io_class(&e)));
            return 1;
        }
    };
    let prefix = match locality.as_str() {
        "UNAVAILABLE" => {
            say("dCache reports unavailable");
            return 0;
        }
        "NEARLINE" => {
            say("dCache reports tape only");
            return 0;
        }
        "NOT_ON_DCACHE" => "file on GPFS but ",
        _ => "dCache reports on disk but ",
    };
    say(&format!("{prefix}stat hangs"));
    if let Err(e) = std::fs::metadata(path) {
        say(&format!("{prefix}stat raises {}", io_class(&e)));
        return 1;
    }
    say(&format!("{prefix}read attempt hangs"));
    // A plain, blocking open first, as h5py's: the reader opens files non-blocking (so that
    // a FIFO among data files is refused at once), but this check is there to find a read
    // that hangs, here in a child process the timeout kills.
    if let Err(e) = std::fs::File::open(path) {
        say(&format!("{prefix}read attempt raises {}", io_class(&e)));
        return 0;
    }
    match FileAccess::open(path) {
        Err(e) => say(&format!("{prefix}read attempt raises {}", error_class(&e))),
        Ok(_) => say(&format!("readable_{}", start.elapsed().as_secs_f64())),
    }
    0
}

/// Python's `format(x, '.3g')`.
fn g3(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let exp = x.abs().log10().floor() as i32;
    // Rounding to 3 significant digits may carry into the next power of ten.
    let rounded: f64 = format!("{x:.2e}").parse().unwrap_or(x);
    let exp = if rounded.abs() >= 10f64.powi(exp + 1) {
        exp + 1
    } else {
        exp
    };
    let strip = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if !(-4..3).contains(&exp) {
        let s = format!("{x:.2e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let e: i32 = e.parse().unwrap_or(0);
        format!(
            "{}e{}{:02}",
            strip(m.to_string()),
            if e < 0 { '-' } else { '+' },
            e.abs()
        )
    } else {
        strip(format!("{x:.*}", (2 - exp).max(0) as usize))
    }
}

/// How often a wait for a check polls for SIGINT/SIGTERM.
const STOP_POLL: Duration = Duration::from_millis(100);

/// Run the check of one file in a child process; (result character, last line).
/// `None` if SIGINT or SIGTERM came meanwhile: the child is killed, not left
/// hanging on the file after this process ends.
fn monitor(exe: &Path, path: &Path, timeout: Duration) -> Option<(char, String)> {
    let child = Command::new(exe)
        .arg("--check-one")
        .arg(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return Some(('E', format!("check command fails to start: {e}"))),
    };
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let (tx, rx) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
            let _ = tx.send(());
        });
    }
    let start = Instant::now();
    let done = loop {
        let left = timeout.saturating_sub(start.elapsed());
        match rx.recv_timeout(left.min(STOP_POLL)) {
            // The reader saw the end of the child's output.
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => break true,
            Err(mpsc::RecvTimeoutError::Timeout) if euxfel::interrupted() => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Err(mpsc::RecvTimeoutError::Timeout) if left <= STOP_POLL => break false,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    };
    if !done {
        let _ = child.kill();
    }
    let status = child.wait();
    let last = lines
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .last()
        .cloned();
    Some(match (done, last) {
        (false, Some(l)) => ('T', l),
        (false, None) => ('T', "Status unknown, no output from check command".into()),
        (true, Some(l)) if l.starts_with("readable") => ('.', l),
        (true, l) => {
            let l = l.unwrap_or_else(|| "Status unknown, no output from check command".into());
            match status {
                Ok(s) if s.success() => ('X', l),
                _ => ('E', l),
            }
        }
    })
}

fn collect(a: &Args) -> Vec<PathBuf> {
    fn walk(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            // As Python's `glob('**/*.h5')`: symbolic links to directories are not
            // followed (a link to a parent would recurse without end).
            let linked = p
                .symlink_metadata()
                .is_ok_and(|m| m.file_type().is_symlink());
            if p.is_dir() && recursive && !linked {
                walk(&p, recursive, out);
            } else if p.extension().is_some_and(|e| e == "h5") {
                out.push(p);
            }
        }
    }
    let mut paths = Vec::new();
    for inp in &a.input {
        if inp.is_dir() {
            walk(inp, a.recursive, &mut paths);
        } else if inp.is_file() {
            paths.push(inp.clone());
        }
    }
    paths
}

fn run(a: &Args) -> u8 {
    if let Some(p) = &a.check_one {
        return check_one(p);
    }
    let paths = collect(a);
    if paths.is_empty() {
        return emit("No HDF5 files to check\n").map_or(1, |()| 0);
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("xfel-readable: cannot find its own executable: {e}");
            return 1;
        }
    };
    // Past what a Duration holds (inf): no limit.
    let timeout = Duration::try_from_secs_f64(a.timeout.max(0.0)).unwrap_or(Duration::MAX);
    // EXtra-data uses min(32, cpus / 4) threads (and fails below 4 CPUs); at least 1 here.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let nthreads = (cpus / 4).clamp(1, 32).min(paths.len());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let states: Mutex<Vec<(PathBuf, String)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..nthreads {
            s.spawn(|| loop {
                if euxfel::interrupted() {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(p) = paths.get(i) else {
                    break;
                };
                let Some((c, state)) = monitor(&exe, p, timeout) else {
                    break;
                };
                let mut out = std::io::stdout().lock();
                let _ = write!(out, "{c}");
                let _ = out.flush();
                states
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((p.clone(), state));
            });
        }
    });
    if let Some(sig) = euxfel::stop_signal() {
        // The other checks were not done: no list that reads as complete.
        let _ = emit("\n");
        eprintln!("xfel-readable: {}", sig.verb());
        return sig.exit_code();
    }
    let mut text = String::from("\n");
    let states = states.into_inner().unwrap_or_else(|e| e.into_inner());
    let times: Vec<f64> = states
        .iter()
        .filter_map(|(_, s)| s.strip_prefix("readable_").and_then(|t| t.parse().ok()))
        .collect();
    if times.is_empty() {
        text.push_str("no files are readable\n");
    } else {
        let avg = times.iter().sum::<f64>() / times.len() as f64;
        let max = times.iter().cloned().fold(f64::MIN, f64::max);
        let _ = writeln!(
            text,
            "average access time: {}s, max access time: {}s",
            g3(avg),
            g3(max)
        );
    }
    let mut shown: Vec<(String, String)> = states
        .iter()
        .filter(|(_, s)| a.all || !s.starts_with("readable"))
        .map(|(p, s)| {
            let state = s.split_once('_').map_or(s.as_str(), |(a, _)| a);
            (p.to_string_lossy().into_owned(), state.to_string())
        })
        .collect();
    if shown.is_empty() {
        text.push_str("all files readable\n");
    } else {
        shown.sort();
        let col = shown
            .iter()
            .map(|(p, _)| p.chars().count())
            .max()
            .unwrap_or(0)
            + 3;
        for (p, s) in shown {
            let _ = writeln!(text, "{p:<col$} {s}");
        }
    }
    emit(&text).map_or(1, |()| u8::from(times.len() != paths.len()))
}

/// Write `text` to stdout now; a failed write (a full disk, a closed pipe) is an
/// error, so that a cut list never ends with exit 0.
fn emit(text: &str) -> Result<(), ()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| {
            // A reader that left (`| head`) needs no message.
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                eprintln!("xfel-readable: cannot write the result: {e}");
            }
        })
}

fn main() -> ExitCode {
    let a = Args::parse();
    if a.check_one.is_none() {
        // Stop the checks (and kill their processes) on Ctrl-C or a job's end (SIGTERM).
        if let Err(e) = euxfel::catch_interrupt() {
            eprintln!("xfel-readable: signals will end the process at once: {e}");
        }
    }
    ExitCode::from(run(&a))
}

#[cfg(test)]
mod tests {
    use super::g3;

    #[test]
    fn three_significant_digits_like_python() {
        for (x, s) in [
            (0.0123456, "0.0123"),
            (1.0, "1"),
            (0.5, "0.5"),
            (123.4, "123"),
            (999.6, "1e+03"),
            (1234.0, "1.23e+03"),
            (0.00001234, "1.23e-05"),
            (0.09999, "0.1"),
        ] {
            assert_eq!(g3(x), s, "{x}");
        }
    }
}
