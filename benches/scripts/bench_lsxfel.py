#!/usr/bin/env python3
"""Whole-process comparison of our EuXFEL tools with EXtra-data, in one run.

1. lsxfel on a fixture run of 340 files (16 modules x 20 sequences x 250 trains, plus
   20 aggregator files): EXtra-data's lsxfel vs ours, cold (no karabo_data_map.json)
   and warm (run map present). Outputs must be identical.
2. Read throughput of a large uncompressed key: our KeyData::read_into (criterion
   bench `euxfel_read`) vs h5py `read_direct` into a preallocated numpy array, one
   read per file, as EXtra-data's KeyData.ndarray does.
3. (--big) Issue 14's "reading speed", whole processes on a big key (--big-gb, default
   2 GiB of one module's image.data, 8 files): `xfel-extract` streaming to .npy in
   /dev/shm vs EXtra-data's `ndarray()` (the call alone and its whole process), and a
   plain copy of the same files (`cat` to /dev/shm, the limit); page cache warm; peak
   RSS of each process. The fixture is deleted afterwards unless --keep.
4. (--cold) As root: lsxfel on the 340-file run with page caches dropped before every
   run (`sync; echo 3 > /proc/sys/vm/drop_caches`), without and with the run map; both
   tools' outputs compared, MB read from disk (getrusage) reported beside the times.
5. (--validate) xfel-validate vs extra-data-validate on the 340-file run (warm).

Run from the repository root:  .venv/bin/python benches/scripts/bench_lsxfel.py
Options: --reps N (default 5), --dir DIR (fixture location, default target/euxfel-bench),
--read-rounds N (alternating h5py / Rust read measurements, default 3), --json
(machine-readable summary on stdout instead of the markdown table), --skip-read,
--skip-lsxfel, --big, --cold, --validate.

Without --json it ends with a ready-to-paste markdown table: figures, ratios, targets,
the load average of each part, the date and the command.
"""
import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
VENV_BIN = Path(sys.executable).parent


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def sh(cmd, **kw):
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def build():
    log("building release binaries (euxfel, euxfel-components, fixtures)...")
    sh(["cargo", "build", "--release", "-p", "euxfel", "--bin", "lsxfel", "--bin", "xfel-validate",
        "-p", "euxfel-components", "--bin", "xfel-extract", "-p", "fixtures", "--bin", "make-fixtures"],
       cwd=REPO)


def make_fixture(out, *args, expect):
    if out.is_dir() and len(list(out.glob("*.h5"))) == expect:
        return
    if out.exists():
        shutil.rmtree(out)
    log(f"writing fixture {out} ...")
    sh([TARGET / "release" / "make-fixtures", out, "--progress", *args], stdout=subprocess.DEVNULL)
    assert len(list(out.glob("*.h5"))) == expect


def timed(cmd):
    t0 = time.perf_counter()
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{cmd} failed: {r.stderr}")
    return dt, r.stdout


def uptime():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def drop_caches():
    sh(["sync"])
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def cold_run(cmd):
    """Run `cmd` after dropping the page caches; return (seconds, stdout)."""
    drop_caches()
    t0 = time.perf_counter()
    p = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate()
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({p.returncode}): {err.decode()[-2000:]}")
    return dt, out.decode()


