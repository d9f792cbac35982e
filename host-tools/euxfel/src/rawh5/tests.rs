//! Tests of the raw walk on hand-made bytes and on files written by libhdf5.

use fixtures::euxfel::{make_run, Format, RunSpec};

use super::*;

const MOD0: &str = "FXE_DET_LPD1M-1/DET/0CH0:xtdf";

/// A one-sequence, one-module run of 20 trains (format 1.2).
fn small_run(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let spec = RunSpec {
        format: Format::V1_2,
        trains_per_sequence: 20,
        sequences: 1,
        modules: 1,
        frames: 2,
        frame_height: 8,
        frame_width: 8,
        ..RunSpec::default()
    };
    make_run(dir, &spec).expect("fixture")
}

/// The walk refuses truncated files itself (superblock end-of-file address).
#[test]
fn truncated_file_is_corrupt() {
    let td = tempfile::tempdir().expect("tempdir");
    let files = small_run(td.path());
    let data = std::fs::read(&files[1]).expect("read");
    assert!(RawFile::new(&data, None).is_ok());
    assert!(matches!(
        RawFile::new(&data[..data.len() - 1], None),
        Err(RawError::Corrupt(_))
    ));
}

#[test]
fn garbage_never_panics() {
    let mut rng = 0x1234_5678_9abc_def0u64;
    for len in [0usize, 7, 8, 64, 512, 4096] {
        for _ in 0..50 {
            let mut b: Vec<u8> = (0..len)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng as u8
                })
                .collect();
            if len >= 16 {
                b[..8].copy_from_slice(&[0x89, b'H', b'D', b'F', b'\r', b'\n', 0x1a, b'\n']);
                b[8] = 0;
                b[13] = 8;
                b[14] = 8;
            }
            if let Ok(f) = RawFile::new(&b, None) {
                let _ = f.read_ints("INDEX/trainId", None);
                let _ = f.read_strings("METADATA/dataSources/dataSourceId");
            }
        }
    }
}

/// Partly written chunked datasets: unallocated chunks read as zeros, like libhdf5.
#[test]
fn sparse_chunks_read_as_zeros() {
    let td = tempfile::tempdir().expect("tempdir");
    let p = td.path().join("sparse.h5");
    {
        let f = hdf5::File::create(&p).expect("create");
        let ds = f
            .new_dataset::<u32>()
            .shape((40, 3))
            .chunk((4, 3))
            .create("d")
            .expect("dataset");
        let block: Vec<u32> = (1..=24).collect();
        let arr = ndarray::Array2::from_shape_vec((8, 3), block).expect("shape");
        ds.write_slice(&arr, (10..18, ..))
            .expect("write rows 10..18");
        let arr2 = ndarray::Array2::from_elem((2, 3), 7u32);
        ds.write_slice(&arr2, (33..35, ..))
            .expect("write rows 33..35");
    }
    let expected: Vec<u32> = hdf5::File::open(&p)
        .and_then(|f| f.dataset("d"))
        .and_then(|d| d.read_raw())
        .expect("read");
    let bytes = std::fs::read(&p).expect("bytes");
    let f = RawFile::new(&bytes, None).expect("raw");
    let ds = f.dataset("d").expect("ds");
    for (start, count) in [(0u64, 40u64), (5, 10), (9, 1), (12, 22), (36, 4), (0, 0)] {
        let mut out = vec![0xffu8; count as usize * 12];
        f.read_row_range(&ds, start, count, 12, &mut out)
            .expect("read_row_range");
        let got: Vec<u32> = out
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let s = start as usize * 3;
        assert_eq!(
            got,
            expected[s..s + count as usize * 3],
            "rows {start}+{count}"
        );
    }
    let mut out = vec![0u8; 12];
    assert!(f.read_row_range(&ds, 40, 1, 12, &mut out).is_err());
}

/// Random byte corruption anywhere in a real file, walked by the pure-Rust index
/// reader: every result is data or an error, never a panic or an out-of-map read.
#[test]
fn fuzzed_files_never_crash_the_raw_index_reader() {
    let td = tempfile::tempdir().expect("tempdir");
    let files = small_run(td.path());
    let orig = std::fs::read(&files[1]).expect("read");
    // The unmodified file reads.
    let f = RawFile::new(&orig, None).expect("parse");
    assert_eq!(f.read_ints("INDEX/trainId", None).expect("tids").len(), 20);
    let mut rng = fixtures::euxfel::Rng::new(99);
    let mut failures = 0;
    for round in 0..400 {
        let mut data = orig.clone();
        let flips = 1 + (rng.next_u64() % 8) as usize;
        // Most metadata sits in the first part of an h5py-layout file.
        let span = if round % 2 == 0 {
            data.len().min(16384)
        } else {
            data.len()
        };
        for _ in 0..flips {
            let at = (rng.next_u64() as usize) % span;
            data[at] = (rng.next_u64() >> 56) as u8;
        }
        if round % 5 == 0 {
            let cut = (rng.next_u64() as usize) % data.len();
            data.truncate(cut);
        }
        let Ok(f) = RawFile::new(&data, None) else {
            failures += 1;
            continue;
        };
        let r1 = f.read_ints("INDEX/trainId", None);
        let r2 = f.read_strings("METADATA/dataSources/dataSourceId");
        let r3 = f.read_ints(&format!("INDEX/{MOD0}/image/first"), Some(20));
        let r4 = f.read_ints(&format!("INDEX/{MOD0}/image/count"), Some(20));
        let _ = f.link(&format!("INSTRUMENT/{MOD0}"));
        if r1.is_err() || r2.is_err() || r3.is_err() || r4.is_err() {
            failures += 1;
        }
    }
    assert!(failures > 0, "corruption was never detected");
}
