//! The binaries on fixture runs: outputs, exit codes and messages.

use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};

use fixtures::euxfel::{make_run, RunSpec};

/// Held while a test writes fixture files and while one starts a child: a child started
/// meanwhile would inherit the writer's descriptors with libhdf5's lock on them and keep the
/// files locked against this process's own reads for as long as it runs.
static FILES: Mutex<()> = Mutex::new(());

fn files_lock() -> MutexGuard<'static, ()> {
    FILES.lock().unwrap_or_else(|e| e.into_inner())
}

/// A command for one of the binaries. The children do not lock (they only read closed files).
fn reader(exe: &str) -> Command {
    let mut cmd = Command::new(exe);
    cmd.env("HDF5_USE_FILE_LOCKING", "FALSE");
    cmd
}

/// `Command::output`, started while no fixture file is open for writing.
trait OutputLocked {
    fn output_locked(&mut self) -> std::io::Result<Output>;
}

impl OutputLocked for Command {
    fn output_locked(&mut self) -> std::io::Result<Output> {
        let child = {
            let _files = files_lock();
            self.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?
        };
        child.wait_with_output()
    }
}

fn small_run(dir: &std::path::Path) {
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

#[test]
fn make_virtual_cxi_writes_and_refuses_bad_arguments() {
    let td = tempfile::tempdir().expect("tempdir");
    let run = td.path().join("run");
    small_run(&run);
    let exe = env!("CARGO_BIN_EXE_xfel-make-virtual-cxi");
    let out = td.path().join("x.cxi");
    let ok = reader(exe)
        .arg(&run)
        .args(["--min-modules", "1", "--fill-value", "data", "0x10", "-o"])
        .arg(&out)
        .output_locked()
        .expect("run");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(stdout.starts_with("FXE_DET_LPD1M-1 (LPD1M): 3 trains, 6 frames, 16 modules"));
    let f = hdf5::File::open(&out).expect("cxi");
    let fill: u16 = f
        .dataset("entry_1/instrument_1/detector_1/data")
        .and_then(|d| d.read_slice_1d::<u16, _>(ndarray::s![0, 5, 0, 0, ..]))
        .expect("read")[0];
    assert_eq!(fill, 0x10, "module 5 has no data: fill value");

    let bad = reader(exe)
        .arg(&run)
        .args(["--fill-value", "data", "abc", "-o"])
        .arg(&out)
        .output_locked()
        .expect("run");
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&bad.stderr).trim(),
        "xfel-make-virtual-cxi: --fill-value data: \"abc\" is not a number"
    );
    // A negative value is a value (argparse takes it too), refused by the dtype, not the parser.
    let negative = reader(exe)
        .arg(&run)
        .args(["--min-modules", "1", "--fill-value", "data", "-1", "-o"])
        .arg(&out)
        .output_locked()
        .expect("run");
    assert_eq!(
        negative.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&negative.stderr)
    );
    assert!(String::from_utf8_lossy(&negative.stderr)
        .contains("xfel-make-virtual-cxi: fill value -1 does not fit dtype uint16"));
    // As argparse's type=int: any integer parses; the detector refuses it (exit 1).
    let min_modules = reader(exe)
        .arg(&run)
        .args(["--min-modules", "-1", "-o"])
        .arg(&out)
        .output_locked()
        .expect("run");
    assert_eq!(min_modules.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&min_modules.stderr).trim(),
        "xfel-make-virtual-cxi: min_modules must be a positive integer, not -1"
    );
    let no_out = reader(exe).arg(&run).output_locked().expect("run");
    assert_eq!(no_out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_out.stderr)
        .contains("'-o outfile' option needed when input directory doesn't look like"));
    let usage = reader(exe).output_locked().expect("run");
    assert_eq!(usage.status.code(), Some(2));
}

/// The array of a `.npy` file (format 1.0: magic, version, u16 header length, header).
fn npy_payload(path: &std::path::Path) -> Vec<u8> {
    let b = std::fs::read(path).expect("npy");
    assert_eq!(&b[..8], b"\x93NUMPY\x01\x00", "{}", path.display());
    let header = usize::from(u16::from_le_bytes([b[8], b[9]]));
    b[10 + header..].to_vec()
}

