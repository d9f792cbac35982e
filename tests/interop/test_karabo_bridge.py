"""Karabo Bridge interop: our xfel-serve read by karabo_bridge.Client and compared train by
train with EXtra-data's karabo-bridge-serve-files; our xfel-bridge reading karabo_bridge's own
servers (SimServerInThread, ServerInThread) and hostile peers.

Build first: cargo build -p karabo-bridge -p fixtures --bins
"""
import json
import os
import re
import subprocess
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq
from karabo_bridge import Client, ServerInThread
from karabo_bridge.server import SimServerInThread

from euxfel_helpers import make_rust_fixture, py_tool, rust_bin

LIMIT = 120  # seconds any one process or wait may take


class Server:
    """A serving process; its endpoint is read from `Streamer started on: ...`."""

    def __init__(self, cmd, env=None):
        self.proc = subprocess.Popen(
            [str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env,
        )
        line = self.proc.stdout.readline()
        m = re.search(r"Streamer started on: (tcp://\S+)", line)
        if not m:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=LIMIT)
            raise AssertionError(f"{cmd}: no endpoint: {line}{out}{err}")
        # EXtra-data prints the host name for an address bound on every interface.
        self.endpoint = re.sub(r"tcp://[^:]+:", "tcp://127.0.0.1:", m.group(1))

    def finish(self):
        """Waits for the process to exit; returns (code, stdout, stderr)."""
        out, err = self.proc.communicate(timeout=LIMIT)
        return self.proc.returncode, out, err

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=LIMIT)


def ours(*args):
    return Server([rust_bin("xfel-serve"), *args])


def theirs(path, *args):
    return Server([py_tool("karabo-bridge-serve-files"), path, "tcp://127.0.0.1:0", *args])


def receive(server, n, sock="REQ"):
    """n trains from a server as karabo_bridge.Client decodes them."""
    with Client(server.endpoint, sock=sock, timeout=LIMIT) as c:
        return [c.next() for _ in range(n)]


def assert_same(a, b, where, skip=lambda path: False):
    """Decoded bridge dicts equal: keys, value types, array dtypes, shapes and bytes."""
    if skip(where):
        return
    if isinstance(a, dict):
        assert isinstance(b, dict), where
        assert sorted(a) == sorted(b), (where, sorted(set(a) ^ set(b)))
        for k in a:
            assert_same(a[k], b[k], f"{where}/{k}", skip)
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), (where, a, b)
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]", skip)
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), (where, type(b))
        assert (a.dtype, a.shape) == (b.dtype, b.shape), (where, a.dtype, b.dtype, a.shape, b.shape)
        assert a.tobytes() == b.tobytes(), where
    else:
        assert type(a) is type(b), (where, type(a), type(b))
        assert a == b or (a != a and b != b), (where, a, b)


def train_id(train):
    return next(iter(train[1].values()))["timestamp.tid"]


def n_trains(path, source="*", key="*"):
    from extra_data import H5File, RunDirectory

    dc = RunDirectory(str(path)) if Path(path).is_dir() else H5File(str(path))
    return len(dc.select(source, key).train_ids)


@pytest.fixture(scope="module")
def lpd_run(tmp_path_factory):
    """A small LPD run of our generator: 4 modules, control and instrument sources, strings."""
    return make_rust_fixture(
        tmp_path_factory.mktemp("kb") / "lpd", "--trains", "8", "--sequences", "2",
        "--modules", "4", "--frames", "3", "--frame-height", "16", "--frame-width", "16",
    )


@pytest.fixture(scope="module")
def agipd_run(tmp_path_factory):
    return make_rust_fixture(
        tmp_path_factory.mktemp("kb") / "agipd", "--trains", "5", "--sequences", "1",
        "--modules", "3", "--frames", "2", "--frame-height", "16", "--frame-width", "8",
        "--detector", "SPB_DET_AGIPD1M-1",
    )


@pytest.fixture(scope="module")
def lpd_reference(lpd_run):
    """Every train of the LPD run as karabo-bridge-serve-files sends it, by train ID."""
    s = theirs(lpd_run)
    try:
        return {train_id(t): t for t in receive(s, n_trains(lpd_run))}
    finally:
        s.stop()


