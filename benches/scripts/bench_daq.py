#!/usr/bin/env python3
"""h5daq comparison: rows/s appended by h5daq's write path (criterion, `daq_write`) beside an
h5py reproduction of the reference's (sdaq) write path, in one run; plus h5daq's scheduler
jitter (`daq_jitter`). Prints a Markdown table for docs/benchmarks.md.

The reference write path (sdaq DAQDaemon._write_hdf5, reproduced here because sdaq is not on
PyPI): every write period `h5py.File(path, 'a', libver='latest')`, `swmr_mode = True`, per
dataset `resize(n + k, axis=0)` and a slice assignment, then `flush()` and `close()`.
Datasets are chunked (64, ...) with fletcher32, no compression, as in both tools' defaults.

Usage: .venv/bin/python benches/scripts/bench_daq.py [--seconds S] [--skip-rust]
       .venv/bin/python benches/scripts/bench_daq.py --vs-sdaq SDAQ_PYTHON [--seconds S] [--rows-per-message N]

`--vs-sdaq` runs whole processes side by side instead: the real sdaq (installed from its
GitHub repository into the Python environment SDAQ_PYTHON, e.g. a scratch venv) with in-process
getters, against the h5daq binary fed by a Python producer over ZeroMQ (numpy arrays as raw
frames sent without a copy, one row per message and `--rows-per-message` rows per message;
scalars as JSON), and a 10 ms periodic job in each. Each h5daq case runs twice: through
PUSH/PULL (`zmq_pull`, back-pressure: the producer waits, nothing is lost; the headline) and
through PUB/SUB flooded by the producer (`zmq_sub`: the daemon's capacity while overloaded,
the excess counted as dropped). Every message carries a row sequence number, so rows lost on
the way are counted (`sequence_gap`). Rows stored in the files per second, rows lost, and the
10 ms job's interval statistics; the end is a ready-to-paste Markdown table.
"""

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[2]
CASES = [
    # name, entry shape, dtype, rows per write (the criterion bench uses the same)
    ("scalar_f64", (), np.float64, 100_000),
    ("f32x1000", (1000,), np.float32, 1000),
]
# Rows per message of the batched (1000,) float32 producer (--rows-per-message).
BATCH = 100
UNITS = {"elem/s": 1.0, "Kelem/s": 1e3, "Melem/s": 1e6, "Gelem/s": 1e9}


