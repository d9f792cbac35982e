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

Paced scenarios (issue #11), selected with options; when any is given only those run. The
simulated detector runs in real time at the given rate (`content=pattern`, no full_speed), like a
real one, and a run counts as zero-loss only when xsp3-acquire exits 0 with nothing lost anywhere.
Every file is capped at --cap-gb (default 4 GB, so runs are shorter than a minute) and deleted
right after its run; `uptime` is recorded with every figure.

  --paced      highest zero-loss internal-trigger rate at 4 x 4096 with file + acknowledged
               stream into xsp3-receive (writing to --receiver-dir, tmpfs by default) + monitor
               requests at once, beside `dd conv=fsync` (to-durable) and `dd` (page cache) of
               the same bytes in the same run
  --paced-8ch  the same at 8 channels, 10 kHz (1.31 GB/s)
  --pause      10 kHz, stream into xsp3-receive --print that is SIGSTOPped for 2 s: frames
               lost, the SDK's overrun count, and the time until the receiver is back to the
               detector rate
  --ack        flat-out PUSH into xsp3-receive writing to --receiver-dir, acknowledged against
               --no-ack, and two acknowledged receivers sharing the stream
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


def uptime():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def frame_bytes(nch):
    return nch * NBINS * 4 + nch * 9 * 4


class MonitorClient:
    """Requests the latest frame from --monitor every 50 ms, as a live viewer does."""

    def __init__(self, endpoint):
        import threading
        import zmq
        self.replies = 0
        self.stop = threading.Event()

        def loop():
            ctx = zmq.Context()
            sock = ctx.socket(zmq.REQ)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RCVTIMEO, 2000)
            sock.setsockopt(zmq.REQ_RELAXED, 1)
            sock.connect(endpoint)
            while not self.stop.is_set():
                try:
                    sock.send(b"give us a frame please!")
                    sock.recv_multipart()
                    self.replies += 1
                except zmq.ZMQError:
                    pass
                self.stop.wait(0.05)
            sock.close()
            ctx.term()

        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()

    def close(self):
        self.stop.set()
        self.thread.join(timeout=10)
        return self.replies


def receiver(endpoint, root=None, *extra):
    """xsp3-receive with JSON lines: writing under `root` (acknowledged unless --no-ack in
    `extra`), or with --print when `root` is None (which writes, and so acknowledges, nothing)."""
    sink = ["--root", str(root), "--overwrite"] if root else ["--print"]
    return subprocess.Popen([binary("xsp3-receive"), "--connect", endpoint, *sink, "--once",
                             "-q", "--json", "--timeout", "60s", *extra],
                            stdout=subprocess.PIPE, text=True)


def receiver_summary(proc):
    out, _ = proc.communicate(timeout=300)
    lines = [json.loads(l) for l in out.splitlines() if l.strip().startswith("{")]
    summary = next((l for l in lines if l.get("event") == "summary" or "frames_received" in l
                    and "series" in l), {})
    return proc.returncode, summary


def acked_endpoint():
    """A loopback endpoint whose next port (the acknowledgement back channel) is free too."""
    while True:
        port = free_port()
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return f"tcp://127.0.0.1:{port}"
        except OSError:
            continue