@pytest.mark.parametrize("server_sock,client_sock", [("REP", "REQ"), ("PUSH", "PULL")])
def test_every_train_equals_serve_files(lpd_run, lpd_reference, server_sock, client_sock):
    s = ours("files", lpd_run, "0", "-z", server_sock)
    got = receive(s, len(lpd_reference), client_sock)
    code, out, err = s.finish()
    assert code == 0, err
    assert [train_id(t) for t in got] == sorted(lpd_reference)
    for t in got:
        ref = lpd_reference[train_id(t)]
        assert_same(ref[0], t[0], f"train {train_id(t)} data")
        assert_same(ref[1], t[1], f"train {train_id(t)} metadata")
    assert f"sent {len(got)} trains" in out


def test_pub_subscriber_gets_equal_trains(lpd_run, lpd_reference):
    # PUB sends whether or not anyone listens: loop, and compare what the subscriber gets.
    s = ours("files", lpd_run, "0", "-z", "PUB", "--loop", "--rate", "200")
    try:
        got = receive(s, 12, "SUB")
    finally:
        s.stop()
    for t in got:
        ref = lpd_reference[train_id(t)]
        assert_same(ref[0], t[0], "data")
        assert_same(ref[1], t[1], "metadata")


def test_extra_data_example_run_with_selection(examples):
    """EXtra-data's own FXE example run, XGM sources and one key glob."""
    run = examples["fxe12"]
    args = ["--source", "SA1_XTD2_XGM/*", "--key", "*.i*"]
    n = n_trains(run, "SA1_XTD2_XGM/*", "*.i*")
    t, o = theirs(run, *args), ours("files", run, "0", *args)
    try:
        ref, got = receive(t, n), receive(o, n)
    finally:
        t.stop()
        o.stop()
    assert len(got) == n > 100
    for a, b in zip(ref, got):
        assert_same(a, b, f"train {train_id(a)}")


@pytest.mark.parametrize("fixture", ["lpd_run", "agipd_run"])
def test_append_detector_modules(request, fixture):
    run = request.getfixturevalue(fixture)
    n = n_trains(run)
    t = theirs(run, "--append-detector-modules")
    o = ours("files", run, "0", "--append-detector-modules")
    plain = ours("files", run, "0")
    try:
        ref, got, modules = receive(t, n), receive(o, n), receive(plain, n)
    finally:
        for s in (t, o, plain):
            s.stop()
    det = "FXE_DET_LPD1M-1" if fixture == "lpd_run" else "SPB_DET_AGIPD1M-1"
    appended = f"{det}/DET/APPEND"

    def other_module_key(path):
        # EXtra-data takes the non-stacked keys from an arbitrary module (set order).
        key = path.rsplit("/", 1)[-1]
        return f"/{appended}/" in path and key not in ("image.data", "image.gain",
                                                       "image.mask", "metadata")

    for a, b, plain_train in zip(ref, got, modules):
        assert appended in b[0] and not any("/DET/0CH" in s for s in b[0])
        assert_same(a[0], b[0], "data", other_module_key)
        assert_same(a[1], b[1], "metadata")
        # Ours takes them from module 0; theirs from one of the modules.
        mod0 = plain_train[0][f"{det}/DET/0CH0:xtdf"]
        for key, value in b[0][appended].items():
            if other_module_key(f"/{appended}/{key}"):
                assert_same(mod0[key], value, key)
                assert any(
                    np.array_equal(plain_train[0][src][key], a[0][appended][key])
                    for src in plain_train[0] if "/DET/" in src
                ), key
        stacked = b[0][appended]["image.data"]
        assert stacked.shape[-3] == 16


def test_protocol_1_0_equals_karabo_bridge_serializer(lpd_run):
    """Protocol 1.0 (EXtra-data's serve-files has no option for it): karabo_bridge's own
    ServerInThread fed with EXtra-data's train dicts, as serve_data prepares them."""
    from extra_data import RunDirectory
    from extra_data.export import _drop_object_arrays, _iter_trains

    n = n_trains(lpd_run)
    ep = f"tcp://127.0.0.1:{free_port()}"
    ref = []
    with ServerInThread(ep, protocol_version="1.0") as server:
        with Client(ep, timeout=LIMIT) as c:
            for _, data in _iter_trains(RunDirectory(str(lpd_run))):
                _drop_object_arrays(data)
                server.feed(data)
                ref.append(c.next())
    o = ours("files", lpd_run, "0", "--protocol", "1.0")
    try:
        got = receive(o, n)
    finally:
        o.stop()
    for a, b in zip(ref, got):
        assert_same(a[0], b[0], f"train {train_id(a)} data")
        assert_same(a[1], b[1], f"train {train_id(a)} metadata")


