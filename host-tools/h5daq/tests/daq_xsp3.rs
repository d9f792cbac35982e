//! h5daq sampling the status of a real `xsp3-acquire serve` over its control socket: the two
//! binaries together, real sockets on 127.0.0.1, the HDF5 file read back.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use test_support::{local_endpoint, req_socket, send_signal, wait_exit, Guard};

const H5DAQ: &str = env!("CARGO_BIN_EXE_h5daq");
/// The real `xsp3-acquire` (another package's binary).
fn acquire_bin() -> std::path::PathBuf {
    test_support::workspace_bin("xsp3-acquire", "xsp3-acquire")
}

fn request(req: &zmq::Socket, value: Value) -> Value {
    req.send(value.to_string().as_bytes(), 0).unwrap();
    serde_json::from_slice(&req.recv_bytes(0).expect("control reply")).unwrap()
}

fn h5_files(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "h5"))
        .collect()
}

#[test]
fn h5daq_records_the_status_of_a_running_acquisition() {
    let dir = tempfile::tempdir().unwrap();
    let control = local_endpoint();
    let _serve = Guard(
        Command::new(acquire_bin())
            .args(["serve", "-q", "--control", &control])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ctx = zmq::Context::new();
    let req = req_socket(&ctx, &control, 10_000);
    let reply = request(
        &req,
        json!({"cmd": "configure", "frames": 0, "exposure": "1ms"}),
    );
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(request(&req, json!({"cmd": "arm"}))["state"], "running");

    let config = format!(
        r#"
[daemon]
directory = "out"
write_period = 0.5
mode = "close"

[[job]]
group = "xspress3"
source = "xsp3_status"
endpoint = "{control}"
period = 0.1
fields = ["frames_acquired", "frames_lost", "rate_hz"]
"#
    );
    std::fs::write(dir.path().join("daq.toml"), config).unwrap();
    let mut daq = Guard(
        Command::new(H5DAQ)
            .args(["run", "daq.toml"])
            .current_dir(dir.path())
            .stderr(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(2000));
    send_signal(&daq.0, "INT");
    let status = wait_exit(&mut daq.0, Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    assert_eq!(request(&req, json!({"cmd": "stop"}))["ok"], true);
    request(&req, json!({"cmd": "shutdown"}));

    let files = h5_files(&dir.path().join("out"));
    assert_eq!(files.len(), 1, "{files:?}");
    let file = hdf5::File::open(&files[0]).unwrap();
    let frames: Vec<f64> = file
        .dataset("xspress3/frames_acquired")
        .unwrap()
        .read_raw::<f64>()
        .unwrap();
    let lost: Vec<f64> = file
        .dataset("xspress3/frames_lost")
        .unwrap()
        .read_raw()
        .unwrap();
    assert!(frames.len() >= 5, "{} status samples", frames.len());
    assert!(frames.windows(2).all(|w| w[0] <= w[1]), "{frames:?}");
    assert!(frames.last().copied().unwrap_or(0.0) > 0.0, "{frames:?}");
    assert!(lost.iter().all(|&l| l == 0.0));
}