def bench_cold_open(run_dir, reps):
    """lsxfel with page caches dropped before every run, no run map and run map present.

    Both tools list the same run in alternation; the outputs must be identical. The
    blocks read from disk (getrusage of the children) are reported beside the times."""
    ours = TARGET / "release" / "lsxfel"
    theirs = VENV_BIN / "lsxfel"
    cache = run_dir / "karabo_data_map.json"
    res = {k: [] for k in ("xd_nomap", "rs_nomap", "xd_map", "rs_map")}
    read_mb = {k: [] for k in res}
    outs = {}
    for i in range(reps):
        for tool, name in ((theirs, "xd"), (ours, "rs")):
            cache.unlink(missing_ok=True)
            for case in ("nomap", "map"):
                before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_inblock
                dt, out = cold_run([tool, run_dir])
                blocks = resource.getrusage(resource.RUSAGE_CHILDREN).ru_inblock - before
                res[f"{name}_{case}"].append(dt)
                read_mb[f"{name}_{case}"].append(blocks * 512 / 1e6)
                outs[(name, case)] = out
        log(f"  cold rep {i + 1}/{reps}: " + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in res.items()))
    for case in ("nomap", "map"):
        if outs[("xd", case)] != outs[("rs", case)]:
            raise SystemExit(f"cold lsxfel outputs differ between EXtra-data and ours ({case})")
    return ({k: statistics.median(v) for k, v in res.items()},
            {k: statistics.median(v) for k, v in read_mb.items()},
            {k: [round(x, 4) for x in v] for k, v in res.items()})


def bench_validate(run_dir, reps):
    ours = TARGET / "release" / "xfel-validate"
    theirs = VENV_BIN / "extra-data-validate"
    res = {"xd": [], "rs": []}
    outs = {}
    timed([theirs, run_dir])  # warm the page cache
    for i in range(reps):
        for tool, name in ((theirs, "xd"), (ours, "rs")):
            dt, out = timed([tool, run_dir])
            res[name].append(dt)
            outs[name] = out
        log(f"  validate rep {i + 1}/{reps}: xd {res['xd'][-1]:.3f}s, rs {res['rs'][-1]:.3f}s")
    if outs["xd"].strip().splitlines()[-1] != outs["rs"].strip().splitlines()[-1]:
        raise SystemExit(f"validation results differ:\n{outs['xd']}\n{outs['rs']}")
    return {k: statistics.median(v) for k, v in res.items()}


