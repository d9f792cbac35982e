//! EuXFEL reading: KeyData::read_into throughput for a large uncompressed key, and
//! opening a run (metadata of every file) with and without the run map.
//!
//! By default a fixture run is written to a temporary directory. To measure an
//! existing run, set `EUXFEL_BENCH_RUN` (directory) and optionally
//! `EUXFEL_BENCH_SOURCE` / `EUXFEL_BENCH_KEY` (default: the first XTDF module's
//! `image.data`). benches/scripts/bench_lsxfel.sh uses this to compare with h5py.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use euxfel::{DataCollection, OpenOptions};
use fixtures::euxfel::{make_run, Format, RunSpec};

struct Target {
    _tmp: Option<tempfile::TempDir>,
    run: PathBuf,
    source: String,
    key: String,
}

fn target() -> Target {
    let source = std::env::var("EUXFEL_BENCH_SOURCE")
        .unwrap_or_else(|_| "FXE_DET_LPD1M-1/DET/0CH0:xtdf".to_string());
    let key = std::env::var("EUXFEL_BENCH_KEY").unwrap_or_else(|_| "image.data".to_string());
    if let Ok(run) = std::env::var("EUXFEL_BENCH_RUN") {
        return Target {
            _tmp: None,
            run: PathBuf::from(run),
            source,
            key,
        };
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let spec = RunSpec {
        format: Format::V1_2,
        trains_per_sequence: 100,
        sequences: 4,
        modules: 1,
        frames: 32,
        frame_height: 64,
        frame_width: 64,
        ..RunSpec::default()
    };
    make_run(tmp.path(), &spec).expect("fixture run");
    Target {
        run: tmp.path().to_path_buf(),
        _tmp: Some(tmp),
        source,
        key,
    }
}

fn bench(c: &mut Criterion) {
    let t = target();
    let opts = OpenOptions {
        use_cache: false,
        ..OpenOptions::default()
    };
    let dc = DataCollection::open_run(&t.run, &opts).expect("open run");
    let kd = dc.key(&t.source, &t.key).expect("key");
    let n = kd.nbytes().expect("fixed-size dtype") as usize;
    let mut buf = vec![0u8; n];
    let mut g = c.benchmark_group("euxfel_keydata");
    g.throughput(Throughput::Bytes(n as u64));
    g.sample_size(10);
    g.bench_function("read_into", |b| {
        b.iter(|| kd.read_into_bytes(&mut buf).expect("read"))
    });
    g.finish();

    let mut g = c.benchmark_group("euxfel_open_run");
    g.sample_size(10);
    g.bench_function("no_run_map", |b| {
        b.iter(|| DataCollection::open_run(&t.run, &opts).expect("open"))
    });
    let cached = OpenOptions::default();
    DataCollection::open_run(&t.run, &cached).expect("write map");
    g.bench_function("with_run_map", |b| {
        b.iter(|| DataCollection::open_run(&t.run, &cached).expect("open"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
