#!/usr/bin/env python3
"""photon_daq (Python over the Rust crates) against EXtra-data and sdaq, in one run.

1. RunDirectory open, cold (no karabo_data_map.json) and warm.
2. KeyData.ndarray() of the largest key of the run.
3. trains() over a selection of all control sources plus one instrument source.
4. A DAQJob in 'constant' mode with a trivial getter (reads per second), and with
   (1000,) float32 rows; sdaq's DAQJob the same way when `import sdaq` works.

Both reading libraries run in this process (their package names differ). Run from the
repository root after `make setup`:

    .venv/bin/python benches/scripts/bench_python.py [--run DIR] [--reps N] [--seconds S]
        [--max-bytes N]

Without --run, EXtra-data's example FXE run is written to a temporary directory (a
quick check, not the figures of docs/benchmarks.md, which need the 340-file fixture
of bench_lsxfel.py: --run target/euxfel-bench/<run>).
"""
import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path


def log(msg):
    print(msg, flush=True)


def median_time(fn, reps):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_open(lib, run, reps):
    cache = Path(run) / "karabo_data_map.json"

    def cold():
        cache.unlink(missing_ok=True)
        lib.RunDirectory(str(run))

    return median_time(cold, reps), median_time(lambda: lib.RunDirectory(str(run)), reps)


def largest_key(run, max_bytes):
    best = None
    for src in run.instrument_sources:
        for key in run[src].keys():
            kd = run[src, key]
            if kd.dtype.hasobject or kd.nbytes > max_bytes:
                continue
            if best is None or kd.nbytes > best[2]:
                best = (src, key, kd.nbytes)
    return best


def bench_ndarray(lib, run_dir, src, key, reps):
    kd = lib.RunDirectory(str(run_dir))[src, key]
    return median_time(kd.ndarray, reps)


def bench_trains(lib, run_dir, inst, reps):
    run = lib.RunDirectory(str(run_dir))
    sel = run.select([(s, "*") for s in run.control_sources] + [(inst, "*")])

    def iterate():
        for _ in sel.trains():
            pass

    return median_time(iterate, reps), len(sel.train_ids)


def bench_daq_job(make_job, seconds):
    """Reads per second of a constant-mode job over `seconds`."""
    count = [0]
    job, start, stop = make_job(count)
    start()
    time.sleep(seconds)
    stop()
    return count[0] / seconds


def photon_daq_job(payload):
    from photon_daq.daq import DAQDaemon, DAQJob

    def make(count):
        def getter():
            count[0] += 1
            return [payload]

        shape = (0,) if not hasattr(payload, "shape") else (0,) + payload.shape
        job = DAQJob("bench", "v", getter, read_mode="constant", shape=shape, compress=False)
        tmp = tempfile.mkdtemp(prefix="bench-python-daq-")
        daemon = DAQDaemon([job], directory=tmp, write_period=1)
        return job, daemon.start, daemon.stop

    return make


def sdaq_job(payload):
    import sdaq

    def make(count):
        def getter():
            count[0] += 1
            return [payload]

        shape = (0,) if not hasattr(payload, "shape") else (0,) + payload.shape
        job = sdaq.DAQJob("bench", "v", getter, read_mode="constant", shape=shape, compress=False)
        tmp = tempfile.mkdtemp(prefix="bench-python-sdaq-")
        daemon = sdaq.DAQDaemon([job], directory=tmp, write_period=1)
        return job, daemon.start, daemon.stop

    return make


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", help="run directory (default: EXtra-data's example FXE run)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-bytes", type=float, default=4e9,
                    help="largest key size for the ndarray() measurement (default 4e9)")
    ap.add_argument("--seconds", type=float, default=1.0, help="duration of each DAQ measurement")
    args = ap.parse_args()

    import numpy as np
    import extra_data
    import photon_daq.euxfel as pd_euxfel

    tmp = None
    run_dir = args.run
    if run_dir is None:
        from extra_data.tests import make_examples

        tmp = tempfile.TemporaryDirectory(prefix="bench-python-")
        run_dir = tmp.name
        make_examples.make_fxe_run(run_dir, format_version="1.2")
    log(f"run: {run_dir}")

    libs = {"extra_data": extra_data, "photon_daq": pd_euxfel}
    opened = {}
    for name, lib in libs.items():
        cold, warm = bench_open(lib, run_dir, args.reps)
        opened[name] = (cold, warm)
        log(f"RunDirectory {name:11s} cold {cold * 1e3:8.1f} ms  warm {warm * 1e3:8.1f} ms")
    xd, pd = opened["extra_data"], opened["photon_daq"]
    log(f"RunDirectory speed-up: cold {xd[0] / pd[0]:.1f}x, warm {xd[1] / pd[1]:.1f}x")

    src, key, nbytes = largest_key(extra_data.RunDirectory(run_dir), args.max_bytes)
    reads = {name: bench_ndarray(lib, run_dir, src, key, args.reps) for name, lib in libs.items()}
    for name, t in reads.items():
        log(f"ndarray {name:11s} {src} {key} {nbytes / 1e6:.1f} MB: {t * 1e3:8.1f} ms "
            f"({nbytes / t / 2**30:.2f} GiB/s)")
    log(f"ndarray speed-up: {reads['extra_data'] / reads['photon_daq']:.1f}x")

    inst = sorted(extra_data.RunDirectory(run_dir).instrument_sources)[0]
    it = {name: bench_trains(lib, run_dir, inst, args.reps) for name, lib in libs.items()}
    for name, (t, n) in it.items():
        log(f"trains() {name:11s} control + {inst}: {n} trains in {t * 1e3:8.1f} ms")
    log(f"trains() speed-up: {it['extra_data'][0] / it['photon_daq'][0]:.1f}x")

    row = np.arange(1000, dtype=np.float32)
    makers = {"photon_daq": photon_daq_job}
    try:
        import sdaq  # noqa: F401

        makers["sdaq"] = sdaq_job
    except ImportError:
        log("sdaq is not importable: DAQ figures for photon_daq only")
    for name, maker in makers.items():
        for label, payload in (("scalar", 1.0), ("(1000,) float32", row)):
            rate = bench_daq_job(maker(payload), args.seconds)
            log(f"DAQJob {name:10s} {label:16s}: {rate:10.0f} reads/s "
                f"(active threads {threading.active_count()})")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
