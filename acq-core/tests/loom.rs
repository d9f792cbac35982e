//! Model checks of the ring's algorithm with loom (run by `make test` as
//! `RUSTFLAGS="--cfg loom" cargo test --release -p acq-core --test loom`).
//!
//! Each model runs a producer and two consumers over a 2-slot ring for 3 frames, so every run
//! wraps. Under `--cfg loom` the ring keeps a loom-tracked shadow of every slot: loom reports any
//! write to a slot that is not ordered after all reads of it, and each read checks that the slot
//! holds the frame it was promised. The models assert order, no duplicates, completeness for
//! lossless consumers and delivered + dropped = committed for lossy ones.
#![cfg(loom)]

use acq_core::geometry::{FrameMeta, Geometry};
use acq_core::ring::{Consumer, FrameRing, Policy, RingConfig, SlotMemory, SlotParts};
use acq_core::wait::Wait;

/// Blocks on a loom condition variable, with the condition checked under the mutex, as
/// `ParkWait` does: a spinning waiter would make the model infinite.
struct LoomWait {
    lock: loom::sync::Mutex<()>,
    wake: loom::sync::Condvar,
}

impl Wait for LoomWait {
    fn wait_while(&self, blocked: &dyn Fn() -> bool) {
        let mut guard = self.lock.lock().unwrap();
        while blocked() {
            guard = self.wake.wait(guard).unwrap();
        }
    }

    fn notify(&self) {
        drop(self.lock.lock().unwrap());
        self.wake.notify_all();
    }
}

const SLOTS: usize = 2;
const FRAMES: u64 = 3;

fn leaked_ring(policies: [Policy; 2]) -> &'static FrameRing<'static, LoomWait, 2> {
    let geometry = Geometry::new(1, 1).unwrap();
    let memory = SlotMemory {
        mca: Box::leak(vec![0u32; SLOTS].into_boxed_slice()),
        scalers: Box::leak(vec![0u32; SLOTS * 9].into_boxed_slice()),
        rois: &mut [],
        meta: Box::leak(vec![FrameMeta::default(); SLOTS].into_boxed_slice()),
    };
    let ring = FrameRing::new(
        geometry,
        RingConfig {
            slots: SLOTS,
            batch: 1,
        },
        policies,
        memory,
        LoomWait {
            lock: loom::sync::Mutex::new(()),
            wake: loom::sync::Condvar::new(),
        },
    )
    .unwrap();
    Box::leak(Box::new(ring))
}

/// Reads until the ring is closed and drained; returns the frame numbers delivered.
fn consume(mut consumer: Consumer<'static, 'static, LoomWait, 2>) -> Vec<u64> {
    let mut seen = Vec::new();
    while consumer.wait_available(1) > 0 {
        if let Some(grant) = consumer.read(2) {
            for (i, meta) in grant.meta().iter().enumerate() {
                assert_eq!(meta.frame_number, grant.first_position() + i as u64);
                assert_eq!(grant.mca()[i], meta.frame_number as u32 + 100);
                seen.push(meta.frame_number);
            }
            let n = grant.len();
            grant.release(n);
        }
    }
    let (available, finished) = (consumer.available(), consumer.is_finished());
    assert!(
        finished,
        "consumer left with {available} frames available, seen {seen:?}"
    );
    seen
}

fn model(policies: [Policy; 2]) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder.check(move || {
        let ring = leaked_ring(policies);
        let (mut producer, [first, second]) = ring.split().unwrap();
        let t1 = loom::thread::spawn(move || consume(first));
        let t2 = loom::thread::spawn(move || consume(second));
        let mut sent = 0u64;
        while sent < FRAMES {
            let mut grant = producer.grant_blocking(1).unwrap();
            let position = grant.first_position();
            let SlotParts { mca, meta, .. } = grant.parts_mut();
            mca[0] = position as u32 + 100;
            meta[0].frame_number = position;
            grant.commit(1);
            sent += 1;
        }
        producer.close();
        let seen = [t1.join().unwrap(), t2.join().unwrap()];
        let stats = ring.stats();
        assert_eq!(stats.committed, FRAMES);
        for (i, frames) in seen.iter().enumerate() {
            assert!(frames.windows(2).all(|w| w[0] < w[1]), "order: {frames:?}");
            let c = stats.consumers[i];
            assert_eq!(
                c.delivered,
                frames.len() as u64,
                "consumer {i}: {frames:?} {c:?}"
            );
            assert_eq!(
                c.delivered + c.dropped,
                FRAMES,
                "consumer {i}: {frames:?} {c:?}"
            );
            if policies[i] == Policy::Lossless {
                assert_eq!(frames, &(0..FRAMES).collect::<Vec<_>>());
            }
        }
    });
}

#[test]
fn two_lossless_consumers_with_wrap_around() {
    model([Policy::Lossless, Policy::Lossless]);
}

#[test]
fn lossless_and_lossy_consumer_with_skipping() {
    model([Policy::Lossless, Policy::Lossy]);
}
