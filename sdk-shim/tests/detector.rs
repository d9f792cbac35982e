//! The safe Xspress3 detector over the shim and the simulated SDK, through the Rust API.

mod common;

use acq_core::detector::{Detector, DetectorError, DetectorState, ErrorClass, TriggerMode};
use common::*;
use sdk_shim::{codes, FrameSettings, OpenParams, SimContent, Xspress3};

const ALL_MODES: [TriggerMode; 6] = [
    TriggerMode::Internal,
    TriggerMode::Software,
    TriggerMode::SoftwareFirst,
    TriggerMode::External,
    TriggerMode::ExternalFirst,
    TriggerMode::Gate,
];

/// Checks every frame of `mca`/`sc` (frames `[first, first + n)`) against the simulator's formula.
fn assert_frames_match(
    det: &Xspress3,
    first: u64,
    n: usize,
    mca: &[u32],
    sc: &[u32],
    settings: &FrameSettings<'_>,
) {
    let nch = det.info().n_channels as usize;
    let mut emca = vec![0u32; nch * N_BINS];
    let mut esc = vec![0u32; nch * N_SCALERS];
    for i in 0..n {
        det.sim_params()
            .expected_frame(settings, first + i as u64, Some(&mut emca), Some(&mut esc))
            .unwrap();
        assert_eq!(
            &mca[i * nch * N_BINS..(i + 1) * nch * N_BINS],
            &emca[..],
            "MCA of frame {}",
            first + i as u64
        );
        assert_eq!(
            &sc[i * nch * N_SCALERS..(i + 1) * nch * N_SCALERS],
            &esc[..],
            "scalers of frame {}",
            first + i as u64
        );
    }
}

#[test]
fn every_trigger_mode_runs_the_full_cycle() {
    for mode in ALL_MODES {
        let mut p = sim_params(4, 64);
        p.sim.ext_trigger_hz = 5000.0;
        let mut det = Xspress3::open(&p).unwrap();
        assert!(det.is_simulated());
        let info = det.info().clone();
        assert_eq!((info.n_channels, info.n_bins, info.n_scalers), (4, 4096, 9));
        assert_eq!(info.buffer_frames, 64);
        assert_eq!(info.clock_hz, 80e6);
        assert_eq!(&info.event_widths[..], &[6, 7, 8, 9]);

        let n = 12u64;
        // In gate mode each gate is a frame of 1/ext_trigger_hz: 16000 ticks at 5 kHz.
        let exposure = if mode == TriggerMode::Gate {
            16_000
        } else {
            4_000
        };
        det.configure(&acq(mode, n, exposure)).unwrap();
        det.arm().unwrap();
        let p0 = det.poll().unwrap();
        assert!(
            matches!(
                p0.state,
                DetectorState::Armed | DetectorState::Running | DetectorState::Done
            ),
            "{mode:?}: {p0:?}"
        );
        match mode {
            TriggerMode::Software => {
                for k in 0..n {
                    assert_eq!(det.poll().unwrap().frames_complete, k, "{mode:?}");
                    det.soft_trigger().unwrap();
                }
            }
            TriggerMode::SoftwareFirst => {
                assert_eq!(det.poll().unwrap().frames_complete, 0);
                det.soft_trigger().unwrap();
            }
            _ => {}
        }
        let done = poll_until(&mut det, |p| p.frames_complete == n).unwrap();
        assert_eq!(done.state, DetectorState::Done, "{mode:?}");
        assert_eq!(done.overrun_count, 0);
        assert_eq!(done.err_flags, 0);

        let mut mca = vec![0u32; n as usize * 4 * N_BINS];
        let mut sc = vec![0u32; n as usize * 4 * N_SCALERS];
        det.read_mca(0, n as u32, &mut mca).unwrap();
        det.read_scalers(0, n as u32, &mut sc).unwrap();
        assert_frames_match(&det, 0, n as usize, &mca, &sc, &det.frame_settings());
        det.release(0, n as u32).unwrap();
        det.stop().unwrap();
        det.stop().unwrap(); // idempotent
        assert_eq!(
            det.poll().unwrap().frames_complete,
            n,
            "completed frames survive stop"
        );
        det.close().unwrap();
    }
}

