//! Runs an acquisition of 1000 frames through the engine and a ring over static storage, with a
//! lossless and a lossy consumer, on a single core without std or alloc.
#![no_std]

use acq_core::detector::{AcqParams, GapMode, TriggerMode};
use acq_core::engine::{Acquisition, StepOutcome};
use acq_core::geometry::Geometry;
use acq_core::ring::{FrameRing, Policy, RingConfig, StaticFrameStorage};
use acq_core::testing::{mca_word, TestDetector};
use acq_core::wait::BusyWait;

const SLOTS: usize = 64;
const CHANNELS: usize = 2;
const BINS: usize = 32;
const FRAMES: u64 = 1000;

static STORAGE: StaticFrameStorage<SLOTS, { SLOTS * CHANNELS * BINS }, { SLOTS * CHANNELS * 9 }> =
    StaticFrameStorage::new();

/// Returns 0 when every frame arrived intact at the lossless consumer and the lossy consumer's
/// counts add up, or a non-zero code saying what failed.
#[no_mangle]
pub extern "C" fn acq_core_no_std_selftest() -> u32 {
    let Some(memory) = STORAGE.take() else {
        return 1;
    };
    let Ok(geometry) = Geometry::new(CHANNELS as u32, BINS as u32) else {
        return 2;
    };
    let config = RingConfig { slots: SLOTS, batch: 16 };
    let policies = [Policy::Lossless, Policy::Lossy];
    let Ok(ring) = FrameRing::new(geometry, config, policies, memory, BusyWait) else {
        return 3;
    };
    let Ok((mut producer, [mut writer, mut monitor])) = ring.split() else {
        return 4;
    };
    let mut detector = TestDetector::new(CHANNELS as u32, BINS as u32, 1 << 20);
    detector.frames_per_poll = 5;
    let Ok(mut engine) = Acquisition::new(detector, || 0u64, 16) else {
        return 5;
    };
    let params = AcqParams {
        n_frames: FRAMES,
        exposure_ticks: 8000,
        gap: GapMode::Ns25,
        trigger: TriggerMode::Internal,
        debounce_ticks: 0,
        invert_f0: false,
        invert_veto: false,
    };
    if engine.configure(&params).is_err() || engine.arm().is_err() {
        return 6;
    }
    let mut expected = 0u64;
    loop {
        let outcome = match engine.step(&mut producer) {
            Ok(outcome) => outcome,
            Err(_) => return 7,
        };
        while let Some(grant) = writer.read(16) {
            for (i, meta) in grant.meta().iter().enumerate() {
                if meta.frame_number != expected
                    || grant.mca()[i * CHANNELS * BINS + BINS + 1] != mca_word(expected, 1, 1)
                {
                    return 8;
                }
                expected += 1;
            }
            let n = grant.len();
            grant.release(n);
        }
        monitor.skip_to_latest(1);
        if let Some(grant) = monitor.read(1) {
            grant.release(1);
        }
        if outcome == StepOutcome::Done {
            break;
        }
    }
    let lossy = ring.stats().consumers[1];
    if expected != FRAMES || lossy.delivered + lossy.dropped != FRAMES {
        return 9;
    }
    0
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
