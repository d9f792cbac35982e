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

/// `struct sched_attr` of sched_setattr(2).
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
#[repr(C)]
struct SchedAttr {
    size: u32,
    sched_policy: u32,
    sched_flags: u64,
    sched_nice: i32,
    sched_priority: u32,
    sched_runtime: u64,
    sched_deadline: u64,
    sched_period: u64,
    sched_util_min: u32,
    sched_util_max: u32,
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
extern "C" {
    fn syscall(num: std::os::raw::c_long, ...) -> std::os::raw::c_long;
}

/// Asks the kernel's EEVDF scheduler (Linux >= 6.12) for a short time slice for the calling
/// thread (normal policy, no privilege needed): a thread that wakes on a timer then runs ahead of
/// CPU-bound threads instead of waiting for their slice (3 ms by default) to end. Best effort:
/// returns false where the kernel does not support it.
pub fn request_short_slice(slice: std::time::Duration) -> bool {
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    {
        #[cfg(target_arch = "x86_64")]
        const SYS_SCHED_SETATTR: std::os::raw::c_long = 314;
        #[cfg(target_arch = "aarch64")]
        const SYS_SCHED_SETATTR: std::os::raw::c_long = 274;
        let attr = SchedAttr {
            size: std::mem::size_of::<SchedAttr>() as u32,
            sched_policy: 0, // SCHED_OTHER
            sched_flags: 0,
            sched_nice: 0,
            sched_priority: 0,
            sched_runtime: slice.as_nanos().clamp(100_000, 100_000_000) as u64,
            sched_deadline: 0,
            sched_period: 0,
            sched_util_min: 0,
            sched_util_max: 0,
        };
        // SAFETY: sched_setattr(pid 0 = this thread, a valid `struct sched_attr` whose `size`
        // field holds its size, flags 0); the kernel only reads the struct.
        let rc = unsafe {
            syscall(
                SYS_SCHED_SETATTR,
                0 as c_int,
                &attr as *const SchedAttr,
                0 as c_int,
            )
        };
        rc == 0
    }
    #[cfg(not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    {
        let _ = slice;
        false
    }
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

    #[test]
    fn short_slice_request_is_harmless() {
        // Accepted by Linux (>= 6.12 uses it; older kernels ignore the runtime of SCHED_OTHER).
        let ok = request_short_slice(std::time::Duration::from_micros(100));
        println!("sched_setattr accepted: {ok}");
        #[cfg(target_os = "linux")]
        assert!(ok, "{}", std::io::Error::last_os_error());
    }
}
