//! Atomics used by the ring: loom's model-checked types under `--cfg loom`, otherwise
//! `portable-atomic`, which is the native type where the target has 64-bit atomics and a
//! critical-section fallback on microcontrollers that don't.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use portable_atomic::{AtomicBool, AtomicU64, Ordering};

/// Keeps a hot atomic on its own cache line, so the producer's cursor and the consumers'
/// cursors don't invalidate each other's lines on every update.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> core::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}
