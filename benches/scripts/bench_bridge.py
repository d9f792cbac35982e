#!/usr/bin/env python3
"""Karabo Bridge serving throughput: our xfel-serve against EXtra-data's
karabo-bridge-serve-files on the same runs and options, in one script run.

Cases (fixtures written by make-fixtures under --dir, removed at the end unless --keep):
  lpd1     one LPD-like module, 32 frames of 256x256 u16 per train (4 MiB of image.data),
           150 trains
  append16 16 modules of 8 frames of 256x256 u16, --append-detector-modules (16 MiB per
           train), 40 trains
  control  one control source (an XGM), about 400 bytes per train, 2000 trains in 2 files
           (serve-files, REP with a send high-water mark of 1, now and then drops a reply at
           thousands of trains/s and the receiver waits for ever: more trains make that likely;
           a receiver that gets nothing for 60 s counts as failed, "-" in its round)
  control_numeric  the same without its variable-length string key

Per case, the servers alternate over --rounds rounds (medians reported): trains/s that three
receivers take from karabo-bridge-serve-files and from xfel-serve (REP/REQ, paced only by the
receiver asking for the next train):
  client   karabo_bridge.Client.next() in a Python loop (decodes every train)
  raw      a pyzmq REQ socket, recv_multipart(copy=False), no decoding (the server's own rate
           as Python sees it)
  monitor  our xfel-bridge monitor (decodes every train, in Rust)
and the limits of this machine for the same messages (the parts of one train of xfel-serve,
real msgpack): a pyzmq REP process answering `next` with those parts, read by the Client
(the Python client's ceiling) and by the raw REQ socket, a native REQ/REP pair answering with
those parts and doing nothing else (benches/examples/zmq_round_trip.rs, the ceiling of any
REP server with one request in flight), and a plain libzmq PUSH -> PULL transfer between two
processes (copy=False).

The same with `-z PUSH` for both servers (same options), no round trip per train: receivers
karabo_bridge.Client(sock="PULL"), a raw pyzmq PULL socket (high-water mark 1, as the Client)
and `xfel-bridge monitor -z PUSH`; the limit is a pyzmq PUSH process sending those parts for
ever. A PUSH file server ends by itself after its last train: the receiver counts the trains
(giving up after 60 s without one), the server's own count of trains sent must equal it
(otherwise the round counts as failed), and the server must end within 30 s.

Every measurement streams the whole fixture (at least about a second of serve-files), so one
descheduling of a process on a loaded machine moves a figure less.

Run from the repository root:  .venv/bin/python benches/scripts/bench_bridge.py
Options: --dir DIR (fixtures; default $CARGO_TARGET_DIR/bridge-bench), --rounds N (3),
--cases a,b (all), --sockets REP,PUSH (both), --keep (keep the fixtures), --json. Builds
`cargo build --release -p karabo-bridge -p fixtures --bins`. Prints a markdown table for
docs/benchmarks.md at the end.
"""
import argparse
import datetime
import json
import multiprocessing as mp
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import zmq
from karabo_bridge import Client

REPO = Path(__file__).resolve().parents[2]
# Seconds a receiver waits for a train before the measurement counts as failed.
WAIT_S = 60
# Seconds a PUSH server may take to end by itself after its receiver got the last train.
END_S = 30
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
VENV_BIN = Path(sys.executable).parent

CASES = {
    "lpd1": dict(fixture=["--modules", "1", "--sequences", "1", "--trains", "150",
                          "--frames", "32", "--frame-height", "256", "--frame-width", "256"],
                 files=2, args=["--source", "*/DET/*"], trains=150),
    "append16": dict(fixture=["--modules", "16", "--sequences", "1", "--trains", "40",
                              "--frames", "8", "--frame-height", "256", "--frame-width", "256"],
                     files=17, args=["--source", "*/DET/*", "--append-detector-modules"],
                     trains=40),
    "control": dict(fixture=["--modules", "0", "--sequences", "2", "--trains", "1000"],
                    files=2, args=["--source", "SA1_XTD2_XGM/DOOCS/MAIN"], trains=2000),
    # The same without its one variable-length string key (state.value).
    "control_numeric": dict(fixture=["--modules", "0", "--sequences", "2", "--trains", "1000"],
                            files=2, dir="control",
                            args=["--source", "SA1_XTD2_XGM/DOOCS/MAIN",
                                  "--key", "beamPosition.*"], trains=2000),
}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def sh(cmd, **kw):
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def build():
    log("building release binaries (karabo-bridge, fixtures)...")
    sh(["cargo", "build", "--release", "-p", "karabo-bridge", "-p", "fixtures", "--bins"],
       cwd=REPO)
    sh(["cargo", "build", "--release", "-p", "benches", "--example", "zmq_round_trip"], cwd=REPO)


