//! The writers on mock runs: what comes back through our reader equals the source.

use std::path::Path;

use euxfel::{DataCollection, OpenOptions};
use euxfel_write::WriteOptions;
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
        assert!(
            c.direct_chunks > 0,
            "{format:?}: no chunk was copied directly"
        );
        assert_same(
            &dc,
            &DataCollection::open_file(td.path().join("c.h5")).unwrap(),
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
