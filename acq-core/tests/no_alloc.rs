//! 1,000,000 frames (with one software ROI's sums) through the engine, the ring and two consumer
//! threads with zero heap allocations after initialisation, proven by a counting global allocator. This file holds one
//! test so that nothing else runs (and allocates) while the counter is armed.

use std::sync::Barrier;

use acq_core::detector::{AcqParams, GapMode, TriggerMode};
use acq_core::engine::{Acquisition, StepOutcome};
use acq_core::geometry::Geometry;
use acq_core::ring::{FrameRing, Policy, RingConfig, SlotBuffers};
use acq_core::testing::{mca_word, roi_sum, CountingAllocator, TestDetector};
use acq_core::wait::ParkWait;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const FRAMES: u64 = 1_000_000;

#[test]
fn a_million_frames_allocate_nothing_after_initialisation() {
    assert_eq!(CountingAllocator::self_test(), 1, "the instrument counts");

    let geometry = Geometry::new(1, 16).unwrap().with_rois(1).unwrap();
    let slots = 4096;
    let mut buffers = SlotBuffers::new(geometry, slots);
    let ring = FrameRing::new(
        geometry,
        RingConfig { slots, batch: 256 },
        [Policy::Lossless, Policy::Lossy],
        buffers.memory(),
        ParkWait::new(),
    )
    .unwrap();
    let mut detector = TestDetector::new(1, 16, 1 << 40);
    detector.frames_per_poll = 300;
    detector.set_roi(Some([2, 9]));
    let clock = || 0u64;
    let mut engine = Acquisition::new(detector, clock, 256).unwrap();
    engine
        .configure(&AcqParams {
            n_frames: FRAMES,
            exposure_ticks: 1,
            gap: GapMode::Ns25,
            trigger: TriggerMode::Internal,
            debounce_ticks: 0,
            invert_f0: false,
            invert_veto: false,
        })
        .unwrap();
    engine.arm().unwrap();
    let (mut producer, [mut writer, mut monitor]) = ring.split().unwrap();
    let start = Barrier::new(3);

    let (written, monitored, allocations) = std::thread::scope(|s| {
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
                    assert_eq!(grant.rois()[i], roi_sum(expected, 0, [2, 9]));
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
        CountingAllocator::arm();
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
        (written, monitored, CountingAllocator::disarm())
    });

    assert_eq!(allocations, 0, "heap allocations in the hot path");
    assert_eq!(written, FRAMES);
    assert_eq!(engine.stats().frames_read, FRAMES);
    let stats = ring.stats();
    assert_eq!(stats.consumers[1].delivered, monitored);
    assert_eq!(
        stats.consumers[1].delivered + stats.consumers[1].dropped,
        FRAMES
    );
}
