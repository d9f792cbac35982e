//! The real `xsp3-receive` binary against the real `xsp3-acquire` and against crafted streams
//! sent from Rust sockets, on 127.0.0.1.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use acq_core::geometry::Scaler;
use xspress3::layout;
use xspress3::protocol::{Header, ImageHeader, SeriesEnd, PROTOCOL};
use xspress3::read_acq_file;

use test_support::free_port;

const RECEIVE: &str = env!("CARGO_BIN_EXE_xsp3-receive");
/// The real `xsp3-acquire` (another package's binary).
fn acquire_bin() -> std::path::PathBuf {
    test_support::workspace_bin("xsp3-acquire", "xsp3-acquire")
}
/// Bounds every child process and every wait in these tests.
const LIMIT: Duration = Duration::from_secs(90);

/// A child process, killed when dropped, whose output is collected as it comes.
struct Proc {
    child: Child,
    name: &'static str,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

fn collect<R: Read + Send + 'static>(pipe: R, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut lines = BufReader::new(pipe);
        let mut line = String::new();
        while lines.read_line(&mut line).unwrap_or(0) > 0 {
            into.lock().unwrap().push_str(&line);
            line.clear();
        }
    })
}

impl Proc {
    fn spawn(name: &'static str, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Proc {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), Arc::clone(&stdout)),
            collect(child.stderr.take().unwrap(), Arc::clone(&stderr)),
        ];
        Proc {
            child,
            name,
            stdout,
            stderr,
            readers,
        }
    }

    fn output(&self) -> String {
        format!(
            "--- {} stdout\n{}--- stderr\n{}",
            self.name,
            self.stdout.lock().unwrap(),
            self.stderr.lock().unwrap()
        )
    }

    /// Waits until stderr contains `needle`.
    fn wait_stderr(&self, needle: &str) {
        let deadline = Instant::now() + LIMIT;
        while !self.stderr.lock().unwrap().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "{} never printed `{needle}`\n{}",
                self.name,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(ok.success());
    }

    fn wait(mut self) -> Finished {
        let deadline = Instant::now() + LIMIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for child") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "{} did not exit within {LIMIT:?}\n{}",
                    self.name,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        Finished {
            status,
            stdout: self.stdout.lock().unwrap().clone(),
            stderr: self.stderr.lock().unwrap().clone(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Finished {
    fn show(&self) -> String {
        format!(
            "status {:?}\n--- stdout\n{}--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }

    /// The `--json` summary line.
    fn summary(&self) -> serde_json::Value {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["event"] == "summary")
            .unwrap_or_else(|| panic!("no JSON summary\n{}", self.show()))
    }
}

/// A Rust sender of crafted streams: PUSH (or XPUB) bound to an ephemeral port.
struct Sender {
    _ctx: zmq::Context,
    socket: zmq::Socket,
    endpoint: String,
}

impl Sender {
    fn bind(kind: zmq::SocketType) -> Sender {
        let ctx = zmq::Context::new();
        let socket = ctx.socket(kind).unwrap();
        socket.set_sndtimeo(LIMIT.as_millis() as i32).unwrap();
        socket.set_linger(LIMIT.as_millis() as i32).unwrap();
        socket.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = socket.get_last_endpoint().unwrap().unwrap();
        Sender {
            _ctx: ctx,
            socket,
            endpoint,
        }
    }

    fn raw(&self, parts: &[&[u8]]) {
        self.socket
            .send_multipart(parts.iter().copied(), 0)
            .expect("send (did the receiver connect?)");
    }

    fn header(&self, h: &Header) {
        self.raw(&[&serde_json::to_vec(h).unwrap()]);
    }

    fn end(&self, e: &SeriesEnd) {
        self.raw(&[&serde_json::to_vec(e).unwrap()]);
    }

    fn image(&self, g: Geo, msg_number: u64, frame: u64) {
        let (json, mca, scalers) = image_parts(g, msg_number, frame);
        self.raw(&[&json, &mca, &scalers]);
    }
}

#[derive(Clone, Copy)]
struct Geo {
    nch: u32,
    nbins: u32,
}

const SMALL: Geo = Geo { nch: 2, nbins: 16 };

fn header(name: &str, g: Geo, n_frames: u64) -> Header {
    let nch = g.nch as usize;
    Header {
        htype: "header".into(),
        protocol: PROTOCOL.into(),
        filename: name.into(),
        overwritable: false,
        n_channels: g.nch,
        n_bins: g.nbins,
        first_bin: 0,
        rebin: 1,
        n_frames,
        exposure_ticks: 80_000,
        exptime: 0.001,
        clock_hz: 80e6,
        trigger_mode: "internal".into(),
        gap_ns: 25,
        scaler_names: Scaler::ALL.iter().map(|s| s.name().to_string()).collect(),
        event_widths: vec![6; nch],
        windows: vec![[0, g.nbins - 1, 0, g.nbins - 1]; nch],
        good_thresholds: vec![0; nch],
        rois: Vec::new(),
        backend: "crafted".into(),
        software: "crafted-sender 1".into(),
        dtype: "uint32".into(),
    }
}

fn series_end(frames_sent: u64) -> SeriesEnd {
    SeriesEnd {
        htype: "series_end".into(),
        frames_sent,
        frames_acquired: frames_sent,
        ..SeriesEnd::default()
    }
}

/// The MCA word `i` of `frame`.
fn mca_word(frame: u64, i: usize) -> u32 {
    (frame as u32).wrapping_mul(1000).wrapping_add(i as u32)
}

fn image_parts(g: Geo, msg_number: u64, frame: u64) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let json = serde_json::to_vec(&ImageHeader {
        htype: "image".into(),
        frame,
        msg_number,
        shape: [g.nch, g.nbins],
        scaler_shape: [g.nch, 9],
        dtype: "uint32".into(),
        compression: "none".into(),
        exptime: 0.001,
        timestamp_ns: 1_000 + frame,
        flags: 0,
        rois: Vec::new(),
    })
    .unwrap();
    let mca: Vec<u8> = (0..(g.nch * g.nbins) as usize)
        .flat_map(|i| mca_word(frame, i).to_le_bytes())
        .collect();
    // time, reset_ticks, reset_count, all_events, all_good, in_window_0/1, pileup, total_ticks
    let scalers: Vec<u8> = (0..g.nch)
        .flat_map(|c| [80_000, 10, 1, 100 + c, 90, 5, 6, 1, 80_000 + frame as u32])
        .flat_map(u32::to_le_bytes)
        .collect();
    (json, mca, scalers)
}

/// Every path under `dir` (files and directories), relative to it, sorted.
fn tree(dir: &Path) -> Vec<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let p = e.path();
                out.push(p.strip_prefix(base).unwrap().to_path_buf());
                if p.is_dir() {
                    walk(base, &p, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn det_attr<T: hdf5::H5Type>(path: &Path, name: &str) -> T {
    let file = hdf5::File::open(path).unwrap();
    let det = file.group(layout::DETECTOR).unwrap();
    det.attr(name)
        .unwrap_or_else(|e| panic!("{}: attribute {name}: {e}", path.display()))
        .read_scalar()
        .unwrap()
}

fn det_str(path: &Path, name: &str) -> String {
    det_attr::<hdf5::types::VarLenUnicode>(path, name).to_string()
}

fn receive(args: &[&str]) -> Proc {
    Proc::spawn("xsp3-receive", RECEIVE, args)
}

/// (a) One acquisition with both sinks: the receiver's file holds exactly the frames, in order,
/// that xsp3-acquire's own file holds.
#[test]
fn receiver_gets_every_frame_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (acq_dir, root) = (dir.path().join("acq"), dir.path().join("recv"));
    let endpoint = format!("tcp://127.0.0.1:{}", free_port());
    let frames = 300; // 9 whole 32-frame chunks and a remainder
    let receiver = receive(&[
        "--connect",
        &endpoint,
        "--root",
        root.to_str().unwrap(),
        "--once",
        "--timeout",
        "60s",
        "--json",
        "-q",
    ]);
    let acquire = Proc::spawn(
        "xsp3-acquire",
        acquire_bin(),
        &[
            "run",
            "--frames",
            &frames.to_string(),
            "--exposure",
            "100us",
            "--stream",
            &endpoint,
            "--out",
            acq_dir.to_str().unwrap(),
            "--file",
            "scan_7",
            "-q",
        ],
    )
    .wait();
    assert!(acquire.status.success(), "{}", acquire.show());
    let received = receiver.wait();
    assert!(received.status.success(), "{}", received.show());

    let theirs = read_acq_file(&acq_dir.join("scan_7.h5")).unwrap();
    let path = root.join("scan_7.h5");
    let ours = read_acq_file(&path).unwrap_or_else(|e| panic!("{e}\n{}", received.show()));
    assert_eq!(ours.data.shape(), [frames, 4, 4096]);
    assert_eq!(theirs.frame_number.len(), frames);
    let in_order: Vec<u64> = (0..frames as u64).collect();
    assert_eq!(ours.frame_number.to_vec(), in_order);
    assert_eq!(ours.data, theirs.data);
    assert_eq!(ours.scalers, theirs.scalers);
    assert_eq!(ours.timestamp, theirs.timestamp);
    assert_eq!(ours.event_width, theirs.event_width);
    assert_eq!(ours.output_count_rate, theirs.output_count_rate);
    assert_eq!(ours.dead_time_saturated, theirs.dead_time_saturated);
    let same = |a: f64, b: f64| a == b || (a.is_nan() && b.is_nan());
    assert!(ours
        .dead_time_correction
        .iter()
        .zip(theirs.dead_time_correction.iter())
        .all(|(&a, &b)| same(a, b)));
    assert_eq!(ours.frames_lost, 0);
    assert_eq!(ours.clock_hz, theirs.clock_hz);
    assert_eq!(det_attr::<u64>(&path, "stream_gaps"), 0);
    assert_eq!(det_attr::<u8>(&path, "complete"), 1);
    assert_eq!(det_attr::<u8>(&path, "series_end_received"), 1);
    let acq_file = acq_dir.join("scan_7.h5");
    assert_eq!(det_str(&path, "software"), det_str(&acq_file, "software"));
    assert_eq!(
        det_attr::<u32>(&path, "exposure_ticks"),
        det_attr::<u32>(&acq_file, "exposure_ticks")
    );
    assert!(det_str(&path, "receiver").starts_with("xsp3-receive "));

    let summary = received.summary();
    assert_eq!(summary["failed"], false);
    assert_eq!(summary["series"][0]["frames_written"], frames as u64);
    assert_eq!(summary["series"][0]["files"][0]["frames"], frames as u64);
}

/// (b) Names from the header that leave the root are refused; nothing is written for those
/// series, inside the root or outside it, and the receiver goes on with the next series.
#[test]
fn receiver_refuses_hostile_file_names() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("root");
    let absolute = base.path().join("abs").join("evil");
    let tx = Sender::bind(zmq::PUSH);
    let receiver = receive(&[
        "--connect",
        &tx.endpoint,
        "--root",
        root.to_str().unwrap(),
        "--timeout",
        "3s",
        "--json",
        "-q",
    ]);
    let hostile = ["../evil", absolute.to_str().unwrap(), "a/../../b", "x/.."];
    for name in hostile {
        tx.header(&header(name, SMALL, 3));
        for i in 0..3 {
            tx.image(SMALL, i, i);
        }
        tx.end(&series_end(3));
    }
    tx.header(&header("good", SMALL, 2));
    tx.image(SMALL, 0, 0);
    tx.image(SMALL, 1, 1);
    tx.end(&series_end(2));
    let done = receiver.wait();

    assert_eq!(done.status.code(), Some(4), "{}", done.show());
    for name in hostile {
        assert!(
            done.stderr.contains(&format!("file name `{name}` refused")),
            "no refusal of {name}\n{}",
            done.show()
        );
    }
    assert_eq!(
        tree(base.path()),
        [PathBuf::from("root"), "root/good.h5".into()]
    );
    let summary = done.summary();
    let series = summary["series"].as_array().unwrap();
    assert_eq!(series.len(), hostile.len() + 1);
    for s in &series[..hostile.len()] {
        assert!(s["written_as"].is_null() && s["files"].as_array().unwrap().is_empty());
    }
    let good = read_acq_file(&root.join("good.h5")).unwrap();
    assert_eq!(good.frame_number.to_vec(), [0, 1]);

    // A hostile --file is refused the same way.
    let tx = Sender::bind(zmq::PUSH);
    let receiver = receive(&[
        "--connect",
        &tx.endpoint,
        "--root",
        root.to_str().unwrap(),
        "--file",
        "../evil2",
        "--once",
        "--timeout",
        "60s",
        "-q",
    ]);
    tx.header(&header("fine", SMALL, 1));
    tx.image(SMALL, 0, 0);
    tx.end(&series_end(1));
    let done = receiver.wait();
    assert_eq!(done.status.code(), Some(4), "{}", done.show());
    assert!(
        done.stderr.contains("`../evil2` refused"),
        "{}",
        done.show()
    );
    assert_eq!(
        tree(base.path()),
        [PathBuf::from("root"), "root/good.h5".into()]
    );
}

/// (c) Gaps in msg_number are recorded in the file: the gap count, the frames missing and their
/// ranges, beside what the sender's series_end reports.
#[test]
fn receiver_records_msg_number_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let tx = Sender::bind(zmq::PUSH);
    let receiver = receive(&[
        "--connect",
        &tx.endpoint,
        "--root",
        dir.path().to_str().unwrap(),
        "--once",
        "--timeout",
        "60s",
        "--json",
        "-q",
    ]);
    tx.header(&header("gaps", SMALL, 10));
    // msg 3 and 4 (frames 3, 4) go missing; the SDK lost frames 6 and 7 before the stream;
    // msg 7 (frame 9) goes missing at the end.
    for (msg, frame) in [(0, 0), (1, 1), (2, 2), (5, 5), (6, 8)] {
        tx.image(SMALL, msg, frame);
    }
    tx.end(&SeriesEnd {
        htype: "series_end".into(),
        frames_sent: 8,
        frames_acquired: 8,
        frames_lost: 2,
        lost_ranges: vec![[6, 2]],
        sdk_overruns: 1,
        ..SeriesEnd::default()
    });
    let done = receiver.wait();
    assert_eq!(
        done.status.code(),
        Some(4),
        "data was lost\n{}",
        done.show()
    );

    let path = dir.path().join("gaps.h5");
    let file = read_acq_file(&path).unwrap();
    assert_eq!(file.frame_number.to_vec(), [0, 1, 2, 5, 8]);
    for (row, frame) in [0u64, 1, 2, 5, 8].into_iter().enumerate() {
        assert_eq!(file.data[[row, 1, 3]], mca_word(frame, 16 + 3));
    }
    assert_eq!(det_attr::<u64>(&path, "stream_gaps"), 2);
    assert_eq!(det_attr::<u64>(&path, "msg_missing"), 3);
    assert_eq!(file.frames_lost, 2 + 3);
    assert_eq!(det_attr::<u64>(&path, "sdk_overruns"), 1);
    assert_eq!(det_attr::<u8>(&path, "complete"), 0);
    assert_eq!(
        file.lost_frame_ranges
            .outer_iter()
            .map(|r| [r[0], r[1]])
            .collect::<Vec<_>>(),
        [[3, 2], [6, 2], [9, 1]]
    );
    let s = &done.summary()["series"][0];
    assert_eq!(s["msg_gaps"], 2);
    assert_eq!(s["msg_missing"], 3);
    assert_eq!(s["frames_lost_upstream"], 2);
}

/// (d) Malformed messages are skipped, counted and named; the receiver keeps going and writes
/// the good frames of the series.
#[test]
fn receiver_survives_malformed_messages() {
    let dir = tempfile::tempdir().unwrap();
    let tx = Sender::bind(zmq::PUSH);
    let receiver = receive(&[
        "--connect",
        &tx.endpoint,
        "--root",
        dir.path().to_str().unwrap(),
        "--once",
        "--timeout",
        "60s",
        "--json",
        "-q",
    ]);
    // Before any header: garbage.
    tx.raw(&[b"\xff\xfe not json"]);
    tx.header(&header("mal", SMALL, 3));
    tx.image(SMALL, 0, 0);
    let (json, mca, scalers) = image_parts(SMALL, 1, 1);
    tx.raw(&[b"{not json"]);
    tx.raw(&[&json, &mca]); // wrong part count
    tx.raw(&[&json, &mca[..mca.len() - 4], &scalers]); // wrong MCA size
    tx.raw(&[&json, &mca, &scalers, b"extra", b"parts"]); // too many parts
    tx.raw(&[br#"{"htype":"pickle"}"#]);
    tx.raw(&[br#"{"htype":"header","filename":"x"}"#]); // a header missing fields
    let (other_json, other_mca, other_scalers) = image_parts(Geo { nch: 1, nbins: 32 }, 1, 1);
    tx.raw(&[&other_json, &other_mca, &other_scalers]); // a shape the header did not announce
    tx.raw(&[b""]);
    tx.image(SMALL, 2, 2);
    tx.end(&series_end(3));
    let done = receiver.wait();

    // Not a crash: a clean exit that reports the losses.
    assert_eq!(done.status.code(), Some(4), "{}", done.show());
    let summary = done.summary();
    assert_eq!(summary["malformed_messages"], 9, "{}", done.show());
    for problem in [
        "not valid JSON",
        "image message has 2 parts, expected 3",
        "MCA part has 124 bytes, expected 128",
        "image message has 5 parts, expected 3",
        "unknown htype `pickle`",
        "has shape [1, 32]",
        "missing field",
    ] {
        assert!(
            done.stderr.contains(problem),
            "`{problem}` not reported\n{}",
            done.show()
        );
    }
    let path = dir.path().join("mal.h5");
    let file = read_acq_file(&path).unwrap();
    // Frame 1 never arrived intact: msg 1 of the wrong shape is discarded, the rest lack it.
    assert_eq!(file.frame_number.to_vec(), [0, 2]);
    assert_eq!(file.data[[1, 0, 5]], mca_word(2, 5));
    assert_eq!(det_attr::<u64>(&path, "stream_gaps"), 0);
    assert_eq!(det_attr::<u64>(&path, "frames_discarded"), 1);
    assert_eq!(file.frames_lost, 1);
}

/// (e) --print writes nothing, even with a root and a file name in the header.
#[test]
fn print_mode_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let tx = Sender::bind(zmq::PUSH);
    let receiver = receive(&[
        "--connect",
        &tx.endpoint,
        "--root",
        root.to_str().unwrap(),
        "--print",
        "--once",
        "--timeout",
        "60s",
    ]);
    tx.header(&header("printed", SMALL, 4));
    for i in 0..4 {
        tx.image(SMALL, i, i);
    }
    tx.end(&series_end(4));
    let done = receiver.wait();
    assert!(done.status.success(), "{}", done.show());
    assert!(
        done.stdout.contains("series 1: 4 frames received"),
        "{}",
        done.show()
    );
    assert!(
        done.stdout
            .contains("series 1: header `printed` (2 ch x 16 bins, 4 frames): print only"),
        "{}",
        done.show()
    );
    assert!(tree(dir.path()).is_empty(), "{:?}", tree(dir.path()));
}

/// (f) SUB mode: a PUB sender (XPUB here, so the test knows when the subscription arrived).
#[test]
fn sub_mode_receives_a_pub_stream() {
    let dir = tempfile::tempdir().unwrap();
    let tx = Sender::bind(zmq::XPUB);
    let receiver = receive(&[
        "--connect",
        &tx.endpoint,
        "--sub",
        "--root",
        dir.path().to_str().unwrap(),
        "--once",
        "--timeout",
        "60s",
        "-q",
    ]);
    // The subscription message (0x01 + empty topic) says the receiver is listening.
    tx.socket.set_rcvtimeo(LIMIT.as_millis() as i32).unwrap();
    let subscription = tx.socket.recv_bytes(0).expect("a subscription");
    assert_eq!(subscription, [1]);
    tx.header(&header("sub", SMALL, 40));
    for i in 0..40 {
        tx.image(SMALL, i, i);
    }
    tx.end(&series_end(40));
    let done = receiver.wait();
    assert!(done.status.success(), "{}", done.show());
    let file = read_acq_file(&dir.path().join("sub.h5")).unwrap();
    assert_eq!(file.frame_number.to_vec(), (0..40).collect::<Vec<u64>>());
    assert_eq!(file.data[[39, 1, 15]], mca_word(39, 31));
}

/// (f) SUB mode against xsp3-acquire's PUB stream, receiver started first: the acquisition waits
/// for the subscription before it starts, so the file holds every frame in order.
#[test]
fn sub_mode_with_xsp3_acquire_pub() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("tcp://127.0.0.1:{}", free_port());
    let frames = 200;
    let receiver = receive(&[
        "--connect",
        &endpoint,
        "--sub",
        "--root",
        dir.path().to_str().unwrap(),
        "--once",
        "--timeout",
        "5s",
        "--json",
        "-q",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let acquire = Proc::spawn(
        "xsp3-acquire",
        acquire_bin(),
        &[
            "run",
            "--frames",
            &frames.to_string(),
            "--exposure",
            "1ms",
            "--stream",
            &endpoint,
            "--stream-type",
            "pub",
            "--file",
            "pub",
            "-q",
        ],
    )
    .wait();
    assert!(acquire.status.success(), "{}", acquire.show());
    let done = receiver.wait();
    assert!(done.status.success(), "{}", done.show());
    let file = read_acq_file(&dir.path().join("pub.h5")).unwrap();
    assert_eq!(
        file.frame_number.to_vec(),
        (0..frames as u64).collect::<Vec<_>>()
    );
}

/// Successive series, one interrupted by the next header, are written as separate files; the
/// interrupted one records how it ended.
#[test]
fn header_mid_series_finishes_the_previous_series() {
    let dir = tempfile::tempdir().unwrap();
    let tx = Sender::bind(zmq::PUSH);
    let receiver = receive(&[
        "--connect",
        &tx.endpoint,
        "--root",
        dir.path().to_str().unwrap(),
        "--timeout",
        "3s",
        "--json",
        "-q",
    ]);
    tx.header(&header("first", SMALL, 5));
    tx.image(SMALL, 0, 0);
    tx.image(SMALL, 1, 1);
    tx.header(&header("second", SMALL, 2));
    tx.image(SMALL, 0, 0);
    tx.image(SMALL, 1, 1);
    tx.end(&series_end(2));
    let done = receiver.wait();
    assert_eq!(done.status.code(), Some(4), "{}", done.show());
    let first = dir.path().join("first.h5");
    assert_eq!(read_acq_file(&first).unwrap().frame_number.to_vec(), [0, 1]);
    assert_eq!(det_attr::<u8>(&first, "series_end_received"), 0);
    assert_eq!(det_attr::<u64>(&first, "frames_lost"), 3);
    assert_eq!(det_attr::<u64>(&first, "stream_gaps"), 1);
    assert!(det_str(&first, "end_note").contains("new header"));
    let second = dir.path().join("second.h5");
    assert_eq!(det_attr::<u8>(&second, "complete"), 1);
    assert_eq!(det_attr::<u8>(&second, "series_end_received"), 1);
    assert_eq!(done.summary()["stopped_by"], "timeout");
}

/// SIGTERM mid-series finishes the open file (readable, marked incomplete) and exits 0.
#[test]
fn sigterm_finishes_the_open_file() {
    let dir = tempfile::tempdir().unwrap();
    let tx = Sender::bind(zmq::PUSH);
    let receiver = receive(&[
        "--connect",
        &tx.endpoint,
        "--root",
        dir.path().to_str().unwrap(),
    ]);
    tx.header(&header("stopped", SMALL, 10));
    for i in 0..3 {
        tx.image(SMALL, i, i);
    }
    // The once-a-second progress line shows when all three were received.
    receiver.wait_stderr("series 1: 3 frames |");
    receiver.signal("TERM");
    let done = receiver.wait();
    assert!(done.status.success(), "{}", done.show());
    let path = dir.path().join("stopped.h5");
    let file = read_acq_file(&path).unwrap();
    assert_eq!(file.frame_number.to_vec(), [0, 1, 2]);
    assert_eq!(det_attr::<u8>(&path, "series_end_received"), 0);
    assert_eq!(det_attr::<u8>(&path, "complete"), 0);
    assert!(det_str(&path, "end_note").contains("signal"));
}

/// Exit code 2 for bad arguments, 3 for an endpoint that cannot be used.
#[test]
fn usage_and_start_errors_have_their_exit_codes() {
    let done = receive(&["--connect", "tcp://127.0.0.1:1"]).wait();
    assert_eq!(
        done.status.code(),
        Some(2),
        "--root is required\n{}",
        done.show()
    );
    let done = receive(&["--connect", "bogus://nowhere", "--print"]).wait();
    assert_eq!(done.status.code(), Some(3), "{}", done.show());
    assert!(done.stderr.contains("bogus://nowhere"), "{}", done.show());
}

/// --timeout in the middle of a series finishes the file (readable, with what arrived) and
/// fails; rollover with --frames-per-file works as in xsp3-acquire.
#[test]
fn timeout_mid_series_finishes_the_file_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let tx = Sender::bind(zmq::PUSH);
    let receiver = receive(&[
        "--connect",
        &tx.endpoint,
        "--root",
        dir.path().to_str().unwrap(),
        "--frames-per-file",
        "2",
        "--timeout",
        "1s",
        "--json",
        "-q",
    ]);
    tx.header(&header("cut", SMALL, 8));
    for i in 0..5 {
        tx.image(SMALL, i, i);
    }
    let done = receiver.wait();
    assert_eq!(done.status.code(), Some(4), "{}", done.show());
    let summary = done.summary();
    assert_eq!(summary["stopped_by"], "timeout");
    assert_eq!(summary["ended_mid_series"], true);
    let parts: Vec<Vec<u64>> = (0..3)
        .map(|i| {
            let path = dir.path().join(format!("cut_{i:05}.h5"));
            assert!(det_str(&path, "end_note").contains("no message for"));
            assert_eq!(det_attr::<u64>(&path, "frames_lost"), 3);
            read_acq_file(&path).unwrap().frame_number.to_vec()
        })
        .collect();
    assert_eq!(parts, [vec![0, 1], vec![2, 3], vec![4]]);
}

/// A file that exists is not replaced without --overwrite: the series is refused and reported,
/// the file is left as it was; with --overwrite it is replaced.
#[test]
fn existing_files_need_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let existing = dir.path().join("taken.h5");
    std::fs::write(&existing, b"not hdf5").unwrap();
    for overwrite in [false, true] {
        let tx = Sender::bind(zmq::PUSH);
        let mut args = vec![
            "--connect",
            &tx.endpoint,
            "--root",
            dir.path().to_str().unwrap(),
            "--once",
            "--timeout",
            "60s",
            "-q",
        ];
        if overwrite {
            args.push("--overwrite");
        }
        let receiver = receive(&args);
        let mut h = header("taken", SMALL, 1);
        h.overwritable = true; // the sender's wish alone does not replace a file
        tx.header(&h);
        tx.image(SMALL, 0, 0);
        tx.end(&series_end(1));
        let done = receiver.wait();
        if overwrite {
            assert!(done.status.success(), "{}", done.show());
            let file = read_acq_file(&existing).unwrap();
            assert_eq!(file.frame_number.to_vec(), [0]);
        } else {
            assert_eq!(done.status.code(), Some(4), "{}", done.show());
            assert!(done.stderr.contains("--overwrite"), "{}", done.show());
            assert_eq!(std::fs::read(&existing).unwrap(), b"not hdf5");
        }
    }
}

/// A symbolic link inside the root does not lead files out of it.
#[test]
fn symbolic_links_in_the_root_are_not_followed() {
    let base = tempfile::tempdir().unwrap();
    let (root, outside) = (base.path().join("root"), base.path().join("outside"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
    std::os::unix::fs::symlink(outside.join("target.h5"), root.join("file.h5")).unwrap();
    let tx = Sender::bind(zmq::PUSH);
    let receiver = receive(&[
        "--connect",
        &tx.endpoint,
        "--root",
        root.to_str().unwrap(),
        "--overwrite",
        "--timeout",
        "3s",
        "-q",
    ]);
    for name in ["link/evil", "link/deeper/evil", "file"] {
        tx.header(&header(name, SMALL, 1));
        tx.image(SMALL, 0, 0);
        tx.end(&series_end(1));
    }
    let done = receiver.wait();
    assert_eq!(done.status.code(), Some(4), "{}", done.show());
    assert_eq!(
        done.stderr.matches("is a symbolic link").count(),
        3,
        "{}",
        done.show()
    );
    assert!(tree(&outside).is_empty(), "{:?}", tree(&outside));
}

/// A detector failure mid-series: the frames before it are written, the file and the exit status
/// say the series is incomplete and why.
#[test]
fn a_sender_error_reaches_the_file_and_the_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("tcp://127.0.0.1:{}", free_port());
    let receiver = receive(&[
        "--connect",
        &endpoint,
        "--root",
        dir.path().to_str().unwrap(),
        "--once",
        "--timeout",
        "20s",
        "-q",
    ]);
    let acquire = Proc::spawn(
        "xsp3-acquire",
        acquire_bin(),
        &[
            "run",
            "--frames",
            "400",
            "--exposure",
            "100us",
            "--sim",
            "error_at_frame=300",
            "--stream",
            &endpoint,
            "--file",
            "fault",
            "-q",
        ],
    )
    .wait();
    assert_eq!(acquire.status.code(), Some(4), "{}", acquire.show());
    let done = receiver.wait();
    assert_eq!(done.status.code(), Some(4), "{}", done.show());
    assert!(done.stdout.contains("sender error"), "{}", done.show());
    let path = dir.path().join("fault.h5");
    let file = read_acq_file(&path).unwrap();
    assert_eq!(file.frame_number.to_vec(), (0..300u64).collect::<Vec<_>>());
    assert_eq!(det_attr::<u8>(&path, "complete"), 0);
    assert_eq!(det_attr::<u64>(&path, "acquisition_error_frame"), 300);
    assert!(det_str(&path, "acquisition_error").contains("injected error at frame 300"));
}

/// A data endpoint whose acknowledgement back channel (the next port) is free too.
fn acked_endpoint() -> String {
    loop {
        let port = free_port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return format!("tcp://127.0.0.1:{port}");
        }
    }
}

/// Every frame number in the `.h5` files under `root`, file by file (SWMR-read, so the file of a
/// killed SWMR writer opens too).
fn frames_under(root: &Path) -> Vec<Vec<u64>> {
    tree(root)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "h5"))
        .map(|p| {
            let file = hdf5::File::open_as(root.join(&p), hdf5::file::OpenMode::ReadSWMR)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let ds = file
                .dataset("entry/instrument/xspress3/frame_number")
                .unwrap();
            ds.read_raw::<u64>().unwrap()
        })
        .collect()
}

/// `[first, count]` ranges as frame numbers.
fn frames_in(ranges: &serde_json::Value) -> Vec<u64> {
    ranges
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            let (first, count) = (r[0].as_u64().unwrap(), r[1].as_u64().unwrap());
            first..first + count
        })
        .collect()
}

