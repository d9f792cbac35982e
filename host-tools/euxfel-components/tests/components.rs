//! Multi-module detectors on fixture runs: identification, stacked reads against the
//! per-module reads, missing modules, min_modules, pulse selection, coordinates, splitting,
//! frame-count errors, and the virtual CXI file read back through libhdf5.

use std::collections::BTreeMap;
use std::path::Path;

use euxfel::{DType, DataCollection, OpenOptions, TrainSelection};
use euxfel_components::cxi::write_virtual_cxi;
use euxfel_components::{
    identify_multimod_detectors, identify_single_detector, ComponentWarning, DetectorOptions,
    DetectorType, Error, FillValue, MultiModDetector, PulseSelection, Pulses, Roi,
};
use fixtures::euxfel::{make_run, write_file, Device, FileSpec, Format, RunSpec};

const SRC: &str = "FXE_DET_LPD1M-1/DET/{}CH0:xtdf";

fn src(m: usize) -> String {
    SRC.replace("{}", &m.to_string())
}

fn open(dir: &Path) -> DataCollection {
    let opts = OpenOptions {
        use_cache: false,
        ..OpenOptions::default()
    };
    DataCollection::open_run(dir, &opts).expect("open run")
}

/// 3 LPD modules, 2 sequences of 5 trains, 4 frames of 4x3 pixels; module 1 lacks its
/// second sequence (trains 10005..10009).
fn run_with_missing_module(dir: &Path) -> DataCollection {
    let spec = RunSpec {
        trains_per_sequence: 5,
        sequences: 2,
        modules: 3,
        frames: 4,
        frame_height: 4,
        frame_width: 3,
        ..RunSpec::default()
    };
    make_run(dir, &spec).expect("fixture run");
    std::fs::remove_file(dir.join("RAW-R0450-LPD01-S00001.h5")).expect("remove");
    open(dir)
}

#[test]
fn identifies_the_detector_and_warns_about_raw_fallback() {
    let td = tempfile::tempdir().expect("tempdir");
    let dc = run_with_missing_module(td.path());
    let found = identify_multimod_detectors(&dc, None);
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        vec![("FXE_DET_LPD1M-1".to_string(), DetectorType::Lpd1M)]
    );
    let det = MultiModDetector::new(DetectorType::Lpd1M, &dc, &DetectorOptions::default())
        .expect("detector");
    assert_eq!(det.warnings(), &[ComponentWarning::RawFallback]);
    assert_eq!(det.source_to_modno.len(), 3);
    let e = MultiModDetector::new(DetectorType::Agipd1M, &dc, &DetectorOptions::default())
        .expect_err("no AGIPD");
    assert!(e
        .to_string()
        .starts_with("This data has no source named '[^/]+_AGIPD1M"));
    let raw_only = DetectorOptions {
        raw: Some(false),
        ..DetectorOptions::default()
    };
    let e = MultiModDetector::new(DetectorType::Lpd1M, &dc, &raw_only).expect_err("no CORR");
    assert!(e.to_string().contains("'FXE_DET_LPD1M-1/CORR/...'"));

    let empty = tempfile::tempdir().expect("tempdir");
    write_file(
        &empty.path().join("RAW-R0450-DA01-S00000.h5"),
        &FileSpec::new(Format::V1_2, 10000, 3),
        &[Device::Xgm {
            name: "SA1_XTD2_XGM/DOOCS/MAIN".into(),
        }],
    )
    .expect("file");
    let e = identify_single_detector(&open(empty.path()), None).expect_err("none");
    assert_eq!(e.to_string(), "No detector sources identified in the data");
}

