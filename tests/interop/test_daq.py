"""h5py and pyzmq against the real h5daq binary: layout, dtypes, chunking, filters, attributes,
time values, rollover chains, live SWMR reading, ZeroMQ sources."""

import json
import re
import signal
import threading
import time

import h5py
import numpy as np
import pytest
import zmq

from daq_helpers import h5_files, run_h5daq, start_h5daq, wait_for

NAME = re.compile(r"^DAQ_(\d{8}T\d{6}\.\d{3}Z)_(\d{8}T\d{6}\.\d{3}Z)\.h5$")


def stamp_to_unix(s: str) -> float:
    import datetime

    dt = datetime.datetime.strptime(s, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    return dt.timestamp()


CONFIG = """
[daemon]
name = "interop"
directory = "out"
write_period = 0.3
rollover = "ROLLOVER"
compression = 3
shuffle = true
mode = "MODE"
[daemon.attrs]
measurement = "interop"
run_id = 7
temperature_setpoint = 21.5

[[job]]
group = "system"
source = "system"
period = 0.1
fields = ["load1", "mem_used_fraction", "disk_free"]

[[job]]
group = "lines"
source = "command"
command = "i=0; while true; do echo $i $((i % 3)) $i.5 1 2 3 4 5 6; i=$((i+1)); sleep 0.02; done"
chunk_length = 32
fields = [
  { name = "n", dtype = "int64" },
  { name = "small", dtype = "uint8" },
  { name = "x", dtype = "float32", unit = "mm" },
  { name = "img", dtype = "int16", shape = [2, 3] },
]
[job.attrs]
device = "counter-1"
"""


def run_config(tmp_path, duration, rollover="1 day", mode="close"):
    (tmp_path / "daq.toml").write_text(CONFIG.replace("ROLLOVER", rollover).replace("MODE", mode))
    t_start = time.time()
    res = run_h5daq(tmp_path, "run", "daq.toml", "--duration", str(duration))
    t_end = time.time()
    assert res.returncode == 0, res.stderr
    return h5_files(tmp_path / "out"), t_start, t_end


@pytest.mark.parametrize("mode", ["close", "swmr"])
def test_layout_dtypes_chunks_filters_and_attributes(tmp_path, mode):
    files, t_start, t_end = run_config(tmp_path, 2.0, mode=mode)
    assert len(files) == 1
    m = NAME.match(files[0].name)
    assert m, files[0].name
    with h5py.File(files[0], "r") as f:
        assert set(f.keys()) == {"system", "lines"}
        assert set(f["system"].keys()) == {"time", "load1", "mem_used_fraction", "disk_free"}
        assert set(f["lines"].keys()) == {"time", "n", "small", "x", "img"}
        lines = f["lines"]
        n = lines["time"].shape[0]
        assert n > 30
        expect = {"time": np.float64, "n": np.int64, "small": np.uint8, "x": np.float32, "img": np.int16}
        for key, dt in expect.items():
            ds = lines[key]
            assert ds.dtype == dt, key
            assert ds.shape[0] == n, key
            assert ds.maxshape[0] is None, key
            assert ds.fletcher32, key
            assert ds.compression == "gzip" and ds.compression_opts == 3, key
            assert ds.shuffle, key
        assert lines["img"].shape == (n, 2, 3)
        assert lines["img"].maxshape == (None, 2, 3)
        assert lines["img"].chunks == (32, 2, 3)
        assert lines["n"].chunks == (32,)
        assert lines["time"].chunks == (32,)
        assert f["system/load1"].chunks == (64,)
        assert f["system/time"].dtype == np.float64
        # Values: consecutive lines, derived columns consistent.
        nn = lines["n"][:]
        assert (np.diff(nn) == 1).all()
        assert (lines["small"][:] == nn % 3).all()
        assert np.allclose(lines["x"][:], nn + 0.5)
        assert (lines["img"][0] == [[1, 2, 3], [4, 5, 6]]).all()
        assert lines["x"].attrs["units"] == "mm"
        assert lines.attrs["device"] == "counter-1"
        # Time: true UTC Unix seconds, within a second of the wall clock.
        for g in ("system", "lines"):
            t = f[g]["time"][:]
            assert t.min() >= t_start - 1.0 and t.max() <= t_end + 1.0, (t.min(), t.max(), t_start, t_end)
            assert (np.diff(t) >= 0).all()
        a = f.attrs
        assert a["name"] == "interop" and a["measurement"] == "interop"
        assert a["run_id"] == 7 and a["run_id"].dtype == np.int64
        assert a["temperature_setpoint"] == 21.5
        assert a["write_period"] == 0.3
        assert a["write_mode"] == mode
        assert a["rollover_interval"] == "1 day"
        for k in ("run_start", "run_end", "file_start", "file_end"):
            assert np.isfinite(a[k]), k
            assert t_start - 1 <= a[k] <= t_end + 1, k
        assert a["file_start"] == a["run_start"] and a["file_end"] == a["run_end"]
        assert a["file_id"].dtype == np.uint64 and a["file_id"] != 0
        assert a["previous_file_id"] == 0 and a["following_file_id"] == 0
        # The name carries the real start and end.
        assert abs(stamp_to_unix(m.group(1)) - a["file_start"]) < 0.002
        assert abs(stamp_to_unix(m.group(2)) - a["file_end"]) < 0.002


def test_rollover_by_seconds_chains_files(tmp_path):
    files, t_start, t_end = run_config(tmp_path, 3.2, rollover="1 second")
    assert len(files) >= 3, files
    prev = None
    total = 0
    all_n = []
    for p in files:
        m = NAME.match(p.name)
        with h5py.File(p, "r") as f:
            a = f.attrs
            t = f["lines/time"][:]
            all_n.extend(f["lines/n"][:].tolist())
            if len(t):
                assert t.min() >= a["file_start"] - 1e-6 and t.max() < a["file_end"] + 1e-6
            assert a["run_end"] == pytest.approx(t_end, abs=1.5)
            if prev is not None:
                assert a["previous_file_id"] == prev["file_id"]
                assert prev["following_file_id"] == a["file_id"]
                assert a["file_start"] == pytest.approx(prev["file_end"])
                # Boundaries fall on whole seconds.
                assert a["file_start"] == round(a["file_start"])
            prev = dict(a)
            total += len(t)
        assert m
    assert prev["following_file_id"] == 0
    assert all_n == list(range(all_n[0], all_n[0] + len(all_n))), "no row lost or repeated across files"


def test_live_swmr_reader_follows_the_daemon(tmp_path):
    (tmp_path / "daq.toml").write_text(CONFIG.replace("ROLLOVER", "1 day").replace("MODE", "swmr"))
    proc = start_h5daq(tmp_path, "run", "daq.toml")
    try:
        out = tmp_path / "out"
        wait_for(lambda: out.exists() and h5_files(out), what="the first file")
        path = h5_files(out)[0]
        time.sleep(0.8)
        with h5py.File(path, "r", libver="latest", swmr=True) as f:
            ds = f["lines/n"]
            ds.refresh()
            first = ds.shape[0]
            time.sleep(1.0)
            ds.refresh()
            later = ds.shape[0]
            assert later > first, (first, later)
            assert (np.diff(ds[:later]) == 1).all()
    finally:
        proc.send_signal(signal.SIGINT)
        out_text, err_text = proc.communicate(timeout=30)
    assert proc.returncode == 0, err_text
    files = h5_files(tmp_path / "out")
    with h5py.File(files[0], "r") as f:
        assert np.isfinite(f.attrs["file_end"])


def test_pyzmq_publisher_and_status_responder(tmp_path):
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub_port = pub.bind_to_random_port("tcp://127.0.0.1")
    rep = ctx.socket(zmq.REP)
    rep_port = rep.bind_to_random_port("tcp://127.0.0.1")
    stop = threading.Event()
    served = []

    def responder():
        poller = zmq.Poller()
        poller.register(rep, zmq.POLLIN)
        while not stop.is_set():
            if poller.poll(100):
                req = json.loads(rep.recv())
                served.append(req)
                rep.send_json({"ok": True, "frames_acquired": 5 * len(served), "state": "acquiring"})

    th = threading.Thread(target=responder)
    th.start()
    cfg = f"""
[daemon]
directory = "out"
write_period = 0.3
[[job]]
group = "env"
source = "zmq_sub"
endpoint = "tcp://127.0.0.1:{pub_port}"
topic = "env"
time_field = "t"
fields = [{{ name = "temperature", dtype = "float32", key = "sensor.temp" }}]
[[job]]
group = "xspress3"
source = "xsp3_status"
endpoint = "tcp://127.0.0.1:{rep_port}"
period = 0.1
fields = [{{ name = "frames_acquired", dtype = "uint32" }}]
"""
    (tmp_path / "daq.toml").write_text(cfg)
    proc = start_h5daq(tmp_path, "run", "daq.toml", "--duration", "2.5")
    try:
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < 2.0:
            # Topic-prefixed single frame; and a message on another topic that must be ignored.
            pub.send_string("env " + json.dumps({"t": 1.7e9 + i, "sensor": {"temp": 20.0 + i}}))
            pub.send_string("other " + json.dumps({"t": 0, "sensor": {"temp": -1}}))
            i += 1
            time.sleep(0.02)
        out, err = proc.communicate(timeout=30)
    finally:
        stop.set()
        th.join()
        pub.close(0)
        rep.close(0)
        ctx.term()
    assert proc.returncode == 0, err
    with h5py.File(h5_files(tmp_path / "out")[0], "r") as f:
        temp = f["env/temperature"][:]
        t = f["env/time"][:]
        assert len(temp) > 30
        assert (temp >= 20).all(), "messages of other topics were ignored"
        assert np.allclose(t - 1.7e9, temp - 20.0), "getter-provided time from the JSON field"
        frames = f["xspress3/frames_acquired"][:]
        assert frames.dtype == np.uint32
        assert len(frames) >= 10
        assert (np.diff(frames) == 5).all()
    assert all(r == {"cmd": "status"} for r in served)


@pytest.mark.parametrize("mode", ["close", "swmr"])
def test_uncompressed_bulk_rows_written_as_whole_chunks_pass_fletcher32(tmp_path, mode):
    """Without compression h5daq writes whole chunks directly (H5Dwrite_chunk with its own
    Fletcher-32); h5py verifies every chunk's checksum when it reads them."""
    cfg = """
[daemon]
directory = "out"
write_period = 0.2
mode = "MODE"
[[job]]
group = "bulk"
source = "command"
command = "awk 'BEGIN { for (i = 0; i < 50000; i++) print 1700000000 + i * 0.001, i, i % 251, i, i + 1, i + 2 }'; sleep 100"
bulk = true
period = 0.1
chunk_length = 100
fields = [
  { name = "n", dtype = "int64" },
  { name = "b", dtype = "uint8" },
  { name = "v", dtype = "float32", shape = [3] },
]
"""
    (tmp_path / "daq.toml").write_text(cfg.replace("MODE", mode))
    res = run_h5daq(tmp_path, "run", "daq.toml", "--duration", "3")
    assert res.returncode == 0, res.stderr
    with h5py.File(h5_files(tmp_path / "out")[0], "r") as f:
        n = f["bulk/n"][:]
        assert len(n) == 50000
        assert (n == np.arange(50000)).all()
        assert (f["bulk/b"][:] == np.arange(50000) % 251).all()
        v = f["bulk/v"][:]
        assert v.shape == (50000, 3)
        assert (v[:, 2] == np.arange(50000, dtype=np.float32) + 2).all()
        assert np.allclose(f["bulk/time"][:], 1.7e9 + np.arange(50000) * 0.001)
        for key in ("n", "b", "v", "time"):
            assert f["bulk"][key].fletcher32 and f["bulk"][key].compression is None


def test_pyzmq_numpy_arrays_as_raw_frames_and_python_json(tmp_path):
    """A Python producer sends numpy arrays without text encoding (a JSON header naming dtype
    and shape, then the raw bytes) and plain json.dumps output with NaN and int64 values."""
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    cfg = f"""
[daemon]
directory = "out"
write_period = 0.2
[[job]]
group = "spec"
source = "zmq_sub"
endpoint = "tcp://127.0.0.1:{port}"
fields = [
  {{ name = "spectrum", dtype = "float32", shape = [1000] }},
  {{ name = "counts", dtype = "int64", shape = [2] }},
  "temperature",
]
"""
    (tmp_path / "daq.toml").write_text(cfg)
    proc = start_h5daq(tmp_path, "run", "daq.toml", "--duration", "2.5")
    sent = []
    try:
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < 2.0:
            spectrum = np.arange(1000, dtype=np.float32) + i
            counts = np.array([2**53 + 1 + i, -i], dtype=np.int64)
            header = {
                "temperature": float("nan") if i % 2 else 20.0 + i,
                "arrays": [
                    {"key": "spectrum", "dtype": str(spectrum.dtype), "shape": list(spectrum.shape)},
                    {"key": "counts", "dtype": counts.dtype.str, "shape": list(counts.shape)},
                ],
            }
            pub.send_multipart([json.dumps(header).encode(), spectrum, counts])
            sent.append(i)
            i += 1
            time.sleep(0.01)
        out, err = proc.communicate(timeout=30)
    finally:
        pub.close(0)
        ctx.term()
    assert proc.returncode == 0, err
    with h5py.File(h5_files(tmp_path / "out")[0], "r") as f:
        spectrum = f["spec/spectrum"][:]
        counts = f["spec/counts"][:]
        temperature = f["spec/temperature"][:]
    n = len(spectrum)
    assert n > 50, "the first messages may precede the subscription"
    first = int(spectrum[0, 0])
    k = np.arange(first, first + n)
    assert (spectrum == np.arange(1000, dtype=np.float32)[None, :] + k[:, None]).all()
    assert (counts[:, 0] == 2**53 + 1 + k).all(), "int64 stays exact"
    assert (counts[:, 1] == -k).all()
    odd = k % 2 == 1
    assert np.isnan(temperature[odd]).all() and (temperature[~odd] == 20.0 + k[~odd]).all()


def test_pyzmq_push_numpy_batches_into_zmq_pull_lose_nothing(tmp_path):
    """The documented producer: a PUSH socket sending (N, 1000) float32 blocks (and single
    rows) to h5daq's `zmq_pull` bind address. Its buffer holds ~64 rows and the producer sends
    ~60 times as many: back-pressure makes `send` wait, so every row is stored exactly once,
    in order, and nothing is counted as dropped."""
    cfg = """
[daemon]
directory = "out"
write_period = 0.05
[[job]]
group = "spec"
source = "zmq_pull"
bind = "ipc://{ipc}"
buffer_size = "256 KiB"
sequence_field = "seq"
fields = [{{ name = "spectrum", dtype = "float32", shape = [1000] }}]
""".format(ipc=tmp_path / "spec.ipc")
    (tmp_path / "daq.toml").write_text(cfg)
    proc = start_h5daq(tmp_path, "run", "daq.toml")
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDTIMEO, 20_000)  # a daemon that stops reading fails the test
    push.connect(f"ipc://{tmp_path / 'spec.ipc'}")
    try:
        row = 0
        for n in [1, 100, 7, 1, 250, 100, 1] * 6:
            block = (np.arange(row, row + n, dtype=np.float32)[:, None]
                     + np.zeros(1000, dtype=np.float32))
            header = {"rows": n, "seq": row,
                      "arrays": [{"key": "spectrum", "dtype": "float32", "shape": [1000]}]}
            push.send(json.dumps(header).encode(), zmq.SNDMORE)
            push.send(block, copy=False)
            row += n

        def written():
            res = run_h5daq(tmp_path, "status", "-c", "daq.toml", "--json")
            return json.loads(res.stdout)["status"]["jobs"][0]

        wait_for(lambda: written()["written"] == row, what=f"{row} rows written")
        assert written()["dropped"] == 0
        res = run_h5daq(tmp_path, "stop", "-c", "daq.toml")
        assert res.returncode == 0, res.stdout + res.stderr
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        push.close(0)
        ctx.term()
    assert proc.returncode == 0
    with h5py.File(h5_files(tmp_path / "out")[0], "r") as f:
        spectrum = f["spec/spectrum"][:]
        assert len(f["spec/time"]) == row
    assert spectrum.shape == (row, 1000)
    assert (spectrum == np.arange(row, dtype=np.float32)[:, None]).all(), "each row once, in order"