def reference_write_path(shape, dtype, rows, seconds):
    """Rows/s of the reference's write procedure: median over writes of `rows` rows each."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "ref.hdf5")
        data = (np.arange(rows * int(np.prod(shape, dtype=np.int64))) * 0.5).astype(dtype)
        data = data.reshape((rows, *shape))
        times = []
        base = 0
        t_end = time.perf_counter() + seconds
        while time.perf_counter() < t_end or len(times) < 5:
            t_col = 1.8e9 + (base + np.arange(rows)) * 1e-6
            base += rows
            t0 = time.perf_counter()
            f = h5py.File(path, "a", libver="latest")
            try:
                f.swmr_mode = True
            except (ValueError, OSError):
                pass
            try:
                for label, arr, dshape, dt in (
                    ("time", t_col, (), np.float64),
                    ("value", data, shape, dtype),
                ):
                    key = f"job/{label}"
                    if key not in f:
                        f.create_dataset(
                            key,
                            shape=(0, *dshape),
                            dtype=dt,
                            maxshape=(None, *dshape),
                            chunks=(64, *dshape),
                            fletcher32=True,
                        )
                    ds = f[key]
                    n = ds.shape[0]
                    ds.resize(n + rows, axis=0)
                    ds[n:n + rows] = arr
            finally:
                f.flush()
                f.close()
            times.append(time.perf_counter() - t0)
        return rows / statistics.median(times), len(times)


def reference_sample_path(rows, repeats=5):
    """Rows/s of the reference's per-sample path for a scalar float64 job (sdaq DAQJob with
    compress=False): read lock, getter call, `datetime.utcnow().timestamp()`, length check,
    buffer lock, numpy buffers doubled with `np.resize` when full, one item assignment per
    column; then `get_buffer(return_all=True)`. Best of `repeats`."""
    import datetime
    import threading

    read_lock, buffer_lock = threading.Lock(), threading.Lock()
    state = {"x": 0.0}

    def getter():
        state["x"] += 1.0
        return [state["x"]]

    best = 0.0
    for _ in range(repeats):
        buffers = [np.zeros(100, dtype=np.float64), np.zeros(100, dtype=np.float64)]
        pos = 0
        t0 = time.perf_counter()
        for _ in range(rows):
            with read_lock:
                data = getter()
            data = list(data)
            data = [datetime.datetime.utcnow().timestamp(), *data]
            if len(data) != 2:
                raise ValueError("length")
            with buffer_lock:
                if pos >= buffers[0].shape[0]:
                    n = buffers[0].shape[0] * 2
                    buffers = [np.resize(b, (n,)) for b in buffers]
                for i, d in enumerate(data):
                    buffers[i][pos] = d
                pos += 1
        with buffer_lock:
            out = [b[:pos] for b in buffers]
            buffers = [np.resize(b[pos:], (100,)) for b in buffers]
        elapsed = time.perf_counter() - t0
        assert len(out[0]) == rows
        best = max(best, rows / elapsed)
    return best


def run(cmd):
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stdout[-4000:] + res.stderr[-4000:])
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return res.stdout


def rust_throughputs(seconds):
    out = run([
        "cargo", "bench", "-p", "benches", "--bench", "daq_write", "--",
        "--warm-up-time", "1", "--measurement-time", str(seconds),
    ])
    found = {}
    name = None
    for line in out.splitlines():
        m = re.match(r"^(daq/\S+)", line)
        if m:
            name = m.group(1)
        m = re.search(r"thrpt:\s+\[\S+ \S+ (\S+) (\S+) ", line)
        if m and name:
            found[name] = float(m.group(1)) * UNITS[m.group(2)]
    return found


def rust_jitter():
    out = run(["cargo", "bench", "-p", "benches", "--bench", "daq_jitter"])
    for line in out.splitlines():
        if line.startswith("{"):
            return json.loads(line)
    raise SystemExit("daq_jitter printed no JSON line")


SDAQ_CASE = r"""
import glob, json, logging, os, sys, time
import h5py, numpy as np, sdaq
logging.disable(logging.WARNING)
case, seconds, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
os.makedirs(out, exist_ok=True)
if case == "f32x1000":
    row = np.arange(1000, dtype=np.float32)
    job = sdaq.DAQJob("g", ["v"], lambda: [row], shape=[(0, 1000)], dtype=np.float32,
                      read_mode="constant", compress=False)
elif case == "scalar":
    job = sdaq.DAQJob("g", ["v"], lambda: [1.5], dtype=np.float64, read_mode="constant",
                      compress=False)
else:
    job = sdaq.DAQJob("g", ["v"], lambda: [1.5], dtype=np.float64, read_period=0.01,
                      compress=False)