@pytest.mark.parametrize("protocol", ["2.2", "1.0"])
def test_dummy_timestamps(lpd_run, protocol):
    o = ours("files", lpd_run, "0", "--dummy-timestamps", "--protocol", protocol,
             "--source", "SA1*")
    try:
        before = time.time()
        data, meta = receive(o, 1)[0]
        after = time.time()
    finally:
        o.stop()
    for src, m in meta.items():
        assert before - 5 <= m["timestamp"] <= after + 5
        assert isinstance(m["timestamp.sec"], str) and isinstance(m["timestamp.frac"], str)
        assert len(m["timestamp.frac"]) == 18
        assert float(f"{m['timestamp.sec']}.{m['timestamp.frac']}") == pytest.approx(
            m["timestamp"])
        # As karabo_bridge does, 1.0 has them in the data's metadata, 2.2 only in the header.
        assert ("timestamp" in data[src]["metadata"]) == (protocol == "1.0")


def test_rep_answers_bad_requests_and_keeps_the_train(lpd_run):
    o = ours("files", lpd_run, "0", "--source", "SA1*")
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.RCVTIMEO, LIMIT * 1000)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(o.endpoint)
    try:
        sock.send(b"hello")
        assert sock.recv() == b"Error: bad request hello"
        sock.send(b"next")
        parts = sock.recv_multipart()
        header = msgpack.unpackb(parts[0])
        assert header["metadata"]["timestamp.tid"] == 10000, "the first train was kept"
    finally:
        sock.close()
        ctx.term()
        o.stop()


def test_serve_run_by_proposal_and_run(tmp_path, lpd_run):
    root = tmp_path / "root"
    raw = root / "FXE" / "201830" / "p700000" / "raw"
    raw.mkdir(parents=True)
    (raw / "r0450").symlink_to(lpd_run)
    env = dict(os.environ, EXTRA_DATA_DATA_ROOT=str(root))
    listing = subprocess.run(
        [rust_bin("xfel-serve"), "run", "700000", "450"], capture_output=True, text=True,
        env=env, timeout=LIMIT,
    )
    assert listing.returncode == 2
    assert "Available sources:\n  FXE_DET_LPD1M-1/DET/0CH0:xtdf\n" in listing.stdout
    assert "Please select at least one source with --include" in listing.stderr
    # The run has no proc directory: open_run(data='all') warns so, and so do we.
    theirs = subprocess.run(
        [py_tool("karabo-bridge-serve-run"), "700000", "450"], capture_output=True, text=True,
        env=env, timeout=LIMIT,
    )
    warning = "No data available for this run at origin proc"
    assert warning in theirs.stderr
    assert f"xfel-serve: warning: {warning}\n" in listing.stderr
    include = ["--include", "SA1_XTD2_XGM/DOOCS/MAIN[beamPosition.*]", "--include",
               "*XGM*:output[data.intensityTD]"]
    t = Server([py_tool("karabo-bridge-serve-run"), "700000", "450", "--port",
                "tcp://127.0.0.1:0", *include], env=env)
    o = Server([rust_bin("xfel-serve"), "run", "700000", "450", *include], env=env)
    try:
        ref, got = receive(t, 16), receive(o, 16)
    finally:
        t.stop()
        o.stop()
    for a, b in zip(ref, got):
        assert_same(a, b, f"train {train_id(a)}")


def free_port():
    with zmq.Context() as ctx:
        s = ctx.socket(zmq.REP)
        port = s.bind_to_random_port("tcp://127.0.0.1")
        s.close()
        return port


def bridge(*args):
    r = subprocess.run([rust_bin("xfel-bridge"), *[str(a) for a in args]], capture_output=True,
                       text=True, timeout=LIMIT)
    return r.returncode, r.stdout, r.stderr


