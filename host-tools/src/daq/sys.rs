//! The few OS calls std does not offer: stop signals, signalling a process group, and file-system
//! usage. They are declared here against the C library std already links.

use std::ffi::CString;
use std::os::raw::{c_char, c_int};
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

/// SIGINT (Ctrl-C).
pub const SIGINT: i32 = 2;
/// SIGKILL.
pub const SIGKILL: i32 = 9;
/// SIGTERM.
pub const SIGTERM: i32 = 15;

static SIGNALLED: AtomicI32 = AtomicI32::new(0);

extern "C" {
    fn signal(signum: c_int, handler: usize) -> usize;
    fn kill(pid: c_int, sig: c_int) -> c_int;
}

#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
extern "C" {
    fn statvfs(path: *const c_char, buf: *mut StatVfs) -> c_int;
}

extern "C" fn on_stop_signal(sig: c_int) {
    // Only an atomic store: async-signal-safe.
    SIGNALLED.store(sig, Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM set a flag ([`stop_signal`]) instead of killing the process.
pub fn install_stop_handlers() {
    let handler = on_stop_signal as extern "C" fn(c_int) as usize;
    for sig in [SIGINT, SIGTERM] {
        // SAFETY: `signal` is the C library's; the handler is an `extern "C" fn(c_int)` that
        // only stores to an atomic, which is async-signal-safe, and it lives for the program.
        unsafe {
            signal(sig, handler);
        }
    }
}

/// The stop signal received since [`install_stop_handlers`], if any.
pub fn stop_signal() -> Option<i32> {
    match SIGNALLED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Sends `sig` to every process of process group `pgid`.
pub fn kill_process_group(pgid: u32, sig: i32) -> std::io::Result<()> {
    let pgid = c_int::try_from(pgid)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "pgid out of range"))?;
    if pgid <= 1 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "refusing pgid <= 1",
        ));
    }
    // SAFETY: plain system call with integer arguments; a negative pid addresses the group.
    let rc = unsafe { kill(-pgid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// glibc's `struct statvfs` on 64-bit Linux (x86_64, aarch64): eleven `unsigned long`-sized
/// fields then six ints of padding; extra room guards against a longer layout.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
#[repr(C)]
struct StatVfs {
    f_bsize: u64,
    f_frsize: u64,
    f_blocks: u64,
    f_bfree: u64,
    f_bavail: u64,
    rest: [u64; 16],
}

/// Total, free and available-to-users bytes of the file system holding `path`.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
pub fn disk_usage(path: &Path) -> std::io::Result<(u64, u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))?;
    let mut buf = StatVfs {
        f_bsize: 0,
        f_frsize: 0,
        f_blocks: 0,
        f_bfree: 0,
        f_bavail: 0,
        rest: [0; 16],
    };
    // SAFETY: `c` is a NUL-terminated path; `buf` is larger than glibc's struct statvfs on this
    // target, whose first five fields have the layout declared above.
    let rc = unsafe { statvfs(c.as_ptr(), &mut buf) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let unit = if buf.f_frsize > 0 {
        buf.f_frsize
    } else {
        buf.f_bsize
    };
    Ok((buf.f_blocks * unit, buf.f_bfree * unit, buf.f_bavail * unit))
}

/// Not available on this target.
#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
pub fn disk_usage(_path: &Path) -> std::io::Result<(u64, u64, u64)> {
    let _ = (CString::default(), std::ptr::null::<c_char>());
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "disk usage needs 64-bit Linux",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_usage_is_plausible() {
        let (total, free, avail) = disk_usage(Path::new("/")).unwrap();
        assert!(
            total > 0 && free <= total && avail <= free,
            "{total} {free} {avail}"
        );
        assert!(disk_usage(Path::new("/no/such/dir")).is_err());
    }
}
