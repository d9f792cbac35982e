//! Irregular and corrupted files: errors naming the file, never an abort or made-up
//! data; EXtra-data's refusals kept.
//!
//! These tests edit files with libhdf5 in parallel threads, so none of them starts a
//! child process (it would inherit open HDF5 files and their locks).

use std::path::{Path, PathBuf};

use euxfel::display::InfoOptions;
use euxfel::{DataCollection, Error, FileAccess};
use fixtures::euxfel::{make_run, Format, RunSpec};

const XGM_OUT: &str = "SA1_XTD2_XGM/DOOCS/MAIN:output";
const INTENSITY: &str = "INSTRUMENT/SA1_XTD2_XGM/DOOCS/MAIN:output/data/intensityTD";

/// One aggregator file of 10 trains (format 1.2, no detector).
fn da_file(dir: &Path) -> PathBuf {
    let spec = RunSpec {
        format: Format::V1_2,
        trains_per_sequence: 10,
        sequences: 1,
        modules: 0,
        ..RunSpec::default()
    };
    let files = make_run(dir, &spec).expect("fixture");
    files
        .into_iter()
        .find(|p| p.to_string_lossy().contains("DA01"))
        .expect("DA01 file")
}

fn intensity(file: &Path) -> Vec<f32> {
    hdf5::File::open(file)
        .and_then(|f| f.dataset(INTENSITY))
        .and_then(|d| d.read_raw::<f32>())
        .expect("read intensityTD")
}

/// A train ID index claiming 2^40 entries (a chunked dataset resized far past its
/// data) is an error naming the file, not an allocation abort.
#[test]
fn huge_train_id_claim_is_an_error() {
    let td = tempfile::tempdir().expect("tempdir");
    let f = da_file(td.path());
    hdf5::File::open_rw(&f)
        .and_then(|h| h.dataset("INDEX/trainId"))
        .and_then(|d| d.resize(1usize << 40))
        .expect("resize");
    let e = FileAccess::open(&f).expect_err("must be refused");
    assert!(e.to_string().contains(&*f.to_string_lossy()), "{e}");
    assert!(e.to_string().contains("INDEX/trainId"), "{e}");
}

/// A key that is an HDF5 external link reads the linked data.
#[test]
fn external_link_key_reads_the_linked_data() {
    let td = tempfile::tempdir().expect("tempdir");
    let f = da_file(td.path());
    let orig = intensity(&f);
    let doubled: Vec<f32> = orig.iter().map(|v| v * 2.0 + 1.0).collect();
    let ext = td.path().join("linked.h5");
    {
        let e = hdf5::File::create(&ext).expect("create");
        e.new_dataset_builder()
            .with_data(
                &ndarray::Array2::from_shape_vec((10, 1000), doubled.clone()).expect("shape"),
            )
            .create("d")
            .expect("dataset");
        let h = hdf5::File::open_rw(&f).expect("open");
        h.unlink(INTENSITY).expect("unlink");
        h.link_external(&ext.to_string_lossy(), "d", INTENSITY)
            .expect("external link");
    }
    let dc = DataCollection::open_file(&f).expect("open");
    let kd = dc.key(XGM_OUT, "data.intensityTD").expect("key");
    assert_eq!(kd.shape(), vec![10, 1000]);
    let got = kd.ndarray::<f32>().expect("read");
    let got = got.as_slice().expect("contiguous");
    assert!(got == &doubled[..], "read {:?}...", &got[..4]);
}

/// A key stored in an external raw file reads that file, not zeros.
#[test]
fn external_storage_key_reads_the_raw_file() {
    let td = tempfile::tempdir().expect("tempdir");
    let f = da_file(td.path());
    let values: Vec<f32> = (0..10_000).map(|i| i as f32 + 0.5).collect();
    let raw = td.path().join("intensity.raw");
    {
        let h = hdf5::File::open_rw(&f).expect("open");
        h.unlink(INTENSITY).expect("unlink");
        let ds = h
            .new_dataset::<f32>()
            .shape((10, 1000))
            .external(&raw.to_string_lossy(), 0, 40_000)
            .create(INTENSITY)
            .expect("external dataset");
        ds.write_raw(&values).expect("write");
    }
    assert_eq!(std::fs::metadata(&raw).expect("raw file").len(), 40_000);
    let dc = DataCollection::open_file(&f).expect("open");
    let kd = dc.key(XGM_OUT, "data.intensityTD").expect("key");
    let got = kd.ndarray::<f32>().expect("read");
    let got = got.as_slice().expect("contiguous");
    assert!(got == &values[..], "read {:?}...", &got[..4]);
}

