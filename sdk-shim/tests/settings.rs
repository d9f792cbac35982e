//! Per-channel settings, trigger inputs and multi-card systems: each reaches the simulated SDK
//! (its record of what it was given), and the scalers it produces follow them channel by channel.

mod common;

use acq_core::detector::{
    AcqParams, ChannelSetting, Channels, Detector, GapMode, TriggerMode, TriggerSource,
    MAX_EVENT_WIDTH,
};
use common::*;
use sdk_shim::record::{CardRun, ItfgRecord};
use sdk_shim::{codes, SettingsError, Xspress3};

/// `XSP3_GLOB_TIMA_*` facts the records are checked against.
const SRC_INTERNAL: u32 = 1;
const SRC_TTL_VETO_ONLY: u32 = 4;
const F0_INV: u32 = 1 << 3;
const VETO_INV: u32 = 1 << 4;
const fn debounce(ticks: u32) -> u32 {
    ticks << 16
}

/// Sums of a spectrum over an inclusive bin range.
fn sum(m: &[u32], lo: u32, hi: u32) -> u64 {
    m[lo as usize..=hi as usize]
        .iter()
        .map(|&v| u64::from(v))
        .sum()
}

/// Reads frames `[0, n)` and checks every channel's window and AllGood scalers against its own
/// spectrum and settings, and everything against the simulator's formula.
fn assert_scalers_follow_settings(det: &mut Xspress3, n: u32) {
    let nch = det.info().n_channels as usize;
    let mut mca = vec![0u32; n as usize * nch * N_BINS];
    let mut sc = vec![0u32; n as usize * nch * N_SCALERS];
    det.read_mca(0, n, &mut mca).unwrap();
    det.read_scalers(0, n, &mut sc).unwrap();
    for f in 0..n as usize {
        let (emca, esc) = expected(det, f as u64);
        assert_eq!(&mca[f * nch * N_BINS..(f + 1) * nch * N_BINS], &emca[..]);
        assert_eq!(
            &sc[f * nch * N_SCALERS..(f + 1) * nch * N_SCALERS],
            &esc[..]
        );
        for c in 0..nch {
            let m = &mca[(f * nch + c) * N_BINS..(f * nch + c + 1) * N_BINS];
            let s = &sc[(f * nch + c) * N_SCALERS..(f * nch + c + 1) * N_SCALERS];
            let w = det.windows()[c];
            let thr = det.good_thresholds()[c];
            assert_eq!(u64::from(s[5]), sum(m, w[0], w[1]), "InWindow0 f{f} c{c}");
            assert_eq!(u64::from(s[6]), sum(m, w[2], w[3]), "InWindow1 f{f} c{c}");
            assert_eq!(u64::from(s[4]), sum(m, thr, 4095), "AllGood f{f} c{c}");
        }
    }
}

#[test]
fn per_channel_settings_reach_the_sdk_and_shape_the_scalers() {
    let mut det = Xspress3::open(&sim_params(4, 64)).unwrap();
    // The SDK's own settings are read back at open.
    let r = det.sim_record().unwrap();
    assert_eq!(det.windows(), &r.windows[..]);
    assert_eq!(det.good_thresholds(), &r.good_thresholds[..]);

    let settings = [
        ChannelSetting::Window {
            channels: Channels::All,
            window: 1,
            low: 700,
            high: 720,
        },
        ChannelSetting::Window {
            channels: Channels::One(0),
            window: 0,
            low: 600,
            high: 680,
        },
        ChannelSetting::Window {
            channels: Channels::One(2),
            window: 0,
            low: 1100,
            high: 1300,
        },
        ChannelSetting::Window {
            channels: Channels::One(3),
            window: 1,
            low: 0,
            high: 99,
        },
        ChannelSetting::GoodThreshold {
            channels: Channels::All,
            bin: 40,
        },
        ChannelSetting::GoodThreshold {
            channels: Channels::One(1),
            bin: 900,
        },
        ChannelSetting::EventWidth {
            channels: Channels::One(2),
            ticks: 14,
        },
    ];
    for s in &settings {
        det.apply(s).unwrap();
    }
    let want_windows = [
        [600, 680, 700, 720],
        [0, 4095, 700, 720],
        [1100, 1300, 700, 720],
        [0, 4095, 0, 99],
    ];
    let want_thresholds = [40, 900, 40, 40];
    assert_eq!(det.windows(), &want_windows[..]);
    assert_eq!(det.good_thresholds(), &want_thresholds[..]);
    let r = det.sim_record().unwrap();
    assert_eq!(r.windows, want_windows);
    assert_eq!(r.good_thresholds, want_thresholds);

    // The event width is a dead-time parameter: the info the correction reads changes, the
    // calibration stays as the SDK gave it.
    assert_eq!(&det.info().event_widths[..], &[6, 7, 14, 9]);
    assert_eq!(det.calibrated_event_widths(), &[6, 7, 8, 9]);

    det.configure(&acq(TriggerMode::Software, 6, 400_000))
        .unwrap();
    det.arm().unwrap();
    for _ in 0..6 {
        det.soft_trigger().unwrap();
    }
    poll_until(&mut det, |p| p.frames_complete == 6).unwrap();
    assert_scalers_follow_settings(&mut det, 6);
    det.stop().unwrap();
}