@pytest.mark.parametrize("detector,raw,protocol", [
    ("AGIPDModule", True, "2.2"),
    ("AGIPD", True, "2.2"),
    ("AGIPD", False, "2.2"),
    ("AGIPD", False, "1.0"),
    ("LPD", True, "2.2"),
])
def test_glimpse_reads_the_simulator(detector, raw, protocol):
    from karabo_bridge.simulation import data_generator

    expected, _ = next(data_generator(detector=detector, raw=raw, datagen="zeros", debug=False))
    ep = f"tcp://127.0.0.1:{free_port()}"
    sim = SimServerInThread(ep, sock="REP", protocol_version=protocol, detector=detector,
                            raw=raw, datagen="zeros", debug=False)
    sim.start()
    try:
        code, out, err = bridge("glimpse", ep, "--json", "--timeout", LIMIT)
    finally:
        sim.stop()
    assert code == 0, err
    got = json.loads(out)
    assert sorted(got["sources"]) == sorted(expected)
    for src, values in expected.items():
        data = got["sources"][src]["data"]
        # Protocol 1.0 carries the metadata in the data too, as karabo_bridge's serializer does.
        assert sorted(set(data) - {"metadata"}) == sorted(values), src
        for key, v in values.items():
            if isinstance(v, np.ndarray):
                assert data[key]["dtype"] == str(v.dtype), key
                assert data[key]["shape"] == list(v.shape), key
                assert data[key]["head"] == v.ravel()[:8].tolist(), key
        assert got["sources"][src]["metadata"]["timestamp.tid"] >= 10000000000


@pytest.mark.parametrize("server", ["xfel-serve", "karabo-bridge-serve-files"])
def test_glimpse_values_equal_what_client_receives(lpd_run, server):
    """The same first train through our receiver and through karabo_bridge.Client."""
    start = (lambda: ours("files", lpd_run, "0")) if server == "xfel-serve" else (
        lambda: theirs(lpd_run))
    o1, o2 = start(), start()
    try:
        code, out, err = bridge("glimpse", o1.endpoint, "--json", "-v", "--timeout", LIMIT)
        data, meta = receive(o2, 1)[0]
    finally:
        o1.stop()
        o2.stop()
    assert code == 0, err
    got = json.loads(out)
    for src, values in data.items():
        assert got["sources"][src]["metadata"] == meta[src]
        for key, v in values.items():
            g = got["sources"][src]["data"][key]
            if isinstance(v, np.ndarray):
                assert (g["dtype"], g["shape"]) == (str(v.dtype), list(v.shape)), key
                assert g["head"] == v.ravel()[:32].tolist(), key
            elif isinstance(v, bytes):
                assert g["value"] == v.decode(), key
            elif key != "metadata":
                assert g["value"] == v, key


