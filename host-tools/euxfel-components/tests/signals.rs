//! SIGTERM (a Slurm cancel or time limit, `kill`) on the real xfel-extract and
//! xfel-make-virtual-cxi: exit 143, one line, no output and no `.partial` left. And after
//! a SIGKILL, which cannot be caught, the `.partial` files stay: the next run with the same
//! output overwrites them and never takes one for a finished output.
//!
//! To stop a command at a known point without timing, a FIFO stands in for a file it opens
//! with a plain blocking open (an output file, or the run map `karabo_data_map.json`): the
//! command blocks there (the kernel shows `wait_for_partner`) when the signal arrives.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use fixtures::euxfel::{make_run, RunSpec};
use test_support::{fifo, send_signal};

const EXTRACT: &str = env!("CARGO_BIN_EXE_xfel-extract");
const CXI: &str = env!("CARGO_BIN_EXE_xfel-make-virtual-cxi");
/// Bound of every wait of these tests.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Held while a fixture is written and while a child starts: a child started meanwhile
/// would inherit the writer's descriptors with libhdf5's lock on them.
static FILES: Mutex<()> = Mutex::new(());

fn files_lock() -> MutexGuard<'static, ()> {
    FILES.lock().unwrap_or_else(|e| e.into_inner())
}

fn small_run(dir: &Path) {
    let spec = RunSpec {
        trains_per_sequence: 3,
        sequences: 1,
        modules: 2,
        frames: 2,
        frame_height: 2,
        frame_width: 2,
        ..RunSpec::default()
    };
    let _files = files_lock();
    make_run(dir, &spec).expect("run");
}

