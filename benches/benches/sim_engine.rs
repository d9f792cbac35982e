//! Simulated SDK + x3s shim + acquisition engine into the frame ring (no sinks: one lossless
//! consumer that only releases), for 4 and 8 channels, beside the simulated SDK + shim alone and
//! a plain memcpy of the same bytes into ring-sized memory. The simulator runs at full speed (frames complete as fast as the
//! engine releases them) with its cheap pattern content, so the figure is the cost of the shim,
//! the engine and the one copy into the ring.
//!
//! Run: `cargo bench -p benches --bench sim_engine`. Figures in docs/benchmarks.md ("sdk-shim").

use std::time::{Duration, Instant};

use acq_core::detector::{AcqParams, Detector, GapMode, TriggerMode};
use acq_core::engine::{Acquisition, StepOutcome};
use acq_core::geometry::Geometry;
use acq_core::ring::{FrameRing, Policy, RingConfig, SlotBuffers};
use acq_core::wait::ParkWait;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sdk_shim::{OpenParams, SimContent, Xspress3};

const FRAMES: u64 = 20_000;
const BINS: u32 = 4096;
const SLOTS: usize = 1024;
const BATCH: usize = 64;

/// One acquisition of FRAMES frames through the engine into a fresh ring; returns its duration.
fn run_once(
    engine: &mut Acquisition<Xspress3, impl acq_core::engine::Clock>,
    geometry: Geometry,
    storage: &mut SlotBuffers,
) -> Duration {
    let ring = FrameRing::new(
        geometry,
        RingConfig {
            slots: SLOTS,
            batch: BATCH,
        },
        [Policy::Lossless],
        storage.memory(),
        ParkWait::new(),
    )
    .expect("ring");
    let (mut producer, [mut consumer]) = ring.split().expect("split");
    std::thread::scope(|s| {
        let reader = s.spawn(move || {
            let mut n = 0u64;
            while consumer.wait_available(1) > 0 {
                if let Some(grant) = consumer.read(BATCH) {
                    let k = grant.len();
                    n += k as u64;
                    grant.release(k);
                }
            }
            n
        });
        let start = Instant::now();
        engine.arm().expect("arm");
        loop {
            match engine.step(&mut producer).expect("step") {
                StepOutcome::Done => break,
                StepOutcome::RingFull => producer.wait_for_room(),
                StepOutcome::Lost(n) => panic!("{n} frames lost"),
                _ => {}
            }
        }
        producer.close();
        let received = reader.join().expect("reader");
        let elapsed = start.elapsed();
        assert_eq!(received, FRAMES);
        elapsed
    })
}

fn sim_engine(c: &mut Criterion) {
    let mut group = c.benchmark_group("sim_engine");
    for nch in [4u32, 8] {
        let geometry = Geometry::new(nch, BINS).expect("geometry");
        group.throughput(Throughput::Bytes(FRAMES * geometry.frame_bytes() as u64));

        let mut params = OpenParams {
            num_tf: 16384,
            ..OpenParams::default()
        };
        params.sim.n_channels = nch;
        params.sim.content = SimContent::Pattern;
        params.sim.full_speed = true;
        let detector = Xspress3::open(&params).expect("open the simulated SDK");
        let t0 = Instant::now();
        let clock = move || t0.elapsed().as_nanos() as u64;
        let mut engine = Acquisition::new(detector, clock, BATCH).expect("engine");
        engine
            .configure(&AcqParams {
                n_frames: FRAMES,
                exposure_ticks: 8_000,
                gap: GapMode::Ns25,
                trigger: TriggerMode::Internal,
                debounce_ticks: 0,
                invert_f0: false,
                invert_veto: false,
            })
            .expect("configure");
        let mut storage = SlotBuffers::new(geometry, SLOTS);
        group.bench_function(
            BenchmarkId::new("sim+shim+engine", format!("{nch}ch")),
            |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| run_once(&mut engine, geometry, &mut storage))
                        .sum()
                })
            },
        );

        // The simulated SDK and the shim alone: batches read straight into one buffer and released.
        let mut shim_only = Xspress3::open(&params).expect("open the simulated SDK");
        let mut mca = vec![0u32; BATCH * geometry.mca_words()];
        let mut sc = vec![0u32; BATCH * geometry.scaler_words()];
        group.bench_function(BenchmarkId::new("sim+shim", format!("{nch}ch")), |b| {
            b.iter(|| {
                shim_only
                    .configure(&AcqParams {
                        n_frames: FRAMES,
                        exposure_ticks: 8_000,
                        gap: GapMode::Ns25,
                        trigger: TriggerMode::Internal,
                        debounce_ticks: 0,
                        invert_f0: false,
                        invert_veto: false,
                    })
                    .expect("configure");
                shim_only.arm().expect("arm");
                let mut next = 0u64;
                while next < FRAMES {
                    let done = shim_only.poll().expect("poll").frames_complete;
                    let k = (done - next).min(BATCH as u64) as u32;
                    if k == 0 {
                        continue;
                    }
                    shim_only.read_mca(next, k, &mut mca).expect("read_mca");
                    shim_only
                        .read_scalers(next, k, &mut sc)
                        .expect("read_scalers");
                    shim_only.release(next, k).expect("release");
                    next += u64::from(k);
                }
                shim_only.stop().expect("stop");
            })
        });

        // The same bytes, copied batch by batch from one source batch into ring-sized memory.
        let frame_words = geometry.mca_words() + geometry.scaler_words();
        let src: Vec<u32> = (0..frame_words * BATCH).map(|i| i as u32).collect();
        let mut dst = vec![0u32; frame_words * SLOTS];
        group.bench_function(BenchmarkId::new("memcpy", format!("{nch}ch")), |b| {
            b.iter(|| {
                let mut slot = 0usize;
                let mut done = 0u64;
                while done < FRAMES {
                    let k = (FRAMES - done).min(BATCH as u64) as usize;
                    let at = slot * frame_words;
                    dst[at..at + k * frame_words].copy_from_slice(&src[..k * frame_words]);
                    slot = (slot + k) % SLOTS;
                    done += k as u64;
                }
                std::hint::black_box(&dst);
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(8));
    targets = sim_engine
}
criterion_main!(benches);
