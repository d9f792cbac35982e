#!/usr/bin/env python3
"""photon_daq.daq's DAQJob against sdaq's, in one run: rows per second of a 'constant'
job with a trivial Python getter, and with (1000,) float32 rows.

Each case runs in a fresh process of its library's Python (sdaq lives in its own
virtualenv, `--sdaq-python`, default $SDAQ_PYTHON or /work/sdaq-venv/bin/python):
DAQDaemon with each `--write-period` (1 s and sdaq's default 60 s unless told), one
DAQJob(read_mode='constant', compress=False)
whose getter returns a counter (scalar float64) or a (1000,) float32 row carrying the
counter in element 0; the job runs `--seconds`, then stop(). Rows are counted in the
file with h5py: rows/s = rows stored / (stop() returned - start() called); rows lost =
getter results that are not in the file (the counter's gaps; rows stored twice are
counted apart and not as rows); rows per CPU second =
rows stored / the process's user+sys seconds from start() to stop() (less sensitive to
the machine's load than rows/s). The median of `--reps` runs is reported, then a
markdown table. h5daq buffers at most 64 MiB per job (16.7k rows of (1000,) float32) and
writes a job's rows as soon as its buffer is half full (an early write), so its rate does not
depend on the write period; the photon_daq lines print the job's early writes.

Run from the repository root after `make setup` (photon_daq in .venv):

    .venv/bin/python benches/scripts/bench_pydaq.py [--seconds 5] [--reps 3]
        [--write-period 1 60] [--sdaq-python PATH]

Without an sdaq Python the photon_daq figures are printed alone.
"""
import argparse
import datetime
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile

RUN_CASE = r'''
import itertools, json, os, resource, sys, time
import h5py, numpy as np

lib, case, seconds, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
write_period = float(sys.argv[5])
if lib == "sdaq":
    from sdaq import DAQDaemon, DAQJob
else:
    from photon_daq.daq import DAQDaemon, DAQJob

counter = itertools.count()
if case == "scalar":
    getter = lambda: [next(counter)]
    kw = dict(dtype=np.float64)
else:
    row = np.zeros(1000, dtype=np.float32)

    def getter():
        row[0] = next(counter)
        return [row]
    kw = dict(dtype=np.float32, shape=(0, 1000))

job = DAQJob("bench", "v", getter, read_mode="constant", compress=False, **kw)
daemon = DAQDaemon([job], directory=out, write_period=write_period)
cpu0 = resource.getrusage(resource.RUSAGE_SELF)
t0 = time.perf_counter()
daemon.start()
time.sleep(seconds)
daemon.stop()
elapsed = time.perf_counter() - t0
cpu1 = resource.getrusage(resource.RUSAGE_SELF)
produced = next(counter)      # getter results handed to the library
values = []
for name in sorted(os.listdir(out)):
    with h5py.File(os.path.join(out, name), "r") as f:
        v = f["bench/v"][()]
        values.append(v if v.ndim == 1 else v[:, 0])
stored = np.concatenate(values) if values else np.zeros(0)
# The counter is exact in float32 below 2**24; a run stays far below that.
unique = int(len(np.unique(stored)))
status = job.status() if lib == "photon_daq" else {}
print(json.dumps({
    "early_writes": status.get("early_writes", 0),
    "rows": unique, "produced": produced, "lost": produced - unique,
    "duplicated": int(len(stored)) - unique,
    "seconds": elapsed, "cpu": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
}))
'''

CASES = {"scalar": "trivial getter, scalar float64", "row1000": "(1000,) float32 rows"}


