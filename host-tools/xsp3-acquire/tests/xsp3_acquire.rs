//! End-to-end tests of `xsp3-acquire` over the simulated SDK: the real binary, real HDF5 files,
//! real ZMQ sockets on 127.0.0.1.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use acq_core::deadtime::{dead_time, output_count_rate};
use sdk_shim::{FrameSettings, SimParams};
use xspress3::{read_acq_file, AcqFile};

mod common;

use common::{acquire, det_num, det_str, Daemon, BIN};
use serde_json::{json, Value};
use test_support::{local_endpoint, req_socket, send_signal, wait_exit, Guard};

const NCH: usize = 4;
const NBINS: usize = 4096;

/// The simulator's frame settings with default windows and thresholds.
fn settings(exposure_ticks: u32) -> FrameSettings<'static> {
    FrameSettings {
        n_channels: NCH as u32,
        exposure_ticks,
        windows: None,
        good_thres: None,
    }
}

/// Checks every frame of `file` against the simulator's content formula, and the derived
/// datasets against the dead-time maths, to 1e-12.
fn assert_simulated_content(file: &AcqFile, exposure_ticks: u32, first_frame: u64) {
    let sim = SimParams::default();
    let settings = FrameSettings {
        n_channels: NCH as u32,
        exposure_ticks,
        windows: None,
        good_thres: None,
    };
    let mut mca = vec![0u32; NCH * NBINS];
    let mut scalers = vec![0u32; NCH * 9];
    for (row, &frame) in file.frame_number.iter().enumerate() {
        assert_eq!(
            frame,
            first_frame + row as u64,
            "frame numbers are consecutive"
        );
        sim.expected_frame(&settings, frame, Some(&mut mca), Some(&mut scalers))
            .expect("expected frame");
        let got = file.data.slice(ndarray::s![row, .., ..]);
        assert_eq!(
            got.iter().copied().collect::<Vec<_>>(),
            mca,
            "MCA of frame {frame}"
        );
        for chan in 0..NCH {
            let sc: [u32; 9] = scalers[chan * 9..chan * 9 + 9].try_into().unwrap();
            for (s, column) in file.scalers.iter().enumerate() {
                assert_eq!(
                    column[[row, chan]],
                    sc[s],
                    "scaler {s} of frame {frame} chan {chan}"
                );
            }
            let width = file.event_width[chan];
            let dtc = dead_time(&sc, width).expect("finite dead time at default rates");
            let got = file.dead_time_correction[[row, chan]];
            assert!(
                (got - dtc.correction).abs() <= 1e-12 * dtc.correction,
                "{got} vs {dtc:?}"
            );
            assert!(got >= 1.0, "a correction never lowers counts, got {got}");
            assert_eq!(file.dead_time_saturated[[row, chan]], 0);
            let ocr = output_count_rate(&sc, file.clock_hz).unwrap();
            let got = file.output_count_rate[[row, chan]];
            assert!((got - ocr).abs() <= 1e-12 * ocr, "{got} vs {ocr}");
        }
    }
}

