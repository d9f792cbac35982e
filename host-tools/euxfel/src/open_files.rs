//! The process-wide bound on open libhdf5 handles: least recently used handles are
//! closed (and reopened on demand), like EXtra-data's open-file limiter.

use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::file_access::FileAccess;

/// Global limit on simultaneously open HDF5 handles (LRU).
struct OpenLimiter {
    max: usize,
    /// Most recently used at the back.
    order: Vec<(usize, Weak<FileAccess>)>,
}

fn limiter() -> &'static Mutex<OpenLimiter> {
    static L: OnceLock<Mutex<OpenLimiter>> = OnceLock::new();
    L.get_or_init(|| {
        Mutex::new(OpenLimiter {
            max: default_max_open(),
            order: Vec::new(),
        })
    })
}

fn default_max_open() -> usize {
    if let Some(n) = std::env::var("EUXFEL_MAX_OPEN_FILES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        return n.max(1);
    }
    // Half of the soft fd limit, like EXtra-data (which first raises soft to hard).
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(3)
                        .and_then(|v| v.parse::<usize>().ok())
                })
        })
        .unwrap_or(1024);
    (soft / 2).max(16)
}

/// Set the maximum number of simultaneously open files (for tests and tools).
pub fn set_max_open_files(n: usize) {
    if let Ok(mut l) = limiter().lock() {
        l.max = n.max(1);
    }
}

/// Mark file `id` as just used; close the handles of the least recently used files
/// beyond the limit.
pub(crate) fn touch(id: usize, fa: &Arc<FileAccess>) {
    let mut to_close = Vec::new();
    if let Ok(mut l) = limiter().lock() {
        l.order.retain(|(i, w)| *i != id && w.strong_count() > 0);
        l.order.push((id, Arc::downgrade(fa)));
        while l.order.len() > l.max {
            let (_, w) = l.order.remove(0);
            if let Some(fa) = w.upgrade() {
                to_close.push(fa);
            }
        }
    }
    // Closed outside the limiter's lock: closing takes the file's own lock.
    for fa in to_close {
        fa.close();
    }
}