#[test]
fn unbounded_acquisition_runs_until_stopped() {
    let mut det = Xspress3::open(&sim_params(2, 32)).unwrap();
    det.configure(&acq(TriggerMode::Internal, 0, 800)).unwrap();
    det.arm().unwrap();
    let mut next = 0u64;
    // Read and release as we go, across several wraps of the 32-frame buffer.
    while next < 200 {
        let p = poll_until(&mut det, |p| p.frames_complete > next).unwrap();
        assert_eq!(p.state, DetectorState::Running);
        let n = (p.frames_complete - next).min(16) as u32;
        let mut mca = vec![0u32; n as usize * 2 * N_BINS];
        let mut sc = vec![0u32; n as usize * 2 * N_SCALERS];
        match det.read_mca(next, n, &mut mca) {
            Ok(()) => {}
            // At 100 kHz this reader can fall behind; then it must be told, and skip ahead.
            Err(e) if e.class() == ErrorClass::Overrun => {
                next = det.poll().unwrap().frames_complete;
                continue;
            }
            Err(e) => panic!("{e}"),
        }
        if det.read_scalers(next, n, &mut sc).is_ok() {
            let _ = det.release(next, n);
        }
        next += u64::from(n);
    }
    det.stop().unwrap();
    let after = det.poll().unwrap();
    assert_eq!(after.state, DetectorState::Done);
    let again = det.poll().unwrap();
    assert_eq!(
        after.frames_complete, again.frames_complete,
        "nothing completes after stop"
    );
}

#[test]
fn circular_buffer_wraps_without_overrun_when_released() {
    let mut det = Xspress3::open(&sim_params(3, 8)).unwrap();
    det.set_window(None, 0, 600, 700).unwrap();
    det.configure(&acq(TriggerMode::Software, 30, 1_000))
        .unwrap();
    det.arm().unwrap();
    let mut mca = vec![0u32; 5 * 3 * N_BINS];
    let mut sc = vec![0u32; 5 * 3 * N_SCALERS];
    for batch in 0..6u64 {
        for _ in 0..5 {
            det.soft_trigger().unwrap();
        }
        let first = batch * 5;
        // Reads straddle the wrap of the 8-frame buffer (e.g. frames 5..10 = slots 5,6,7,0,1).
        det.read_mca(first, 5, &mut mca).unwrap();
        det.read_scalers(first, 5, &mut sc).unwrap();
        assert_frames_match(&det, first, 5, &mca, &sc, &det.frame_settings());
        det.release(first, 5).unwrap();
    }
    let p = det.poll_details().unwrap();
    assert_eq!(
        (
            p.frames_complete,
            p.overrun_count,
            p.first_overrun,
            p.err_flags
        ),
        (30, 0, None, 0)
    );
    assert_eq!(p.state, DetectorState::Done);
}

#[test]
fn reads_outside_completed_frames_are_rejected() {
    let mut det = Xspress3::open(&sim_params(2, 16)).unwrap();
    det.configure(&acq(TriggerMode::Software, 10, 1_000))
        .unwrap();
    det.arm().unwrap();
    for _ in 0..3 {
        det.soft_trigger().unwrap();
    }
    assert_eq!(det.poll().unwrap().frames_complete, 3);
    let mut buf = vec![0u32; 4 * 2 * N_BINS];
    let mut sbuf = vec![0u32; 4 * 2 * N_SCALERS];
    det.read_mca(0, 3, &mut buf).unwrap();
    for (first, n) in [(3u64, 1u32), (2, 2), (0, 4), (100, 1)] {
        let e = det.read_mca(first, n, &mut buf).unwrap_err();
        assert_eq!(
            (e.code(), e.name()),
            (codes::NOT_READY, "X3S_E_NOT_READY"),
            "[{first}, +{n})"
        );
        assert!(e.message().contains("not complete"), "{e}");
        assert_eq!(e.class(), ErrorClass::Fatal);
        let e = det.read_scalers(first, n, &mut sbuf).unwrap_err();
        assert_eq!(e.code(), codes::NOT_READY);
        let e = det.release(first, n).unwrap_err();
        assert_eq!(e.code(), codes::NOT_READY);
    }
    let e = det.read_mca(u64::MAX, 2, &mut buf).unwrap_err();
    assert_eq!(e.code(), codes::ARG);
    let e = det
        .read_mca(0, 17, &mut vec![0u32; 17 * 2 * N_BINS])
        .unwrap_err();
    assert_eq!(
        e.code(),
        codes::ARG,
        "more frames than the SDK buffer holds"
    );
    // A zero-frame read is a no-op.
    det.read_mca(0, 0, &mut []).unwrap();
}

