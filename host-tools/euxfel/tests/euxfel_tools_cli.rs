//! The real xfel-readable and xfel-locality on odd inputs: symbolic link loops,
//! timeouts past what a duration holds, odd dCache pseudo-files, output that
//! cannot be written.

use std::path::Path;
use std::process::Command;

use fixtures::euxfel::{make_run, Format, RunSpec};

const READABLE: &str = env!("CARGO_BIN_EXE_xfel-readable");
const LOCALITY: &str = env!("CARGO_BIN_EXE_xfel-locality");

/// (exit code, stdout, stderr); stdout to /dev/full with `full`.
fn run(bin: &str, args: &[&str], full: bool) -> (i32, String, String) {
    let mut cmd = Command::new(bin);
    cmd.args(args).env("HDF5_USE_FILE_LOCKING", "FALSE");
    if full {
        let dev_full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        cmd.stdout(dev_full);
    }
    let o = cmd.output().expect("spawn");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// One readable EuXFEL file at `dir/RAW-R0001-DA01-S00000.h5`.
fn one_file(dir: &Path) {
    let spec = RunSpec {
        format: Format::V1_3,
        trains_per_sequence: 3,
        sequences: 1,
        modules: 0,
        ..RunSpec::default()
    };
    let tmp = dir.join("run");
    make_run(&tmp, &spec).expect("fixture");
    let first = std::fs::read_dir(&tmp)
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "h5"))
        .expect("an .h5 file");
    std::fs::rename(first, dir.join("RAW-R0001-DA01-S00000.h5")).expect("mv");
    std::fs::remove_dir_all(&tmp).expect("rm");
}

#[test]
fn readable_link_loops_timeouts_and_unwritable_output() {
    let td = tempfile::tempdir().expect("tempdir");
    let sub = td.path().join("sub");
    std::fs::create_dir(&sub).expect("mkdir");
    one_file(&sub);
    // A link back to the parent: `-r` must not follow it (Python's glob does not).
    std::os::unix::fs::symlink("..", sub.join("loop")).expect("symlink");
    let top = td.path().to_str().expect("utf8");
    let (code, out, err) = run(READABLE, &[top, "-r"], false);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.lines().next(), Some("."), "{out}");

    // No limit for a timeout past what a duration holds; NaN is not a timeout.
    for t in ["inf", "1e30"] {
        let (code, out, err) = run(READABLE, &[top, "-r", "--timeout", t], false);
        assert_eq!(code, 0, "--timeout {t}: {out}{err}");
        assert!(out.ends_with("all files readable\n"), "{out}");
    }
    let (code, _, err) = run(READABLE, &[top, "--timeout", "nan"], false);
    assert_eq!(code, 2);
    assert!(err.contains("\"nan\" is not a number of seconds"), "{err}");

    let (code, _, err) = run(READABLE, &[top, "-r"], true);
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot write the result: No space left on device"),
        "{err}"
    );
}

#[test]
fn locality_of_odd_pseudo_files_and_unwritable_output() {
    let td = tempfile::tempdir().expect("tempdir");
    let d = td.path();
    for name in ["a.h5", "b.h5", "c.h5", "d.h5"] {
        std::fs::write(d.join(name), b"x").expect("write");
    }
    let pseudo = |name: &str| d.join(format!(".(get)({name})(locality)"));
    std::fs::write(pseudo("a.h5"), b"ONLINE\nNEARLINE\n").expect("write");
    std::fs::write(pseudo("b.h5"), b"\xff\xfe").expect("write");
    std::fs::create_dir(pseudo("c.h5")).expect("mkdir");
    std::fs::write(pseudo("d.h5"), b" NEARLINE \r\n").expect("write");
    let ds = d.to_str().expect("utf8");
    let (code, out, err) = run(LOCALITY, &[ds], false);
    // Tape only (d) and unknown (a, b, c), each pseudo-file counted on disk.
    assert_eq!(code, 1 | 4, "{out}{err}");
    let last = out.lines().last().expect("a line");
    assert_eq!(
        last,
        "Unknown locality: {'ONLINE\\nNEARLINE', 'error: Is a directory (os error 21)', \
         'error: stream did not contain valid UTF-8'}"
    );
    assert!(
        out.contains(&format!("Only on tape:\n  {ds}/d.h5\n")),
        "{out}"
    );

    let (code, _, err) = run(LOCALITY, &[ds], true);
    assert_eq!(code, 1 | 4 | 8);
    assert!(
        err.contains("cannot write the output: No space left on device"),
        "{err}"
    );
}

/// The children of a process (of all its threads), from /proc.
fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
    {
        let Ok(task) = task else { continue };
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        found.extend(
            list.split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
    }
    found
}

/// SIGTERM (a Slurm job's end) and SIGINT while a check hangs on a file (a FIFO
/// whose open blocks): the check's process is killed with the tool, not left
/// behind blocked on the file; exit 128 + the signal, no list of the files.
#[test]
fn readable_stopped_by_a_signal_kills_its_hanging_check() {
    let td = tempfile::tempdir().expect("tempdir");
    let fifo = td.path().join("RAW-R0001-DA01-S00000.h5");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    for (signal, code, verb) in [("TERM", 143, "terminated"), ("INT", 130, "interrupted")] {
        let tool = Command::new(READABLE)
            .args([td.path().to_str().expect("utf8"), "--timeout", "inf"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        // Its check process appears once it started on the FIFO (bounded wait).
        let mut check = None;
        for _ in 0..600 {
            check = children(tool.id()).first().copied();
            if check.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let check = check.expect("a check process");
        let sent = Command::new("kill")
            .args([format!("-{signal}"), tool.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        let o = tool.wait_with_output().expect("wait");
        let alive = Path::new(&format!("/proc/{check}")).exists();
        if alive {
            let _ = Command::new("kill")
                .args(["-9", &check.to_string()])
                .status();
        }
        assert!(!alive, "SIG{signal}: check process {check} left behind");
        assert_eq!(o.status.code(), Some(code), "SIG{signal}");
        assert_eq!(
            String::from_utf8_lossy(&o.stderr),
            format!("xfel-readable: {verb}\n")
        );
        assert_eq!(String::from_utf8_lossy(&o.stdout), "\n");
    }
}