def fixture(out, args, files):
    """Writes the fixture unless one made with the same arguments is there."""
    stamp = out / "make-fixtures-args.json"
    if (out.is_dir() and len(list(out.glob("*.h5"))) == files and stamp.is_file()
            and json.loads(stamp.read_text()) == args):
        return
    if out.exists():
        shutil.rmtree(out)
    log(f"writing fixture {out} ...")
    sh([TARGET / "release" / "make-fixtures", out, *args], stdout=subprocess.DEVNULL)
    stamp.write_text(json.dumps(args))


class Server:
    def __init__(self, cmd):
        self.proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"Streamer started on: tcp://[^:]+:(\d+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"{cmd}: {line}")
        self.endpoint = f"tcp://127.0.0.1:{m.group(1)}"

    def stop(self):
        self.proc.kill()
        self.proc.wait()

    def sent(self):
        """Trains the server says it sent, once it has ended by itself (PUSH: after the last
        train); None if it did not end within END_S."""
        try:
            out, _ = self.proc.communicate(timeout=END_S)
        except subprocess.TimeoutExpired:
            self.stop()
            return None
        # xfel-serve: "xfel-serve: sent N trains ..."; serve-files: "Sent N/M trains ..." last.
        counts = re.findall(r"(?:xfel-serve: sent |Sent )(\d+)[ /]", out)
        return int(counts[-1]) if counts else None


def ours(run, args):
    return Server([TARGET / "release" / "xfel-serve", "files", run, "0", *args])


def theirs(run, args):
    return Server([VENV_BIN / "karabo-bridge-serve-files", run, "tcp://127.0.0.1:0", *args])


def client_rate(server, n):
    """Trains/s of karabo_bridge.Client, timed from the first train on."""
    with Client(server.endpoint, timeout=WAIT_S) as c:
        c.next()
        t0 = time.perf_counter()
        for _ in range(n - 1):
            c.next()
        return (n - 1) / (time.perf_counter() - t0)


def monitor_rate(server, n, connect=()):
    """Trains/s of our xfel-bridge monitor (whole process, first train included)."""
    out = subprocess.run([TARGET / "release" / "xfel-bridge", "monitor", server.endpoint,
                          *connect, "--ntrains", str(n), "--timeout", str(WAIT_S), "--json"],
                         capture_output=True, text=True, timeout=1200).stdout
    s = json.loads(out)
    if s["trains"] < n:
        raise TimeoutError(f"xfel-bridge monitor got {s['trains']} of {n} trains")
    return s["trains"] / s["elapsed_s"]


def raw_rate(server, n):
    """Trains/s of a pyzmq REQ socket that does not decode, timed from the first train on."""
    ctx = zmq.Context()
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.RCVTIMEO, WAIT_S * 1000)
    s.connect(server.endpoint)
    s.send(b"next")
    s.recv_multipart(copy=False)
    t0 = time.perf_counter()
    for _ in range(n - 1):
        s.send(b"next")
        s.recv_multipart(copy=False)
    dt = time.perf_counter() - t0
    s.close(linger=0)
    ctx.term()
    return (n - 1) / dt


def client_pull_rate(server, n):
    """karabo_bridge.Client with PULL (decodes every train), timed from the first train on."""
    with Client(server.endpoint, sock="PULL", timeout=WAIT_S) as c:
        c.next()
        t0 = time.perf_counter()
        for _ in range(n - 1):
            c.next()
        return (n - 1) / (time.perf_counter() - t0)


def raw_pull_rate(server, n):
    """A pyzmq PULL socket (high-water mark 1, as the Client), no decoding."""
    ctx = zmq.Context()
    s = ctx.socket(zmq.PULL)
    s.set_hwm(1)
    s.setsockopt(zmq.RCVTIMEO, WAIT_S * 1000)
    s.connect(server.endpoint)
    try:
        s.recv_multipart(copy=False)
        t0 = time.perf_counter()
        for _ in range(n - 1):
            s.recv_multipart(copy=False)
        return (n - 1) / (time.perf_counter() - t0)
    finally:
        s.close(linger=0)
        ctx.term()


def monitor_pull_rate(server, n):
    return monitor_rate(server, n, ["-z", "PUSH"])


def train_parts(server):
    ctx = zmq.Context()
    s = ctx.socket(zmq.REQ)
    s.connect(server.endpoint)
    s.send(b"next")
    parts = s.recv_multipart()
    s.close(linger=0)
    ctx.term()
    return parts