def test_string_datasets_from_pyzmq_json_read_back_by_h5py(tmp_path):
    """Strings in JSON messages go to a fixed-length (S8, numpy bytes) and a variable-length
    (h5py string_dtype) dataset; h5py reads back exactly what was sent. A string too long for
    S8 is bad input unless the field says truncate; the other rows are kept."""
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    cfg = f"""
[daemon]
directory = "out"
write_period = 0.2
[[job]]
group = "log"
source = "zmq_sub"
endpoint = "tcp://127.0.0.1:{port}"
fields = [
  {{ name = "i", dtype = "int64" }},
  {{ name = "tag", dtype = "S8" }},
  {{ name = "message", dtype = "str" }},
  {{ name = "short", dtype = "S3", truncate = true }},
]
"""
    (tmp_path / "daq.toml").write_text(cfg)
    proc = start_h5daq(tmp_path, "run", "daq.toml", "--duration", "2.5")

    def row(i):
        tag = "toolong!!" if i % 10 == 5 else f"t{i % 7}"
        return {"i": i, "tag": tag, "message": f"Température {i} °C " + "é" * (i % 13),
                "short": "αβγ"[: i % 4]}

    try:
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < 2.0:
            pub.send_string(json.dumps(row(i), ensure_ascii=i % 2 == 0))
            i += 1
            time.sleep(0.01)
        out, err = proc.communicate(timeout=30)
    finally:
        pub.close(0)
        ctx.term()
    assert proc.returncode == 0, err
    with h5py.File(h5_files(tmp_path / "out")[0], "r") as f:
        assert f["log/tag"].dtype == np.dtype("S8")
        assert h5py.check_string_dtype(f["log/message"].dtype).encoding == "utf-8"
        assert h5py.check_string_dtype(f["log/message"].dtype).length is None
        i = f["log/i"][:]
        tag = f["log/tag"][:]
        message = f["log/message"].asstr()[:]
        short = f["log/short"].asstr()[:]
    assert len(i) > 50 and len(tag) == len(i) == len(message) == len(short)
    assert not (i % 10 == 5).any(), "a tag longer than S8 is refused"
    assert (np.diff(i) >= 1).all()
    for k, t, m, s in zip(i, tag, message, short):
        want = row(int(k))
        assert t == want["tag"].encode()
        assert m == want["message"]
        # "αβγ"[:n] in UTF-8 is 2n bytes: cut to 3 bytes keeps one character.
        assert s == want["short"][:1]


