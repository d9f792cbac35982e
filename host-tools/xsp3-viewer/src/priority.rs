//! The viewer's threads run below the acquisition's priority: on a machine short of cores (two
//! here, shared with browsers), the scheduler then gives the acquisition's threads the CPU first,
//! and the page is what slows down.

/// Nice value of the viewer's threads (0 is the default; 19 the lowest priority). On Linux the
/// nice value belongs to a thread, so the other threads of a process embedding the viewer keep
/// theirs.
pub const THREAD_NICE: i32 = 10;

/// Lowers the calling thread's priority to [`THREAD_NICE`] (never raises it: a process started
/// at a lower priority keeps that). Lowering needs no privileges; if it fails anyway (a seccomp
/// filter, another OS) the thread keeps its priority, which only costs the protection, so the
/// error is not reported.
pub(crate) fn lower_this_thread() {
    // SAFETY: getpriority and setpriority take integers only (no memory is passed); with `who`
    // 0 they read and change the calling thread's nice value on Linux, which affects scheduling
    // only.
    unsafe {
        let now = libc::getpriority(libc::PRIO_PROCESS, 0);
        libc::setpriority(libc::PRIO_PROCESS, 0, THREAD_NICE.max(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nice_of_this_thread() -> i32 {
        // SAFETY: as in `lower_this_thread`: integers only, reads the calling thread's value.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    #[test]
    fn lowers_only_the_calling_thread() {
        let before = nice_of_this_thread();
        let lowered = std::thread::spawn(|| {
            lower_this_thread();
            nice_of_this_thread()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, THREAD_NICE.max(before));
        assert_eq!(
            nice_of_this_thread(),
            before,
            "the spawning thread keeps its priority"
        );
    }
}