/// A train ID twice in one file: EXtra-data refuses it ("1 sources have conflicting
/// data"); so do we, for the sources of that file.
#[test]
fn duplicate_train_id_in_one_file_is_a_conflict() {
    let td = tempfile::tempdir().expect("tempdir");
    let f = da_file(td.path());
    {
        let h = hdf5::File::open_rw(&f).expect("open");
        let ds = h.dataset("INDEX/trainId").expect("trainId");
        let mut t: Vec<u64> = ds.read_raw().expect("read");
        t[5] = t[4];
        ds.write_raw(&t).expect("write");
    }
    match DataCollection::open_file(&f) {
        Err(Error::SourceConflict { count, sources }) => {
            assert!(count > 0);
            assert!(sources.contains(XGM_OUT), "{sources}");
        }
        other => panic!("expected a source conflict, got {other:?}"),
    }
}

/// Index counts past the end of the data: like EXtra-data, the key opens with the
/// index's shape and counts, intact trains read, and a read reaching the missing
/// rows is an error naming the file and dataset.
#[test]
fn index_past_the_data_spares_the_intact_trains() {
    let td = tempfile::tempdir().expect("tempdir");
    let f = da_file(td.path());
    {
        let h = hdf5::File::open_rw(&f).expect("open");
        let ds = h
            .dataset(&format!("INDEX/{XGM_OUT}/data/count"))
            .expect("count");
        let mut c: Vec<u64> = ds.read_raw().expect("read");
        c[9] += 3;
        ds.write_raw(&c).expect("write");
    }
    let dc = DataCollection::open_file(&f).expect("open");
    let kd = dc.key(XGM_OUT, "data.intensityTD").expect("key");
    assert_eq!(kd.shape(), vec![13, 1000]);
    assert_eq!(kd.data_counts().expect("counts")[9], 4);
    match kd.ndarray::<f32>() {
        Err(Error::IndexOutsideData { path, rows, .. }) => {
            assert_eq!(path, f);
            assert_eq!(rows, 10);
        }
        other => panic!("expected IndexOutsideData, got {other:?}"),
    }
    let intact = kd
        .select_trains(&euxfel::TrainSelection::IndexRange(None, Some(-1), None))
        .expect("select");
    let got = intact.ndarray::<f32>().expect("intact trains read");
    assert_eq!(got.as_slice().expect("contiguous"), &intensity(&f)[..9000]);
    // lsxfel --counts and --detail list the key.
    for opts in [
        InfoOptions {
            counts: true,
            ..Default::default()
        },
        InfoOptions {
            details_for_sources: vec!["*XGM*".into()],
            ..Default::default()
        },
    ] {
        let (text, _) = euxfel::display::info(&dc, &opts).expect("info");
        assert!(text.contains(XGM_OUT), "{text}");
    }
}
/// A directory named like a data file is skipped with "is a directory", not the
/// map's "No such device".
#[test]
fn directory_named_h5_is_skipped_clearly() {
    let td = tempfile::tempdir().expect("tempdir");
    da_file(td.path());
    std::fs::create_dir(td.path().join("RAW-R0450-DA02-S00000.h5")).expect("mkdir");
    let opts = euxfel::OpenOptions {
        use_cache: false,
        ..Default::default()
    };
    let dc = DataCollection::open_run(td.path(), &opts).expect("open");
    match dc.warnings() {
        [euxfel::Warning::SkippedFile { path, error }] => {
            assert!(path.ends_with("RAW-R0450-DA02-S00000.h5"));
            assert!(error.to_string().contains("is a directory"), "{error}");
        }
        other => panic!("{other:?}"),
    }
}

