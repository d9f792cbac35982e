//! The daemon's control socket: a Unix domain socket (default `<directory>/h5daq.sock`) taking
//! one JSON line per connection, `{"cmd": "status"}` or `{"cmd": "stop"}`, and answering one
//! JSON line, `{"ok": true, ...}` or `{"ok": false, "error": "..."}`. Local only by design.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::error::DaqError;

/// Answers one request.
pub type Handler = Arc<dyn Fn(&serde_json::Value) -> serde_json::Value + Send + Sync>;

/// A running control socket; removed when dropped.
pub struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer")
            .field("path", &self.path)
            .finish()
    }
}

impl ControlServer {
    /// Binds `path`. A stale socket file (nobody answering) is replaced; a live one is an error.
    pub fn start(path: &Path, handler: Handler) -> Result<ControlServer, DaqError> {
        if path.exists() {
            if request(
                path,
                &serde_json::json!({"cmd": "status"}),
                Duration::from_secs(1),
            )
            .is_ok()
            {
                return Err(DaqError::SocketInUse {
                    path: path.to_path_buf(),
                });
            }
            std::fs::remove_file(path).map_err(DaqError::io(path))?;
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(DaqError::io(dir))?;
        }
        let listener = UnixListener::bind(path).map_err(DaqError::io(path))?;
        listener.set_nonblocking(true).map_err(DaqError::io(path))?;
        let stop = Arc::new(AtomicBool::new(false));
        let st = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("daq-control".into())
            .spawn(move || {
                while !st.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((conn, _)) => serve(conn, &handler),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
            })
            .map_err(DaqError::thread("the control socket thread"))?;
        Ok(ControlServer {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve(conn: UnixStream, handler: &Handler) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    let mut reader = BufReader::new((&conn).take(64 * 1024));
    let reply = match reader.read_line(&mut line) {
        Ok(_) => match serde_json::from_str::<serde_json::Value>(line.trim()) {
            Ok(req) if req.is_object() => handler(&req),
            Ok(other) => {
                serde_json::json!({"ok": false, "error": format!("request is not a JSON object: {other}")})
            }
            Err(e) => {
                serde_json::json!({"ok": false, "error": format!("request is not JSON: {e}")})
            }
        },
        Err(e) => serde_json::json!({"ok": false, "error": format!("read: {e}")}),
    };
    let mut out = reply.to_string();
    out.push('\n');
    let _ = (&conn).write_all(out.as_bytes());
}

/// Sends one request and returns the reply.
pub fn request(
    path: &Path,
    req: &serde_json::Value,
    timeout: Duration,
) -> Result<serde_json::Value, DaqError> {
    let conn = UnixStream::connect(path).map_err(DaqError::io(path))?;
    conn.set_read_timeout(Some(timeout))
        .map_err(DaqError::io(path))?;
    conn.set_write_timeout(Some(timeout))
        .map_err(DaqError::io(path))?;
    let mut line = req.to_string();
    line.push('\n');
    (&conn)
        .write_all(line.as_bytes())
        .map_err(DaqError::io(path))?;
    let mut reply = String::new();
    BufReader::new((&conn).take(16 << 20))
        .read_line(&mut reply)
        .map_err(DaqError::io(path))?;
    serde_json::from_str(reply.trim()).map_err(|source| DaqError::ControlReply {
        path: path.to_path_buf(),
        source,
    })
}