def run_case(python, lib, case, seconds, write_period):
    out = tempfile.mkdtemp(prefix=f"bench-pydaq-{lib}-")
    # Neither library calls BLAS: no OpenBLAS threads competing for the 2 cores.
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    try:
        r = subprocess.run([python, "-c", RUN_CASE, lib, case, str(seconds), out,
                            str(write_period)],
                           capture_output=True, text=True, timeout=seconds * 20 + 120, env=env)
        if r.returncode != 0:
            raise SystemExit(f"{lib} {case} failed:\n{r.stderr[-3000:]}")
        res = json.loads(r.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(out, ignore_errors=True)
    res["load"] = os.getloadavg()[0]
    return res


def median_run(python, lib, case, seconds, write_period, reps):
    runs = [run_case(python, lib, case, seconds, write_period) for _ in range(reps)]
    for r in runs:
        r["rate"] = r["rows"] / r["seconds"]
    runs.sort(key=lambda r: r["rate"])
    med = dict(runs[len(runs) // 2])
    med["lost_all"] = sum(r["lost"] for r in runs)
    med["duplicated_all"] = sum(r["duplicated"] for r in runs)
    med["produced_all"] = sum(r["produced"] for r in runs)
    med["loads"] = [round(r["load"], 1) for r in runs]
    return med


def sdaq_python(path):
    if path and os.path.exists(path):
        r = subprocess.run([path, "-c", "import sdaq, h5py"], capture_output=True)
        if r.returncode == 0:
            return path
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="run time of each job")
    ap.add_argument("--reps", type=int, default=3, help="runs per case (median reported)")
    ap.add_argument("--write-period", type=float, nargs="+", default=[1.0, 60.0],
                    help="DAQDaemon write_period(s) in seconds, one set of runs each "
                         "(default 1 and sdaq's default 60). At 0.1 s sdaq's buffer races "
                         "its writer (IndexError, rows stored twice)")
    ap.add_argument("--sdaq-python",
                    default=os.environ.get("SDAQ_PYTHON", "/work/sdaq-venv/bin/python"),
                    help="a Python that imports sdaq")
    args = ap.parse_args()
    ref_python = sdaq_python(args.sdaq_python)
    if ref_python is None:
        print(f"sdaq is not importable from {args.sdaq_python}: photon_daq figures only",
              flush=True)
    libs = [("photon_daq", sys.executable)] + ([("sdaq", ref_python)] if ref_python else [])
    results = {}
    for period in args.write_period:
        for case in CASES:
            for lib, python in libs:
                r = median_run(python, lib, case, args.seconds, period, args.reps)
                results[(lib, case, period)] = r
                early = f"  early writes {r['early_writes']}" if lib == "photon_daq" else ""
                print(f"{lib:10s} {period:4g} s {CASES[case]:32s} {r['rate']:12,.0f} rows/s  "
                      f"lost {r['lost_all']} of {r['produced_all']}, stored twice "
                      f"{r['duplicated_all']}  "
                      f"{r['rows'] / r['cpu']:12,.0f} rows/CPU s  load {r['loads']}{early}",
                      flush=True)

    cmd = " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable)] + sys.argv)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print()
    print(f"{now}; {os.cpu_count()} cores; load average at the end "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; `{cmd}`; "
          f"'constant' job, {args.seconds:g} s per run, median of {args.reps} runs; "
          f"rows lost summed over all runs.")
    print()
    print("| DAQJob, 'constant' read | write_period | sdaq rows/s (lost) "
          "| photon_daq rows/s (lost) | ratio | target "
          "| rows per CPU second sdaq / photon_daq (ratio) | photon_daq early writes "
          "| load (1 min) per run sdaq / photon_daq |")
    print("|---|---|---|---|---|---|---|---|---|")
    for period in args.write_period:
        for case, label in CASES.items():
            print(table_row(results, period, case, label))


def table_row(results, period, case, label):
    """One markdown row: sdaq and photon_daq for `case` at write_period `period`."""
    def lost(r):
        twice = f", {r['duplicated_all']} stored twice" if r["duplicated_all"] else ""
        return f"{r['lost_all']}{twice}"

    ours = results[("photon_daq", case, period)]
    ref = results.get(("sdaq", case, period))
    ours_cpu = ours["rows"] / ours["cpu"]
    ref_rate = f"{ref['rate']:,.0f} ({lost(ref)})" if ref else "not run"
    ratio = f"{ours['rate'] / ref['rate']:.1f}x" if ref else "-"
    target = ">= 2x" if case == "scalar" else "-"
    if ref:
        ref_cpu = ref["rows"] / ref["cpu"]
        cpu = f"{ref_cpu:,.0f} / {ours_cpu:,.0f} ({ours_cpu / ref_cpu:.1f}x)"
    else:
        cpu = f"- / {ours_cpu:,.0f}"
    loads = (f"{ref['loads']} / " if ref else "- / ") + f"{ours['loads']}"
    return (f"| {label} | {period:g} s | {ref_rate} | {ours['rate']:,.0f} ({lost(ours)}) "
            f"| {ratio} | {target} | {cpu} | {ours['early_writes']} | {loads} |")


if __name__ == "__main__":
    main()