#[test]
fn bad_settings_are_refused_naming_the_setting_and_the_value() {
    let mut det = Xspress3::open(&sim_params(4, 16)).unwrap();
    let before = det.sim_record().unwrap();
    let bad = [
        ChannelSetting::Window {
            channels: Channels::One(4),
            window: 0,
            low: 1,
            high: 2,
        },
        ChannelSetting::Window {
            channels: Channels::All,
            window: 2,
            low: 1,
            high: 2,
        },
        ChannelSetting::Window {
            channels: Channels::One(1),
            window: 0,
            low: 300,
            high: 200,
        },
        ChannelSetting::Window {
            channels: Channels::All,
            window: 1,
            low: 0,
            high: 4096,
        },
        ChannelSetting::GoodThreshold {
            channels: Channels::All,
            bin: 4096,
        },
        ChannelSetting::GoodThreshold {
            channels: Channels::One(9),
            bin: 1,
        },
        ChannelSetting::EventWidth {
            channels: Channels::All,
            ticks: MAX_EVENT_WIDTH + 1,
        },
    ];
    let texts = [
        "window 4:0:1:2: no such channel (the detector has channels 0..=3)",
        "window 2:1:2: no such window (windows are 0 and 1)",
        "window 1:0:300:200: bins must lie in 0..=4095 (and a window's low bin <= its high bin)",
        "window 1:0:4096: bins must lie in 0..=4095 (and a window's low bin <= its high bin)",
        "good_threshold 4096: bins must lie in 0..=4095 (and a window's low bin <= its high bin)",
        "good_threshold 9:1: no such channel (the detector has channels 0..=3)",
        "event_width 1001: event width beyond 1000 clock ticks",
    ];
    for (s, text) in bad.iter().zip(texts) {
        let e = det.apply(s).unwrap_err();
        assert!(matches!(e, SettingsError::Invalid(_)), "{s}: {e:?}");
        assert_eq!(e.to_string(), text);
    }
    assert_eq!(det.sim_record().unwrap(), before, "nothing reached the SDK");

    // The shim checks too: a setting refused there names the setting, the code and the value.
    let e = det.set_window(Some(0), 0, 10, 5000).unwrap_err();
    assert_eq!(e.code(), codes::ARG);
    assert!(e.message().contains("[10, 5000]"), "{e}");
    let e = det.set_event_width(Some(7), 5).unwrap_err();
    assert_eq!(e.code(), codes::ARG);
    assert!(e.message().contains("channel 7 width 5"), "{e}");

    // Not while armed: the refusal is the shim's, wrapped with the setting.
    det.configure(&acq(TriggerMode::Software, 2, 8000)).unwrap();
    det.arm().unwrap();
    let s = ChannelSetting::EventWidth {
        channels: Channels::One(0),
        ticks: 9,
    };
    match det.apply(&s).unwrap_err() {
        SettingsError::Refused { setting, error } => {
            assert_eq!(setting, s);
            assert_eq!(error.code(), codes::STATE);
        }
        other => panic!("{other:?}"),
    }
    det.stop().unwrap();
}

