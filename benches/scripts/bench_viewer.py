#!/usr/bin/env python3
"""Does watching slow the acquisition? Runs the same `xsp3-acquire serve` acquisition (simulated
SDK, content=pattern; an HDF5 file only with --write, which takes 64 KiB of disk a frame) with no
viewer, with xsp3-viewer and no page, and with 1 and 5 headless Chromium browsers showing the live
page; reports the acquisition rate, frames lost, the CPU time of the serve process and of the
viewer with its browsers, and the pages' update rates, paced (internally timed frames) and flat
out (full_speed).

    .venv/bin/python host-tools/xsp3-viewer/scripts/bench_viewer.py [--repeats 2] [--write]

Needs the release binaries (`cargo build --release -p xsp3-acquire -p xsp3-viewer --bins`) and
the interop test helpers (tests/interop/cdp.py) for the browsers.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zmq

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests" / "interop"))
from cdp import Browser  # noqa: E402
from xsp3_helpers import free_port  # noqa: E402


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids):
    """User + system CPU time of these processes and all their descendants (from /proc)."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    wanted, total = set(pids), 0
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _) in stats.items():
            if ppid in wanted and pid not in wanted:
                wanted.add(pid)
                changed = True
    for pid in wanted:
        total += stats.get(pid, (0, 0))[1]
    return total / TICK


def request(req, **cmd):
    req.send_json(cmd)
    reply = req.recv_json()
    if not reply.get("ok"):
        raise RuntimeError(f"{cmd}: {reply}")
    return reply


def run_case(bin_dir, out_dir, viewer, browsers, frames, exposure, full_speed, write):
    control = f"tcp://127.0.0.1:{free_port()}"
    monitor = f"tcp://127.0.0.1:{free_port()}"
    sim = ["--sim", "content=pattern"] + (["--sim", "full_speed=1"] if full_speed else [])
    serve = subprocess.Popen([str(bin_dir / "xsp3-acquire"), "serve", "-q", "--control", control,
                              "--monitor", monitor, "--out", str(out_dir), *sim],
                             stderr=subprocess.DEVNULL)
    ctx = zmq.Context()
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.RCVTIMEO, 60000)
    req.connect(control)
    viewer_proc, pages = None, []
    try:
        if viewer:
            viewer_proc = subprocess.Popen(
                [str(bin_dir / "xsp3-viewer"), "--monitor", monitor, "--control", control,
                 "--http", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
            url = viewer_proc.stdout.readline().split()[-1]
            for _ in range(browsers):
                page = Browser()
                pages.append(page)
                page.navigate(url)
            # Measure the steady state: every page loaded and updating, browser start-up over.
            for page in pages:
                deadline = time.monotonic() + 60
                while not page.evaluate("!!window.xsp3Viewer && window.xsp3Viewer.updates > 20"):
                    if time.monotonic() > deadline:
                        raise RuntimeError("a page did not start updating")
                    time.sleep(0.1)
        output = {"file": "bench", "overwrite": True} if write else {}
        request(req, cmd="configure", frames=frames, exposure=exposure, **output)
        watchers = ([viewer_proc.pid] if viewer_proc else []) + [p.process.pid for p in pages]
        cpu_before = (cpu_seconds([serve.pid]), cpu_seconds(watchers))
        request(req, cmd="arm")
        page_rates = []
        while True:
            status = request(req, cmd="status")
            if status["state"] != "running":
                break
            if pages and status["frames_acquired"] > frames // 2 and not page_rates:
                page_rates = [p.evaluate("window.xsp3Viewer ? window.xsp3Viewer.rate : 0")
                              for p in pages]
            time.sleep(0.05)
        serve_cpu = cpu_seconds([serve.pid]) - cpu_before[0]
        watch_cpu = cpu_seconds(watchers) - cpu_before[1]
        return {"rate_hz": status["rate_hz"], "frames_acquired": status["frames_acquired"],
                "frames_written": status["frames_written"],
                "serve_cpu_s": serve_cpu, "viewer_browsers_cpu_s": watch_cpu,
                "frames_lost": status["frames_lost"], "elapsed_s": status["elapsed_s"],
                "state": status["state"], "page_rates": page_rates}
    finally:
        for page in pages:
            page.close()
        if viewer_proc is not None:
            viewer_proc.terminate()
            viewer_proc.wait()
        request(req, cmd="shutdown")
        serve.wait()
        req.close()
        ctx.term()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin-dir", type=Path, default=REPO / "target" / "release")
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--paced-exposure", default="100us")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--write", action="store_true",
                    help="also write the HDF5 file (frames x 64 KiB of disk per case)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cases = [("no viewer", False, 0), ("viewer, 0 pages", True, 0), ("1 browser", True, 1),
             ("5 browsers", True, 5)]
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for mode, exposure, full_speed in [("paced", args.paced_exposure, False),
                                           ("flat out", "10us", True)]:
            for label, viewer, browsers in cases * args.repeats:
                r = run_case(args.bin_dir, Path(out), viewer, browsers, args.frames, exposure,
                             full_speed, args.write)
                rows.append({"mode": mode, "case": label, **r})
                if not args.json:
                    rates = ", ".join(f"{x:.1f}" for x in r["page_rates"]) or "-"
                    print(f"{mode:8} {label:16} {r['rate_hz']:10.0f} frames/s  "
                          f"acquired {r['frames_acquired']}  written {r['frames_written']}  "
                          f"lost {r['frames_lost']}  "
                          f"CPU s: serve {r['serve_cpu_s']:.1f}, viewer+browsers "
                          f"{r['viewer_browsers_cpu_s']:.1f}  page updates/s {rates}  "
                          f"(load {os.getloadavg()[0]:.1f})", flush=True)
    if args.json:
        print(json.dumps({"machine": platform.node(), "frames": args.frames, "rows": rows}))


if __name__ == "__main__":
    main()