#[test]
fn wrong_state_calls_give_x3s_e_state() {
    let mut det = Xspress3::open(&sim_params(2, 16)).unwrap();
    let mut buf = vec![0u32; 2 * N_BINS];
    let state = |r: Result<(), sdk_shim::X3sError>| {
        let e = r.unwrap_err();
        assert_eq!((e.code(), e.name()), (codes::STATE, "X3S_E_STATE"), "{e}");
        assert!(!e.message().is_empty());
    };
    // Nothing armed yet.
    state(det.arm());
    state(det.soft_trigger());
    state(det.read_mca(0, 1, &mut buf));
    state(det.read_scalers(0, 1, &mut buf));
    state(det.release(0, 1));
    let idle = det.poll().unwrap();
    assert_eq!((idle.state, idle.frames_complete), (DetectorState::Idle, 0));
    det.stop().unwrap(); // stop is idempotent, even when idle

    // Armed in a hardware mode: no settings changes, no second arm, no software trigger.
    det.configure(&acq(TriggerMode::External, 5, 1_000))
        .unwrap();
    det.arm().unwrap();
    state(det.arm());
    state(det.configure(&acq(TriggerMode::Internal, 5, 1_000)));
    state(det.set_window(Some(0), 0, 1, 2));
    state(det.set_good_threshold(None, 3));
    state(det.soft_trigger());
    det.stop().unwrap();
    // Stopped: settings and a new acquisition are allowed again.
    det.set_window(Some(1), 1, 10, 20).unwrap();
    det.configure(&acq(TriggerMode::Software, 1, 1_000))
        .unwrap();
    det.arm().unwrap();
    det.soft_trigger().unwrap();
    assert_eq!(det.poll().unwrap().state, DetectorState::Done);
}

#[test]
fn invalid_arguments_give_x3s_e_arg_or_range_check() {
    let mut det = Xspress3::open(&sim_params(2, 16)).unwrap();
    for (chan, win, lo, hi) in [
        (Some(2), 0, 0, 1),
        (Some(0), 2, 0, 1),
        (Some(0), 0, 5, 4),
        (None, 0, 0, 4096),
    ] {
        let e = det.set_window(chan, win, lo, hi).unwrap_err();
        assert_eq!(e.code(), codes::ARG, "{e}");
    }
    assert_eq!(
        det.set_good_threshold(Some(0), 4096).unwrap_err().code(),
        codes::ARG
    );
    let mut bad = acq(TriggerMode::Internal, 5, 0);
    assert_eq!(
        det.configure(&bad).unwrap_err().code(),
        codes::ARG,
        "zero exposure"
    );
    bad.exposure_ticks = 10;
    bad.n_frames = 1 << 40;
    let e = det.configure(&bad).unwrap_err();
    assert_eq!(e.code(), codes::ARG);
    assert!(e.message().contains("n_frames"), "{e}");
    // An SDK-level range check passes through with its XSP3 name and the SDK's message.
    let mut p = sim_params(2, 16);
    p.sim.n_channels = 300;
    let e = Xspress3::open(&p).unwrap_err();
    assert_eq!(
        (e.code(), e.name()),
        (codes::XSP3_RANGE_CHECK, "XSP3_RANGE_CHECK")
    );
    assert!(
        e.message().contains("xsp3_config") && e.message().contains("300"),
        "{e}"
    );
}