def paced_run(work, rx_root, nch, rate_hz, cap_bytes, max_seconds):
    """One paced run with file + acknowledged stream + monitor; returns a result dict."""
    frames = int(min(rate_hz * max_seconds, cap_bytes // frame_bytes(nch)))
    stream, monitor = acked_endpoint(), f"tcp://127.0.0.1:{free_port()}"
    rx = receiver(stream, rx_root)
    time.sleep(0.3)
    load = uptime()
    exposure_ns = round(1e9 / rate_hz)
    proc = subprocess.Popen([binary("xsp3-acquire"), "run", "-q", "--json", "--frames", str(frames),
                             "--exposure", f"{exposure_ns}ns", "--channels", str(nch),
                             "--sim", "content=pattern", "--out", str(work), "--file", "paced",
                             "--stream", stream, "--monitor", monitor],
                            stdout=subprocess.PIPE, text=True)
    mon = MonitorClient(monitor)
    out, _ = proc.communicate(timeout=600)
    replies = mon.close()
    rx_code, rx_summary = receiver_summary(rx)
    for f in [*work.glob("*.h5"), *rx_root.glob("*.h5")]:
        f.unlink()
    s = json.loads(out) if out.strip() else {}
    lost = s.get("frames_lost_total", -1)
    return {"rate_hz": rate_hz, "frames": frames, "code": proc.returncode, "rx_code": rx_code,
            "lost": lost, "written": s.get("frames_written", 0),
            "sent": s.get("frames_sent", 0), "unacked": s.get("stream_unacked", 0),
            "rx_frames": rx_summary.get("frames_received", 0), "monitor_replies": replies,
            "elapsed_s": s.get("elapsed_s", 0.0), "sdk_overruns": s.get("sdk_overruns", 0),
            # How long after the detector's last frame the run ended (start-up included): a lag
            # that grows with the rate means the SDK buffer was absorbing a backlog, which a
            # longer run would overflow.
            "lag_s": s.get("elapsed_s", 0.0) - frames / rate_hz,
            "ring_high_water": s.get("ring_high_water", 0),
            "zero_loss": proc.returncode == 0 and rx_code == 0 and lost == 0
            and s.get("frames_written") == frames, "load": load}


def dd_pair(work, nbytes):
    """`dd` of nbytes to the disk: to durable (conv=fsync) and to the page cache; bytes/s."""
    rates = {}
    for label, extra in (("fsync", ["conv=fsync"]), ("cache", [])):
        count = max(1, nbytes // (4 << 20))
        path = work / "dd.bin"
        t0 = time.perf_counter()
        subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=4M", f"count={count}", *extra],
                       check=True, capture_output=True)
        rates[label] = count * (4 << 20) / (time.perf_counter() - t0)
        path.unlink()
    return rates


def scenario_paced(work, rx_root, nch, rates, cap_bytes, max_seconds):
    rows, best = [], None
    for rate in rates:
        r = paced_run(work, rx_root, nch, rate, cap_bytes, max_seconds)
        fb = frame_bytes(nch)
        rows.append((f"paced {nch} x 4096, {rate / 1e3:g} kHz, file + acked stream + monitor",
                     f"{r['frames']} frames in {r['elapsed_s']:.1f} s, "
                     f"{rate * fb / 1e9:.2f} GB/s (run ends {r['lag_s']:.1f} s after the last "
                     f"frame, ring high water {r['ring_high_water']}); "
                     f"lost {r['lost']}, written {r['written']}, "
                     f"received {r['rx_frames']}, unacked {r['unacked']}, monitor replies "
                     f"{r['monitor_replies']}; exit {r['code']}/{r['rx_code']}",
                     "zero loss" if r["zero_loss"] else "LOSS", r["load"]))
        print(rows[-1], file=sys.stderr)
        if not r["zero_loss"]:
            break
        best = r
    load = uptime()
    dd = dd_pair(work, cap_bytes)
    if best:
        rate_b = best["rate_hz"] * frame_bytes(nch)
        rows.append((f"highest zero-loss paced rate, {nch} ch", f"{best['rate_hz'] / 1e3:g} kHz = "
                     f"{rate_b / 1e9:.2f} GB/s", f"dd conv=fsync {dd['fsync'] / 1e9:.2f} GB/s "
                     f"(page cache {dd['cache'] / 1e9:.2f} GB/s), {cap_bytes / 1e9:g} GB: "
                     f"**{rate_b / dd['fsync']:.2f}x dd to durable**", load))
    else:
        rows.append((f"no zero-loss paced rate, {nch} ch", "", f"dd conv=fsync "
                     f"{dd['fsync'] / 1e9:.2f} GB/s", load))
    return rows


def scenario_pause(rate_hz, seconds, pause_s):
    """Stream into xsp3-receive --print, which is stopped for pause_s after 2 s."""
    frames = int(rate_hz * seconds)
    stream = acked_endpoint()
    rx = receiver(stream)
    time.sleep(0.3)
    load = uptime()
    proc = subprocess.Popen([binary("xsp3-acquire"), "run", "-q", "--json", "--frames", str(frames),
                             "--exposure", f"{round(1e9 / rate_hz)}ns", "--sim", "content=pattern",
                             "--stream", stream], stdout=subprocess.PIPE, text=True)
    import threading
    rate_lines = []

    def read_rates():
        for line in rx.stdout:
            if line.startswith("{"):
                rate_lines.append((time.monotonic(), json.loads(line)))

    reader = threading.Thread(target=read_rates, daemon=True)
    reader.start()
    time.sleep(2.0)
    rx.send_signal(signal.SIGSTOP)
    time.sleep(pause_s)
    rx.send_signal(signal.SIGCONT)
    resumed = time.monotonic()
    out, _ = proc.communicate(timeout=600)
    rx.wait(timeout=120)
    reader.join(timeout=10)
    s = json.loads(out)
    # Backlog at each rate report: what the detector made since it started (estimated from the
    # reports before the pause, when the receiver kept up) minus what arrived and what was lost.
    # Caught up: the first report after the pause whose backlog is under 0.1 s of frames.
    reports = [(t, ev["frames"]) for t, ev in rate_lines if ev.get("event") == "rate"
               and ev.get("frames", 0) > 0]
    before = sorted(t - f / rate_hz for t, f in reports if t < resumed - pause_s - 0.1)
    catch_up, backlog_after = None, None
    if before:
        t0 = before[len(before) // 2]
        lost = s.get("frames_lost", 0) or 0
        for t, f in reports:
            if t <= resumed:
                continue
            backlog = rate_hz * (t - t0) - f - lost
            if backlog_after is None:
                backlog_after = (t - resumed, backlog)
            if backlog < 0.1 * rate_hz:
                catch_up = t - resumed
                break
    lost_ranges = s.get("lost_ranges", [])
    return [(f"{pause_s:g} s receiver pause (SIGSTOP) at {rate_hz / 1e3:g} kHz, 4 x 4096, default "
             f"SDK buffer (16384) and ring (4096), PUSH into xsp3-receive --print",
             f"{frames} frames: lost {s.get('frames_lost')} in {len(lost_ranges)} range(s) "
             f"{lost_ranges[:3]}, SDK overruns {s.get('sdk_overruns')}, unacked "
             f"{s.get('stream_unacked')}, exit {proc.returncode}",
             (f"backlog {backlog_after[1]:.0f} frames {backlog_after[0]:.1f} s after SIGCONT; "
              if backlog_after else "") +
             ("caught up (backlog < 0.1 s) by " + f"{catch_up:.1f} s after SIGCONT "
              "(receiver reports once a second)" if catch_up is not None
              else "not caught up by the end"), load)]


def scenario_ack(rx_root, frames):
    rows = []
    results = {}
    # Alternated and repeated: on a shared machine the load drifts between runs.
    modes = (("acknowledged", 1, []), ("unacknowledged (--no-ack)", 1, ["--no-ack"]),
             ("acknowledged, two receivers", 2, []))
    for label, n_rx, extra in [*modes, *modes]:
        stream = acked_endpoint()
        roots = [rx_root / f"rx{i}" for i in range(n_rx)]
        rxs = [receiver(stream, root, *extra) for root in roots]
        time.sleep(0.5)
        load = uptime()
        proc = subprocess.run([binary("xsp3-acquire"), "run", "-q", "--json", "--frames",
                               str(frames), *FAST_SIM, "--stream", stream],
                              capture_output=True, text=True, timeout=600)
        got = [receiver_summary(r) for r in rxs]
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)
        s = json.loads(proc.stdout)
        rate = s["frames_sent"] / s["elapsed_s"]
        results.setdefault(label, []).append(rate)
        received = sum(g[1].get("frames_received", 0) for g in got)
        rows.append((f"PUSH into xsp3-receive writing to tmpfs, {label}, loopback, flat out",
                     f"{rate / 1e3:.1f} kHz, {s['frames_sent']} sent, {received} received, "
                     f"unacked {s.get('stream_unacked')}, lost {s.get('frames_lost_total')}, "
                     f"exit {proc.returncode}/{[g[0] for g in got]}",
                     "; ".join(e for g in got for e in g[1].get("errors", [])[:1]), load))
        print(rows[-1], file=sys.stderr)
    a = sum(results["acknowledged"]) / len(results["acknowledged"])
    u = sum(results["unacknowledged (--no-ack)"]) / len(results["unacknowledged (--no-ack)"])
    two = sum(results["acknowledged, two receivers"]) / len(results["acknowledged, two receivers"])
    rows.append(("acknowledged vs unacknowledged PUSH (mean of 2 alternated runs each)",
                 f"{a / 1e3:.1f} vs {u / 1e3:.1f} kHz; two acknowledged receivers {two / 1e3:.1f} kHz",
                 f"**{a / u:.2f}x** (target >= 0.9); two receivers {two / u:.2f}x", ""))
    return rows


def paced_main(args):
    work = args.out / "xsp3-paced"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    # Receivers write to tmpfs: on a beamline they run on other hosts with their own disks, and
    # the shared disk here has room for one capped file at a time.
    rx_root = args.receiver_dir / f"xsp3-bench-{os.getpid()}"
    rx_root.mkdir(parents=True)
    cap = int(args.cap_gb * 1e9)
    rows = []
    try:
        if args.paced:
            rows += scenario_paced(work, rx_root, 4, args.rates, cap, args.max_seconds)
        if args.paced_8ch:
            rows += scenario_paced(work, rx_root, 8, [10_000], cap, args.max_seconds)
        if args.pause:
            for pause_s in args.pause_lengths:
                rows += scenario_pause(10_000, args.pause_seconds, pause_s)
        if args.ack:
            rows += scenario_ack(rx_root, min(args.ack_frames, cap // FRAME_BYTES))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(rx_root, ignore_errors=True)
    lines = [f"Measured {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC on {platform.node()} "
             f"({os.cpu_count()} cores), command: `{' '.join(sys.argv)}`", "",
             "| run | result | baseline / verdict | uptime at the start |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    text = "\n".join(lines)
    print(text)
    (args.out / "xsp3-paced.md").write_text(text + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--out", type=Path, default=REPO / "bench-out")
    ap.add_argument("--rss-frames", type=int, default=1_000_000)
    ap.add_argument("--reference-frames", type=int, default=5000)
    ap.add_argument("--skip-stream", action="store_true", help="no xsp3-receive runs")
    ap.add_argument("--paced", action="store_true", help="paced zero-loss search, 4 channels")
    ap.add_argument("--paced-8ch", action="store_true", help="paced 8 channels at 10 kHz")
    ap.add_argument("--pause", action="store_true", help="2 s receiver pause at 10 kHz")
    ap.add_argument("--ack", action="store_true", help="acknowledged vs unacknowledged PUSH")
    ap.add_argument("--rates", type=lambda v: [float(x) for x in v.split(",")],
                    default=[5e3, 10e3, 15e3, 20e3, 25e3, 30e3],
                    help="paced rates to try, Hz, ascending (comma-separated)")
    ap.add_argument("--cap-gb", type=float, default=4.0, help="largest file of a paced run")
    ap.add_argument("--max-seconds", type=float, default=20.0, help="longest paced run")
    ap.add_argument("--ack-frames", type=int, default=200_000,
                    help="frames per --ack run (capped by --cap-gb)")
    ap.add_argument("--pause-seconds", type=float, default=10.0, help="length of the --pause run")
    ap.add_argument("--pause-lengths", type=lambda v: [float(x) for x in v.split(",")],
                    default=[2.0], help="receiver pauses of --pause, seconds (comma-separated)")
    ap.add_argument("--receiver-dir", type=Path, default=Path("/dev/shm"),
                    help="where receivers write (tmpfs by default)")
    args = ap.parse_args()
    if args.paced or args.paced_8ch or args.pause or args.ack:
        paced_main(args)
        return
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
