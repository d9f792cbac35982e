//! Times a stacked read of a detector's main key (the comparison script
//! `benches/scripts/bench_components.py` runs it): a whole `ndarray_bytes` (a new array each
//! time, as EXtra-data's `ndarray()` makes one), the read alone into one preallocated buffer,
//! the same read after filling a new buffer first (what `ndarray_bytes` did before it filled
//! only the rows without data), and plain copies of the same bytes into an existing and into a
//! new buffer, and what a new buffer costs: the kernel's zeroing of its pages alone, and a
//! copy of the bytes into it by one thread and by two (each its half, as the read's threads
//! write their modules). Prints one JSON line with the best times, CPU seconds, page faults,
//! transparent huge page counters and the peak RSS.
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

/// Counters of `/proc/vmstat` (system-wide): huge pages given at faults, faults that fell
/// back to base pages, direct compaction stalls.
const THP_COUNTERS: [&str; 3] = ["thp_fault_alloc", "thp_fault_fallback", "compact_stall"];

fn thp_counters() -> [i64; 3] {
    let s = std::fs::read_to_string("/proc/vmstat").unwrap_or_default();
    THP_COUNTERS.map(|name| {
        s.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    })
}

/// The threads a stacked read uses here (one per core, at most one per module).
fn read_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Copies `src` into `dst` (equal lengths) with `threads` threads, each its own contiguous
/// part, split on 2 MiB boundaries (so that no huge page is shared by two threads).
fn copy_parallel(dst: &mut [u8], src: &[u8], threads: usize) {
    let part = dst
        .len()
        .div_ceil(threads.max(1))
        .next_multiple_of(2 << 20)
        .max(1);
    std::thread::scope(|s| {
        for (d, from) in dst.chunks_mut(part).zip(src.chunks(part)) {
            s.spawn(move || d.copy_from_slice(from));
        }
    });
}

/// Writes one byte of every 4 KiB page of `buf` with `threads` threads (each its own part):
/// the kernel's first-touch work on new pages without the copy.
fn touch_parallel(buf: &mut [u8], threads: usize) {
    let part = buf
        .len()
        .div_ceil(threads.max(1))
        .next_multiple_of(2 << 20)
        .max(1);
    let one = std::hint::black_box(1u8);
    std::thread::scope(|s| {
        for d in buf.chunks_mut(part) {
            s.spawn(move || d.iter_mut().step_by(4096).for_each(|b| *b = one));
        }
    });
}

/// The best wall time of a step, with the median CPU seconds and minor page faults of one
/// run (the median leaves out the first run's one-off faults of the file maps and the runs
/// that the shared machine's load slowed down).
struct Timing {
    best_s: f64,
    cpu_s: f64,
    faults: f64,
}

/// Runs `step` once unmeasured, then `reps` times; what it returns is dropped after its run
/// is measured. The unmeasured run gives each step the same start: memory that the previous
/// step freed is reused, not new to the VM (on this Firecracker VM, free page reporting hands
/// memory freed for a few seconds back to the host, and touching it again costs host faults,
/// up to ten times the step; a program reading array after array reuses its freed memory as
/// the measured runs do).
fn measure<T, E>(reps: usize, mut step: impl FnMut() -> Result<T, E>) -> Result<Timing, E> {
    drop(std::hint::black_box(step()?));
    let (mut best_s, mut cpu, mut faults) = (f64::INFINITY, Vec::new(), Vec::new());
    for _ in 0..reps.max(1) {
        let u0 = usage();
        let t = Instant::now();
        let out = step()?;
        best_s = best_s.min(t.elapsed().as_secs_f64());
        let u1 = usage();
        drop(std::hint::black_box(out));
        cpu.push(u1.0 - u0.0);
        faults.push((u1.1 - u0.1) as f64);
    }
    Ok(Timing {
        best_s,
        cpu_s: median(&mut cpu),
        faults: median(&mut faults),
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
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
    let thp0 = thp_counters();
    // Each array is dropped before the next read: one output in memory at a time.
    let ndarray = measure(reps, || key.ndarray_bytes(None, false))?;
    let thp = thp_counters();
    // `measure` reads once more than `reps`, unmeasured.
    let per_read = |i: usize| (thp[i] - thp0[i]) as f64 / (reps.max(1) + 1) as f64;
    let thp_json: Vec<String> = THP_COUNTERS
        .iter()
        .enumerate()
        .map(|(i, name)| format!("\"ndarray_{name}\": {}", per_read(i)))
        .collect();
    let mut out = key.ndarray_bytes(None, false)?;
    // Memory with one output alive, before the buffers of the comparisons below.
    let rss_after_read = status_kib("VmHWM:");
    let anon_after_read = status_kib("RssAnon:");
    let prefill = measure(reps, || -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        let mut v: Vec<u8> = Vec::new();
        v.try_reserve_exact(out.data.len())?;
        v.resize(out.data.len(), 0);
        v.fill(0);
        key.read_into_bytes(&mut v, false)?;
        Ok(v)
    })?;
    let read = measure(reps, || key.read_into_bytes(&mut out.data, false))?;
    let src = out.data.clone();
    let copy = measure(reps, || -> Result<(), Box<dyn std::error::Error>> {
        out.data.copy_from_slice(std::hint::black_box(&src));
        Ok(())
    })?;
    // The same bytes copied into a new buffer (allocation and first-touch page faults
    // included, as in ndarray_bytes).
    let copy_new = measure(reps, || -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        Ok(std::hint::black_box(&src).clone())
    })?;
    // The floor of a new array: the same bytes copied into a buffer allocated as ours
    // (zeroed, huge pages where the kernel allows), by one thread and by as many as the read
    // uses; and the kernel's zeroing of the new pages alone.
    let threads = read_threads();
    let new_buffer = |copy: bool, threads: usize| {
        measure(reps, || -> Result<Vec<u8>, Box<dyn std::error::Error>> {
            let mut c: Vec<u8> = euxfel_components::zeroed_vec(src.len()).ok_or("allocation")?;
            if copy {
                copy_parallel(&mut c, std::hint::black_box(&src), threads);
            } else {
                touch_parallel(&mut c, threads);
            }
            Ok(c)
        })
    };
    let floor = new_buffer(true, 1)?;
    let floor_par = new_buffer(true, threads)?;
    let zero = new_buffer(false, threads)?;
    let figures = [
        ("ndarray", &ndarray),
        ("prefill_read", &prefill),
        ("read", &read),
        ("copy", &copy),
        ("copy_new", &copy_new),
        ("copy_floor", &floor),
        ("floor_par", &floor_par),
        ("zero", &zero),
    ];
    let timings: Vec<String> = figures
        .iter()
        .map(|(name, t)| {
            format!(
                "\"{name}_s\": {}, \"{name}_cpu_s\": {}, \"{name}_faults\": {}",
                t.best_s, t.cpu_s, t.faults
            )
        })
        .collect();
    println!(
        "{{\"bytes\": {}, \"shape\": {:?}, \"threads\": {threads}, {}, {}, \
         \"peak_rss_kib_before_output\": {}, \"peak_rss_kib_after_read\": {}, \"rss_anon_kib_after_read\": {}}}",
        src.len(),
        out.shape,
        timings.join(", "),
        thp_json.join(", "),
        rss_before.unwrap_or(0),
        rss_after_read.unwrap_or(0),
        anon_after_read.unwrap_or(0)
    );
    Ok(())
}