#[test]
fn undersized_buffers_give_x3s_e_bufsize() {
    let mut det = Xspress3::open(&sim_params(4, 16)).unwrap();
    det.configure(&acq(TriggerMode::Software, 4, 1_000))
        .unwrap();
    det.arm().unwrap();
    for _ in 0..4 {
        det.soft_trigger().unwrap();
    }
    let mut mca = vec![0u32; 4 * 4 * N_BINS - 1];
    let e = det.read_mca(0, 4, &mut mca).unwrap_err();
    assert_eq!((e.code(), e.name()), (codes::BUFSIZE, "X3S_E_BUFSIZE"));
    assert!(e.message().contains(&format!("{}", 4 * 4 * N_BINS)), "{e}");
    let mut sc = vec![0u32; 4 * 4 * N_SCALERS - 1];
    assert_eq!(
        det.read_scalers(0, 4, &mut sc).unwrap_err().code(),
        codes::BUFSIZE
    );
    // Exactly sized buffers work.
    det.read_mca(0, 3, &mut mca).unwrap();
    det.read_scalers(0, 3, &mut sc).unwrap();
}

#[test]
fn scalers_are_consistent_with_the_mca_frame_by_frame() {
    scalers_consistent(SimContent::Spectrum);
    // Pattern content computes its sums in closed form: they must match the spectra too.
    scalers_consistent(SimContent::Pattern);
}

fn scalers_consistent(content: SimContent) {
    let mut p = sim_params(4, 64);
    p.sim.content = content;
    p.sim.reset_rate_hz = 20_000;
    p.sim.pileup_ppm = 15_000;
    let mut det = Xspress3::open(&p).unwrap();
    let windows = [
        (600, 680, 790, 820),
        (0, 4095, 1150, 1250),
        (630, 650, 0, 99),
        (1000, 999 + 1, 700, 710),
    ];
    for (c, &(l0, h0, l1, h1)) in windows.iter().enumerate() {
        det.set_window(Some(c as u32), 0, l0, h0).unwrap();
        det.set_window(Some(c as u32), 1, l1, h1).unwrap();
        det.set_good_threshold(Some(c as u32), [0, 50, 500, 1000][c])
            .unwrap();
    }
    let exposure = 400_000; // 5 ms
    det.configure(&acq(TriggerMode::Software, 20, exposure))
        .unwrap();
    det.arm().unwrap();
    for _ in 0..20 {
        det.soft_trigger().unwrap();
    }
    let mut mca = vec![0u32; 20 * 4 * N_BINS];
    let mut sc = vec![0u32; 20 * 4 * N_SCALERS];
    det.read_mca(0, 20, &mut mca).unwrap();
    det.read_scalers(0, 20, &mut sc).unwrap();
    let sum =
        |m: &[u32], lo: usize, hi: usize| m[lo..=hi].iter().map(|&v| u64::from(v)).sum::<u64>();
    let mut distinct = std::collections::HashSet::new();
    for f in 0..20 {
        for c in 0..4 {
            let m = &mca[(f * 4 + c) * N_BINS..(f * 4 + c + 1) * N_BINS];
            let s = &sc[(f * 4 + c) * N_SCALERS..(f * 4 + c + 1) * N_SCALERS];
            let w = det.windows()[c];
            let thr = det.good_thresholds()[c] as usize;
            let total = sum(m, 0, 4095);
            assert!(total > 0);
            distinct.insert(total);
            assert_eq!(s[0], exposure, "Time");
            assert_eq!(s[8], exposure, "TotalTicks");
            assert_eq!(
                u64::from(s[5]),
                sum(m, w[0] as usize, w[1] as usize),
                "InWindow0 f{f} c{c}"
            );
            assert_eq!(
                u64::from(s[6]),
                sum(m, w[2] as usize, w[3] as usize),
                "InWindow1 f{f} c{c}"
            );
            assert_eq!(u64::from(s[4]), sum(m, thr, 4095), "AllGood f{f} c{c}");
            assert!(s[3] >= s[4], "AllEvent >= AllGood");
            assert_eq!(u64::from(s[7]), total * 15_000 / 1_000_000, "PileUp");
            assert_eq!(
                u64::from(s[3]),
                total + u64::from(s[7]),
                "AllEvent = events + pile-up"
            );
            let resets = u64::from(exposure) * 20_000 / 80_000_000;
            assert_eq!(
                (u64::from(s[2]), u64::from(s[1])),
                (resets, resets * 200),
                "resets"
            );
        }
    }
    if content == SimContent::Pattern {
        return;
    }
    assert!(
        distinct.len() > 40,
        "spectra differ from frame to frame and channel to channel"
    );
    // The spectrum has its peaks where the documented formula puts them: Fe K-alpha at bin 640.
    let ch0 = &mca[..N_BINS];
    let peak = (0..N_BINS).max_by_key(|&b| ch0[b]).unwrap();
    assert!((630..=650).contains(&peak), "peak at bin {peak}");
}