d = sdaq.DAQDaemon([job], write_period=1, directory=out)
d.start()
time.sleep(seconds)
d.stop()
t = np.concatenate([h5py.File(p, "r")["g/time"][:] for p in sorted(glob.glob(out + "/*"))])
print(json.dumps({"rows": int(len(t)), "intervals": np.diff(np.sort(t)).tolist() if case == "period" else []}))
"""


def sdaq_case(python, case, seconds):
    with tempfile.TemporaryDirectory() as d:
        res = subprocess.run([python, "-c", SDAQ_CASE, case, str(seconds), d + "/out"],
                             capture_output=True, text=True, timeout=seconds + 120)
        if res.returncode != 0:
            raise SystemExit(f"sdaq {case} failed: {res.stderr[-2000:]}")
        return json.loads(res.stdout.strip().splitlines()[-1])


def h5daq_binary():
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    exe = target / "release" / "h5daq"
    if not exe.exists():
        raise SystemExit(f"{exe} not found: run `cargo build --release -p h5daq --bins` first")
    return exe


def h5daq_case(case, seconds, transport="pull", batch=BATCH):
    """Rows stored per second by the h5daq binary: a Python producer sending as fast as it can
    for `seconds` over PUSH/PULL (`transport="pull"`: blocked by back-pressure, lossless) or
    PUB/SUB (`"pub"`: flooding, the excess dropped and counted), or a 10 ms system job; also
    its drop counters and intervals."""
    import zmq

    with tempfile.TemporaryDirectory() as d:
        ctx = zmq.Context()
        if transport == "pull":
            sock = ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.SNDHWM, 100)
        else:
            sock = ctx.socket(zmq.PUB)
            # Batches: a short sender queue (100 messages); beyond it the PUB socket drops,
            # which the daemon counts from the sequence numbers.
            sock.setsockopt(zmq.SNDHWM, 100 if case == "f32x1000_batch" else 100_000)
        port = sock.bind_to_random_port("tcp://127.0.0.1")
        if case == "period":
            job = 'source = "system"\nperiod = 0.01\nfields = ["load1"]'
        else:
            shape = ', shape = [1000]' if case.startswith("f32x1000") else ""
            dtype = "float32" if case.startswith("f32x1000") else "float64"
            source = "zmq_pull" if transport == "pull" else "zmq_sub"
            # A buffer for a whole write period of rows (sdaq's buffers are unbounded).
            job = (f'source = "{source}"\nendpoint = "tcp://127.0.0.1:{port}"\n'
                   f'buffer_size = "1 GiB"\nsequence_field = "seq"\n'
                   f'fields = [{{ name = "v", dtype = "{dtype}"{shape} }}]')
        cfg = Path(d) / "daq.toml"
        cfg.write_text(f'[daemon]\ndirectory = "out"\nwrite_period = 1\n[log]\nlevel = "error"\n'
                       f'[[job]]\ngroup = "g"\n{job}\n')
        proc = subprocess.Popen([str(h5daq_binary()), "run", "daq.toml"], cwd=d,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        ctl = Path(d) / "out" / "h5daq.sock"
        while not ctl.exists():
            if proc.poll() is not None:  # e.g. a stale binary refusing the config
                raise SystemExit(f"h5daq exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
            time.sleep(0.01)
        time.sleep(0.3)  # the connection (and subscription) is made
        sent = 0
        t_start = time.perf_counter()
        wall_start = time.time()
        t_end = t_start + seconds
        arrays = b'"arrays": [{"key": "v", "dtype": "float32", "shape": [1000]}]'
        row = np.arange(1000, dtype=np.float32)
        rows = np.tile(row, (batch, 1))

        def send(seq, last=False):
            """Sends the message numbered `seq` (the closing one holds -1); returns its rows.
            Arrays go without a copy."""
            if case == "f32x1000":
                sock.send(b'{"seq": %d, %s}' % (seq, arrays), zmq.SNDMORE)
                sock.send(np.full(1000, -1, np.float32) if last else row, copy=False)
                return 1
            if case == "f32x1000_batch":
                # `batch` rows per message: a header with "rows", then one (batch, 1000) array.
                sock.send(b'{"rows": %d, "seq": %d, %s}' % (batch, seq, arrays), zmq.SNDMORE)
                sock.send(np.full((batch, 1000), -1, np.float32) if last else rows, copy=False)
                return batch
            sock.send(b'{"seq": %d, "v": %s}' % (seq, b"-1" if last else b"1.5"))
            return 1

        if case == "period":
            time.sleep(seconds)
        else:
            while time.perf_counter() < t_end:
                for _ in range(100):
                    sent += send(sent)
            # One more after a pause, so a loss at the very end shows as a sequence gap (its
            # rows, -1, are left out of the rate).
            time.sleep(1.0)
            sent += send(sent, last=True)
        # Let what is on the way arrive: until the rows taken plus the rows counted as dropped
        # stop growing (the periodic job grows for ever: it is stopped at once).
        last, t_last = -1, time.perf_counter()
        while case != "period" and time.perf_counter() - t_last < 0.5:
            st = subprocess.run([str(h5daq_binary()), "status", "-c", "daq.toml", "--json"], cwd=d,
                                capture_output=True, text=True, timeout=30)
            job = json.loads(st.stdout)["status"]["jobs"][0]
            taken = job["rows"] + job["dropped"]
            if taken != last:
                last, t_last = taken, time.perf_counter()
            time.sleep(0.1)
        elapsed = t_last - t_start
        stop = subprocess.run([str(h5daq_binary()), "stop", "-c", "daq.toml", "--json"], cwd=d,
                              capture_output=True, text=True, timeout=120)
        proc.wait(timeout=120)
        report = json.loads(stop.stdout)
        sock.close(0)
        ctx.term()
        files = sorted((Path(d) / "out").glob("*.h5"))
        t = np.concatenate([h5py.File(p, "r")["g/time"][:] for p in files])
        if case != "period":
            # The rate: rows of the timed phase over the sending time, or until the last of
            # them arrived if that was later (rows are stamped when they arrive).
            v = np.concatenate([h5py.File(p, "r")["g/v"][:] for p in files]).reshape(len(t), -1)
            timed = v[:, 0] != -1
            elapsed = max(float(t[timed].max() - wall_start), seconds) if timed.any() else elapsed
            rate = int(timed.sum()) / elapsed
        else:
            rate = 0.0
        job = report["jobs"][0]
        return {"rows": int(len(t)), "rate": rate, "sent": sent, "elapsed": elapsed,
                "dropped": job["dropped"], "lost": sent - int(len(t)),
                "dropped_by": {k: v for k, v in job["dropped_by"].items() if v},
                "missed": job["missed_periods"],
                "intervals": np.diff(np.sort(t)).tolist() if case == "period" else []}


def vs_sdaq(python, seconds, batch=BATCH):
    version = subprocess.run([python, "-c", "import h5py, numpy; print(h5py.__version__, numpy.__version__)"],
                             capture_output=True, text=True).stdout.split()
    load = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc)
    cases = [("f32x1000", "f32x1000", "(1000,) float32, 1 row per message"),
             ("f32x1000", "f32x1000_batch", f"(1000,) float32, {batch} rows per message"),
             ("scalar", "scalar", "scalar float64 (JSON), 1 row per message")]
    refs, lines = {}, []
    for ref_case, case, what in cases:
        if ref_case not in refs:
            refs[ref_case] = (os.getloadavg()[0], sdaq_case(python, ref_case, seconds))
        load_ref, ref = refs[ref_case]
        r_ref = ref["rows"] / seconds
        runs = {}
        for transport in ("pull", "pub"):
            runs[transport] = (os.getloadavg()[0], h5daq_case(case, seconds, transport, batch))
            print(f"{what} via {transport}: {runs[transport][1]['rate']:,.0f} rows/s, "
                  f"{runs[transport][1]['lost']:,} of {runs[transport][1]['sent']:,} lost",
                  file=sys.stderr, flush=True)
        (load_pull, pull), (load_pub, pub) = runs["pull"], runs["pub"]

        def lost(r):
            by = ", ".join(f"`{k}` {v:,}" for k, v in r["dropped_by"].items())
            counted = "all counted" if r["lost"] == r["dropped"] else f"{r['dropped']:,} counted"
            return f"{r['lost']:,} of {r['sent']:,}" + (f" ({counted}: {by})" if r["lost"] else "")

        lines.append(
            f"| {what} | {r_ref:,.0f} rows/s | **{pull['rate']:,.0f} rows/s** | **{pull['rate'] / r_ref:.1f}x** "
            f"| {lost(pull)} | {pub['rate']:,.0f} rows/s | {pub['rate'] / r_ref:.1f}x | {lost(pub)} "
            f"| {load_ref:.1f} / {load_pull:.1f} / {load_pub:.1f} |")
    ref = sdaq_case(python, "period", seconds)
    ours = h5daq_case("period", seconds)

    def timing(r):
        iv = np.array(r["intervals"]) * 1e3
        slots = iv.sum() / 10.0 + 1
        return (f"{r['rows']} rows in {slots:.0f} 10 ms slots, interval median {np.median(iv):.2f} ms, "
                f"p99 {np.percentile(iv, 99):.2f} ms, max {iv.max():.2f} ms")

    end_load = os.getloadavg()
    print(f"Machine: {platform.node()}, {os.cpu_count()} cores, {platform.platform()}; "
          f"load average at the start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, at the end "
          f"{end_load[0]:.2f} {end_load[1]:.2f} {end_load[2]:.2f}; {started:%Y-%m-%d %H:%M} UTC; "
          f"sdaq 0.0.3 (GitHub HEAD) with h5py {version[0]}, numpy {version[1]}; "
          f"h5daq release build; {seconds:g} s per case, write period 1 s in both; warm page cache.")
    print()
    print(f"Command: `{' '.join([Path(sys.executable).name] + sys.argv)}`")
    print()
    print("Target: (1000,) float32 rows/s through PUSH/PULL with a batched producer >= 2x sdaq's "
          "in-process getter.")
    print()
    print("| case | sdaq (in-process getter, constant read) | h5daq, PUSH/PULL (lossless: producer held back) | ratio | rows lost (PUSH/PULL) | h5daq, PUB/SUB flooded (capacity when overloaded) | ratio | rows lost (PUB/SUB) | load (1 min) sdaq / pull / pub |")
    print("|---|---|---|---|---|---|---|---|---|")
    for line in lines:
        print(line)
    print()
    print(f"10 ms periodic job: sdaq (schedule mode) {timing(ref)}; "
          f"h5daq (system job) {timing(ours)}, {ours['missed']} missed slots counted.")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="measurement time per case")
    ap.add_argument("--skip-rust", action="store_true", help="only the h5py reproduction")
    ap.add_argument("--vs-sdaq", metavar="SDAQ_PYTHON",
                    help="whole-process comparison with the real sdaq installed for this Python")
    ap.add_argument("--rows-per-message", type=int, default=BATCH,
                    help="rows per message of the batched (1000,) float32 producer")
    args = ap.parse_args()
    if args.vs_sdaq:
        vs_sdaq(args.vs_sdaq, args.seconds, args.rows_per_message)
        return

    ref_sample = reference_sample_path(100_000)
    ref = {name: reference_write_path(shape, dt, rows, args.seconds) for name, shape, dt, rows in CASES}
    rust = {} if args.skip_rust else rust_throughputs(args.seconds)
    jit = None if args.skip_rust else rust_jitter()

    load = os.getloadavg()
    print(f"Machine: {platform.node()}, {os.cpu_count()} cores, {platform.platform()}; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
          f"h5py {h5py.__version__} (HDF5 {h5py.version.hdf5_version}), h5daq on HDF5 1.10.8.")
    print()
    print("| case | rows per write | h5daq append (open file) | h5daq write period (open+append+close) | reference path (h5py) | ratio write period / reference |")
    print("|---|---|---|---|---|---|")
    for name, shape, dt, rows in CASES:
        r_ref, n_ref = ref[name]
        a = rust.get(f"daq/append/{name}")
        w = rust.get(f"daq/write_period/{name}")
        fmt = lambda v: "-" if v is None else f"{v:,.0f} rows/s"
        ratio = "-" if w is None else f"{w / r_ref:.1f}x"
        print(f"| {name} {shape or '()'} {np.dtype(dt).name} | {rows:,} | {fmt(a)} | {fmt(w)} | {fmt(r_ref)} ({n_ref} writes) | {ratio} |")
    print()
    print("| per-sample path, scalar f64 job (getter, time stamp, buffer, drain) | h5daq | reference (numpy buffers) | ratio |")
    print("|---|---|---|---|")
    s_rust = rust.get("daq/sample/scalar_f64")
    print(f"| 100,000 samples | {'-' if s_rust is None else f'{s_rust:,.0f} rows/s'} | {ref_sample:,.0f} rows/s | "
          f"{'-' if s_rust is None else f'{s_rust / ref_sample:.0f}x'} |")
    if jit:
        print()
        print(f"Scheduler jitter, 10 ms periodic job, {jit['reads']} reads ({jit['missed']} missed slots), "
              f"lateness behind the grid slot: p50 {jit['p50_us']:.0f} us, p90 {jit['p90_us']:.0f} us, "
              f"p99 {jit['p99_us']:.0f} us, max {jit['max_us']:.0f} us.")


if __name__ == "__main__":
    main()
