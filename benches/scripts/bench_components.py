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

Two runs: 128 x 128-pixel frames (16 modules x 3 sequences x 8 trains x 32 frames) and LPD's
real 256 x 256 (16 x 2 x 4 x 32, fewer trains to bound the disk); the virtual CXI on the first.
Ours also reports CPU seconds (all threads, user + system) and minor page faults per stacked
read (medians), the transparent huge page counters of /proc/vmstat around its reads, and what
any new array costs here: the kernel's zeroing of a new buffer's pages alone, and the floor,
the same bytes copied into a buffer allocated as ours by as many threads as ours reads with
(one thread too).

Run from the repository root:  .venv/bin/python benches/scripts/bench_components.py
Options: --reps N (default 5), --dir DIR (fixtures, default target/components-bench, removed at
the end unless --keep), --sizes 128,256, --json (also the raw figures as one JSON line).
Prints a ready-to-paste markdown table on stdout.
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


# Fixture layout per frame side: (sequences, trains per sequence, frames per train).
LAYOUTS = {128: (3, 8, 32), 256: (2, 4, 32)}


def fixture(a, pixels):
    seqs, trains, frames = LAYOUTS.get(pixels, (2, 4, 32))
    run_dir = a.dir / f"run{pixels}"
    expect = seqs * 17
    if not (run_dir.is_dir() and len(list(run_dir.glob("*.h5"))) == expect):
        if run_dir.exists():
            shutil.rmtree(run_dir)
        log(f"writing fixture {run_dir} ...")
        sh([TARGET / "release" / "make-fixtures", run_dir, "--modules", 16,
            "--sequences", seqs, "--trains", trains, "--frames", frames,
            "--frame-height", pixels, "--frame-width", pixels], stdout=subprocess.DEVNULL)
    desc = f"16 modules x {seqs} sequences x {trains} trains x {frames} frames of {pixels}x{pixels} uint16"
    return run_dir, seqs * trains, desc


def stack_case(a, pixels):
    run_dir, ntrains, desc = fixture(a, pixels)
    # A train range crossing sequence files, leaving one train out at each end.
    first, last = 1, ntrains - 1

    # Ours, in-process.
    out = subprocess.run(
        [str(TARGET / "release" / "examples" / "stack_read"), str(run_dir),
         f"{first}:{last}", str(a.reps)],
        check=True, capture_output=True, text=True,
    ).stdout
    ours = json.loads(out)

    # EXtra-data, in a fresh process of its own (its peak RSS growth is then this run's).
    xd = json.loads(subprocess.run(
        [sys.executable, __file__, "--xd", str(run_dir), f"{first}:{last}", "--reps", str(a.reps)],
        check=True, capture_output=True, text=True,
    ).stdout)
    best_xd, best_xd_out = xd["ndarray_s"], xd["ndarray_out_s"]

    gib = ours["bytes"] / 2**30
    return run_dir, {
        "run": desc,
        "trains": f"{first}:{last}",
        "output_shape": ours["shape"],
        "output_mib": ours["bytes"] / 2**20,
        "threads": ours["threads"],
        "stack_ours_s": ours["ndarray_s"],
        "stack_xd_s": best_xd,
        "stack_ratio": best_xd / ours["ndarray_s"],
        "ours_gib_s": gib / ours["ndarray_s"],
        "ours_cpu_s": ours["ndarray_cpu_s"],
        "ours_faults": ours["ndarray_faults"],
        "ours_thp": "{:.0f} / {:.0f} / {:.0f}".format(
            ours["ndarray_thp_fault_alloc"], ours["ndarray_thp_fault_fallback"],
            ours["ndarray_compact_stall"]),
        "zero_s": ours["zero_s"],
        "zero_cpu_s": ours["zero_cpu_s"],
        "floor_par_s": ours["floor_par_s"],
        "floor_par_cpu_s": ours["floor_par_cpu_s"],
        "ours_vs_floor": ours["ndarray_s"] / ours["floor_par_s"],
        "xd_vs_floor": best_xd / ours["floor_par_s"],
        "copy_floor_s": ours["copy_floor_s"],
        "floor_cpu_s": ours["copy_floor_cpu_s"],
        "copy_new_buffer_s": ours["copy_new_s"],
        "read_into_existing_s": ours["read_s"],
        "read_cpu_s": ours["read_cpu_s"],
        "xd_into_existing_s": best_xd_out,
        "read_ratio_xd_out": best_xd_out / ours["read_s"],
        "copy_existing_buffer_s": ours["copy_s"],
        "read_vs_copy_existing": ours["read_s"] / ours["copy_s"],
        "ours_peak_rss_mib": ours["peak_rss_kib_after_read"] / 1024,
        "ours_anon_after_read_mib": ours["rss_anon_kib_after_read"] / 1024,
        "xd_peak_rss_growth_mib": xd["rss_growth_kib"] / 1024,
    }


