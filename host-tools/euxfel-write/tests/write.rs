//! The writers on mock runs: what comes back through our reader equals the source.

use std::path::Path;

use euxfel::{DataCollection, OpenOptions, TrainSelection};
use euxfel_write::{Error, WriteOptions};
use fixtures::euxfel::{make_run, Format, RunSpec};

fn run(dir: &Path, format: Format) -> DataCollection {
    let spec = RunSpec {
        format,
        trains_per_sequence: 20,
        sequences: 2,
        modules: 2,
        frames: 4,
        frame_height: 8,
        frame_width: 8,
        ..RunSpec::default()
    };
    make_run(dir, &spec).unwrap();
    DataCollection::open_run(dir, &no_cache()).unwrap()
}

fn no_cache() -> OpenOptions {
    OpenOptions {
        use_cache: false,
        ..OpenOptions::default()
    }
}

fn nothing(_: &euxfel_write::Progress) {}

/// Every key of `a` reads the same bytes and train coordinates in `b`.
fn assert_same(a: &DataCollection, b: &DataCollection) {
    assert_eq!(a.train_ids, b.train_ids);
    assert_eq!(a.all_sources(), b.all_sources());
    for src in a.all_sources() {
        assert_eq!(
            a.keys_for_source(&src).unwrap(),
            b.keys_for_source(&src).unwrap(),
            "{src}"
        );
        for key in a.keys_for_source(&src).unwrap() {
            let (ka, kb) = (a.key(&src, &key).unwrap(), b.key(&src, &key).unwrap());
            assert_eq!(ka.shape(), kb.shape(), "{src} {key}");
            assert_eq!(ka.dtype, kb.dtype, "{src} {key}");
            assert_eq!(
                ka.train_id_coordinates().unwrap(),
                kb.train_id_coordinates().unwrap(),
                "{src} {key}"
            );
            if ka.dtype.is_string() {
                assert_eq!(
                    ka.read_strings().unwrap(),
                    kb.read_strings().unwrap(),
                    "{src} {key}"
                );
            } else {
                assert_eq!(
                    ka.read_bytes().unwrap(),
                    kb.read_bytes().unwrap(),
                    "{src} {key}"
                );
            }
        }
    }
}

#[test]
fn copy_and_virtual_read_back_equal_for_every_format() {
    for format in [Format::V0_5, Format::V1_0, Format::V1_2, Format::V1_3] {
        let td = tempfile::tempdir().unwrap();
        let dc = run(&td.path().join("r"), format);
        let c = euxfel_write::write(
            &dc,
            td.path().join("c.h5"),
            &WriteOptions::default(),
            &mut nothing,
        )
        .unwrap();
        // 128-byte unfiltered chunks go through memory, read from the files' maps; the
        // small copy is staged in memory.
        assert_eq!(c.direct_chunks, 0, "{format:?}");
        assert!(c.rows_from_map > 0, "{format:?}: {c:?}");
        assert!(c.staged, "{format:?}");
        assert_same(
            &dc,
            &DataCollection::open_file(td.path().join("c.h5")).unwrap(),
        );
        // Written chunk by chunk straight to the file: the same data.
        let opts = WriteOptions {
            stage_max_bytes: 0,
            ..WriteOptions::default()
        };
        let c0 = euxfel_write::write(&dc, td.path().join("c0.h5"), &opts, &mut nothing).unwrap();
        assert!(!c0.staged, "{format:?}");
        assert_eq!(c0.rows_from_map, c.rows_from_map, "{format:?}");
        assert_same(
            &dc,
            &DataCollection::open_file(td.path().join("c0.h5")).unwrap(),
        );
        let v = euxfel_write::write_virtual(
            &dc,
            td.path().join("v.h5"),
            &WriteOptions::default(),
            &mut nothing,
        )
        .unwrap();
        assert!(v.virtual_mappings > 0);
        assert_same(
            &dc,
            &DataCollection::open_file(td.path().join("v.h5")).unwrap(),
        );
    }
}