#[test]
fn stacked_read_equals_module_reads_with_fill_for_missing_data() {
    let td = tempfile::tempdir().expect("tempdir");
    let dc = run_with_missing_module(td.path());
    let det = MultiModDetector::new(DetectorType::Lpd1M, &dc, &DetectorOptions::default())
        .expect("detector");
    let key = det.key("image.data").expect("key");
    assert_eq!(key.shape().expect("shape"), vec![3, 40, 4, 3]);
    let stacked = key
        .ndarray::<u16>(Some(FillValue::Int(7)), false)
        .expect("read");
    for m in 0..3 {
        let module = dc
            .key(&src(m), "image.data")
            .and_then(|k| k.ndarray::<u16>())
            .expect("module");
        let rows = module.shape()[0];
        let flat: Vec<u16> = module.iter().copied().collect();
        let ours: Vec<u16> = stacked
            .index_axis(ndarray::Axis(0), m)
            .iter()
            .copied()
            .collect();
        assert_eq!(&ours[..flat.len()], &flat[..], "module {m}");
        // Module 1 has 20 of the 40 frames; the rest hold the fill value.
        assert_eq!(rows, if m == 1 { 20 } else { 40 });
        assert!(ours[flat.len()..].iter().all(|&v| v == 7));
    }
    let (shape, avail) = key.data_availability(true).expect("availability");
    assert_eq!(shape, vec![16, 40]);
    assert_eq!(avail.iter().filter(|&&a| a).count(), 40 + 20 + 40);

    let gaps = key.ndarray_bytes(None, true).expect("gaps");
    assert_eq!(gaps.shape, vec![16, 40, 4, 3]);
    let module_bytes = 40 * 4 * 3 * 2;
    assert!(gaps.data[3 * module_bytes..].iter().all(|&b| b == 0));

    // Filling while reading equals filling everything first and reading over it, with a
    // pulse selection and module gaps.
    let odd = key
        .select_pulses(PulseSelection::ByIndex(Pulses::Slice {
            start: 1,
            stop: 20,
            step: 2,
        }))
        .expect("pulses");
    for (k, gaps) in [(&key, true), (&odd, false), (&odd, true)] {
        let filled = k
            .ndarray_bytes(Some(FillValue::Int(0x1234)), gaps)
            .expect("read");
        let mut prefilled: Vec<u8> = [0x34u8, 0x12].repeat(filled.data.len() / 2);
        k.read_into_bytes(&mut prefilled, gaps).expect("read into");
        assert_eq!(filled.data, prefilled, "module gaps {gaps}");
        assert!(filled.data.chunks_exact(2).any(|v| v == [0x34, 0x12]));
    }

    // astype float32: the same values converted, NaN where a module has no data.
    for (k, gaps) in [(&key, true), (&odd, false)] {
        let raw = k.ndarray_bytes(None, gaps).expect("read");
        let avail = k.data_availability(gaps).expect("availability").1;
        let conv = k
            .ndarray_bytes_as(&DType::Float(4), None, gaps)
            .expect("astype");
        assert_eq!(
            (conv.dtype.clone(), conv.shape.clone()),
            (DType::Float(4), raw.shape)
        );
        let per_row = conv.data.len() / 4 / avail.len();
        let want: Vec<u16> = bytemuck::pod_collect_to_vec(&raw.data);
        let got: Vec<f32> = bytemuck::pod_collect_to_vec(&conv.data);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            if avail[i / per_row] {
                assert_eq!(*g, f32::from(*w), "element {i}");
            } else {
                assert!(g.is_nan(), "element {i}");
            }
        }
    }
    let e = key
        .ndarray_bytes_as(&DType::UInt(4), None, false)
        .expect_err("u16 as u32");
    assert_eq!(
        e.to_string(),
        "cannot convert uint16 to uint32: converting reads give float32 or float64"
    );
}