#[test]
fn the_same_seed_gives_identical_bytes() {
    let read = |seed: u64, content: SimContent| {
        let mut p = sim_params(4, 32);
        p.sim.seed = seed;
        p.sim.content = content;
        let mut det = Xspress3::open(&p).unwrap();
        det.configure(&acq(TriggerMode::Internal, 8, 800)).unwrap();
        det.arm().unwrap();
        poll_until(&mut det, |p| p.frames_complete == 8).unwrap();
        let mut mca = vec![0u32; 8 * 4 * N_BINS];
        let mut sc = vec![0u32; 8 * 4 * N_SCALERS];
        det.read_mca(0, 8, &mut mca).unwrap();
        det.read_scalers(0, 8, &mut sc).unwrap();
        (mca, sc)
    };
    let a = read(7, SimContent::Spectrum);
    let b = read(7, SimContent::Spectrum);
    assert!(a == b, "same seed, same bytes");
    let c = read(8, SimContent::Spectrum);
    assert!(a.0 != c.0, "another seed, other spectra");
    let pa = read(7, SimContent::Pattern);
    let pb = read(9, SimContent::Pattern);
    assert!(pa == pb, "the pattern does not depend on the seed");
    // Pattern: (frame + 3 chan + bin) mod 256.
    for (f, c, b) in [(0usize, 0usize, 0usize), (3, 2, 4095), (7, 3, 300)] {
        assert_eq!(
            pa.0[(f * 4 + c) * N_BINS + b] as usize,
            (f + 3 * c + b) % 256
        );
    }
}

#[test]
fn expected_frame_checks_its_buffers() {
    let sim = sdk_shim::SimParams::default();
    let settings = FrameSettings {
        n_channels: 2,
        exposure_ticks: 10,
        windows: None,
        good_thres: None,
    };
    let mut small = vec![0u32; 2 * N_BINS - 1];
    let e = sim
        .expected_frame(&settings, 0, Some(&mut small), None)
        .unwrap_err();
    assert_eq!(e.code(), codes::BUFSIZE);
    let zero = FrameSettings {
        n_channels: 0,
        ..settings
    };
    assert_eq!(
        sim.expected_frame(&zero, 0, None, None).unwrap_err().code(),
        codes::ARG
    );
    let mut sc = vec![0u32; 18];
    sim.expected_frame(&settings, 5, None, Some(&mut sc))
        .unwrap();
    assert_eq!((sc[0], sc[8], sc[9]), (10, 10, 10));
}

#[test]
fn an_overrun_is_reported_when_the_reader_stops_acknowledging() {
    let mut det = Xspress3::open(&sim_params(2, 16)).unwrap();
    det.configure(&acq(TriggerMode::Internal, 100, 800))
        .unwrap(); // 10 us frames
    det.arm().unwrap();
    let p = poll_until(&mut det, |p| p.frames_complete == 100).unwrap();
    // No frame was released: every reuse of a slot overwrote an unacknowledged frame.
    assert_eq!(p.overrun_count, 100 - 16);
    assert_ne!(p.err_flags & acq_core::detector::ERR_FLAG_CIRC_OVERRUN, 0);
    let d = det.poll_details().unwrap();
    assert_eq!(d.first_overrun, Some(0));
    let mut buf = vec![0u32; 2 * N_BINS];
    let e = det.read_mca(0, 1, &mut buf).unwrap_err();
    assert_eq!(
        (e.code(), e.name(), e.class()),
        (codes::OVERRUN, "X3S_E_OVERRUN", ErrorClass::Overrun)
    );
    assert!(e.message().contains("overwritten"), "{e}");
    let e = det.read_scalers(83, 1, &mut buf).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Overrun);
    // The last 16 frames are still in the buffer and correct.
    let mut mca = vec![0u32; 16 * 2 * N_BINS];
    let mut sc = vec![0u32; 16 * 2 * N_SCALERS];
    det.read_mca(84, 16, &mut mca).unwrap();
    det.read_scalers(84, 16, &mut sc).unwrap();
    assert_frames_match(&det, 84, 16, &mca, &sc, &det.frame_settings());
    // Releasing overwritten frames is harmless.
    det.release(0, 16).unwrap();
}

