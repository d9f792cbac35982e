//! DaqJob + DaqDaemon against real HDF5 files: schedule timing, rollover with an injected
//! clock, renaming, attributes, de-duplication, errors, directory creation, size rollover.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use h5daq::time::parse_compact_stamp;
use h5daq::{
    parse_file_name, AttrValue, DaemonConfig, DaqDaemon, DaqJob, DatasetSpec, Dtype, Entry,
    ManualClock, ReadMode, Reading, Rollover, WriteMode,
};

fn h5_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "h5"))
        .collect();
    v.sort();
    v
}

fn read_f64(file: &hdf5::File, path: &str) -> Vec<f64> {
    file.dataset(path).unwrap().read_raw::<f64>().unwrap()
}

fn attr_f64(file: &hdf5::File, name: &str) -> f64 {
    file.attr(name).unwrap().read_scalar::<f64>().unwrap()
}

fn attr_u64(file: &hdf5::File, name: &str) -> u64 {
    file.attr(name).unwrap().read_scalar::<u64>().unwrap()
}

/// Waits (bounded) until `f` holds.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn cfg(dir: &Path) -> DaemonConfig {
    DaemonConfig {
        name: "test".into(),
        directory: dir.to_path_buf(),
        write_period: Duration::from_millis(200),
        ..Default::default()
    }
}

#[test]
fn ten_ms_job_over_two_seconds_gives_about_200_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0.0;
    let job = DaqJob::new(
        "fast",
        vec![DatasetSpec::scalar("x", Dtype::F64)],
        move || {
            n += 1.0;
            Ok(Reading::Row(vec![n.into()]))
        },
    )
    .unwrap()
    .with_mode(ReadMode::Periodic(Duration::from_millis(10)))
    .unwrap();
    let mut d = DaqDaemon::new(cfg(dir.path()), vec![job]).unwrap();
    d.start().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let handle = d.job_handles()[0].clone();
    let report = d.stop().unwrap();
    let status = handle.status();
    assert_eq!(report.files.len(), 1);
    let f = hdf5::File::open(&report.files[0]).unwrap();
    let x = read_f64(&f, "fast/x");
    assert_eq!(x.len() as u64, status.rows, "every row read was written");
    assert_eq!(status.written, status.rows);
    assert_eq!(status.buffered, 0);
    assert_eq!(status.reads, status.rows);
    let t = read_f64(&f, "fast/time");
    // 2 s / 10 ms = 200 reads (+1 for the read at t=0); a loaded 2-core machine may miss some
    // slots (missed slots are skipped, never bunched, and counted).
    assert!((150..=202).contains(&x.len()), "{} rows", x.len());
    assert_eq!(t.len(), x.len());
    assert!(
        x.windows(2).all(|w| w[1] == w[0] + 1.0),
        "no row lost between writes"
    );
    let span = t[t.len() - 1] - t[0];
    assert!((1.8..2.2).contains(&span), "time span {span}");
}

/// A triggered job stamped by a manual clock; returns the job, its trigger and a counter.
fn triggered_job(group: &str, value: Arc<Mutex<f64>>) -> DaqJob {
    DaqJob::new(
        group,
        vec![DatasetSpec::scalar("v", Dtype::F32)],
        move || {
            let v = *value.lock().unwrap();
            Ok(Reading::Row(vec![v.into()]))
        },
    )
    .unwrap()
    .with_mode(ReadMode::Triggered)
    .unwrap()
}

#[test]
fn calendar_rollover_with_an_injected_clock_splits_at_midnight_and_chains_files() {
    midnight_rollover(WriteMode::Close);
}

#[test]
fn calendar_rollover_in_swmr_mode() {
    midnight_rollover(WriteMode::Swmr);
}