#[test]
fn trigger_inputs_reach_the_sdk() {
    let mut p = sim_params(2, 64);
    p.sim.ext_trigger_hz = 5000.0;
    let mut det = Xspress3::open(&p).unwrap();
    for (mode, db, f0, veto) in [
        (TriggerMode::External, 80u8, true, false),
        (TriggerMode::Gate, 255, false, true),
        (TriggerMode::Internal, 0, true, true),
    ] {
        let params = AcqParams {
            debounce_ticks: db,
            invert_f0: f0,
            invert_veto: veto,
            ..acq(mode, 3, 8000)
        };
        det.configure(&params).unwrap();
        det.arm().unwrap();
        poll_until(&mut det, |p| p.frames_complete == 3).unwrap();
        let r = det.sim_record().unwrap();
        let src = if mode == TriggerMode::Gate {
            SRC_TTL_VETO_ONLY
        } else {
            SRC_INTERNAL
        };
        assert_eq!(
            (r.timing.invert_f0, r.timing.invert_veto, r.timing.debounce),
            (f0, veto, i32::from(db)),
            "{mode:?}"
        );
        assert_eq!(
            r.cards[0].time_a,
            src | if f0 { F0_INV } else { 0 }
                | if veto { VETO_INV } else { 0 }
                | debounce(u32::from(db)),
            "{mode:?}"
        );
        det.stop().unwrap();
    }
}

#[test]
fn max_iv_trigger_counts_run_as_planned() {
    // nTriggers x nFramesPerTrigger: 1 x 5 is one trigger for all frames, 4 x 1 one per frame.
    for (source, n_triggers, per_trigger, triggers_needed, itfg_mode) in [
        (TriggerSource::Software, 1, 5, 1, 5), // XSP3_ITFG_TRIG_MODE_SOFTWARE_ONLY_FIRST
        (TriggerSource::Software, 4, 1, 4, 1), // XSP3_ITFG_TRIG_MODE_SOFTWARE
    ] {
        let plan = source.plan(n_triggers, per_trigger).unwrap();
        let mut det = Xspress3::open(&sim_params(2, 64)).unwrap();
        det.configure(&acq(plan.trigger, plan.n_frames, 8000))
            .unwrap();
        det.arm().unwrap();
        for _ in 0..triggers_needed {
            det.soft_trigger().unwrap();
        }
        let p = poll_until(&mut det, |p| p.frames_complete == plan.n_frames).unwrap();
        assert_eq!(p.frames_complete, n_triggers * per_trigger);
        let r = det.sim_record().unwrap();
        assert_eq!(r.cards[0].itfg.map(|i| i.trig_mode), Some(itfg_mode));
        det.stop().unwrap();
    }
}

