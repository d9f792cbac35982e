#!/usr/bin/env python3
"""Does watching slow the acquisition? Runs the same paced `xsp3-acquire serve` acquisition
(simulated SDK, content=pattern, 4 x 4096 bins, internally timed frames at --rate, no file unless
--write) with no viewer, with xsp3-viewer and no page, with 1 and 5 headless Chromium pages on
it, with 5 pages on the page `serve --http` serves itself, and with 5 pages whose browsers run at
nice 19. Reports per case the acquisition rate, frames lost and the loss counters, the CPU time of
the serve process (and of its busiest thread), of the viewer and of the browsers, the
pages' update rates, and the machine's load.

    .venv/bin/python benches/scripts/bench_viewer.py [--frames 100000] [--rate 10000] [--repeats 1]

Needs the release binaries (`cargo build --release -p xsp3-acquire -p xsp3-viewer --bins`) and
Debian's chromium (tests/interop/cdp.py drives it).
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

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "interop"))
from cdp import Browser  # noqa: E402
from xsp3_helpers import free_port  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
# (label, viewer: None / "standalone" / "embedded", browsers, browsers' nice value)
CASES = [("no viewer", None, 0, 0), ("viewer, no page", "standalone", 0, 0),
         ("1 browser", "standalone", 1, 0), ("5 browsers", "standalone", 5, 0),
         ("5 browsers, serve --http", "embedded", 5, 0),
         ("5 browsers at nice 19", "standalone", 5, 19)]


def proc_stats():
    """pid -> (parent pid, user + system ticks) of every process."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    return stats


def tree(pids, stats):
    """These processes and all their descendants."""
    wanted = set(pids)
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _) in stats.items():
            if ppid in wanted and pid not in wanted:
                wanted.add(pid)
                changed = True
    return wanted


def cpu_seconds(pids):
    """User + system CPU time of these processes and all their descendants."""
    stats = proc_stats()
    return sum(stats.get(p, (0, 0))[1] for p in tree(pids, stats)) / TICK