fn midnight_rollover(mode: WriteMode) {
    let dir = tempfile::tempdir().unwrap();
    let t0 = parse_compact_stamp("20261121T235958.250Z").unwrap();
    let clock = Arc::new(ManualClock::new(t0));
    let value = Arc::new(Mutex::new(1.0));
    let job = triggered_job("env", Arc::clone(&value));
    let c = DaemonConfig {
        clock: clock.clone(),
        auto_write: false,
        mode,
        attrs: vec![("beamline".into(), AttrValue::Str("P06".into()))],
        ..cfg(dir.path())
    };
    let mut d = DaqDaemon::new(c, vec![job]).unwrap();
    d.start().unwrap();
    let trig = d.trigger("env").unwrap();
    let handle = d.job_handles()[0].clone();
    let sample = |t: f64, v: f64, total: u64| {
        clock.set(t);
        *value.lock().unwrap() = v;
        trig.trigger();
        wait_for("the triggered read", || handle.status().rows == total);
    };
    sample(t0 + 0.5, 1.0, 1);
    sample(t0 + 1.5, 2.0, 2);
    d.write_now().unwrap();
    // Past midnight: one sample before (buffered, not yet written) and two after.
    sample(t0 + 1.7, 3.0, 3);
    let midnight = parse_compact_stamp("20261122T000000.000Z").unwrap();
    sample(midnight + 0.25, 4.0, 4);
    sample(midnight + 0.5, 5.0, 5);
    clock.set(midnight + 1.0);
    let r = d.write_now().unwrap();
    assert_eq!(
        r.files_closed.len(),
        1,
        "the rollover closed the first file"
    );
    clock.set(midnight + 2.0);
    let report = d.stop().unwrap();
    assert_eq!(report.files.len(), 2);
    let names: Vec<String> = report
        .files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into())
        .collect();
    assert_eq!(names[0], "DAQ_20261121T235958.250Z_20261121T235959.999Z.h5");
    assert_eq!(names[1], "DAQ_20261122T000000.000Z_20261122T000002.000Z.h5");
    assert_eq!(
        h5_files(dir.path()),
        report.files,
        "nothing else left in the directory"
    );

    let a = hdf5::File::open(&report.files[0]).unwrap();
    let b = hdf5::File::open(&report.files[1]).unwrap();
    let va: Vec<f32> = a.dataset("env/v").unwrap().read_raw().unwrap();
    let vb: Vec<f32> = b.dataset("env/v").unwrap().read_raw().unwrap();
    assert_eq!(va, vec![1.0, 2.0, 3.0]);
    assert_eq!(vb, vec![4.0, 5.0]);
    assert_eq!(read_f64(&a, "env/time"), vec![t0 + 0.5, t0 + 1.5, t0 + 1.7]);
    assert_eq!(
        read_f64(&b, "env/time"),
        vec![midnight + 0.25, midnight + 0.5]
    );
    // Run and file attributes really written; ids chain.
    assert_eq!(attr_f64(&a, "run_start"), t0);
    assert_eq!(attr_f64(&a, "file_start"), t0);
    assert_eq!(attr_f64(&a, "file_end"), midnight);
    assert_eq!(attr_f64(&b, "file_start"), midnight);
    assert_eq!(attr_f64(&b, "file_end"), midnight + 2.0);
    assert_eq!(attr_f64(&b, "run_end"), midnight + 2.0);
    assert_eq!(
        attr_f64(&a, "run_end"),
        midnight + 2.0,
        "run_end goes into earlier files too"
    );
    assert_eq!(attr_u64(&a, "previous_file_id"), 0);
    assert_ne!(attr_u64(&a, "file_id"), 0);
    assert_eq!(attr_u64(&a, "following_file_id"), attr_u64(&b, "file_id"));
    assert_eq!(attr_u64(&b, "previous_file_id"), attr_u64(&a, "file_id"));
    assert_eq!(attr_u64(&b, "following_file_id"), 0);
    let bl: hdf5::types::VarLenUnicode = a.attr("beamline").unwrap().read_scalar().unwrap();
    assert_eq!(bl.as_str(), "P06");
    let ri: hdf5::types::VarLenUnicode =
        a.attr("rollover_interval").unwrap().read_scalar().unwrap();
    assert_eq!(ri.as_str(), "1 day");
}

#[test]
fn hourly_rollover_skips_intervals_without_data() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = parse_compact_stamp("20261121T103000.000Z").unwrap();
    let clock = Arc::new(ManualClock::new(t0));
    let value = Arc::new(Mutex::new(1.0));
    let job = triggered_job("g", Arc::clone(&value));
    let c = DaemonConfig {
        clock: clock.clone(),
        auto_write: false,
        rollover: "2 hours".parse::<Rollover>().unwrap(),
        ..cfg(dir.path())
    };
    let mut d = DaqDaemon::new(c, vec![job]).unwrap();
    d.start().unwrap();
    let trig = d.trigger("g").unwrap();
    let h = d.job_handles()[0].clone();
    clock.set(t0 + 60.0);
    trig.trigger();
    wait_for("read 1", || h.status().rows == 1);
    // Five hours later: 12:00-14:00 had no data and gets no file.
    let later = parse_compact_stamp("20261121T153000.000Z").unwrap();
    clock.set(later);
    trig.trigger();
    wait_for("read 2", || h.status().rows == 2);
    d.write_now().unwrap();
    let report = d.stop().unwrap();
    let names: Vec<String> = report
        .files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into())
        .collect();
    assert_eq!(
        names,
        vec![
            "DAQ_20261121T103000.000Z_20261121T115959.999Z.h5".to_string(),
            "DAQ_20261121T140000.000Z_20261121T153000.000Z.h5".to_string()
        ]
    );
}

