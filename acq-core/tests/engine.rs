//! The acquisition engine against the in-memory test detector: every state transition, lost-frame
//! ranges, ring-full behaviour and detector faults.

use acq_core::detector::{AcqParams, GapMode, TriggerMode};
use acq_core::engine::{
    Acquisition, Action, EngineError, EngineState, LostRange, StepOutcome, MAX_LOST_RANGES,
};
use acq_core::geometry::{FrameMeta, Geometry};
use acq_core::ring::{Consumer, FrameRing, Policy, Producer, RingConfig, SlotBuffers};
use acq_core::testing::{mca_word, roi_sum, scaler_word, Call, InjectedFault, TestDetector};
use acq_core::wait::BusyWait;

const NCH: u32 = 2;
const NBINS: u32 = 8;

fn params(n_frames: u64, trigger: TriggerMode) -> AcqParams {
    AcqParams {
        n_frames,
        exposure_ticks: 80_000,
        gap: GapMode::Ns25,
        trigger,
        debounce_ticks: 0,
        invert_f0: false,
        invert_veto: false,
    }
}

fn ring(b: &mut SlotBuffers, slots: usize, batch: usize) -> FrameRing<'_, BusyWait, 1> {
    FrameRing::new(
        Geometry::new(NCH, NBINS).unwrap(),
        RingConfig { slots, batch },
        [Policy::Lossless],
        b.memory(),
        BusyWait,
    )
    .unwrap()
}

type Engine = Acquisition<TestDetector, fn() -> u64>;

fn clock() -> u64 {
    1_700_000_000_000_000_000
}

fn engine(buffer_frames: u64, batch: usize) -> Engine {
    Acquisition::new(
        TestDetector::new(NCH, NBINS, buffer_frames),
        clock as fn() -> u64,
        batch,
    )
    .unwrap()
}

/// Drains the consumer, checking every frame's content; returns the frame numbers seen.
fn drain(consumer: &mut Consumer<'_, '_, BusyWait, 1>, seen: &mut Vec<FrameMeta>) {
    while let Some(grant) = consumer.read(64) {
        let n = grant.len();
        let mw = (NCH * NBINS) as usize;
        for (i, meta) in grant.meta().iter().enumerate() {
            let f = meta.frame_number;
            let mca = &grant.mca()[i * mw..(i + 1) * mw];
            for (k, &w) in mca.iter().enumerate() {
                let (chan, bin) = (k as u32 / NBINS, k as u32 % NBINS);
                assert_eq!(w, mca_word(f, chan, bin), "frame {f} chan {chan} bin {bin}");
            }
            let sc = &grant.scalers()[i * 9 * NCH as usize..(i + 1) * 9 * NCH as usize];
            for (k, &w) in sc.iter().enumerate() {
                assert_eq!(w, scaler_word(f, k as u32 / 9, k as u32 % 9));
            }
            assert_eq!(meta.timestamp_ns, clock());
            seen.push(*meta);
        }
        grant.release(n);
    }
}

fn run_to_done(
    engine: &mut Engine,
    producer: &mut Producer<'_, '_, BusyWait, 1>,
    consumer: &mut Consumer<'_, '_, BusyWait, 1>,
    seen: &mut Vec<FrameMeta>,
) {
    for _ in 0..100_000 {
        let outcome = engine.step(producer).unwrap();
        drain(consumer, seen);
        if outcome == StepOutcome::Done {
            return;
        }
    }
    panic!("acquisition did not finish: {:?}", engine.stats());
}

/// Completes one frame at a time and steps until the engine has nothing to do, so the detector
/// never outruns the reader.
fn run_paced(
    engine: &mut Engine,
    producer: &mut Producer<'_, '_, BusyWait, 1>,
    consumer: &mut Consumer<'_, '_, BusyWait, 1>,
    seen: &mut Vec<FrameMeta>,
) {
    engine.detector_mut().frames_per_poll = 0;
    for _ in 0..100_000 {
        loop {
            let outcome = engine.step(producer).unwrap();
            drain(consumer, seen);
            match outcome {
                StepOutcome::Done => return,
                StepOutcome::Idle => break,
                _ => {}
            }
        }
        engine.detector_mut().complete(1);
    }
    panic!("acquisition did not finish: {:?}", engine.stats());
}