#[test]
fn large_chunks_are_copied_as_stored_bytes() {
    let td = tempfile::tempdir().unwrap();
    let spec = RunSpec {
        format: Format::V1_3,
        trains_per_sequence: 5,
        sequences: 2,
        modules: 1,
        frames: 1,
        // One frame per chunk: 256 x 256 u16 = 128 KiB.
        frame_height: 256,
        frame_width: 256,
        ..RunSpec::default()
    };
    make_run(&td.path().join("r"), &spec).unwrap();
    let dc = DataCollection::open_run(td.path().join("r"), &no_cache()).unwrap();
    let c = euxfel_write::write(
        &dc,
        td.path().join("c.h5"),
        &WriteOptions::default(),
        &mut nothing,
    )
    .unwrap();
    assert!(c.direct_chunks >= 10, "{c:?}");
    assert_same(
        &dc,
        &DataCollection::open_file(td.path().join("c.h5")).unwrap(),
    );
}

#[test]
fn segments_that_cannot_be_read_from_the_map_go_through_libhdf5() {
    let td = tempfile::tempdir().unwrap();
    let dir = td.path().join("r");
    let spec = RunSpec {
        format: Format::V1_3,
        trains_per_sequence: 6,
        sequences: 3,
        modules: 1,
        frames: 3,
        frame_height: 4,
        frame_width: 4,
        ..RunSpec::default()
    };
    make_run(&dir, &spec).unwrap();
    // In the middle sequence file, two keys are rewritten with the same values: one
    // compressed, one with a user-defined fill value. Neither is read from the map; the
    // rows of the files before and after are.
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("LPD00"))
        .collect();
    files.sort();
    let src = "INSTRUMENT/FXE_DET_LPD1M-1/DET/0CH0:xtdf/image";
    {
        let f = hdf5::File::open_rw(&files[1]).unwrap();
        let g = f.group(src).unwrap();
        let data: ndarray::ArrayD<u16> = g.dataset("data").unwrap().read_dyn().unwrap();
        g.unlink("data").unwrap();
        g.new_dataset_builder()
            .with_data(&data)
            .chunk(data.shape().to_vec())
            .deflate(4)
            .create("data")
            .unwrap();
        let pulses: ndarray::ArrayD<u64> = g.dataset("pulseId").unwrap().read_dyn().unwrap();
        let mut chunk = pulses.shape().to_vec();
        chunk[0] = 2;
        g.unlink("pulseId").unwrap();
        g.new_dataset_builder()
            .with_data(&pulses)
            .chunk(chunk)
            .fill_value(7u64)
            .create("pulseId")
            .unwrap();
    }
    let dc = DataCollection::open_run(&dir, &no_cache()).unwrap();
    let c = euxfel_write::write(
        &dc,
        td.path().join("c.h5"),
        &WriteOptions::default(),
        &mut nothing,
    )
    .unwrap();
    assert!(
        c.rows_from_map > 0 && c.rows_from_map < c.rows_through_memory,
        "{c:?}"
    );
    assert_same(
        &dc,
        &DataCollection::open_file(td.path().join("c.h5")).unwrap(),
    );
}

#[test]
fn selections_of_sources_keys_and_trains_read_back_equal() {
    let td = tempfile::tempdir().unwrap();
    let dc = run(&td.path().join("r"), Format::V1_3);
    let tids = dc.train_ids.clone();
    let sel = dc
        .select(
            &[
                ("*XGM*".into(), "*".into()),
                ("FXE_DET_LPD1M-1/DET/1CH0:xtdf".into(), "image.*".into()),
            ],
            false,
            false,
        )
        .unwrap()
        .select_trains(&TrainSelection::IdRange(Some(tids[7]), Some(tids[33])))
        .unwrap();
    for virtual_file in [false, true] {
        let out = td.path().join(format!("s{virtual_file}.h5"));
        if virtual_file {
            euxfel_write::write_virtual(&sel, &out, &WriteOptions::default(), &mut nothing)
        } else {
            euxfel_write::write(&sel, &out, &WriteOptions::default(), &mut nothing)
        }
        .unwrap();
        assert_same(&sel, &DataCollection::open_file(&out).unwrap());
    }
}

#[test]
fn an_existing_output_is_kept_without_overwrite() {
    let td = tempfile::tempdir().unwrap();
    let dc = run(&td.path().join("r"), Format::V1_2);
    let out = td.path().join("o.h5");
    std::fs::write(&out, b"keep").unwrap();
    let r = euxfel_write::write(&dc, &out, &WriteOptions::default(), &mut nothing);
    assert!(matches!(r, Err(Error::Exists(_))), "{r:?}");
    assert_eq!(std::fs::read(&out).unwrap(), b"keep");
    let opts = WriteOptions {
        overwrite: true,
        ..WriteOptions::default()
    };
    euxfel_write::write(&dc, &out, &opts, &mut nothing).unwrap();
    assert_same(&dc, &DataCollection::open_file(&out).unwrap());
}