/// A FIFO, a device and a socket named like data files are skipped at once, each named
/// with what it is: opening a FIFO for reading would otherwise wait for a writer for ever.
#[test]
fn special_files_named_h5_are_skipped_without_blocking() {
    let td = tempfile::tempdir().expect("tempdir");
    da_file(td.path());
    let fifo = td.path().join("RAW-R0450-DA02-S00000.h5");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(status.success());
    std::os::unix::fs::symlink("/dev/null", td.path().join("RAW-R0450-DA03-S00000.h5"))
        .expect("symlink");
    let _socket =
        std::os::unix::net::UnixListener::bind(td.path().join("RAW-R0450-DA04-S00000.h5"))
            .expect("bind");
    let opts = euxfel::OpenOptions {
        use_cache: false,
        ..Default::default()
    };
    let dc = DataCollection::open_run(td.path(), &opts).expect("open");
    let skipped: Vec<String> = dc
        .warnings()
        .iter()
        .map(|w| match w {
            euxfel::Warning::SkippedFile { path, error } => format!(
                "{}: {error}",
                path.file_name().unwrap_or_default().to_string_lossy()
            ),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    for (file, kind) in [
        ("DA02", "(a FIFO)"),
        ("DA03", "(a character device)"),
        ("DA04", "(a socket)"),
    ] {
        assert!(
            skipped
                .iter()
                .any(|s| s.contains(file) && s.contains(&format!("not a regular file {kind}"))),
            "{skipped:?}"
        );
    }
    assert_eq!(dc.files.len(), 1);
    // The validator reports the FIFO as a file it cannot open, without waiting either.
    let r = euxfel::validation::validate_file(&fifo, &euxfel::validation::Checks::default());
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    assert_eq!(r.problems[0].msg, "Could not open HDF5 file");
    assert!(r.problems[0].fields["error"].contains("not a regular file (a FIFO)"));
}

/// A key written with '/' gets a hint to the '.' form, not a libhdf5 message.
#[test]
fn key_with_slashes_suggests_dots() {
    let td = tempfile::tempdir().expect("tempdir");
    let dc = DataCollection::open_file(da_file(td.path())).expect("open");
    match dc.key(XGM_OUT, "data/intensityTD") {
        Err(e @ Error::KeyName { .. }) => {
            assert!(
                e.to_string().ends_with("did you mean data.intensityTD?"),
                "{e}"
            )
        }
        other => panic!("{other:?}"),
    }
}

/// A file with HDF5's newest format (which the map walk leaves to libhdf5) whose
/// variable-length string points at a global heap object that does not exist:
/// libhdf5 1.10 segfaults following it (`H5HG_read`); the reference is checked
/// first and the file refused with an error naming it.
#[test]
fn corrupt_vlen_string_reference_is_refused_before_libhdf5() {
    use hdf5::types::VarLenUnicode;
    let td = tempfile::tempdir().expect("tempdir");
    let p = td.path().join("RAW-R0001-DA01-S00000.h5");
    let offset = {
        let f = hdf5::File::with_options()
            .with_fapl(|a| a.libver_latest())
            .create(&p)
            .expect("create");
        let s = |v: &[&str]| -> Vec<VarLenUnicode> {
            v.iter().map(|x| x.parse().expect("string")).collect()
        };
        let fv = f
            .new_dataset_builder()
            .with_data(&s(&["1.0"]))
            .create("METADATA/dataFormatVersion")
            .expect("version");
        f.new_dataset_builder()
            .with_data(&s(&["CONTROL/X/Y/Z"]))
            .create("METADATA/dataSources/dataSourceId")
            .expect("sources");
        let tids: Vec<u64> = (1..=10).collect();
        f.new_dataset_builder()
            .with_data(&tids)
            .create("INDEX/trainId")
            .expect("trainId");
        f.new_dataset_builder()
            .with_data(&[1i32; 10])
            .create("INDEX/flag")
            .expect("flag");
        fv.offset().expect("contiguous")
    };
    // The reference is (length u32, collection address u64, object index u32).
    let mut bytes = std::fs::read(&p).expect("read");
    let at = offset as usize + 12;
    bytes[at..at + 4].copy_from_slice(&0x4602u32.to_le_bytes());
    std::fs::write(&p, &bytes).expect("write");
    let e = FileAccess::open(&p).expect_err("must be refused");
    assert!(
        e.to_string()
            .contains("corrupt variable-length string reference"),
        "{e}"
    );
    assert!(e.to_string().contains(&*p.to_string_lossy()), "{e}");
}

/// One huge INDEX count (10^12, 2^63 or u64::MAX) spoils only its own train: like
/// EXtra-data's `train_from_id` and a selection starting after it, every later train
/// reads from its own `first`; the bad trains are refused naming the file, the dataset
/// and the train, before anything is allocated for them; nothing overflows.
#[test]
fn huge_index_counts_spoil_only_their_own_trains() {
    for bad in [[10u64.pow(12), 1 << 63], [u64::MAX, u64::MAX], [1 << 63, 1]] {
        let td = tempfile::tempdir().expect("tempdir");
        let f = da_file(td.path());
        {
            let h = hdf5::File::open_rw(&f).expect("open");
            let ds = h
                .dataset(&format!("INDEX/{XGM_OUT}/data/count"))
                .expect("count");
            let mut c: Vec<u64> = ds.read_raw().expect("read");
            c[5] = bad[0];
            c[6] = bad[1];
            ds.write_raw(&c).expect("write");
        }
        let want = intensity(&f);
        let row = |i: usize| bytemuck::cast_slice::<f32, u8>(&want[i * 1000..(i + 1) * 1000]);
        let dc = DataCollection::open_file(&f).expect("open");
        let kd = dc.key(XGM_OUT, "data.intensityTD").expect("key");
        let tids = kd.train_ids.to_vec();
        let counts = kd.data_counts().expect("counts");
        assert_eq!(counts[5..7], bad, "{bad:?}");
        assert!(counts
            .iter()
            .enumerate()
            .all(|(i, &c)| i == 5 || i == 6 || c == 1));
        let refused = |r: euxfel::Result<_>, tid: u64| match r {
            Err(Error::IndexOutsideData { path, object, .. }) => {
                assert_eq!(path, f);
                assert!(object.contains(&format!("train {tid}")), "{object}");
                assert!(object.contains("intensityTD"), "{object}");
            }
            Err(other) => panic!("train {tid} {bad:?}: {other}"),
            Ok(_) => panic!("train {tid} {bad:?}: read"),
        };
        let is_bad = |i: usize| (i == 5 || i == 6) && bad[i - 5] != 1;
        for (i, &tid) in tids.iter().enumerate() {
            let value = kd.train_value(tid);
            if is_bad(i) {
                refused(value.map(|_| ()), tid);
                continue;
            }
            match value.expect("intact train") {
                Some(euxfel::TrainValue::Array { bytes, shape, .. }) => {
                    assert_eq!(bytes, row(i), "train {i} {bad:?}");
                    assert_eq!(shape, vec![1, 1000]);
                }
                other => panic!("train {i}: {other:?}"),
            }
        }
        // The batched read (xfel-serve's) of the trains after the bad ones.
        let later = kd.train_values(&tids[7..]).expect("later trains");
        for (i, v) in (7..).zip(later) {
            match v {
                Some(euxfel::TrainValue::Array { bytes, .. }) => assert_eq!(bytes, row(i)),
                other => panic!("train {i}: {other:?}"),
            }
        }
        // Whole-key reads: from train 7 on they read, from train 5 on they are refused
        // naming train 5 (not an allocation of the count).
        let from = |i: i64| {
            kd.select_trains(&euxfel::TrainSelection::IndexRange(Some(i), None, None))
                .expect("select")
        };
        let got = from(7).ndarray::<f32>().expect("trains 7..");
        assert_eq!(got.as_slice().expect("contiguous"), &want[7000..]);
        refused(from(5).ndarray::<f32>().map(|_| ()), tids[5]);
        refused(kd.read_bytes().map(|_| ()), tids[5]);
        refused(kd.train_id_coordinates().map(|_| ()), tids[5]);
        // Entry ranges (block reads by position): before the bad trains they read, one
        // reaching into them is refused.
        let first5: Vec<u8> = (0..5).flat_map(row).copied().collect();
        assert_eq!(kd.read_entries(0..5).expect("entries 0..5"), first5);
        refused(kd.read_entries(4..50).map(|_| ()), tids[5]);
        refused(kd.for_each_block(|_| Ok(())), tids[5]);
        // lsxfel --counts and --detail list the key.
        for opts in [
            InfoOptions {
                counts: true,
                ..Default::default()
            },
            InfoOptions {
                details_for_sources: vec!["*XGM*".into()],
                ..Default::default()
            },
        ] {
            let (text, _) = euxfel::display::info(&dc, &opts).expect("info");
            assert!(text.contains(XGM_OUT), "{text}");
        }
    }
}