#[test]
fn a_clean_acquisition_delivers_every_frame_once_in_order() {
    let mut b = SlotBuffers::new(Geometry::new(NCH, NBINS).unwrap(), 64);
    let ring = ring(&mut b, 64, 16);
    let (mut producer, [mut consumer]) = ring.split().unwrap();
    // Two polls per step complete 6 frames; a step reads up to 16: the engine keeps up.
    let mut e = engine(64, 16);
    e.detector_mut().frames_per_poll = 3;
    assert_eq!(e.state(), EngineState::Idle);
    e.configure(&params(100, TriggerMode::Internal)).unwrap();
    assert_eq!(e.state(), EngineState::Configured);
    e.arm().unwrap();
    assert_eq!(e.state(), EngineState::Armed);
    let mut seen = Vec::new();
    assert!(matches!(
        e.step(&mut producer).unwrap(),
        StepOutcome::Moved(3)
    ));
    assert_eq!(e.state(), EngineState::Running);
    run_to_done(&mut e, &mut producer, &mut consumer, &mut seen);
    assert_eq!(e.state(), EngineState::Done);
    let numbers: Vec<u64> = seen.iter().map(|m| m.frame_number).collect();
    assert_eq!(numbers, (0..100).collect::<Vec<_>>());
    assert!(seen.iter().all(|m| m.flags & FrameMeta::LOST_BEFORE == 0));
    assert_eq!(seen[99].flags & FrameMeta::LAST, FrameMeta::LAST);
    assert_eq!(
        seen.iter()
            .filter(|m| m.flags & FrameMeta::LAST != 0)
            .count(),
        1
    );
    let stats = e.stats();
    assert_eq!((stats.frames_read, stats.frames_lost), (100, 0));
    assert_eq!(e.detector().frames_released(), 100);
    // Done is sticky and re-arming starts over.
    assert_eq!(e.step(&mut producer).unwrap(), StepOutcome::Done);
    e.arm().unwrap();
    assert_eq!(e.stats().frames_read, 0);
}

fn invalid<T>(from: EngineState, action: Action) -> Result<T, EngineError> {
    Err(EngineError::InvalidTransition { from, action })
}

#[test]
fn invalid_transitions_are_errors() {
    let mut b = SlotBuffers::new(Geometry::new(NCH, NBINS).unwrap(), 8);
    let ring = ring(&mut b, 8, 4);
    let (mut producer, _consumers) = ring.split().unwrap();
    let mut e = engine(64, 4);
    assert_eq!(e.arm(), invalid(EngineState::Idle, Action::Arm));
    assert_eq!(
        e.step(&mut producer),
        invalid(EngineState::Idle, Action::Step)
    );
    e.configure(&params(10, TriggerMode::Internal)).unwrap();
    assert_eq!(
        e.step(&mut producer),
        invalid(EngineState::Configured, Action::Step)
    );
    assert_eq!(
        e.soft_trigger(),
        invalid(EngineState::Configured, Action::SoftTrigger)
    );
    e.arm().unwrap();
    assert_eq!(e.arm(), invalid(EngineState::Armed, Action::Arm));
    assert_eq!(
        e.soft_trigger(),
        invalid(EngineState::Armed, Action::SoftTrigger)
    );
    assert_eq!(
        e.configure(&params(5, TriggerMode::Internal)),
        invalid(EngineState::Armed, Action::Configure)
    );
    // Stop is harmless anywhere.
    e.stop().unwrap();
    e.stop().unwrap();
}

#[test]
fn software_triggers_make_one_frame_each() {
    let mut b = SlotBuffers::new(Geometry::new(NCH, NBINS).unwrap(), 8);
    let ring = ring(&mut b, 8, 4);
    let (mut producer, [mut consumer]) = ring.split().unwrap();
    let mut e = engine(64, 4);
    e.configure(&params(3, TriggerMode::Software)).unwrap();
    e.arm().unwrap();
    assert_eq!(e.step(&mut producer).unwrap(), StepOutcome::Idle);
    let mut seen = Vec::new();
    for i in 1..=3u64 {
        e.soft_trigger().unwrap();
        assert_eq!(e.step(&mut producer).unwrap(), StepOutcome::Moved(1));
        drain(&mut consumer, &mut seen);
        assert_eq!(seen.len() as u64, i);
    }
    assert_eq!(e.step(&mut producer).unwrap(), StepOutcome::Done);
}