#[test]
fn a_source_file_changing_during_the_write_leaves_no_output() {
    use std::io::Write;
    let td = tempfile::tempdir().unwrap();
    let dc = run(&td.path().join("r"), Format::V1_2);
    let victim = dc.files[0].path.clone();
    let out = td.path().join("v.h5");
    let mut grow = |p: &euxfel_write::Progress| {
        if p.datasets_done == 1 {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&victim)
                .unwrap();
            f.write_all(&[0u8; 8]).unwrap();
        }
    };
    let r = euxfel_write::write_virtual(&dc, &out, &WriteOptions::default(), &mut grow);
    match r {
        Err(Error::SourceChanged { path, .. }) => assert_eq!(path, victim),
        other => panic!("expected SourceChanged, got {other:?}"),
    }
    let left: Vec<_> = std::fs::read_dir(td.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("r")]);
}

#[test]
fn a_stop_request_ends_every_kind_of_write_leaving_nothing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let td = tempfile::tempdir().unwrap();
    let dir = td.path().join("r");
    let dc = run(&dir, Format::V1_3);
    for kind in ["copy", "virtual", "overview"] {
        let stop = Arc::new(AtomicBool::new(false));
        let opts = WriteOptions {
            stop: Some(Arc::clone(&stop)),
            ..WriteOptions::default()
        };
        // As a signal handler would, part-way through.
        let mut at_second = |p: &euxfel_write::Progress| {
            if p.datasets_done == 2 {
                stop.store(true, Ordering::Relaxed);
            }
        };
        let out = td.path().join(format!("{kind}.h5"));
        let r = match kind {
            "copy" => euxfel_write::write(&dc, &out, &opts, &mut at_second),
            "virtual" => euxfel_write::write_virtual(&dc, &out, &opts, &mut at_second),
            _ => euxfel_write::write_overview(&dir, None, &opts, &mut at_second),
        };
        let want = if kind == "overview" {
            dir.join("overview.h5")
        } else {
            out
        };
        match r {
            Err(Error::Interrupted(p)) => assert_eq!(p, want, "{kind}"),
            other => panic!("{kind}: expected Interrupted, got {other:?}"),
        }
        let left: Vec<_> = std::fs::read_dir(td.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("r")], "{kind}");
        for e in std::fs::read_dir(&dir).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                name != "overview.h5" && !name.contains("partial"),
                "{kind}: {name} left in the run directory"
            );
        }
    }
}

#[test]
fn overview_files_are_used_by_the_reader_when_valid() {
    let td = tempfile::tempdir().unwrap();
    let dir = td.path().join("r");
    let dc = run(&dir, Format::V1_2);
    let s =
        euxfel_write::write_overview(&dir, None, &WriteOptions::default(), &mut nothing).unwrap();
    assert_eq!(s.path, dir.join("overview.h5"));
    assert!(euxfel_write::check_overview(&dir, None).unwrap());
    let via = DataCollection::open_run(&dir, &no_cache()).unwrap();
    assert_eq!(via.files.len(), 1);
    assert_eq!(via.files[0].filename(), "overview.h5");
    assert_same(&dc, &via);
    // A new file in the run makes it outdated, and so does a changed size: the run's own
    // files are opened again.
    std::fs::write(dir.join("RAW-R0450-DA99-S00000.h5"), b"").unwrap();
    assert!(!euxfel_write::check_overview(&dir, None).unwrap());
    std::fs::remove_file(dir.join("RAW-R0450-DA99-S00000.h5")).unwrap();
    assert!(euxfel_write::check_overview(&dir, None).unwrap());
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&dc.files[0].path)
            .unwrap();
        f.write_all(&[0u8; 8]).unwrap();
    }
    assert!(!euxfel_write::check_overview(&dir, None).unwrap());
    let direct = DataCollection::open_run(&dir, &no_cache()).unwrap();
    assert!(direct.files.len() > 1);
}