#[test]
fn a_multi_card_system_follows_card_zero_with_channels_numbered_across_cards() {
    let mut p = sim_params(8, 64);
    p.n_cards = 2;
    p.sim.ext_trigger_hz = 5000.0;
    let mut det = Xspress3::open(&p).unwrap();
    assert_eq!(det.card_channels(), &[4, 4]);
    assert_eq!(det.info().n_channels, 8);
    let r = det.sim_record().unwrap();
    assert_eq!(r.cards.len(), 2);
    // Card 0: crystal, clock master, no dither; card 1: card 0's clock over the LEMO.
    assert_eq!(r.cards[0].clock, Some((1, 3)));
    assert_eq!(r.cards[1].clock, Some((2, 2)));

    // A channel on the second card takes its own settings.
    det.apply(&ChannelSetting::Window {
        channels: Channels::One(6),
        window: 0,
        low: 630,
        high: 650,
    })
    .unwrap();
    det.apply(&ChannelSetting::GoodThreshold {
        channels: Channels::One(5),
        bin: 1000,
    })
    .unwrap();

    for (mode, triggers) in [
        (TriggerMode::Software, 3),
        (TriggerMode::External, 0),
        (TriggerMode::Gate, 0),
        (TriggerMode::Internal, 0),
    ] {
        // 16000 ticks: also the gate length of 5 kHz TTL gates, so Time is the same in every mode.
        let params = AcqParams {
            debounce_ticks: 20,
            ..acq(mode, 3, 16_000)
        };
        det.configure(&params).unwrap();
        det.arm().unwrap();
        let r = det.sim_record().unwrap();
        // The following card was started before the master, and counts on card 0's veto.
        assert_eq!(r.cards[1].run, CardRun::Started, "{mode:?}");
        assert!(r.cards[1].start_seq < r.cards[0].start_seq, "{mode:?}");
        assert_eq!(
            r.cards[0].run,
            if mode.is_software() {
                CardRun::Armed
            } else {
                CardRun::Started
            }
        );
        assert_eq!(
            r.cards[1].time_a,
            SRC_TTL_VETO_ONLY | debounce(20),
            "{mode:?}"
        );
        // Only card 0's time-frame generator times frames.
        if mode != TriggerMode::Gate {
            assert!(matches!(
                r.cards[0].itfg,
                Some(ItfgRecord {
                    col_time: 16_000,
                    frames: 3,
                    ..
                })
            ));
            assert_eq!(r.cards[1].itfg, None);
        }
        for _ in 0..triggers {
            det.soft_trigger().unwrap();
        }
        poll_until(&mut det, |p| p.frames_complete == 3).unwrap();
        assert_scalers_follow_settings(&mut det, 3);
        det.release(0, 3).unwrap();
        det.stop().unwrap();
    }

    // A box whose channels cannot be shared by the cards is refused.
    let mut p = sim_params(2, 16);
    p.n_cards = 3;
    let e = Xspress3::open(&p).unwrap_err();
    assert_eq!(e.code(), codes::XSP3_RANGE_CHECK);
    assert!(e.message().contains("2 channels on 3 cards"), "{e}");
}

#[test]
fn a_multi_card_mini_flags_only_card_zero_as_clock_master() {
    let mut p = sim_params(4, 16);
    p.n_cards = 2;
    p.sim.mini = true;
    let mut det = Xspress3::open(&p).unwrap();
    let r = det.sim_record().unwrap();
    assert_eq!(r.cards[0].clock, Some((0x10, 3)));
    assert_eq!(r.cards[1].clock, Some((0x10, 2)));
    assert_eq!(det.card_channels(), &[2, 2]);
    det.configure(&AcqParams {
        gap: GapMode::Us1,
        ..acq(TriggerMode::Internal, 2, 8000)
    })
    .unwrap();
    det.arm().unwrap();
    poll_until(&mut det, |p| p.frames_complete == 2).unwrap();
    assert_scalers_follow_settings(&mut det, 2);
    det.release(0, 2).unwrap();
    det.stop().unwrap();
}