#[test]
fn roi_sums_travel_with_their_frames_even_when_torn_frames_are_dropped() {
    let g = Geometry::new(NCH, NBINS).unwrap().with_rois(1).unwrap();
    let mut b = SlotBuffers::new(g, 64);
    let ring = FrameRing::new(
        g,
        RingConfig {
            slots: 64,
            batch: 4,
        },
        [Policy::Lossless],
        b.memory(),
        BusyWait,
    )
    .unwrap();
    let (mut producer, [mut consumer]) = ring.split().unwrap();
    let mut e = engine(8, 4);
    // The engine's frames carry the ROIs the detector sums, so it takes the ring's geometry
    // only with the ROI.
    assert_eq!(e.geometry().n_rois(), 0);
    e.detector_mut().set_roi(Some([2, 5]));
    e.configure(&params(60, TriggerMode::Internal)).unwrap();
    assert_eq!(e.geometry(), g);
    e.arm().unwrap();
    // Three frames per poll against reads of four: the engine falls behind, and frames the
    // detector overwrites during a read are dropped from its front.
    e.detector_mut().frames_per_poll = 3;
    let mut delivered = 0u64;
    for _ in 0..10_000 {
        let outcome = e.step(&mut producer).unwrap();
        while let Some(grant) = consumer.read(64) {
            let n = grant.len();
            assert_eq!(grant.rois().len(), n * NCH as usize);
            for (i, meta) in grant.meta().iter().enumerate() {
                for chan in 0..NCH {
                    assert_eq!(
                        grant.rois()[i * NCH as usize + chan as usize],
                        roi_sum(meta.frame_number, chan, [2, 5]),
                        "frame {} chan {chan}",
                        meta.frame_number
                    );
                }
            }
            delivered += n as u64;
            grant.release(n);
        }
        if outcome == StepOutcome::Done {
            break;
        }
    }
    let stats = e.stats();
    assert!(stats.frames_lost > 0, "{stats:?}");
    assert_eq!(delivered, stats.frames_read);
    assert_eq!(delivered + stats.frames_lost, 60);
}

#[test]
fn overwritten_frames_become_lost_ranges_and_flag_the_next_frame() {
    let mut b = SlotBuffers::new(Geometry::new(NCH, NBINS).unwrap(), 64);
    let ring = ring(&mut b, 64, 4);
    let (mut producer, [mut consumer]) = ring.split().unwrap();
    let mut e = engine(8, 4);
    e.configure(&params(40, TriggerMode::Internal)).unwrap();
    e.arm().unwrap();
    e.detector_mut().complete(20);
    assert_eq!(e.step(&mut producer).unwrap(), StepOutcome::Lost(12));
    let mut seen = Vec::new();
    run_paced(&mut e, &mut producer, &mut consumer, &mut seen);
    let stats = e.stats();
    assert_eq!(stats.frames_lost, 12);
    assert_eq!(stats.frames_read, 28);
    assert_eq!(
        stats.lost_ranges.as_slice(),
        &[LostRange {
            first: 0,
            count: 12
        }]
    );
    assert!(stats.sdk_overruns > 0);
    assert_eq!(seen[0].frame_number, 12);
    assert_eq!(
        seen[0].flags & FrameMeta::LOST_BEFORE,
        FrameMeta::LOST_BEFORE
    );
    assert!(seen[1..]
        .iter()
        .all(|m| m.flags & FrameMeta::LOST_BEFORE == 0));
    assert_eq!(seen.len() as u64 + stats.frames_lost, 40);
}

