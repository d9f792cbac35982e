//! 1,000,000 frames through the engine, the ring and two consumer threads with zero heap
//! allocations after initialisation, proven by a counting global allocator. This file holds one
//! test so that nothing else runs (and allocates) while the counter is armed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;

use acq_core::detector::{AcqParams, GapMode, TriggerMode};
use acq_core::engine::{Acquisition, StepOutcome};
use acq_core::geometry::{FrameMeta, Geometry};
use acq_core::ring::{FrameRing, Policy, RingConfig, SlotMemory, SlotMemorySize};
use acq_core::testing::{mca_word, TestDetector};
use acq_core::wait::ParkWait;

struct CountingAllocator;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const FRAMES: u64 = 1_000_000;

#[test]
fn a_million_frames_allocate_nothing_after_initialisation() {
    // The instrument works: one allocation while armed is seen.
    COUNTING.store(true, Ordering::SeqCst);
    let probe = std::hint::black_box(Box::new(7u64));
    COUNTING.store(false, Ordering::SeqCst);
    drop(probe);
    assert_eq!(ALLOCATIONS.swap(0, Ordering::SeqCst), 1);

    let geometry = Geometry::new(1, 16).unwrap();
    let slots = 4096;
    let size = SlotMemorySize::new(geometry, slots);
    let mut mca = vec![0u32; size.mca_words];
    let mut scalers = vec![0u32; size.scaler_words];
    let mut meta = vec![FrameMeta::default(); size.meta_records];
    let ring = FrameRing::new(
        geometry,
        RingConfig { slots, batch: 256 },
        [Policy::Lossless, Policy::Lossy],
        SlotMemory {
            mca: &mut mca,
            scalers: &mut scalers,
            meta: &mut meta,
        },
        ParkWait::new(),
    )
    .unwrap();
    let mut detector = TestDetector::new(1, 16, 1 << 40);
    detector.frames_per_poll = 300;
    let clock = || 0u64;
    let mut engine = Acquisition::new(detector, clock, 256).unwrap();
    engine
        .configure(&AcqParams {
            n_frames: FRAMES,
            exposure_ticks: 1,
            gap: GapMode::Ns25,
            trigger: TriggerMode::Internal,
            debounce_ticks: 0,
        })
        .unwrap();
    engine.arm().unwrap();
    let (mut producer, [mut writer, mut monitor]) = ring.split().unwrap();
    let start = Barrier::new(3);

    let (written, monitored) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            start.wait();
            let mut expected = 0u64;
            while writer.wait_available(256) > 0 {
                let Some(grant) = writer.read(256) else {
                    continue;
                };
                for (i, m) in grant.meta().iter().enumerate() {
                    assert_eq!(m.frame_number, expected);
                    assert_eq!(grant.mca()[i * 16 + 3], mca_word(expected, 0, 3));
                    expected += 1;
                }
                let n = grant.len();
                grant.release(n);
            }
            expected
        });
        let monitor = s.spawn(|| {
            start.wait();
            let mut looked = 0u64;
            while monitor.wait_available(1) > 0 {
                monitor.skip_to_latest(1);
                if let Some(grant) = monitor.read(1) {
                    looked += grant.len() as u64;
                    let n = grant.len();
                    grant.release(n);
                }
            }
            looked
        });
        start.wait();
        COUNTING.store(true, Ordering::SeqCst);
        loop {
            match engine.step(&mut producer).unwrap() {
                StepOutcome::Done => break,
                StepOutcome::RingFull => producer.wait_for_room(),
                _ => {}
            }
        }
        producer.close();
        let written = writer.join().unwrap();
        let monitored = monitor.join().unwrap();
        COUNTING.store(false, Ordering::SeqCst);
        (written, monitored)
    });

    assert_eq!(
        ALLOCATIONS.load(Ordering::SeqCst),
        0,
        "heap allocations in the hot path"
    );
    assert_eq!(written, FRAMES);
    assert_eq!(engine.stats().frames_read, FRAMES);
    let stats = ring.stats();
    assert_eq!(stats.consumers[1].delivered, monitored);
    assert_eq!(
        stats.consumers[1].delivered + stats.consumers[1].dropped,
        FRAMES
    );
}