XD_NDARRAY = """
import resource, sys, time
import extra_data
t0 = time.perf_counter()
kd = extra_data.RunDirectory(sys.argv[1])[sys.argv[2], sys.argv[3]]
t1 = time.perf_counter()
a = kd.ndarray()
t2 = time.perf_counter()
print(t1 - t0, t2 - t1, a.nbytes, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def child_run(cmd):
    """Run `cmd` (output discarded); return (seconds, peak RSS MiB, stdout)."""
    t0 = time.perf_counter()
    p = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    out = p.stdout.read().decode()
    err = p.stderr.read().decode()
    p.stdout.close()
    p.stderr.close()
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({p.returncode}): {err[-2000:]}")
    return dt, ru.ru_maxrss / 1024, out


def bench_big_read(run_dir, source, key, rounds):
    """Whole processes on a big key, page cache warm, alternating tools each round."""
    shm = Path("/dev/shm") / f"euxfel-bench-{os.getpid()}"
    shm.mkdir()
    files = sorted(run_dir.glob("*.h5"))
    extract = TARGET / "release" / "xfel-extract"
    res = {k: [] for k in ("copy", "rs_extract", "xd_ndarray", "xd_process")}
    rss = {"rs_extract": 0.0, "xd_process": 0.0}
    nbytes = None
    try:
        for f in files:  # warm the page cache
            sh(["cat", f], stdout=subprocess.DEVNULL)
        for r in range(rounds):
            dt, _, _ = child_run(["sh", "-c", 'cat "$@" > "$0"', shm / "copy", *files])
            res["copy"].append(dt)
            (shm / "copy").unlink()
            dt, m, _ = child_run([extract, "--no-cache", run_dir, source, key, "--out", shm / "out"])
            res["rs_extract"].append(dt)
            rss["rs_extract"] = max(rss["rs_extract"], m)
            shutil.rmtree(shm / "out")
            dt, m, out = child_run([sys.executable, "-c", XD_NDARRAY, run_dir, source, key])
            _, nd, nbytes, _ = out.split()
            res["xd_ndarray"].append(float(nd))
            res["xd_process"].append(dt)
            rss["xd_process"] = max(rss["xd_process"], m)
            log(f"  big read round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in res.items()))
    finally:
        shutil.rmtree(shm, ignore_errors=True)
    copied = sum(f.stat().st_size for f in files)
    return {"key_bytes": int(nbytes), "copied_bytes": copied,
            "median_s": {k: statistics.median(v) for k, v in res.items()},
            "peak_rss_mib": rss}


def bench_lsxfel(run_dir, reps):
    ours = TARGET / "release" / "lsxfel"
    theirs = VENV_BIN / "lsxfel"
    cache = run_dir / "karabo_data_map.json"
    res = {k: [] for k in ("xd_cold", "xd_warm", "rs_cold", "rs_warm")}
    outputs = {}
    for i in range(reps):
        for tool, name in ((theirs, "xd"), (ours, "rs")):
            cache.unlink(missing_ok=True)
            dt, out = timed([tool, run_dir])
            res[f"{name}_cold"].append(dt)
            outputs[name] = out
            assert cache.exists(), f"{name} did not write the run map"
            dt, out = timed([tool, run_dir])
            res[f"{name}_warm"].append(dt)
        log(f"  rep {i + 1}/{reps}: " + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in res.items()))
    if outputs["xd"] != outputs["rs"]:
        raise SystemExit("lsxfel outputs differ between EXtra-data and ours")
    med = {k: statistics.median(v) for k, v in res.items()}
    return med


def h5py_read_direct(run_dir, source, key, reps):
    import h5py
    import numpy as np
    import extra_data

    dc = extra_data.RunDirectory(str(run_dir))
    kd = dc[source, key]
    path = kd.hdf5_data_path
    chunks = [(c.file.filename, c.slice) for c in kd._data_chunks_nonempty]
    out = np.empty(kd.shape, dtype=kd.dtype)
    files = {fn: h5py.File(fn, "r") for fn, _ in chunks}
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        pos = 0
        for fn, sl in chunks:
            n = sl.stop - sl.start
            files[fn][path].read_direct(out, source_sel=np.s_[sl], dest_sel=np.s_[pos:pos + n])
            pos += n
        times.append(time.perf_counter() - t0)
    nbytes = out.nbytes
    return nbytes, nbytes / statistics.median(times) / 2**30


def rust_read_into(run_dir, source, key):
    env = dict(os.environ, EUXFEL_BENCH_RUN=str(run_dir), EUXFEL_BENCH_SOURCE=source,
               EUXFEL_BENCH_KEY=key)
    r = subprocess.run(
        ["cargo", "bench", "-p", "benches", "--bench", "euxfel_read", "--",
         "--noplot", "euxfel_keydata"],
        cwd=REPO, env=env, capture_output=True, text=True,
    )
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    m = re.search(r"euxfel_keydata/read_into\s+time:.*?\n\s+thrpt:\s+\[\S+ \S+ (\S+) (\S+)", r.stdout)
    if not m:
        raise RuntimeError("could not find the throughput in the criterion output:\n" + r.stdout)
    val, unit = float(m.group(1)), m.group(2)
    scale = {"GiB/s": 1.0, "MiB/s": 1 / 1024, "KiB/s": 1 / 2**20, "B/s": 1 / 2**30}[unit]
    return val * scale


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=TARGET / "euxfel-bench")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--skip-read", action="store_true")
    ap.add_argument("--skip-lsxfel", action="store_true")
    ap.add_argument("--read-rounds", type=int, default=3)
    ap.add_argument("--big", action="store_true")
    ap.add_argument("--big-gb", type=float, default=2.0)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--cold", action="store_true")
    ap.add_argument("--validate", action="store_true")
    a = ap.parse_args()
    if a.cold and os.geteuid() != 0:
        raise SystemExit("--cold drops the page caches: run as root")
    build()
    summary = {"uptime_start": uptime()}
    ls_dir = a.dir / "r0450"
    if a.cold or a.validate:
        make_fixture(ls_dir, "--modules", "16", "--sequences", "20", "--trains", "250",
                     "--frames", "4", "--frame-height", "16", "--frame-width", "16", expect=340)
    if a.cold:
        log(f"lsxfel with dropped page caches on {ls_dir} (340 files), {a.reps} repetitions ...")
        med, read_mb, runs = bench_cold_open(ls_dir, a.reps)
        summary["cold"] = {"median_s": med, "read_mb": read_mb, "runs_s": runs, "uptime": uptime(),
                           "speedup_nomap": med["xd_nomap"] / med["rs_nomap"],
                           "speedup_map": med["xd_map"] / med["rs_map"]}
    if a.validate:
        log(f"xfel-validate vs extra-data-validate on {ls_dir}, {a.reps} repetitions ...")
        med = bench_validate(ls_dir, a.reps)
        summary["validate"] = {"median_s": med, "uptime": uptime(),
                               "speedup": med["xd"] / med["rs"]}
    if a.big:
        big_dir = a.dir / "r0452"
        # 8 files of 250 trains x 16 frames of 256 x W uint16.
        width = max(16, int(a.big_gb * 2**30 / (8 * 250 * 16 * 256 * 2)))
        make_fixture(big_dir, "--modules", "1", "--sequences", "8", "--trains", "250",
                     "--frames", "16", "--frame-height", "256", "--frame-width", str(width),
                     "--run", "452", expect=16)
        try:
            log(f"big key read on {big_dir}, {a.read_rounds} rounds ...")
            summary["big"] = bench_big_read(big_dir, "FXE_DET_LPD1M-1/DET/0CH0:xtdf",
                                            "image.data", a.read_rounds)
            summary["big"]["uptime"] = uptime()
        finally:
            if not a.keep:
                shutil.rmtree(big_dir, ignore_errors=True)
    if a.big or a.cold or a.validate:
        a.skip_lsxfel = a.skip_read = True
    if not a.skip_lsxfel:
        run_dir = a.dir / "r0450"
        make_fixture(run_dir, "--modules", "16", "--sequences", "20", "--trains", "250",
                     "--frames", "4", "--frame-height", "16", "--frame-width", "16", expect=340)
        log(f"lsxfel on {run_dir} (340 files), {a.reps} repetitions ...")
        med = bench_lsxfel(run_dir, a.reps)
        summary.update({
            "files": 340,
            "lsxfel_median_s": med,
            "cold_speedup": med["xd_cold"] / med["rs_cold"],
            "warm_speedup": med["xd_warm"] / med["rs_warm"],
        })
    if not a.skip_read:
        read_dir = a.dir / "r0451"
        make_fixture(read_dir, "--modules", "1", "--sequences", "4", "--trains", "100",
                     "--frames", "32", "--frame-height", "128", "--frame-width", "128",
                     "--run", "451", expect=8)
        src, key = "FXE_DET_LPD1M-1/DET/0CH0:xtdf", "image.data"
        # Alternate the two measurements so that load from other processes on this
        # shared machine hits both alike; report medians over the rounds.
        h5py_runs, rs_runs = [], []
        for r in range(a.read_rounds):
            log(f"read throughput of {src} {key}, round {r + 1}/{a.read_rounds} ...")
            nbytes, g = h5py_read_direct(read_dir, src, key, a.reps)
            h5py_runs.append(g)
            rs_runs.append(rust_read_into(read_dir, src, key))
            log(f"  h5py {h5py_runs[-1]:.2f} GiB/s, ours {rs_runs[-1]:.2f} GiB/s")
        h5py_gib, rs_gib = statistics.median(h5py_runs), statistics.median(rs_runs)
        summary.update({
            "read_bytes": nbytes,
            "h5py_read_direct_GiB_s": h5py_gib,
            "keydata_read_into_GiB_s": rs_gib,
            "read_ratio": rs_gib / h5py_gib,
            "read_ratio_per_round": [r / h for r, h in zip(rs_runs, h5py_runs)],
        })
    if a.json:
        print(json.dumps(summary, indent=2))
    else:
        print_table(summary)


def print_table(summary):
    """A ready-to-paste markdown table: figures, ratios, targets, load, date, command."""
    rows = []
    if "cold" in summary:
        c, mb = summary["cold"]["median_s"], summary["cold"]["read_mb"]
        load = summary["cold"]["uptime"].split("load average:")[-1].strip()
        rows.append(("lsxfel, 340 files, page caches dropped, no run map (MB read: "
                     f"{mb['xd_nomap']:.0f} / {mb['rs_nomap']:.0f})", c["xd_nomap"], c["rs_nomap"],
                     c["xd_nomap"] / c["rs_nomap"], ">= 20x", load))
        rows.append(("lsxfel, 340 files, page caches dropped, run map present (MB read: "
                     f"{mb['xd_map']:.0f} / {mb['rs_map']:.0f})", c["xd_map"], c["rs_map"],
                     c["xd_map"] / c["rs_map"], "", load))
    if "validate" in summary:
        v = summary["validate"]["median_s"]
        load = summary["validate"]["uptime"].split("load average:")[-1].strip()
        rows.append(("`extra-data-validate` vs `xfel-validate`, 340 files, warm", v["xd"], v["rs"],
                     summary["validate"]["speedup"], ">= 20x", load))
    if "big" in summary:
        b = summary["big"]
        m, r = b["median_s"], b["peak_rss_mib"]
        load = b["uptime"].split("load average:")[-1].strip()
        gib = b["key_bytes"] / 2**30
        rows.append((f"big key {gib:.2f} GiB, warm: `ndarray()` call vs whole `xfel-extract` process",
                     m["xd_ndarray"], m["rs_extract"], m["xd_ndarray"] / m["rs_extract"], ">= 2x", load))
        rows.append(("big key: whole EXtra-data process vs `xfel-extract`", m["xd_process"],
                     m["rs_extract"], m["xd_process"] / m["rs_extract"], "", load))
        rows.append((f"big key: plain copy (`cat` of {b['copied_bytes'] / 2**30:.2f} GiB to /dev/shm, "
                     "first column) vs `xfel-extract`", m["copy"], m["rs_extract"],
                     m["copy"] / m["rs_extract"], "the limit", load))
        rows.append((f"big key: peak RSS, MiB ({r['xd_process']:.0f} / {r['rs_extract']:.0f})",
                     None, None, None, "bounded", load))
    if "lsxfel_median_s" in summary:
        m = summary["lsxfel_median_s"]
        rows.append(("lsxfel, 340 files, warm, no run map", m["xd_cold"], m["rs_cold"],
                     summary["cold_speedup"], "", ""))
        rows.append(("lsxfel, 340 files, warm, run map present", m["xd_warm"], m["rs_warm"],
                     summary["warm_speedup"], "", ""))
    if "read_ratio" in summary:
        rows.append((f"read {summary['read_bytes'] / 2**20:.0f} MiB key, GiB/s (h5py `read_direct` vs "
                     "`KeyData::read_into`)", summary["h5py_read_direct_GiB_s"],
                     summary["keydata_read_into_GiB_s"], summary["read_ratio"], "", ""))
    print("| measurement | EXtra-data | ours | ratio | target | load average (1, 5, 15 min) |")
    print("|---|---|---|---|---|---|")
    for name, xd, rs, ratio, target, load in rows:
        f = (lambda x: "" if x is None else f"{x:.3f}")
        rt = "" if ratio is None else f"**{ratio:.1f}x**"
        print(f"| {name} | {f(xd)} | {f(rs)} | {rt} | {target} | {load} |")
    print(f"\nDate: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load at the start: "
          f"{summary['uptime_start'].split('load average:')[-1].strip()}. "
          "Times in seconds, medians over the repetitions (read rate in GiB/s).")
    print(f"Command: `.venv/bin/python {' '.join(sys.argv)}`")
    if "cold" in summary:
        print("Cold runs (s): " + "; ".join(f"{k} " + ", ".join(f"{x:.3f}" for x in v)
                                            for k, v in summary["cold"]["runs_s"].items()))


if __name__ == "__main__":
    main()