#[test]
fn rois_are_summed_from_the_full_spectrum_whatever_is_recorded() {
    use acq_core::detector::Recording;
    // Inside the recorded bins off the rebin boundaries, outside them, across their start, and
    // one channel only.
    let rois = vec![
        vec![Some([621, 658]); 3],
        vec![Some([100, 199]); 3],
        vec![Some([590, 611]); 3],
        vec![None, Some([4000, 4095]), None],
    ];
    for rec in [
        Recording {
            first_bin: 600,
            n_bins: 256,
            rebin: 4,
        },
        Recording {
            first_bin: 600,
            n_bins: 256,
            rebin: 1,
        },
        Recording::full(4096),
    ] {
        let mut det = Xspress3::open(&sim_params(3, 64)).unwrap();
        det.set_rois(&rois).unwrap();
        det.set_recording(rec).unwrap();
        assert_eq!(det.n_rois(), 4);
        det.configure(&acq(TriggerMode::Software, 3, 8000)).unwrap();
        det.arm().unwrap();
        for _ in 0..3 {
            det.soft_trigger().unwrap();
        }
        poll_until(&mut det, |p| p.frames_complete == 3).unwrap();
        let out_bins = rec.recorded_bins() as usize;
        let mut mca = vec![0u32; 3 * 3 * out_bins];
        let mut sums = vec![0u64; 3 * 4 * 3];
        det.read_mca_rois(0, 3, &mut mca, &mut sums).unwrap();
        for f in 0..3usize {
            let (full, _) = expected(&det, f as u64);
            for (r, roi) in rois.iter().enumerate() {
                for (c, range) in roi.iter().enumerate() {
                    let want = range.map_or(0, |[lo, hi]| sum(&full[c * N_BINS..], lo, hi));
                    assert_eq!(sums[(f * 4 + r) * 3 + c], want, "{rec:?} f{f} roi {r} c{c}");
                }
            }
            for c in 0..3usize {
                let lo = c * N_BINS + rec.first_bin as usize;
                let got = &mca[(f * 3 + c) * out_bins..(f * 3 + c + 1) * out_bins];
                let want: Vec<u32> = full[lo..lo + rec.n_bins as usize]
                    .chunks(rec.rebin as usize)
                    .map(|g| g.iter().sum())
                    .collect();
                assert_eq!(got, &want[..], "{rec:?} f{f} c{c}");
            }
        }
        let e = det
            .read_mca_rois(0, 3, &mut mca, &mut sums[1..])
            .unwrap_err();
        assert_eq!(e.code(), codes::BUFSIZE);
        det.stop().unwrap();
    }
    let mut det = Xspress3::open(&sim_params(2, 16)).unwrap();
    for bad in [
        vec![vec![Some([10, 4096]); 2]],
        vec![vec![Some([10, 20])]],
        vec![vec![None; 2]; 33],
    ] {
        let e = det.set_rois(&bad).unwrap_err();
        assert_eq!(e.code(), codes::ARG, "{bad:?}");
    }
    assert_eq!(det.n_rois(), 0);
}

#[test]
fn a_recording_returns_the_bin_range_summed_by_the_rebin_factor() {
    use acq_core::detector::Recording;
    for (first_bin, n_bins, rebin) in [(600, 256, 4), (1000, 100, 1), (0, 4096, 16)] {
        let mut det = Xspress3::open(&sim_params(3, 64)).unwrap();
        let rec = Recording {
            first_bin,
            n_bins,
            rebin,
        };
        det.set_recording(rec).unwrap();
        assert_eq!(det.recording(), rec);
        let out_bins = (n_bins / rebin) as usize;
        det.configure(&acq(TriggerMode::Software, 3, 8000)).unwrap();
        det.arm().unwrap();
        for _ in 0..3 {
            det.soft_trigger().unwrap();
        }
        poll_until(&mut det, |p| p.frames_complete == 3).unwrap();
        let mut mca = vec![0u32; 3 * 3 * out_bins];
        det.read_mca(0, 3, &mut mca).unwrap();
        for f in 0..3usize {
            let (full, _) = expected(&det, f as u64);
            for c in 0..3usize {
                let want: Vec<u32> = (0..out_bins)
                    .map(|b| {
                        let lo = c * N_BINS + first_bin as usize + b * rebin as usize;
                        full[lo..lo + rebin as usize].iter().sum()
                    })
                    .collect();
                let got = &mca[(f * 3 + c) * out_bins..(f * 3 + c + 1) * out_bins];
                assert_eq!(got, &want[..], "{rec:?} f{f} c{c}");
            }
        }
        // One word short of the reduced frames is refused.
        let e = det.read_mca(0, 3, &mut mca[1..]).unwrap_err();
        assert_eq!(e.code(), codes::BUFSIZE);
        det.stop().unwrap();
    }
    let mut det = Xspress3::open(&sim_params(2, 16)).unwrap();
    for (first_bin, n_bins, rebin) in [(4000, 200, 1), (0, 100, 3), (0, 16, 0), (4096, 1, 1)] {
        let rec = Recording {
            first_bin,
            n_bins,
            rebin,
        };
        let e = det.set_recording(rec).unwrap_err();
        assert_eq!(e.code(), codes::ARG, "{rec:?}");
        assert!(rec.check(4096).is_err(), "{rec:?}");
    }
}