#[test]
fn a_full_ring_stops_reading_and_the_sdk_buffer_absorbs_it() {
    let mut b = SlotBuffers::new(Geometry::new(NCH, NBINS).unwrap(), 4);
    let ring = ring(&mut b, 4, 2);
    let (mut producer, [mut consumer]) = ring.split().unwrap();
    let mut e = engine(6, 2);
    e.configure(&params(30, TriggerMode::Internal)).unwrap();
    e.arm().unwrap();
    e.detector_mut().complete(5);
    assert_eq!(e.step(&mut producer).unwrap(), StepOutcome::Moved(2));
    assert_eq!(e.step(&mut producer).unwrap(), StepOutcome::Moved(2));
    assert_eq!(e.step(&mut producer).unwrap(), StepOutcome::RingFull);
    assert_eq!(e.step(&mut producer).unwrap(), StepOutcome::RingFull);
    assert_eq!(e.stats().ring_full_steps, 2);
    assert_eq!(ring.stats().full_events, 1);
    assert_eq!(
        e.stats().frames_lost,
        0,
        "the SDK buffer still holds frame 4"
    );
    // The SDK runs on while the ring is full: frames 4..=5 are overwritten.
    e.detector_mut().complete(7);
    assert_eq!(e.step(&mut producer).unwrap(), StepOutcome::Lost(2));
    let mut seen = Vec::new();
    drain(&mut consumer, &mut seen);
    run_paced(&mut e, &mut producer, &mut consumer, &mut seen);
    assert_eq!(
        e.stats().lost_ranges.as_slice(),
        &[LostRange { first: 4, count: 2 }]
    );
    assert_eq!(seen.len(), 28);
    assert_eq!(seen[4].frame_number, 6);
    assert_eq!(
        seen[4].flags & FrameMeta::LOST_BEFORE,
        FrameMeta::LOST_BEFORE
    );
}

#[test]
fn lost_ranges_beyond_capacity_are_still_counted() {
    let mut b = SlotBuffers::new(Geometry::new(NCH, NBINS).unwrap(), 4);
    let ring = ring(&mut b, 4, 1);
    let (mut producer, [mut consumer]) = ring.split().unwrap();
    let mut e = engine(1, 1);
    e.configure(&params(0, TriggerMode::Internal)).unwrap();
    e.arm().unwrap();
    let mut seen = Vec::new();
    // Each round: 2 frames complete, the older one is overwritten (buffer of 1), one is read.
    for _ in 0..MAX_LOST_RANGES + 10 {
        e.detector_mut().complete(2);
        assert_eq!(e.step(&mut producer).unwrap(), StepOutcome::Lost(1));
        assert_eq!(e.step(&mut producer).unwrap(), StepOutcome::Moved(1));
        drain(&mut consumer, &mut seen);
    }
    let stats = e.stats();
    assert_eq!(stats.lost_ranges.len(), MAX_LOST_RANGES);
    assert_eq!(stats.lost_ranges_overflow, 10);
    assert_eq!(stats.frames_lost, MAX_LOST_RANGES as u64 + 10);
    // Unbounded acquisition: stop, drain, done.
    e.stop().unwrap();
    assert_eq!(e.step(&mut producer).unwrap(), StepOutcome::Done);
}

#[test]
fn detector_faults_stop_the_acquisition_with_code_and_message() {
    for call in [Call::Poll, Call::ReadMca, Call::ReadScalers, Call::Release] {
        let mut b = SlotBuffers::new(Geometry::new(NCH, NBINS).unwrap(), 8);
        let ring = ring(&mut b, 8, 4);
        let (mut producer, _c) = ring.split().unwrap();
        let mut e = engine(64, 4);
        e.detector_mut().frames_per_poll = 1;
        e.detector_mut().inject(InjectedFault {
            call,
            nth: 0,
            code: -1,
        });
        e.configure(&params(10, TriggerMode::Internal)).unwrap();
        e.arm().unwrap();
        let err = e.step(&mut producer).unwrap_err();
        assert!(
            matches!(err, EngineError::Detector { code: -1, .. }),
            "{call:?}: {err:?}"
        );
        assert_eq!(e.state(), EngineState::Fault);
        let fault = e.fault().unwrap();
        assert_eq!(fault.message.as_str(), "injected fault");
        assert_eq!(fault.name.as_str(), "XSP3_ERROR");
        assert_eq!(e.step(&mut producer), Err(EngineError::Faulted));
        // Nothing is published: frames are released before they are published, and a fault
        // leaves them to the salvage, which reads them again.
        assert_eq!(ring.stats().committed, 0, "{call:?}");
        // Configure is the way out of Fault.
        e.configure(&params(10, TriggerMode::Internal)).unwrap();
        assert!(e.fault().is_none());
    }
}