#[test]
fn rows_at_the_boundary_go_to_the_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = parse_compact_stamp("20261121T100059.000Z").unwrap();
    let boundary = parse_compact_stamp("20261121T100100.000Z").unwrap();
    let clock = Arc::new(ManualClock::new(t0));
    let value = Arc::new(Mutex::new(0.0));
    let job = triggered_job("g", Arc::clone(&value));
    let c = DaemonConfig {
        clock: clock.clone(),
        auto_write: false,
        rollover: "1 minute".parse().unwrap(),
        ..cfg(dir.path())
    };
    let mut d = DaqDaemon::new(c, vec![job]).unwrap();
    d.start().unwrap();
    let (trig, h) = (d.trigger("g").unwrap(), d.job_handles()[0].clone());
    for (i, t) in [boundary - 0.001, boundary, boundary + 0.001]
        .into_iter()
        .enumerate()
    {
        clock.set(t);
        trig.trigger();
        wait_for("read", || h.status().rows == i as u64 + 1);
    }
    let report = d.stop().unwrap();
    let a = hdf5::File::open(&report.files[0]).unwrap();
    let b = hdf5::File::open(&report.files[1]).unwrap();
    assert_eq!(read_f64(&a, "g/time"), vec![boundary - 0.001]);
    assert_eq!(read_f64(&b, "g/time"), vec![boundary, boundary + 0.001]);
}

#[test]
fn size_rollover_renames_each_file_to_its_real_end_and_loses_no_row() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(
        parse_compact_stamp("20261121T120000.000Z").unwrap(),
    ));
    let count = Arc::new(AtomicU64::new(0));
    let c2 = Arc::clone(&count);
    let job = DaqJob::new(
        "bulk",
        vec![DatasetSpec::array("spec", Dtype::U16, &[256])],
        move || {
            let base = c2.fetch_add(100, Ordering::SeqCst);
            let time = (0..100)
                .map(|i| 1.795_e9 + (base + i) as f64 * 1e-3)
                .collect();
            let data: Vec<u16> = (0..100 * 256)
                .map(|i| ((base as usize * 256 + i) % 65_536) as u16)
                .collect();
            Ok(Reading::Rows {
                time,
                columns: vec![h5daq::Column::U16(data)],
            })
        },
    )
    .unwrap()
    .with_bulk(true)
    .with_mode(ReadMode::Triggered)
    .unwrap();
    let c = DaemonConfig {
        clock: clock.clone(),
        auto_write: false,
        max_file_bytes: Some(200_000),
        ..cfg(dir.path())
    };
    let mut d = DaqDaemon::new(c, vec![job]).unwrap();
    d.start().unwrap();
    let (trig, h) = (d.trigger("bulk").unwrap(), d.job_handles()[0].clone());
    for i in 1..=10u64 {
        trig.trigger();
        wait_for("bulk read", || h.status().rows == i * 100);
        clock.advance(1.0);
        d.write_now().unwrap();
    }
    let report = d.stop().unwrap();
    assert!(report.files.len() >= 3, "files: {:?}", report.files);
    let mut total = 0;
    let mut prev_end: Option<f64> = None;
    for p in &report.files {
        let name = p.file_name().unwrap().to_str().unwrap();
        let (from, to) = parse_file_name("DAQ", name).unwrap();
        let f = hdf5::File::open(p).unwrap();
        assert!(
            (attr_f64(&f, "file_end") - to).abs() < 1e-3,
            "{name}: renamed to the real end"
        );
        assert!((attr_f64(&f, "file_start") - from).abs() < 1e-3);
        if let Some(e) = prev_end {
            assert!(
                (from - e).abs() < 1e-3,
                "{name} starts where the previous ended"
            );
        }
        prev_end = Some(to);
        let spec = f.dataset("bulk/spec").unwrap();
        assert_eq!(spec.shape()[1], 256);
        let data: Vec<u16> = spec.read_raw().unwrap();
        let first_row = total;
        for (k, x) in data.iter().enumerate() {
            assert_eq!(*x as usize, (first_row * 256 + k) % 65_536);
        }
        total += spec.shape()[0];
    }
    assert_eq!(total, 1000);
}