#[test]
fn mini_mode_stops_with_an_error_instead_of_overwriting() {
    let mut p = sim_params(2, 16);
    p.sim.mini = true;
    let mut det = Xspress3::open(&p).unwrap();
    assert_eq!(det.info().generation, 2);
    det.configure(&acq(TriggerMode::Internal, 100, 800))
        .unwrap();
    det.arm().unwrap();
    let e = poll_until_err(&mut det);
    assert_eq!(e.code(), codes::XSP3_ERROR);
    assert!(
        e.message().contains("Mini") && e.message().contains("frame 16"),
        "{e}"
    );
    // The fault is sticky, and the 16 frames before it are intact.
    assert_eq!(det.poll().unwrap_err().code(), codes::XSP3_ERROR);
    let mut mca = vec![0u32; 16 * 2 * N_BINS];
    det.read_mca(0, 16, &mut mca).unwrap();
}

#[test]
fn injected_device_not_found_surfaces_with_its_message() {
    let mut p = sim_params(2, 16);
    p.sim.fail_open = true;
    p.base_ip = Some("10.1.2.3".into());
    let e = Xspress3::open(&p).unwrap_err();
    assert_eq!((e.code(), e.name()), (-9, "XSP3_ERR_DEV_NOT_FOUND"));
    assert!(
        e.message().contains("10.1.2.3") && e.message().contains("device-not-found"),
        "{e}"
    );
    assert_eq!(e.class(), ErrorClass::Fatal);
}

#[test]
fn injected_error_at_frame_k_surfaces_with_its_message() {
    let mut p = sim_params(2, 64);
    p.sim.error_at_frame = Some(5);
    p.sim.error_code = -5;
    let mut det = Xspress3::open(&p).unwrap();
    det.configure(&acq(TriggerMode::Internal, 20, 800)).unwrap();
    det.arm().unwrap();
    let e = poll_until_err(&mut det);
    assert_eq!((e.code(), e.name()), (-5, "XSP3_INVALID_DMA_STREAM"));
    assert!(e.message().contains("injected error at frame 5"), "{e}");
    assert_eq!(det.last_error().code(), -5);
    // Frames before the fault stay readable; frame 5 never completed.
    let mut buf = vec![0u32; 6 * 2 * N_BINS];
    det.read_mca(0, 5, &mut buf).unwrap();
    assert_eq!(
        det.read_mca(0, 6, &mut buf).unwrap_err().code(),
        codes::NOT_READY
    );
}

#[test]
fn injected_stall_surfaces_as_a_timeout_with_its_message() {
    let mut p = sim_params(2, 64);
    p.sim.stall_at_frame = Some(3);
    p.progress_timeout_ms = 20;
    let mut det = Xspress3::open(&p).unwrap();
    det.configure(&acq(TriggerMode::Internal, 50, 8_000))
        .unwrap();
    det.arm().unwrap();
    let e = poll_until_err(&mut det);
    assert_eq!((e.code(), e.name()), (codes::TIMEOUT, "X3S_E_TIMEOUT"));
    assert!(
        e.message().contains("stalled") && e.message().contains("stuck at 3"),
        "{e}"
    );
}

#[test]
fn injected_slow_rx_surfaces_with_its_message() {
    let mut p = sim_params(2, 64);
    p.sim.slow_rx_hz = 200.0;
    let mut det = Xspress3::open(&p).unwrap();
    det.configure(&acq(TriggerMode::Internal, 1_000, 800))
        .unwrap(); // 100 kHz frames
    det.arm().unwrap();
    let e = poll_until_err(&mut det);
    assert_eq!(e.code(), codes::XSP3_ERROR);
    assert!(e.message().contains("RX too slow"), "{e}");
    let d = det.poll_details();
    assert!(d.is_err(), "the fault is sticky");
}

