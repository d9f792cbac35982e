//! acq-core's engine driven by the simulated SDK through the shim: 100,000 frames at the
//! simulator's full speed, zero frames lost, zero heap allocations after arm (a counting global
//! allocator; the C side is covered by c/tests/x3s_test.c). One test in this file, so nothing
//! else allocates while the counter is armed.

use std::sync::Barrier;
use std::time::Instant;

use acq_core::detector::{AcqParams, Detector, GapMode, TriggerMode};
use acq_core::engine::{Acquisition, EngineState, StepOutcome};
use acq_core::geometry::{FrameMeta, Geometry};
use acq_core::ring::{FrameRing, Policy, RingConfig, SlotBuffers};
use acq_core::testing::CountingAllocator;
use acq_core::wait::ParkWait;
use sdk_shim::{FrameSettings, OpenParams, SimContent, Xspress3};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const FRAMES: u64 = 100_000;
const NCH: u32 = 4;
const BINS: usize = 4096;
const EXPOSURE: u32 = 8_000;

#[test]
fn the_engine_moves_100k_simulated_frames_losslessly_without_allocating() {
    assert_eq!(CountingAllocator::self_test(), 1, "the instrument counts");

    let mut params = OpenParams {
        num_tf: 4096,
        ..OpenParams::default()
    };
    params.sim.n_channels = NCH;
    params.sim.content = SimContent::Pattern;
    params.sim.full_speed = true;
    params.sim.seed = 5;
    let sim = params.sim.clone();
    let detector = Xspress3::open(&params).unwrap();
    assert_eq!(detector.info().n_channels, NCH);

    let geometry = Geometry::new(NCH, BINS as u32).unwrap();
    let slots = 1024;
    let batch = 64;
    let mut buffers = SlotBuffers::new(geometry, slots);
    let ring = FrameRing::new(
        geometry,
        RingConfig { slots, batch },
        [Policy::Lossless],
        buffers.memory(),
        ParkWait::new(),
    )
    .unwrap();
    let t0 = Instant::now();
    let clock = move || t0.elapsed().as_nanos() as u64;
    let mut engine = Acquisition::new(detector, clock, batch).unwrap();
    engine
        .configure(&AcqParams {
            n_frames: FRAMES,
            exposure_ticks: EXPOSURE,
            gap: GapMode::Ns25,
            trigger: TriggerMode::Internal,
            debounce_ticks: 0,
            invert_f0: false,
            invert_veto: false,
        })
        .unwrap();
    // Expected scalers: the simulator's formula, computed before counting starts.
    let mut expected_mca = vec![0u32; NCH as usize * BINS];
    let mut expected_sc = vec![0u32; NCH as usize * 9];
    let settings = FrameSettings {
        n_channels: NCH,
        exposure_ticks: EXPOSURE,
        windows: None,
        good_thres: None,
    };
    let (mut producer, [mut writer]) = ring.split().unwrap();
    let start = Barrier::new(2);

    let received = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            start.wait();
            let mut expected = 0u64;
            while writer.wait_available(1) > 0 {
                let Some(grant) = writer.read(batch) else {
                    continue;
                };
                for (i, m) in grant.meta().iter().enumerate() {
                    assert_eq!(m.frame_number, expected);
                    assert_eq!(
                        m.flags & (FrameMeta::LOST_BEFORE | FrameMeta::SDK_OVERRUN),
                        0
                    );
                    let frame =
                        &grant.mca()[i * NCH as usize * BINS..(i + 1) * NCH as usize * BINS];
                    let sc = &grant.scalers()[i * NCH as usize * 9..(i + 1) * NCH as usize * 9];
                    // Every frame: the pattern (frame + 3 chan + bin) mod 256 at a few places.
                    for (c, b) in [(0usize, 0usize), (1, 17), (3, 4095)] {
                        let want = ((expected + 3 * c as u64 + b as u64) % 256) as u32;
                        assert_eq!(frame[c * BINS + b], want, "frame {expected}");
                    }
                    assert_eq!((sc[0], sc[8]), (EXPOSURE, EXPOSURE));
                    // Every 997th frame: all bytes against the formula (no allocation: C, stack).
                    if expected % 997 == 0 {
                        sim.expected_frame(
                            &settings,
                            expected,
                            Some(&mut expected_mca),
                            Some(&mut expected_sc),
                        )
                        .unwrap();
                        assert!(frame == &expected_mca[..], "MCA of frame {expected}");
                        assert!(sc == &expected_sc[..], "scalers of frame {expected}");
                    }
                    expected += 1;
                }
                let n = grant.len();
                grant.release(n);
            }
            expected
        });
        start.wait();
        // Counting starts once the consumer thread runs (spawning it allocates) and covers arm,
        // every step, the end of the acquisition and the join.
        CountingAllocator::arm();
        engine.arm().unwrap();
        loop {
            match engine.step(&mut producer).unwrap() {
                StepOutcome::Done => break,
                StepOutcome::RingFull => producer.wait_for_room(),
                StepOutcome::Lost(n) => panic!("{n} frames lost"),
                _ => {}
            }
        }
        producer.close();
        writer.join().unwrap()
    });
    assert_eq!(CountingAllocator::disarm(), 0, "heap allocations after arm");
    assert_eq!(received, FRAMES);
    assert_eq!(engine.state(), EngineState::Done);
    let stats = engine.stats();
    assert_eq!(stats.frames_read, FRAMES);
    assert_eq!(
        (stats.frames_lost, stats.sdk_overruns, stats.sdk_err_flags),
        (0, 0, 0)
    );
    assert_eq!(ring.stats().consumers[0].dropped, 0);
    let mut det = engine.into_detector();
    let p = det.poll_details().unwrap();
    assert_eq!((p.frames_complete, p.overrun_count), (FRAMES, 0));
}
