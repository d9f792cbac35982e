//! `--http`: the live spectrum page served by the acquisition process itself, fed by its monitor
//! (the page's own behaviour in a browser is tested in tests/interop/test_viewer.py).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, BIN};
use serde_json::{json, Value};
use test_support::{free_port, local_endpoint, send_signal, wait_exit, Guard};

/// `GET path` on 127.0.0.1:port: the status code and the body.
fn get(port: u16, path: &str) -> Option<(u32, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// Polls `/api/live` until `ready` holds for its JSON; panics after 30 s.
fn live_until(port: u16, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Some((200, body)) = get(port, "/api/live") {
            last = serde_json::from_str(&body).expect("/api/live is JSON");
            if ready(&last) {
                return last;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("gave up waiting for {what}; last answer: {last}");
}

fn has_frame(live: &Value) -> bool {
    live["frame"]["frame"]["number"].is_u64()
}

#[test]
fn run_serves_the_page_with_its_own_status_and_windows() {
    let port = free_port();
    let http = format!("127.0.0.1:{port}");
    let monitor = local_endpoint();
    let mut child = Guard(
        Command::new(BIN)
            .args(["run", "-q", "--frames", "200000", "--exposure", "1ms"])
            .args(["--channels", "2", "--window", "0:100:200"])
            .args(["--monitor", &monitor, "--http", &http])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (code, page) = get_retrying(port, "/");
    assert_eq!(code, 200);
    assert!(page.contains("<html"), "{page}");
    let live = live_until(port, "a frame and the session's status", |l| {
        has_frame(l) && l["meta"]["status"]["state"] == "running"
    });
    let frame = &live["frame"]["frame"];
    assert_eq!(frame["shape"], json!([2, 4096]));
    assert_eq!(frame["spectra"].as_array().map(Vec::len), Some(2));
    let meta = &live["meta"];
    assert_eq!(meta["status_source"], "embedded");
    // The session's own windows travel with its status (window 0 of every channel set to
    // 100..=200 on the command line).
    let windows = meta["status"]["windows"].as_array().expect("windows");
    assert_eq!(windows.len(), 2);
    for w in windows {
        assert_eq!((&w[0], &w[1]), (&json!(100), &json!(200)), "{windows:?}");
    }
    // Frames move on while the page is served.
    let first = frame["number"].as_u64().unwrap();
    live_until(port, "a later frame", |l| {
        l["frame"]["frame"]["number"].as_u64() > Some(first)
    });
    send_signal(&child.0, "TERM");
    wait_exit(&mut child.0, Duration::from_secs(20));
    assert!(get(port, "/").is_none(), "the page outlives the process");
}

#[test]
fn serve_serves_the_page_for_its_whole_life() {
    let port = free_port();
    let http = format!("127.0.0.1:{port}");
    let monitor = local_endpoint();
    let out = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(out.path(), &["--monitor", &monitor, "--http", &http]);
    // Before any acquisition the page is up and the control socket answers its status.
    let idle = live_until(port, "the daemon's status", |l| {
        l["meta"]["status"]["state"].is_string()
    });
    assert!(
        idle["meta"]["status_source"]
            .as_str()
            .is_some_and(|s| s.starts_with("control")),
        "{idle}"
    );
    daemon.ok(json!({"cmd": "configure", "frames": 0, "exposure": "1ms"}));
    daemon.ok(json!({"cmd": "arm"}));
    live_until(port, "a frame of the running acquisition", |l| {
        has_frame(l) && l["meta"]["status"]["state"] == "running"
    });
    daemon.ok(json!({"cmd": "stop"}));
    daemon.ok(json!({"cmd": "shutdown"}));
}

#[test]
fn http_needs_a_monitor() {
    let out = Command::new(BIN)
        .args(["run", "--frames", "1", "--http", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--monitor"), "{err}");
}

/// The first GET after start-up, once the process has bound the port.
fn get_retrying(port: u16, path: &str) -> (u32, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(answer) = get(port, path) {
            return answer;
        }
        assert!(Instant::now() < deadline, "nothing answers on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