#[test]
fn run_writes_the_simulators_content_and_derived_values() {
    let dir = tempfile::tempdir().unwrap();
    let out = acquire(&[
        "--frames",
        "300",
        "--exposure",
        "1ms",
        "--out",
        dir.path().to_str().unwrap(),
        "--file",
        "scan",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert_eq!(summary["frames_acquired"], 300);
    assert_eq!(summary["frames_written"], 300);
    assert_eq!(summary["frames_lost"], 0);
    assert_eq!(summary["state"], "done");
    let path = dir.path().join("scan.h5");
    assert_eq!(summary["files"][0]["path"], path.to_str().unwrap());
    let file = read_acq_file(&path).expect("read file");
    assert_eq!(file.data.shape(), &[300, NCH, NBINS]);
    assert_eq!(file.frames_lost, 0);
    assert_eq!(file.lost_frame_ranges.shape(), &[0, 2]);
    assert_simulated_content(&file, 80_000, 0);
    let ts = &file.timestamp;
    assert!(
        ts.windows(2).into_iter().all(|w| w[0] <= w[1]),
        "timestamps never go back"
    );
}

#[test]
fn rollover_splits_frames_across_numbered_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = acquire(&[
        "--frames",
        "250",
        "--exposure",
        "200us",
        "--out",
        dir.path().to_str().unwrap(),
        "--file",
        "roll",
        "--frames-per-file",
        "100",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counts: Vec<usize> = (0..3)
        .map(|i| {
            let path = dir.path().join(format!("roll_{i:05}.h5"));
            let file = read_acq_file(&path).expect("part");
            assert_simulated_content(&file, 16_000, i as u64 * 100);
            file.frame_number.len()
        })
        .collect();
    assert_eq!(counts, [100, 100, 50]);
    assert!(!dir.path().join("roll_00003.h5").exists());
}

#[test]
fn an_existing_file_is_not_overwritten_without_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keep.h5");
    std::fs::write(&path, b"precious").unwrap();
    let d = dir.path().to_str().unwrap();
    let out = acquire(&["--frames", "10", "--out", d, "--file", "keep"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--overwrite") && err.contains("keep.h5"),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    let out = acquire(&[
        "--frames",
        "10",
        "--out",
        d,
        "--file",
        "keep",
        "--overwrite",
    ]);
    assert!(out.status.success());
    assert_eq!(read_acq_file(&path).unwrap().frame_number.len(), 10);
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    for (args, needle) in [
        (&["--exposure", "fast"][..], "fast"),
        (&["--exposure", "60s"][..], "longest frame"),
        (&["--channels", "300"][..], "300"),
        (&["--window", "2:0:10"][..], "window"),
        (&["--sim", "nonsense=1"][..], "nonsense"),
        (&["--out", "/tmp", "--file", "../escape"][..], ".."),
    ] {
        let out = acquire(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            matches!(out.status.code(), Some(2) | Some(3)),
            "{args:?}: {:?} {err}",
            out.status
        );
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn a_detector_fault_keeps_every_frame_before_it_and_exits_4() {
    // Fast frames, so the fault finds a backlog in the SDK buffer: it is read and written too.
    let dir = tempfile::tempdir().unwrap();
    let out = acquire(&[
        "--frames",
        "20000",
        "--exposure",
        "10us",
        "--sim",
        "error_at_frame=5000",
        "--out",
        dir.path().to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(4), "data lost");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["state"], "failed", "{summary}");
    assert_eq!(summary["complete"], false);
    assert_eq!(summary["frames_acquired"], 5000, "{summary}");
    assert_eq!(summary["frames_written"], 5000, "{summary}");
    assert_eq!(summary["detector_error"]["frame"], 5000, "{summary}");
    let message = summary["detector_error"]["message"].as_str().unwrap();
    assert!(
        message.contains("injected error at frame 5000"),
        "{message}"
    );
    let path = dir.path().join("xspress3.h5");
    let file = read_acq_file(&path).unwrap();
    assert!(file.frame_number.iter().copied().eq(0..5000u64));
    // The last frame before the fault is the simulator's frame 4999, intact.
    let mut mca = vec![0u32; NCH * NBINS];
    SimParams::default()
        .expected_frame(&settings(800), 4999, Some(&mut mca), None)
        .unwrap();
    let last = file.data.slice(ndarray::s![4999, .., ..]);
    assert!(last.iter().copied().eq(mca.iter().copied()));
    assert_eq!(det_num::<u8>(&path, "complete"), 0);
    assert_eq!(det_num::<u64>(&path, "acquisition_error_frame"), 5000);
    assert!(det_str(&path, "acquisition_error").contains("injected error at frame 5000"));
}

#[test]
fn a_detector_fault_is_in_series_end_with_its_frame() {
    let endpoint = local_endpoint();
    let mut child = Guard(
        Command::new(BIN)
            .args(["run", "-q", "--frames", "400", "--exposure", "100us"])
            .args(["--sim", "error_at_frame=300", "--stream", &endpoint])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ctx = zmq::Context::new();
    let pull = ctx.socket(zmq::PULL).unwrap();
    pull.set_rcvtimeo(20_000).unwrap();
    pull.connect(&endpoint).unwrap();
    let mut images = 0;
    let end = loop {
        let parts = pull.recv_multipart(0).expect("message");
        let h: Value = serde_json::from_slice(&parts[0]).unwrap();
        match h["htype"].as_str() {
            Some("image") => images += 1,
            Some("series_end") => break h,
            _ => {}
        }
    };
    assert_eq!(images, 300, "{end}");
    assert_eq!(end["frames_sent"], 300, "{end}");
    assert_eq!(end["error_frame"], 300, "{end}");
    assert!(end["error"]
        .as_str()
        .is_some_and(|e| e.contains("injected error at frame 300")));
    assert_eq!(
        wait_exit(&mut child.0, Duration::from_secs(20)).code(),
        Some(4)
    );
}

#[test]
fn sigterm_stops_drains_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Guard(
        Command::new(BIN)
            .args([
                "run",
                "-q",
                "--json",
                "--frames",
                "0",
                "--exposure",
                "1ms",
                "--out",
            ])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(800));
    send_signal(&child.0, "TERM");
    let status = wait_exit(&mut child.0, Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.0.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    let summary: Value = serde_json::from_str(&stdout).expect("summary");
    let acquired = summary["frames_acquired"].as_u64().unwrap();
    assert!(acquired > 0);
    assert_eq!(summary["frames_written"].as_u64(), Some(acquired));
    let file = read_acq_file(&dir.path().join("xspress3.h5")).unwrap();
    assert_eq!(file.frame_number.len() as u64, acquired);
    assert_simulated_content(&file, 80_000, 0);
}

/// Reads status lines until one says at least `min` frames were flushed; returns that count.
fn wait_flushed(child: &mut Child, min: u64) -> u64 {
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else {
            break;
        };
        let flushed = line
            .split("(flushed ")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .and_then(|n| n.trim().parse::<u64>().ok());
        if let Some(n) = flushed.filter(|&n| n >= min) {
            // Keep draining stderr so the child never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            return n;
        }
    }
    panic!("no status line reported {min} flushed frames");
}

fn kill_nine_leaves_a_readable_file(swmr: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args([
        "run",
        "--frames",
        "0",
        "--exposure",
        "1ms",
        "--flush-interval",
        "200ms",
    ])
    .arg("--out")
    .arg(dir.path())
    .stderr(Stdio::piped())
    .stdout(Stdio::null());
    if swmr {
        cmd.arg("--swmr");
    }
    let mut child = Guard(cmd.spawn().unwrap());
    let flushed = wait_flushed(&mut child.0, 500);
    send_signal(&child.0, "KILL");
    wait_exit(&mut child.0, Duration::from_secs(10));
    let path = dir.path().join("xspress3.h5");
    let file = if swmr {
        hdf5::File::open_as(&path, hdf5::file::OpenMode::ReadSWMR)
    } else {
        hdf5::File::open(&path)
    }
    .unwrap_or_else(|e| panic!("file after kill -9 (swmr {swmr}): {e}"));
    let det = file.group("entry/instrument/xspress3").unwrap();
    let frames: ndarray::Array1<u64> = det.dataset("frame_number").unwrap().read_1d().unwrap();
    let rows = frames.len() as u64;
    assert!(
        rows >= flushed,
        "{rows} frames in the file, {flushed} were flushed"
    );
    let data = det.dataset("data").unwrap();
    let sim = SimParams::default();
    let settings = settings(80_000);
    let mut mca = vec![0u32; NCH * NBINS];
    for row in [0, flushed as usize / 2, flushed as usize - 1] {
        assert_eq!(frames[row], row as u64);
        sim.expected_frame(&settings, row as u64, Some(&mut mca), None)
            .unwrap();
        let got: ndarray::Array3<u32> = data.read_slice(ndarray::s![row..row + 1, .., ..]).unwrap();
        assert_eq!(got.iter().copied().collect::<Vec<_>>(), mca, "frame {row}");
    }
}

#[test]
fn kill_9_with_swmr_keeps_every_flushed_frame() {
    kill_nine_leaves_a_readable_file(true);
}

#[test]
fn kill_9_without_swmr_keeps_every_flushed_frame() {
    kill_nine_leaves_a_readable_file(false);
}

/// A small tmpfs, so that a write really fails with ENOSPC. Unmounted on drop.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount(mib: u32) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a {mib} MiB tmpfs failed: this test needs root, as `make test` has on CI"
        );
        SmallDisk(dir)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn disk_full_stops_the_writer_exits_4_and_keeps_flushed_frames() {
    let disk = SmallDisk::mount(16);
    let out = acquire(&[
        "--frames",
        "3000",
        "--exposure",
        "100us",
        "--flush-interval",
        "50ms",
        "--out",
        disk.0.path().to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("error    writer:"), "{text}");
    let path = disk.0.path().join("xspress3.h5");
    let file = hdf5::File::open(&path).expect("the file opens after the disk filled up");
    let det = file.group("entry/instrument/xspress3").unwrap();
    let frames: ndarray::Array1<u64> = det.dataset("frame_number").unwrap().read_1d().unwrap();
    assert!(
        frames.len() > 50,
        "frames written before the disk filled: {}",
        frames.len()
    );
    assert!(frames.len() < 3000);
    assert!(frames.iter().enumerate().all(|(i, &f)| f == i as u64));
    let data = det.dataset("data").unwrap();
    assert_eq!(data.shape()[0], frames.len(), "no half-written rows");
    assert_eq!(
        det.attr("complete").unwrap().read_scalar::<u8>().unwrap(),
        0
    );
    let why: hdf5::types::VarLenUnicode = det.attr("write_error").unwrap().read_scalar().unwrap();
    assert!(why.as_str().contains("disk full"), "{}", why.as_str());
    let last = frames.len() - 1;
    let got: ndarray::Array3<u32> = data
        .read_slice(ndarray::s![last..last + 1, .., ..])
        .unwrap();
    let mut mca = vec![0u32; NCH * NBINS];
    let settings = settings(8_000);
    SimParams::default()
        .expected_frame(&settings, last as u64, Some(&mut mca), None)
        .unwrap();
    assert_eq!(
        got.iter().copied().collect::<Vec<_>>(),
        mca,
        "the last frame is intact"
    );
}

#[test]
fn monitor_hands_out_the_latest_frame() {
    let endpoint = local_endpoint();
    let mut child = Guard(
        Command::new(BIN)
            .args([
                "run",
                "-q",
                "--frames",
                "0",
                "--exposure",
                "1ms",
                "--monitor",
                &endpoint,
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ctx = zmq::Context::new();
    let req = req_socket(&ctx, &endpoint, 5000);
    let sim = SimParams::default();
    let settings = settings(80_000);
    let mut previous = None;
    let mut seen_frames = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen_frames < 3 && Instant::now() < deadline {
        req.send("give us a frame please!", 0).unwrap();
        let parts = req.recv_multipart(0).expect("monitor reply");
        assert_eq!(parts.len(), 2);
        let header: Value = serde_json::from_slice(&parts[0]).unwrap();
        if header["htype"] == "none" {
            assert!(parts[1].is_empty());
        } else {
            assert_eq!(header["htype"], "image");
            assert_eq!(header["shape"], json!([NCH, NBINS]));
            let frame = header["frame"].as_u64().unwrap();
            if let Some(p) = previous {
                assert!(frame >= p, "the monitor never goes back: {frame} after {p}");
            }
            previous = Some(frame);
            let mut mca = vec![0u32; NCH * NBINS];
            let mut scalers = vec![0u32; NCH * 9];
            sim.expected_frame(&settings, frame, Some(&mut mca), Some(&mut scalers))
                .unwrap();
            assert_eq!(
                parts[1],
                bytemuck::cast_slice::<u32, u8>(&mca),
                "frame {frame}"
            );
            // The frame's own scalers and dead-time correction (calibrated widths 6 + ch).
            let rows: Vec<&[u32]> = scalers.chunks_exact(9).collect();
            assert_eq!(header["scalers"], json!(rows), "frame {frame}");
            for (ch, row) in rows.iter().enumerate() {
                let sc: &[u32; 9] = (*row).try_into().unwrap();
                let expected = dead_time(sc, 6 + ch as u32).unwrap().correction;
                let got = header["dead_time_correction"][ch].as_f64().unwrap();
                assert!(
                    (got - expected).abs() < 1e-12,
                    "ch {ch}: {got} != {expected}"
                );
            }
            seen_frames += 1;
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    assert_eq!(seen_frames, 3, "the monitor answered with frames");
    send_signal(&child.0, "INT");
    assert!(wait_exit(&mut child.0, Duration::from_secs(20)).success());
}

#[test]
fn control_socket_runs_software_triggered_acquisitions() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    assert_eq!(d.ok(json!({"cmd": "status"}))["state"], "idle");
    d.ok(
        json!({"cmd": "configure", "frames": 5, "exposure": "1ms", "trigger": "software",
                "file": "sw", "windows": [[0, 600, 700]], "good_threshold": 10}),
    );
    assert_eq!(d.ok(json!({"cmd": "status"}))["state"], "configured");
    assert_eq!(d.ok(json!({"cmd": "arm"}))["state"], "running");
    d.error(json!({"cmd": "arm"}), "already running");
    d.error(
        json!({"cmd": "configure", "frames": 3}),
        "while an acquisition runs",
    );
    d.ok(json!({"cmd": "trigger", "count": 2}));
    d.ok(json!({"cmd": "trigger", "count": 3}));
    let st = d.wait_state("done");
    assert_eq!(st["frames_written"], 5);
    assert_eq!(st["files"][0]["frames"], 5);
    let file = read_acq_file(&dir.path().join("sw.h5")).unwrap();
    assert_eq!(file.frame_number.to_vec(), vec![0, 1, 2, 3, 4]);
    // Window 0 covers bins 600..=700 on every channel: the scaler equals the MCA's sum there.
    for row in 0..5 {
        for chan in 0..NCH {
            let sum: u32 = file.data.slice(ndarray::s![row, chan, 600..=700]).sum();
            assert_eq!(file.scalers[5][[row, chan]], sum);
            let good: u32 = file.data.slice(ndarray::s![row, chan, 10..]).sum();
            assert_eq!(file.scalers[4][[row, chan]], good);
        }
    }
    // A second acquisition with the same daemon, stopped while running.
    d.ok(json!({"cmd": "configure", "frames": 0, "exposure": 0.001, "file": "cont"}));
    d.ok(json!({"cmd": "arm"}));
    std::thread::sleep(Duration::from_millis(300));
    d.error(json!({"cmd": "trigger"}), "software trigger mode");
    assert_eq!(d.ok(json!({"cmd": "stop"}))["state"], "stopping");
    let st = d.wait_state("done");
    let written = st["frames_written"].as_u64().unwrap();
    assert!(written > 0);
    assert_eq!(
        read_acq_file(&dir.path().join("cont.h5"))
            .unwrap()
            .frame_number
            .len() as u64,
        written
    );
    assert_eq!(d.ok(json!({"cmd": "shutdown"}))["state"], "shutdown");
}

#[test]
fn control_socket_answers_every_bad_request_with_an_error_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("exists.h5"), b"x").unwrap();
    let d = Daemon::start(dir.path(), &[]);
    for raw in [&b"{not json"[..], b"", b"[1, 2]", b"\xff\xfe"] {
        let reply = d.send_raw(raw);
        assert_eq!(reply["ok"], false, "{raw:?} -> {reply}");
    }
    d.error(json!({"nocmd": 1}), "cmd");
    d.error(json!({"cmd": 7}), "cmd");
    d.error(json!({"cmd": "explode"}), "unknown command `explode`");
    d.error(json!({"cmd": "arm"}), "not configured");
    d.error(json!({"cmd": "trigger"}), "no acquisition is running");
    d.error(json!({"cmd": "trigger", "count": 0}), "count");
    for (request, needle) in [
        (
            json!({"cmd": "configure", "exposure": "0ns"}),
            "shorter than the shortest frame accepted",
        ),
        (json!({"cmd": "configure", "exposure": -1}), "exposure"),
        (json!({"cmd": "configure", "exposure": [1]}), "exposure"),
        (
            json!({"cmd": "configure", "exposure": "100s"}),
            "longest frame",
        ),
        (
            json!({"cmd": "configure", "trigger": "sometimes"}),
            "trigger `sometimes`",
        ),
        (json!({"cmd": "configure", "gap_ns": 7}), "gap_ns 7"),
        (
            json!({"cmd": "configure", "windows": [[0, 10, 5000]]}),
            "window",
        ),
        (
            json!({"cmd": "configure", "windows": [[2, 10, 20]]}),
            "window",
        ),
        (
            json!({"cmd": "configure", "good_threshold": 4096}),
            "good_threshold",
        ),
        (json!({"cmd": "configure", "frames": -3}), "configure"),
        (
            json!({"cmd": "configure", "frames_per_file": 0, "file": "x"}),
            "frames_per_file",
        ),
        (json!({"cmd": "configure", "file": "../outside"}), ".."),
        (
            json!({"cmd": "configure", "file": "/etc/passwd"}),
            "absolute",
        ),
        (
            json!({"cmd": "configure", "speed": "ludicrous"}),
            "unknown field",
        ),
        (
            json!({"cmd": "configure", "stream_type": "carrier-pigeon"}),
            "stream_type",
        ),
    ] {
        d.error(request, needle);
    }
    // A start-up failure is reported by `arm`, and the daemon stays usable.
    d.ok(json!({"cmd": "configure", "frames": 3, "file": "exists"}));
    d.error(json!({"cmd": "arm"}), "--overwrite");
    assert_eq!(std::fs::read(dir.path().join("exists.h5")).unwrap(), b"x");
    assert_eq!(d.ok(json!({"cmd": "status"}))["state"], "failed");
    d.ok(json!({"cmd": "configure", "frames": 3, "file": "fresh"}));
    d.ok(json!({"cmd": "arm"}));
    assert_eq!(d.wait_state("done")["frames_written"], 3);
    d.ok(json!({"cmd": "stop"}));
    d.ok(json!({"cmd": "shutdown"}));
}

#[test]
fn stream_delivers_every_frame_over_push() {
    let endpoint = local_endpoint();
    let mut child = Guard(
        Command::new(BIN)
            .args([
                "run",
                "-q",
                "--frames",
                "500",
                "--exposure",
                "100us",
                "--stream",
                &endpoint,
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let ctx = zmq::Context::new();
    let pull = ctx.socket(zmq::PULL).unwrap();
    pull.set_rcvtimeo(10_000).unwrap();
    pull.connect(&endpoint).unwrap();
    let header: Value = serde_json::from_slice(&pull.recv_multipart(0).unwrap()[0]).unwrap();
    assert_eq!(header["htype"], "header");
    assert_eq!(header["n_channels"], NCH);
    assert_eq!(header["scaler_names"][8], "total_ticks");
    let sim = SimParams::default();
    let settings = settings(8_000);
    let (mut mca, mut scalers) = (vec![0u32; NCH * NBINS], vec![0u32; NCH * 9]);
    for i in 0..500u64 {
        let parts = pull.recv_multipart(0).expect("image");
        assert_eq!(parts.len(), 3);
        let h: Value = serde_json::from_slice(&parts[0]).unwrap();
        assert_eq!(
            (
                h["htype"].as_str(),
                h["frame"].as_u64(),
                h["msg_number"].as_u64()
            ),
            (Some("image"), Some(i), Some(i))
        );
        sim.expected_frame(&settings, i, Some(&mut mca), Some(&mut scalers))
            .unwrap();
        assert_eq!(parts[1], bytemuck::cast_slice::<u32, u8>(&mca));
        assert_eq!(parts[2], bytemuck::cast_slice::<u32, u8>(&scalers));
    }
    let end: Value = serde_json::from_slice(&pull.recv_multipart(0).unwrap()[0]).unwrap();
    assert_eq!(end["htype"], "series_end");
    assert_eq!(end["frames_sent"], 500);
    assert_eq!(end["frames_lost"], 0);
    assert!(wait_exit(&mut child.0, Duration::from_secs(20)).success());
}

#[test]
fn pub_stream_counts_what_a_slow_subscriber_misses() {
    let endpoint = local_endpoint();
    let ctx = zmq::Context::new();
    let sub = ctx.socket(zmq::SUB).unwrap();
    sub.set_rcvhwm(1).unwrap();
    sub.set_subscribe(b"").unwrap();
    sub.set_rcvtimeo(2_000).unwrap();
    sub.connect(&endpoint).unwrap();
    // A slow subscriber: one message every 2 ms until the stream has been quiet for 2 s.
    let reader = std::thread::spawn(move || {
        let mut numbers = Vec::new();
        while let Ok(parts) = sub.recv_multipart(0) {
            let h: Value = serde_json::from_slice(&parts[0]).unwrap();
            if h["htype"] == "image" {
                numbers.push(h["msg_number"].as_u64().unwrap());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        numbers
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut child = Guard(
        Command::new(BIN)
            .args([
                "run",
                "-q",
                "--json",
                "--frames",
                "3000",
                "--exposure",
                "10us",
            ])
            .args([
                "--sim",
                "full_speed=1",
                "--stream",
                &endpoint,
                "--stream-type",
                "pub",
            ])
            .args(["--stream-hwm", "4"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // PUB refusals are data lost: exit 4.
    assert_eq!(
        wait_exit(&mut child.0, Duration::from_secs(60)).code(),
        Some(4)
    );
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.0.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["state"], "incomplete", "{summary}");
    assert_eq!(summary["frames_lost_total"], summary["stream_drops"]);
    let (sent, drops) = (
        summary["frames_sent"].as_u64().unwrap(),
        summary["stream_drops"].as_u64().unwrap(),
    );
    assert!(
        drops > 0,
        "a slow subscriber causes counted drops: {summary}"
    );
    assert_eq!(sent + drops, 3000, "{summary}");
    let numbers = reader.join().unwrap();
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "in order, no duplicates"
    );
    assert!(numbers.len() as u64 <= sent);
    // Refused frames used up their numbers, so the subscriber sees them as gaps.
    let gaps: u64 = numbers.windows(2).map(|w| w[1] - w[0] - 1).sum();
    assert!(gaps > 0, "no gaps in {} numbers", numbers.len());
}

#[test]
fn software_triggers_are_paced_so_a_small_sdk_buffer_loses_nothing() {
    let out = acquire(&[
        "--frames",
        "5000",
        "--trigger",
        "software",
        "--exposure",
        "10us",
        "--sdk-buffer",
        "512",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["frames_acquired"], 5000, "{summary}");
    assert_eq!(summary["frames_lost"], 0, "{summary}");
}

#[test]
fn pub_stream_waits_for_a_waiting_subscriber_so_it_gets_the_header() {
    let endpoint = local_endpoint();
    let ctx = zmq::Context::new();
    let sub = ctx.socket(zmq::SUB).unwrap();
    sub.set_subscribe(b"").unwrap();
    sub.set_rcvtimeo(10_000).unwrap();
    // The subscriber is up (and reconnecting) before the acquisition binds.
    sub.connect(&endpoint).unwrap();
    let mut child = Guard(
        Command::new(BIN)
            .args([
                "run",
                "-q",
                "--frames",
                "200",
                "--exposure",
                "1ms",
                "--stream",
                &endpoint,
            ])
            .args(["--stream-type", "pub", "--stream-wait", "5s"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let htype = |parts: &[Vec<u8>]| -> Value { serde_json::from_slice(&parts[0]).unwrap() };
    let first = htype(&sub.recv_multipart(0).expect("header"));
    assert_eq!(first["htype"], "header", "{first}");
    for i in 0..200u64 {
        let h = htype(&sub.recv_multipart(0).expect("image"));
        assert_eq!(
            (h["htype"].as_str(), h["msg_number"].as_u64()),
            (Some("image"), Some(i))
        );
    }
    assert_eq!(
        htype(&sub.recv_multipart(0).unwrap())["htype"],
        "series_end"
    );
    assert!(wait_exit(&mut child.0, Duration::from_secs(30)).success());
}
