//! SIGTERM (a Slurm cancel or time limit, `kill`) and SIGINT (Ctrl-C) on the real lsxfel
//! and xfel-validate: they stop, leave nothing behind, print one line and exit 128 + the
//! signal; a second signal ends them at once.
//!
//! To stop them at a known point without timing, the run map `karabo_data_map.json` is a
//! FIFO: the command blocks opening it (the kernel shows `wait_for_partner`), the signal
//! arrives there, and the test then opens the other end so the command can go on and notice.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use fixtures::euxfel::{make_run, Format, RunSpec};
use test_support::{fifo, send_signal, wait_exit};

const LSXFEL: &str = env!("CARGO_BIN_EXE_lsxfel");
const VALIDATE: &str = env!("CARGO_BIN_EXE_xfel-validate");
/// Bound of every wait of these tests.
const TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(10);

/// Held while a fixture is written and while a child starts: a child started meanwhile
/// would inherit the writer's descriptors with libhdf5's lock on them.
static FILES: Mutex<()> = Mutex::new(());

fn files_lock() -> MutexGuard<'static, ()> {
    FILES.lock().unwrap_or_else(|e| e.into_inner())
}

/// A small run whose run map is a FIFO.
fn run_with_fifo_map(dir: &Path) -> PathBuf {
    let spec = RunSpec {
        format: Format::V1_3,
        trains_per_sequence: 5,
        sequences: 2,
        modules: 1,
        frames: 1,
        frame_height: 2,
        frame_width: 2,
        ..RunSpec::default()
    };
    {
        let _files = files_lock();
        make_run(dir, &spec).expect("fixture");
    }
    let fifo = dir.join("karabo_data_map.json");
    let _ = std::fs::remove_file(&fifo);
    fifo::make(&fifo);
    fifo
}

fn spawn(exe: &str, args: &[&str]) -> Child {
    let _files = files_lock();
    Command::new(exe)
        .args(args)
        .env("HDF5_USE_FILE_LOCKING", "FALSE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

/// The names in `dir` other than the run's `.h5` files.
fn leftovers(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".h5"))
        .collect();
    v.sort();
    v
}

#[test]
fn lsxfel_stops_on_sigterm_and_sigint() {
    let td = tempfile::tempdir().expect("tempdir");
    let fifo = run_with_fifo_map(td.path());
    let dir = td.path().to_str().expect("utf8");
    for (sig, code, line) in [
        ("TERM", 143, "lsxfel: terminated\n"),
        ("INT", 130, "lsxfel: interrupted\n"),
    ] {
        let mut child = spawn(LSXFEL, &[dir]);
        fifo::wait_blocked(&mut child, TIMEOUT);
        send_signal(&child, sig);
        let (status, out, err) = fifo::serve_until_exit(child, &fifo, false, TIMEOUT);
        assert_eq!(status, Some(code), "signal {sig}: {err}");
        assert_eq!(err, line);
        // A listing cut short is not printed; no run map (nor its temporary file) written.
        assert_eq!(out, "");
        assert_eq!(leftovers(td.path()), ["karabo_data_map.json"]);
        assert!(std::fs::metadata(&fifo).is_ok_and(|m| !m.is_file()));
    }
}

#[test]
fn xfel_validate_stops_on_sigterm() {
    let td = tempfile::tempdir().expect("tempdir");
    let fifo = run_with_fifo_map(td.path());
    let dir = td.path().to_str().expect("utf8");

    let mut child = spawn(VALIDATE, &["-j", "1", dir]);
    fifo::wait_blocked(&mut child, TIMEOUT);
    send_signal(&child, "TERM");
    let (status, out, err) = fifo::serve_until_exit(child, &fifo, false, TIMEOUT);
    assert_eq!(status, Some(143), "{out}{err}");
    assert_eq!(err, "xfel-validate: terminated\n");
    // The header only: no report of the files not validated.
    assert!(!out.contains("problems"), "{out}");
    assert!(out.starts_with("Checking run directory: "), "{out}");

    // With --json: one document saying so.
    let mut child = spawn(VALIDATE, &["-j", "1", "--json", dir]);
    fifo::wait_blocked(&mut child, TIMEOUT);
    send_signal(&child, "TERM");
    let (status, out, _) = fifo::serve_until_exit(child, &fifo, false, TIMEOUT);
    assert_eq!(status, Some(143));
    let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(doc, serde_json::json!({"ok": false, "error": "terminated"}));
    assert_eq!(leftovers(td.path()), ["karabo_data_map.json"]);
}

/// While the first signal is being handled (here: the command is still blocked where it
/// got it), a second one ends the process at once, with its own status.
#[test]
fn a_second_signal_ends_at_once() {
    let td = tempfile::tempdir().expect("tempdir");
    run_with_fifo_map(td.path());
    let dir = td.path().to_str().expect("utf8");
    for (first, second, code) in [
        ("TERM", "TERM", 143),
        ("INT", "TERM", 143),
        ("TERM", "INT", 130),
    ] {
        for exe in [LSXFEL, VALIDATE] {
            let mut child = spawn(exe, &[dir]);
            fifo::wait_blocked(&mut child, TIMEOUT);
            send_signal(&child, first);
            // Still blocked on the FIFO: the first signal only set the flag.
            std::thread::sleep(POLL);
            assert!(child.try_wait().expect("wait").is_none(), "{exe}");
            send_signal(&child, second);
            // Ends by itself, the FIFO not served.
            let status = wait_exit(&mut child, TIMEOUT).code();
            assert_eq!(status, Some(code), "{exe}: {first} then {second}");
        }
    }
}