#[test]
fn min_modules_pulses_coordinates_and_splits() {
    let td = tempfile::tempdir().expect("tempdir");
    let dc = run_with_missing_module(td.path());
    let all3 = DetectorOptions {
        min_modules: 3,
        ..DetectorOptions::default()
    };
    let det = MultiModDetector::new(DetectorType::Lpd1M, &dc, &all3).expect("detector");
    assert_eq!(det.train_ids(), &[10000, 10001, 10002, 10003, 10004]);
    let e = MultiModDetector::new(
        DetectorType::Lpd1M,
        &dc,
        &DetectorOptions {
            min_modules: 4,
            ..DetectorOptions::default()
        },
    )
    .expect_err("4 modules");
    assert_eq!(e.to_string(), "No data found with >= 4 modules present");

    let key = det.key("image.data").expect("key");
    assert_eq!(
        key.pulse_id_coordinates().expect("pulses")[..4],
        [0, 4, 8, 12]
    );
    assert_eq!(key.cell_id_coordinates().expect("cells")[..4], [0, 1, 2, 3]);
    let full = key.ndarray::<u16>(None, false).expect("full");
    let by_index = key
        .select_pulses(PulseSelection::ByIndex(Pulses::Slice {
            start: 1,
            stop: 3,
            step: 1,
        }))
        .expect("select");
    let by_id = key
        .select_pulses(PulseSelection::ById(Pulses::List(vec![4, 8])))
        .expect("select");
    for sel in [by_index, by_id] {
        assert_eq!(sel.shape().expect("shape"), vec![3, 10, 4, 3]);
        let part = sel.ndarray::<u16>(None, false).expect("part");
        for t in 0..5 {
            for (j, f) in [1usize, 2].into_iter().enumerate() {
                assert_eq!(
                    part.index_axis(ndarray::Axis(1), t * 2 + j),
                    full.index_axis(ndarray::Axis(1), t * 4 + f)
                );
            }
        }
        assert_eq!(sel.pulse_id_coordinates().expect("ids")[..2], [4, 8]);
        assert_eq!(sel.train_id_coordinates()[..3], [10000, 10000, 10001]);
    }

    let parts = det.split_trains(None, None, Some(8)).expect("split");
    let sizes: Vec<usize> = parts.iter().map(|p| p.train_ids().len()).collect();
    // EXtra-data: frames_per_part 8 -> 2 trains per part -> 3 parts of [i*5//3, (i+1)*5//3).
    assert_eq!(sizes, vec![1, 2, 2]);
    assert!(matches!(
        det.split_trains(None, None, None),
        Err(Error::SplitArguments)
    ));
    let two = det
        .select_trains(&TrainSelection::IndexRange(Some(1), Some(3), None))
        .expect("trains");
    assert_eq!(two.train_ids(), &[10001, 10002]);
    assert_eq!(two.frame_counts(), &[4, 4]);
}

#[test]
fn inconsistent_frame_counts_are_an_error() {
    let td = tempfile::tempdir().expect("tempdir");
    for (m, frames) in [(0usize, 2usize), (1, 3)] {
        write_file(
            &td.path().join(format!("RAW-R0450-LPD{m:02}-S00000.h5")),
            &FileSpec::new(Format::V1_2, 500, 3),
            &[Device::Xtdf {
                det: "FXE_DET_LPD1M-1".into(),
                module: m,
                frames,
                height: 2,
                width: 2,
            }],
        )
        .expect("file");
    }
    let e = MultiModDetector::new(
        DetectorType::Lpd1M,
        &open(td.path()),
        &DetectorOptions::default(),
    )
    .expect_err("inconsistent");
    assert_eq!(
        e.to_string(),
        "Inconsistent frame counts for train 500: {2, 3}"
    );
}

#[test]
fn virtual_cxi_reads_back_the_stacked_data() {
    let td = tempfile::tempdir().expect("tempdir");
    let dc = run_with_missing_module(td.path().join("run").as_path());
    let det = MultiModDetector::new(DetectorType::Lpd1M, &dc, &DetectorOptions::default())
        .expect("detector");
    let out = td.path().join("det.cxi");
    let fills = BTreeMap::from([("data".to_string(), FillValue::Int(9))]);
    let summary = write_virtual_cxi(&det, &out, &fills).expect("cxi");
    assert_eq!(summary.frames, 40);
    let stacked = det
        .key("image.data")
        .and_then(|k| k.ndarray::<u16>(Some(FillValue::Int(9)), true))
        .expect("stacked");
    let f = hdf5::File::open(&out).expect("open cxi");
    let data: ndarray::ArrayD<u16> = f
        .dataset("entry_1/instrument_1/detector_1/data")
        .and_then(|d| d.read_dyn())
        .expect("data");
    assert_eq!(data.shape(), &[40, 16, 1, 4, 3]);
    let data = data.index_axis_move(ndarray::Axis(2), 0);
    let mut cxi_order = stacked.clone();
    cxi_order.swap_axes(0, 1);
    assert_eq!(data, cxi_order);
    let tids: Vec<u64> = f
        .dataset("entry_1/trainId")
        .and_then(|d| d.read_raw())
        .expect("trainId");
    assert_eq!(
        tids,
        det.key("image.data").expect("key").train_id_coordinates()
    );
}