#[test]
fn extract_detector_writes_stacked_arrays() {
    use euxfel::{DataCollection, OpenOptions, TrainSelection};
    use euxfel_components::{
        DetectorOptions, DetectorType, MultiModDetector, PulseSelection, Pulses,
    };

    let td = tempfile::tempdir().expect("tempdir");
    let run = td.path().join("run");
    small_run(&run);
    let out = td.path().join("o");
    let exe = env!("CARGO_BIN_EXE_xfel-extract");
    let r = reader(exe)
        .arg(&run)
        .arg("--detector")
        .arg("--out")
        .arg(&out)
        .args(["--pulses", "index:1", "--trains=-2:", "--by-index"])
        .output_locked()
        .expect("run");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(
        String::from_utf8_lossy(&r.stdout)
            .starts_with("FXE_DET_LPD1M-1 image.data: dtype uint16, shape [2, 2, 2, 2]"),
        "{}",
        String::from_utf8_lossy(&r.stdout)
    );
    for f in [
        "data",
        "train_ids",
        "pulse_ids",
        "cell_ids",
        "modules",
        "availability",
    ] {
        assert!(out.join(format!("{f}.npy")).is_file(), "{f}.npy");
    }
    // The same selection through the library.
    let dc = DataCollection::open_run(&run, &OpenOptions::default()).expect("open");
    let key = MultiModDetector::new(DetectorType::Lpd1M, &dc, &DetectorOptions::default())
        .and_then(|d| d.select_trains(&TrainSelection::IndexRange(Some(-2), None, None)))
        .and_then(|d| d.key("image.data"))
        .and_then(|k| k.select_pulses(PulseSelection::ByIndex(Pulses::List(vec![1]))))
        .expect("key");
    let want = key.ndarray_bytes(None, false).expect("read");
    assert_eq!(npy_payload(&out.join("data.npy")), want.data);
    let tids: Vec<u8> = key
        .train_id_coordinates()
        .iter()
        .flat_map(|t| t.to_le_bytes())
        .collect();
    assert_eq!(npy_payload(&out.join("train_ids.npy")), tids);

    // Train IDs, a given type and key, JSON summary.
    let first = dc.train_ids[0];
    let r = reader(exe)
        .arg(&run)
        .arg("image.cellId")
        .arg("--detector=LPD1M")
        .arg("--json")
        .arg("--out")
        .arg(&out)
        .arg(format!("--trains={},{}", first, first + 2))
        .output_locked()
        .expect("run");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let j: serde_json::Value = serde_json::from_slice(&r.stdout).expect("json");
    assert_eq!(j["type"], "LPD1M");
    assert_eq!(j["key"], "image.cellId");
    assert_eq!(j["trains"], 2);
    assert_eq!(j["shape"], serde_json::json!([2, 4]));
    // The module numbers, not the path of modules.npy (which is under "files").
    assert_eq!(j["modules"], serde_json::json!([0, 1]));
    assert_eq!(
        j["files"]["modules"],
        serde_json::json!(out.join("modules.npy").to_string_lossy())
    );
    assert_eq!(
        j["data"],
        serde_json::json!(out.join("data.npy").to_string_lossy())
    );

    // A per-train key into the same directory: no pulse or cell IDs of the earlier
    // extraction are left beside its data.
    let r = reader(exe)
        .arg(&run)
        .args(["header.pulseCount", "--detector", "--out"])
        .arg(&out)
        .output_locked()
        .expect("run");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .expect("out")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "availability.npy",
            "data.npy",
            "modules.npy",
            "train_ids.npy"
        ]
    );

    // With module gaps, modules.npy labels every slot of the first axis.
    let r = reader(exe)
        .arg(&run)
        .args(["--detector", "--module-gaps", "--json", "--out"])
        .arg(&out)
        .output_locked()
        .expect("run");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let j: serde_json::Value = serde_json::from_slice(&r.stdout).expect("json");
    assert_eq!(j["shape"][0], 16);
    let slots: Vec<u8> = (0..16u64).flat_map(|m| m.to_le_bytes()).collect();
    assert_eq!(npy_payload(&out.join("modules.npy")), slots);
    assert_eq!(j["modules"], serde_json::json!((0..16).collect::<Vec<_>>()));

    let fail = |args: &[&str]| {
        let o = reader(exe)
            .arg(&run)
            .arg("--out")
            .arg(&out)
            .args(args)
            .output_locked()
            .expect("run");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = fail(&["--detector=AGIPD1M"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("This data has no source named"), "{err}");
    let (code, err) = fail(&["--detector", "AGIPD1M"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        err.trim(),
        "xfel-extract: \"AGIPD1M\" is a detector type, not a key: write --detector=AGIPD1M"
    );
    // (It was ignored; EXtra-data's LPD1M() takes no n_modules.)
    let (code, err) = fail(&["--detector", "--n-modules", "3"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        err.trim(),
        "xfel-extract: --n-modules applies to JUNGFRAU only: LPD1M has 16 modules"
    );
    let (code, err) = fail(&["--detector=LPD2"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--detector: unknown type \"LPD2\""), "{err}");
    let (code, err) = fail(&["--detector", "--pulses", "index:1:2:3:4"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--pulses: cannot parse"), "{err}");
    // Detector options need --detector; without it the source and key are needed.
    let (code, _) = fail(&["--pulses", "index:1"]);
    assert_eq!(code, Some(2));
    let (code, err) = fail(&["image.data"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("give RUN SOURCE KEY"), "{err}");
}

/// EXtra-data's older interface, still accepted (hidden from its help): `PROPOSAL_DIR
/// RUN_NUMBER` is `PROPOSAL_DIR/proc/r%04d`, written by default to
/// `PROPOSAL_DIR/scratch/r%04d_detectors_virt.cxi`.
#[test]
fn make_virtual_cxi_takes_a_proposal_dir_and_run_number() {
    let td = tempfile::tempdir().expect("tempdir");
    let proposal = td.path().join("p900001");
    small_run(&proposal.join("proc").join("r0012"));
    std::fs::create_dir(proposal.join("scratch")).expect("scratch");
    let exe = env!("CARGO_BIN_EXE_xfel-make-virtual-cxi");
    let ok = reader(exe)
        .arg(&proposal)
        .args(["12", "--min-modules", "1"])
        .output_locked()
        .expect("run");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let out = proposal.join("scratch").join("r0012_detectors_virt.cxi");
    let f = hdf5::File::open(&out).expect("cxi");
    assert_eq!(
        f.dataset("entry_1/instrument_1/detector_1/data")
            .expect("data")
            .shape()[1],
        16
    );
    let bad = reader(exe)
        .arg(&proposal)
        .args(["twelve", "-o"])
        .arg(td.path().join("x.cxi"))
        .output_locked()
        .expect("run");
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&bad.stderr).trim(),
        "xfel-make-virtual-cxi: invalid run number: \"twelve\""
    );
}

/// Where no thread can be started (a process limit, as on shared cluster nodes), a stacked
/// extract is read by the calling thread alone: the same arrays, no panic. RLIMIT_NPROC binds
/// only unprivileged users (root is exempt), so this needs root.
#[test]
fn extract_detector_without_threads() {
    use std::os::unix::fs::PermissionsExt;
    let Some(user) = test_support::LimitedUser::new() else {
        return;
    };
    let no_threads = user.prefix(1);
    let td = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(td.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let run = td.path().join("run");
    small_run(&run);
    let exe = env!("CARGO_BIN_EXE_xfel-extract");
    let extract = |launcher: &[String], out: &str| {
        let mut cmd = match launcher.split_first() {
            Some((first, rest)) => {
                let mut c = reader(first);
                c.args(rest).arg(exe);
                c
            }
            None => reader(exe),
        };
        let r = cmd
            .arg(&run)
            .args(["image.data", "--detector", "--out"])
            .arg(td.path().join(out))
            .output_locked()
            .expect("run");
        let err = String::from_utf8_lossy(&r.stderr).into_owned();
        assert!(r.status.success(), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        std::fs::read(td.path().join(out).join("data.npy")).expect("data.npy")
    };
    let threads = extract(&[], "threads");
    let one = extract(&no_threads, "one");
    assert_eq!(one, threads);
}
