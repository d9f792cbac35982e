//! The real `xfel-serve` and `xfel-bridge` on a generated run, on 127.0.0.1: every train the
//! server sends equals what the reader reads from the files.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use euxfel::{DataCollection, OpenOptions, TrainValue};
use fixtures::euxfel::{make_run, RunSpec};
use karabo_bridge::client::{Client, ClientConfig, ClientSocket};
use karabo_bridge::dtype::{Dtype, Scalar};
use karabo_bridge::train::Entry;

const SERVE: &str = env!("CARGO_BIN_EXE_xfel-serve");
const BRIDGE: &str = env!("CARGO_BIN_EXE_xfel-bridge");
/// Bounds every wait in these tests.
const LIMIT: Duration = Duration::from_secs(60);
/// Held while a fixture file is open for writing and while a child starts: a child forked
/// meanwhile would inherit the writer's descriptor and its HDF5 file lock, and keep it.
static FILES: Mutex<()> = Mutex::new(());

fn files_lock() -> std::sync::MutexGuard<'static, ()> {
    FILES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn small_run(dir: &Path) {
    let _files = files_lock();
    let spec = RunSpec {
        trains_per_sequence: 4,
        sequences: 2,
        modules: 2,
        frames: 3,
        frame_height: 8,
        frame_width: 4,
        ..RunSpec::default()
    };
    make_run(dir, &spec).unwrap();
}

/// A running xfel-serve, killed when dropped, and its endpoint.
struct Server {
    child: Child,
    endpoint: String,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let files = files_lock();
        // Other tests of this process write fixtures meanwhile; a child inherits their open
        // HDF5 files with libhdf5's lock on them, so the children do not lock (they only read).
        let mut child = Command::new(SERVE)
            .env("HDF5_USE_FILE_LOCKING", "FALSE")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(files);
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let endpoint = line
            .strip_prefix("Streamer started on: ")
            .unwrap_or_else(|| panic!("no endpoint in {line:?}"))
            .trim()
            .to_string();
        Server { child, endpoint }
    }

    fn wait(mut self) -> (i32, String) {
        let status = test_support::wait_exit(&mut self.child, LIMIT);
        let mut out = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut o, &mut out);
        }
        (status.code().unwrap_or(-1), out)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client(endpoint: &str) -> Client {
    let ctx = zmq::Context::new();
    let mut config = ClientConfig::new(endpoint, ClientSocket::Req);
    config.timeout_ms = Some(LIMIT.as_millis() as i32);
    Client::connect(&ctx, config).unwrap()
}

#[test]
fn every_train_equals_the_files() {
    let dir = tempfile::tempdir().unwrap();
    small_run(dir.path());
    let dc = DataCollection::open_run(dir.path(), &OpenOptions::default()).unwrap();
    let expected: Vec<(u64, euxfel::TrainData)> = dc.trains().map(Result::unwrap).collect();
    let server = Server::start(&["files", dir.path().to_str().unwrap(), "0"]);
    assert!(
        server.endpoint.starts_with("tcp://127.0.0.1:"),
        "{}",
        server.endpoint
    );
    let mut c = client(&server.endpoint);
    for (tid, data) in &expected {
        let got = c.next_train().unwrap().train;
        assert_eq!(got.train_id(), Some(*tid));
        for (source, keys) in data {
            let st = &got.sources[source];
            for (key, value) in keys {
                let (TrainValue::Array { dtype, bytes, .. }, Some(entry)) = (value, st.get(key))
                else {
                    continue;
                };
                match entry {
                    Entry::Array(a) => assert_eq!(&a.data[..], &bytes[..], "{source} {key}"),
                    // A 0-d value (control data, read for blocks of trains) goes out as its
                    // Python value: this train's row, not a neighbour's.
                    Entry::Value(v) => {
                        let dtype = Dtype::from_euxfel(dtype).unwrap();
                        let bytes = bytes.clone();
                        assert_eq!(
                            Some(v),
                            Scalar { dtype, bytes }.item().as_ref(),
                            "{source} {key}"
                        );
                    }
                    Entry::Scalar(_) => panic!("{source} {key}: a numpy scalar in protocol 2.2"),
                }
            }
        }
    }
    let (code, out) = server.wait();
    assert_eq!(code, 0);
    assert!(
        out.contains("sent 8 trains (train IDs 10000 to 10007)"),
        "{out}"
    );
}

