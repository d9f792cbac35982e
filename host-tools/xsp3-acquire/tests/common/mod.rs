//! What the tests that run `xsp3-acquire` share: running it, its control socket, file attributes.

#![allow(dead_code)] // each test file uses a part

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_support::{local_endpoint, req_socket, Guard};

pub const BIN: &str = env!("CARGO_BIN_EXE_xsp3-acquire");

/// `xsp3-acquire run -q ARGS`, to its end.
pub fn acquire(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["run", "-q"])
        .args(args)
        .output()
        .expect("run xsp3-acquire")
}

/// A `serve` daemon with its output in `out` and a REQ socket on its control endpoint.
pub struct Daemon {
    pub child: Guard,
    req: zmq::Socket,
    _ctx: zmq::Context,
}

impl Daemon {
    pub fn start(out: &Path, extra: &[&str]) -> Daemon {
        Self::start_with(&[], out, extra)
    }

    /// The daemon started through `launcher` (a command and its arguments, e.g. prlimit).
    pub fn start_with(launcher: &[String], out: &Path, extra: &[&str]) -> Daemon {
        let endpoint = local_endpoint();
        let mut cmd = match launcher.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let child = Guard(
            cmd.args(["serve", "-q", "--control", &endpoint, "--out"])
                .arg(out)
                .args(extra)
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let ctx = zmq::Context::new();
        let req = req_socket(&ctx, &endpoint, 10_000);
        Daemon {
            child,
            req,
            _ctx: ctx,
        }
    }

    pub fn send_raw(&self, request: &[u8]) -> Value {
        self.req.send(request, 0).unwrap();
        let reply = self.req.recv_bytes(0).expect("control reply");
        serde_json::from_slice(&reply).expect("JSON reply")
    }

    pub fn send(&self, request: Value) -> Value {
        self.send_raw(request.to_string().as_bytes())
    }

    pub fn ok(&self, request: Value) -> Value {
        let reply = self.send(request.clone());
        assert_eq!(reply["ok"], true, "{request} -> {reply}");
        reply
    }

    pub fn error(&self, request: Value, needle: &str) {
        let reply = self.send(request.clone());
        assert_eq!(reply["ok"], false, "{request} -> {reply}");
        let e = reply["error"].as_str().unwrap_or_default();
        assert!(e.contains(needle), "{request} -> {e}");
    }

    pub fn wait_state(&self, state: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let st = self.ok(json!({"cmd": "status"}));
            if st["state"] == state {
                return st;
            }
            assert!(Instant::now() < deadline, "never reached {state}: {st}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A string attribute of the detector group.
pub fn det_str(path: &Path, name: &str) -> String {
    let file = hdf5::File::open(path).unwrap();
    let det = file.group("entry/instrument/xspress3").unwrap();
    let value: hdf5::types::VarLenUnicode = det.attr(name).unwrap().read_scalar().unwrap();
    value.as_str().to_string()
}

/// A numeric attribute of the detector group.
pub fn det_num<T: hdf5::H5Type>(path: &Path, name: &str) -> T {
    let file = hdf5::File::open(path).unwrap();
    let det = file.group("entry/instrument/xspress3").unwrap();
    det.attr(name).unwrap().read_scalar().unwrap()
}