def thread_seconds(pid):
    """User + system CPU time of each thread of `pid`, by thread id."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = open(f"/proc/{pid}/task/{tid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[tid] = (int(fields[11]) + int(fields[12])) / TICK
    return out


def renice_tree(pids, nice):
    for pid in tree(pids, proc_stats()):
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                os.setpriority(os.PRIO_PROCESS, int(tid), nice)
            except OSError:
                pass  # a thread that ended meanwhile


def cpu_pressure():
    """`some avg10` of /proc/pressure/cpu (percent of time a task waited for a CPU)."""
    try:
        line = open("/proc/pressure/cpu").readline()
    except OSError:
        return None
    return float(line.split("avg10=")[1].split()[0])


def request(req, **cmd):
    req.send_json(cmd)
    reply = req.recv_json()
    if not reply.get("ok"):
        raise RuntimeError(f"{cmd}: {reply}")
    return reply


def run_case(bin_dir, out_dir, viewer, browsers, nice, frames, exposure, write):
    control = f"tcp://127.0.0.1:{free_port()}"
    monitor = f"tcp://127.0.0.1:{free_port()}"
    argv = [str(bin_dir / "xsp3-acquire"), "serve", "-q", "--control", control, "--monitor",
            monitor, "--out", str(out_dir), "--sim", "content=pattern"]
    url = None
    if viewer == "embedded":
        port = free_port()
        argv += ["--http", f"127.0.0.1:{port}"]
        url = f"http://127.0.0.1:{port}/"
    serve = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    ctx = zmq.Context()
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.RCVTIMEO, 60000)
    req.connect(control)
    viewer_proc, pages = None, []
    try:
        request(req, cmd="status")  # serve is up (and its page, when embedded)
        if viewer == "standalone":
            viewer_proc = subprocess.Popen(
                [str(bin_dir / "xsp3-viewer"), "--monitor", monitor, "--control", control,
                 "--http", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
            url = viewer_proc.stdout.readline().split()[-1]
        for _ in range(browsers):
            page = Browser()
            pages.append(page)
            page.navigate(url)
        if nice:
            renice_tree([p.process.pid for p in pages], nice)
        # Measure the steady state: every page loaded and updating, browser start-up over.
        for page in pages:
            deadline = time.monotonic() + 180  # generous: 5 browsers start on a loaded machine
            while not page.evaluate("!!window.xsp3Viewer && window.xsp3Viewer.updates > 5"):
                if time.monotonic() > deadline:
                    raise RuntimeError("a page did not start updating")
                time.sleep(0.1)
        output = {"file": "bench", "overwrite": True} if write else {}
        request(req, cmd="configure", frames=frames, exposure=exposure, **output)
        browser_pids = [p.process.pid for p in pages]
        viewer_pids = [viewer_proc.pid] if viewer_proc else []
        load = os.getloadavg()[0]
        before = (cpu_seconds([serve.pid]), cpu_seconds(viewer_pids), cpu_seconds(browser_pids),
                  thread_seconds(serve.pid))
        request(req, cmd="arm")
        page_rates = []
        threads = before[3]
        while True:
            status = request(req, cmd="status")
            if status["state"] != "running":
                break
            # The session's threads end with it: their last reading is taken while it runs.
            threads = {**threads, **thread_seconds(serve.pid)}
            if pages and status["frames_acquired"] > frames // 2 and not page_rates:
                page_rates = [p.evaluate("window.xsp3Viewer.rate") for p in pages]
            time.sleep(0.05)
        busiest_s = max(t - before[3].get(tid, 0.0) for tid, t in threads.items())
        return {"rate_hz": status["rate_hz"], "frames_acquired": status["frames_acquired"],
                "frames_lost": status["frames_lost"], "frames_lost_total":
                status["frames_lost_total"], "sdk_overruns": status["sdk_overruns"],
                "ring_full_events": status["ring_full_events"],
                "ring_high_water": status["ring_high_water"],
                "monitor_requests": status["monitor_requests"],
                "elapsed_s": status["elapsed_s"], "state": status["state"],
                "serve_cpu_s": cpu_seconds([serve.pid]) - before[0],
                "serve_busiest_thread_cpu_s": busiest_s,
                "viewer_cpu_s": cpu_seconds(viewer_pids) - before[1],
                "browsers_cpu_s": cpu_seconds(browser_pids) - before[2],
                "page_rates": page_rates, "load_1min": load, "cpu_pressure_avg10": cpu_pressure()}
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
    ap.add_argument("--bin-dir", type=Path,
                    default=Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "release")
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=10_000, help="frames per second (paced)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--cases", help="comma-separated case numbers (1-based) of: " +
                    "; ".join(c[0] for c in CASES))
    ap.add_argument("--write", action="store_true",
                    help="also write the HDF5 file (frames x 64 KiB of disk per case)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    exposure = f"{1e6 / args.rate:g}us"
    cases = CASES if not args.cases else [CASES[int(i) - 1] for i in args.cases.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for label, viewer, browsers, nice in cases * args.repeats:
            r = run_case(args.bin_dir, Path(out), viewer, browsers, nice, args.frames, exposure,
                         args.write)
            rows.append({"case": label, **r})
            if not args.json:
                rates = ", ".join(f"{x:.1f}" for x in r["page_rates"]) or "-"
                print(f"{label:26} {r['rate_hz']:8.0f} frames/s  lost {r['frames_lost']} "
                      f"(total {r['frames_lost_total']}, overruns {r['sdk_overruns']}, ring full "
                      f"{r['ring_full_events']}, high water {r['ring_high_water']})  CPU s: serve "
                      f"{r['serve_cpu_s']:.1f} (busiest thread {r['serve_busiest_thread_cpu_s']:.1f}), "
                      f"viewer {r['viewer_cpu_s']:.1f}, browsers {r['browsers_cpu_s']:.1f}  "
                      f"page updates/s {rates}  monitor requests {r['monitor_requests']}  "
                      f"load {r['load_1min']:.1f}, cpu pressure {r['cpu_pressure_avg10']}",
                      flush=True)
    if args.json:
        print(json.dumps({"machine": platform.node(), "frames": args.frames, "rate": args.rate,
                          "rows": rows}))


if __name__ == "__main__":
    main()
