#!/usr/bin/env python3
"""Whole-process benchmarks of xsp3-acquire (4 channels x 4096 bins, simulated SDK at full speed),
each beside its baseline measured in the same run:

1. HDF5 to the local disk for >= 10 s, beside `dd bs=4M` writing the same number of bytes to the
   same directory.
2. The reference writer's approach reproduced with h5py (MAX IV's WritingReceiver: one resize per
   dataset per frame, chunks of one frame), beside our writer.
3. The stream into `xsp3-receive --print` over loopback TCP (PUSH/PULL).
4. Resident memory of xsp3-acquire at the start and the end of a 1,000,000-frame run.

Usage: bench_xsp3.py [--seconds 10] [--out DIR] [--rss-frames 1000000]
Writes a markdown table to stdout (and to DIR/xsp3.md).
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "release"
NCH, NBINS = 4, 4096
FRAME_BYTES = NCH * NBINS * 4 + NCH * 9 * 4
FAST_SIM = ["--sim", "full_speed=1", "--sim", "content=pattern", "--exposure", "10us"]


def binary(name):
    p = TARGET / name
    if not p.exists():
        sys.exit(f"{p} missing: run `cargo build --release --workspace --bins` first")
    return str(p)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed_acquisition(args, seconds):
    """Runs xsp3-acquire until `seconds` have passed, then SIGINT; returns its JSON summary."""
    proc = subprocess.Popen([binary("xsp3-acquire"), "run", "-q", "--json", "--frames", "0",
                             *FAST_SIM, *map(str, args)], stdout=subprocess.PIPE, text=True)
    time.sleep(seconds)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    if proc.returncode != 0:
        sys.exit(f"xsp3-acquire failed ({proc.returncode}): {out}")
    return json.loads(out)


def dd(directory, nbytes):
    count = max(1, nbytes // (4 << 20))
    path = directory / "dd.bin"
    t0 = time.perf_counter()
    subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=4M", f"count={count}"],
                   check=True, capture_output=True)
    elapsed = time.perf_counter() - t0
    path.unlink()
    return count * (4 << 20) / elapsed


def h5py_reference(directory, frames):
    """MAX IV's WritingReceiver: datasets created at frame 0 with chunks of one frame, every
    dataset resized by one for every frame, no compression."""
    rng = np.random.default_rng(1)
    spectrum = rng.integers(0, 50, size=(NCH, NBINS), dtype=np.uint32)
    extras = {"output_count_rate": np.float64, "all_events": np.uint32, "all_good": np.uint32,
              "clock_ticks": np.uint32, "total_ticks": np.uint32, "reset_ticks": np.uint32,
              "event_width": np.int32, "dead_time_correction": np.float64}
    path = directory / "reference.h5"
    t0 = time.perf_counter()
    with h5py.File(path, "w") as f:
        g = f.create_group("entry/instrument/xspress3")
        g.attrs["NX_class"] = "NXdetector"
        for i in range(frames):
            items = {name: np.full(NCH, i, dtype=t) for name, t in extras.items()}
            items["data"] = spectrum
            for name, item in items.items():
                if i == 0:
                    g.create_dataset(name, shape=(1,) + item.shape, maxshape=(None,) + item.shape,
                                     chunks=(1,) + item.shape, dtype=item.dtype)
                else:
                    g[name].resize(i + 1, axis=0)
                g[name][i] = item
    elapsed = time.perf_counter() - t0
    path.unlink()
    return frames / elapsed


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as s:
        for line in s:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def stream_run(frames, rss=False):
    """xsp3-acquire --stream into xsp3-receive --print over loopback; returns (summary, rss)."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    receiver = subprocess.Popen([binary("xsp3-receive"), "--connect", endpoint, "--print",
                                 "--once", "-q", "--json"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    proc = subprocess.Popen([binary("xsp3-acquire"), "run", "-q", "--json", "--frames", str(frames),
                             *FAST_SIM, "--stream", endpoint], stdout=subprocess.PIPE, text=True)
    samples = []
    if rss:
        while proc.poll() is None:
            samples.append(rss_kib(proc.pid))
            time.sleep(1)
    out, _ = proc.communicate(timeout=3600)
    rout, _ = receiver.communicate(timeout=120)
    if proc.returncode != 0 or receiver.returncode != 0:
        sys.exit(f"stream run failed: acquire {proc.returncode} {out} / receive {receiver.returncode} {rout}")
    lines = [line for line in rout.splitlines() if line.strip()]
    return json.loads(out), json.loads(lines[-1]) if lines else {}, samples


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--out", type=Path, default=REPO / "bench-out")
    ap.add_argument("--rss-frames", type=int, default=1_000_000)
    ap.add_argument("--reference-frames", type=int, default=5000)
    ap.add_argument("--skip-stream", action="store_true", help="no xsp3-receive runs")
    args = ap.parse_args()
    work = args.out / "xsp3"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rows = []

    s = timed_acquisition(["--out", work, "--file", "bench"], args.seconds)
    hdf5_bytes = s["frames_written"] * FRAME_BYTES
    hdf5_rate = hdf5_bytes / s["elapsed_s"]
    for f in work.glob("*.h5"):
        f.unlink()
    dd_rate = dd(work, hdf5_bytes)
    rows.append(("HDF5 writer, local disk (xsp3-acquire --out)",
                 f"{s['frames_written'] / s['elapsed_s'] / 1e3:.1f} kHz, {hdf5_rate / 1e9:.2f} GB/s, "
                 f"{s['frames_lost']} lost, {s['elapsed_s']:.1f} s",
                 f"dd bs=4M same bytes: {dd_rate / 1e9:.2f} GB/s", f"{hdf5_rate / dd_rate:.2f}x dd"))

    ref_rate = h5py_reference(work, args.reference_frames)
    ours = s["frames_written"] / s["elapsed_s"]
    rows.append(("reference writer reproduced (h5py, resize per frame)",
                 f"{ref_rate / 1e3:.2f} kHz ({args.reference_frames} frames)",
                 f"ours: {ours / 1e3:.1f} kHz", f"{ours / ref_rate:.1f}x faster"))

    if not args.skip_stream:
        frames = int(max(20_000, 20_000 * args.seconds))
        acq, recv, _ = stream_run(frames)
        rate = acq["frames_sent"] / acq["elapsed_s"]
        missing = sum(s["msg_missing"] for s in recv.get("series", []))
        rows.append(("stream into xsp3-receive --print, loopback TCP",
                     f"{rate / 1e3:.1f} kHz, {acq['frames_sent']} sent, "
                     f"{recv.get('frames_received', 0)} received, {missing} missing, "
                     f"{acq['frames_lost']} lost in the SDK",
                     "target 20 kHz", f"{rate / 20e3:.2f}x target"))
        acq, recv, samples = stream_run(args.rss_frames, rss=True)
        # The ring's pages become resident during its first lap: "start" is after 3 s.
        steady = samples[3:]
        if len(steady) >= 2:
            rows.append((f"RSS over a {args.rss_frames:,}-frame run (stream only)",
                         f"at 3 s {steady[0] / 1024:.1f} MiB, at the end {steady[-1] / 1024:.1f} MiB, "
                         f"max {max(steady) / 1024:.1f} MiB ({len(samples)} samples, 1 s apart)",
                         f"{acq['frames_sent']:,} frames sent",
                         f"end / start {steady[-1] / steady[0]:.3f}"))

    stamp = datetime.date.today().isoformat()
    lines = [f"Measured {stamp} on {platform.node()} ({os.cpu_count()} cores), command: "
             f"`python3 benches/scripts/bench_xsp3.py --seconds {args.seconds:g}`", "",
             "| run | result | baseline (same script run) | ratio |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    text = "\n".join(lines)
    print(text)
    (args.out / "xsp3.md").write_text(text + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