#[test]
fn dedup_keeps_first_and_last_of_unchanged_values() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_795_000_000.0));
    let value = Arc::new(Mutex::new(0.0));
    let job = triggered_job("d", Arc::clone(&value)).with_dedup(true);
    let c = DaemonConfig {
        clock: clock.clone(),
        auto_write: false,
        ..cfg(dir.path())
    };
    let mut d = DaqDaemon::new(c, vec![job]).unwrap();
    d.start().unwrap();
    let (trig, h) = (d.trigger("d").unwrap(), d.job_handles()[0].clone());
    let seq = [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 3.0, 3.0, 3.0];
    for (i, v) in seq.iter().enumerate() {
        clock.set(1_795_000_000.0 + i as f64);
        *value.lock().unwrap() = *v;
        trig.trigger();
        // Until the row is buffered (a read counts when it starts, before the time is taken).
        wait_for("read", || {
            let st = h.status();
            st.rows + st.deduplicated == i as u64 + 1
        });
        if i == 5 {
            d.write_now().unwrap();
        }
    }
    let st = h.status();
    assert_eq!(st.deduplicated, 4);
    let report = d.stop().unwrap();
    let f = hdf5::File::open(&report.files[0]).unwrap();
    let v: Vec<f32> = f.dataset("d/v").unwrap().read_raw().unwrap();
    assert_eq!(v, vec![0.0, 0.0, 1.0, 1.0, 2.0, 3.0, 3.0]);
    let t: Vec<f64> = read_f64(&f, "d/time")
        .iter()
        .map(|t| t - 1_795_000_000.0)
        .collect();
    assert_eq!(t, vec![0.0, 3.0, 4.0, 6.0, 7.0, 8.0, 10.0]);
}

#[test]
fn getter_errors_are_counted_and_the_handler_runs_after_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let c2 = Arc::clone(&calls);
    let handled = Arc::new(Mutex::new(Vec::new()));
    let h2 = Arc::clone(&handled);
    // Fails on calls 2-5 (4 in a row), panics on call 7, else returns its call number.
    let job = DaqJob::new("e", vec![DatasetSpec::scalar("n", Dtype::I64)], move || {
        let n = c2.fetch_add(1, Ordering::SeqCst) + 1;
        match n {
            2..=5 => Err(format!("sensor timeout on call {n}").into()),
            7 => panic!("bug in getter"),
            8 => Ok(Reading::Row(vec![Entry::from(1.5)])), // not an integer: counted as an error
            _ => Ok(Reading::Row(vec![(n as i64).into()])),
        }
    })
    .unwrap()
    .with_mode(ReadMode::Triggered)
    .unwrap()
    .with_error_handler(3, move |r| {
        h2.lock()
            .unwrap()
            .push((r.consecutive, r.error.to_string()))
    });
    let mut d = DaqDaemon::new(
        DaemonConfig {
            auto_write: false,
            ..cfg(dir.path())
        },
        vec![job],
    )
    .unwrap();
    d.start().unwrap();
    let (trig, h) = (d.trigger("e").unwrap(), d.job_handles()[0].clone());
    for i in 1..=9 {
        trig.trigger();
        wait_for("read", || h.status().reads == i);
    }
    let st = h.status();
    assert_eq!(st.errors, 6);
    assert_eq!(st.consecutive_errors, 0, "call 9 succeeded");
    assert_eq!(st.rows, 3);
    let calls_seen = handled.lock().unwrap().clone();
    assert_eq!(
        calls_seen.len(),
        2,
        "handler after the 3rd and 4th consecutive error: {calls_seen:?}"
    );
    assert_eq!(calls_seen[0].0, 3);
    assert!(calls_seen[0].1.contains("sensor timeout on call 4"));
    let report = d.stop().unwrap();
    let f = hdf5::File::open(&report.files[0]).unwrap();
    let n: Vec<i64> = f.dataset("e/n").unwrap().read_raw().unwrap();
    assert_eq!(n, vec![1, 6, 9]);
}

