//! The viewer library against a monitor socket played by the test: what `/api/live` answers,
//! the embedded assets, the last frame kept when the monitor goes away, bad requests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_support::local_endpoint;

const PATIENCE: Duration = Duration::from_secs(30);

/// A monitor REP socket answering `frames` in turn (the last one repeatedly).
struct FakeMonitor {
    socket: zmq::Socket,
}

impl FakeMonitor {
    fn bind(ctx: &zmq::Context, endpoint: &str) -> FakeMonitor {
        let socket = ctx.socket(zmq::REP).unwrap();
        socket.set_linger(0).unwrap();
        socket.bind(endpoint).unwrap();
        FakeMonitor { socket }
    }

    /// Answers one request with `frame` (number, spectra) or "none".
    fn answer(&self, frame: Option<(u64, &[Vec<u32>])>) {
        self.socket.recv_multipart(0).unwrap();
        let (meta, payload) = match frame {
            Some((number, spectra)) => (
                json!({"htype": "image", "frame": number, "type": "uint32", "exptime": 0.01,
                       "shape": [spectra.len(), spectra[0].len()]}),
                spectra
                    .iter()
                    .flatten()
                    .flat_map(|v| v.to_le_bytes())
                    .collect::<Vec<u8>>(),
            ),
            None => (
                json!({"htype": "none", "shape": [0, 0], "type": "uint32"}),
                vec![],
            ),
        };
        self.socket
            .send_multipart([meta.to_string().into_bytes(), payload], 0)
            .unwrap();
    }
}

fn get(addr: SocketAddr, method: &str, path: &str) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, raw[split + 4..].to_vec())
}

fn live(addr: SocketAddr, query: &str) -> Value {
    let (status, head, body) = get(addr, "GET", &format!("/api/live{query}"));
    assert_eq!(status, 200);
    assert!(head.contains("application/json"), "{head}");
    serde_json::from_slice(&body).unwrap()
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn spectra(seed: u32) -> Vec<Vec<u32>> {
    (0..3)
        .map(|c| (0..16).map(|b| seed * 1000 + c * 100 + b).collect())
        .collect()
}

#[test]
fn serves_the_monitor_frame_and_keeps_it_when_the_monitor_goes() {
    let ctx = zmq::Context::new();
    let endpoint = local_endpoint();
    let monitor = FakeMonitor::bind(&ctx, &endpoint);
    let polled = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&polled);
    let source = xsp3_viewer::Source::monitor(endpoint.clone())
        .with_windows(vec![[0, 2, 5]])
        .with_poll_interval(Duration::from_millis(5))
        .with_status_fn(
            move || json!({"state": "running", "polled": counter.fetch_add(1, Ordering::Relaxed)}),
        );
    let viewer = xsp3_viewer::serve("127.0.0.1:0", source).unwrap();
    let addr = viewer.local_addr();
    assert!(addr.ip().is_loopback());

    // Before the first frame: no frame, the monitor answers.
    monitor.answer(None);
    let first = wait_for("the monitor's answer", || {
        let v = live(addr, "");
        (v["meta"]["monitor"]["replies"].as_u64() >= Some(1)).then_some(v)
    });
    assert_eq!(first["frame"], Value::Null);
    assert_eq!(first["meta"]["monitor"]["ok"], true);
    assert_eq!(first["meta"]["windows"], json!([[0, 2, 5]]));
    assert_eq!(first["meta"]["status_source"], "embedded");

    // Frame 7, channel-major.
    let frame7 = spectra(7);
    monitor.answer(Some((7, &frame7)));
    let answer = wait_for("frame 7", || {
        let v = live(addr, "");
        (!v["frame"].is_null()).then_some(v)
    });
    let frame = &answer["frame"]["frame"];
    assert_eq!(frame["number"], 7);
    assert_eq!(frame["shape"], json!([3, 16]));
    assert_eq!(frame["exptime"], 0.01);
    assert_eq!(frame["spectra"], json!(frame7));
    let version = answer["frame"]["version"].as_u64().unwrap();

    // The same frame again does not make a new version; `since` leaves it out.
    monitor.answer(Some((7, &frame7)));
    monitor.answer(Some((7, &frame7)));
    let again = live(addr, &format!("?since={version}"));
    assert_eq!(again["frame"], Value::Null);
    assert_eq!(again["meta"]["frame_version"], version);
    assert!(again["meta"]["status"]["polled"].as_u64().unwrap() >= 1);

    // A new frame with the same number (a new acquisition) is new.
    let next = spectra(8);
    monitor.answer(Some((7, &next)));
    let newer = wait_for("the new content", || {
        let v = live(addr, &format!("?since={version}"));
        (!v["frame"].is_null()).then_some(v)
    });
    assert_eq!(newer["frame"]["frame"]["spectra"], json!(next));
    assert_eq!(newer["frame"]["version"], version + 1);

    // The monitor goes away (the acquisition ended): the last frame stays, the error is shown.
    drop(monitor);
    let gone = wait_for("the monitor's absence", || {
        let v = live(addr, "");
        (v["meta"]["monitor"]["ok"] == false).then_some(v)
    });
    assert_eq!(gone["frame"]["frame"]["spectra"], json!(next));
    let error = gone["meta"]["monitor"]["error"].as_str().unwrap();
    assert!(
        error.contains(&endpoint) && error.contains("no reply"),
        "{error}"
    );

    // It comes back (a new acquisition binds it again) and is read once more.
    let monitor = FakeMonitor::bind(&ctx, &endpoint);
    let frame9 = spectra(9);
    monitor.answer(Some((9, &frame9)));
    wait_for("frame 9", || {
        let v = live(addr, "");
        (v["frame"]["frame"]["number"] == 9).then_some(())
    });
    drop(viewer);
}

