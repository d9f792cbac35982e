//! The real lsxfel and xfel-extract binaries on fixture runs.

use std::path::Path;
use std::process::Command;

use fixtures::euxfel::{make_run, Format, RunSpec};

/// Run a binary. Other tests of this process write fixtures at the same time, and a
/// child inherits their open HDF5 files with libhdf5's lock on them: the children
/// do not lock (they only read closed files).
fn run(bin: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(bin)
        .args(args)
        .env("HDF5_USE_FILE_LOCKING", "FALSE")
        .output()
        .expect("spawn");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn fixture(dir: &Path) {
    let spec = RunSpec {
        format: Format::V1_3,
        trains_per_sequence: 10,
        sequences: 2,
        modules: 2,
        frames: 2,
        frame_height: 4,
        frame_width: 6,
        ..RunSpec::default()
    };
    make_run(dir, &spec).expect("fixture");
}

const LSXFEL: &str = env!("CARGO_BIN_EXE_lsxfel");
/// xfel-extract lives in euxfel-components (for its --detector).
fn extract() -> std::path::PathBuf {
    test_support::workspace_bin("euxfel-components", "xfel-extract")
}

#[test]
fn lsxfel_run_file_and_errors() {
    let td = tempfile::tempdir().expect("tempdir");
    let rd = td.path().join("r0450");
    fixture(&rd);
    let rs = rd.to_str().expect("utf8");
    let (code, out, err) = run(LSXFEL, &[rs]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("r0450 : Run directory\n\n# of trains:    20\n"),
        "{out}"
    );
    assert!(out.contains(
        "2 XTDF detector modules of FXE_DET_LPD1M-1/DET/*\n  e.g. module 0 : 4 x 6 pixels\n"
    ));
    assert!(out.contains("  2 frames per train, up to 40 frames total\n"));
    assert!(out.contains("  - SA1_XTD2_XGM/DOOCS/MAIN:output\n"));
    // The run map was written and is used on the next call (same output).
    assert!(rd.join("karabo_data_map.json").exists());
    assert_eq!(run(LSXFEL, &[rs]).1, out);

    let (code, out, _) = run(
        LSXFEL,
        &[rs, "--detail", "SA1_XTD2_XGM/DOOCS/MAIN", "--no-cache"],
    );
    assert_eq!(code, 0);
    assert!(out.contains("Showing 2 / 10 sources\n"));
    assert!(out.contains("      - beamPosition.ixPos\t[float32]\n"));
    assert!(
        out.contains("    - Additional run keys (1 entry per run):\n      - classId\t[string]\n")
    );
    assert!(out.contains("      - data.intensityTD\t[float32, entry shape (1000,)]\n"));

    let f = rd.join("RAW-R0450-DA01-S00001.h5");
    let (code, out, _) = run(LSXFEL, &[f.to_str().expect("utf8")]);
    assert_eq!(code, 0);
    assert!(out.starts_with("RAW-R0450-DA01-S00001.h5 : Data file\n\n# of trains:    10\n"));
    let (code, out, _) = run(LSXFEL, &[rs, f.to_str().expect("utf8")]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "r0450 : Run of   20 trains, with   4 detector files and   2 others\n\
         RAW-R0450-DA01-S00001.h5 : Data file\n  10 trains, 8 sources\n"
    );

    let missing = td.path().join("nope");
    let (code, out, _) = run(LSXFEL, &[missing.to_str().expect("utf8")]);
    assert_eq!(code, 2);
    assert!(out.ends_with(": File/folder not found\n"));
    let (code, _, err) = run(LSXFEL, &[rs, "--source", "NOTHING"]);
    assert_eq!(code, 1);
    assert_eq!(err, "No matches for pattern ('*NOTHING*', '*')\n");

    // A broken file in a run is skipped with a message naming it.
    std::fs::write(rd.join("RAW-R0450-DA02-S00000.h5"), b"garbage").expect("write");
    let (code, out, err) = run(LSXFEL, &[rs, "--no-cache"]);
    assert_eq!(code, 0);
    assert!(
        err.contains("Skipping file RAW-R0450-DA02-S00000.h5"),
        "{err}"
    );
    assert!(out.contains("# of trains:    20\n"));
}

fn npy_header(p: &Path) -> (String, usize) {
    let b = std::fs::read(p).expect("read npy");
    assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
    let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
    assert_eq!((10 + hl) % 64, 0);
    (
        String::from_utf8_lossy(&b[10..10 + hl]).into_owned(),
        b.len() - 10 - hl,
    )
}

#[test]
fn xfel_extract_writes_npy() {
    let td = tempfile::tempdir().expect("tempdir");
    let rd = td.path().join("run");
    fixture(&rd);
    let rs = rd.to_str().expect("utf8");
    let out = td.path().join("out");
    let os = out.to_str().expect("utf8");
    let (code, so, err) = run(
        extract(),
        &[
            rs,
            "FXE_DET_LPD1M-1/DET/1CH0:xtdf",
            "image.data",
            "--out",
            os,
            "--trains",
            "10008:10012",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&so).expect("json");
    assert_eq!(v["shape"], serde_json::json!([8, 1, 4, 6]));
    assert_eq!(v["dtype"], "uint16");
    let (h, n) = npy_header(&out.join("data.npy"));
    assert!(
        h.starts_with("{'descr': '<u2', 'fortran_order': False, 'shape': (8, 1, 4, 6), }"),
        "{h}"
    );
    assert_eq!(n, 8 * 24 * 2);
    let (h, n) = npy_header(&out.join("train_ids.npy"));
    assert!(
        h.contains("'descr': '<u8'") && h.contains("'shape': (8,)"),
        "{h}"
    );
    assert_eq!(n, 64);
    let b = std::fs::read(out.join("train_ids.npy")).expect("read");
    let tids: Vec<u64> = b[b.len() - 64..]
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8")))
        .collect();
    assert_eq!(
        tids,
        vec![10008, 10008, 10009, 10009, 10010, 10010, 10011, 10011]
    );

    // Strings, by index.
    let (code, _, err) = run(
        extract(),
        &[
            rs,
            "SA1_XTD2_XGM/DOOCS/MAIN",
            "state",
            "--out",
            os,
            "--trains",
            "2:5",
            "--by-index",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (h, n) = npy_header(&out.join("data.npy"));
    assert!(
        h.contains("'descr': '<U3'") && h.contains("'shape': (3,)"),
        "{h}"
    );
    assert_eq!(n, 3 * 3 * 4);

    // Unknown source and key: exit 1, near matches listed.
    let (code, _, err) = run(
        extract(),
        &[
            rs,
            "SA1_XTD2_XGM/DOOCS/MAIM:output",
            "data.xTD",
            "--out",
            os,
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("SA1_XTD2_XGM/DOOCS/MAIN:output"), "{err}");
    let (code, _, err) = run(
        extract(),
        &[
            rs,
            "SA1_XTD2_XGM/DOOCS/MAIN:output",
            "data.xDT",
            "--out",
            os,
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("data.xTD"), "{err}");
    let (code, _, err) = run(
        extract(),
        &[
            rs,
            "SA1_XTD2_XGM/DOOCS/MAIN:output",
            "data.xTD",
            "--out",
            os,
            "--trains",
            "a:b",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("\"a\" is not an integer"), "{err}");
}

/// `--proposal P --run R [--data default|all|raw|proc|LOCATION]` under `--data-root` or
/// `$EXTRA_DATA_DATA_ROOT`, for lsxfel, xfel-validate and xfel-extract.
#[test]
fn run_lookup_by_proposal_and_run() {
    let td = tempfile::tempdir().expect("tempdir");
    let root = td.path().join("exp");
    let prop = root.join("FXE/202601/p900123");
    fixture(&prop.join("raw/r0450"));
    let root_s = root.to_str().expect("utf8");
    let (code, out, err) = run(
        LSXFEL,
        &[
            "--proposal",
            "900123",
            "--run",
            "450",
            "--data-root",
            root_s,
            "--no-cache",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("r0450 : Run directory\n\n# of trains:    20\n"),
        "{out}"
    );
    let o = std::process::Command::new(LSXFEL)
        .args(["--proposal", "p900123", "--run", "r0450", "--no-cache"])
        .env("EXTRA_DATA_DATA_ROOT", &root)
        .env("HDF5_USE_FILE_LOCKING", "FALSE")
        .output()
        .expect("run");
    assert_eq!(String::from_utf8_lossy(&o.stdout), out);

    let validate = env!("CARGO_BIN_EXE_xfel-validate");
    let (code, out, err) = run(
        validate,
        &[
            "--proposal",
            "900123",
            "--run",
            "450",
            "--data-root",
            root_s,
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Checking run directory: ") && out.ends_with("No problems found\n"));

    // proc/ holds the XGM source again (here: the same files): with --data all its
    // sources replace raw's of the same name.
    let (code, _, err) = run(
        validate,
        &[
            "--proposal",
            "900123",
            "--run",
            "450",
            "--data",
            "proc",
            "--data-root",
            root_s,
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("no such run directory"), "{err}");
    fixture(&prop.join("proc/r0450"));
    let out_dir = td.path().join("npy");
    let (code, out, err) = run(
        extract(),
        &[
            "SA1_XTD2_XGM/DOOCS/MAIN:output",
            "data.intensityTD",
            "--proposal",
            "900123",
            "--run",
            "450",
            "--data",
            "all",
            "--data-root",
            root_s,
            "--out",
            out_dir.to_str().expect("utf8"),
            "--json",
            "--no-cache",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["shape"], serde_json::json!([20, 1000]));
    let (code, out, _) = run(
        validate,
        &[
            "--proposal",
            "900123",
            "--run",
            "450",
            "--data",
            "all",
            "--data-root",
            root_s,
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(out.matches("No problems found").count(), 2, "{out}");
    // The default (open_run's 'default'): proc and raw merged, listed as one run; a
    // validation checks proc, then raw.
    let (code, out, err) = run(
        LSXFEL,
        &[
            "--proposal",
            "900123",
            "--run",
            "450",
            "--data-root",
            root_s,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(
            "r0450 : Run directories proc, raw (merged, later ones win)\n\n# of trains:    20\n"
        ),
        "{out}"
    );
    let (code, out, _) = run(
        validate,
        &[
            "--proposal",
            "900123",
            "--run",
            "450",
            "--data-root",
            root_s,
        ],
    );
    assert_eq!(code, 0);
    let checked: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("Checking run directory: "))
        .collect();
    assert_eq!(
        checked,
        [
            prop.join("proc/r0450").to_str().expect("utf8"),
            prop.join("raw/r0450").to_str().expect("utf8")
        ]
    );
    // Another location of the proposal, and a run that only it has.
    fixture(&prop.join("usr/Shared/amore/r0451"));
    let (code, out, err) = run(
        LSXFEL,
        &[
            "--proposal",
            "900123",
            "--run",
            "451",
            "--data",
            "usr/Shared/amore",
            "--data-root",
            root_s,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("r0451 : Run directory\n"), "{out}");
    // open_run's error for the default with neither raw nor proc: raw's.
    let (code, _, err) = run(
        LSXFEL,
        &[
            "--proposal",
            "900123",
            "--run",
            "451",
            "--data-root",
            root_s,
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("raw/r0451: no such run directory"), "{err}");
    // A file of proc that cannot be read is left out with a warning, though all of proc's
    // sources give way to raw's.
    std::fs::write(
        prop.join("proc/r0450/RAW-R0450-DA09-S00000.h5"),
        b"not HDF5",
    )
    .expect("write");
    let (code, out, err) = run(
        LSXFEL,
        &[
            "--proposal",
            "900123",
            "--run",
            "450",
            "--data-root",
            root_s,
            "--no-cache",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("r0450 : Run directories proc, raw"),
        "{out}"
    );
    assert!(
        err.contains("Skipping file RAW-R0450-DA09-S00000.h5"),
        "{err}"
    );
    // A missing proposal names it and the root.
    let (code, _, err) = run(
        LSXFEL,
        &["--proposal", "1", "--run", "1", "--data-root", root_s],
    );
    assert_eq!(code, 1);
    assert!(err.contains("p000001"), "{err}");
}

/// A run map that cannot be written whole (here a file size limit, as a full disk) is not
/// left behind half-written, neither as the map nor as its temporary file; the listing
/// itself is unaffected. Without the limit, the map is written.
#[test]
fn lsxfel_leaves_no_partial_run_map() {
    let td = tempfile::tempdir().expect("tempdir");
    fixture(td.path());
    let dir = td.path().to_str().expect("utf-8 path");
    // SIGXFSZ ignored: the write fails with EFBIG instead of killing the process.
    let o = Command::new("bash")
        .args([
            "-c",
            "trap '' XFSZ; ulimit -f 1; exec \"$0\" \"$1\"",
            LSXFEL,
            dir,
        ])
        .env("HDF5_USE_FILE_LOCKING", "FALSE")
        .output()
        .expect("spawn");
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("Run directory"), "{out}");
    let names = || -> Vec<String> {
        std::fs::read_dir(td.path())
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".h5"))
            .collect()
    };
    assert_eq!(names(), Vec::<String>::new());
    let (code, _, err) = run(LSXFEL, &[dir]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(names(), vec!["karabo_data_map.json".to_string()]);
}

/// Where threads cannot be started (a process limit, as on shared cluster nodes), a run
/// is opened and validated by the threads there are: the listing and the report are
/// complete, no panic (as an unprivileged user under a process limit: needs root).
#[test]
fn a_run_is_listed_and_validated_when_threads_cannot_start() {
    // The process and three threads: the other threads of the pool fail to start.
    let Some(user) = test_support::LimitedUser::new() else {
        return;
    };
    let limited = user.prefix(4);
    let td = tempfile::tempdir().expect("tempdir");
    fixture(td.path());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(td.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let dir = td.path().to_str().expect("utf-8 path");
    let (code, unlimited, err) = run(LSXFEL, &[dir]);
    assert_eq!(code, 0, "{err}");
    let o = Command::new(&limited[0])
        .args(&limited[1..])
        .args([LSXFEL, dir])
        .env("HDF5_USE_FILE_LOCKING", "FALSE")
        .output()
        .expect("spawn prlimit");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), unlimited);
    // xfel-validate with no thread at all validates in its main thread: the same report.
    // (Without the run map root's lsxfel wrote, which is private to root, as EXtra-data's.)
    std::fs::remove_file(td.path().join("karabo_data_map.json")).expect("run map");
    let validate = env!("CARGO_BIN_EXE_xfel-validate");
    let (code, report, err) = run(validate, &[dir]);
    assert_eq!(code, 0, "{err}");
    let no_threads = user.prefix(1);
    let o = Command::new(&no_threads[0])
        .args(&no_threads[1..])
        .args([validate, dir])
        .env("HDF5_USE_FILE_LOCKING", "FALSE")
        .output()
        .expect("spawn prlimit");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), report);
}

/// A listing that cannot be written (a full disk) ends with exit 1 and says so; a reader
/// that leaves early is not an error message.
#[test]
fn lsxfel_listing_that_cannot_be_written_fails() {
    let td = tempfile::tempdir().expect("tempdir");
    fixture(td.path());
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let o = Command::new(LSXFEL)
        .arg(td.path())
        .env("HDF5_USE_FILE_LOCKING", "FALSE")
        .stdout(full)
        .output()
        .expect("spawn");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("lsxfel: cannot write the listing: No space left"),
        "{err}"
    );
}
