#!/usr/bin/env python3
"""Multi-module detector comparison with EXtra-data, in one run, on a 16-module LPD fixture
run with several sequence files (random uint16 data, files in the page cache for both):

1. Stacking all modules of a train range into one array: our MultiModKey::ndarray_bytes (a
   new array each time, as EXtra-data's ndarray() makes one; example `stack_read`,
   in-process, best of --reps) vs EXtra-data's LPD1M(run)['image.data'].ndarray()
   (in-process, best of --reps); also our read alone into an existing buffer
   (read_into_bytes) vs EXtra-data's ndarray(out=existing array), the same read after
   filling a new buffer (the former ndarray_bytes),
   and plain copies of the same bytes into an existing and into a new buffer; memory against
   the output size (ours: peak RSS, which counts the pages of the memory-mapped run files,
   and anonymous memory, with one output alive; EXtra-data: peak RSS growth).
2. Whole-process virtual CXI: xfel-make-virtual-cxi vs extra-data-make-virtual-cxi.

Run from the repository root:  .venv/bin/python benches/scripts/bench_components.py
Options: --reps N (default 3), --dir DIR (fixture location, default target/components-bench),
--sequences, --trains (per sequence), --frames, --pixels (frame side), --json.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
VENV_BIN = Path(sys.executable).parent


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def sh(cmd, **kw):
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def timed(cmd):
    t0 = time.perf_counter()
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {r.stderr[-2000:]}")
    return dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=TARGET / "components-bench")
    ap.add_argument("--sequences", type=int, default=3)
    ap.add_argument("--trains", type=int, default=8)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--pixels", type=int, default=128)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    load = os.getloadavg()

    log("building release binaries...")
    sh(["cargo", "build", "--release", "-p", "fixtures", "--bin", "make-fixtures",
        "-p", "euxfel-components", "--bin", "xfel-make-virtual-cxi", "--example", "stack_read"],
       cwd=REPO)
    run_dir = a.dir / "run"
    expect = a.sequences * 17
    if not (run_dir.is_dir() and len(list(run_dir.glob("*.h5"))) == expect):
        if run_dir.exists():
            shutil.rmtree(run_dir)
        log(f"writing fixture {run_dir} ...")
        sh([TARGET / "release" / "make-fixtures", run_dir, "--modules", 16,
            "--sequences", a.sequences, "--trains", a.trains, "--frames", a.frames,
            "--frame-height", a.pixels, "--frame-width", a.pixels], stdout=subprocess.DEVNULL)
    ntrains = a.sequences * a.trains
    # A train range crossing sequence files, leaving one train out at each end.
    first, last = 1, ntrains - 1

    # Ours, in-process.
    out = subprocess.run(
        [str(TARGET / "release" / "examples" / "stack_read"), str(run_dir),
         f"{first}:{last}", str(a.reps)],
        check=True, capture_output=True, text=True,
    ).stdout
    ours = json.loads(out)

    # EXtra-data, in-process.
    import numpy as np
    from extra_data import RunDirectory
    from extra_data.components import LPD1M

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = LPD1M(RunDirectory(str(run_dir))).select_trains(np.s_[first:last])
        kd = det["image.data"]
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        best_xd = float("inf")
        for _ in range(a.reps):
            t0 = time.perf_counter()
            arr = kd.ndarray()
            best_xd = min(best_xd, time.perf_counter() - t0)
            del arr
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # Into an existing array (ndarray(out=...)): no allocation, as our read_into_bytes.
        buf = kd.ndarray()
        best_xd_out = float("inf")
        for _ in range(a.reps):
            t0 = time.perf_counter()
            kd.ndarray(out=buf)
            best_xd_out = min(best_xd_out, time.perf_counter() - t0)
        del buf

    # Virtual CXI, whole processes.
    cxi_ours, cxi_xd = [], []
    for i in range(a.reps):
        cxi_xd.append(timed([VENV_BIN / "extra-data-make-virtual-cxi", run_dir, "-o",
                             a.dir / "xd.cxi"]))
        cxi_ours.append(timed([TARGET / "release" / "xfel-make-virtual-cxi", run_dir, "-o",
                               a.dir / "ours.cxi"]))

    gib = ours["bytes"] / 2**30
    res = {
        "run": f"16 modules x {a.sequences} sequences x {a.trains} trains x {a.frames} frames "
               f"of {a.pixels}x{a.pixels} uint16",
        "output_shape": ours["shape"],
        "output_mib": ours["bytes"] / 2**20,
        "stack_ours_s": ours["ndarray_s"],
        "stack_xd_s": best_xd,
        "stack_ratio": best_xd / ours["ndarray_s"],
        "ours_gib_s": gib / ours["ndarray_s"],
        "copy_new_buffer_s": ours["copy_new_s"],
        "ours_vs_copy_new": ours["ndarray_s"] / ours["copy_new_s"],
        "ours_prefill_read_s": ours["prefill_read_s"],
        "read_into_existing_s": ours["read_s"],
        "xd_into_existing_s": best_xd_out,
        "read_ratio_xd_out": best_xd_out / ours["read_s"],
        "copy_existing_buffer_s": ours["copy_s"],
        "read_vs_copy_existing": ours["read_s"] / ours["copy_s"],
        "ours_peak_rss_mib": ours["peak_rss_kib_after_read"] / 1024,
        "ours_rss_before_output_mib": ours["peak_rss_kib_before_output"] / 1024,
        "ours_anon_after_read_mib": ours["rss_anon_kib_after_read"] / 1024,
        "xd_peak_rss_growth_mib": (rss1 - rss0) / 1024,
        "cxi_ours_s": min(cxi_ours),
        "cxi_xd_s": min(cxi_xd),
        "cxi_ratio": min(cxi_xd) / min(cxi_ours),
        "load_start": " ".join(f"{x:.2f}" for x in load),
        "load_end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    if a.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k:28} {v:.4g}" if isinstance(v, float) else f"{k:28} {v}")


if __name__ == "__main__":
    main()
