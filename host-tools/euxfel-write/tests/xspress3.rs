//! Xspress3 acquisitions (written by the acquisition writer itself) converted to EuXFEL runs
//! read back equal through our reader.

use std::time::Duration;

use acq_core::detector::{AcqParams, GapMode, Recording, TriggerMode};
use acq_core::geometry::{FrameMeta, Geometry};
use euxfel::{DataCollection, OpenOptions};
use euxfel_write::{convert_xspress3, Error, Xspress3Options};
use xspress3::{read_acq_file, AcqDescription, AcqFileWriter, DropRecord, OutputConfig};

const FRAMES: u64 = 30;

/// An acquisition of `FRAMES` frames in parts of 12, returned in frame order.
fn acquisition(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let geometry = Geometry::new(2, 16).unwrap();
    let desc = AcqDescription {
        geometry,
        recording: Recording::full(16),
        params: AcqParams {
            n_frames: FRAMES,
            exposure_ticks: 80_000,
            gap: GapMode::Ns25,
            trigger: TriggerMode::Internal,
            debounce_ticks: 0,
            invert_f0: false,
            invert_veto: false,
        },
        clock_hz: 80e6,
        event_widths: vec![6, 7],
        windows: vec![[1, 5, 6, 9]; 2],
        good_thresholds: vec![2, 2],
        rois: Vec::new(),
        backend: "test".into(),
        software: "test".into(),
    };
    let mut w = AcqFileWriter::create(
        OutputConfig {
            dir: dir.to_path_buf(),
            name: "acq".into(),
            frames_per_file: Some(12),
            overwrite: false,
            swmr: false,
            flush_interval: Duration::from_secs(1),
        },
        desc,
    )
    .unwrap();
    let n = FRAMES as usize;
    let mca: Vec<u32> = (0..n * geometry.mca_words()).map(|i| i as u32).collect();
    let scalers: Vec<u32> = (0..n * geometry.scaler_words())
        .map(|i| (i % 97) as u32 + 1)
        .collect();
    let meta: Vec<FrameMeta> = (0..FRAMES)
        .map(|i| FrameMeta {
            frame_number: i,
            timestamp_ns: 1_700_000_000_000_000_000 + i * 1_000_000,
            ..FrameMeta::default()
        })
        .collect();
    w.write_batch(&mca, &scalers, &[], &meta).unwrap();
    let files = w.finish(&DropRecord::default()).unwrap();
    files.into_iter().map(|(p, _)| p).collect()
}

#[test]
fn acquisitions_convert_and_read_back_equal() {
    let td = tempfile::tempdir().unwrap();
    let parts = acquisition(td.path());
    assert_eq!(parts.len(), 3);
    let out = td.path().join("run");
    let opts = Xspress3Options {
        frames_per_train: 4,
        first_train: 100,
        ..Xspress3Options::default()
    };
    let s = convert_xspress3(&parts, &out, &opts).unwrap();
    assert_eq!((s.frames, s.trains), (FRAMES, 8));
    let dc = DataCollection::open_run(
        &out,
        &OpenOptions {
            use_cache: false,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    assert_eq!(*dc.train_ids, (100..108).collect::<Vec<u64>>());
    let src = "XSPRESS3/DET/XSP3:daqOutput";
    let acq: Vec<_> = parts.iter().map(|p| read_acq_file(p).unwrap()).collect();
    let spectra: Vec<u32> = acq.iter().flat_map(|a| a.data.iter().copied()).collect();
    assert_eq!(
        dc.key(src, "data.spectra")
            .unwrap()
            .ndarray::<u32>()
            .unwrap()
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        spectra
    );
    let dtc: Vec<u64> = acq
        .iter()
        .flat_map(|a| a.dead_time_correction.iter().map(|v| v.to_bits()))
        .collect();
    let got: Vec<u64> = dc
        .key(src, "data.dead_time_correction")
        .unwrap()
        .ndarray::<f64>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect();
    assert_eq!(got, dtc);
    let tids = dc
        .key(src, "data.time")
        .unwrap()
        .train_id_coordinates()
        .unwrap();
    assert_eq!(tids, (0..FRAMES).map(|i| 100 + i / 4).collect::<Vec<_>>());
    let ew = dc.key("XSPRESS3/DET/XSP3", "event_width.value").unwrap();
    assert_eq!(ew.entry_shape, vec![2]);
    let ew: Vec<u32> = ew.ndarray::<u32>().unwrap().iter().copied().collect();
    assert_eq!(ew[..2], [6, 7]);
}

#[test]
fn frames_per_train_zero_and_existing_outputs_are_refused() {
    let td = tempfile::tempdir().unwrap();
    let parts = acquisition(td.path());
    let out = td.path().join("run");
    let zero = Xspress3Options {
        frames_per_train: 0,
        ..Xspress3Options::default()
    };
    assert!(matches!(
        convert_xspress3(&parts, &out, &zero),
        Err(Error::Xspress3 { .. })
    ));
    convert_xspress3(&parts, &out, &Xspress3Options::default()).unwrap();
    assert!(matches!(
        convert_xspress3(&parts, &out, &Xspress3Options::default()),
        Err(Error::Exists(_))
    ));
}
