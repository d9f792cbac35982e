//! The binaries on fixture runs: outputs, exit codes and messages.

use std::process::Command;

use fixtures::euxfel::{make_run, RunSpec};

/// A command for one of the binaries. The other test of this process writes fixtures at the
/// same time, and a child inherits its open HDF5 files with libhdf5's lock on them: the children
/// do not lock (they only read closed files).
fn reader(exe: &str) -> Command {
    let mut cmd = Command::new(exe);
    cmd.env("HDF5_USE_FILE_LOCKING", "FALSE");
    cmd
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
        .output()
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
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&bad.stderr).trim(),
        "xfel-make-virtual-cxi: --fill-value data: \"abc\" is not a number"
    );
    let no_out = reader(exe).arg(&run).output().expect("run");
    assert_eq!(no_out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_out.stderr)
        .contains("'-o outfile' option needed when input directory doesn't look like"));
    let usage = reader(exe).output().expect("run");
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn extract_detector_writes_stacked_arrays() {
    let td = tempfile::tempdir().expect("tempdir");
    let run = td.path().join("run");
    small_run(&run);
    let out = td.path().join("o");
    let r = reader(env!("CARGO_BIN_EXE_xfel-extract-detector"))
        .arg(&run)
        .arg("--out")
        .arg(&out)
        .args(["--pulses", "index:1"])
        .output()
        .expect("run");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(String::from_utf8_lossy(&r.stdout)
        .starts_with("FXE_DET_LPD1M-1 image.data: dtype uint16, shape [2, 3, 2, 2]"));
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
    let bad = reader(env!("CARGO_BIN_EXE_xfel-extract-detector"))
        .arg(&run)
        .arg("--out")
        .arg(&out)
        .args(["--detector", "AGIPD1M"])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("This data has no source named"));
}
