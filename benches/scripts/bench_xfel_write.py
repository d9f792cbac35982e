#!/usr/bin/env python3
"""Whole-process comparison of xfel-write with EXtra-data's writers, in one run.

On the 340-file fixture run (16 modules x 20 sequences x 250 trains, plus 20 aggregator
files, the same run as bench_lsxfel.py):

1. copy of one detector module (all its keys): `xfel-write copy` vs EXtra-data's
   `DataCollection.write` vs `cp` of the module's files (the limit: the same bytes, no HDF5).
2. copy of all control sources: `xfel-write copy` vs EXtra-data's `write`.
3. virtual file of the whole run: `xfel-write virtual` vs EXtra-data's `write_virtual`.
4. overview file: `xfel-write overview` vs `python -m extra_data.voview`.
5. lsxfel on the run with and without the overview file (ours and EXtra-data's), warm (page
   cache kept) and cold (page cache dropped before each run when /proc/sys/vm/drop_caches is
   writable, reported).
6. The realistic case: one module of 1 MiB frames (512 x 1024 u16, one frame per chunk; 2
   files, 128 frames), unfiltered and gzip-compressed (the stored-bytes path): `xfel-write
   copy` vs EXtra-data's `write` vs `cp`.

Each figure is the median over --reps runs (outputs removed between runs), with the 1-minute
load average before and after its runs (the machine may be shared); every output is checked
with extra-data-validate once. Ratios are EXtra-data / ours.

Run from the repository root:  .venv/bin/python benches/scripts/bench_xfel_write.py
Options: --reps N (default 3), --dir DIR (default target/euxfel-bench), --json, --small
(a 10-file run and smaller frames instead, for checking that the script works).

At the end it prints a markdown table ready for docs/benchmarks.md (figures, ratios,
targets, load averages, date, the command). The fixtures stay in --dir for the next run
(the copies and other outputs are removed).
"""
import argparse
import datetime
import json
import os
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
PY = VENV_BIN / "python"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def sh(cmd, **kw):
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def build():
    log("building release binaries (euxfel, euxfel-write, fixtures)...")
    sh(["cargo", "build", "--release", "-p", "euxfel", "--bin", "lsxfel",
        "-p", "euxfel-write", "--bin", "xfel-write",
        "-p", "fixtures", "--bin", "make-fixtures"], cwd=REPO)


def make_fixture(out, *args, expect):
    if out.is_dir() and len(list(out.glob("*.h5"))) == expect:
        return
    if out.exists():
        shutil.rmtree(out)
    log(f"writing fixture {out} ...")
    sh([TARGET / "release" / "make-fixtures", out, "--progress", *args], stdout=subprocess.DEVNULL)
    assert len(list(out.glob("*.h5"))) == expect


def drop_caches():
    """Drops the page cache if allowed; returns whether it was."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def children_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def timed(cmd, cold=False):
    """Wall-clock and CPU (user + system) seconds of one run of `cmd`."""
    if cold:
        drop_caches()
    cpu0 = children_cpu()
    t0 = time.perf_counter()
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    dt = time.perf_counter() - t0
    cpu = children_cpu() - cpu0
    if r.returncode != 0:
        raise RuntimeError(f"{cmd} failed: {r.stderr}")
    return dt, cpu


def xd_script(kind, run_dir, out, select=None):
    """A python -c script running EXtra-data's writer the way a user would."""
    sel = f".select({select!r})" if select else ""
    opener = f"extra_data.RunDirectory({str(run_dir)!r}, _use_voview=False)"
    return [PY, "-c", f"import extra_data; {opener}{sel}.{kind}({str(out)!r})"]


def problems(path):
    """extra-data-validate's problem messages for `path` (file names left out)."""
    r = subprocess.run([VENV_BIN / "extra-data-validate", str(path)], capture_output=True, text=True)
    lines = (r.stdout + r.stderr).splitlines()
    return r.returncode, sorted(l for l in lines if l.strip() and "file:" not in l
                                and not l.startswith(("Checking", "Progress", "0 problems")))


def validate(path, reference=None):
    """Our output validates, or (the fixture's control timestamps restart in every sequence
    file, so any merge of files has decreasing timestamps) has exactly the problems of
    EXtra-data's own output `reference`."""
    code, ours = problems(path)
    if code == 0:
        return
    if reference is not None and problems(reference)[1] == ours:
        return
    raise RuntimeError(f"extra-data-validate {path}:\n" + "\n".join(ours))


LOADS = {}
# Median CPU seconds (user + system) of each measurement: on a loaded machine wall-clock
# time depends on the share of the CPUs a process gets, CPU time much less.
CPU = {}