fn spawn(exe: &str, args: &[&Path]) -> Child {
    let _files = files_lock();
    Command::new(exe)
        .args(args)
        .env("HDF5_USE_FILE_LOCKING", "FALSE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn extract_stops_on_sigterm_and_leaves_nothing() {
    let td = tempfile::tempdir().expect("tempdir");
    let run = td.path().join("run");
    small_run(&run);
    for detector in [false, true] {
        let out = td.path().join(format!("out-{detector}"));
        std::fs::create_dir(&out).expect("mkdir");
        // One key streams data.npy through data.npy.partial; the stacked detector key
        // writes data.npy.partial, then train_ids.npy.partial and the others.
        let fifo = out.join(if detector {
            "train_ids.npy.partial"
        } else {
            "data.npy.partial"
        });
        fifo::make(&fifo);
        let mut cmd: Vec<&Path> = vec![run.as_ref()];
        if detector {
            cmd.push("--detector".as_ref());
        } else {
            cmd.extend(["SA1_XTD2_XGM/DOOCS/MAIN:output", "data.intensityTD"].map(Path::new));
        }
        cmd.extend(["--no-cache".as_ref(), "--out".as_ref(), out.as_path()]);
        let mut child = spawn(EXTRACT, &cmd);
        fifo::wait_blocked(&mut child, TIMEOUT);
        send_signal(&child, "TERM");
        let (status, out_text, err) = fifo::serve_until_exit(child, &fifo, true, TIMEOUT);
        assert_eq!(status, Some(143), "{err}");
        // (After the detector's own warnings, if any.)
        assert_eq!(
            err.lines().last(),
            Some("xfel-extract: terminated"),
            "{err}"
        );
        assert!(err.ends_with('\n'));
        assert_eq!(out_text, "");
        // Neither the outputs nor their .partial files (the FIFO was one of them).
        assert_eq!(names(&out), Vec::<String>::new(), "detector: {detector}");
    }
}

#[test]
fn make_virtual_cxi_stops_on_sigterm_and_writes_nothing() {
    let td = tempfile::tempdir().expect("tempdir");
    let run = td.path().join("run");
    small_run(&run);
    let map = run.join("karabo_data_map.json");
    let _ = std::fs::remove_file(&map);
    fifo::make(&map);
    let out = td.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let cxi = out.join("x.cxi");
    let mut child = spawn(
        CXI,
        &[
            run.as_path(),
            "--min-modules".as_ref(),
            "1".as_ref(),
            "-o".as_ref(),
            cxi.as_path(),
        ],
    );
    fifo::wait_blocked(&mut child, TIMEOUT);
    send_signal(&child, "TERM");
    let (status, out_text, err) = fifo::serve_until_exit(child, &map, false, TIMEOUT);
    assert_eq!(status, Some(143), "{err}");
    assert_eq!(err, "xfel-make-virtual-cxi: terminated\n");
    assert_eq!(out_text, "");
    assert_eq!(names(&out), Vec::<String>::new());
}

/// A SIGKILL leaves `.partial` files behind (nothing can remove them). The next extraction
/// to the same directory writes over them, renames its own complete files into place, and
/// leaves no `.partial`; a stale `.partial` is never renamed into place as a result.
#[test]
fn extract_after_a_sigkill_overwrites_its_partial_files() {
    let td = tempfile::tempdir().expect("tempdir");
    let run = td.path().join("run");
    small_run(&run);
    let args = |out: &Path| -> Vec<std::ffi::OsString> {
        vec![
            run.clone().into(),
            "--detector".into(),
            "--no-cache".into(),
            "--out".into(),
            out.into(),
        ]
    };
    // The reference: an extraction that was never killed.
    let clean = td.path().join("clean");
    let o = {
        let _files = files_lock();
        Command::new(EXTRACT)
            .args(args(&clean))
            .env("HDF5_USE_FILE_LOCKING", "FALSE")
            .output()
            .expect("run")
    };
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Killed (SIGKILL) once data.npy.partial is complete, blocked on the next output.
    let out = td.path().join("killed");
    std::fs::create_dir(&out).expect("mkdir");
    let fifo = out.join("train_ids.npy.partial");
    fifo::make(&fifo);
    let mut child = {
        let _files = files_lock();
        Command::new(EXTRACT)
            .args(args(&out))
            .env("HDF5_USE_FILE_LOCKING", "FALSE")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn")
    };
    fifo::wait_blocked(&mut child, TIMEOUT);
    send_signal(&child, "KILL");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), None);
    // What the killed run left: a complete-looking data.npy.partial, and the FIFO (the
    // test's own stand-in, removed; a killed run leaves a regular file there).
    std::fs::remove_file(&fifo).expect("rm fifo");
    assert_eq!(names(&out), ["data.npy.partial"]);
    // A truncated partial of another output, as a kill in the middle of a write leaves.
    std::fs::write(out.join("modules.npy.partial"), b"\x93NUMPY").expect("write");
    // One of a name the next run does not write: left as it is, never renamed into place.
    std::fs::write(out.join("stale.npy.partial"), b"junk").expect("write");

    let o = {
        let _files = files_lock();
        Command::new(EXTRACT)
            .args(args(&out))
            .env("HDF5_USE_FILE_LOCKING", "FALSE")
            .output()
            .expect("run")
    };
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut expected = names(&clean);
    expected.push("stale.npy.partial".into());
    expected.sort();
    assert_eq!(names(&out), expected);
    for name in names(&clean) {
        assert_eq!(
            std::fs::read(out.join(&name)).expect("read"),
            std::fs::read(clean.join(&name)).expect("read"),
            "{name}"
        );
    }
}