def test_monitor_counts_trains_and_missing_ids():
    ep = f"tcp://127.0.0.1:{free_port()}"
    with ServerInThread(ep, sock="PUSH") as server:
        mon = subprocess.Popen([rust_bin("xfel-bridge"), "monitor", ep, "-z", "PUSH",
                                "--ntrains", "4", "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for tid in (5, 6, 9, 10):
            server.feed({"SRC": {"x": np.arange(3, dtype="u2"), "n": tid}},
                        {"SRC": {"source": "SRC", "timestamp.tid": tid}})
        out, err = mon.communicate(timeout=LIMIT)
    assert mon.returncode == 0, err
    s = json.loads(out)
    assert (s["trains"], s["first_train"], s["last_train"]) == (4, 5, 10)
    assert s["missing_trains"] == 2 and s["malformed"] == 0


def test_monitor_subscribes_to_a_pub_server(lpd_run):
    o = ours("files", lpd_run, "0", "-z", "PUB", "--loop", "--rate", "100", "--source", "SA1*")
    try:
        code, out, err = bridge("monitor", o.endpoint, "-z", "PUB", "--ntrains", "5", "--json",
                                "--timeout", LIMIT)
    finally:
        o.stop()
    assert code == 0, err
    s = json.loads(out)
    assert s["trains"] == 5 and s["malformed"] == 0
    assert 10000 <= s["first_train"] <= 10015


def malformed_messages():
    """Messages a broken or hostile peer might send, each with what is wrong with it."""
    pack = msgpack.packb
    good_header = pack({"source": "S", "content": "msgpack", "metadata": {"timestamp.tid": 1}})
    array_header = {"source": "S", "content": "array", "path": "a", "dtype": "uint16",
                    "shape": [2, 3]}
    return [
        [good_header],  # one part that is not a 1.0 map of sources
        [good_header, pack({}), pack(array_header)],  # odd part count
        [pack({"source": "S", "content": "pickle"}), b"x"],  # unknown content
        [good_header, pack({"a": [1, 2, 3]})[:-2]],  # truncated msgpack
        [good_header, pack({}), pack(array_header), b"\0" * 11],  # shape vs payload
        [good_header, pack({}), pack({**array_header, "shape": [2**62, 2**62]}), b""],
        [good_header, pack({}), pack({**array_header, "dtype": "object"}), b"\0" * 12],
        [pack(array_header), b"\0" * 12],  # array before its source
        [b"\xc1"],  # reserved msgpack byte
        [pack({"S": {"a": {b"nd": True, b"type": "<u2", b"kind": b"", b"shape": [10**12],
                           b"data": b"\0\0"}}})],  # 1.0 array of a huge declared shape
        [b""],
    ]


def test_receiver_counts_malformed_messages_and_survives():
    ep = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 2000)
    push.bind(ep)
    mon = subprocess.Popen([rust_bin("xfel-bridge"), "monitor", ep, "-z", "PUSH", "--timeout",
                            "3", "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    bad = malformed_messages()
    rng = np.random.default_rng(7)
    fuzz = []
    # Valid messages with random bytes changed, cut short, or parts dropped.
    good = [msgpack.packb({"source": "S", "content": "msgpack",
                           "metadata": {"timestamp.tid": 3}}),
            msgpack.packb({"n": 1}),
            msgpack.packb({"source": "S", "content": "array", "path": "a",
                           "dtype": "float32", "shape": [4]}),
            np.arange(4, dtype="f4").tobytes()]
    for _ in range(300):
        parts = [bytearray(p) for p in good]
        i = rng.integers(len(parts))
        if len(parts[i]):
            parts[i][rng.integers(len(parts[i]))] = rng.integers(256)
        if rng.random() < 0.3:
            parts[i] = parts[i][: rng.integers(len(parts[i]) + 1)]
        if rng.random() < 0.2:
            del parts[rng.integers(len(parts))]
        fuzz.append([bytes(p) for p in parts])
    valid = [msgpack.packb({"source": "S", "content": "msgpack",
                            "metadata": {"source": "S", "timestamp.tid": 42}}),
             msgpack.packb({"n": 1})]
    sent = bad + fuzz + [valid]
    try:
        for msg in sent:
            push.send_multipart(msg)
        # The monitor ends 3 s after the last message.
        out, err = mon.communicate(timeout=LIMIT)
    finally:
        push.close()
        ctx.term()
    s = json.loads(out)
    assert mon.returncode == 1, "malformed messages make the exit status 1"
    assert s["last_train"] == 42, s
    # Every message is accounted for: a train or a malformed message (a fuzzed one may still
    # be valid); every crafted one is refused.
    assert s["malformed"] + s["trains"] == len(sent), s
    assert s["malformed"] >= len(bad), s


@pytest.mark.parametrize("protocol", ["2.2", "1.0"])
def test_glimpse_decodes_what_server_in_thread_sends(protocol):
    """Types a Python server may send besides file data: big-endian and unicode arrays, numpy
    and Python scalars, nested values."""
    data = {"SRC/A": {
        "be": (np.arange(5) * 300).astype(">u2"),
        "f16": np.array([1.5, -2.0], dtype="f2"),
        "uni": np.array(["ab", "c"]),
        "c64": np.array([1 + 2j], dtype="c8"),
        "n": 7, "x": 2.5, "name": "det", "raw": b"\x00\x01", "flags": [True, False],
        "nested": {"a": 1},
        "f32": np.float32(0.25),
    }}
    meta = {"SRC/A": {"source": "SRC/A", "timestamp.tid": 99}}
    ep = f"tcp://127.0.0.1:{free_port()}"
    with ServerInThread(ep, protocol_version=protocol) as server:
        server.feed(data, meta)
        code, out, err = bridge("glimpse", ep, "--json", "--timeout", LIMIT)
    assert code == 0, err
    got = json.loads(out)["sources"]["SRC/A"]["data"]
    assert got["be"]["dtype"] == ">u2" and got["be"]["head"] == [0, 300, 600, 900, 1200]
    assert got["f16"]["head"] == [1.5, -2.0]
    assert got["uni"]["dtype"] == "<U2" and got["uni"]["head"] == ["ab", "c"]
    assert got["c64"]["dtype"] == "complex64"
    assert got["n"]["value"] == 7 and got["x"]["value"] == 2.5
    assert got["name"]["value"] == "det" and got["flags"]["value"] == [True, False]
    assert got["nested"]["value"] == {"a": 1}
    assert got["f32"]["value"] == 0.25


# xfel-bridge record: received trains as a EuXFEL run that EXtra-data validates and reads.

@pytest.fixture(scope="module")
def lpd_one(tmp_path_factory):
    """An LPD run in one sequence file (the generator's CONTROL timestamps start over in each
    sequence file, which one recorded file would show as decreasing)."""
    return make_rust_fixture(
        tmp_path_factory.mktemp("kb") / "lpd1", "--trains", "6", "--sequences", "1",
        "--modules", "2", "--frames", "3", "--frame-height", "16", "--frame-width", "16",
    )


@pytest.fixture(scope="module")
def lpd_one_reference(lpd_one):
    s = theirs(lpd_one)
    try:
        return {train_id(t): t for t in receive(s, n_trains(lpd_one))}
    finally:
        s.stop()


def record(ep, out, *args):
    """Starts `xfel-bridge record` (JSON summary) into `out`."""
    return subprocess.Popen(
        [rust_bin("xfel-bridge"), "record", ep, "-o", str(out), "--json", "--timeout",
         str(LIMIT), *[str(a) for a in args]],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish_record(proc):
    out, err = proc.communicate(timeout=LIMIT)
    return proc.returncode, json.loads(out), err


def validate(run_dir):
    r = subprocess.run([py_tool("extra-data-validate"), str(run_dir)], capture_output=True,
                       text=True, timeout=LIMIT)
    assert r.returncode == 0, r.stdout + r.stderr


def assert_recorded(run_dir, sent, skip_keys=(), renamed={}):
    """EXtra-data reads, for every train sent (tid -> bridge data dict), the values sent."""
    from extra_data import RunDirectory

    run = RunDirectory(str(run_dir))
    assert list(run.train_ids) == sorted(sent)
    for tid, data in sent.items():
        _, got = run.train_from_id(tid)
        got = {renamed.get(s, s): v for s, v in got.items()}
        assert sorted(got) == sorted(data), tid
        for src, values in data.items():
            for key, v in values.items():
                if key == "metadata" or key in skip_keys:
                    continue
                g = got[src][key]
                where = f"train {tid} {src} {key}"
                if isinstance(v, np.ndarray):
                    assert isinstance(g, np.ndarray), where
                    assert g.shape == v.shape, where
                    if v.dtype.byteorder == ">":
                        v = v.astype(v.dtype.newbyteorder("<"))
                    assert g.dtype == v.dtype, (where, g.dtype, v.dtype)
                    assert g.tobytes() == v.tobytes(), where
                elif isinstance(v, (bytes, str)):
                    as_bytes = v.encode() if isinstance(v, str) else v
                    assert (g.encode() if isinstance(g, str) else g) == as_bytes, where
                else:
                    assert g == v, (where, g, v)


@pytest.mark.parametrize("server_sock", ["REP", "PUSH"])
def test_record_serve_files_validates_and_reads_back(tmp_path, lpd_one, lpd_one_reference,
                                                     server_sock):
    lpd_reference = lpd_one_reference
    t = theirs(lpd_one, "-z", server_sock)
    try:
        proc = record(t.endpoint, tmp_path / "r", "-z", server_sock, "--trains",
                      len(lpd_reference))
        code, summary, err = finish_record(proc)
    finally:
        t.stop()
    assert code == 0, (summary, err)
    assert summary["trains"] == len(lpd_reference)
    assert summary["dropped_keys"] == [] and summary["refused"] == 0
    validate(tmp_path / "r")
    assert_recorded(tmp_path / "r", {tid: t[0] for tid, t in lpd_reference.items()})


def test_record_pub_and_protocol_1_0(tmp_path, lpd_one, lpd_one_reference):
    # PUB: the recorder gets the trains that reach it; a looping server starts over, which
    # the recorder counts and leaves out.
    s = ours("files", lpd_one, "0", "-z", "PUB", "--protocol", "1.0", "--loop", "--rate", "50")
    try:
        code, summary, err = finish_record(record(s.endpoint, tmp_path / "r", "-z", "PUB",
                                                  "--trains", 5))
    finally:
        s.stop()
    assert summary["trains"] == 5 and summary["malformed"] == 0, (summary, err)
    assert code == (0 if summary["out_of_order"] == 0 else 1)
    validate(tmp_path / "r")
    from extra_data import RunDirectory

    tids = RunDirectory(str(tmp_path / "r")).train_ids
    assert_recorded(tmp_path / "r", {tid: lpd_one_reference[tid][0] for tid in tids})


@pytest.mark.parametrize("detector,raw,protocol,n", [
    ("AGIPDModule", True, "2.2", 3),
    ("AGIPDModule", True, "1.0", 3),
    # Corrected data exists for the whole detector only: 268 MB a train.
    ("AGIPD", False, "2.2", 1),
])
def test_record_the_simulator(tmp_path, detector, raw, protocol, n):
    from karabo_bridge.simulation import data_generator

    ep = f"tcp://127.0.0.1:{free_port()}"
    sim = SimServerInThread(ep, sock="REP", protocol_version=protocol, detector=detector,
                            raw=raw, datagen="zeros", debug=False)
    sim.start()
    try:
        code, summary, err = finish_record(record(ep, tmp_path / "r", "--trains", n))
    finally:
        sim.stop()
    assert code == 0, (summary, err)
    validate(tmp_path / "r")
    # The simulator's trains, regenerated (zeros; IDs count up from its first).
    first = summary["first_train"]
    sent = {}
    for data, meta in data_generator(detector=detector, raw=raw, datagen="zeros",
                                     debug=False):
        tid = next(iter(meta.values()))["timestamp.tid"]
        if tid >= first + n:
            break
        if tid >= first:
            sent[tid] = data
    # Lists (the module sources, modulesPresent) have no EuXFEL type.
    lists = {k for d in sent.values() for v in d.values() for k, x in v.items()
             if isinstance(x, list)}
    assert sorted(summary["dropped_keys"]) == sorted(f"{s} {k}" for s in sent[first]
                                                     for k in lists)
    renamed = {b: a for a, b in summary["renamed"]}
    assert all(":" not in s for s in renamed.values())
    assert_recorded(tmp_path / "r", sent, skip_keys=lists, renamed=renamed)


@pytest.mark.parametrize("protocol", ["2.2", "1.0"])
def test_record_types_a_python_server_sends(tmp_path, protocol):
    rng = np.random.default_rng(16)
    sent = {}
    for tid in (50, 51, 55):
        sent[tid] = {
            "SRC/CTRL": {"gain.value": int(rng.integers(-9, 9)), "gain.timestamp": tid * 7,
                         "name.value": f"det {tid}", "temp.value": float(rng.random())},
            "SRC/OUT:output": {
                "data.be": rng.integers(0, 60000, 6).astype(">u2"),
                "data.img": rng.random((3, 4), dtype=np.float32),
                "data.mask": rng.random(5) > 0.5,
                "data.small": rng.integers(-100, 100, (2, 2)).astype("i1"),
                "data.label": np.array([b"ab", b"cde"]),
                "data.f32": np.float32(rng.random()),
                "data.u64": np.uint64(2**63 + tid),
            },
        }
    ep = f"tcp://127.0.0.1:{free_port()}"
    with ServerInThread(ep, protocol_version=protocol) as server:
        proc = record(ep, tmp_path / "r", "--trains", len(sent))
        for tid, data in sent.items():
            meta = {s: {"source": s, "timestamp.tid": tid} for s in data}
            server.feed(data, meta)
        code, summary, err = finish_record(proc)
    assert code == 0, (summary, err)
    validate(tmp_path / "r")
    # Python scalars: msgpack ints are stored as int64, floats as float64.
    assert_recorded(tmp_path / "r", sent)
    from extra_data import RunDirectory

    run = RunDirectory(str(tmp_path / "r"))
    assert run.control_sources == {"SRC/CTRL"} and run.instrument_sources == {"SRC/OUT:output"}
    # 2.2 sends a numpy scalar as its Python value, 1.0 with its type.
    f32 = np.float32 if protocol == "1.0" else np.float64
    assert run["SRC/OUT:output", "data.f32"].dtype == f32
    assert run["SRC/CTRL", "gain.value"].dtype == np.int64


def rep_server(n, protocol="2.2"):
    """A REP socket of this process that answers `next` with trains 1..n; yields after each
    request so that the test knows how far the client is."""
    from karabo_bridge.serializer import serialize

    ctx = zmq.Context()
    sock = ctx.socket(zmq.REP)
    sock.setsockopt(zmq.RCVTIMEO, LIMIT * 1000)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    return ctx, sock, f"tcp://127.0.0.1:{port}", serialize


@pytest.mark.parametrize("sig", ["SIGINT", "SIGKILL"])
def test_record_interrupted(tmp_path, sig):
    """SIGINT while waiting for train 4: a valid run of trains 1-3. SIGKILL: no run file."""
    import signal

    ctx, sock, ep, serialize = rep_server(3)
    sent = {}
    try:
        proc = record(ep, tmp_path / "r")
        for tid in (1, 2, 3):
            assert sock.recv() == b"next"
            data = {"SRC/X:out": {"data.v": np.full(4, tid, dtype=np.uint32)}}
            sent[tid] = data
            sock.send_multipart(serialize(data, {"SRC/X:out": {"source": "SRC/X:out",
                                                               "timestamp.tid": tid}}))
        # The request for train 4 comes after train 3 was written.
        assert sock.recv() == b"next"
        proc.send_signal(getattr(signal, sig))
        out, err = proc.communicate(timeout=LIMIT)
    finally:
        sock.close()
        ctx.term()
    files = sorted(p.name for p in (tmp_path / "r").iterdir() if p.suffix == ".h5")
    if sig == "SIGKILL":
        assert files == []
        return
    # Stopped by a signal, its trains written: 128 + SIGINT.
    assert proc.returncode == 130, err
    assert json.loads(out)["trains"] == 3
    assert files == ["RAW-R0001-DA01-S00000.h5"]
    validate(tmp_path / "r")
    assert_recorded(tmp_path / "r", sent)


# xsp3-acquire --stream-format karabo: Xspress3 frames as Karabo Bridge trains.

@pytest.mark.parametrize("frames,per_train", [(24, 1), (10, 3)])
def test_xspress3_trains_equal_the_file(tmp_path, frames, per_train):
    import h5py

    ep = f"tcp://127.0.0.1:{free_port()}"
    src = "MID_EXP_XSP3/DET/XSP3:daqOutput"
    proc = subprocess.Popen(
        [rust_bin("xsp3-acquire"), "run", "-q", "--frames", str(frames), "--exposure", "1ms",
         "--out", str(tmp_path), "--file", "acq", "--roi", "Fe:100:199", "--roi", "Cu:1:50:80",
         "--stream", ep, "--stream-format", "karabo", "--karabo-source", src,
         "--frames-per-train", str(per_train), "--first-train", "1000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    n_trains = -(-frames // per_train)
    try:
        with Client(ep, sock="PULL", timeout=LIMIT) as c:
            got = [c.next() for _ in range(n_trains)]
    finally:
        out, err = proc.communicate(timeout=LIMIT)
    assert proc.returncode == 0, err
    with h5py.File(tmp_path / "acq.h5", "r") as f:
        det = f["entry/instrument/xspress3"]
        names = ["spectra" if k == "data" else k for k in det]
        file = {("spectra" if k == "data" else k): det[k][()] for k in det
                if det[k].shape[:1] == (frames,)}
    assert set(file) >= {"spectra", "roi_Fe", "roi_Cu_dtc", "dead_time_correction"}, names
    for t, (data, meta) in enumerate(got):
        assert list(data) == [src]
        assert meta[src]["timestamp.tid"] == 1000 + t
        lo, hi = t * per_train, min((t + 1) * per_train, frames)
        values = data[src]
        assert sorted(values) == sorted(f"data.{k}" for k in file
                                        if k != "output_count_rate"), sorted(values)
        for key, column in file.items():
            if key == "output_count_rate":
                continue
            v = values[f"data.{key}"]
            # One frame in a train: its values without the frame axis (as EXtra-data).
            expected = column[lo] if hi - lo == 1 else column[lo:hi]
            assert v.dtype == expected.dtype and v.shape == expected.shape, (key, v.shape)
            assert v.tobytes() == expected.tobytes(), (t, key)
        first_ns = int(file["timestamp"][lo])
        assert meta[src]["timestamp"] == pytest.approx(first_ns / 1e9)
        assert meta[src]["timestamp.sec"] == str(first_ns // 10**9)
