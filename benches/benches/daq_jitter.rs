//! h5daq scheduler jitter: a 10 ms periodic job runs for 20 s (`DAQ_JITTER_SECONDS` to change)
//! with the daemon writing every second; each read's start is compared with its slot on the
//! grid `start + k * 10 ms`. Prints p50 / p90 / p99 / max in microseconds and one JSON line
//! (`benches/scripts/bench_daq.py` reads it). `DAQ_JITTER_DUMP=1` lists the reads later than
//! 1 ms on stderr. Not a criterion bench: the figure is a
//! distribution over one long run, not a per-iteration time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use h5daq::{DaemonConfig, DaqDaemon, DaqJob, DatasetSpec, Dtype, ReadMode, Reading};

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing special. Keep short
    // under test.
    let args: Vec<String> = std::env::args().collect();
    let quick = !args.iter().any(|a| a == "--bench");
    let seconds: f64 = std::env::var("DAQ_JITTER_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 1.0 } else { 20.0 });
    let period = Duration::from_millis(10);
    let stamps: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::with_capacity(10_000)));
    let s2 = Arc::clone(&stamps);
    let job = DaqJob::new(
        "jitter",
        vec![DatasetSpec::scalar("v", Dtype::F64)],
        move || {
            let now = Instant::now();
            if let Ok(mut v) = s2.lock() {
                v.push(now);
            }
            Ok(Reading::Row(vec![1.0.into()]))
        },
    )
    .expect("job")
    .with_mode(ReadMode::Periodic(period))
    .expect("mode");
    let dir = std::env::temp_dir().join(format!("daq-jitter-{}", std::process::id()));
    let cfg = DaemonConfig {
        directory: dir.clone(),
        write_period: Duration::from_secs(1),
        ..Default::default()
    };
    let mut daemon = DaqDaemon::new(cfg, vec![job]).expect("daemon");
    daemon.start().expect("start");
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let missed = daemon.job_handles()[0].status().missed_periods;
    daemon.stop().expect("stop");
    let _ = std::fs::remove_dir_all(&dir);
    let v = stamps.lock().map(|v| v.clone()).unwrap_or_default();
    let Some(&t0) = v.first() else {
        eprintln!("no reads");
        std::process::exit(1);
    };
    // Lateness behind the grid `start + k * period`. The grid's phase is not observable from
    // the getter, so it is estimated: offsets modulo the period are centred on their circular
    // mean; the on-time phase is the earliest read within a quarter period before the median
    // (reads never start early, and most start on time); each read's lateness is its offset
    // after that phase, modulo the period. Reads later than a whole period are skipped slots,
    // counted in `missed` by the scheduler.
    let p = period.as_secs_f64();
    let offs: Vec<f64> = v
        .iter()
        .map(|t| t.duration_since(t0).as_secs_f64().rem_euclid(p))
        .collect();
    let w = std::f64::consts::TAU / p;
    let (sin, cos) = offs.iter().fold((0.0, 0.0), |(s, c), o| {
        (s + (o * w).sin(), c + (o * w).cos())
    });
    let mean = (sin.atan2(cos) / w).rem_euclid(p);
    let centred: Vec<f64> = offs
        .iter()
        .map(|o| (o - mean + p / 2.0).rem_euclid(p))
        .collect();
    let mut sorted = centred.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let phase = centred
        .iter()
        .copied()
        .filter(|c| *c >= median - p / 4.0 && *c <= median)
        .fold(median, f64::min);
    let mut lat: Vec<f64> = centred
        .iter()
        .map(|c| (c - phase).rem_euclid(p) * 1e6)
        .collect();
    if std::env::var_os("DAQ_JITTER_DUMP").is_some() {
        // The reads later than 1 ms, with their time since the first read (seconds).
        for (t, l) in v.iter().zip(&lat).filter(|(_, l)| **l > 1000.0) {
            eprintln!(
                "late {:8.3} s  {:6.0} us",
                t.duration_since(t0).as_secs_f64(),
                l
            );
        }
    }
    lat.sort_by(f64::total_cmp);
    let q = |f: f64| lat[((lat.len() - 1) as f64 * f).round() as usize];
    println!(
        "daq/jitter 10 ms job, {seconds} s: {} reads, {missed} missed slots; lateness p50 {:.0} us, p90 {:.0} us, p99 {:.0} us, max {:.0} us",
        lat.len(),
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0)
    );
    println!(
        "{{\"bench\":\"daq_jitter\",\"reads\":{},\"missed\":{missed},\"p50_us\":{:.1},\"p90_us\":{:.1},\"p99_us\":{:.1},\"max_us\":{:.1}}}",
        lat.len(),
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0)
    );
}
