//! The OS calls std does not offer: signalling a process group, file-system usage (rustix), and
//! a short scheduler time slice for timer-driven job threads (libc's sched_setattr).

use std::path::Path;

pub(crate) use rustix::process::Signal;

/// Sends `sig` to every process of process group `pgid` (a child started with
/// `process_group(0)`, whose group id is its pid).
pub(crate) fn kill_process_group(pgid: u32, sig: Signal) -> std::io::Result<()> {
    let pid = i32::try_from(pgid)
        .ok()
        .filter(|p| *p > 1)
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "refusing pgid <= 1")
        })?;
    rustix::process::kill_process_group(pid, sig).map_err(std::io::Error::from)
}

/// Total, free and available-to-users bytes of the file system holding `path`.
pub(crate) fn disk_usage(path: &Path) -> std::io::Result<(u64, u64, u64)> {
    let s = rustix::fs::statvfs(path)?;
    let unit = if s.f_frsize > 0 {
        s.f_frsize
    } else {
        s.f_bsize
    };
    Ok((
        s.f_blocks.saturating_mul(unit),
        s.f_bfree.saturating_mul(unit),
        s.f_bavail.saturating_mul(unit),
    ))
}

/// Asks the kernel's EEVDF scheduler (Linux >= 6.12) for a short time slice for the calling
/// thread (normal policy, no privilege needed): a thread that wakes on a timer then runs ahead of
/// CPU-bound threads instead of waiting for their slice (3 ms by default) to end. Best effort:
/// returns false where the kernel does not support it.
#[cfg(target_os = "linux")]
pub(crate) fn request_short_slice(slice: std::time::Duration) -> bool {
    let attr = libc::sched_attr {
        size: std::mem::size_of::<libc::sched_attr>() as u32,
        sched_policy: libc::SCHED_OTHER as u32,
        sched_flags: 0,
        sched_nice: 0,
        sched_priority: 0,
        sched_runtime: slice.as_nanos().clamp(100_000, 100_000_000) as u64,
        sched_deadline: 0,
        sched_period: 0,
    };
    // SAFETY: sched_setattr(pid 0 = this thread, a valid `struct sched_attr` whose `size` field
    // holds its size, flags 0); the kernel only reads the struct during the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_setattr,
            0 as libc::c_int,
            &attr as *const libc::sched_attr,
            0 as libc::c_uint,
        )
    };
    rc == 0
}

/// Not available off Linux.
#[cfg(not(target_os = "linux"))]
pub(crate) fn request_short_slice(_slice: std::time::Duration) -> bool {
    false
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
    fn short_slice_request_is_accepted() {
        // Accepted by Linux (>= 6.12 uses it; older kernels ignore the runtime of SCHED_OTHER).
        let ok = request_short_slice(std::time::Duration::from_micros(100));
        #[cfg(target_os = "linux")]
        assert!(ok, "{}", std::io::Error::last_os_error());
        #[cfg(not(target_os = "linux"))]
        assert!(!ok);
    }

    #[test]
    fn process_groups_below_2_are_refused() {
        assert!(kill_process_group(0, Signal::TERM).is_err());
        assert!(kill_process_group(1, Signal::TERM).is_err());
    }
}