/// Acknowledged PUSH: a receiver killed mid-series and another started after it. The sender
/// names the frames nobody acknowledged; the two files and that gap hold every frame, and no
/// frame is in both files.
#[test]
fn a_receiver_killed_and_restarted_under_acknowledged_push_accounts_for_every_frame() {
    let dir = tempfile::tempdir().unwrap();
    let (first_root, second_root) = (dir.path().join("first"), dir.path().join("second"));
    let endpoint = acked_endpoint();
    let frames = 3000u64;
    let acquire = Proc::spawn(
        "xsp3-acquire",
        acquire_bin(),
        &[
            "run",
            "--json",
            "-q",
            "--frames",
            "3000",
            "--exposure",
            "1ms",
            "--stream",
            &endpoint,
            "--file",
            "scan",
        ],
    );
    let first = receive(&[
        "--connect",
        &endpoint,
        "--root",
        first_root.to_str().unwrap(),
        "--once",
        "--hwm",
        "50",
        "--flush-interval",
        "100ms",
    ]);
    // The once-a-second progress line: frames are flowing (and the file is set up).
    first.wait_stderr(" frames | ");
    first.signal("KILL");
    let killed = first.wait();
    assert_eq!(killed.status.code(), None, "killed by a signal");
    let second = receive(&[
        "--connect",
        &endpoint,
        "--root",
        second_root.to_str().unwrap(),
        "--once",
        "--timeout",
        "30s",
        "-q",
    ]);
    let sent = acquire.wait();
    assert_eq!(sent.status.code(), Some(4), "{}", sent.show());
    let summary: serde_json::Value = serde_json::from_str(&sent.stdout).unwrap();
    let unacked = frames_in(&summary["unacked_ranges"]);
    assert_eq!(summary["stream_unacked"], unacked.len() as u64, "{summary}");
    let done = second.wait();
    assert_eq!(done.status.code(), Some(4), "{}", done.show());

    // The sender's account: what each receiver acknowledged, and what nobody did.
    let acked_by: Vec<u64> = summary["acked_by_receiver"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    assert_eq!(acked_by.len(), 2, "{summary}");
    let second_files = frames_under(&second_root);
    assert_eq!(
        second_files.len(),
        1,
        "the rest of the series in a new file"
    );
    let in_second = &second_files[0];
    assert_eq!(
        acked_by[1],
        in_second.len() as u64,
        "all it wrote, acknowledged"
    );
    assert!(
        acked_by[0] > 0 && !in_second.is_empty(),
        "{summary}\n{}",
        killed.show()
    );
    assert!(
        in_second.iter().all(|f| !unacked.contains(f)),
        "a frame written by the second receiver is not in the gap"
    );
    assert_eq!(
        acked_by[0] + acked_by[1] + unacked.len() as u64,
        frames,
        "the two receivers and the recorded gap account for every frame: {summary}"
    );
    let second_file = tree(&second_root)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "h5"))
        .unwrap();
    let second_file = second_root.join(second_file);
    assert!(second_file.to_str().unwrap().contains("scan_from_msg_"));
    assert_eq!(det_attr::<u8>(&second_file, "complete"), 0);
    assert_eq!(
        det_attr::<u64>(&second_file, "frames_lost"),
        unacked.len() as u64
    );
}

