//! Per-channel detector settings and trigger inputs through the real binary: `run`'s options and
//! `configure`'s JSON reach the detector, and the file shows each channel's own settings.

use acq_core::deadtime::dead_time;
use xspress3::read_acq_file;

mod common;

use common::{acquire, Daemon};
use serde_json::json;

const NCH: usize = 4;

/// The window attribute of the detector group, per channel `[low0, high0, low1, high1]`.
fn windows_attr(path: &std::path::Path) -> Vec<[u32; 4]> {
    let file = hdf5::File::open(path).unwrap();
    let det = file.group("entry/instrument/xspress3").unwrap();
    let flat: Vec<u32> = det.attr("windows").unwrap().read_raw().unwrap();
    flat.chunks(4).map(|c| [c[0], c[1], c[2], c[3]]).collect()
}

fn attr_u32(path: &std::path::Path, name: &str) -> Vec<u32> {
    let file = hdf5::File::open(path).unwrap();
    let det = file.group("entry/instrument/xspress3").unwrap();
    det.attr(name).unwrap().read_raw().unwrap()
}

#[test]
fn run_applies_per_channel_windows_thresholds_and_event_widths() {
    let dir = tempfile::tempdir().unwrap();
    let out = acquire(&[
        "--frames",
        "6",
        "--exposure",
        "1ms",
        "--out",
        dir.path().to_str().unwrap(),
        "--window",
        "0:600:700",
        "--window",
        "2:0:1100:1300",
        "--window",
        "3:1:0:99",
        "--good-threshold",
        "40",
        "--good-threshold",
        "1:900",
        "--event-width",
        "2:14",
        "--debounce",
        "80",
        "--invert-f0",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.path().join("xspress3.h5");
    let windows = windows_attr(&path);
    assert_eq!(
        windows,
        [
            [600, 700, 0, 4095],
            [600, 700, 0, 4095],
            [1100, 1300, 0, 4095],
            [600, 700, 0, 99]
        ]
    );
    let thresholds = attr_u32(&path, "good_thresholds");
    assert_eq!(thresholds, [40, 900, 40, 40]);
    let file = read_acq_file(&path).unwrap();
    assert_eq!(file.event_width.to_vec(), [6, 7, 14, 9]);
    assert_eq!(attr_u32(&path, "debounce_ticks"), [80]);
    assert_eq!(attr_u32(&path, "invert_f0"), [1]);
    assert_eq!(attr_u32(&path, "invert_veto"), [0]);
    for row in 0..6 {
        for chan in 0..NCH {
            let m = file.data.slice(ndarray::s![row, chan, ..]);
            let sum =
                |lo: u32, hi: u32| -> u32 { m.slice(ndarray::s![lo as usize..=hi as usize]).sum() };
            let w = windows[chan];
            assert_eq!(file.scalers[5][[row, chan]], sum(w[0], w[1]), "c{chan}");
            assert_eq!(file.scalers[6][[row, chan]], sum(w[2], w[3]), "c{chan}");
            assert_eq!(file.scalers[4][[row, chan]], sum(thresholds[chan], 4095));
            // The dead-time correction uses the overridden width.
            let sc: [u32; 9] = std::array::from_fn(|s| file.scalers[s][[row, chan]]);
            let want = dead_time(&sc, file.event_width[chan]).map_or(f64::NAN, |d| d.correction);
            assert_eq!(file.dead_time_correction[[row, chan]], want);
        }
    }
}

#[test]
fn bad_settings_are_refused_before_anything_runs() {
    for (args, needle) in [
        (
            &["--window", "4:0:1:2"][..],
            "window 4:0:1:2: no such channel (the detector has channels 0..=3)",
        ),
        (
            &["--good-threshold", "2:4096"][..],
            "good_threshold 2:4096: bins must lie in 0..=4095",
        ),
        (
            &["--event-width", "1001"][..],
            "event_width 1001: event width beyond 1000 clock ticks",
        ),
        (&["--window", "0:1"][..], "--window `0:1`: expected"),
        (&["--debounce", "300"][..], "300"),
    ] {
        let out = acquire(&[&["--frames", "2"][..], args].concat());
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn configure_takes_the_same_settings_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    d.ok(
        json!({"cmd": "configure", "frames": 3, "exposure": "1ms", "file": "js",
                "windows": [[0, 600, 700], [1, 0, 630, 650]],
                "good_threshold": [100, [3, 2000]], "event_width": [[0, 20]],
                "debounce": 5, "invert_veto": true}),
    );
    d.ok(json!({"cmd": "arm"}));
    d.wait_state("done");
    let path = dir.path().join("js.h5");
    assert_eq!(
        windows_attr(&path),
        [
            [600, 700, 0, 4095],
            [630, 650, 0, 4095],
            [600, 700, 0, 4095],
            [600, 700, 0, 4095]
        ]
    );
    assert_eq!(attr_u32(&path, "good_thresholds"), [100, 100, 100, 2000]);
    assert_eq!(
        read_acq_file(&path).unwrap().event_width.to_vec(),
        [20, 7, 8, 9]
    );
    assert_eq!(attr_u32(&path, "invert_veto"), [1]);
    d.error(
        json!({"cmd": "configure", "event_width": [[9, 5]]}),
        "event_width 9:5: no such channel",
    );
    d.error(
        json!({"cmd": "configure", "windows": [[0, 1]]}),
        "windows: [0, 1]",
    );
}

#[test]
fn rois_are_summed_into_the_file_and_shown_in_status() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    d.ok(
        json!({"cmd": "configure", "frames": 4, "exposure": "1ms", "file": "roi",
                "trigger": "software", "rois": ["Fe:630:650", "Fe:3:600:700", "Cu:1:790:820"]}),
    );
    d.ok(json!({"cmd": "arm"}));
    d.ok(json!({"cmd": "trigger", "count": 4}));
    let st = d.wait_state("done");
    assert_eq!(st["rois_frame"], 3, "{st}");
    let path = dir.path().join("roi.h5");
    let file = read_acq_file(&path).unwrap();
    let h5 = hdf5::File::open(&path).unwrap();
    let det = h5.group("entry/instrument/xspress3").unwrap();
    let ranges = [
        [
            Some((630, 650)),
            Some((630, 650)),
            Some((630, 650)),
            Some((600, 700)),
        ],
        [None, Some((790, 820)), None, None],
    ];
    for (k, name) in ["Fe", "Cu"].iter().enumerate() {
        let sums: ndarray::Array2<u64> = det
            .dataset(&format!("roi_{name}"))
            .unwrap()
            .read_2d()
            .unwrap();
        let dtc: ndarray::Array2<f64> = det
            .dataset(&format!("roi_{name}_dtc"))
            .unwrap()
            .read_2d()
            .unwrap();
        assert_eq!(sums.dim(), (4, NCH));
        for row in 0..4 {
            for chan in 0..NCH {
                let want = ranges[k][chan].map_or(0, |(lo, hi)| {
                    file.data
                        .slice(ndarray::s![row, chan, lo..=hi])
                        .iter()
                        .map(|&v| u64::from(v))
                        .sum()
                });
                assert_eq!(sums[[row, chan]], want, "{name} f{row} c{chan}");
                let k_dtc = file.dead_time_correction[[row, chan]];
                assert_eq!(dtc[[row, chan]], want as f64 * k_dtc);
            }
        }
        // The status shows the last frame's values, counts and corrected.
        let values = &st["rois"][k];
        assert_eq!(values["name"], *name);
        for chan in 0..NCH {
            assert_eq!(values["counts"][chan], sums[[3, chan]], "{st}");
            assert_eq!(values["dtc"][chan].as_f64(), Some(dtc[[3, chan]]));
        }
    }
    d.error(
        json!({"cmd": "configure", "rois": ["Fe:4:1:2"]}),
        "roi Fe:4:1:2: no such channel",
    );
    d.error(
        json!({"cmd": "configure", "rois": ["a b:1:2"]}),
        "roi `a b`",
    );
}

#[test]
fn bins_and_rebin_reduce_what_is_recorded_and_rois_still_sum_the_full_spectrum() {
    let dir = tempfile::tempdir().unwrap();
    let out = acquire(&[
        "--frames",
        "5",
        "--exposure",
        "1ms",
        "--out",
        dir.path().to_str().unwrap(),
        "--bins",
        "600:855",
        "--rebin",
        "4",
        // Inside the recorded bins on and off the rebin boundaries, outside them, across their
        // start, and on one channel beyond their end.
        "--roi",
        "Fe:620:659",
        "--roi",
        "In:621:658",
        "--roi",
        "Out:100:200",
        "--roi",
        "Mix:590:611",
        "--roi",
        "Hi:2:4000:4095",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.path().join("xspress3.h5");
    let file = read_acq_file(&path).unwrap();
    assert_eq!(file.data.dim(), (5, NCH, 64));
    assert_eq!(attr_u32(&path, "first_bin"), [600]);
    assert_eq!(attr_u32(&path, "rebin"), [4]);
    assert_eq!(attr_u32(&path, "n_bins"), [64]);
    let h5 = hdf5::File::open(&path).unwrap();
    let bins: Vec<u32> = h5.dataset("entry/data/bin").unwrap().read_raw().unwrap();
    assert_eq!(bins, (0..64).map(|i| 600 + 4 * i).collect::<Vec<_>>());
    // Per ROI: its sums `[frame][chan]` and its bins per channel.
    type RoiSums = (ndarray::Array2<u64>, [Option<[usize; 2]>; NCH]);
    let rois: Vec<RoiSums> = [
        ("Fe", [Some([620, 659]); NCH]),
        ("In", [Some([621, 658]); NCH]),
        ("Out", [Some([100, 200]); NCH]),
        ("Mix", [Some([590, 611]); NCH]),
        ("Hi", [None, None, Some([4000, 4095]), None]),
    ]
    .into_iter()
    .map(|(name, ranges)| {
        let ds = format!("entry/instrument/xspress3/roi_{name}");
        (h5.dataset(&ds).unwrap().read_2d().unwrap(), ranges)
    })
    .collect();
    let sim = sdk_shim::SimParams::default();
    let settings = sdk_shim::FrameSettings {
        n_channels: NCH as u32,
        exposure_ticks: 80_000,
        windows: None,
        good_thres: None,
    };
    let mut full = vec![0u32; NCH * 4096];
    for f in 0..5 {
        sim.expected_frame(&settings, f as u64, Some(&mut full), None)
            .unwrap();
        for c in 0..NCH {
            let spectrum = &full[c * 4096..(c + 1) * 4096];
            for b in 0..64 {
                let want: u32 = spectrum[600 + 4 * b..604 + 4 * b].iter().sum();
                assert_eq!(file.data[[f, c, b]], want, "f{f} c{c} b{b}");
            }
            for (k, (sums, ranges)) in rois.iter().enumerate() {
                let want: u64 = ranges[c].map_or(0, |[lo, hi]| {
                    spectrum[lo..=hi].iter().map(|&v| u64::from(v)).sum()
                });
                assert_eq!(sums[[f, c]], want, "roi {k} f{f} c{c}");
            }
        }
    }
    for (args, needle) in [
        (
            &["--bins", "600:699", "--rebin", "3"][..],
            "bins 600:699 rebin 3",
        ),
        (&["--bins", "4000:4200"][..], "bins 4000:4200 rebin 1"),
        (&["--bins", "x"][..], "--bins `x`: expected LOW:HIGH"),
        (
            &["--bins", "600:855", "--roi", "Fe:100:4096"][..],
            "roi Fe:100:4096: bins must lie in 0..=4095",
        ),
    ] {
        let out = acquire(&[&["--frames", "2"][..], args].concat());
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn max_iv_trigger_counts_choose_the_mode_and_the_frame_count() {
    for (counts, frames, mode) in [
        (
            &["--triggers", "1", "--frames-per-trigger", "6"][..],
            6,
            "software_first",
        ),
        (&["--triggers", "4"][..], 4, "software"),
        (&["--triggers", "5", "--frames", "5"][..], 5, "software"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = acquire(
            &[
                &[
                    "--trigger",
                    "software",
                    "--exposure",
                    "1ms",
                    "--out",
                    dir.path().to_str().unwrap(),
                ][..],
                counts,
            ]
            .concat(),
        );
        assert!(
            out.status.success(),
            "{counts:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = dir.path().join("xspress3.h5");
        assert_eq!(read_acq_file(&path).unwrap().frame_number.len(), frames);
        assert_eq!(common::det_str(&path, "trigger_mode"), mode, "{counts:?}");
    }
    for (args, needle) in [
        (
            &[
                "--trigger",
                "software",
                "--triggers",
                "3",
                "--frames-per-trigger",
                "2",
            ][..],
            "n_triggers 3 x frames_per_trigger 2: one of the two must be 1",
        ),
        (
            &["--trigger", "software", "--triggers", "4", "--frames", "5"][..],
            "frames 5 differs from triggers 4 x frames_per_trigger 1",
        ),
        (
            &["--trigger", "gate", "--frames-per-trigger", "2"][..],
            "frames_per_trigger 2: each gate is one frame",
        ),
    ] {
        let out = acquire(args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
