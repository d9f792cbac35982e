#!/usr/bin/env python3
"""photon_daq.euxfel (Python over the Rust crates) against EXtra-data, in one run.

EuXFEL part (against EXtra-data, both installed in this Python):
1. RunDirectory() of the 340-file fixture run (16 modules x 20 sequences x 250 trains
   plus 20 aggregator files, as bench_lsxfel.py makes it): cold (page caches dropped,
   no karabo_data_map.json; needs root, else skipped) and warm (caches warm, run map
   present). Each open is a fresh child process timing the call alone (EXtra-data
   keeps opened files in a per-process registry).
2. KeyData.ndarray() of a key just over 2 GB (one LPD module's image.data, 8 files,
   written for the measurement and deleted after), page cache warm, in a child
   process each: the call's time and the process's peak RSS against the array size.
3. trains() over EXtra-data's example FXE run (480 trains): all control sources plus
   one instrument source (an LPD module, 16.8 MB per train of mostly unallocated
   chunks; a small camera), in this process, warm.
The script ends with a ready-to-paste markdown table.

The DAQJob figures against sdaq are benches/scripts/bench_pydaq.py's.

Run from the repository root after `make setup` (root for the cold figures):

    .venv/bin/python benches/scripts/bench_python.py [--reps N] [--dir DIR]
        [--big-gb G] [--skip-open] [--skip-ndarray] [--skip-trains]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
LPD = "FXE_DET_LPD1M-1/DET/0CH0:xtdf"
CAMERA = "FXE_XAD_GEC/CAM/CAMERA:daqOutput"
# Module importing each library in the child processes.
LIB_MODULE = {"extra_data": "extra_data", "photon_daq": "photon_daq.euxfel"}


def log(msg):
    print(msg, flush=True)


def uptime():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def median_time(fn, reps):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def make_fixture(out, *args, expect):
    """A make-fixtures run directory (release build), reused if complete."""
    if out.is_dir() and len(list(out.glob("*.h5"))) == expect:
        return
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "fixtures", "--bin",
                    "make-fixtures"], cwd=REPO, check=True)
    log(f"writing fixture {out} ...")
    subprocess.run([str(TARGET / "release" / "make-fixtures"), str(out), *args], check=True,
                   stdout=subprocess.DEVNULL)
    if len(list(out.glob("*.h5"))) != expect:
        raise SystemExit(f"{out}: expected {expect} files")


def drop_caches():
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


CHILD_OPEN = """
import sys, time, importlib
lib = importlib.import_module(sys.argv[1])
t0 = time.perf_counter()
lib.RunDirectory(sys.argv[2])
print(time.perf_counter() - t0)
"""

CHILD_NDARRAY = """
import sys, time, importlib, resource
lib = importlib.import_module(sys.argv[1])
kd = lib.RunDirectory(sys.argv[2])[sys.argv[3], sys.argv[4]]
t0 = time.perf_counter()
a = kd.ndarray()
dt = time.perf_counter() - t0
print(dt, a.nbytes, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def child(code, *args):
    """Run `code` in a fresh Python; its stdout, split."""
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise RuntimeError(f"child {args} failed: {r.stderr}")
    return r.stdout.split()


# Warm opens per library and repetition (a warm open takes milliseconds: one sample
# is at the mercy of the machine's load).
WARM_SAMPLES = 5


def bench_open(run_dir, reps, cold):
    """Median seconds of RunDirectory() per library: cold (caches dropped, no run
    map) when `cold`, and warm (run map written by a first open, caches warm). The
    libraries alternate within each repetition, so both see the same load."""
    cache = run_dir / "karabo_data_map.json"
    times = {name: {"cold": [], "warm": []} for name in LIB_MODULE}
    for _ in range(reps):
        for name, mod in LIB_MODULE.items():
            if cold:
                cache.unlink(missing_ok=True)
                drop_caches()
                times[name]["cold"].append(float(child(CHILD_OPEN, mod, run_dir)[0]))
            child(CHILD_OPEN, mod, run_dir)  # writes the run map, warms the caches
        for _ in range(WARM_SAMPLES):
            for name, mod in LIB_MODULE.items():
                times[name]["warm"].append(float(child(CHILD_OPEN, mod, run_dir)[0]))
    res = {}
    for name in LIB_MODULE:
        res[name] = {k: statistics.median(v) for k, v in times[name].items() if v}
        log(f"RunDirectory {name:11s} " + ", ".join(f"{k} {v * 1e3:8.1f} ms"
                                                    for k, v in res[name].items()))
    return res


def bench_ndarray(run_dir, reps):
    """Median seconds of ndarray() of the LPD module's image.data, the array's size
    and each library's peak RSS (warm page cache, a fresh process each)."""
    for f in sorted(run_dir.glob("*.h5")):
        subprocess.run(["cat", str(f)], stdout=subprocess.DEVNULL, check=True)
    res = {}
    for name in ("extra_data", "photon_daq"):
        times, rss, nbytes = [], 0, 0
        for _ in range(reps):
            out = child(CHILD_NDARRAY, LIB_MODULE[name], run_dir, LPD, "image.data")
            times.append(float(out[0]))
            nbytes, rss = int(out[1]), max(rss, int(out[2]))
        res[name] = {"s": statistics.median(times), "nbytes": nbytes, "rss": rss}
        log(f"ndarray {name:11s} {nbytes / 1e9:.2f} GB: {res[name]['s'] * 1e3:8.1f} ms "
            f"({nbytes / res[name]['s'] / 2**30:.2f} GiB/s), peak RSS {rss / 1e9:.2f} GB")
    return res


def bench_trains(libs, run_dir, reps):
    """Median seconds of iterating trains() over all control sources plus one
    instrument source, per selection and library."""
    res = {}
    for inst in (LPD, CAMERA):
        for name, lib in libs.items():
            run = lib.RunDirectory(str(run_dir))
            sel = run.select([(s, "*") for s in run.control_sources] + [(inst, "*")])

            def iterate():
                for _ in sel.trains():
                    pass

            res[(inst, name)] = median_time(iterate, reps)
            log(f"trains() {name:11s} control + {inst}: {len(sel.train_ids)} trains in "
                f"{res[(inst, name)] * 1e3:8.1f} ms")
    return res


def euxfel_table(results, args, load):
    """The markdown table of the EuXFEL figures."""
    rows = ["| measurement | EXtra-data 1.25 | photon_daq | speed-up | target |",
            "|---|---|---|---|---|"]
    op = results.get("open")
    if op:
        for k in ("cold", "warm"):
            if k in op["photon_daq"]:
                xd, pd = op["extra_data"][k], op["photon_daq"][k]
                what = ("page caches dropped, no run map" if k == "cold"
                        else "warm, run map present")
                rows.append(f"| RunDirectory(), 340 files, {what} | {xd * 1e3:.0f} ms | "
                            f"{pd * 1e3:.0f} ms | {xd / pd:.1f}x | >= 10x |")
    nd = results.get("ndarray")
    if nd:
        xd, pd = nd["extra_data"], nd["photon_daq"]
        rows.append(f"| ndarray(), {pd['nbytes'] / 1e9:.2f} GB key (8 files), warm | "
                    f"{xd['s']:.2f} s, peak RSS {xd['rss'] / 1e9:.2f} GB | {pd['s']:.2f} s, "
                    f"peak RSS {pd['rss'] / 1e9:.2f} GB | {xd['s'] / pd['s']:.1f}x | >= 2x |")
    tr = results.get("trains")
    if tr:
        for inst in (LPD, CAMERA):
            xd, pd = tr[(inst, "extra_data")], tr[(inst, "photon_daq")]
            rows.append(f"| trains(), 480 trains, control + {inst} | {xd * 1e3:.0f} ms | "
                        f"{pd * 1e3:.0f} ms | {xd / pd:.1f}x | >= 5x |")
    rows.append("")
    rows.append(f"Medians of {args.reps} runs; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; "
                f"load: {load}")
    rows.append(f"Command: `{' '.join([Path(sys.executable).name] + sys.argv)}`")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=TARGET / "euxfel-bench",
                    help="fixture location (default target/euxfel-bench, as bench_lsxfel.py)")
    ap.add_argument("--big-gb", type=float, default=2.05,
                    help="size of the ndarray() key in GB (default 2.05)")
    ap.add_argument("--skip-open", action="store_true")
    ap.add_argument("--skip-ndarray", action="store_true")
    ap.add_argument("--skip-trains", action="store_true")
    args = ap.parse_args()

    import extra_data
    import photon_daq.euxfel as pd_euxfel

    libs = {"extra_data": extra_data, "photon_daq": pd_euxfel}
    load_start = uptime()
    log(f"load at start: {load_start}")
    results = {}
    if not args.skip_open:
        run_dir = args.dir / "r0450"
        make_fixture(run_dir, "--modules", "16", "--sequences", "20", "--trains", "250",
                     "--frames", "4", "--frame-height", "16", "--frame-width", "16", expect=340)
        cold = os.geteuid() == 0
        if not cold:
            log("not root: page caches cannot be dropped, no cold RunDirectory figures")
        results["open"] = bench_open(run_dir, args.reps, cold)
    if not args.skip_ndarray:
        big = args.dir / "r0454-python"
        # 8 files of 250 trains x 16 frames of 256 x W uint16, just over --big-gb.
        width = int(args.big_gb * 1e9 / (8 * 250 * 16 * 256 * 2)) + 1
        need = 8 * 250 * 16 * 256 * 2 * width
        args.dir.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(args.dir).free
        if free < 3 * need:
            log(f"skipping ndarray(): {free / 1e9:.1f} GB free, {3 * need / 1e9:.1f} GB needed")
        else:
            try:
                make_fixture(big, "--modules", "1", "--sequences", "8", "--trains", "250",
                             "--frames", "16", "--frame-height", "256", "--frame-width",
                             str(width), "--run", "454", expect=16)
                results["ndarray"] = bench_ndarray(big, args.reps)
            finally:
                shutil.rmtree(big, ignore_errors=True)
    if not args.skip_trains:
        from extra_data.tests import make_examples

        with tempfile.TemporaryDirectory(prefix="bench-python-") as fxe:
            make_examples.make_fxe_run(fxe, format_version="1.2")
            results["trains"] = bench_trains(libs, fxe, args.reps)
    load_end = uptime()

    log("")
    log("## photon_daq against EXtra-data (paste into docs/benchmarks.md)")
    log("")
    log(euxfel_table(results, args, f"start `{load_start}`, end `{load_end}`"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