#[test]
fn a_missing_output_directory_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let deep = dir.path().join("a/b/c");
    let job = DaqJob::new("g", vec![DatasetSpec::scalar("x", Dtype::F64)], || {
        Ok(Reading::Row(vec![1.0.into()]))
    })
    .unwrap();
    let mut d = DaqDaemon::new(cfg(&deep), vec![job]).unwrap();
    d.start().unwrap();
    let report = d.stop().unwrap();
    assert_eq!(report.files.len(), 1);
    assert!(report.files[0].starts_with(&deep));
    // A path that cannot be a directory is an error naming it, not a panic.
    let file = dir.path().join("plain");
    std::fs::write(&file, b"x").unwrap();
    let job = DaqJob::new("g", vec![DatasetSpec::scalar("x", Dtype::F64)], || {
        Ok(Reading::Skip)
    })
    .unwrap();
    let mut d = DaqDaemon::new(cfg(&file.join("sub")), vec![job]).unwrap();
    let err = d.start().unwrap_err().to_string();
    assert!(err.contains("plain"), "{err}");
}

#[test]
fn invalid_jobs_and_settings_are_rejected() {
    let ok = || Ok(Reading::Skip);
    assert!(DaqJob::new("g", vec![DatasetSpec::scalar("time", Dtype::F64)], ok).is_err());
    assert!(DaqJob::new("a/b", vec![DatasetSpec::scalar("x", Dtype::F64)], ok).is_err());
    let two = vec![
        DatasetSpec::scalar("x", Dtype::F64),
        DatasetSpec::scalar("x", Dtype::F32),
    ];
    assert!(DaqJob::new("g", two, ok).is_err());
    let job = || DaqJob::new("g", vec![DatasetSpec::scalar("x", Dtype::F64)], ok).unwrap();
    assert!(job().with_mode(ReadMode::Periodic(Duration::ZERO)).is_err());
    let dir = tempfile::tempdir().unwrap();
    let jit = DaemonConfig {
        write_jitter: Some(Duration::from_millis(300)),
        ..cfg(dir.path())
    };
    let e = DaqDaemon::new(jit, vec![job()]).unwrap_err().to_string();
    assert!(e.contains("jitter"), "{e}");
    let reserved = DaemonConfig {
        attrs: vec![("file_id".into(), AttrValue::Int(1))],
        ..cfg(dir.path())
    };
    assert!(DaqDaemon::new(reserved, vec![job()]).is_err());
    assert!(DaqDaemon::new(cfg(dir.path()), vec![job(), job()]).is_err());
}

#[test]
fn swmr_mode_writes_the_same_layout_and_threads_share_ids() {
    let dir = tempfile::tempdir().unwrap();
    let running = Arc::new(AtomicU64::new(0));
    let overlap = Arc::new(AtomicU64::new(0));
    let mk = |g: &str| {
        let (r, o) = (Arc::clone(&running), Arc::clone(&overlap));
        DaqJob::new(
            g,
            vec![DatasetSpec::array("a", Dtype::F32, &[2, 3])],
            move || {
                if r.fetch_add(1, Ordering::SeqCst) != 0 {
                    o.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(3));
                r.fetch_sub(1, Ordering::SeqCst);
                Ok(Reading::Row(vec![Entry::from(vec![
                    1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0,
                ])]))
            },
        )
        .unwrap()
        .with_mode(ReadMode::Periodic(Duration::from_millis(5)))
        .unwrap()
        .with_thread_id(7)
    };
    let c = DaemonConfig {
        mode: WriteMode::Swmr,
        deflate: Some(4),
        shuffle: true,
        write_period: Duration::from_millis(100),
        ..cfg(dir.path())
    };
    let mut d = DaqDaemon::new(c, vec![mk("j1"), mk("j2")]).unwrap();
    d.start().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let report = d.stop().unwrap();
    assert_eq!(
        overlap.load(Ordering::SeqCst),
        0,
        "jobs with one thread id never overlap"
    );
    let f = hdf5::File::open(&report.files[0]).unwrap();
    for g in ["j1", "j2"] {
        let a = f.dataset(&format!("{g}/a")).unwrap();
        let n = a.shape()[0];
        assert!(n > 10, "{g}: {n} rows");
        assert_eq!(a.shape(), vec![n, 2, 3]);
        assert_eq!(a.chunk(), Some(vec![64, 2, 3]));
        assert_eq!(f.dataset(&format!("{g}/time")).unwrap().shape(), vec![n]);
        let filters = a.filters();
        assert!(filters
            .iter()
            .any(|x| matches!(x, hdf5::filters::Filter::Fletcher32)));
        assert!(filters
            .iter()
            .any(|x| matches!(x, hdf5::filters::Filter::Deflate(4))));
        let v: Vec<f32> = a.read_raw().unwrap();
        assert_eq!(&v[..6], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }
}

#[test]
fn a_file_moved_away_is_counted_as_lost_and_writing_goes_on_in_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_795_000_000.0));
    let value = Arc::new(Mutex::new(0.0));
    let job = triggered_job("r", Arc::clone(&value));
    let c = DaemonConfig {
        clock: clock.clone(),
        auto_write: false,
        ..cfg(dir.path())
    };
    let mut d = DaqDaemon::new(c, vec![job]).unwrap();
    d.start().unwrap();
    let (trig, h) = (d.trigger("r").unwrap(), d.job_handles()[0].clone());
    let mut n = 0u64;
    let mut sample = |k: u64| {
        for _ in 0..k {
            n += 1;
            *value.lock().unwrap() = n as f64;
            clock.advance(1.0);
            trig.trigger();
            wait_for("read", || h.status().rows == n);
        }
    };
    sample(2);
    d.write_now().unwrap();
    let path = d.status().current_file.unwrap();
    let away = dir.path().join("away");
    std::fs::rename(&path, &away).unwrap();
    sample(2);
    let r = d.write_now().unwrap();
    assert_eq!(r.rows, 2, "the new rows go to a new file");
    let st = h.status();
    assert_eq!(
        st.dropped_by.file_lost, 2,
        "the moved file's rows are counted"
    );
    assert_eq!((st.written, st.dropped), (4, 2));
    let report = d.stop().unwrap();
    assert!(!report.is_lossless());
    assert_eq!(report.files.len(), 1);
    let f = hdf5::File::open(&report.files[0]).unwrap();
    let v: Vec<f32> = f.dataset("r/v").unwrap().read_raw().unwrap();
    assert_eq!(v, vec![3.0, 4.0]);
    let lost = hdf5::File::open(&away).unwrap();
    let id = |f: &hdf5::File, k: &str| f.attr(k).unwrap().read_scalar::<u64>().unwrap();
    assert_eq!(
        id(&f, "previous_file_id"),
        id(&lost, "file_id"),
        "the chain goes on"
    );
    let attr = f.group("r").unwrap().attr("dropped_file_lost").unwrap();
    assert_eq!(
        attr.read_scalar::<u64>().unwrap(),
        2,
        "the file records the loss"
    );
}

