//! The faults a beamline sees every week, each run against the real binary: stream peers that die,
//! never come or pause; signals to the daemon; software triggers; PUB under a full high-water
//! mark; slow triggers. Time limits here only guard against hangs: they are far above what the
//! behaviour needs.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{acquire, det_num, Daemon, BIN};
use serde_json::{json, Value};
use test_support::{local_endpoint, send_signal, wait_exit, Guard};

/// Far more than any stop may take (documented: a stream gives up 5 s after a stop at most).
const HANG_GUARD: Duration = Duration::from_secs(40);

/// The JSON summary a `run --json` printed.
fn summary_of(child: &mut Guard) -> Value {
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.0.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// An unbounded `run` into `out` with a PUSH stream on `endpoint`.
fn run_streaming(out: &std::path::Path, endpoint: &str) -> Guard {
    Guard(
        Command::new(BIN)
            .args(["run", "-q", "--json", "--frames", "0", "--exposure", "1ms"])
            .args(["--stream", endpoint, "--out"])
            .arg(out)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// Checks the run's end: data lost (exit 4), every acquired frame in the file with its final
/// attributes, and the frames the stream could not deliver listed as ranges.
fn assert_stopped_with_unsent_frames(child: &mut Guard, out: &std::path::Path) -> Value {
    assert_eq!(wait_exit(&mut child.0, HANG_GUARD).code(), Some(4));
    let summary = summary_of(child);
    let acquired = summary["frames_acquired"].as_u64().unwrap();
    assert!(acquired > 0, "{summary}");
    assert_eq!(summary["frames_written"], acquired, "{summary}");
    let unsent = summary["stream_unsent"].as_u64().unwrap();
    assert!(unsent > 0, "{summary}");
    assert_eq!(
        summary["frames_sent"].as_u64().unwrap() + unsent,
        acquired,
        "every acquired frame is sent or counted unsent: {summary}"
    );
    let listed: u64 = summary["unsent_ranges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[1].as_u64().unwrap())
        .sum();
    assert_eq!(listed, unsent, "{summary}");
    let path = out.join("xspress3.h5");
    assert_eq!(det_num::<u64>(&path, "frames_in_file"), acquired);
    summary
}

#[test]
fn sigterm_stops_a_run_whose_push_receiver_died() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = local_endpoint();
    let mut child = run_streaming(dir.path(), &endpoint);
    {
        let ctx = zmq::Context::new();
        let pull = ctx.socket(zmq::PULL).unwrap();
        pull.set_rcvhwm(10).unwrap();
        pull.set_rcvtimeo(20_000).unwrap();
        pull.set_linger(0).unwrap();
        pull.connect(&endpoint).unwrap();
        for _ in 0..50 {
            pull.recv_multipart(0).expect("a message");
        }
        // The receiver dies here: socket and context are dropped.
    }
    // Let the sender fill its queue towards the dead peer and block.
    std::thread::sleep(Duration::from_millis(1500));
    send_signal(&child.0, "TERM");
    assert_stopped_with_unsent_frames(&mut child, dir.path());
}

#[test]
fn sigint_stops_a_run_whose_push_receiver_never_came() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = local_endpoint();
    let mut child = run_streaming(dir.path(), &endpoint);
    std::thread::sleep(Duration::from_millis(1500));
    send_signal(&child.0, "INT");
    let summary = assert_stopped_with_unsent_frames(&mut child, dir.path());
    assert_eq!(summary["frames_sent"], 0, "{summary}");
}

#[test]
fn sigterm_stops_a_run_whose_push_receiver_is_paused() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = local_endpoint();
    let mut child = run_streaming(dir.path(), &endpoint);
    let ctx = zmq::Context::new();
    let pull = ctx.socket(zmq::PULL).unwrap();
    pull.set_rcvhwm(10).unwrap();
    pull.connect(&endpoint).unwrap();
    // Connected, reading nothing: the sender blocks on it.
    std::thread::sleep(Duration::from_millis(1500));
    send_signal(&child.0, "TERM");
    assert_stopped_with_unsent_frames(&mut child, dir.path());
}

#[test]
fn serve_stops_an_acquisition_whose_stream_has_no_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let stream = local_endpoint();
    let d = Daemon::start(dir.path(), &["--allow-stream", &stream]);
    d.ok(
        json!({"cmd": "configure", "frames": 0, "exposure": "1ms", "file": "nobody",
                "stream": stream}),
    );
    d.ok(json!({"cmd": "arm"}));
    std::thread::sleep(Duration::from_millis(500));
    let running = d.ok(json!({"cmd": "status"}));
    assert_eq!(running["state"], "running", "{running}");
    d.ok(json!({"cmd": "stop"}));
    let end = d.wait_state("failed");
    assert_eq!(end["complete"], false, "{end}");
    assert!(end["stream_unsent"].as_u64().unwrap() > 0, "{end}");
    assert_eq!(end["frames_written"], end["frames_acquired"], "{end}");
    // The daemon is usable again: configure and shut down.
    d.ok(json!({"cmd": "configure", "frames": 3, "stream": null}));
    d.ok(json!({"cmd": "shutdown"}));
}