def _rep_constant(parts, port_q):
    """A REP server that answers every request with the same train."""
    ctx = zmq.Context()
    s = ctx.socket(zmq.REP)
    port_q.put(s.bind_to_random_port("tcp://127.0.0.1"))
    frames = [zmq.Frame(p) for p in parts]
    while True:
        s.recv()
        s.send_multipart(frames, copy=False)


def _push_constant(parts, port_q):
    """A PUSH server (send high-water mark 1, as xfel-serve) sending the same train for ever."""
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUSH)
    s.set_hwm(1)
    port_q.put(s.bind_to_random_port("tcp://127.0.0.1"))
    frames = [zmq.Frame(p) for p in parts]
    while True:
        s.send_multipart(frames, copy=False)


class ConstantServer:
    """`_rep_constant` or `_push_constant` in its own process, with the Server interface."""

    def __init__(self, parts, target=_rep_constant):
        q = mp.Queue()
        self.proc = mp.Process(target=target, args=(parts, q), daemon=True)
        self.proc.start()
        self.endpoint = f"tcp://127.0.0.1:{q.get()}"

    def stop(self):
        self.proc.kill()
        self.proc.join()


def _pull(endpoint, n, q):
    ctx = zmq.Context()
    s = ctx.socket(zmq.PULL)
    s.connect(endpoint)
    s.recv_multipart(copy=False)
    t0 = time.perf_counter()
    for _ in range(n - 1):
        s.recv_multipart(copy=False)
    q.put(time.perf_counter() - t0)


def zmq_limit(sizes, n):
    """Messages/s of a plain libzmq PUSH -> PULL loopback of messages with `sizes` parts."""
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    port = push.bind_to_random_port("tcp://127.0.0.1")
    q = mp.Queue()
    p = mp.Process(target=_pull, args=(f"tcp://127.0.0.1:{port}", n, q))
    p.start()
    parts = [b"\0" * s for s in sizes]
    for _ in range(n):
        push.send_multipart(parts, copy=False)
    dt = q.get()
    p.join()
    push.close(linger=0)
    ctx.term()
    return (n - 1) / dt


def native_round_trips(sizes, n, tries=3):
    """REQ/REP round trips per second between two native libzmq sockets answering with parts
    of `sizes` and doing nothing else (examples/zmq_round_trip.rs): the ceiling of any REP
    server's trains/s to one client here. Best of `tries`."""
    exe = TARGET / "release" / "examples" / "zmq_round_trip"
    rates = []
    for _ in range(tries):
        out = subprocess.run([str(exe), str(n), *map(str, sizes)], check=True,
                             capture_output=True, text=True, timeout=300).stdout
        rates.append(json.loads(out)["round_trips_per_s"])
    return max(rates)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", type=Path, default=TARGET / "bridge-bench")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--sockets", default="REP,PUSH", help="server socket types: REP, PUSH")
    ap.add_argument("--keep", action="store_true", help="keep the fixtures")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    build()
    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = os.getloadavg()
    results = {}
    try:
        for name in a.cases.split(","):
            results[name] = measure_case(name, a)
    finally:
        if not a.keep:
            for name, case in CASES.items():
                shutil.rmtree(a.dir / case.get("dir", name), ignore_errors=True)
            if a.dir.is_dir() and not any(a.dir.iterdir()):
                a.dir.rmdir()
    if a.json:
        print(json.dumps(results, indent=2))
        return
    print_table(results, a.sockets.split(","))
    ended = datetime.datetime.now(datetime.timezone.utc)
    print()
    print(f"Run {started:%Y-%m-%d %H:%M}-{ended:%H:%M} UTC, {a.rounds} rounds (medians; the "
          f"rounds in parentheses). Load average (1, 5, 15 min) at the start "
          f"{', '.join(f'{x:.2f}' for x in load_start)}, at the end "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}; 1-minute load during each case: "
          + "; ".join(f"{n} {min(r['loads']):.1f}-{max(r['loads']):.1f}"
                      for n, r in results.items()) + ".")
    print(f"Command: `CARGO_TARGET_DIR={TARGET} {sys.executable} {' '.join(sys.argv)}`")


RECEIVERS = {
    "REP": [("client", client_rate, "karabo_bridge.Client"),
            ("raw", raw_rate, "pyzmq REQ, no decoding"),
            ("monitor", monitor_rate, "xfel-bridge monitor")],
    "PUSH": [("client", client_pull_rate, "karabo_bridge.Client PULL"),
             ("raw", raw_pull_rate, "pyzmq PULL, no decoding"),
             ("monitor", monitor_pull_rate, "xfel-bridge monitor -z PUSH")],
}