/// Acknowledged PUSH: two receivers share one stream (PUSH balances the frames): no frame lost,
/// none written twice.
#[test]
fn two_receivers_share_one_stream_with_no_frame_lost_or_duplicated() {
    let dir = tempfile::tempdir().unwrap();
    let roots = [dir.path().join("a"), dir.path().join("b")];
    let endpoint = acked_endpoint();
    let receivers: Vec<Proc> = roots
        .iter()
        .map(|root| {
            receive(&[
                "--connect",
                &endpoint,
                "--root",
                root.to_str().unwrap(),
                "--once",
                "--timeout",
                "30s",
                "-q",
                "--json",
            ])
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let sent = Proc::spawn(
        "xsp3-acquire",
        acquire_bin(),
        &[
            "run",
            "--json",
            "-q",
            "--frames",
            "2000",
            "--exposure",
            "200us",
            "--stream",
            &endpoint,
            "--file",
            "shared",
        ],
    )
    .wait();
    assert_eq!(sent.status.code(), Some(0), "{}", sent.show());
    let mut all = Vec::new();
    for (r, root) in receivers.into_iter().zip(&roots) {
        let done = r.wait();
        assert_eq!(done.status.code(), Some(0), "{}", done.show());
        let files = frames_under(root);
        assert!(!files.concat().is_empty(), "both receivers took part");
        all.extend(files.concat());
    }
    all.sort();
    assert_eq!(
        all,
        (0..2000).collect::<Vec<_>>(),
        "every frame exactly once"
    );
}

/// Waits (bounded) until a `.h5` file exists under `root`.
fn wait_for_h5(root: &Path) {
    let deadline = Instant::now() + LIMIT;
    while !tree(root)
        .iter()
        .any(|p| p.extension().is_some_and(|e| e == "h5"))
    {
        assert!(
            Instant::now() < deadline,
            "no file under {}",
            root.display()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// SWMR receivers SIGKILLed one after another mid-series, the first ones the moment their file
/// name appears (before files were built under a staging name, that was mostly before SWMR
/// writing started, and no reader could open the file): every file opens for an SWMR reader and
/// together hold at least the frames the receivers acknowledged, as the sender counted them.
#[test]
fn swmr_receivers_killed_at_any_moment_leave_readable_files() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = acked_endpoint();
    let acquire = Proc::spawn(
        "xsp3-acquire",
        acquire_bin(),
        &[
            "run",
            "--json",
            "-q",
            "--frames",
            "5000",
            "--exposure",
            "1ms",
            "--sim",
            "content=pattern",
            "--stream",
            &endpoint,
            "--file",
            "scan",
        ],
    );
    let kill_after_ms = [0u64, 0, 0, 200];
    let roots: Vec<PathBuf> = (0..=kill_after_ms.len())
        .map(|i| dir.path().join(format!("r{i}")))
        .collect();
    for (root, delay) in roots.iter().zip(kill_after_ms) {
        let r = receive(&[
            "--connect",
            &endpoint,
            "--root",
            root.to_str().unwrap(),
            "--swmr",
            "--flush-interval",
            "100ms",
            "-q",
        ]);
        wait_for_h5(root);
        std::thread::sleep(Duration::from_millis(delay));
        r.signal("KILL");
        assert_eq!(r.wait().status.code(), None, "killed by a signal");
    }
    let last = receive(&[
        "--connect",
        &endpoint,
        "--root",
        roots[kill_after_ms.len()].to_str().unwrap(),
        "--swmr",
        "--once",
        "--timeout",
        "30s",
        "-q",
    ]);
    let sent = acquire.wait();
    assert_eq!(sent.status.code(), Some(4), "{}", sent.show());
    last.wait();
    let summary: serde_json::Value = serde_json::from_str(&sent.stdout).unwrap();
    let acked: u64 = serde_json::from_value::<Vec<u64>>(summary["acked_by_receiver"].clone())
        .unwrap()
        .iter()
        .sum();
    let mut written = 0;
    for root in &roots {
        // frames_under opens every file as an SWMR reader and fails the test if one does not.
        for frames in frames_under(root) {
            assert!(frames.windows(2).all(|w| w[0] < w[1]), "frames in order");
            written += frames.len() as u64;
        }
    }
    assert!(
        written >= acked && acked > 0,
        "{written} frames in the files, {acked} acknowledged: {summary}"
    );
}
