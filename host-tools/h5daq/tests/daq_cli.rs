//! The h5daq binary on real config files: config errors, run/status/stop, Ctrl-C, kill -9 and
//! recovery, external commands (process group ended at stop), ZeroMQ sources.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_h5daq");

fn h5daq(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("daq.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn h5_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "h5"))
        .collect();
    v.sort();
    v
}

/// Runs `h5daq run` in the background; stderr lines arrive on the channel.
fn spawn_run(dir: &Path, extra: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(BIN)
        .arg("run")
        .arg("daq.toml")
        .args(extra)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = test_support::output_lines(&mut child);
    (child, rx)
}

/// Waits (bounded) for a line containing `pat`; returns every line seen so far.
fn wait_line(rx: &mpsc::Receiver<String>, pat: &str, seen: &mut Vec<String>) {
    let t0 = Instant::now();
    loop {
        let left = Duration::from_secs(20).saturating_sub(t0.elapsed());
        match rx.recv_timeout(left) {
            Ok(l) => {
                let hit = l.contains(pat);
                seen.push(l);
                if hit {
                    return;
                }
            }
            Err(_) => panic!("no line with {pat:?}; got:\n{}", seen.join("\n")),
        }
    }
}

fn wait_exit(child: &mut Child, secs: u64) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if t0.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            panic!("h5daq did not exit within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

const COUNTER: &str = r#"
[daemon]
name = "cli"
directory = "out"
write_period = 0.3
mode = "MODE"

[log]
level = "debug"

[[job]]
group = "counter"
source = "command"
command = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.01; done"
fields = [{ name = "n", dtype = "int64" }]
"#;

#[test]
fn config_errors_name_the_line_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &[&str])] = &[
        ("[daemon]\nwrite_perod = 1\n", "2:1", &["write_perod", "unknown field"]),
        (
            "[daemon]\nwrite_period = -1\n[[job]]\ngroup='a'\nsource='system'\n",
            "2:16",
            &["daemon.write_period", "-1"],
        ),
        (
            "[daemon]\nrollover = '2 fortnights'\n[[job]]\ngroup='a'\nsource='system'\n",
            "2:12",
            &["daemon.rollover", "fortnights"],
        ),
        ("[[job]]\ngroup = 'a'\nsource = 'sytem'\n", "3:10", &["job[0].source", "sytem"]),
        (
            "[[job]]\ngroup='a'\nsource='system'\n[[job]]\ngroup='a'\nsource='system'\n",
            "5:7",
            &["job[1].group", "earlier job"],
        ),
        (
            "[[job]]\ngroup='a'\nsource='command'\ncommand='x'\nfields=[{name='v', dtype='float128'}]\n",
            "5:8",
            &["job[0].fields[0] (\"v\").dtype", "float128"],
        ),
        (
            "[[job]]\ngroup='a'\nsource='system'\nendpoint='tcp://127.0.0.1:1'\n",
            "4:10",
            &["job[0].endpoint", "not a setting of source \"system\""],
        ),
        (
            "[[job]]\ngroup='a'\nsource='zmq_sub'\nendpoint='localhost'\nfields=['x']\n",
            "4:10",
            &["job[0].endpoint", "localhost"],
        ),
        ("[daemon]\ncompression = 12\n[[job]]\ngroup='a'\nsource='system'\n", "2:15", &["compression", "12"]),
        ("[daemon]\nname = \"unterminated\n", "2:", &["syntax"]),
        ("[daemon]\nname = 'x'\n", "daq.toml", &["no [[job]]"]),
    ];
    for (text, at, words) in cases {
        write_config(dir.path(), text);
        let out = h5daq(dir.path(), &["run", "daq.toml", "--check"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text:?}: {err}");
        assert!(
            err.contains(&format!("daq.toml:{at}")) || err.contains(at),
            "{text:?}: want {at} in {err}"
        );
        for w in *words {
            assert!(err.contains(w), "{text:?}: want {w:?} in {err}");
        }
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = h5daq(dir.path(), &["run", "missing.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
}

#[test]
fn the_example_config_runs_as_is() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/h5daq.toml");
    let dir = tempfile::tempdir().unwrap();
    let ex = example.to_str().unwrap();
    let out = h5daq(dir.path(), &["run", ex, "--check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (4 jobs"));
    // The example rolls over hourly, aligned to the calendar: a run that crosses the hour
    // rightly makes two files. Start clear of the boundary so this run makes one.
    let into_hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 3600;
    if into_hour > 3600 - 10 {
        std::thread::sleep(Duration::from_secs(3600 - into_hour + 1));
    }
    let out = h5daq(dir.path(), &["run", ex, "--duration", "2.5"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = h5_files(&dir.path().join("daq-out"));
    assert_eq!(files.len(), 1);
    let f = hdf5::File::open(&files[0]).unwrap();
    assert!(f.dataset("system/load1").unwrap().shape()[0] >= 2);
    assert!(f.dataset("counter/count").unwrap().shape()[0] >= 10);
    let answer: Vec<f64> = f.dataset("constant/answer").unwrap().read_raw().unwrap();
    assert_eq!(
        answer,
        vec![42.0, 42.0],
        "de-duplicated to the first and last row"
    );
    assert!(dir.path().join("daq-out/h5daq.log").exists());
}

#[test]
fn status_and_stop_over_the_control_socket() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &COUNTER.replace("MODE", "close"));
    let (mut child, rx) = spawn_run(dir.path(), &[]);
    let mut seen = Vec::new();
    wait_line(&rx, "wrote", &mut seen);
    let out = h5daq(dir.path(), &["status", "-c", "daq.toml", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["status"]["name"], "cli");
    assert_eq!(v["status"]["jobs"][0]["group"], "counter");
    assert!(v["status"]["jobs"][0]["reads"].as_u64().unwrap() > 0);
    let text = h5daq(dir.path(), &["status", "--socket", "out/h5daq.sock"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("counter"));
    let out = h5daq(dir.path(), &["stop", "-c", "daq.toml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wait_exit(&mut child, 15).success());
    let files = h5_files(&dir.path().join("out"));
    assert_eq!(files.len(), 1);
    let f = hdf5::File::open(&files[0]).unwrap();
    let n: Vec<i64> = f.dataset("counter/n").unwrap().read_raw().unwrap();
    assert!(n.len() > 10);
    assert!(
        n.windows(2).all(|w| w[1] == w[0] + 1),
        "every line kept in order"
    );
    // No daemon now: exit code 3.
    let out = h5daq(dir.path(), &["status", "-c", "daq.toml"]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn ctrl_c_makes_the_final_write_renames_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    // The command records its pid so the test can see that its process group was ended.
    let cfg = COUNTER
        .replace("MODE", "swmr")
        .replace("command = \"i=0;", "command = \"echo $$ > child.pid; i=0;");
    write_config(dir.path(), &cfg);
    let (mut child, rx) = spawn_run(dir.path(), &[]);
    let mut seen = Vec::new();
    wait_line(&rx, "wrote", &mut seen);
    let t_int = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    signal(&child, "-INT");
    let st = wait_exit(&mut child, 15);
    assert!(st.success(), "exit status {st:?}");
    let files = h5_files(&dir.path().join("out"));
    assert_eq!(files.len(), 1);
    let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
    let (_, to) = h5daq::parse_file_name("DAQ", &name).unwrap();
    assert!((to - t_int).abs() < 5.0, "renamed to the stop time: {name}");
    let f = hdf5::File::open(&files[0]).unwrap();
    let end: f64 = f.attr("file_end").unwrap().read_scalar().unwrap();
    assert!((end - to).abs() < 1e-3);
    let t: Vec<f64> = f.dataset("counter/time").unwrap().read_raw().unwrap();
    assert!(
        t_int - t[t.len() - 1] < 1.0,
        "rows up to the signal were written"
    );
    let pid = std::fs::read_to_string(dir.path().join("child.pid")).unwrap();
    assert!(
        !Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "the command's process group was terminated"
    );
}

fn kill9_and_recover(mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &COUNTER.replace("MODE", mode));
    let (mut child, rx) = spawn_run(dir.path(), &[]);
    let mut seen = Vec::new();
    for _ in 0..3 {
        wait_line(&rx, "wrote", &mut seen);
    }
    // The "wrote" line is logged after the write finished: the kill lands between writes.
    signal(&child, "-KILL");
    let st = wait_exit(&mut child, 10);
    assert!(!st.success());
    let t_kill = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let out = dir.path().join("out");
    let files = h5_files(&out);
    assert_eq!(files.len(), 1);
    let rows_before = match mode {
        "close" => {
            // Closed between writes: opens normally, file_end not yet set.
            let f = hdf5::File::open(&files[0]).unwrap();
            let end: f64 = f.attr("file_end").unwrap().read_scalar().unwrap();
            assert!(end.is_nan());
            f.dataset("counter/n").unwrap().shape()[0]
        }
        _ => {
            // SWMR: a plain open fails (open-for-write flag), a SWMR-read open works.
            assert!(hdf5::File::open(&files[0]).is_err());
            let f = hdf5::File::open_as(&files[0], hdf5::file::OpenMode::ReadSWMR).unwrap();
            f.dataset("counter/n").unwrap().shape()[0]
        }
    };
    assert!(rows_before > 20, "{rows_before} rows survived");
    let rec = h5daq(dir.path(), &["recover", "out"]);
    assert!(
        rec.status.success(),
        "{}",
        String::from_utf8_lossy(&rec.stderr)
    );
    assert!(String::from_utf8_lossy(&rec.stdout).contains("recovered"));
    let files = h5_files(&out);
    assert_eq!(files.len(), 1);
    let f = hdf5::File::open(&files[0]).unwrap();
    let n: Vec<i64> = f.dataset("counter/n").unwrap().read_raw().unwrap();
    assert_eq!(n.len(), rows_before);
    assert!(n.windows(2).all(|w| w[1] == w[0] + 1));
    let t: Vec<f64> = f.dataset("counter/time").unwrap().read_raw().unwrap();
    let end: f64 = f.attr("file_end").unwrap().read_scalar().unwrap();
    assert_eq!(end, t[t.len() - 1]);
    // At most one write period (0.3 s) plus scheduling slack is lost.
    assert!(t_kill - end < 0.3 + 1.5, "lost {} s", t_kill - end);
    let recovered: bool = f.attr("recovered").unwrap().read_scalar().unwrap();
    assert!(recovered);
    let name = files[0].file_name().unwrap().to_str().unwrap();
    let (_, to) = h5daq::parse_file_name("DAQ", name).unwrap();
    assert!(
        (to - end).abs() < 2e-3,
        "renamed to the last stored time: {name}"
    );
    drop(f);
    // A second recover finds nothing to do.
    let again = h5daq(dir.path(), &["recover", "out"]);
    let again_out = String::from_utf8_lossy(&again.stdout);
    assert!(
        again_out.contains("ok "),
        "{again_out} {}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[test]
fn kill_9_in_close_mode_leaves_a_file_that_opens() {
    kill9_and_recover("close");
}

#[test]
fn kill_9_in_swmr_mode_is_recovered() {
    kill9_and_recover("swmr");
}

#[test]
fn zmq_subscriber_and_status_request_sources() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = zmq::Context::new();
    let publisher = ctx.socket(zmq::PUB).unwrap();
    publisher.bind("tcp://127.0.0.1:*").unwrap();
    let pub_ep = publisher.get_last_endpoint().unwrap().unwrap();
    let rep = ctx.socket(zmq::REP).unwrap();
    rep.bind("tcp://127.0.0.1:*").unwrap();
    let rep_ep = rep.get_last_endpoint().unwrap().unwrap();
    // A stand-in for `xsp3-acquire serve`'s control socket.
    let responder = std::thread::spawn(move || {
        rep.set_rcvtimeo(200).unwrap();
        let mut served = 0u64;
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            let Ok(msg) = rep.recv_bytes(0) else { continue };
            let req: serde_json::Value = serde_json::from_slice(&msg).unwrap();
            if req["cmd"] == "quit" {
                rep.send("{}", 0).unwrap();
                break;
            }
            assert_eq!(req["cmd"], "status");
            served += 1;
            let reply = serde_json::json!({"ok": true, "state": "acquiring", "frames_acquired": served * 10, "dropped_frames": 0, "rate": 99.5});
            rep.send(reply.to_string().as_bytes(), 0).unwrap();
        }
        served
    });
    let cfg = format!(
        r#"
[daemon]
directory = "out"
write_period = 0.3
[[job]]
group = "env"
source = "zmq_sub"
endpoint = "{pub_ep}"
fields = [{{ name = "temperature", dtype = "float32" }}, {{ name = "spectrum", dtype = "uint16", shape = [2, 2] }}]
[[job]]
group = "xspress3"
source = "xsp3_status"
endpoint = "{rep_ep}"
period = 0.1
fields = [{{ name = "frames_acquired", dtype = "uint64" }}, "rate"]
"#
    );
    write_config(dir.path(), &cfg);
    let (mut child, rx) = spawn_run(dir.path(), &["--duration", "2.5"]);
    let t0 = Instant::now();
    let mut sent = 0;
    while t0.elapsed() < Duration::from_millis(1800) {
        let msg = serde_json::json!({"temperature": 20.0 + f64::from(sent), "spectrum": [[1, 2], [3, sent]]});
        publisher.send(msg.to_string().as_bytes(), 0).unwrap();
        sent += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = wait_exit(&mut child, 20);
    let lines: Vec<String> = rx.try_iter().collect();
    assert!(st.success(), "{}", lines.join("\n"));
    let quit = ctx.socket(zmq::REQ).unwrap();
    quit.connect(&rep_ep).unwrap();
    quit.send("{\"cmd\": \"quit\"}", 0).unwrap();
    let served = responder.join().unwrap();
    let files = h5_files(&dir.path().join("out"));
    let f = hdf5::File::open(&files[0]).unwrap();
    let temp: Vec<f32> = f.dataset("env/temperature").unwrap().read_raw().unwrap();
    // Slow joiner: the first messages may be missed; the rest arrive in order.
    assert!(temp.len() > 40, "{} of {sent} messages", temp.len());
    assert!(temp.windows(2).all(|w| w[1] == w[0] + 1.0));
    let spec = f.dataset("env/spectrum").unwrap();
    assert_eq!(spec.shape(), vec![temp.len(), 2, 2]);
    let s: Vec<u16> = spec.read_raw().unwrap();
    assert_eq!(&s[..3], &[1, 2, 3]);
    assert_eq!(f32::from(s[3]) + 20.0, temp[0]);
    let frames: Vec<u64> = f
        .dataset("xspress3/frames_acquired")
        .unwrap()
        .read_raw()
        .unwrap();
    assert!(frames.len() >= 15, "{} status polls", frames.len());
    assert!(frames.len() as u64 <= served);
    assert!(frames.windows(2).all(|w| w[1] == w[0] + 10));
    let rate: Vec<f64> = f.dataset("xspress3/rate").unwrap().read_raw().unwrap();
    assert!(rate.iter().all(|r| *r == 99.5));
}

/// `zmq_pull` with a buffer far smaller than what is sent: back-pressure holds the PUSH
/// sender instead of dropping, so every row is stored exactly once, in order (single-row
/// messages and batches mixed), and nothing is counted as dropped.
#[test]
fn zmq_pull_stores_every_row_once_under_back_pressure() {
    let dir = tempfile::tempdir().unwrap();
    let ipc = dir.path().join("rows.ipc");
    let cfg = format!(
        r#"
[daemon]
directory = "out"
write_period = 0.05
[[job]]
group = "g"
source = "zmq_pull"
bind = "ipc://{}"
buffer_size = "64 KiB"
sequence_field = "seq"
fields = [{{ name = "v", dtype = "float32", shape = [100] }}]
"#,
        ipc.display()
    );
    write_config(dir.path(), &cfg);
    let (mut child, rx) = spawn_run(dir.path(), &[]);
    let ctx = zmq::Context::new();
    let push = ctx.socket(zmq::PUSH).unwrap();
    push.set_sndhwm(4).unwrap();
    // A send held back for this long means the daemon stopped reading: the test fails.
    push.set_sndtimeo(20_000).unwrap();
    push.connect(&format!("ipc://{}", ipc.display())).unwrap();
    let arrays = r#""arrays": [{"key": "v", "dtype": "float32", "shape": [100]}]"#;
    let rows_bytes = |first: usize, n: usize| -> Vec<u8> {
        (first..first + n)
            .flat_map(|r| std::iter::repeat_n(r as f32, 100))
            .flat_map(f32::to_le_bytes)
            .collect()
    };
    // 160 rows fit the buffer; 40 times as many are sent.
    let total = 6400;
    let mut sent = 0;
    while sent < total {
        let n = if (sent / 37) % 2 == 0 {
            1
        } else {
            37.min(total - sent)
        };
        let header = if n == 1 {
            format!(r#"{{"seq": {sent}, {arrays}}}"#)
        } else {
            format!(r#"{{"rows": {n}, "seq": {sent}, {arrays}}}"#)
        };
        push.send(header.as_bytes(), zmq::SNDMORE).unwrap();
        push.send(rows_bytes(sent, n), 0).unwrap();
        sent += n;
    }
    let t0 = Instant::now();
    let status = loop {
        let out = h5daq(dir.path(), &["status", "-c", "daq.toml", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let job = v["status"]["jobs"][0].clone();
        if job["written"].as_u64() == Some(total as u64) || t0.elapsed() > Duration::from_secs(30) {
            break job;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status["written"], total, "{status}");
    assert_eq!(status["dropped"], 0, "{status}");
    let out = h5daq(dir.path(), &["stop", "-c", "daq.toml"]);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("none dropped"), "{text}");
    let st = wait_exit(&mut child, 15);
    let lines: Vec<String> = rx.try_iter().collect();
    assert!(st.success(), "{}", lines.join("\n"));
    let files = h5_files(&dir.path().join("out"));
    assert_eq!(files.len(), 1);
    let f = hdf5::File::open(&files[0]).unwrap();
    let v = f.dataset("g/v").unwrap();
    assert_eq!(v.shape(), vec![total, 100]);
    let v: Vec<f32> = v.read_raw().unwrap();
    for (r, row) in v.chunks_exact(100).enumerate() {
        assert!(
            row.iter().all(|x| *x == r as f32),
            "row {r}: {:?}",
            &row[..3]
        );
    }
    let time: Vec<f64> = f.dataset("g/time").unwrap().read_raw().unwrap();
    assert_eq!(time.len(), total);
}

#[test]
fn a_status_source_without_a_server_counts_errors_and_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on (bound then released).
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let cfg = format!(
        "[daemon]\ndirectory = 'out'\nwrite_period = 0.2\n[[job]]\ngroup = 'x'\nsource = 'xsp3_status'\nendpoint = 'tcp://127.0.0.1:{port}'\nperiod = 0.2\ntimeout = 0.1\nerror_limit = 2\nfields = ['frames']\n"
    );
    write_config(dir.path(), &cfg);
    let (mut child, rx) = spawn_run(dir.path(), &["--duration", "1.5"]);
    assert!(wait_exit(&mut child, 15).success());
    let lines: Vec<String> = rx.try_iter().collect();
    let text = lines.join("\n");
    assert!(text.contains("no reply from"), "{text}");
    assert!(
        text.contains("consecutive errors (last:"),
        "the handler ran: {text}"
    );
}

#[test]
fn json_log_lines_go_to_a_file_with_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = COUNTER.replace("MODE", "close").replace(
        "[log]\nlevel = \"debug\"",
        "[log]\nlevel = \"debug\"\nformat = \"json\"\nconsole = false\nfile = \"logs/daq.log\"\nmax_file_size = 600\nkeep = 2",
    );
    write_config(dir.path(), &cfg);
    let out = h5daq(dir.path(), &["run", "daq.toml", "--duration", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("wrote"),
        "console = false"
    );
    let logs = dir.path().join("logs");
    let mut lines = Vec::new();
    for name in ["daq.log", "daq.log.1", "daq.log.2"] {
        let p = logs.join(name);
        assert!(p.exists(), "{name} (rotated at 600 bytes, 2 kept)");
        lines.extend(
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(String::from),
        );
    }
    assert!(!logs.join("daq.log.3").exists());
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
        assert!(["error", "warn", "info", "debug"].contains(&v["level"].as_str().unwrap()));
        assert!(v["msg"].is_string());
    }
    assert!(
        lines.iter().any(|l| l.contains("wrote")),
        "debug lines present"
    );
}

#[test]
fn sdaq_file_name_format() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "[daemon]\ndirectory = 'out'\nwrite_period = 0.2\nfile_name = 'RUN_{date_from}_{date_to}.hdf5'\n[[job]]\ngroup = 's'\nsource = 'system'\nperiod = 0.1\nfields = ['load1']\n",
    );
    let out = h5daq(dir.path(), &["run", "daq.toml", "--duration", "0.5"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".hdf5"))
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let format: h5daq::FileNames = "RUN_{date_from}_{date_to}.hdf5".parse().unwrap();
    let (from, to) = format.parse(&names[0]).unwrap();
    assert!(to > from);
    let f = hdf5::File::open(dir.path().join("out").join(&names[0])).unwrap();
    assert!(f.dataset("s/load1").unwrap().shape()[0] >= 2);
    write_config(
        dir.path(),
        "[daemon]\nfile_prefix = 'A'\nfile_name = 'B_{date_from}_{date_to}.h5'\n[[job]]\ngroup = 's'\nsource = 'system'\n",
    );
    let out = h5daq(dir.path(), &["run", "daq.toml", "--check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not both"));
}