def ours_summary(cmd):
    """The --json summary of one more run of our `cmd` (how the copy went: staged in
    memory, rows from the maps, stored chunks)."""
    r = subprocess.run([str(c) for c in cmd] + ["--json"], capture_output=True, text=True,
                       check=True)
    return json.loads(r.stdout)


def compress_module(src_dir, dst_dir):
    """A copy of run `src_dir` whose image.data datasets are gzip-compressed (level 1, the
    same one-frame chunks), written with h5py."""
    import h5py

    if dst_dir.exists():
        shutil.rmtree(dst_dir)
    shutil.copytree(src_dir, dst_dir, ignore=shutil.ignore_patterns("karabo_data_map.json"))
    for f in sorted(dst_dir.glob("*.h5")):
        with h5py.File(f, "r+") as h:
            def visit(name, obj):
                if name.endswith("image/data") and isinstance(obj, h5py.Dataset):
                    found.append(name)
            found = []
            h.visititems(visit)
            for name in found:
                ds = h[name]
                data, chunks, maxshape = ds[()], ds.chunks, ds.maxshape
                del h[name]
                h.create_dataset(name, data=data, chunks=chunks, maxshape=maxshape,
                                 compression="gzip", compression_opts=1)
        if found:
            # Space of the deleted datasets is not reclaimed in place: repack.
            packed = f.with_suffix(".packed")
            sh(["h5repack", f, packed])
            packed.replace(f)