#[test]
fn a_size_rollover_keeps_the_calendar_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let at = |s: &str| parse_compact_stamp(s).unwrap();
    let clock = Arc::new(ManualClock::new(at("20261121T103000.000Z")));
    let value = Arc::new(Mutex::new(0.0));
    let job = triggered_job("r", Arc::clone(&value));
    let c = DaemonConfig {
        clock: clock.clone(),
        auto_write: false,
        rollover: "2 hours".parse::<Rollover>().unwrap(),
        max_file_bytes: Some(1),
        ..cfg(dir.path())
    };
    let mut d = DaqDaemon::new(c, vec![job]).unwrap();
    d.start().unwrap();
    let (trig, h) = (d.trigger("r").unwrap(), d.job_handles()[0].clone());
    let mut n = 0;
    let mut sample_at = |t: &str| {
        n += 1;
        clock.set(at(t));
        trig.trigger();
        wait_for("read", || h.status().rows == n);
    };
    // 10:30 starts an interval ending at 12:00; the size rollover at 11:15 must keep it.
    sample_at("20261121T111500.000Z");
    d.write_now().unwrap();
    sample_at("20261121T113000.000Z");
    d.write_now().unwrap();
    sample_at("20261121T121000.000Z");
    d.write_now().unwrap();
    let report = d.stop().unwrap();
    for p in &report.files {
        let name = p.file_name().unwrap().to_str().unwrap();
        let (from, to) = parse_file_name("DAQ", name).unwrap();
        let noon = at("20261121T120000.000Z");
        assert!(to < noon || from >= noon, "{name} spans the 12:00 boundary");
    }
}

#[test]
fn a_blocking_job_cannot_share_a_thread() {
    let dir = tempfile::tempdir().unwrap();
    let blocking = DaqJob::new("sub", vec![DatasetSpec::scalar("x", Dtype::F64)], || {
        Ok(Reading::Skip)
    })
    .unwrap()
    .with_mode(ReadMode::Constant)
    .unwrap()
    .with_thread_id(3);
    let fast = triggered_job("fast", Arc::new(Mutex::new(0.0))).with_thread_id(3);
    let err = DaqDaemon::new(cfg(dir.path()), vec![fast, blocking])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("thread_id") && err.contains("\"fast\""),
        "{err}"
    );
}
