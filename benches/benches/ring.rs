//! FrameRing benchmarks (issue acq-core).
//!
//! `ring_throughput`: 4-channel x 4096-bin frames (64 KiB of MCA + 144 B of scalers each). A
//! producer thread copies each frame from a source buffer into its slot (the one copy the SDK
//! forces) and commits in batches of 64; two lossless consumer threads read every frame, check
//! its frame number and read its first and last MCA word, and release. Beside it, `memcpy` copies
//! the same bytes in the same batches into a destination as large as the ring, on one thread.
//! Both report bytes of MCA + scalers, so criterion's throughput figures compare directly.
//!
//! `ring_overhead`: 1-channel x 64-bin frames, one thread, grant(1) / commit(1) / read(1) /
//! release(1) per frame with nothing copied: the ring's own cost per frame.

use std::hint::black_box;

use acq_core::geometry::Geometry;
use acq_core::ring::{FrameRing, Policy, RingConfig, SlotBuffers};
use acq_core::wait::ParkWait;
use benches::ring::{memcpy_run, ring_run, BATCH, SLOTS};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const FRAMES_PER_ITER: u64 = 4096;

fn ring_throughput(c: &mut Criterion) {
    let geometry = Geometry::new(4, 4096).expect("geometry");
    let source: Vec<u32> = (0..BATCH * geometry.mca_words())
        .map(|i| i as u32)
        .collect();
    let mut storage = SlotBuffers::new(geometry, SLOTS);
    let mut group = c.benchmark_group("ring_throughput_4x4096");
    group.throughput(Throughput::Bytes(
        FRAMES_PER_ITER * geometry.frame_bytes() as u64,
    ));
    group.sample_size(20);
    group.bench_function("ring_1p_2c", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| ring_run(geometry, &mut storage, &source, FRAMES_PER_ITER).0)
                .sum()
        })
    });
    group.bench_function("memcpy", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| memcpy_run(geometry, &mut storage, &source, FRAMES_PER_ITER))
                .sum()
        })
    });
    group.finish();
}

fn overhead_loop<W: acq_core::wait::Wait>(c: &mut Criterion, name: &str, wait: W) {
    let geometry = Geometry::new(1, 64).expect("geometry");
    let mut storage = SlotBuffers::new(geometry, 1024);
    let ring = FrameRing::new(
        geometry,
        RingConfig {
            slots: 1024,
            batch: 1,
        },
        [Policy::Lossless],
        storage.memory(),
        wait,
    )
    .expect("ring");
    let (mut producer, [mut consumer]) = ring.split().expect("split");
    let mut group = c.benchmark_group("ring_overhead_1x64");
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        b.iter(|| {
            let grant = producer.grant(1).expect("room");
            grant.commit(1);
            let grant = consumer.read(1).expect("frame");
            black_box(grant.meta()[0].frame_number);
            grant.release(1);
        })
    });
    group.finish();
}

/// The ring's own cost per frame with the host's wait strategy, and with the notifying part
/// taken out (bare-metal `BusyWait`) to show what waking costs.
fn ring_overhead(c: &mut Criterion) {
    overhead_loop(c, "park_wait", ParkWait::new());
    overhead_loop(c, "busy_wait", acq_core::wait::BusyWait);
}

criterion_group!(benches, ring_throughput, ring_overhead);
criterion_main!(benches);