#[test]
fn monitor_sees_every_train_of_a_push_server_with_a_train_range() {
    let dir = tempfile::tempdir().unwrap();
    small_run(dir.path());
    let server = Server::start(&[
        "files",
        dir.path().to_str().unwrap(),
        "0",
        "-z",
        "PUSH",
        "--train-range",
        "10002:10006",
        "--loop",
        "--source",
        "SA1*",
    ]);
    let _files = files_lock();
    let out = Command::new(BRIDGE)
        .args(["monitor", &server.endpoint, "-z", "PUSH", "--ntrains", "9"])
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["trains"], 9);
    assert_eq!(s["first_train"], 10002);
    // Four trains, then the loop starts over twice.
    assert_eq!(s["train_id_regressions"], 2);
    assert_eq!(s["missing_trains"], 0);
}

#[test]
fn usage_and_start_errors_have_their_exit_codes() {
    let code = |args: &[&str]| {
        let _files = files_lock();
        Command::new(SERVE)
            .env("HDF5_USE_FILE_LOCKING", "FALSE")
            .args(args)
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(code(&["files", "/nonexistent/run", "0"]), Some(3));
    let dir = tempfile::tempdir().unwrap();
    small_run(dir.path());
    let run = dir.path().to_str().unwrap();
    assert_eq!(code(&["files", run, "0", "--source", "NO_SUCH*"]), Some(3));
    assert_eq!(code(&["files", run, "0", "--train-range", "x"]), Some(2));
    assert_eq!(code(&["files", run, "0", "--rate", "0"]), Some(2));
    assert_eq!(code(&["files", run, "0", "--protocol", "2.1"]), Some(2));
    assert_eq!(code(&["files", run, "tcp://256.0.0.1:1"]), Some(3));
}

#[test]
fn sigterm_stops_a_server_waiting_for_its_rate() {
    let dir = tempfile::tempdir().unwrap();
    small_run(dir.path());
    // One train per 1000 s: after the first, the server sleeps for its rate.
    let server = Server::start(&[
        "files",
        dir.path().to_str().unwrap(),
        "0",
        "-z",
        "PUB",
        "--rate",
        "0.001",
        "--source",
        "SA1*",
    ]);
    test_support::send_signal(&server.child, "TERM");
    let (code, out) = server.wait();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("xfel-serve: stopped after"), "{out}");
}

#[test]
fn sigterm_stops_a_rep_server_whose_client_went_away() {
    let dir = tempfile::tempdir().unwrap();
    small_run(dir.path());
    let server = Server::start(&["files", dir.path().to_str().unwrap(), "0"]);
    {
        // Two small trains: the server then waits for a request that never comes, first
        // asking without sleeping, then in poll slices.
        let mut c = client(&server.endpoint);
        for _ in 0..2 {
            c.next_train().unwrap();
        }
    }
    test_support::send_signal(&server.child, "TERM");
    let (code, out) = server.wait();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("xfel-serve: stopped after 2 trains"), "{out}");
}

#[test]
fn sigterm_stops_a_push_server_without_a_puller() {
    let dir = tempfile::tempdir().unwrap();
    small_run(dir.path());
    // No puller ever connects: the server waits for room for its first train.
    let server = Server::start(&["files", dir.path().to_str().unwrap(), "0", "-z", "PUSH"]);
    test_support::send_signal(&server.child, "TERM");
    let (code, out) = server.wait();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("xfel-serve: stopped after 0 trains"), "{out}");
}

/// The server's standard error and exit code, once it has ended.
fn finish(mut server: Server) -> (i32, String, String) {
    let mut err = String::new();
    if let Some(mut e) = server.child.stderr.take() {
        let (code, out) = server.wait();
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
        return (code, out, err);
    }
    let (code, out) = server.wait();
    (code, out, err)
}

#[test]
fn a_file_that_cannot_be_opened_is_reported_and_sets_the_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    small_run(dir.path());
    let broken = dir.path().join("RAW-R0450-DA01-S00001.h5");
    let len = std::fs::metadata(&broken).unwrap().len();
    {
        let _files = files_lock();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&broken)
            .unwrap();
        f.set_len(len / 2).unwrap();
    }
    let server = Server::start(&[
        "files",
        dir.path().to_str().unwrap(),
        "0",
        "-z",
        "PUB",
        "--json",
    ]);
    let (code, out, err) = finish(server);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("Skipping file RAW-R0450-DA01-S00001.h5"),
        "{err}"
    );
    let summary: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(summary["files_skipped"], 1, "{out}");
    assert_eq!(summary["trains_sent"], 8, "{out}");
}