#[test]
fn configure_and_arm_failures_fault() {
    let mut e = engine(64, 4);
    let mut bad = params(10, TriggerMode::Internal);
    bad.exposure_ticks = 0;
    assert!(matches!(
        e.configure(&bad),
        Err(EngineError::Detector {
            operation: "configure",
            code: -6
        })
    ));
    assert_eq!(e.fault().unwrap().name.as_str(), "XSP3_RANGE_CHECK");
    e.detector_mut().inject(InjectedFault {
        call: Call::Arm,
        nth: 0,
        code: -9,
    });
    e.configure(&params(10, TriggerMode::Internal)).unwrap();
    assert!(matches!(
        e.arm(),
        Err(EngineError::Detector {
            operation: "arm",
            code: -9
        })
    ));
    assert_eq!(e.state(), EngineState::Fault);
}

#[test]
fn a_ring_of_another_geometry_is_refused() {
    let g = Geometry::new(1, NBINS).unwrap();
    let mut b = SlotBuffers::new(g, 4);
    let ring = FrameRing::new(
        g,
        RingConfig { slots: 4, batch: 1 },
        [Policy::Lossless],
        b.memory(),
        BusyWait,
    )
    .unwrap();
    let (mut producer, _c) = ring.split().unwrap();
    let mut e = engine(64, 4);
    e.configure(&params(10, TriggerMode::Internal)).unwrap();
    e.arm().unwrap();
    assert!(matches!(
        e.step(&mut producer),
        Err(EngineError::RingGeometry { .. })
    ));
}

#[test]
fn frames_completed_before_a_fault_are_salvaged_and_nothing_more() {
    let mut b = SlotBuffers::new(Geometry::new(NCH, NBINS).unwrap(), 64);
    let ring = ring(&mut b, 64, 4);
    let (mut producer, [mut consumer]) = ring.split().unwrap();
    let mut e = engine(1024, 4);
    // Each poll completes 7 frames, more than one read of 4 takes: a backlog builds up.
    e.detector_mut().frames_per_poll = 7;
    e.detector_mut().inject(InjectedFault {
        call: Call::Poll,
        nth: 6,
        code: -1,
    });
    e.configure(&params(100, TriggerMode::Internal)).unwrap();
    e.arm().unwrap();
    let mut seen = Vec::new();
    let err = loop {
        match e.step(&mut producer) {
            Ok(_) => drain(&mut consumer, &mut seen),
            Err(err) => break err,
        }
    };
    assert!(matches!(err, EngineError::Detector { code: -1, .. }));
    let before_salvage = e.stats().frames_read;
    let completed = e.stats().frames_complete;
    assert!(
        before_salvage < completed,
        "a backlog was left at the fault"
    );
    loop {
        match e.salvage(&mut producer).unwrap() {
            StepOutcome::Moved(_) => drain(&mut consumer, &mut seen),
            StepOutcome::RingFull => drain(&mut consumer, &mut seen),
            StepOutcome::Done => break,
            other => panic!("{other:?}"),
        }
    }
    drain(&mut consumer, &mut seen);
    let frames: Vec<u64> = seen.iter().map(|m| m.frame_number).collect();
    assert_eq!(frames, (0..completed).collect::<Vec<_>>());
    assert_eq!(e.next_frame(), completed);
    assert_eq!(e.stats().frames_lost, 0);
    assert_eq!(e.state(), EngineState::Fault);
    assert_eq!(e.step(&mut producer), Err(EngineError::Faulted));
    assert_eq!(e.salvage(&mut producer), Ok(StepOutcome::Done));
}

/// Steps `engine` `steps` times while the detector outruns the copy: frames complete only while
/// the engine reads, `per_frame` for each frame read (after `head_start` frames).
fn outrun(
    engine: &mut Engine,
    producer: &mut Producer<'_, '_, BusyWait, 1>,
    consumer: &mut Consumer<'_, '_, BusyWait, 1>,
    seen: &mut Vec<FrameMeta>,
    steps: usize,
    per_frame: u64,
) {
    engine.detector_mut().frames_per_poll = 0;
    engine.detector_mut().frames_per_read_frame = per_frame;
    engine.detector_mut().complete(300);
    for _ in 0..steps {
        engine.step(producer).unwrap();
        drain(consumer, seen);
    }
    engine.detector_mut().frames_per_read_frame = 0;
}