#[test]
fn serve_shutdown_and_sigterm_work_while_a_stream_waits_for_a_receiver() {
    for how in ["shutdown", "TERM"] {
        let dir = tempfile::tempdir().unwrap();
        let stream = local_endpoint();
        let mut d = Daemon::start(dir.path(), &["--stream", &stream]);
        d.ok(json!({"cmd": "configure", "frames": 0, "exposure": "1ms", "file": "wait"}));
        d.ok(json!({"cmd": "arm"}));
        std::thread::sleep(Duration::from_millis(500));
        if how == "shutdown" {
            d.ok(json!({"cmd": "shutdown"}));
        } else {
            send_signal(&d.child.0, how);
        }
        let status = wait_exit(&mut d.child.0, HANG_GUARD);
        assert_eq!(status.code(), Some(0), "{how}");
        let path = dir.path().join("wait.h5");
        assert!(det_num::<u64>(&path, "frames_in_file") > 0, "{how}");
    }
}

#[test]
fn sigterm_to_serve_finishes_the_running_acquisition_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path(), &[]);
    d.ok(json!({"cmd": "configure", "frames": 100000, "exposure": "100us", "file": "term"}));
    d.ok(json!({"cmd": "arm"}));
    std::thread::sleep(Duration::from_millis(300));
    send_signal(&d.child.0, "TERM");
    assert_eq!(wait_exit(&mut d.child.0, HANG_GUARD).code(), Some(0));
    let path = dir.path().join("term.h5");
    let rows = det_num::<u64>(&path, "frames_in_file");
    assert!(rows > 0);
    // Every frame the file holds is accounted for in its final attributes.
    assert_eq!(det_num::<u64>(&path, "frames_written_total"), rows);
    assert_eq!(det_num::<u8>(&path, "complete"), 1);
    let file = hdf5::File::open(&path).unwrap();
    let data = file.dataset("entry/instrument/xspress3/data").unwrap();
    assert_eq!(data.shape()[0] as u64, rows);
}

#[test]
fn software_first_needs_one_trigger_in_run() {
    let out = acquire(&[
        "--frames",
        "100",
        "--trigger",
        "software-first",
        "--exposure",
        "10us",
        "--json",
    ]);
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{summary}");
    assert_eq!(summary["frames_acquired"], 100, "{summary}");
    assert_eq!(summary["state"], "done", "{summary}");
}

#[test]
fn surplus_software_triggers_do_not_fail_a_complete_acquisition() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    for (trigger, count) in [("software", 5), ("software_first", 1)] {
        d.ok(json!({"cmd": "configure", "frames": 5, "exposure": "1ms", "trigger": trigger}));
        d.ok(json!({"cmd": "arm"}));
        d.ok(json!({"cmd": "trigger", "count": count + 3}));
        let end = d.wait_state("done");
        assert_eq!(end["frames_acquired"], 5, "{trigger}: {end}");
        assert_eq!(end["triggers_ignored"], 3, "{trigger}: {end}");
        assert_eq!(end["errors"], json!([]), "{trigger}: {end}");
    }
}

