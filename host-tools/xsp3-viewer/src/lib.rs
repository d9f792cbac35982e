//! The live Xspress3 spectrum page: an HTTP server whose page plots the latest frame of an
//! acquisition's monitor socket (uPlot, embedded in the binary), with the window limits, per-channel
//! count rates, the state, frame counters, ring fill and loss counters.
//!
//! It only ever reads the monitor (a lossy consumer of the acquisition's ring) and a status
//! source, on its own threads, so a browser never makes the acquisition wait. Those threads (and
//! the HTTP server's own) run at a lower scheduling priority ([`THREAD_NICE`]), so that embedded
//! in the acquisition process they never take CPU time the acquisition needs, however many
//! browsers ask. Embedding it in a process is one call, kept alive as long as the page should be
//! served:
//!
//! ```no_run
//! let viewer = xsp3_viewer::serve(
//!     "127.0.0.1:8080",
//!     xsp3_viewer::Source::monitor("tcp://127.0.0.1:9998").with_control("tcp://127.0.0.1:9997"),
//! )?;
//! println!("live page on http://{}/", viewer.local_addr());
//! # Ok::<(), xsp3_viewer::ViewerError>(())
//! ```

mod http;
mod priority;
pub mod source;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub use priority::THREAD_NICE;
pub use source::{connect_endpoint, Frame, Source, StatusFn, StatusSource};

#[derive(Debug, thiserror::Error)]
pub enum ViewerError {
    #[error("HTTP address {addr}: {message}")]
    Bind { addr: String, message: String },
    #[error("cannot start a viewer thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// A running viewer: the poller and the HTTP workers. Dropping it stops them.
pub struct Viewer {
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// Binds `addr` (e.g. `127.0.0.1:8080`; port 0 picks a free one) and serves the page for
/// `source` on background threads.
pub fn serve(addr: &str, source: Source) -> Result<Viewer, ViewerError> {
    let bind_err = |message: String| ViewerError::Bind {
        addr: addr.to_string(),
        message,
    };
    let socket: SocketAddr = addr
        .parse()
        .map_err(|e| bind_err(format!("{e} (give IP:PORT, e.g. 127.0.0.1:8080)")))?;
    // tiny_http starts its own threads (accepting, reading requests): started from a thread at
    // the viewer's priority, they inherit it.
    let server = std::thread::Builder::new()
        .name("xsp3-viewer-bind".into())
        .spawn(move || {
            priority::lower_this_thread();
            tiny_http::Server::http(socket).map_err(|e| e.to_string())
        })?
        .join()
        .map_err(|_| bind_err("the thread starting the HTTP server panicked".into()))?
        .map_err(bind_err)?;
    let server = Arc::new(server);
    let local = http::local_addr(&server).ok_or_else(|| bind_err("not an IP socket".into()))?;
    let stop = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(Mutex::new(source::Latest::default()));
    let mut viewer = Viewer {
        addr: local,
        server: Arc::clone(&server),
        stop: Arc::clone(&stop),
        threads: Vec::new(),
    };
    viewer.threads.push(source::spawn_poller(
        source.clone(),
        Arc::clone(&shared),
        Arc::clone(&stop),
    )?);
    let context = Arc::new(http::Context {
        shared,
        source,
        requests: AtomicU64::new(0),
    });
    for i in 0..http::WORKERS {
        let (server, context, stop) =
            (Arc::clone(&server), Arc::clone(&context), Arc::clone(&stop));
        viewer.threads.push(
            std::thread::Builder::new()
                .name(format!("xsp3-viewer-http-{i}"))
                .spawn(move || {
                    priority::lower_this_thread();
                    http::worker(&server, &context, &stop)
                })?,
        );
    }
    Ok(viewer)
}

impl Viewer {
    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether every thread still runs (false after a thread ended unexpectedly).
    pub fn is_running(&self) -> bool {
        self.threads.iter().all(|t| !t.is_finished())
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.server.unblock();
        for thread in self.threads.drain(..) {
            // A panicked thread has nothing left to clean up.
            let _ = thread.join();
        }
    }
}

// The Rust examples in docs/viewer.md compile: rustdoc runs them as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/viewer.md")]
struct DocsViewer;