def xd_stack(run_dir, trains, reps):
    """EXtra-data's stacked read of trains A:B (positions), best of reps, as JSON on stdout."""
    import numpy as np
    from extra_data import RunDirectory
    from extra_data.components import LPD1M

    first, last = (int(x) for x in trains.split(":"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = LPD1M(RunDirectory(str(run_dir))).select_trains(np.s_[first:last])
        kd = det["image.data"]
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            arr = kd.ndarray()
            best = min(best, time.perf_counter() - t0)
            del arr
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # Into an existing array (ndarray(out=...)): no allocation, as our read_into_bytes.
        buf = kd.ndarray()
        best_out = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            kd.ndarray(out=buf)
            best_out = min(best_out, time.perf_counter() - t0)
    print(json.dumps({"ndarray_s": best, "ndarray_out_s": best_out,
                      "rss_growth_kib": rss1 - rss0}))


def cxi_case(a, run_dir):
    cxi_ours, cxi_xd = [], []
    for _ in range(a.reps):
        cxi_xd.append(timed([VENV_BIN / "extra-data-make-virtual-cxi", run_dir, "-o",
                             a.dir / "xd.cxi"]))
        cxi_ours.append(timed([TARGET / "release" / "xfel-make-virtual-cxi", run_dir, "-o",
                               a.dir / "ours.cxi"]))
    return {"cxi_ours_s": min(cxi_ours), "cxi_xd_s": min(cxi_xd),
            "cxi_ratio": min(cxi_xd) / min(cxi_ours)}


ROWS = [
    ("new array, ours `ndarray_bytes`", "stack_ours_s", "{:.3f} s", ""),
    ("new array, EXtra-data `ndarray()`", "stack_xd_s", "{:.3f} s", ""),
    ("ratio", "stack_ratio", "**{:.1f}x**", ">= 5x"),
    ("ours: CPU seconds per read (median; all threads, user + system)", "ours_cpu_s", "{:.3f} s", ""),
    ("ours: minor page faults per read (median)", "ours_faults", "{:.0f}", ""),
    ("ours: huge pages at faults / fallbacks to 4 KiB / compaction stalls per read (system-wide)",
     "ours_thp", "{}", ""),
    ("kernel zeroing of a new buffer alone (first touch, one write per page, {threads} threads)",
     "zero_s", "{:.3f} s", ""),
    ("its CPU seconds", "zero_cpu_s", "{:.3f} s", ""),
    ("floor: copy of the bytes into a new buffer allocated as ours, {threads} threads (each its half, as ours)",
     "floor_par_s", "{:.3f} s", ""),
    ("floor: its CPU seconds", "floor_par_cpu_s", "{:.3f} s", ""),
    ("ours / floor", "ours_vs_floor", "{:.2f}", ""),
    ("EXtra-data / floor: the most a new array can reach here", "xd_vs_floor", "**{:.1f}x**", ""),
    ("floor, 1 thread", "copy_floor_s", "{:.3f} s", ""),
    ("floor, 1 thread: its CPU seconds", "floor_cpu_s", "{:.3f} s", ""),
    ("plain `clone()` of the bytes (4 KiB pages, 1 thread)", "copy_new_buffer_s", "{:.3f} s", ""),
    ("existing array, ours `read_into_bytes`", "read_into_existing_s", "{:.3f} s", ""),
    ("existing array, ours: CPU seconds per read (median)", "read_cpu_s", "{:.3f} s", ""),
    ("existing array, EXtra-data `ndarray(out=)`", "xd_into_existing_s", "{:.3f} s", ""),
    ("ratio", "read_ratio_xd_out", "**{:.1f}x**", ""),
    ("copy of the bytes into an existing buffer (1 thread)", "copy_existing_buffer_s", "{:.3f} s", ""),
    ("output size", "output_mib", "{:.0f} MiB", ""),
    ("memory: ours, anonymous with one output alive", "ours_anon_after_read_mib", "{:.0f} MiB", "output + small"),
    ("memory: ours, peak RSS (file pages of the maps included)", "ours_peak_rss_mib", "{:.0f} MiB", ""),
    ("memory: EXtra-data, peak RSS growth", "xd_peak_rss_growth_mib", "{:.0f} MiB", ""),
]


def thp_setting(name):
    """The selected value of a transparent huge page setting (`[madvise]`), or `?`."""
    try:
        text = Path(f"/sys/kernel/mm/transparent_hugepage/{name}").read_text()
    except OSError:
        return "?"
    return next((w.strip("[]") for w in text.split() if w.startswith("[")), "?")


def markdown(cases, cxi, load, a, started):
    cols = [f"{p} x {p} px" for p, _ in cases]
    lines = [
        f"Date {started} UTC; load average (1/5/15 min) at start {load[0]}, at end {load[1]}; "
        f"warm page cache; best of {a.reps}; {os.cpu_count()} CPUs, Linux {os.uname().release}, "
        f"transparent huge pages `{thp_setting('enabled')}`, defrag `{thp_setting('defrag')}`.",
        "Command: `" + " ".join(["python", "benches/scripts/bench_components.py"] + sys.argv[1:]) + "`",
        "",
    ]
    for p, r in cases:
        lines.append(f"- {p} x {p}: {r['run']}; trains {r['trains']} (positions), output "
                     f"{tuple(r['output_shape'])}")
    lines += ["", "| figure | " + " | ".join(cols) + " | target |",
              "|---|" + "---|" * len(cols) + "---|"]
    threads = "/".join(sorted({str(r["threads"]) for _, r in cases}))
    for label, k, fmt, target in ROWS:
        label = label.format(threads=threads)
        lines.append(f"| {label} | " + " | ".join(fmt.format(r[k]) for _, r in cases)
                     + f" | {target} |")
    if cxi:
        first = cols[0]
        lines += ["", f"Virtual CXI (whole processes, the {first} run):", "",
                  "| figure | value | target |", "|---|---|---|",
                  f"| `xfel-make-virtual-cxi` | {cxi['cxi_ours_s']:.3f} s | |",
                  f"| `extra-data-make-virtual-cxi` | {cxi['cxi_xd_s']:.3f} s | |",
                  f"| ratio | **{cxi['cxi_ratio']:.1f}x** | >= 10x |"]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=TARGET / "components-bench")
    ap.add_argument("--sizes", default="128,256")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--xd", nargs=2, metavar=("RUN_DIR", "A:B"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.xd:
        return xd_stack(a.xd[0], a.xd[1], a.reps)
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    load0 = " / ".join(f"{x:.2f}" for x in os.getloadavg())

    log("building release binaries...")
    sh(["cargo", "build", "--release", "-p", "fixtures", "--bin", "make-fixtures",
        "-p", "euxfel-components", "--bin", "xfel-make-virtual-cxi", "--example", "stack_read"],
       cwd=REPO)
    a.dir.mkdir(parents=True, exist_ok=True)
    try:
        cases, cxi = [], None
        for p in [int(x) for x in a.sizes.split(",") if x]:
            log(f"stacked read, {p} x {p} frames ...")
            run_dir, r = stack_case(a, p)
            cases.append((p, r))
            if cxi is None:
                log("virtual CXI ...")
                cxi = cxi_case(a, run_dir)
            if not a.keep:
                shutil.rmtree(run_dir)
    finally:
        if not a.keep:
            shutil.rmtree(a.dir, ignore_errors=True)
    load1 = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    if a.json:
        print(json.dumps({"cases": dict((str(p), r) for p, r in cases), "cxi": cxi,
                          "load_start": load0, "load_end": load1}))
    print(markdown(cases, cxi, (load0, load1), a, started))


if __name__ == "__main__":
    main()
