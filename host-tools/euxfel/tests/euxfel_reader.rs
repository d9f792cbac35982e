//! EuXFEL reader tests on runs written by the fixtures crate.

/// Irregular and corrupted files (one test binary with these: fewer links per edit).
mod robust;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use euxfel::{
    split_ranges, DataCollection, Error, FileAccess, OpenOptions, TrainSelection, Warning,
};
use fixtures::euxfel::{make_run, write_file, Device, FileSpec, Format, RunSpec};

fn spec(format: Format) -> RunSpec {
    RunSpec {
        format,
        trains_per_sequence: 20,
        sequences: 2,
        modules: 2,
        frames: 4,
        frame_height: 8,
        frame_width: 8,
        ..RunSpec::default()
    }
}

fn no_cache() -> OpenOptions {
    OpenOptions {
        use_cache: false,
        ..OpenOptions::default()
    }
}

fn make(dir: &Path, s: &RunSpec) -> Vec<PathBuf> {
    match make_run(dir, s) {
        Ok(p) => p,
        Err(e) => panic!("fixture: {e}"),
    }
}

fn ok<T>(r: Result<T, Error>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// The sorted train IDs of files opened one by one: what a run of them must have.
fn union_of_train_ids(files: &[std::sync::Arc<FileAccess>]) -> Vec<u64> {
    let mut tids: Vec<u64> = files.iter().flat_map(|f| f.train_ids.clone()).collect();
    tids.sort_unstable();
    tids.dedup();
    tids
}

/// Independent read of a whole dataset through the hdf5 crate.
fn h5_read<T: hdf5::H5Type + Clone>(path: &Path, ds: &str) -> ndarray::ArrayD<T> {
    let f = hdf5::File::open(path).expect("open");
    f.dataset(ds)
        .expect("dataset")
        .read_dyn::<T>()
        .expect("read")
}

const XGM: &str = "SA1_XTD2_XGM/DOOCS/MAIN";
const XGM_OUT: &str = "SA1_XTD2_XGM/DOOCS/MAIN:output";
const MOD0: &str = "FXE_DET_LPD1M-1/DET/0CH0:xtdf";

#[test]
fn every_format_version_reads_the_same_structure() {
    for format in [Format::V0_5, Format::V1_0, Format::V1_2, Format::V1_3] {
        let td = tempfile::tempdir().expect("tempdir");
        let files = make(td.path(), &spec(format));
        assert_eq!(files.len(), 6);
        let dc = ok(DataCollection::open_run(td.path(), &no_cache()));
        assert_eq!(dc.train_ids.len(), 40, "{format:?}");
        assert_eq!(dc.train_ids[0], 10000);
        assert_eq!(dc.train_ids[39], 10039);
        assert_eq!(dc.control_sources().len(), 4);
        assert_eq!(dc.instrument_sources().len(), 6);
        assert_eq!(dc.detector_sources().len(), 2);
        let fa = ok(FileAccess::open(&files[0]));
        assert_eq!(ok(fa.format_version()), format.as_str());
        let ts = ok(dc.train_timestamps());
        assert_eq!(ts.len(), 40);
        if format == Format::V0_5 {
            assert!(ts.iter().all(Option::is_none));
        } else {
            assert_eq!(ts[0], Some(1_700_000_000_000_000_000 + 10000 * 100_000_000));
            assert_eq!(
                ts[39],
                Some(1_700_000_000_000_000_000 + 10039 * 100_000_000)
            );
        }
        assert_eq!(fa.validity_flag, vec![true; 20]);

        let kd = ok(dc.key(XGM_OUT, "data.intensityTD"));
        assert_eq!(kd.shape(), vec![40, 1000]);
        assert_eq!(kd.dtype.numpy_name(), "float32");
        assert_eq!(ok(kd.data_counts()), vec![1; 40]);
        let arr = ok(kd.ndarray::<f32>());
        // Compare with an independent HDF5 read of both sequence files.
        let a0 = h5_read::<f32>(
            &files[0],
            "INSTRUMENT/SA1_XTD2_XGM/DOOCS/MAIN:output/data/intensityTD",
        );
        let a1 = h5_read::<f32>(
            &files[3],
            "INSTRUMENT/SA1_XTD2_XGM/DOOCS/MAIN:output/data/intensityTD",
        );
        let flat: Vec<f32> = a0.iter().chain(a1.iter()).copied().collect();
        assert_eq!(arr.iter().copied().collect::<Vec<_>>(), flat);
        assert!(
            flat.iter().all(|&v| v != 0.0),
            "fixture data must be non-zero"
        );

        // Detector frames: 4 per train, one chunk per frame.
        let img = ok(dc.key(MOD0, "image.data"));
        assert_eq!(img.shape(), vec![160, 1, 8, 8]);
        assert_eq!(img.entry_shape, vec![1, 8, 8]);
        let coords = ok(img.train_id_coordinates());
        assert_eq!(coords.len(), 160);
        assert_eq!(&coords[..5], &[10000, 10000, 10000, 10000, 10001]);
        let data = ok(img.ndarray::<u16>());
        let d0 = h5_read::<u16>(&files[1], &format!("INSTRUMENT/{MOD0}/image/data"));
        assert_eq!(data.as_slice().map(|s| &s[..d0.len()]), d0.as_slice());

        // Control keys: '.value' may be omitted; strings come back as Strings.
        let st = ok(dc.key(XGM, "state"));
        assert_eq!(st.key, "state.value");
        let s = ok(st.read_strings());
        assert_eq!(s.len(), 40);
        assert_eq!(s[3], "OFF");
        assert_eq!(s[0], "ON");
        let sd = ok(dc.source(XGM));
        match ok(sd.run_value("classId")) {
            euxfel::RunValue::Str(v) => assert_eq!(v, "DoocsXGM"),
            other => panic!("unexpected {other:?}"),
        }

        // Camera without data.
        let nd = ok(dc.key(
            "FXE_XAD_GEC/CAM/CAMERA_NODATA:daqOutput",
            "data.image.pixels",
        ));
        assert_eq!(nd.shape(), vec![0, 16, 24]);
        assert!(nd.is_empty());
        assert_eq!(ok(nd.ndarray::<u16>()).len(), 0);
    }
}

#[test]
fn padding_is_ignored_and_legacy_index_gives_counts() {
    let td = tempfile::tempdir().expect("tempdir");
    let mut s = spec(Format::V1_0);
    s.pad_train_ids = 13;
    s.pad_sources = 7;
    s.legacy_index = true;
    let files = make(td.path(), &s);
    let fa = ok(FileAccess::open(&files[1]));
    assert_eq!(fa.train_ids.len(), 20);
    assert_eq!(fa.instrument_sources.len(), 1);
    let ix = ok(fa.get_index(MOD0, "image"));
    assert_eq!(ix.1, vec![4u64; 20]);
    assert_eq!(ix.0[..3], [0, 4, 8]);
    let dc = ok(DataCollection::open_run(td.path(), &no_cache()));
    assert_eq!(dc.train_ids.len(), 40);
    assert_eq!(ok(dc.key(MOD0, "image.cellId")).shape(), vec![160, 1]);
    let nd = ok(dc.source("FXE_XAD_GEC/CAM/CAMERA_NODATA:daqOutput"));
    assert_eq!(ok(nd.data_counts(None)), vec![0; 40]);
}

#[test]
fn selection_semantics() {
    let td = tempfile::tempdir().expect("tempdir");
    make(td.path(), &spec(Format::V1_2));
    let dc = ok(DataCollection::open_run(td.path(), &no_cache()));
    let p = |s: &str, k: &str| (s.to_string(), k.to_string());

    let sel = ok(dc.select(&[p("*XGM/*", "*")], false, false));
    assert_eq!(sel.all_sources().len(), 4);
    // Control key without wildcard gets '.value'.
    let sel = ok(dc.select(&[p(XGM, "beamPosition.ixPos")], false, false));
    assert_eq!(
        ok(sel.keys_for_source(XGM)),
        BTreeSet::from(["beamPosition.ixPos.value".to_string()])
    );
    // A glob not ending in '*' or '.value' on control keys also gets '.value'.
    let sel = ok(dc.select(&[p(XGM, "beamPosition.i?Pos")], false, false));
    assert_eq!(ok(sel.keys_for_source(XGM)).len(), 2);
    let sel = ok(dc.select(&[p(XGM, "beamPosition.*")], false, false));
    assert_eq!(ok(sel.keys_for_source(XGM)).len(), 4);
    // No match is an error naming the pattern.
    match dc.select(&[p("NOPE*", "*")], false, false) {
        Err(Error::NoMatch { source_glob, .. }) => assert_eq!(source_glob, "NOPE*"),
        other => panic!("expected NoMatch, got {other:?}"),
    }
    // require_all with the camera that has no data -> no trains.
    let sel = ok(dc.select(
        &[p(XGM_OUT, "*"), p("*CAMERA_NODATA:daqOutput", "*")],
        true,
        false,
    ));
    assert_eq!(sel.train_ids.len(), 0);
    let sel = ok(dc.select(
        &[p(XGM_OUT, "*"), p("*CAMERA_NODATA:daqOutput", "*")],
        false,
        true,
    ));
    assert_eq!(sel.train_ids.len(), 40);
    // deselect
    let d = ok(dc.deselect(&[p("*/DET/*", "*")]));
    assert_eq!(d.all_sources().len(), 8);
    let d = ok(dc.deselect(&[p(XGM, "beamPosition.*")]));
    assert!(!ok(d.keys_for_source(XGM)).contains("beamPosition.ixPos.value"));
    assert!(ok(d.keys_for_source(XGM)).contains("state.value"));
}

#[test]
fn train_selection_by_id_and_index() {
    let td = tempfile::tempdir().expect("tempdir");
    make(td.path(), &spec(Format::V1_2));
    let dc = ok(DataCollection::open_run(td.path(), &no_cache()));
    let ids = |sel: TrainSelection| -> Vec<u64> { (*ok(dc.select_trains(&sel)).train_ids).clone() };
    assert_eq!(
        ids(TrainSelection::IdRange(Some(10005), Some(10008))),
        vec![10005, 10006, 10007]
    );
    assert_eq!(
        ids(TrainSelection::IdRange(None, Some(10002))),
        vec![10000, 10001]
    );
    assert_eq!(
        ids(TrainSelection::IdRange(Some(10038), None)),
        vec![10038, 10039]
    );
    assert_eq!(
        ids(TrainSelection::IdRange(Some(5), Some(10001))),
        vec![10000]
    );
    assert!(ids(TrainSelection::IdRange(Some(20000), None)).is_empty());
    assert!(ids(TrainSelection::IdRange(None, Some(5))).is_empty());
    assert_eq!(
        ids(TrainSelection::IdList(vec![10039, 10003, 99])),
        vec![10003, 10039]
    );
    assert_eq!(
        ids(TrainSelection::IndexRange(Some(-2), None, None)),
        vec![10038, 10039]
    );
    assert_eq!(
        ids(TrainSelection::IndexRange(Some(0), Some(6), Some(2))),
        vec![10000, 10002, 10004]
    );
    assert_eq!(
        ids(TrainSelection::IndexList(vec![3, -1])),
        vec![10003, 10039]
    );
    assert!(dc
        .select_trains(&TrainSelection::IndexList(vec![40]))
        .is_err());

    // A selection crossing the sequence boundary reads from both files, in order.
    let kd = ok(dc.key(XGM_OUT, "data.trainId"));
    let kd = ok(kd.select_trains(&TrainSelection::IdRange(Some(10018), Some(10022))));
    assert_eq!(
        ok(kd.ndarray::<u64>()).iter().copied().collect::<Vec<_>>(),
        vec![10018, 10019, 10020, 10021]
    );
    let sel = ok(dc.select_trains(&TrainSelection::IdRange(Some(10018), Some(10022))));
    let t = ok(sel.train_from_id(10020));
    assert!(t.contains_key(XGM));
    assert!(t[XGM_OUT].contains_key("data.intensityTD"));
    assert!(!t["FXE_XAD_GEC/CAM/CAMERA_NODATA:daqOutput"].contains_key("data.image.pixels"));
    assert!(matches!(
        sel.train_from_id(10000),
        Err(Error::TrainId(10000))
    ));
    assert_eq!(sel.trains().count(), 4);
    // Per-train values equal the rows of the bulk read.
    let bulk = ok(ok(sel.key(XGM_OUT, "data.intensityTD")).ndarray::<f32>());
    for (i, item) in sel.trains().enumerate() {
        let (tid, data) = ok(item);
        assert_eq!(tid, 10018 + i as u64);
        match &data[XGM_OUT]["data.intensityTD"] {
            euxfel::TrainValue::Array { shape, bytes, .. } => {
                assert_eq!(shape, &vec![1, 1000]);
                let row: Vec<f32> = bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                assert_eq!(
                    row,
                    bulk.index_axis(ndarray::Axis(0), i)
                        .iter()
                        .copied()
                        .collect::<Vec<_>>()
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        match &data[XGM]["state.value"] {
            euxfel::TrainValue::Strings(s) => assert_eq!(s.len(), 1),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(data[MOD0].len(), 14, "all detector keys have data");
    }
}

#[test]
fn split_arithmetic_matches_extra_data() {
    let lens = |v: Vec<std::ops::Range<usize>>| v.iter().map(|r| r.len()).collect::<Vec<_>>();
    assert_eq!(lens(ok(split_ranges(11, None, Some(8)))), vec![5, 6]);
    assert_eq!(lens(ok(split_ranges(480, None, Some(100)))), vec![96; 5]);
    assert_eq!(lens(ok(split_ranges(10, Some(3), None))), vec![3, 3, 4]);
    assert_eq!(lens(ok(split_ranges(2, Some(5), None))), vec![1, 1]);
    assert_eq!(
        lens(ok(split_ranges(10, Some(4), Some(5)))),
        vec![2, 3, 2, 3]
    );
    assert!(split_ranges(10, None, None).is_err());
    assert!(split_ranges(10, None, Some(0)).is_err());

    let td = tempfile::tempdir().expect("tempdir");
    make(td.path(), &spec(Format::V1_2));
    let dc = ok(DataCollection::open_run(td.path(), &no_cache()));
    let parts = ok(dc.split_trains(Some(3), None));
    assert_eq!(
        parts.iter().map(|p| p.train_ids.len()).collect::<Vec<_>>(),
        vec![13, 13, 14]
    );
    let union = ok(parts[0].union(&[&parts[1], &parts[2]]));
    assert_eq!(union.train_ids, dc.train_ids);
}

#[test]
fn source_conflicts_are_detected() {
    let td = tempfile::tempdir().expect("tempdir");
    let files = make(td.path(), &spec(Format::V1_2));
    // The same DA file twice under another name: same trains for the same sources.
    let dup = td.path().join("RAW-R0450-DA02-S00000.h5");
    std::fs::copy(&files[0], &dup).expect("copy");
    match DataCollection::open_run(td.path(), &no_cache()) {
        Err(Error::SourceConflict { count, sources }) => {
            assert_eq!(count, 8);
            assert!(sources.contains(XGM_OUT));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// A run opened without its map opens the first file of each aggregator first and
/// prefetches the others where that one's metadata was. A sibling laid out
/// differently, or a leader that cannot be read, changes only speed: every file
/// reads as it does alone.
#[test]
fn sibling_read_plans_never_change_what_is_read() {
    let td = tempfile::tempdir().expect("tempdir");
    let s = RunSpec {
        sequences: 3,
        modules: 1,
        ..spec(Format::V1_2)
    };
    let files = make(td.path(), &s);
    // DA01's second sequence file: other sources, ten times the trains, padded
    // index and source lists, so its objects lie elsewhere than in its leader.
    let odd = td.path().join("RAW-R0450-DA01-S00001.h5");
    let mut fs = FileSpec::new(Format::V1_2, 20000, 200);
    fs.train_id_len = 256;
    fs.source_list_len = 9;
    fs.sequence = 1;
    let devices = [
        Device::Xgm {
            name: "SA3_XTD10_XGM/XGM/DOOCS".into(),
        },
        Device::Camera {
            name: "SPB_IRU_CAM/CAM/SIDEMIC".into(),
            with_data: true,
            height: 6,
            width: 5,
        },
    ];
    if let Err(e) = write_file(&odd, &fs, &devices) {
        panic!("fixture: {e}");
    }
    // The LPD module's leader is truncated: it is skipped, its followers still open.
    let leader = td.path().join("RAW-R0450-LPD00-S00000.h5");
    let bytes = std::fs::read(&leader).expect("read");
    std::fs::write(&leader, &bytes[..bytes.len() / 3]).expect("write");

    let alone: Vec<_> = files
        .iter()
        .filter(|p| **p != leader)
        .map(|p| ok(FileAccess::open(p)))
        .collect();
    let tids = union_of_train_ids(&alone);
    let control: BTreeSet<String> = alone
        .iter()
        .flat_map(|f| f.control_sources.clone())
        .collect();
    let instrument: BTreeSet<String> = alone
        .iter()
        .flat_map(|f| f.instrument_sources.clone())
        .collect();
    assert!(control.contains("SA3_XTD10_XGM/XGM/DOOCS"), "{control:?}");
    for threads in [0, 1, 3] {
        let opts = OpenOptions {
            threads,
            ..no_cache()
        };
        let dc = ok(DataCollection::open_run(td.path(), &opts));
        assert_eq!(*dc.train_ids, tids, "threads {threads}");
        assert_eq!(dc.control_sources(), control, "threads {threads}");
        assert_eq!(dc.instrument_sources(), instrument, "threads {threads}");
        match dc.warnings() {
            [Warning::SkippedFile { path, .. }] => assert_eq!(path, &leader),
            other => panic!("threads {threads}: {other:?}"),
        }
    }
}

/// The other files of an aggregator are mapped, and their reads queued, ahead of the
/// threads reading them. A follower that cannot be read (a directory, a FIFO, an empty,
/// truncated or non-HDF5 file) is left out with the error it gives when opened alone,
/// with any number of threads, and the other files read as they do alone.
#[test]
fn files_opened_ahead_fail_as_they_fail_alone() {
    let td = tempfile::tempdir().expect("tempdir");
    let s = RunSpec {
        sequences: 7,
        modules: 1,
        ..spec(Format::V1_2)
    };
    let files = make(td.path(), &s);
    let seq = |n: usize| {
        files
            .iter()
            .find(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                name.contains("-DA01-") && name.ends_with(&format!("-S{n:05}.h5"))
            })
            .unwrap_or_else(|| panic!("no DA01 sequence {n} in {files:?}"))
            .clone()
    };
    let (dir, fifo, empty, truncated, text) = (seq(1), seq(2), seq(3), seq(5), seq(6));
    for p in [&dir, &fifo, &empty, &text] {
        std::fs::remove_file(p).expect("remove");
    }
    std::fs::create_dir(&dir).expect("mkdir");
    test_support::fifo::make(&fifo);
    std::fs::write(&empty, b"").expect("write");
    std::fs::write(&text, b"not HDF5\n").expect("write");
    let bytes = std::fs::read(&truncated).expect("read");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).expect("write");
    let bad = [&dir, &fifo, &empty, &truncated, &text];

    let alone_errors: Vec<(PathBuf, String)> = bad
        .iter()
        .map(|p| {
            let e = FileAccess::open(p).expect_err("a bad file opens alone");
            ((*p).clone(), e.to_string())
        })
        .collect();
    let good: Vec<_> = files
        .iter()
        .filter(|p| !bad.contains(p))
        .map(|p| ok(FileAccess::open(p)))
        .collect();
    let tids = union_of_train_ids(&good);
    for threads in [0, 1, 2, 3] {
        let opts = OpenOptions {
            threads,
            ..no_cache()
        };
        let dc = ok(DataCollection::open_run(td.path(), &opts));
        assert_eq!(*dc.train_ids, tids, "threads {threads}");
        let mut skipped: Vec<(PathBuf, String)> = dc
            .warnings()
            .iter()
            .map(|w| match w {
                Warning::SkippedFile { path, error } => (path.clone(), error.to_string()),
                other => panic!("threads {threads}: {other:?}"),
            })
            .collect();
        skipped.sort();
        let mut expected = alone_errors.clone();
        expected.sort();
        assert_eq!(skipped, expected, "threads {threads}");
    }
}

#[test]
fn bad_files_give_errors_naming_the_file() {
    let td = tempfile::tempdir().expect("tempdir");
    let files = make(td.path(), &spec(Format::V1_2));
    let empty = td.path().join("empty.h5");
    std::fs::write(&empty, b"").expect("write");
    let text = td.path().join("text.h5");
    std::fs::write(&text, b"this is not an HDF5 file at all, just text\n").expect("write");
    for p in [&empty, &text] {
        let e = FileAccess::open(p).expect_err("must fail");
        assert!(e.to_string().contains(&p.display().to_string()), "{e}");
    }
    let missing = td.path().join("missing.h5");
    let e = FileAccess::open(&missing).expect_err("must fail");
    assert!(e.to_string().contains("missing.h5"), "{e}");

    // Truncated copies at many lengths: always an error or a consistent read, never a crash.
    let data = std::fs::read(&files[1]).expect("read");
    for frac in [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 97, 99] {
        let p = td.path().join(format!("trunc{frac}.h5"));
        std::fs::write(&p, &data[..data.len() * frac / 100]).expect("write");
        match FileAccess::open(&p) {
            Err(e) => assert!(e.to_string().contains(&format!("trunc{frac}.h5")), "{e}"),
            Ok(fa) => {
                // Reads of anything beyond the end must fail with an error naming the file.
                if let Ok(dc) = DataCollection::from_files(vec![fa], true, true) {
                    if let Ok(kd) = dc.key(MOD0, "image.data") {
                        if let Err(e) = kd.ndarray::<u16>() {
                            assert!(e.to_string().contains(&format!("trunc{frac}.h5")), "{e}");
                        }
                    }
                }
            }
        }
    }
    // A run directory with only bad files.
    let bad = tempfile::tempdir().expect("tempdir");
    std::fs::write(bad.path().join("RAW-R0001-DA01-S00000.h5"), b"nope").expect("write");
    let opts = no_cache();
    let e = DataCollection::open_run(bad.path(), &opts).expect_err("must fail");
    assert!(e.to_string().contains("RAW-R0001-DA01-S00000.h5"), "{e}");
    match e.skipped_files().as_slice() {
        [Warning::SkippedFile { path, .. }] => {
            assert!(path.ends_with("RAW-R0001-DA01-S00000.h5"))
        }
        other => panic!("{other:?}"),
    }
    let none = tempfile::tempdir().expect("tempdir");
    assert!(matches!(
        DataCollection::open_run(none.path(), &opts),
        Err(Error::NoFiles { .. })
    ));
}

/// Overwrite the index values (first/count) with random numbers, many times, and read
/// every key: the reader must return data or an error, never panic or touch memory
/// outside the map.
#[test]
fn corrupted_index_values_never_panic() {
    let td = tempfile::tempdir().expect("tempdir");
    let mut s = spec(Format::V1_2);
    s.sequences = 1;
    s.modules = 1;
    let files = make(td.path(), &s);
    let src = &files[1];
    // Find the byte ranges of the index datasets through libhdf5 (chunk addresses).
    let f = hdf5::File::open(src).expect("open");
    let mut ranges = Vec::new();
    for g in ["image", "header", "detector", "trailer"] {
        for d in ["first", "count"] {
            let ds = f.dataset(&format!("INDEX/{MOD0}/{g}/{d}")).expect("ds");
            for i in 0..ds.num_chunks().unwrap_or(0) {
                if let Some(ci) = ds.chunk_info(i) {
                    ranges.push((ci.addr as usize, ci.size as usize));
                }
            }
        }
    }
    drop(f);
    assert!(!ranges.is_empty());
    let orig = std::fs::read(src).expect("read");
    let mut rng = fixtures::euxfel::Rng::new(7);
    let mut errors = 0;
    for round in 0..60 {
        let mut data = orig.clone();
        let (addr, size) = ranges[round % ranges.len()];
        let nwords = size / 8;
        for _ in 0..4 {
            let w = (rng.next_u64() as usize) % nwords.max(1);
            let v = match rng.next_u64() % 4 {
                0 => u64::MAX,
                1 => rng.next_u64() % 1000,
                2 => 1 << 40,
                _ => rng.next_u64(),
            };
            data[addr + w * 8..addr + w * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        let p = td.path().join(format!("corrupt{round}.h5"));
        std::fs::write(&p, &data).expect("write");
        let Ok(fa) = FileAccess::open(&p) else {
            errors += 1;
            continue;
        };
        let Ok(dc) = DataCollection::from_files(vec![fa], true, true) else {
            errors += 1;
            continue;
        };
        for key in [
            "image.data",
            "image.cellId",
            "header.pulseCount",
            "detector.data",
            "trailer.status",
        ] {
            match dc.key(MOD0, key) {
                Ok(kd) => {
                    if kd.shape()[0] < 1 << 24 {
                        if let Err(e) = kd.ndarray::<u8>().map(|_| ()).or_else(|_| {
                            let mut buf = vec![0u8; kd.nbytes().unwrap_or(0) as usize];
                            kd.read_into_bytes(&mut buf)
                        }) {
                            assert!(e.to_string().contains(&format!("corrupt{round}.h5")), "{e}");
                            errors += 1;
                        }
                    } else {
                        errors += 1;
                    }
                    let _ = kd.data_counts();
                    let _ = kd.train_id_coordinates().map(|v| v.len());
                }
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    errors += 1;
                }
            }
        }
        let _ = euxfel::display::info(&dc, &Default::default());
    }
    // Corrupting index values must have produced some detected errors.
    assert!(errors > 0);
}