def median_runs(name, cmd, out, reps, cold=False):
    load_before = os.getloadavg()[0]
    times, cpus = [], []
    for i in range(reps):
        if out is not None:
            if out.is_dir():
                shutil.rmtree(out)
            else:
                out.unlink(missing_ok=True)
        dt, cpu = timed(cmd, cold)
        times.append(dt)
        cpus.append(cpu)
        log(f"  {name} rep {i + 1}/{reps}: {dt:.3f} s ({cpu:.3f} s CPU)")
    CPU[name] = round(statistics.median(cpus), 3)
    LOADS[name] = (round(load_before, 2), round(os.getloadavg()[0], 2))
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=TARGET / "euxfel-bench")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--small", action="store_true")
    a = ap.parse_args()
    build()
    xw = TARGET / "release" / "xfel-write"
    if a.small:
        run_dir, nfiles = a.dir / "r0452-small", 10
        make_fixture(run_dir, "--modules", "4", "--sequences", "2", "--trains", "50",
                     "--frames", "4", "--frame-height", "16", "--frame-width", "16",
                     "--run", "452", expect=nfiles)
        big_dir = a.dir / "r0453-small-big"
        make_fixture(big_dir, "--modules", "1", "--sequences", "2", "--trains", "4",
                     "--frames", "4", "--frame-height", "128", "--frame-width", "256",
                     "--run", "453", expect=4)
    else:
        run_dir, nfiles = a.dir / "r0450", 340
        make_fixture(run_dir, "--modules", "16", "--sequences", "20", "--trains", "250",
                     "--frames", "4", "--frame-height", "16", "--frame-width", "16", expect=nfiles)
        big_dir = a.dir / "r0451-big"
        make_fixture(big_dir, "--modules", "1", "--sequences", "2", "--trains", "16",
                     "--frames", "4", "--frame-height", "512", "--frame-width", "1024",
                     "--run", "451", expect=4)
    big_gz_dir = big_dir.with_name(big_dir.name + "-gzip")
    if not (big_gz_dir.is_dir() and len(list(big_gz_dir.glob("*.h5"))) == 4):
        log(f"writing {big_gz_dir} (image.data gzip-compressed) ...")
        compress_module(big_dir, big_gz_dir)
    started = datetime.datetime.now(datetime.timezone.utc)
    frame = "128 x 256 u16 (64 KiB)" if a.small else "512 x 1024 u16 (1 MiB)"
    out_dir = a.dir / "write-out"
    out_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "overview.h5").unlink(missing_ok=True)
    module = "FXE_DET_LPD1M-1/DET/0CH0:xtdf"
    res = {"files": nfiles, "reps": a.reps}

    # 1. One detector module.
    ours_out, xd_out = out_dir / "module-rs.h5", out_dir / "module-xd.h5"
    ours_cmd = [xw, "copy", run_dir, "-o", ours_out, "--overwrite", "--source", module]
    rs = median_runs("copy module (ours)", ours_cmd, ours_out, a.reps)
    how = ours_summary(ours_cmd)
    xd = median_runs("copy module (EXtra-data)", xd_script("write", run_dir, xd_out, module),
                     xd_out, a.reps)
    files = sorted(run_dir.glob("*-LPD00-*.h5"))
    cp_dir = out_dir / "cp"
    cp_dir.mkdir(exist_ok=True)
    cp = median_runs("cp module files", ["cp", *files, cp_dir], None, a.reps)
    shutil.rmtree(cp_dir)
    validate(ours_out, xd_out)
    res["copy_module"] = {"ours_s": rs, "extra_data_s": xd, "cp_s": cp,
                          "speedup": xd / rs, "vs_cp": rs / cp,
                          "staged": how["staged"], "rows_from_map": how["rows_from_map"],
                          "direct_chunks": how["direct_chunks"]}

    # 2. All control sources.
    ours_out, xd_out = out_dir / "control-rs.h5", out_dir / "control-xd.h5"
    import extra_data
    ctrl = sorted(extra_data.RunDirectory(str(run_dir), _use_voview=False).control_sources)
    src_args = [x for s in ctrl for x in ("--source", s)]
    rs = median_runs("copy control (ours)", [xw, "copy", run_dir, "-o", ours_out, "--overwrite",
                                            *src_args], ours_out, a.reps)
    sel = [(s, "*") for s in ctrl]
    xd = median_runs("copy control (EXtra-data)",
                     [PY, "-c", "import extra_data; extra_data.RunDirectory("
                      f"{str(run_dir)!r}, _use_voview=False).select({sel!r}).write({str(xd_out)!r})"],
                     xd_out, a.reps)
    validate(ours_out, xd_out)
    res["copy_control"] = {"ours_s": rs, "extra_data_s": xd, "speedup": xd / rs}

    # 3. Virtual file of the whole run.
    ours_out, xd_out = out_dir / "virtual-rs.h5", out_dir / "virtual-xd.h5"
    rs = median_runs("virtual (ours)", [xw, "virtual", run_dir, "-o", ours_out, "--overwrite"],
                     ours_out, a.reps)
    xd = median_runs("virtual (EXtra-data)", xd_script("write_virtual", run_dir, xd_out),
                     xd_out, a.reps)
    validate(ours_out, xd_out)
    res["virtual"] = {"ours_s": rs, "extra_data_s": xd, "speedup": xd / rs}

    # 4. Overview files.
    ov, ov_xd = run_dir / "overview.h5", out_dir / "overview-xd.h5"
    xd = median_runs("overview (EXtra-data)", [PY, "-m", "extra_data.voview", run_dir,
                                              "--overview-file", ov_xd], ov_xd, a.reps)
    rs = median_runs("overview (ours)", [xw, "overview", run_dir, "--overwrite"], ov, a.reps)
    validate(ov, ov_xd)
    res["overview"] = {"ours_s": rs, "extra_data_s": xd, "speedup": xd / rs}

    # 5. lsxfel with and without the overview file (ours is in place now), cold then warm.
    # EXtra-data's run map cache (karabo_data_map.json) is removed before every run: each
    # run reads the files (or the overview) itself, as ours does with --no-cache.
    run_map = run_dir / "karabo_data_map.json"
    lsx = {}
    tools = ((TARGET / "release" / "lsxfel", "rs"), (VENV_BIN / "lsxfel", "xd"))
    for cache, cold in (("cold", True), ("warm", False)):
        for tool, name in tools:
            lsx[f"{name}_with_overview_{cache}_s"] = median_runs(
                f"lsxfel {name} with overview {cache}", [tool, run_dir], run_map, a.reps,
                cold=cold)
    ov.unlink()
    for cache, cold in (("cold", True), ("warm", False)):
        for tool, name in tools:
            lsx[f"{name}_without_overview_{cache}_s"] = median_runs(
                f"lsxfel {name} without overview {cache}",
                [tool, "--no-cache", run_dir] if name == "rs" else [tool, run_dir],
                run_map, a.reps, cold=cold)
    lsx["page_cache_dropped"] = drop_caches()
    res["lsxfel"] = lsx

    # 6. The realistic case: 1 MiB frames, unfiltered and compressed.
    for kind, d in (("big", big_dir), ("big_gzip", big_gz_dir)):
        ours_out, xd_out = out_dir / f"{kind}-rs.h5", out_dir / f"{kind}-xd.h5"
        ours_cmd = [xw, "copy", d, "-o", ours_out, "--overwrite", "--source", module]
        rs = median_runs(f"copy {kind} module (ours)", ours_cmd, ours_out, a.reps)
        how = ours_summary(ours_cmd)
        xd = median_runs(f"copy {kind} module (EXtra-data)", xd_script("write", d, xd_out, module),
                         xd_out, a.reps)
        files = sorted(d.glob("*-LPD00-*.h5"))
        cp_dir = out_dir / "cp"
        cp_dir.mkdir(exist_ok=True)
        cp = median_runs(f"cp {kind} module files", ["cp", *files, cp_dir], None, a.reps)
        shutil.rmtree(cp_dir)
        validate(ours_out, xd_out)
        res[f"copy_{kind}"] = {"ours_s": rs, "extra_data_s": xd, "cp_s": cp,
                               "speedup": xd / rs, "vs_cp": rs / cp,
                               "bytes": sum(f.stat().st_size for f in files),
                               "staged": how["staged"], "direct_chunks": how["direct_chunks"],
                               "rows_from_map": how["rows_from_map"]}
        ours_out.unlink(missing_ok=True)
        xd_out.unlink(missing_ok=True)

    shutil.rmtree(out_dir)
    res["cpu_s"] = CPU
    res["load_1min_before_after"] = LOADS
    res["started_utc"] = started.strftime("%Y-%m-%d %H:%M")
    res["big_frame"] = frame

    if a.json:
        print(json.dumps(res, indent=2))
    else:
        for k, v in res.items():
            print(f"{k}: {v}")
    print()
    print(markdown(res, " ".join(["benches/scripts/bench_xfel_write.py", *sys.argv[1:]])))


