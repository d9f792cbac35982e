//! Plumbing shared by the integration tests that run the real binaries on 127.0.0.1.

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

#[cfg(feature = "zmq")]
/// A REQ socket connected to `endpoint` that gives up on a reply after `timeout_ms`.
pub fn req_socket(ctx: &zmq::Context, endpoint: &str, timeout_ms: i32) -> zmq::Socket {
    let req = ctx.socket(zmq::REQ).expect("REQ socket");
    req.set_rcvtimeo(timeout_ms).expect("receive timeout");
    req.set_linger(0).expect("linger");
    req.connect(endpoint).expect("connect");
    req
}

/// The path of binary `bin` of workspace package `package`, built first (a no-op when it is up
/// to date) with the profile and target directory of the running test.
///
/// Cargo gives a test the binaries of its own package only (`CARGO_BIN_EXE_*`); tests that run
/// two tools together (a sender and a receiver, a sampler and a daemon) use this for the other.
pub fn workspace_bin(package: &str, bin: &str) -> std::path::PathBuf {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static BUILT: OnceLock<Mutex<HashMap<String, std::path::PathBuf>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    built
        .entry(format!("{package}/{bin}"))
        .or_insert_with(|| build_bin(package, bin))
        .clone()
}

fn build_bin(package: &str, bin: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // <target>/<profile>/deps/<test>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable under <target>/<profile>/deps");
    let target_dir = profile_dir.parent().expect("target directory");
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-q", "-p", package, "--bin", bin, "--target-dir"])
        .arg(target_dir);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("run cargo build");
    assert!(
        status.success(),
        "cargo build -p {package} --bin {bin} failed"
    );
    let path = profile_dir.join(bin);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Every line the child writes on stdout and stderr (both must be piped), in arrival order, on
/// one channel fed by two reader threads that end with the child's output.
pub fn output_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::{BufRead, BufReader, Read};
    fn forward(stream: impl Read + Send + 'static, tx: std::sync::mpsc::Sender<String>) {
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let (tx, rx) = std::sync::mpsc::channel();
    forward(child.stderr.take().expect("stderr piped"), tx.clone());
    forward(child.stdout.take().expect("stdout piped"), tx);
    rx
}

/// Runs programs as an unprivileged user (uid and gid 65534) under a process limit, as on a
/// shared node. RLIMIT_NPROC counts every process and thread of that user, so the tests of one
/// binary that use it take turns (one `LimitedUser` at a time); other processes of that user on
/// the machine would count too.
pub struct LimitedUser {
    _turn: std::sync::MutexGuard<'static, ()>,
}

static LIMITED_USER: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl LimitedUser {
    /// `None`, after a line saying the test is skipped, unless this runs as root (only root can
    /// change user; root itself is exempt from RLIMIT_NPROC). The programs' files must be
    /// readable by that user.
    pub fn new() -> Option<LimitedUser> {
        use std::os::unix::fs::MetadataExt;
        if std::fs::metadata("/proc/self").map(|m| m.uid()).ok() != Some(0) {
            eprintln!("skipped: needs root to run a program as an unprivileged user");
            return None;
        }
        let turn = LIMITED_USER.lock().unwrap_or_else(|e| e.into_inner());
        Some(LimitedUser { _turn: turn })
    }

    /// The command prefix running a program as that user with at most `nproc` processes and
    /// threads in all.
    pub fn prefix(&self, nproc: u32) -> Vec<String> {
        let prefix = [
            "prlimit",
            &format!("--nproc={nproc}"),
            "--",
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ];
        prefix.iter().map(|s| s.to_string()).collect()
    }
}

/// Named pipes that stop a command at a known point: opening a FIFO blocks until the other
/// end is opened, so a test can signal the command while it waits there, then let it go on.
pub mod fifo {
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Path;
    use std::process::{Child, Command};
    use std::time::{Duration, Instant};

    const POLL: Duration = Duration::from_millis(10);

    /// A FIFO at `path`.
    pub fn make(path: &Path) {
        let made = Command::new("mkfifo").arg(path).status().expect("mkfifo");
        assert!(made.success(), "mkfifo {}", path.display());
    }

    /// Whether a thread of `pid` waits in the open of a FIFO for the other end.
    fn blocked_on_fifo(pid: u32) -> bool {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|t| {
                std::fs::read_to_string(t.path().join("wchan"))
                    .is_ok_and(|w| w == "wait_for_partner")
            })
    }

    /// Waits until `child` blocks opening a FIFO; panics if it ends first or after `limit`.
    pub fn wait_blocked(child: &mut Child, limit: Duration) {
        let start = Instant::now();
        while !blocked_on_fifo(child.id()) {
            assert!(
                child.try_wait().expect("wait").is_none(),
                "ended before the FIFO"
            );
            assert!(start.elapsed() < limit, "never opened the FIFO");
            std::thread::sleep(POLL);
        }
    }

    /// Opens the FIFO's other end each time the command waits for it (the reading end,
    /// drained, if the command writes it; the writing end, closed at once, if it reads it),
    /// until the command ends; (exit code, stdout, stderr). Kills it and panics after `limit`.
    pub fn serve_until_exit(
        mut child: Child,
        fifo: &Path,
        command_writes: bool,
        limit: Duration,
    ) -> (Option<i32>, String, String) {
        use std::io::Read;
        let start = Instant::now();
        while child.try_wait().expect("wait").is_none() {
            if start.elapsed() > limit {
                let _ = child.kill();
                panic!("did not stop after the signal");
            }
            // ENXIO for the writing end while no reader has it open.
            let end = std::fs::OpenOptions::new()
                .read(command_writes)
                .write(!command_writes)
                .custom_flags(libc::O_NONBLOCK)
                .open(fifo);
            if let (Ok(mut f), true) = (end, command_writes) {
                let mut buf = [0u8; 1 << 16];
                while child.try_wait().expect("wait").is_none() && start.elapsed() < limit {
                    if !matches!(f.read(&mut buf), Ok(n) if n > 0) {
                        std::thread::sleep(POLL);
                    }
                }
            }
            std::thread::sleep(POLL);
        }
        let o = child.wait_with_output().expect("output");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }
}
