//! h5daq scheduler jitter: a 10 ms periodic job runs for 20 s (`DAQ_JITTER_SECONDS` to change)
//! with the daemon writing every second; each read's start is compared with its slot on the
//! grid `start + k * 10 ms`. Prints p50 / p90 / p99 / max in microseconds and one JSON line
//! (`benches/scripts/bench_daq.py` reads it). Not a criterion bench: the figure is a
//! distribution over one long run, not a per-iteration time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use host_tools::daq::{DaemonConfig, DaqDaemon, DaqJob, DatasetSpec, Dtype, ReadMode, Reading};

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
    // Lateness behind the grid `start + k * period`: reads never start early, so each read's
    // offset modulo the period, taken relative to the earliest offset seen (the grid's phase
    // relative to the first read), is its lateness. Reads later than a whole period show up in
    // `missed` (the scheduler skips and counts those slots).
    let p = period.as_secs_f64();
    let offs: Vec<f64> = v
        .iter()
        .map(|t| t.duration_since(t0).as_secs_f64().rem_euclid(p))
        .collect();
    // Offsets just below p are reads slightly early relative to t0's phase: fold them down.
    let folded: Vec<f64> = offs
        .iter()
        .map(|o| if *o > p / 2.0 { o - p } else { *o })
        .collect();
    let phase = folded.iter().copied().fold(f64::INFINITY, f64::min);
    let mut lat: Vec<f64> = folded.iter().map(|o| (o - phase) * 1e6).collect();
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