#[test]
fn pub_delivers_series_end_past_a_full_high_water_mark() {
    let endpoint = local_endpoint();
    let ctx = zmq::Context::new();
    let sub = ctx.socket(zmq::SUB).unwrap();
    sub.set_rcvhwm(1).unwrap();
    sub.set_subscribe(b"").unwrap();
    sub.set_rcvtimeo(20_000).unwrap();
    sub.connect(&endpoint).unwrap();
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
            .args(["--sim", "full_speed=1", "--stream", &endpoint])
            .args([
                "--stream-type",
                "pub",
                "--stream-hwm",
                "2",
                "--stream-wait",
                "5s",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // A slow subscriber: the sender's queue to it is full whenever it sends.
    let mut htypes = Vec::new();
    loop {
        let parts = sub.recv_multipart(0).expect("a message before series_end");
        let h: Value = serde_json::from_slice(&parts[0]).unwrap();
        let htype = h["htype"].as_str().unwrap_or_default().to_string();
        htypes.push(htype.clone());
        if htype == "series_end" {
            assert!(h["stream_drops"].as_u64().unwrap() > 0, "{h}");
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(htypes[0], "header");
    assert_eq!(wait_exit(&mut child.0, HANG_GUARD).code(), Some(4));
    let summary = summary_of(&mut child);
    assert!(summary["stream_drops"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(summary["errors"], json!([]), "{summary}");
}

#[test]
fn frames_at_1_hz_reach_an_swmr_reader_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Guard(
        Command::new(BIN)
            .args(["run", "-q", "--frames", "3", "--exposure", "1s", "--swmr"])
            .args(["--flush-interval", "200ms", "--out"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let path = dir.path().join("xspress3.h5");
    // Every count of rows the reader saw while the acquisition ran.
    let mut seen = std::collections::BTreeSet::new();
    while child.0.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(50));
        if let Some(rows) = swmr_rows(&path) {
            seen.insert(rows);
        }
    }
    assert!(
        seen.contains(&1) && seen.contains(&2),
        "each frame appeared on its own, not with the last: {seen:?}"
    );
}

/// Rows of `data` as an SWMR reader sees them now; `None` while the file is not readable yet.
fn swmr_rows(path: &std::path::Path) -> Option<u64> {
    let file = hdf5::File::open_as(path, hdf5::file::OpenMode::ReadSWMR).ok()?;
    let data = file.dataset("entry/instrument/xspress3/data").ok()?;
    Some(data.shape()[0] as u64)
}

#[test]
fn serve_confines_files_to_out_and_streams_to_what_the_operator_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("link")).unwrap();
    let allowed = local_endpoint();
    let d = Daemon::start(dir.path(), &["--allow-stream", &allowed]);
    d.error(
        json!({"cmd": "configure", "frames": 3, "file": "link/inside"}),
        "symbolic link",
    );
    let ipc = format!("ipc://{}/control-chosen", elsewhere.path().display());
    d.error(
        json!({"cmd": "configure", "frames": 3, "stream": ipc}),
        "not allowed",
    );
    d.ok(json!({"cmd": "configure", "frames": 3, "file": "inside", "stream": null}));
    d.ok(json!({"cmd": "arm"}));
    d.wait_state("done");
    assert!(dir.path().join("inside.h5").exists());
    assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    d.ok(json!({"cmd": "configure", "frames": 3, "stream": allowed}));
}

#[test]
fn a_second_arm_never_replaces_the_files_of_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    std::fs::write(dir.path().join("again.h5"), b"an older acquisition").unwrap();
    d.ok(json!({"cmd": "configure", "frames": 5, "file": "again", "overwrite": true}));
    d.ok(json!({"cmd": "arm"}));
    d.wait_state("done");
    let path = dir.path().join("again.h5");
    let first = std::fs::read(&path).unwrap();
    assert_eq!(det_num::<u64>(&path, "frames_in_file"), 5);
    // The same configure armed again: its overwrite was for the first acquisition only.
    d.error(json!({"cmd": "arm"}), "again.h5 exists");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        first,
        "the first file is intact"
    );
    // A new configure that asks for it may replace it.
    d.ok(json!({"cmd": "configure", "frames": 7, "file": "again", "overwrite": true}));
    d.ok(json!({"cmd": "arm"}));
    d.wait_state("done");
    assert_eq!(det_num::<u64>(&path, "frames_in_file"), 7);
}

#[test]
fn every_rollover_part_is_checked_before_arming_and_stale_parts_go_with_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let part = |i: u32| dir.path().join(format!("e_{i:05}.h5"));
    std::fs::write(part(1), b"an older part").unwrap();
    d.ok(json!({"cmd": "configure", "frames": 10, "frames_per_file": 5, "file": "e"}));
    d.error(json!({"cmd": "arm"}), "e_00001.h5 exists");
    assert!(!part(0).exists(), "nothing was started");
    // A part the acquisition cannot reach does not stop it.
    d.ok(json!({"cmd": "configure", "frames": 5, "frames_per_file": 5, "file": "e"}));
    d.ok(json!({"cmd": "arm"}));
    d.wait_state("done");
    assert!(part(0).exists());
    // A longer run, then a shorter one with overwrite: no stale later part remains.
    d.ok(
        json!({"cmd": "configure", "frames": 15, "frames_per_file": 5, "file": "e",
                "overwrite": true}),
    );
    d.ok(json!({"cmd": "arm"}));
    d.wait_state("done");
    assert!(part(2).exists());
    d.ok(
        json!({"cmd": "configure", "frames": 5, "frames_per_file": 5, "file": "e",
                "overwrite": true}),
    );
    d.ok(json!({"cmd": "arm"}));
    d.wait_state("done");
    assert!(part(0).exists());
    assert!(
        !part(1).exists() && !part(2).exists(),
        "stale parts removed"
    );
    assert_eq!(det_num::<u32>(&part(0), "file_count"), 1);
}

#[test]
fn a_clean_close_reports_every_written_frame_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let out = acquire(
        &["--frames", "100", "--exposure", "100us", "--json", "--out"]
            .into_iter()
            .chain([dir.path().to_str().unwrap()])
            .collect::<Vec<_>>(),
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{summary}");
    assert_eq!(summary["frames_written"], 100);
    assert_eq!(summary["frames_flushed"], 100, "{summary}");
    assert_eq!(summary["complete"], true);
}

#[test]
fn a_stalled_detector_fails_by_default_instead_of_hanging() {
    let mut child = Guard(
        Command::new(BIN)
            .args([
                "run",
                "-q",
                "--json",
                "--frames",
                "1000",
                "--exposure",
                "1ms",
            ])
            .args(["--sim", "stall_at_frame=100"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert_eq!(wait_exit(&mut child.0, HANG_GUARD).code(), Some(4));
    let summary = summary_of(&mut child);
    assert_eq!(summary["frames_acquired"], 100, "{summary}");
    let message = summary["detector_error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("progress stalled"), "{summary}");
}

#[test]
fn exposures_shorter_than_the_detector_can_do_are_refused() {
    let out = acquire(&["--exposure", "12.5ns", "--frames", "10"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("shortest frame"));
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    d.error(
        json!({"cmd": "configure", "exposure": 12.5e-9}),
        "shorter than the shortest frame",
    );
}

#[test]
fn duplicate_json_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    d.ok(json!({"cmd": "configure", "frames": 3}));
    let reply = d.send_raw(br#"{"cmd":"status","cmd":"arm"}"#);
    assert_eq!(reply["ok"], false, "{reply}");
    assert!(reply["error"]
        .as_str()
        .is_some_and(|e| e.contains("duplicate key `cmd`")));
    assert_eq!(d.ok(json!({"cmd": "status"}))["state"], "configured");
}

#[test]
fn the_monitor_answers_between_acquisitions() {
    let dir = tempfile::tempdir().unwrap();
    let monitor = local_endpoint();
    let d = Daemon::start(dir.path(), &["--monitor", &monitor]);
    let ctx = zmq::Context::new();
    let req = test_support::req_socket(&ctx, &monitor, 10_000);
    let ask = || -> Value {
        req.send("give us a frame please!", 0).unwrap();
        let parts = req.recv_multipart(0).expect("monitor reply");
        serde_json::from_slice(&parts[0]).unwrap()
    };
    assert_eq!(ask()["htype"], "none", "before any acquisition");
    d.ok(json!({"cmd": "configure", "frames": 5, "exposure": "1ms"}));
    d.ok(json!({"cmd": "arm"}));
    d.wait_state("done");
    let after = ask();
    assert_eq!(after["htype"], "image", "{after}");
    assert_eq!(after["frame"], 4, "the last frame stays on show: {after}");
}

/// Overrun recovery: a PUSH receiver that pauses longer than the SDK buffer can hold costs the
/// frames the SDK overwrote during the pause, and nothing after it: the engine catches up.
#[test]
fn after_a_receiver_pause_the_engine_catches_up_and_loses_only_overwritten_frames() {
    let endpoint = local_endpoint();
    let total = 8000u64;
    let sdk_buffer = 1024u64;
    let ctx = zmq::Context::new();
    let pull = ctx.socket(zmq::PULL).unwrap();
    pull.set_rcvhwm(10).unwrap();
    pull.set_rcvtimeo(30_000).unwrap();
    pull.connect(&endpoint).unwrap();
    let mut child = Guard(
        Command::new(BIN)
            .args([
                "run",
                "-q",
                "--json",
                "--frames",
                "8000",
                "--exposure",
                "1ms",
            ])
            .args([
                "--sim",
                "content=pattern",
                "--sdk-buffer",
                "1024",
                "--ring-frames",
                "1024",
            ])
            .args(["--stream", &endpoint, "--stream-hwm", "10"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut received = Vec::new();
    let mut paused = false;
    loop {
        let parts = pull.recv_multipart(0).expect("a message");
        let h: Value = serde_json::from_slice(&parts[0]).unwrap();
        match h["htype"].as_str() {
            Some("image") => received.push(h["frame"].as_u64().unwrap()),
            Some("series_end") => break,
            _ => {}
        }
        if received.len() == 100 && !paused {
            // Three times what the SDK buffer holds at 1 kHz, well beyond buffer and ring.
            std::thread::sleep(Duration::from_millis(3000));
            paused = true;
        }
    }
    assert_eq!(wait_exit(&mut child.0, HANG_GUARD).code(), Some(4));
    let summary = summary_of(&mut child);
    let lost: Vec<[u64; 2]> = serde_json::from_value(summary["lost_ranges"].clone()).unwrap();
    let lost_frames: u64 = lost.iter().map(|r| r[1]).sum();
    assert_eq!(
        summary["lost_ranges_overflow"], 0,
        "every range listed: {summary}"
    );
    assert_eq!(summary["frames_lost"], lost_frames, "{summary}");
    assert!(
        lost_frames > 0,
        "the pause outlasted the buffers: {summary}"
    );
    // Every frame was either received or is in a lost range, and none is both.
    let is_lost = |f: u64| lost.iter().any(|r| r[0] <= f && f < r[0] + r[1]);
    assert_eq!(received.len() as u64 + lost_frames, total, "{summary}");
    assert!(received.iter().all(|&f| !is_lost(f)));
    // Recovery: the losses end soon after the pause, far from the end of the acquisition (an
    // engine stuck one buffer behind loses everything until the detector stops).
    let last_lost = lost.iter().map(|r| r[0] + r[1]).max().unwrap_or(0);
    assert!(
        last_lost + 2 * sdk_buffer < total,
        "losses went on until frame {last_lost} of {total}: {lost:?}"
    );
}

/// Overrun recovery, the issue's own case: the engine falls more than an SDK buffer behind (here
/// the whole process is suspended for a while, as a loaded host might) and must then catch up
/// from the oldest intact frame instead of failing every read at the edge of the buffer.
#[test]
fn an_engine_one_buffer_behind_catches_up() {
    let total = 30_000u64;
    let sdk_buffer = 4096u64;
    let mut child = Guard(
        Command::new(BIN)
            .args([
                "run",
                "-q",
                "--json",
                "--frames",
                "30000",
                "--exposure",
                "100us",
            ])
            .args(["--sim", "content=pattern", "--sdk-buffer", "4096"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));
    send_signal(&child.0, "STOP");
    // 1 s at 10 kHz: more than twice the SDK buffer is overwritten meanwhile.
    std::thread::sleep(Duration::from_millis(1000));
    send_signal(&child.0, "CONT");
    assert_eq!(wait_exit(&mut child.0, HANG_GUARD).code(), Some(4));
    let summary = summary_of(&mut child);
    let lost: Vec<[u64; 2]> = serde_json::from_value(summary["lost_ranges"].clone()).unwrap();
    assert_eq!(
        summary["lost_ranges_overflow"], 0,
        "every range listed: {summary}"
    );
    let lost_frames: u64 = lost.iter().map(|r| r[1]).sum();
    assert_eq!(summary["frames_lost"], lost_frames, "{summary}");
    assert!(
        lost_frames >= 10_000 - sdk_buffer,
        "the suspension cost frames: {summary}"
    );
    assert_eq!(
        summary["frames_acquired"].as_u64().unwrap() + lost_frames,
        total,
        "{summary}"
    );
    let last_lost = lost.iter().map(|r| r[0] + r[1]).max().unwrap_or(0);
    assert!(
        last_lost + 2 * sdk_buffer < total,
        "losses went on until frame {last_lost} of {total}: {lost:?}"
    );
}

/// A sink whose thread cannot start (a process limit on a shared node) fails the run before
/// the detector is armed, with a clear error and a file that says so (`complete = 0`), never
/// a panic. RLIMIT_NPROC binds only unprivileged users, so the run is made one (needs root).
#[test]
fn a_sink_thread_that_cannot_start_fails_the_run_cleanly() {
    use std::os::unix::fs::PermissionsExt;
    // The process itself and one thread (the simulated SDK's): the file writer's cannot start.
    let Some(user) = test_support::LimitedUser::new() else {
        return;
    };
    let limited = user.prefix(2);
    let td = tempfile::tempdir().unwrap();
    std::fs::set_permissions(td.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = Command::new(&limited[0])
        .args(&limited[1..])
        .args([
            BIN, "run", "-q", "--json", "--frames", "20", "--file", "t", "--out",
        ])
        .arg(td.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    let errors = summary["errors"].to_string();
    assert!(
        errors.contains("cannot start the file writer thread"),
        "{summary}"
    );
    let f = hdf5::File::open(td.path().join("t.h5")).unwrap();
    let det = f.group("entry/instrument/xspress3").unwrap();
    let complete: u8 = det.attr("complete").unwrap().read_scalar().unwrap();
    assert_eq!(complete, 0);
    let frames: u64 = det.attr("frames_in_file").unwrap().read_scalar().unwrap();
    assert_eq!(frames, 0);
}

/// The daemon whose acquisition thread cannot start refuses the arm, keeps its detector and
/// still answers (status, shutdown). Needs root, as above.
#[test]
fn serve_refuses_an_arm_whose_thread_cannot_start_and_stays_usable() {
    use std::os::unix::fs::PermissionsExt;
    // The process, ZeroMQ's two threads and the simulated SDK's: none left for the acquisition.
    let Some(user) = test_support::LimitedUser::new() else {
        return;
    };
    let launcher = user.prefix(4);
    let td = tempfile::tempdir().unwrap();
    std::fs::set_permissions(td.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut d = Daemon::start_with(&launcher, td.path(), &[]);
    d.ok(json!({"cmd": "configure", "frames": 10, "file": "d"}));
    d.error(json!({"cmd": "arm"}), "cannot start the acquisition thread");
    assert_eq!(d.ok(json!({"cmd": "status"}))["state"], "configured");
    d.ok(json!({"cmd": "shutdown"}));
    assert_eq!(wait_exit(&mut d.child.0, HANG_GUARD).code(), Some(0));
}
