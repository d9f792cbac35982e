//! How a ring endpoint waits for the other side.
//!
//! The ring itself never blocks: [`grant`](crate::ring::Producer::grant) and
//! [`read`](crate::ring::Consumer::read) return at once. The blocking helpers take their way of
//! waiting from a [`Wait`] implementation, chosen by the caller for the platform:
//! [`ParkWait`] on a host with an OS, [`BusyWait`] on a bare-metal core that has nothing else to do.

/// A way of waiting for progress of the other side of a ring.
pub trait Wait {
    /// Returns once `blocked()` is false. Implementations call `blocked` again after every wake-up;
    /// the ring calls [`Wait::notify`] after each change that can unblock a waiter.
    fn wait_while(&self, blocked: &dyn Fn() -> bool);
    /// Wakes the threads inside [`Wait::wait_while`]. Called by the ring after every commit,
    /// release and close, so it must be cheap when nobody waits.
    fn notify(&self);
}

/// Spins with the CPU's spin-loop hint. Only for a bare-metal core dedicated to this work: on a
/// shared host a spinning waiter steals the core the other side needs (on a 2-core machine a
/// spinning ring fell to 0.06 GB/s).
#[derive(Debug, Default)]
pub struct BusyWait;

impl Wait for BusyWait {
    fn wait_while(&self, blocked: &dyn Fn() -> bool) {
        while blocked() {
            core::hint::spin_loop();
        }
    }

    fn notify(&self) {}
}

#[cfg(feature = "std")]
pub use self::park::ParkWait;

#[cfg(feature = "std")]
mod park {
    extern crate std;

    use core::sync::atomic::{fence, AtomicU32, Ordering};
    use core::time::Duration;
    use std::sync::{Condvar, Mutex, PoisonError};

    use super::Wait;

    /// Yields a few times (progress is often microseconds away), then sleeps on a condition
    /// variable until notified. Never spins without bound.
    ///
    /// Lost wake-ups are excluded by a Dekker-style handshake: a waiter registers in `waiters`
    /// (SeqCst) and re-checks its condition under the mutex; a notifier publishes its change,
    /// issues a SeqCst fence and then reads `waiters`. Either the notifier sees the waiter and
    /// signals under the mutex, or the waiter's re-check sees the change. The timed wait only
    /// bounds the damage of a caller whose condition depends on state the ring does not notify.
    #[derive(Debug, Default)]
    pub struct ParkWait {
        waiters: AtomicU32,
        lock: Mutex<()>,
        wake: Condvar,
    }

    /// Yields before parking: enough to catch a hand-off between two busy threads, few enough
    /// that an idle waiter goes to sleep within microseconds.
    const YIELDS_BEFORE_PARK: u32 = 4;
    const PARK_TIMEOUT: Duration = Duration::from_millis(20);

    impl ParkWait {
        pub fn new() -> Self {
            Self::default()
        }
    }

    impl Wait for ParkWait {
        fn wait_while(&self, blocked: &dyn Fn() -> bool) {
            for _ in 0..YIELDS_BEFORE_PARK {
                if !blocked() {
                    return;
                }
                std::thread::yield_now();
            }
            self.waiters.fetch_add(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            let mut guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            while blocked() {
                guard = self
                    .wake
                    .wait_timeout(guard, PARK_TIMEOUT)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            drop(guard);
            self.waiters.fetch_sub(1, Ordering::SeqCst);
        }

        fn notify(&self) {
            fence(Ordering::SeqCst);
            if self.waiters.load(Ordering::Relaxed) > 0 {
                drop(self.lock.lock().unwrap_or_else(PoisonError::into_inner));
                self.wake.notify_all();
            }
        }
    }
}
