//! Times a stacked read of a detector's main key (the comparison script
//! `benches/scripts/bench_components.py` runs it): a whole `ndarray_bytes` (a new array each
//! time, as EXtra-data's `ndarray()` makes one), the read alone into one preallocated buffer,
//! the same read after filling a new buffer first (what `ndarray_bytes` did before it filled
//! only the rows without data), and plain copies of the same bytes into an existing and into a
//! new buffer. Prints one JSON line with the best times and the peak RSS.
//!
//! `cargo run --release -p euxfel-components --example stack_read -- RUN_DIR TRAINS REPS`
//! (`TRAINS` is a position range `A:B`).

use std::time::Instant;

use euxfel::{DataCollection, OpenOptions, TrainSelection};
use euxfel_components::{identify_single_detector, DetectorOptions, MultiModDetector};

/// A `/proc/self/status` field in KiB: `VmHWM` (peak RSS, file-backed pages of the
/// memory-mapped run files included) or `RssAnon` (current anonymous memory).
fn status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Process CPU seconds (user + system, all threads) and minor page faults so far.
fn usage() -> (f64, i64) {
    // SAFETY: getrusage writes only into the zeroed struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage for the call's duration.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return (0.0, 0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    (secs(ru.ru_utime) + secs(ru.ru_stime), ru.ru_minflt)
}

/// CPU seconds and minor faults per repetition between two `usage()` readings.
fn per_rep(a: (f64, i64), b: (f64, i64), reps: usize) -> (f64, f64) {
    let n = reps.max(1) as f64;
    ((b.0 - a.0) / n, (b.1 - a.1) as f64 / n)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, run, trains, reps] = args.as_slice() else {
        return Err("usage: stack_read RUN_DIR A:B REPS".into());
    };
    let (a, b) = trains.split_once(':').ok_or("TRAINS is A:B")?;
    let reps: usize = reps.parse()?;
    let dc = DataCollection::open_run(run, &OpenOptions::default())?;
    let (name, kind) = identify_single_detector(&dc, None)?;
    let opts = DetectorOptions {
        detector_name: Some(name),
        ..DetectorOptions::default()
    };
    let det = MultiModDetector::new(kind, &dc, &opts)?.select_trains(
        &TrainSelection::IndexRange(Some(a.parse()?), Some(b.parse()?), None),
    )?;
    let key = det.key(kind.main_data_key())?;
    let rss_before = status_kib("VmHWM:");
    let mut best_ndarray = f64::INFINITY;
    let mut last: Option<euxfel_components::StackedArray> = None;
    let u0 = usage();
    for _ in 0..reps {
        // The previous array goes first: one output in memory at a time.
        drop(last.take());
        let t = Instant::now();
        let a = key.ndarray_bytes(None, false)?;
        best_ndarray = best_ndarray.min(t.elapsed().as_secs_f64());
        last = Some(a);
    }
    let (ndarray_cpu, ndarray_faults) = per_rep(u0, usage(), reps);
    let mut out = match last {
        Some(a) => a,
        None => key.ndarray_bytes(None, false)?,
    };
    // Memory with one output alive, before the buffers of the comparisons below.
    let rss_after_read = status_kib("VmHWM:");
    let anon_after_read = status_kib("RssAnon:");
    let mut best_prefill = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        let mut v: Vec<u8> = Vec::new();
        v.try_reserve_exact(out.data.len())?;
        v.resize(out.data.len(), 0);
        v.fill(0);
        key.read_into_bytes(&mut v, false)?;
        best_prefill = best_prefill.min(t.elapsed().as_secs_f64());
        drop(std::hint::black_box(v));
    }
    let mut best = f64::INFINITY;
    let u0 = usage();
    for _ in 0..reps {
        let t = Instant::now();
        key.read_into_bytes(&mut out.data, false)?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    let (read_cpu, read_faults) = per_rep(u0, usage(), reps);
    let src = out.data.clone();
    let mut best_copy = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        out.data.copy_from_slice(std::hint::black_box(&src));
        best_copy = best_copy.min(t.elapsed().as_secs_f64());
    }
    // The same bytes copied into a new buffer (allocation and first-touch page faults
    // included, as in ndarray_bytes).
    let mut best_copy_new = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        let c = std::hint::black_box(&src).clone();
        best_copy_new = best_copy_new.min(t.elapsed().as_secs_f64());
        drop(std::hint::black_box(c));
    }
    // The floor of a new array: the same bytes copied into a buffer allocated as ours
    // (zeroed, huge pages where the kernel allows).
    let mut best_copy_floor = f64::INFINITY;
    let u0 = usage();
    for _ in 0..reps {
        let t = Instant::now();
        let mut c: Vec<u8> = euxfel_components::zeroed_vec(src.len()).ok_or("allocation")?;
        c.copy_from_slice(std::hint::black_box(&src));
        best_copy_floor = best_copy_floor.min(t.elapsed().as_secs_f64());
        drop(std::hint::black_box(c));
    }
    let (floor_cpu, floor_faults) = per_rep(u0, usage(), reps);
    println!(
        "{{\"bytes\": {}, \"shape\": {:?}, \"ndarray_s\": {best_ndarray}, \"prefill_read_s\": {best_prefill}, \"read_s\": {best}, \"copy_s\": {best_copy}, \"copy_new_s\": {best_copy_new}, \
         \"copy_floor_s\": {best_copy_floor}, \"ndarray_cpu_s\": {ndarray_cpu}, \"ndarray_faults\": {ndarray_faults}, \
         \"read_cpu_s\": {read_cpu}, \"read_faults\": {read_faults}, \"floor_cpu_s\": {floor_cpu}, \"floor_faults\": {floor_faults}, \
         \"peak_rss_kib_before_output\": {}, \"peak_rss_kib_after_read\": {}, \"rss_anon_kib_after_read\": {}}}",
        src.len(),
        out.shape,
        rss_before.unwrap_or(0),
        rss_after_read.unwrap_or(0),
        anon_after_read.unwrap_or(0)
    );
    Ok(())
}
