//! h5daq write path: rows/s appended to HDF5 (resize + hyperslab write through fletcher32).
//!
//! - `append/*`: `daq::hdf::append` into an open file (the SWMR mode's steady state).
//! - `write_period/*`: one daemon write period in close mode: open, append, flush, close
//!   (the reference's write procedure), through `DaqDaemon::write_now` with a bulk job.
//!
//! Cases: a scalar f64 job (100 000 rows per write) and a (1000,) f32 job (1000 rows per write).
//! `benches/scripts/bench_daq.py` runs this beside an h5py reproduction of the reference's
//! write path and writes the ratios.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use h5daq::hdf::{self, Filters, JobLayout};
use h5daq::{
    Column, DaemonConfig, DaqDaemon, DaqJob, DatasetSpec, Drained, Dtype, ReadMode, Reading,
};

fn scratch(name: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "daq-bench-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch directory");
    d
}

struct Case {
    name: &'static str,
    spec: DatasetSpec,
    rows: usize,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "scalar_f64",
            spec: DatasetSpec::scalar("value", Dtype::F64),
            rows: 100_000,
        },
        Case {
            name: "f32x1000",
            spec: DatasetSpec::array("spectrum", Dtype::F32, &[1000]),
            rows: 1000,
        },
    ]
}

fn column(spec: &DatasetSpec, rows: usize) -> Column {
    let n = rows * spec.entry_len();
    match spec.dtype {
        Dtype::F32 => Column::F32((0..n).map(|i| i as f32 * 0.5).collect()),
        _ => Column::F64((0..n).map(|i| i as f64 * 0.5).collect()),
    }
}

fn bench_append(c: &mut Criterion) {
    let mut g = c.benchmark_group("daq/append");
    for case in cases() {
        let dir = scratch(case.name);
        let layout = JobLayout {
            group: "job".into(),
            datasets: vec![case.spec.clone()],
            chunk_length: 64,
            attrs: vec![],
        };
        let file = hdf::create(
            &dir.join("bench.h5"),
            std::slice::from_ref(&layout),
            Filters {
                deflate: None,
                shuffle: false,
            },
            &[],
            4 << 20,
        )
        .expect("create");
        let rows = Drained {
            time: (0..case.rows).map(|i| 1.8e9 + i as f64 * 1e-6).collect(),
            columns: vec![column(&case.spec, case.rows)],
        };
        g.throughput(Throughput::Elements(case.rows as u64));
        g.bench_function(case.name, |b| {
            b.iter(|| hdf::append(&file, &layout, &rows).expect("append"));
        });
        drop(file);
        let _ = std::fs::remove_dir_all(&dir);
    }
    g.finish();
}

fn bench_write_period(c: &mut Criterion) {
    let mut g = c.benchmark_group("daq/write_period");
    for case in cases() {
        let dir = scratch(case.name);
        let col = column(&case.spec, case.rows);
        let n = case.rows;
        let counter = Arc::new(AtomicU64::new(0));
        let c2 = Arc::clone(&counter);
        let job = DaqJob::new("job", vec![case.spec.clone()], move || {
            let base = c2.fetch_add(n as u64, Ordering::Relaxed);
            let time = (0..n)
                .map(|i| 1.8e9 + (base as f64 + i as f64) * 1e-6)
                .collect();
            Ok(Reading::Rows {
                time,
                columns: vec![col.clone()],
            })
        })
        .expect("job")
        .with_bulk(true)
        .with_mode(ReadMode::Triggered)
        .expect("mode");
        let cfg = DaemonConfig {
            directory: dir.clone(),
            write_period: Duration::from_secs(3600),
            auto_write: false,
            ..Default::default()
        };
        let mut daemon = DaqDaemon::new(cfg, vec![job]).expect("daemon");
        daemon.start().expect("start");
        let trig = daemon.trigger("job").expect("trigger");
        let handle = daemon.job_handles()[0].clone();
        g.throughput(Throughput::Elements(case.rows as u64));
        g.bench_function(case.name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // Fill the buffer (not timed), then time one write period.
                    let want = handle.status().rows + n as u64;
                    trig.trigger();
                    while handle.status().rows < want {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    let t = std::time::Instant::now();
                    daemon.write_now().expect("write");
                    total += t.elapsed();
                }
                total
            });
        });
        daemon.stop().expect("stop");
        let _ = std::fs::remove_dir_all(&dir);
    }
    g.finish();
}

/// The per-sample path: getter call, time stamp, conversion into the job's buffer (one row per
/// call, as a periodic or constant job does), then the drain the writer makes.
fn bench_sample(c: &mut Criterion) {
    let mut g = c.benchmark_group("daq/sample");
    let rows = 100_000u64;
    let mut x = 0.0f64;
    let mut job = DaqJob::new(
        "job",
        vec![DatasetSpec::scalar("value", Dtype::F64)],
        move || {
            x += 1.0;
            Ok(Reading::Row(vec![x.into()]))
        },
    )
    .expect("job");
    let handle = job.handle();
    let clock = h5daq::SystemClock;
    let now = move || h5daq::Clock::now(&clock);
    g.throughput(Throughput::Elements(rows));
    g.bench_function("scalar_f64", |b| {
        b.iter(|| {
            for _ in 0..rows {
                job.read_once(&now);
            }
            std::hint::black_box(handle.drain(true));
        })
    });
    g.finish();
}

/// The fixed cost of a close-mode write: open an existing DAQ file for writing, flush, close.
fn bench_open_close(c: &mut Criterion) {
    let mut g = c.benchmark_group("daq/open_close");
    let dir = scratch("open_close");
    let path = dir.join("oc.h5");
    let layout = JobLayout {
        group: "job".into(),
        datasets: vec![DatasetSpec::scalar("value", Dtype::F64)],
        chunk_length: 64,
        attrs: vec![],
    };
    let f = hdf::create(
        &path,
        std::slice::from_ref(&layout),
        Filters {
            deflate: None,
            shuffle: false,
        },
        &[],
        1 << 20,
    )
    .expect("create");
    let rows = Drained {
        time: vec![1.8e9; 1_000_000],
        columns: vec![Column::F64(vec![1.0; 1_000_000])],
    };
    hdf::append(&f, &layout, &rows).expect("append");
    f.close().expect("close");
    g.bench_function("1M_rows_file", |b| {
        b.iter(|| {
            let f = hdf::open_rw(&path, 1 << 20).expect("open");
            f.flush().expect("flush");
            f.close().expect("close");
        })
    });
    let batch = Drained {
        time: vec![1.8e9; 100_000],
        columns: vec![Column::F64(vec![2.0; 100_000])],
    };
    g.throughput(Throughput::Elements(100_000));
    g.bench_function("open_append_100k_close", |b| {
        b.iter(|| {
            let f = hdf::open_rw(&path, 1 << 20).expect("open");
            hdf::append(&f, &layout, &batch).expect("append");
            f.flush().expect("flush");
            f.close().expect("close");
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(
    benches,
    bench_sample,
    bench_append,
    bench_write_period,
    bench_open_close
);
criterion_main!(benches);
