//! Plumbing shared by the integration tests that run the real binaries on 127.0.0.1.
// Each test binary includes this module and uses a different part of it.
#![allow(dead_code)]

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `tcp://127.0.0.1:PORT` on a free port.
pub fn local_endpoint() -> String {
    format!("tcp://127.0.0.1:{}", free_port())
}

/// A child process killed when the test ends, whatever happens.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for `child` to exit; panics after `limit`.
pub fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "process did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `kill -SIGNAL` the child.
pub fn send_signal(child: &Child, signal: &str) {
    let ok = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -{signal}");
}

/// A REQ socket connected to `endpoint` that gives up on a reply after `timeout_ms`.
pub fn req_socket(ctx: &zmq::Context, endpoint: &str, timeout_ms: i32) -> zmq::Socket {
    let req = ctx.socket(zmq::REQ).expect("REQ socket");
    req.set_rcvtimeo(timeout_ms).expect("receive timeout");
    req.set_linger(0).expect("linger");
    req.connect(endpoint).expect("connect");
    req
}