/// The names of a process's threads (Linux truncates them to 15 bytes).
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|n| n.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn sigterm_stops_a_server_whose_last_trains_are_not_taken() {
    let dir = tempfile::tempdir().unwrap();
    {
        let _files = files_lock();
        // Two trains of 2 MiB from one module.
        let spec = RunSpec {
            trains_per_sequence: 2,
            sequences: 1,
            modules: 1,
            frames: 16,
            frame_height: 256,
            frame_width: 256,
            ..RunSpec::default()
        };
        make_run(dir.path(), &spec).unwrap();
    }
    let server = Server::start(&[
        "files",
        dir.path().to_str().unwrap(),
        "0",
        "-z",
        "PUSH",
        "--source",
        "*0CH0*",
    ]);
    // A puller that takes nothing, with a small kernel buffer: the first train fills what it
    // holds, the second stays queued in the server once the server has sent it.
    let ctx = zmq::Context::new();
    let puller = ctx.socket(zmq::PULL).unwrap();
    puller.set_rcvhwm(1).unwrap();
    puller.set_rcvbuf(4096).unwrap();
    puller.set_linger(0).unwrap();
    puller.connect(&server.endpoint).unwrap();
    // Every train is sent; the server waits for their delivery, on a thread of its own.
    let pid = server.child.id();
    let started = std::time::Instant::now();
    while !thread_names(pid)
        .iter()
        .any(|n| n.starts_with("xfel-serve deli"))
    {
        assert!(
            started.elapsed() < LIMIT,
            "the server never waited for delivery: {:?}",
            thread_names(pid)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    test_support::send_signal(&server.child, "TERM");
    let (code, out, err) = finish(server);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("xfel-serve: stopped after 2 trains"), "{out}");
    assert!(out.contains("may not have been delivered"), "{out}");
}

/// One source of a hand-made train: integer values and uint8 arrays of the given shapes.
fn hand_source(
    train: &mut karabo_bridge::train::Train,
    name: &str,
    tid: u64,
    values: &[&str],
    arrays: &[(&str, Vec<usize>)],
) {
    use karabo_bridge::dtype::Kind;
    use karabo_bridge::train::{Array, Payload, SourceTrain};
    let mut st = SourceTrain {
        metadata: karabo_bridge::train::file_metadata(name, tid),
        data: Vec::new(),
    };
    for key in values {
        st.data
            .push((key.to_string(), Entry::Value(rmpv::Value::from(tid))));
    }
    for (key, shape) in arrays {
        let len = shape.iter().product::<usize>();
        st.data.push((
            key.to_string(),
            Entry::Array(Array {
                dtype: Dtype::new(Kind::UInt, 1),
                shape: shape.clone(),
                data: Payload::Owned(vec![tid as u8; len]),
            }),
        ));
    }
    train.sources.insert(name.to_string(), st);
}

#[test]
fn record_refuses_sources_the_file_cannot_hold_and_keeps_recording() {
    use karabo_bridge::protocol::encode_v2;
    let ctx = zmq::Context::new();
    let sender = ctx.socket(zmq::PUSH).unwrap();
    sender.set_linger(0).unwrap();
    sender.bind("tcp://127.0.0.1:0").unwrap();
    let endpoint = sender.get_last_endpoint().unwrap().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let recorder = {
        let _files = files_lock();
        Command::new(BRIDGE)
            .args(["record", &endpoint, "-z", "PUSH", "--trains", "3", "--json"])
            .arg("-o")
            .arg(&out_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    for tid in 1..=3u64 {
        let mut train = karabo_bridge::train::Train::default();
        hand_source(
            &mut train,
            "GOOD/DEV/X:out",
            tid,
            &["n"],
            &[("data.x", vec![2])],
        );
        if tid == 2 {
            // Each would have ended the recording with an HDF5 error.
            hand_source(&mut train, "S/D/X:out", tid, &["a", "a.b"], &[]);
            hand_source(&mut train, "R/D/X:out", tid, &[], &[("d", vec![1; 40])]);
            hand_source(&mut train, "N/D/X:out", tid, &["a\0b"], &[]);
            hand_source(
                &mut train,
                "E/D/X:out",
                tid,
                &[],
                &[("d", vec![0, 1 << 31, 1 << 31])],
            );
            // Read back as part of another source by EuXFEL readers.
            hand_source(&mut train, "P/Q:out/R", tid, &["b"], &[]);
            hand_source(&mut train, "C/D", tid, &["v.value"], &[]);
            hand_source(&mut train, "C/D/E", tid, &["w.value"], &[]);
        }
        let parts = encode_v2(train, None).unwrap();
        let n = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            let more = if i + 1 < n { zmq::SNDMORE } else { 0 };
            sender.send(part, more).unwrap();
        }
    }
    let mut recorder = recorder;
    let status = test_support::wait_exit(&mut recorder, LIMIT);
    let mut out = String::new();
    std::io::Read::read_to_string(recorder.stdout.as_mut().unwrap(), &mut out).unwrap();
    let s: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    // Left out, counted: exit status 1, and every other train and source written.
    assert_eq!(status.code(), Some(1), "{out}");
    assert_eq!(s["trains"], 3, "{out}");
    assert_eq!(s["refused"], 6, "{out}");
    assert_eq!(s["files"].as_array().map(Vec::len), Some(1), "{out}");
    let dc = DataCollection::open_run(&out_dir, &OpenOptions::default()).unwrap();
    assert_eq!(*dc.train_ids, vec![1, 2, 3]);
    let sources: Vec<String> = dc.all_sources().into_iter().collect();
    assert_eq!(sources, ["C/D", "GOOD/DEV/X:out"], "{out}");
}

#[test]
fn a_file_truncated_while_served_ends_the_server_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    {
        let _files = files_lock();
        // 20 trains of 2 MiB from one module, in one file.
        let spec = RunSpec {
            trains_per_sequence: 20,
            sequences: 1,
            modules: 1,
            frames: 16,
            frame_height: 256,
            frame_width: 256,
            ..RunSpec::default()
        };
        make_run(dir.path(), &spec).unwrap();
    }
    let server = Server::start(&[
        "files",
        dir.path().to_str().unwrap(),
        "0",
        "-z",
        "PUSH",
        "--rate",
        "20",
        "--source",
        "*0CH0*",
        "--json",
    ]);
    let ctx = zmq::Context::new();
    let puller = ctx.socket(zmq::PULL).unwrap();
    puller.set_rcvtimeo(200).unwrap();
    puller.set_linger(0).unwrap();
    puller.connect(&server.endpoint).unwrap();
    let started = std::time::Instant::now();
    while puller.recv_multipart(0).is_err() {
        assert!(started.elapsed() < LIMIT, "no train came");
    }
    // The module's file loses its last three quarters under the server's memory map.
    let file = dir.path().join("RAW-R0450-LPD00-S00000.h5");
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len / 4)
        .unwrap();
    // Take trains until the server has ended.
    let mut server = server;
    let mut received = 1;
    while server.child.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < LIMIT, "the server did not end");
        if puller.recv_multipart(0).is_ok() {
            received += 1;
        }
    }
    let (code, out, err) = finish(server);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("xfel-serve: bus error reading train 100")
            && err.contains("of FXE_DET_LPD1M-1/DET/0CH0:xtdf in ")
            && err.contains("RAW-R0450-LPD00-S00000.h5: a file of the data shrank"),
        "{err}"
    );
    assert!(received < 20, "every train came from a truncated file");
    // With --json the report is an object on stdout too.
    let s: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(s["exit_code"], 1, "{out}");
    let error = s["error"].as_str().unwrap();
    assert!(error.starts_with("bus error reading train 100"), "{out}");
    assert!(s["trains_sent"].as_u64().unwrap() < 20, "{out}");
}