def measure_case(name, a):
    case = CASES[name]
    run = a.dir / case.get("dir", name)
    fixture(run, case["fixture"], case["files"])
    n = case["trains"]
    s = ours(run, case["args"])
    try:
        parts = train_parts(s)
    finally:
        s.stop()
    rates, loads = {}, []
    for r in range(a.rounds):
        for sock in a.sockets.split(","):
            args = case["args"] + (["-z", sock] if sock != "REP" else [])
            limit = _rep_constant if sock == "REP" else _push_constant
            servers = [("theirs", lambda: theirs(run, args)), ("ours", lambda: ours(run, args)),
                       ("limit", lambda: ConstantServer(parts, limit))]
            for server, make in servers:
                for receiver, measure, _ in RECEIVERS[sock]:
                    key = f"{sock}_{server}_{receiver}"
                    s = make()
                    try:
                        rate = measure(s, n)
                        # PUSH: the file server ends by itself once its last train is queued;
                        # it must have sent exactly the trains the receiver counted.
                        if sock == "PUSH" and server != "limit":
                            sent = s.sent()
                            if sent != n:
                                log(f"{name} round {r + 1} {key}: the server sent {sent} trains, "
                                    f"the receiver got {n}; counted as failed")
                                rate = None
                    except (TimeoutError, zmq.Again) as e:
                        log(f"{name} round {r + 1} {key}: no train for {WAIT_S} s ({e!r}); "
                            f"counted as failed")
                        rate = None
                    finally:
                        s.stop()
                    rates.setdefault(key, []).append(rate)
                    loads.append(os.getloadavg()[0])
                    if rate is not None:
                        log(f"{name} round {r + 1} {key}: {rate:.1f} trains/s "
                            f"(load {loads[-1]:.1f})")
    sizes = [len(p) for p in parts]
    push_pull = zmq_limit(sizes, 200 if sum(sizes) > 1 << 20 else 20000)
    rep_native = native_round_trips(sizes, 300 if sum(sizes) > 1 << 20 else 20000)
    # Medians of the rounds that did not fail (NaN if all did).
    med = {k: statistics.median([x for x in v if x is not None] or [float("nan")])
           for k, v in rates.items()}
    return {
        "train_bytes": sum(sizes), "parts": len(sizes), "trains": n,
        **{f"{k}_trains_per_s": v for k, v in med.items()},
        **{f"{k}_rounds": v for k, v in rates.items()},
        "push_pull_limit_msgs_per_s": push_pull,
        "rep_native_limit_round_trips_per_s": rep_native,
        "loads": loads,
    }


def print_table(results, sockets):
    print("| case | pattern | receiver | serve-files | xfel-serve | ratio (target >= 5x) "
          "| limit: constant server | xfel-serve / limit | 5 x serve-files / limit |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        mb = r["train_bytes"] / 1e6
        cell = lambda t: f"{t:.1f}/s ({t * mb:.0f} MB/s)"
        for sock in sockets:
            for rx, _, label in RECEIVERS[sock]:
                key = lambda who: f"{sock}_{who}_{rx}"
                rounds = lambda who: ", ".join("-" if v is None else f"{v:.0f}"
                                               for v in r[f"{key(who)}_rounds"])
                theirs_, ours_, limit = (r[f"{key(w)}_trains_per_s"]
                                         for w in ("theirs", "ours", "limit"))
                print(f"| {name} ({mb:.3f} MB, {r['parts']} parts) | {sock} | {label} "
                      f"| {cell(theirs_)} ({rounds('theirs')}) "
                      f"| {cell(ours_)} ({rounds('ours')}) "
                      f"| {ours_ / theirs_:.2f}x "
                      f"| {cell(limit)} ({rounds('limit')}) "
                      f"| {ours_ / limit:.2f} | {5 * theirs_ / limit:.2f} |")
        print(f"| {name} | | libzmq PUSH -> PULL, same parts, no server | | | "
              f"| {cell(r['push_pull_limit_msgs_per_s'])} | | |")
        if "REP" in sockets:
            native = r["rep_native_limit_round_trips_per_s"]
            best_theirs = max(r[f"REP_theirs_{rx}_trains_per_s"] for rx, _, _ in RECEIVERS["REP"])
            print(f"| {name} | REP | libzmq REQ -> REP round trips, same parts, native sockets, "
                  f"no server work (best of 3) | {cell(best_theirs)} (best receiver) | | "
                  f"| {cell(native)} | | {5 * best_theirs / native:.2f} |")


if __name__ == "__main__":
    main()