/// After a SIGKILL in the middle of writing the virtual CXI file, its `.partial` stays; the
/// next run with the same `-o` replaces it and writes the file whole.
#[test]
fn make_virtual_cxi_after_a_sigkill_overwrites_its_partial_file() {
    let td = tempfile::tempdir().expect("tempdir");
    let run = td.path().join("run");
    small_run(&run);
    let cxi = td.path().join("x.cxi");
    let partial = td.path().join("x.cxi.partial");
    // What a kill mid-write leaves: the start of an HDF5 file.
    std::fs::write(&partial, b"\x89HDF\r\n\x1a\n\0\0\0").expect("write");
    let o = {
        let _files = files_lock();
        Command::new(CXI)
            .arg(&run)
            .args(["--min-modules", "1", "-o"])
            .arg(&cxi)
            .env("HDF5_USE_FILE_LOCKING", "FALSE")
            .output()
            .expect("run")
    };
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!partial.exists());
    let f = hdf5::File::open(&cxi).expect("cxi");
    let shape = f
        .dataset("entry_1/instrument_1/detector_1/data")
        .expect("data")
        .shape();
    assert_eq!(shape, [6, 16, 1, 2, 2]);
}

/// One key (streamed through `data.npy.partial`): a `.partial` a SIGKILL left, and a
/// `data.npy` of the killed run's predecessor, are replaced by this run's complete files.
#[test]
fn extract_of_one_key_after_a_sigkill_overwrites_its_partial_file() {
    let td = tempfile::tempdir().expect("tempdir");
    let run = td.path().join("run");
    small_run(&run);
    let extract = |out: &Path| {
        let _files = files_lock();
        Command::new(EXTRACT)
            .arg(&run)
            .args([
                "SA1_XTD2_XGM/DOOCS/MAIN:output",
                "data.intensityTD",
                "--no-cache",
                "--out",
            ])
            .arg(out)
            .env("HDF5_USE_FILE_LOCKING", "FALSE")
            .output()
            .expect("run")
    };
    let clean = td.path().join("clean");
    let o = extract(&clean);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = td.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    std::fs::write(out.join("data.npy.partial"), vec![0xAB; 1 << 16]).expect("write");
    std::fs::write(out.join("data.npy"), b"\x93NUMPY").expect("write");
    let o = extract(&out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(names(&out), ["data.npy", "train_ids.npy"]);
    for name in names(&clean) {
        assert_eq!(
            std::fs::read(out.join(&name)).expect("read"),
            std::fs::read(clean.join(&name)).expect("read"),
            "{name}"
        );
    }
}

/// One key killed (SIGKILL) while its data is written, over the outputs of an earlier extract:
/// the earlier files are gone and the train IDs written are this run's, so no `data.npy` is
/// left beside the train IDs of another extract.
#[test]
fn extract_of_one_key_killed_mid_data_leaves_no_mismatched_pair() {
    let td = tempfile::tempdir().expect("tempdir");
    let run = td.path().join("run");
    small_run(&run);
    let clean = td.path().join("clean");
    let out = td.path().join("out");
    for (dir, key) in [(&clean, "data.intensityTD"), (&out, "data.xTD")] {
        let _files = files_lock();
        let o = Command::new(EXTRACT)
            .arg(&run)
            .args(["SA1_XTD2_XGM/DOOCS/MAIN:output", key, "--no-cache", "--out"])
            .arg(dir)
            .env("HDF5_USE_FILE_LOCKING", "FALSE")
            .output()
            .expect("run");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // The earlier extract's data (another key) is what must not survive.
    assert_ne!(
        std::fs::read(out.join("data.npy")).expect("read"),
        std::fs::read(clean.join("data.npy")).expect("read")
    );
    let fifo = out.join("data.npy.partial");
    fifo::make(&fifo);
    let mut child = spawn(
        EXTRACT,
        &[
            run.as_ref(),
            "SA1_XTD2_XGM/DOOCS/MAIN:output".as_ref(),
            "data.intensityTD".as_ref(),
            "--no-cache".as_ref(),
            "--out".as_ref(),
            out.as_ref(),
        ],
    );
    fifo::wait_blocked(&mut child, TIMEOUT);
    send_signal(&child, "KILL");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), None, "killed");
    assert_eq!(names(&out), ["data.npy.partial", "train_ids.npy"]);
    assert_eq!(
        std::fs::read(out.join("train_ids.npy")).expect("read"),
        std::fs::read(clean.join("train_ids.npy")).expect("read")
    );
}