def markdown(res, command):
    """The results as a table for docs/benchmarks.md."""
    cpu, loads = res["cpu_s"], res["load_1min_before_after"]

    def load(*names):
        vals = [v for n in names for v in loads.get(n, ())]
        return f"{min(vals):.1f}-{max(vals):.1f}" if vals else ""

    def row(what, xd_name, rs_name, r, target):
        xd_cpu, rs_cpu = cpu.get(xd_name), cpu.get(rs_name)
        cpu_ratio = f"{xd_cpu / rs_cpu:.1f}x" if xd_cpu and rs_cpu else ""
        met = "" if not target else (" met" if r["speedup"] >= 10 else ": **missed**")
        return (f"| {what} | {r['extra_data_s']:.3f} s ({xd_cpu:.2f} s CPU) | "
                f"{r['ours_s']:.3f} s ({rs_cpu:.2f} s CPU) | {r['speedup']:.1f}x | {cpu_ratio} | "
                f"{target}{met} | {load(xd_name, rs_name)} |")

    def cp_row(what, key, cp_name):
        r = res[key]
        return (f"| {what} | | `cp` {r['cp_s']:.3f} s | ours {r['vs_cp']:.1f}x slower than `cp` "
                f"| | limit | {load(cp_name)} |")

    m, b, g = res["copy_module"], res["copy_big"], res["copy_big_gzip"]
    how = lambda r: ("built in memory" if r["staged"] else "written chunk by chunk") + (
        f", {r['rows_from_map']} rows from the maps" if r["rows_from_map"] else "") + (
        f", {r['direct_chunks']} stored chunks" if r["direct_chunks"] else "")
    lines = [
        f"Run {res['started_utc']} UTC, {res['files']} files, medians of {res['reps']}, warm "
        f"page cache for the copies. Command: `{command}`",
        "",
        "| measurement | EXtra-data | ours | ratio (wall) | ratio (CPU) | target | load (1 min) |",
        "|---|---|---|---|---|---|---|",
        row(f"copy one detector module, 512-byte frames ({how(m)})",
            "copy module (EXtra-data)", "copy module (ours)", m, ">= 10x"),
        cp_row("the same module's files with `cp`", "copy_module", "cp module files"),
        row("copy all control sources", "copy control (EXtra-data)", "copy control (ours)",
            res["copy_control"], ">= 10x"),
        row("virtual file of the whole run", "virtual (EXtra-data)", "virtual (ours)",
            res["virtual"], ">= 10x"),
        row("overview file", "overview (EXtra-data)", "overview (ours)", res["overview"],
            ">= 10x"),
        row(f"copy one module of {res['big_frame']} frames, unfiltered, {b['bytes'] >> 20} MiB "
            f"({how(b)})",
            "copy big module (EXtra-data)", "copy big module (ours)", b, ""),
        cp_row("the same files with `cp`", "copy_big", "cp big module files"),
        row(f"copy one module of {res['big_frame']} frames, gzip chunks, {g['bytes'] >> 20} MiB "
            f"({how(g)})",
            "copy big_gzip module (EXtra-data)", "copy big_gzip module (ours)", g, ""),
        cp_row("the same files with `cp`", "copy_big_gzip", "cp big_gzip module files"),
    ]
    lsx = res["lsxfel"]
    for cache in ("cold", "warm"):
        for ov in ("with", "without"):
            xd, rs = lsx[f"xd_{ov}_overview_{cache}_s"], lsx[f"rs_{ov}_overview_{cache}_s"]
            names = [f"lsxfel {n} {ov} overview {cache}" for n in ("xd", "rs")]
            lines.append(f"| lsxfel {ov} the overview file, {cache} | {xd:.3f} s | {rs:.3f} s | "
                         f"{xd / rs:.1f}x | | | {load(*names)} |")
    if not lsx["page_cache_dropped"]:
        lines.append("")
        lines.append("(page cache could not be dropped: the cold lsxfel rows are warm)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