def test_pyzmq_batched_numpy_rows_with_sequence_numbers(tmp_path):
    """One message carries many rows (a header with "rows": N, then N * 1000 float32 as one raw
    frame, sent without a copy); the sequence field numbers rows, so nothing is lost unseen."""
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    cfg = f"""
[daemon]
directory = "out"
write_period = 0.2
[[job]]
group = "spec"
source = "zmq_sub"
endpoint = "tcp://127.0.0.1:{port}"
sequence_field = "seq"
fields = [{{ name = "spectrum", dtype = "float32", shape = [1000] }}, {{ name = "n", dtype = "uint32" }}]
"""
    (tmp_path / "daq.toml").write_text(cfg)
    proc = start_h5daq(tmp_path, "run", "daq.toml", "--duration", "2.5")
    batch = 50
    spectra = np.zeros((batch, 1000), dtype=np.float32)
    numbers = np.zeros(batch, dtype=np.uint32)
    seq = 0
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.0:
            numbers[:] = np.arange(seq, seq + batch)
            spectra[:] = numbers[:, None]
            header = {"rows": batch, "seq": seq, "arrays": [
                {"key": "spectrum", "dtype": "float32", "shape": [1000]},
                {"key": "n", "dtype": "<u4", "shape": []}]}
            pub.send(json.dumps(header).encode(), zmq.SNDMORE)
            pub.send(spectra, zmq.SNDMORE, copy=False)
            pub.send(numbers, copy=False)
            seq += batch
            time.sleep(0.02)
            # copy=False: the frames are the arrays' memory; make new ones for the next batch.
            spectra = np.zeros((batch, 1000), dtype=np.float32)
            numbers = np.zeros(batch, dtype=np.uint32)
        out, err = proc.communicate(timeout=30)
    finally:
        pub.close(0)
        ctx.term()
    assert proc.returncode == 0, err
    with h5py.File(h5_files(tmp_path / "out")[0], "r") as f:
        n = f["spec/n"][:]
        spectrum = f["spec/spectrum"][:]
        t = f["spec/time"][:]
        gap = int(f["spec"].attrs.get("dropped_sequence_gap", 0))
    assert len(n) > 10 * batch and len(n) % batch == 0
    assert gap == 0, "nothing was lost on the way"
    assert (np.diff(n.astype(np.int64)) == 1).all(), "every row of every batch, in order"
    assert (spectrum == n[:, None].astype(np.float32)).all()
    assert (t.reshape(-1, batch) == t.reshape(-1, batch)[:, :1]).all(), "a batch shares its arrival time"