#[test]
fn serves_the_embedded_page_and_refuses_the_rest() {
    let viewer = xsp3_viewer::serve(
        "127.0.0.1:0",
        xsp3_viewer::Source::monitor(local_endpoint()),
    )
    .unwrap();
    let addr = viewer.local_addr();
    let (status, head, page) = get(addr, "GET", "/");
    assert_eq!(status, 200);
    assert!(head.contains("text/html"));
    let page = String::from_utf8(page).unwrap();
    for asset in [
        "/uPlot.iife.min.js",
        "/uPlot.min.css",
        "/viewer.js",
        "/viewer.css",
    ] {
        assert!(page.contains(asset), "the page loads {asset}");
        let (status, _, body) = get(addr, "GET", asset);
        assert_eq!(status, 200, "{asset}");
        assert!(!body.is_empty());
    }
    let (status, _, licence) = get(addr, "GET", "/uPlot.LICENSE");
    assert_eq!(status, 200);
    assert!(String::from_utf8(licence).unwrap().contains("MIT License"));
    assert_eq!(get(addr, "GET", "/../Cargo.toml").0, 404);
    assert_eq!(get(addr, "GET", "/api/other").0, 404);
    let (status, head, _) = get(addr, "POST", "/api/live");
    assert_eq!(status, 405);
    assert!(head.contains("Allow: GET, HEAD"));
}

#[test]
fn bad_addresses_are_errors_that_name_them() {
    let source = || xsp3_viewer::Source::monitor(local_endpoint());
    let err = xsp3_viewer::serve("localhost", source()).err().unwrap();
    assert!(
        err.to_string().starts_with("HTTP address localhost: "),
        "{err}"
    );
    let taken = xsp3_viewer::serve("127.0.0.1:0", source()).unwrap();
    let addr = taken.local_addr().to_string();
    let err = xsp3_viewer::serve(&addr, source()).err().unwrap();
    assert!(err.to_string().contains(&addr), "{err}");
}

#[test]
fn counters_come_from_a_serve_control_socket() {
    let ctx = zmq::Context::new();
    let control = local_endpoint();
    let rep = ctx.socket(zmq::REP).unwrap();
    rep.set_linger(0).unwrap();
    rep.bind(&control).unwrap();
    let viewer = xsp3_viewer::serve(
        "127.0.0.1:0",
        xsp3_viewer::Source::monitor(local_endpoint()).with_control(control.clone()),
    )
    .unwrap();
    let request = rep.recv_bytes(0).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&request).unwrap(),
        json!({"cmd": "status"})
    );
    rep.send(
        json!({"ok": true, "state": "running", "frames_lost": 3})
            .to_string()
            .as_bytes(),
        0,
    )
    .unwrap();
    let v = wait_for("the status", || {
        let v = live(viewer.local_addr(), "");
        (!v["meta"]["status"].is_null()).then_some(v)
    });
    assert_eq!(v["meta"]["status"]["frames_lost"], 3);
    assert_eq!(v["meta"]["status_source"], format!("control {control}"));
    // The control socket stops answering: its error is shown, the last counters stay.
    let v = wait_for("the status error", || {
        let v = live(viewer.local_addr(), "");
        (!v["meta"]["status_error"].is_null()).then_some(v)
    });
    assert!(v["meta"]["status_error"]
        .as_str()
        .unwrap()
        .contains("no reply"));
    assert_eq!(v["meta"]["status"]["state"], "running");
}