#[test]
fn start_failures_with_json_are_json_objects() {
    let run = |bin: &str, args: &[&str]| {
        let _files = files_lock();
        let out = Command::new(bin)
            .env("HDF5_USE_FILE_LOCKING", "FALSE")
            .args(args)
            .output()
            .unwrap();
        let s: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {out:?}"));
        (out.status.code(), s)
    };
    let (code, s) = run(SERVE, &["files", "/nonexistent/run", "0", "--json"]);
    assert_eq!((code, &s["exit_code"]), (Some(3), &serde_json::json!(3)));
    assert!(
        s["error"].as_str().unwrap().contains("/nonexistent/run"),
        "{s}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let out_dir = file.join("run");
    let (code, s) = run(
        BRIDGE,
        &[
            "record",
            "tcp://127.0.0.1:1",
            "-o",
            out_dir.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, Some(3), "{s}");
    assert!(s["error"].as_str().unwrap().contains("a-file"), "{s}");
}

#[test]
fn a_rep_server_drops_a_peer_sending_a_huge_request() {
    let dir = tempfile::tempdir().unwrap();
    small_run(dir.path());
    let server = Server::start(&["files", dir.path().to_str().unwrap(), "0", "--json"]);
    let ctx = zmq::Context::new();
    let hostile = ctx.socket(zmq::REQ).unwrap();
    hostile.set_linger(0).unwrap();
    hostile.connect(&server.endpoint).unwrap();
    // Its reply would echo the 4 MiB.
    hostile.send(vec![b'x'; 4 << 20], 0).unwrap();
    let mut c = client(&server.endpoint);
    for _ in 0..8 {
        c.next_train().unwrap();
    }
    let (code, out, err) = finish(server);
    assert_eq!(code, 0, "{out}{err}");
    let s: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(s["bad_requests"], 0, "{out}");
    assert_eq!(s["trains_sent"], 8, "{out}");
    assert!(hostile.poll(zmq::POLLIN, 0).unwrap() == 0);
}
