//! `run --swmr` killed with SIGKILL at any moment, including while its file is being created,
//! leaves a file that an SWMR reader opens, with every frame it holds numbered in order.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::BIN;
use test_support::{send_signal, wait_exit, Guard};

/// Waits (bounded) until `path` exists.
fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Frames in the file of a killed SWMR writer, checked: `data` and `frame_number` agree and the
/// frame numbers are 0, 1, 2, ...
fn frames_of_killed_writer(path: &Path) -> u64 {
    let file = hdf5::File::open_as(path, hdf5::file::OpenMode::ReadSWMR)
        .unwrap_or_else(|e| panic!("{} after SIGKILL: {e}", path.display()));
    let det = file.group("entry/instrument/xspress3").unwrap();
    let numbers: Vec<u64> = det.dataset("frame_number").unwrap().read_raw().unwrap();
    let rows = det.dataset("data").unwrap().shape()[0];
    assert!(
        rows >= numbers.len(),
        "{rows} spectra, {} frame numbers",
        numbers.len()
    );
    assert!(numbers.iter().enumerate().all(|(i, &f)| f == i as u64));
    numbers.len() as u64
}

#[test]
fn run_with_swmr_killed_at_any_moment_leaves_a_readable_file() {
    // The first kill lands as soon as the file name exists: before files were built under a
    // staging name, that was mostly before SWMR writing started, and no reader could open it.
    for delay_ms in [0u64, 0, 0, 30, 300] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("xspress3.h5");
        let mut child = Guard(
            Command::new(BIN)
                .args(["run", "-q", "--frames", "0", "--exposure", "1ms", "--swmr"])
                .args(["--flush-interval", "100ms", "--sim", "content=pattern"])
                .arg("--out")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_for_file(&path);
        std::thread::sleep(Duration::from_millis(delay_ms));
        send_signal(&child.0, "KILL");
        wait_exit(&mut child.0, Duration::from_secs(10));
        let frames = frames_of_killed_writer(&path);
        if delay_ms >= 300 {
            assert!(frames > 0, "flushed frames survive the kill");
        }
    }
}
