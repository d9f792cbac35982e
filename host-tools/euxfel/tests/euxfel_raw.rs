//! The pure-Rust metadata/index reader gives the same answers as the libhdf5 path,
//! and bounds the number of open libhdf5 handles (LRU). One test per binary process:
//! it changes process-wide settings (environment, open-file limit).

use euxfel::{set_max_open_files, DataCollection, FileAccess, OpenOptions};
use fixtures::euxfel::{make_run, Format, RunSpec};

#[test]
fn raw_reader_matches_libhdf5_and_open_files_are_bounded() {
    let td = tempfile::tempdir().expect("tempdir");
    for (i, format) in [Format::V0_5, Format::V1_0, Format::V1_2, Format::V1_3]
        .into_iter()
        .enumerate()
    {
        let dir = td.path().join(format!("r{i}"));
        let spec = RunSpec {
            format,
            trains_per_sequence: 15,
            sequences: 2,
            modules: 3,
            frames: 3,
            frame_height: 4,
            frame_width: 4,
            pad_train_ids: 5 * i,
            pad_sources: 3 * i,
            legacy_index: i == 1,
            ..RunSpec::default()
        };
        let files = make_run(&dir, &spec).expect("fixture");
        for f in &files {
            std::env::remove_var("EUXFEL_NO_RAW");
            let raw = FileAccess::open(f).expect("raw open");
            assert!(
                raw.read_without_libhdf5(),
                "{}: raw path not used",
                f.display()
            );
            assert!(!raw.is_open(), "libhdf5 handle opened by the raw path");
            std::env::set_var("EUXFEL_NO_RAW", "1");
            let lib = FileAccess::open(f).expect("libhdf5 open");
            assert!(!lib.read_without_libhdf5());
            assert_eq!(raw.train_ids, lib.train_ids);
            assert_eq!(raw.validity_flag, lib.validity_flag);
            assert_eq!(raw.control_sources, lib.control_sources);
            assert_eq!(raw.instrument_sources, lib.instrument_sources);
            assert_eq!(raw.legacy_sources, lib.legacy_sources);
            std::env::remove_var("EUXFEL_NO_RAW");
            for src in raw.all_sources() {
                for g in raw.index_groups(&src).expect("groups") {
                    let a = raw.get_index(&src, &g).expect("raw index");
                    std::env::set_var("EUXFEL_NO_RAW", "1");
                    let b = lib.get_index(&src, &g).expect("lib index");
                    std::env::remove_var("EUXFEL_NO_RAW");
                    assert_eq!(a, b, "{src} {g}");
                }
            }
        }
    }

    // Data reads: the map path and the libhdf5 path give the same bytes.
    let dir = td.path().join("r3");
    let opts0 = OpenOptions {
        use_cache: false,
        ..OpenOptions::default()
    };
    let dc = DataCollection::open_run(&dir, &opts0).expect("open");
    for (src, key) in [
        ("FXE_DET_LPD1M-1/DET/1CH0:xtdf", "image.data"),
        ("SA1_XTD2_XGM/DOOCS/MAIN:output", "data.intensityTD"),
        ("SA1_XTD2_XGM/DOOCS/MAIN", "beamPosition.ixPos.value"),
        ("FXE_XAD_GEC/CAM/CAMERA:daqOutput", "data.image.pixels"),
    ] {
        let kd = dc.key(src, key).expect("key");
        let n = kd.nbytes().expect("fixed size") as usize;
        let mut a = vec![0u8; n];
        kd.read_into_bytes(&mut a).expect("map read");
        // Streamed in pieces (map slices, or libhdf5 batches): the same bytes.
        let mut streamed = Vec::new();
        kd.for_each_block(|b| {
            streamed.extend_from_slice(b);
            Ok(())
        })
        .expect("streamed read");
        assert!(streamed == a, "{src} {key}: streamed bytes differ");
        std::env::set_var("EUXFEL_NO_RAW", "1");
        let mut b = vec![1u8; n];
        kd.read_into_bytes(&mut b).expect("libhdf5 read");
        let mut streamed = Vec::new();
        kd.for_each_block(|b| {
            streamed.extend_from_slice(b);
            Ok(())
        })
        .expect("streamed libhdf5 read");
        std::env::remove_var("EUXFEL_NO_RAW");
        assert!(streamed == a, "{src} {key}: streamed libhdf5 bytes differ");
        assert_eq!(a, b, "{src} {key}");
        assert!(a.iter().any(|&x| x != 0));
    }

    // At most 2 libhdf5 handles open while reading keys from 8 files.
    set_max_open_files(2);
    std::env::set_var("EUXFEL_NO_RAW", "1");
    let dir = td.path().join("r2");
    let opts = OpenOptions {
        use_cache: false,
        ..OpenOptions::default()
    };
    let dc = DataCollection::open_run(&dir, &opts).expect("open");
    for m in 0..3 {
        let kd = dc
            .key(&format!("FXE_DET_LPD1M-1/DET/{m}CH0:xtdf"), "image.cellId")
            .expect("key");
        assert_eq!(kd.ndarray::<u16>().expect("read").len(), 90);
        let open = dc.files.iter().filter(|f| f.is_open()).count();
        assert!(open <= 2, "{open} files open");
    }
    let kd = dc
        .key("SA1_XTD2_XGM/DOOCS/MAIN:output", "data.intensityTD")
        .expect("key");
    assert_eq!(kd.shape(), vec![30, 1000]);
    assert!(dc.files.iter().filter(|f| f.is_open()).count() <= 2);
}
