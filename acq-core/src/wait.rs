//! How a ring endpoint waits for the other side.
//!
//! The ring itself never blocks: [`grant`](crate::ring::Producer::grant) and
//! [`read`](crate::ring::Consumer::read) return at once. The blocking helpers take their way of
//! waiting from a [`Wait`] implementation, chosen by the caller for the platform:
//! `ParkWait` (feature `std`) on a host with an OS, [`BusyWait`] on a bare-metal core that has
//! nothing else to do.

/// A way of waiting for progress of the other side of a ring.
pub trait Wait {
    /// Returns once `blocked()` is false. Implementations call `blocked` again after every wake-up;
    /// the ring calls [`Wait::notify`] after each change that can unblock a waiter.
    fn wait_while(&self, blocked: &dyn Fn() -> bool);
    /// Wakes the threads inside [`Wait::wait_while`]. Called by the ring after every commit,
    /// release and close (changes it publishes with Release stores), so it must be cheap when
    /// nobody waits. An implementation that skips the wake when it sees no waiter must bound
    /// its waits, since it may miss a waiter that registered at the same instant.
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
    use core::sync::atomic::{AtomicU32, Ordering};
    use core::time::Duration;
    use std::sync::{Condvar, Mutex, PoisonError};

    use super::Wait;

    /// Yields a few times (progress is often microseconds away), then sleeps on a condition
    /// variable until notified or for at most 1 ms, and re-checks. Never spins without bound.
    ///
    /// `notify` costs one relaxed load when nobody waits: the hot path carries no memory
    /// barrier. (A lost-wake-up-proof handshake needs a StoreLoad barrier on every commit and
    /// release, which measured 85 ns instead of about 40 ns per frame round trip here.) The
    /// price is a rare race: a waiter that registers while the notifier's store is still in its
    /// store buffer sleeps until its timeout. That costs at most 1 ms of latency, never data:
    /// the ring's state is re-checked on every wake-up.
    #[derive(Debug, Default)]
    pub struct ParkWait {
        waiters: AtomicU32,
        lock: Mutex<()>,
        wake: Condvar,
    }

    /// Yields before parking: enough to catch a hand-off between two busy threads, few enough
    /// that an idle waiter goes to sleep within microseconds.
    const YIELDS_BEFORE_PARK: u32 = 4;
    /// Bounds the latency of a missed wake-up (see the type's docs).
    const PARK_TIMEOUT: Duration = Duration::from_millis(1);

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
            self.waiters.fetch_add(1, Ordering::Relaxed);
            let mut guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            while blocked() {
                guard = self
                    .wake
                    .wait_timeout(guard, PARK_TIMEOUT)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            drop(guard);
            self.waiters.fetch_sub(1, Ordering::Relaxed);
        }

        fn notify(&self) {
            // Relaxed: a stale zero only delays a waiter until its timeout (see the type's docs).
            if self.waiters.load(Ordering::Relaxed) > 0 {
                drop(self.lock.lock().unwrap_or_else(PoisonError::into_inner));
                self.wake.notify_all();
            }
        }
    }
}
