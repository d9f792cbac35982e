//! SIGTERM (a Slurm cancel or time limit, `kill`) and SIGINT (Ctrl-C) on the real lsxfel
//! and xfel-validate: they stop, leave nothing behind, print one line and exit 128 + the
//! signal; a second signal ends them at once.
//!
//! To stop them at a known point without timing, the run map `karabo_data_map.json` is a
//! FIFO: the command blocks opening it (the kernel shows `wait_for_partner`), the signal
//! arrives there, and the test then opens the other end so the command can go on and notice.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fixtures::euxfel::{make_run, Format, RunSpec};

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
    mkfifo(&fifo);
    fifo
}

fn mkfifo(path: &Path) {
    let made = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(made.success());
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

/// Whether a thread of `pid` waits in the open of a FIFO for the other end.
fn blocked_on_fifo(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|t| {
            std::fs::read_to_string(t.path().join("wchan")).is_ok_and(|w| w == "wait_for_partner")
        })
}

fn wait_blocked(child: &mut Child) {
    let start = Instant::now();
    while !blocked_on_fifo(child.id()) {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "ended before the FIFO"
        );
        assert!(start.elapsed() < TIMEOUT, "never opened the FIFO");
        std::thread::sleep(POLL);
    }
}

fn signal(child: &Child, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) on our own child's pid, which it still is (not yet waited for).
    let r = unsafe { libc::kill(pid, sig) };
    assert_eq!(r, 0, "kill");
}

/// Opens the FIFO's writing end (the command reads the run map) each time the command
/// waits for it, until the command ends; (exit code, stdout, stderr).
fn serve_until_exit(mut child: Child, fifo: &Path) -> (Option<i32>, String, String) {
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            panic!("did not stop after the signal");
        }
        // ENXIO while no reader has it open; closed at once: the reader sees an empty map.
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(fifo);
        std::thread::sleep(POLL);
    }
    output(child)
}

fn output(child: Child) -> (Option<i32>, String, String) {
    let o = child.wait_with_output().expect("output");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Waits (bounded) for the child to end without serving its FIFO.
fn ends_by_itself(mut child: Child) -> (Option<i32>, String, String) {
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            panic!("a second signal did not end the process");
        }
        std::thread::sleep(POLL);
    }
    output(child)
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
        (libc::SIGTERM, 143, "lsxfel: terminated\n"),
        (libc::SIGINT, 130, "lsxfel: interrupted\n"),
    ] {
        let mut child = spawn(LSXFEL, &[dir]);
        wait_blocked(&mut child);
        signal(&child, sig);
        let (status, out, err) = serve_until_exit(child, &fifo);
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
    wait_blocked(&mut child);
    signal(&child, libc::SIGTERM);
    let (status, out, err) = serve_until_exit(child, &fifo);
    assert_eq!(status, Some(143), "{out}{err}");
    assert_eq!(err, "xfel-validate: terminated\n");
    // The header only: no report of the files not validated.
    assert!(!out.contains("problems"), "{out}");
    assert!(out.starts_with("Checking run directory: "), "{out}");

    // With --json: one document saying so.
    let mut child = spawn(VALIDATE, &["-j", "1", "--json", dir]);
    wait_blocked(&mut child);
    signal(&child, libc::SIGTERM);
    let (status, out, _) = serve_until_exit(child, &fifo);
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
        (libc::SIGTERM, libc::SIGTERM, 143),
        (libc::SIGINT, libc::SIGTERM, 143),
        (libc::SIGTERM, libc::SIGINT, 130),
    ] {
        for exe in [LSXFEL, VALIDATE] {
            let mut child = spawn(exe, &[dir]);
            wait_blocked(&mut child);
            signal(&child, first);
            // Still blocked on the FIFO: the first signal only set the flag.
            std::thread::sleep(POLL);
            assert!(child.try_wait().expect("wait").is_none(), "{exe}");
            signal(&child, second);
            let (status, _, _) = ends_by_itself(child);
            assert_eq!(status, Some(code), "{exe}: {first} then {second}");
        }
    }
}
