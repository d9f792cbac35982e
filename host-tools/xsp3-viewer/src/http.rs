//! The HTTP side: the page and its assets (embedded in the binary) and `/api/live`, served by a
//! few worker threads over one `tiny_http` server. Handlers only read the newest data under a
//! short lock; nothing they do reaches the acquisition.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tiny_http::{Header, Method, Request, Response, Server};

use crate::source::{lock, Shared, Source, StatusSource};

/// Files of the page, compiled into the binary.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("../assets/index.html"),
    ),
    (
        "/viewer.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/viewer.js"),
    ),
    (
        "/viewer.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/viewer.css"),
    ),
    (
        "/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/uPlot.iife.min.js"),
    ),
    (
        "/uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/uPlot.min.css"),
    ),
    (
        "/uPlot.LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../assets/uPlot.LICENSE"),
    ),
];

/// Worker threads answering requests: a handful of browsers each polling at 10 Hz.
pub const WORKERS: usize = 4;

/// What the handlers need besides the newest data.
pub struct Context {
    pub shared: Shared,
    pub source: Source,
    pub requests: AtomicU64,
}

pub fn worker(server: &Server, context: &Context, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match server.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(request)) => {
                context.requests.fetch_add(1, Ordering::Relaxed);
                // A browser that went away mid-reply is not our error.
                let _ = respond(request, context);
            }
            Ok(None) => {}
            Err(_) => return, // the listener is gone
        }
    }
}

fn header(name: &str, value: &str) -> Header {
    // Both are ASCII constants of this module.
    Header::from_bytes(name.as_bytes(), value.as_bytes())
        .unwrap_or_else(|()| unreachable!("ASCII header {name}: {value}"))
}

fn respond(request: Request, context: &Context) -> std::io::Result<()> {
    if request.method() != &Method::Get && request.method() != &Method::Head {
        let response = Response::from_string("only GET\n")
            .with_status_code(405)
            .with_header(header("Allow", "GET, HEAD"));
        return request.respond(response);
    }
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    if path == "/api/live" {
        let body = live_json(context, since(query));
        let response = Response::from_string(body)
            .with_header(header("Content-Type", "application/json"))
            .with_header(header("Cache-Control", "no-store"));
        return request.respond(response);
    }
    match ASSETS.iter().find(|(p, _, _)| *p == path) {
        Some((_, mime, bytes)) => {
            let response = Response::from_data(*bytes).with_header(header("Content-Type", mime));
            request.respond(response)
        }
        None => request.respond(Response::from_string("not found\n").with_status_code(404)),
    }
}

/// `since=V` in the query: the frame version the page already has.
fn since(query: &str) -> Option<u64> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("since="))
        .and_then(|v| v.parse().ok())
}

/// The page's one request: the frame (unless the page has this version), counters and health.
pub fn live_json(context: &Context, since: Option<u64>) -> String {
    let latest = lock(&context.shared);
    let frame = match &latest.frame_json {
        Some(f) if since != Some(latest.frame_version) => Arc::clone(f),
        _ => Arc::from("null"),
    };
    let status_kind = match &context.source.status {
        StatusSource::None => Value::Null,
        StatusSource::Control(endpoint) => json!(format!("control {endpoint}")),
        StatusSource::Function(_) => json!("embedded"),
    };
    let meta = json!({
        "frame_version": latest.frame_version,
        "status": latest.status,
        "status_source": status_kind,
        "status_error": latest.status_error,
        "monitor": {
            "endpoint": context.source.monitor,
            "ok": latest.monitor_ok,
            "error": latest.monitor_error,
            "replies": latest.monitor_replies,
        },
        "polls": latest.polls,
        "poll_interval_s": context.source.poll_interval.as_secs_f64(),
        "windows": context.source.windows,
        "http_requests": context.requests.load(Ordering::Relaxed),
    });
    drop(latest);
    format!(r#"{{"frame":{frame},"meta":{meta}}}"#)
}

pub fn local_addr(server: &Server) -> Option<SocketAddr> {
    server.server_addr().to_ip()
}