#[test]
fn roi_reads_equal_the_region_of_the_whole_read() {
    let td = tempfile::tempdir().expect("tempdir");
    let dc = run_with_missing_module(td.path());
    let det = MultiModDetector::new(DetectorType::Lpd1M, &dc, &DetectorOptions::default())
        .expect("detector");
    let key = det.key("image.data").expect("key");
    // Frames are 4 x 3 (the raw axis of length 1 dropped): rows 1..4, columns 0 and 2.
    let roi: Roi = "1:,::2".parse().expect("roi");
    let cut = key
        .select_roi(roi.clone())
        .and_then(|k| k.select_trains(&TrainSelection::IndexRange(Some(3), Some(8), None)))
        .expect("roi key");
    let whole = key
        .select_trains(&TrainSelection::IndexRange(Some(3), Some(8), None))
        .and_then(|k| k.ndarray::<u16>(Some(FillValue::Int(5)), true))
        .expect("whole");
    assert_eq!(cut.buffer_shape(true).expect("shape"), vec![16, 20, 3, 2]);
    let part = cut
        .ndarray::<u16>(Some(FillValue::Int(5)), true)
        .expect("roi read");
    let expect = whole.slice(ndarray::s![.., .., 1.., ..;2]);
    assert_eq!(part.view(), expect.into_dyn());
    // An index out of range and too many indices are errors, not panics.
    for bad in ["4", "0,0,0"] {
        let e = key.select_roi(bad.parse().expect("parse"));
        assert!(matches!(e, Err(Error::Roi(_))), "{bad}: {e:?}");
    }
}

#[test]
fn trains_yield_each_trains_rows_of_the_stacked_array() {
    let td = tempfile::tempdir().expect("tempdir");
    let dc = run_with_missing_module(td.path());
    let det = MultiModDetector::new(DetectorType::Lpd1M, &dc, &DetectorOptions::default())
        .expect("detector");
    let key = det
        .key("image.data")
        .and_then(|k| k.select_pulses(PulseSelection::ByIndex(Pulses::List(vec![0, 3]))))
        .and_then(|k| k.select_roi("1:3".parse()?))
        .expect("key");
    let fill = Some(FillValue::Int(9));
    let whole = key.ndarray_bytes(fill, false).expect("whole");
    let frame_bytes = whole.data.len() / (whole.shape[0] * whole.shape[1]);
    assert_eq!(whole.shape, vec![3, 20, 2, 3]);
    // Rows of train i of module m in the whole array: 2 selected frames per train.
    let rows_of = |m: usize, i: usize| {
        let at = (m * 20 + 2 * i) * frame_bytes;
        &whole.data[at..at + 2 * frame_bytes]
    };
    let all: Vec<_> = key
        .trains(fill, false)
        .expect("trains")
        .collect::<Result<Vec<_>, _>>()
        .expect("read");
    assert_eq!(all.len(), 10);
    for (i, (tid, a)) in all.iter().enumerate() {
        assert_eq!(*tid, 10000 + i as u64);
        assert_eq!(a.shape, vec![3, 2, 2, 3]);
        for m in 0..3 {
            let got = &a.data[m * 2 * frame_bytes..(m + 1) * 2 * frame_bytes];
            assert_eq!(got, rows_of(m, i), "train {tid} module {m}");
        }
    }
    // Module 1 has no data for trains 10005..10009: skipped with require_all.
    let complete: Vec<u64> = key
        .trains(fill, true)
        .expect("trains")
        .map(|r| r.map(|(t, _)| t))
        .collect::<Result<_, _>>()
        .expect("read");
    assert_eq!(complete, (10000..10005).collect::<Vec<u64>>());
}