#[test]
fn settings_directory_is_checked_and_gives_event_widths() {
    let mut p = sim_params(2, 16);
    p.settings_dir = Some("/nonexistent/xspress3/settings".into());
    let e = Xspress3::open(&p).unwrap_err();
    assert_eq!(e.name(), "XSP3_CANNOT_OPEN_FILE");
    assert!(
        e.message().contains("/nonexistent/xspress3/settings"),
        "{e}"
    );
    // A readable directory without calibration keeps the parameters' widths (6 + c % 4).
    let dir = std::env::temp_dir().join(format!("x3s-settings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    p.settings_dir = Some(dir.display().to_string());
    assert_eq!(
        &Xspress3::open(&p).unwrap().info().event_widths[..],
        &[6, 7]
    );
    // With the simulator's calibration file, the channels' event widths come from the settings.
    let file = dir.join("xsp3_sim_event_widths.txt");
    std::fs::write(&file, "11 4\n9\n").unwrap();
    assert_eq!(
        &Xspress3::open(&p).unwrap().info().event_widths[..],
        &[11, 4]
    );
    std::fs::write(&file, "11 x\n").unwrap();
    let e = Xspress3::open(&p).unwrap_err();
    assert_eq!(e.name(), "XSP3_FILE_READ_FAILED");
    assert!(e.message().contains("channel 1"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn parameters_come_from_arguments_and_config_files() {
    let mut p = OpenParams::default();
    p.apply_config(
        "# simulated box\nnum_tf = 128\nsim.channels = 8\ncontent = pattern\nfull_speed = true\n\
         error_at_frame = 17 # fault\nslow_rx_hz=2.5\n",
    )
    .unwrap();
    p.set_arg("seed=99").unwrap();
    p.set_arg("stall_at_frame=none").unwrap();
    assert_eq!((p.num_tf, p.sim.n_channels, p.sim.seed), (128, 8, 99));
    assert_eq!(p.sim.content, SimContent::Pattern);
    assert!(p.sim.full_speed);
    assert_eq!(
        (p.sim.error_at_frame, p.sim.stall_at_frame, p.sim.slow_rx_hz),
        (Some(17), None, 2.5)
    );
    assert!(matches!(
        p.set("nope", "1"),
        Err(sdk_shim::ParamError::UnknownKey(_))
    ));
    assert!(matches!(
        p.set("mini", "maybe"),
        Err(sdk_shim::ParamError::BadValue { .. })
    ));
    assert!(matches!(
        p.apply_config("num_tf 5"),
        Err(sdk_shim::ParamError::Syntax { line: 1, .. })
    ));
    let det = Xspress3::open(&p).unwrap();
    assert_eq!((det.info().n_channels, det.info().buffer_frames), (8, 128));
}

#[test]
fn code_names_cover_sdk_and_shim_codes() {
    for (code, name) in [
        (0, "XSP3_OK"),
        (-6, "XSP3_RANGE_CHECK"),
        (-20, "XSP3_WOULD_BLOCK"),
        (-100, "X3S_E_STATE"),
        (-104, "X3S_E_OVERRUN"),
        (-106, "X3S_E_BACKEND"),
        (-55, "X3S_E_UNKNOWN"),
    ] {
        assert_eq!(sdk_shim::X3sError::new(code, "m").name(), name);
    }
    let e = sdk_shim::X3sError::new(-104, "gone");
    assert_eq!(e.to_string(), "X3S_E_OVERRUN (-104): gone");
}

#[test]
fn a_fault_first_seen_by_a_read_is_reported_by_the_next_poll() {
    let mut p = sim_params(2, 16);
    p.sim.error_at_frame = Some(2);
    let mut det = Xspress3::open(&p).unwrap();
    det.configure(&acq(TriggerMode::Software, 10, 1_000))
        .unwrap();
    det.arm().unwrap();
    for _ in 0..3 {
        det.soft_trigger().unwrap();
    }
    // The read asks the SDK for progress, which fails: the read itself reports the frames missing.
    let mut buf = vec![0u32; 3 * 2 * N_BINS];
    assert_eq!(
        det.read_mca(0, 3, &mut buf).unwrap_err().code(),
        codes::NOT_READY
    );
    let e = det.poll().unwrap_err();
    assert_eq!(e.code(), codes::XSP3_ERROR);
    assert!(e.message().contains("injected error at frame 2"), "{e}");
    // Still the same text on the next poll, whatever happened in between.
    assert_eq!(
        det.read_mca(0, 3, &mut buf).unwrap_err().code(),
        codes::NOT_READY
    );
    assert!(det
        .poll()
        .unwrap_err()
        .message()
        .contains("injected error at frame 2"));
    det.read_mca(0, 2, &mut buf).unwrap();
}

#[test]
fn each_device_and_thread_keeps_its_own_error_text() {
    // The SDK's message buffer is one static global; the shim copies it under a lock at failure
    // time. Threads failing concurrently must each see their own text.
    std::thread::scope(|s| {
        for t in 0..4u64 {
            s.spawn(move || {
                for round in 0..50u64 {
                    // Open failures: per-thread text.
                    let mut p = sim_params(1, 4);
                    p.sim.fail_open = true;
                    let ip = format!("10.0.{t}.{round}");
                    p.base_ip = Some(ip.clone());
                    let e = Xspress3::open(&p).unwrap_err();
                    assert!(e.message().contains(&format!("{ip} ")), "thread {t}: {e}");
                    // Device failures: per-device text.
                    let mut p = sim_params(1, 8);
                    let k = t * 3 + round % 3 + 1;
                    p.sim.error_at_frame = Some(k);
                    let mut det = Xspress3::open(&p).unwrap();
                    det.configure(&acq(TriggerMode::Software, 20, 100)).unwrap();
                    det.arm().unwrap();
                    for _ in 0..=k {
                        det.soft_trigger().unwrap();
                    }
                    let e = det.poll().unwrap_err();
                    assert!(
                        e.message()
                            .contains(&format!("injected error at frame {k}:")),
                        "thread {t}: {e}"
                    );
                }
            });
        }
    });
}

#[test]
fn a_mk2_mini_is_clocked_from_the_midplane() {
    // The simulated Mk2 accepts only the midplane clock (XSP4_CLK_SRC_MIDPLN_LMK61E2), so a
    // successful open proves the shim chose it; the C test checks the flags and the sync mode.
    let mut p = sim_params(2, 16);
    p.sim.mini = true;
    p.sim.mini_plus = true;
    let det = Xspress3::open(&p).unwrap();
    assert!(det.is_mini_plus());
    assert_eq!(det.info().generation, 2);
    det.close().unwrap();
    p.sim.mini_plus = false;
    let det = Xspress3::open(&p).unwrap();
    assert!(!det.is_mini_plus());
    det.close().unwrap();
    p.sim.mini = false;
    p.sim.mini_plus = true;
    let e = Xspress3::open(&p).unwrap_err();
    assert!(e.message().contains("mini_plus needs mini"), "{e}");
}

#[test]
fn frames_across_the_wrap_of_the_32_bit_frame_address_read_back_intact() {
    // A 3-frame SDK buffer (3 does not divide 2^32) and a run that starts 4 frames before 2^32:
    // reads and releases must address the slots where the SDK put the frames, or the content is
    // wrong and the full-speed detector, which waits for releases, stalls.
    let base = (1u64 << 32) - 4;
    let mut p = sim_params(2, 3);
    p.sim.full_speed = true;
    p.sim.frame_base = base;
    let mut det = Xspress3::open(&p).unwrap();
    det.configure(&acq(TriggerMode::Internal, 0, 800)).unwrap();
    det.arm().unwrap();
    let mut mca = vec![0u32; 2 * N_BINS];
    let mut sc = vec![0u32; 2 * N_SCALERS];
    for f in base..base + 10 {
        poll_until(&mut det, |p| p.frames_complete > f).unwrap();
        det.read_mca(f, 1, &mut mca).unwrap();
        det.read_scalers(f, 1, &mut sc).unwrap();
        let (emca, esc) = expected(&det, f);
        assert_eq!(mca, emca, "MCA of frame {f}");
        assert_eq!(sc, esc, "scalers of frame {f}");
        det.release(f, 1).unwrap();
    }
    let d = det.poll_details().unwrap();
    assert_eq!(d.overrun_count, 0);
    det.stop().unwrap();
}