/// The detector outruns the copy (it completes two frames for every frame read), then slows
/// down: the engine keeps the newest part of its batches meanwhile, catches up afterwards, and
/// its lost ranges are exactly the frames the detector overwrote before they were released.
#[test]
fn lost_ranges_are_exactly_the_frames_the_detector_overwrote_while_outrun() {
    let total = 20_000u64;
    let mut b = SlotBuffers::new(Geometry::new(NCH, NBINS).unwrap(), 512);
    let ring = ring(&mut b, 512, 64);
    let (mut producer, [mut consumer]) = ring.split().unwrap();
    let mut e = engine(256, 64);
    e.configure(&params(total, TriggerMode::Internal)).unwrap();
    e.arm().unwrap();
    let mut seen = Vec::new();
    outrun(&mut e, &mut producer, &mut consumer, &mut seen, 60, 2);
    let during = e.stats().clone();
    assert!(during.frames_lost > 0, "outrun: {during:?}");
    assert!(
        during.frames_read > 0,
        "an outrun engine still keeps the newest part of its batches: {during:?}"
    );
    let complete_at_slowdown = during.frames_complete;
    assert!(complete_at_slowdown < total / 2);
    // The detector slows down: the engine catches up and loses nothing it completes from now.
    run_paced(&mut e, &mut producer, &mut consumer, &mut seen);
    let stats = e.stats();
    assert_eq!(stats.lost_ranges_overflow, 0);
    assert_eq!(
        stats.lost_ranges.as_slice(),
        e.detector().overwritten(),
        "lost = overwritten before release"
    );
    assert_eq!(stats.frames_lost, stats.sdk_overruns);
    let last_lost = stats.lost_ranges.iter().map(|r| r.first + r.count).max();
    assert!(
        last_lost.is_some_and(|f| f <= complete_at_slowdown),
        "{stats:?}"
    );
    assert_eq!(seen.len() as u64 + stats.frames_lost, total);
    let lost = |f: u64| {
        stats
            .lost_ranges
            .iter()
            .any(|r| r.first <= f && f < r.first + r.count)
    };
    assert!(seen
        .windows(2)
        .all(|w| w[0].frame_number < w[1].frame_number));
    assert!(seen.iter().all(|m| !lost(m.frame_number)));
}

/// When the detector stops it stops overwriting: whatever is still in its buffer is read, and
/// no frame is given up as lost on a guess that the detector would overwrite it. The stop comes
/// after each of a range of steps, so some land right after the engine found a whole batch
/// overwritten during its copy.
#[test]
fn an_outrun_engine_reads_everything_left_when_the_detector_stops() {
    for stop_after in 20..40 {
        let mut b = SlotBuffers::new(Geometry::new(NCH, NBINS).unwrap(), 512);
        let ring = ring(&mut b, 512, 64);
        let (mut producer, [mut consumer]) = ring.split().unwrap();
        let mut e = engine(256, 64);
        e.configure(&params(0, TriggerMode::Internal)).unwrap();
        e.arm().unwrap();
        let mut seen = Vec::new();
        outrun(
            &mut e,
            &mut producer,
            &mut consumer,
            &mut seen,
            stop_after,
            3,
        );
        e.stop().unwrap();
        run_to_done(&mut e, &mut producer, &mut consumer, &mut seen);
        let stats = e.stats();
        let total = stats.frames_complete;
        assert!(stats.frames_lost > 0, "{stats:?}");
        assert_eq!(stats.lost_ranges_overflow, 0);
        assert_eq!(
            stats.lost_ranges.as_slice(),
            e.detector().overwritten(),
            "stopped after {stop_after} steps"
        );
        assert_eq!(seen.len() as u64 + stats.frames_lost, total);
        // The last buffer's worth of frames was never overwritten, so all of it is read.
        let tail: Vec<u64> = seen
            .iter()
            .rev()
            .take(256)
            .map(|m| m.frame_number)
            .collect();
        assert_eq!(tail, (total - 256..total).rev().collect::<Vec<_>>());
    }
}
