"""Faults of the Karabo Bridge tools, with the real binaries and EXtra-data: odd keys in the
files served, messages a misbehaving sender makes for `xfel-bridge record` and `glimpse`, and
what extra-data-validate says about the runs recorded from them."""
import json
import os
import shutil
import subprocess
import sys

import h5py
import msgpack
import numpy as np
import pytest
import zmq
from extra_data import by_id
from extra_data.tests import make_examples as me

from euxfel_helpers import make_rust_fixture, rust_bin

LIMIT = 120  # seconds any one process or wait may take


def header(source, tid):
    meta = {"source": source, "timestamp.tid": tid}
    return msgpack.packb({"source": source, "content": "msgpack", "metadata": meta})


def source_parts(source, tid, values, arrays=()):
    """Protocol 2.2 parts of one source: its values, then (path, dtype, shape, bytes) arrays."""
    parts = [header(source, tid), msgpack.packb(values, use_bin_type=True)]
    for path, dtype, shape, data in arrays:
        parts.append(msgpack.packb({"source": source, "content": "array", "path": path,
                                    "dtype": dtype, "shape": shape}))
        parts.append(data)
    return parts


def good(tid):
    data = (np.arange(6, dtype="u2") + tid).tobytes()
    return source_parts("GOOD/DEV/X:out", tid, {"n": tid}, [("data.x", "uint16", [2, 3], data)])


def send_to(args, messages):
    """Runs `xfel-bridge ARGS` against a PUSH socket that sends `messages`."""
    with zmq.Context() as ctx:
        sender = ctx.socket(zmq.PUSH)
        sender.linger = 0
        port = sender.bind_to_random_port("tcp://127.0.0.1")
        proc = subprocess.Popen(
            [rust_bin("xfel-bridge"), args[0], f"tcp://127.0.0.1:{port}", "-z", "PUSH",
             *[str(a) for a in args[1:]]],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
        )
        for parts in messages:
            sender.send_multipart(parts)
        out, err = proc.communicate(timeout=LIMIT)
        sender.close()
    return proc.returncode, out, err


def test_record_refuses_what_the_file_cannot_hold_and_the_run_validates(tmp_path):
    bad = (
        source_parts("S/D/X:out", 2, {"a": 1, "a.b": 2})
        + source_parts("N/D/X:out", 2, {"a\0b": 1})
        + source_parts("R/D/X:out", 2, {}, [("d", "uint8", [1] * 40, b"\1")])
        + source_parts("P/Q:out/R", 2, {"b": 1})
        + source_parts("C/D", 2, {"v.value": 1.5})
        + source_parts("C/D/E", 2, {"w.value": 2.5})
        + source_parts("T/D/X:out", 2, {"s": "a\0b", "ok": 1})
    )
    run = tmp_path / "run"
    code, out, err = send_to(["record", "-o", run, "--trains", 3, "--json"],
                             [good(1), good(2) + bad, good(3)])
    s = json.loads(out)
    assert code == 1, (out, err)
    assert (s["trains"], s["refused"]) == (3, 5), out
    assert s["dropped_keys"] == ["T/D/X:out s"], out
    # extra-data-validate, from the interpreter running the tests.
    validate = "import sys; from extra_data.validation import main; sys.exit(main())"
    v = subprocess.run([sys.executable, "-c", validate, str(run)], capture_output=True,
                       text=True, timeout=LIMIT)
    assert v.returncode == 0, v.stdout + v.stderr
    from extra_data import RunDirectory
    r = RunDirectory(run)
    assert sorted(r.all_sources) == ["C/D", "GOOD/DEV/X:out", "T/D/X:out"]
    # C/D/E would have been read back as a key of C/D.
    assert r.keys_for_source("C/D") == {"v.value"}
    np.testing.assert_array_equal(r["GOOD/DEV/X:out", "n"].ndarray(), [1, 2, 3])


def test_glimpse_shows_nan_and_escapes_control_characters():
    parts = source_parts(
        "CC/X:out\x1b[31m", 1, {"a\x1b[2J": "\x1b]0;title\x07", "f": float("nan")},
        [("x", "float32", [3], np.array([np.nan, np.inf, 1.5], dtype="f4").tobytes())],
    )
    code, out, err = send_to(["glimpse", "--timeout", 30], [parts])
    assert code == 0, err
    assert "\x1b" not in out and "\x07" not in out, repr(out)
    assert " - [ndarray] x, float32, (3,), [nan, inf, 1.5]" in out, out
    assert " - [float] f, nan" in out, out
    assert r" - [str] a\u{1b}[2J, \u{1b}]0;title\u{7}" in out, out


def test_serve_drops_keys_of_types_without_a_fixed_size(tmp_path):
    path = tmp_path / "da.h5"
    me.make_fxe_da_file(str(path))
    with h5py.File(path, "r+") as f:
        g = f["CONTROL/SA1_XTD2_XGM/DOOCS/MAIN"]
        n = g["pulseEnergy/photonFlux/value"].shape[0]
        g.create_dataset("ragged/value", shape=(n,), dtype=h5py.vlen_dtype(np.int32))
        g.create_dataset("ragged/timestamp", data=np.zeros(n, dtype="u8"))
    proc = subprocess.Popen(
        [rust_bin("xfel-serve"), "files", str(path), "0", "--json",
         "--source", "SA1_XTD2_XGM/DOOCS/MAIN"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    endpoint = proc.stdout.readline().split(": ", 1)[1].strip()
    from karabo_bridge import Client
    with Client(endpoint, timeout=LIMIT) as c:
        for _ in range(n):
            data, _ = c.next()
    out, err = proc.communicate(timeout=LIMIT)
    s = json.loads(out)
    # Every train (EXtra-data's vlen arrays are numpy objects); before, every train was skipped.
    assert proc.returncode == 0, err
    assert (s["trains_sent"], s["trains_skipped"]) == (n, 0), out
    keys = data["SA1_XTD2_XGM/DOOCS/MAIN"]
    assert "pulseEnergy.photonFlux.value" in keys
    assert not any(k.startswith("ragged.") for k in keys), sorted(keys)


@pytest.fixture
def full_disk(tmp_path):
    """A 2 MB tmpfs (needs root to mount)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "full"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2M", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_record_on_a_full_disk_finishes_the_file_with_the_trains_it_holds(full_disk):
    """One sequence file, trains of 512 KiB into 2 MB: the recording stops while the file can
    still be finished (before, the disk filled and every train was lost)."""
    big = np.zeros(1 << 18, dtype="u2").tobytes()
    messages = [source_parts("BIG/DET/X:out", tid, {}, [("data.x", "uint16", [1 << 18], big)])
                for tid in range(1, 11)]
    run = full_disk / "run"
    code, out, err = send_to(["record", "-o", run, "--trains", 10, "--json"], messages)
    s = json.loads(out)
    assert code == 1, (out, err)
    assert [os.path.basename(f) for f in s["files"]] == ["RAW-R0001-DA01-S00000.h5"], out
    n = s["trains"]
    assert n >= 1 and s["recorded_train_ranges"] == [[1, n]], out
    # The train that did not fit is named lost.
    assert s["lost_train_ranges"] == [[n + 1, n + 1]] and s["lost_trains"] == 1, out
    assert "recording ended" in s["errors"][-1] and "bytes free" in s["errors"][-1], out
    # No temporary file left behind to fill the disk.
    assert sorted(os.listdir(run)) == ["RAW-R0001-DA01-S00000.h5"]
    validate_run(run)
    with h5py.File(run / "RAW-R0001-DA01-S00000.h5", "r") as f:
        assert list(f["INDEX/trainId"][()]) == list(range(1, n + 1))
        assert f["INSTRUMENT/BIG/DET/X:out/data/x"].shape == (n, 1 << 18)


def validate_run(run):
    validate = "import sys; from extra_data.validation import main; sys.exit(main())"
    v = subprocess.run([sys.executable, "-c", validate, str(run)], capture_output=True,
                       text=True, timeout=LIMIT)
    assert v.returncode == 0, v.stdout + v.stderr


def serve_files(path, *args):
    proc = subprocess.Popen(
        [rust_bin("xfel-serve"), "files", str(path), "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    return proc, proc.stdout.readline().split(": ", 1)[1].strip()


def assert_recorded_equal_to_source(run, source_file, tids):
    """The recorded run holds exactly `tids`, with the source file's values for them."""
    from extra_data import H5File, RunDirectory
    rec = RunDirectory(str(run))
    assert list(rec.train_ids) == list(tids)
    src = H5File(str(source_file)).select_trains(by_id[list(tids)])
    for source, key in [("SA1_XTD2_XGM/DOOCS/MAIN", "pulseEnergy.photonFlux.value"),
                        ("SA1_XTD2_XGM/DOOCS/MAIN:output", "data.intensityTD")]:
        np.testing.assert_array_equal(rec[source, key].ndarray(), src[source, key].ndarray())


def recorded_ids(ranges):
    return [t for a, b in ranges for t in range(a, b + 1)]


def test_record_on_a_full_disk_keeps_its_complete_sequence_files(tmp_path, full_disk):
    """xfel-serve feeding `record` into a 2 MB file system: the sequence files completed before
    the disk filled stay, valid and equal to the source; the summary gives the train IDs
    recorded and lost, and the exit status is 1 (before, everything was lost)."""
    path = tmp_path / "da.h5"
    me.make_fxe_da_file(str(path))
    server, endpoint = serve_files(path, "--source", "SA1_XTD2_XGM/DOOCS/MAIN*")
    run = full_disk / "run"
    try:
        r = subprocess.run([rust_bin("xfel-bridge"), "record", endpoint, "-o", str(run),
                            "--trains-per-file", "20", "--timeout", "30", "--json"],
                           capture_output=True, text=True, timeout=LIMIT)
    finally:
        server.terminate()
        server.communicate(timeout=LIMIT)
    s = json.loads(r.stdout)
    assert r.returncode == 1, r
    # The disk filled before the 400 trains: the files then written are all kept, and only the
    # train that did not fit is lost.
    assert 20 <= s["trains"] < 400 and len(s["files"]) >= 1, r.stdout
    assert sorted(os.listdir(run)) == sorted(os.path.basename(f) for f in s["files"])
    recorded = recorded_ids(s["recorded_train_ranges"])
    assert recorded == list(range(10000, 10000 + s["trains"]))
    assert s["lost_train_ranges"] == [[recorded[-1] + 1, recorded[-1] + 1]], r.stdout
    assert "recording ended" in r.stderr and "bytes free" in s["errors"][-1], r.stderr
    validate_run(run)
    # Compared on a copy: EXtra-data keeps files open, which would keep the tmpfs busy.
    shutil.copytree(run, tmp_path / "copy")
    assert_recorded_equal_to_source(tmp_path / "copy", path, recorded)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_record_stopped_by_a_signal_finishes_its_files_and_exits_128_plus_n(tmp_path, sig):
    import signal
    import time
    path = tmp_path / "da.h5"
    me.make_fxe_da_file(str(path))
    server, endpoint = serve_files(path, "--source", "SA1_XTD2_XGM/DOOCS/MAIN*",
                                   "--rate", "200")
    run = tmp_path / "run"
    try:
        rec = subprocess.Popen([rust_bin("xfel-bridge"), "record", endpoint, "-o", str(run),
                                "--trains-per-file", "8", "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Mid-recording: once two sequence files are complete.
        deadline = time.monotonic() + LIMIT
        while not (run / "RAW-R0001-DA01-S00001.h5").exists():
            assert rec.poll() is None and time.monotonic() < deadline, rec.communicate()
            time.sleep(0.02)
        rec.send_signal(getattr(signal, sig))
        out, err = rec.communicate(timeout=LIMIT)
    finally:
        server.terminate()
        server.communicate(timeout=LIMIT)
    assert rec.returncode == 128 + getattr(signal, sig), (out, err)
    s = json.loads(out)
    assert s["lost_trains"] == 0 and s["errors"] == [], out
    assert len(s["files"]) >= 2 and sorted(os.listdir(run)) == \
        sorted(os.path.basename(f) for f in s["files"])
    recorded = recorded_ids(s["recorded_train_ranges"])
    assert len(recorded) == s["trains"] >= 16
    validate_run(run)
    assert_recorded_equal_to_source(run, path, recorded)


def test_serve_start_error_names_the_file_and_not_an_option_not_given(tmp_path):
    path = tmp_path / "da.h5"
    me.make_fxe_da_file(str(path))
    with h5py.File(path, "r+") as f:
        # A key group without its INDEX group.
        f["INSTRUMENT/SA1_XTD2_XGM/DOOCS/MAIN:output"].create_dataset("extra/x", data=np.zeros(4))
    r = subprocess.run([rust_bin("xfel-serve"), "files", str(path), "0", "--json"],
                       capture_output=True, text=True, timeout=LIMIT)
    assert r.returncode == 3, r
    assert "--append-detector-modules" not in r.stderr, r.stderr
    error = json.loads(r.stdout)["error"]
    assert str(path) in error and "INDEX/SA1_XTD2_XGM/DOOCS/MAIN:output/extra" in error, error


def corrupt_row(f, path, row):
    """Rewrites dataset `path` gzip-compressed, one row a chunk; returns the file offset of the
    middle of row `row`'s chunk, for the caller to overwrite once the file is closed."""
    data = f[path][()]
    del f[path]
    ds = f.create_dataset(path, data=data, chunks=(1,) + data.shape[1:], compression="gzip")
    info = ds.id.get_chunk_info_by_coord((row,) + (0,) * (data.ndim - 1))
    return info.byte_offset + info.size // 2


def test_serve_sends_each_train_without_only_the_keys_that_cannot_be_read(tmp_path):
    """A control key shorter than its index, an instrument key cut short and a corrupt chunk:
    every train is still served with everything else, the keys left out are named with their
    train IDs in the summary, and the exit status is 1 (EXtra-data's server crashes there;
    before, every train with any unreadable key was skipped whole)."""
    path = tmp_path / "da.h5"
    me.make_fxe_da_file(str(path))
    src = "SA1_XTD2_XGM/DOOCS/MAIN"
    with h5py.File(path, "r+") as f:
        ctrl = f"CONTROL/{src}/pulseEnergy/photonFlux/value"
        short = f[ctrl][:100]
        del f[ctrl]
        f[ctrl] = short
        inst = f"INSTRUMENT/{src}:output/data/xTD"
        short = f[inst][:300]
        del f[inst]
        f[inst] = short
        flip_at = corrupt_row(f, f"INSTRUMENT/{src}:output/data/intensityTD", 5)
        expected_td = f[f"INSTRUMENT/{src}:output/data/intensityTD"][()]
        tids = f["INDEX/trainId"][()]
    with open(path, "r+b") as raw:
        raw.seek(flip_at)
        raw.write(b"\xff" * 8)
    proc = subprocess.Popen(
        [rust_bin("xfel-serve"), "files", str(path), "0", "--json", "--source", f"{src}*"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    endpoint = proc.stdout.readline().split(": ", 1)[1].strip()
    from karabo_bridge import Client
    received = {}
    with Client(endpoint, timeout=LIMIT) as c:
        for _ in range(len(tids)):
            data, meta = c.next()
            received[meta[src]["timestamp.tid"]] = data
    out, err = proc.communicate(timeout=LIMIT)
    s = json.loads(out)
    assert proc.returncode == 1, (out, err)
    assert sorted(received) == list(tids)
    first = int(tids[0])
    for i, tid in enumerate(tids):
        ctrl, inst = received[tid][src], received[tid][f"{src}:output"]
        assert ("pulseEnergy.photonFlux.value" in ctrl) == (i < 100), tid
        assert "pulseEnergy.photonFlux.timestamp" in ctrl
        assert ("data.xTD" in inst) == (i < 300), tid
        assert ("data.intensityTD" in inst) == (i != 5), tid
        assert "data.yTD" in inst and "beamPosition.ixPos.value" in ctrl
        if i != 5:
            np.testing.assert_array_equal(inst["data.intensityTD"], expected_td[i])
    assert (s["trains_sent"], s["trains_skipped"], s["trains_incomplete"]) == (400, 0, 301), out
    omitted = {(k["source"], k["key"]): k for k in s["keys_omitted"]}
    assert omitted[(src, "pulseEnergy.photonFlux.value")]["train_ranges"] == \
        [[first + 100, first + 399]]
    assert omitted[(f"{src}:output", "data.xTD")]["train_ranges"] == [[first + 300, first + 399]]
    corrupt = omitted[(f"{src}:output", "data.intensityTD")]
    assert corrupt["train_ranges"] == [[first + 5, first + 5]]
    assert str(path) in corrupt["first_error"], corrupt
    # Every key names its file, whether its error does or not.
    assert all(k["file"] == str(path) for k in s["keys_omitted"]), out
    assert len(omitted) == 3, out
    # One line per key on stderr, not one per train.
    assert err.count("sent without") == 3, err


def test_record_over_req_goes_on_when_the_server_is_killed_and_restarted(tmp_path):
    """A REP server killed (SIGKILL) under `record` and started again on the same port: the
    recorder asks again on the new connection and records its trains (REQ used to wait for the
    dead server's reply for ever, as karabo_bridge.Client does)."""
    import signal
    import socket
    import time
    path = tmp_path / "da.h5"
    me.make_fxe_da_file(str(path))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = "SA1_XTD2_XGM/DOOCS/MAIN"

    def server(train_range):
        return subprocess.Popen(
            [rust_bin("xfel-serve"), "files", str(path), str(port), "--source", src,
             "--rate", "100", "--train-range", train_range],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    run = tmp_path / "run"
    first = server("10000:10100")
    assert first.stdout.readline().startswith("Streamer started on")
    rec = subprocess.Popen([rust_bin("xfel-bridge"), "record", f"tcp://127.0.0.1:{port}",
                            "-o", str(run), "--trains", "80", "--timeout", "60", "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = None
    try:
        # Some trains in (100 a second), a request pending.
        time.sleep(0.5)
        first.kill()
        first.communicate(timeout=LIMIT)
        second = server("10200:")
        assert second.stdout.readline().startswith("Streamer started on")
        out, err = rec.communicate(timeout=LIMIT)
    finally:
        rec.kill()
        if second is not None:
            second.send_signal(signal.SIGTERM)
            second.communicate(timeout=LIMIT)
    s = json.loads(out)
    assert rec.returncode == 0, (out, err)
    ranges = s["recorded_train_ranges"]
    assert s["trains"] == 80 and ranges[-1][1] >= 10200, out
    assert ranges[0][0] == 10000 and ranges[0][1] < 10100, out
    assert s["requests_resent"] == 1, out
    validate_run(run)


def test_push_counts_a_receiver_killed_mid_stream(tmp_path):
    """PUSH to a slow receiver killed with SIGKILL: the server waits for the next receiver and
    goes on (as EXtra-data's), and its summary counts the disconnection with the last train
    sent by then; the trains queued to the dead receiver (ZeroMQ and TCP buffers) were lost
    without a word before."""
    import signal
    import time
    path = tmp_path / "da.h5"
    me.make_fxe_da_file(str(path))
    src = "SA1_XTD2_XGM/DOOCS/MAIN"
    # --loop: the dead receiver's queue (1000 messages in karabo_bridge's client, and the
    # kernel's buffers) could take the whole run.
    server, endpoint = serve_files(path, "--source", src, "-z", "PUSH", "--json", "--loop")
    receiver = """
import sys, time
from karabo_bridge import Client
c = Client(sys.argv[1], sock="PULL", timeout=60)
while True:
    _, m = c.next()
    print(m[sys.argv[2]]["timestamp.tid"], flush=True)
    time.sleep(0.05)
"""
    slow = subprocess.Popen([sys.executable, "-c", receiver, endpoint, src],
                            stdout=subprocess.PIPE, text=True)
    from karabo_bridge import Client
    try:
        killed_last = int(slow.stdout.readline())
        for _ in range(3):
            killed_last = int(slow.stdout.readline())
        slow.kill()
        slow.communicate(timeout=LIMIT)
        with Client(endpoint, sock="PULL", timeout=LIMIT) as c:
            _, meta = c.next()
            next_first = meta[src]["timestamp.tid"]
            # The summary while this receiver is still connected.
            server.send_signal(signal.SIGTERM)
            out, err = server.communicate(timeout=LIMIT)
    finally:
        slow.kill()
        server.kill()
    s = json.loads(out.splitlines()[-1])
    assert s["receivers_disconnected"] == 1, out
    assert isinstance(s["disconnected_after_train"][0], int), out
    # Trains were queued to the killed receiver beyond what it took, and lost with it.
    assert next_first != killed_last + 1, (killed_last, next_first)


def test_record_past_a_file_size_limit_ends_with_a_summary(tmp_path):
    """A file-size limit (ulimit -f) crossed while recording: a write error like any other
    (exit 1, the trains lost named, no partial file left), not death by SIGXFSZ without a
    summary and with the partial file left behind."""
    import resource
    path = tmp_path / "da.h5"
    me.make_fxe_da_file(str(path))
    server, endpoint = serve_files(path, "--source", "SA1_XTD2_XGM/DOOCS/MAIN*")
    run = tmp_path / "run"

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (600_000, 600_000))

    try:
        r = subprocess.run([rust_bin("xfel-bridge"), "record", endpoint, "-o", str(run),
                            "--timeout", "30", "--json"], capture_output=True, text=True,
                           timeout=LIMIT, preexec_fn=limit_file_size)
    finally:
        server.terminate()
        server.communicate(timeout=LIMIT)
    assert r.returncode == 1, r
    s = json.loads(r.stdout)
    assert s["files"] == [] and s["lost_trains"] > 0, r.stdout
    assert s["lost_train_ranges"] == [[10000, 10000 + s["lost_trains"] - 1]], r.stdout
    assert "write error, recording ended" in s["errors"][-1], r.stdout
    assert os.listdir(run) == []


def test_append_sends_a_module_that_cannot_be_read_as_missing(tmp_path):
    """--append-detector-modules with one module's image.data cut short: the trains past its end
    carry that module as a missing one (0, as stack_detector_data fills modules without data),
    the other module's data intact, and the summary names the module's key, file and trains
    (before, each such train was skipped whole)."""
    run = make_rust_fixture(tmp_path / "run", "--trains", "10", "--sequences", "1",
                            "--modules", "2", "--frames", "2", "--frame-height", "4",
                            "--frame-width", "4")
    module1 = run / "RAW-R0450-LPD01-S00000.h5"
    with h5py.File(module1, "r+") as f:
        key = "INSTRUMENT/FXE_DET_LPD1M-1/DET/1CH0:xtdf/image/data"
        kept = f[key][:6]  # 3 trains of 2 frames
        del f[key]
        f[key] = kept
    with h5py.File(run / "RAW-R0450-LPD00-S00000.h5", "r") as f:
        module0 = f["INSTRUMENT/FXE_DET_LPD1M-1/DET/0CH0:xtdf/image/data"][()]
    server, endpoint = serve_files(run, "--json", "--append-detector-modules",
                                   "--source", "*LPD*")
    from karabo_bridge import Client
    got = {}
    with Client(endpoint, timeout=LIMIT) as c:
        for _ in range(10):
            data, meta = c.next()
            src = "FXE_DET_LPD1M-1/DET/APPEND"
            got[meta[src]["timestamp.tid"]] = data[src]["image.data"]
    out, err = server.communicate(timeout=LIMIT)
    assert server.returncode == 1, err
    assert sorted(got) == list(range(10000, 10010))
    for i, tid in enumerate(sorted(got)):
        a = got[tid]
        assert a.shape == (2, 1, 16, 4, 4), a.shape
        np.testing.assert_array_equal(a[..., 0, :, :], module0[2 * i:2 * i + 2])
        if i < 3:
            np.testing.assert_array_equal(a[..., 1, :, :], kept[2 * i:2 * i + 2])
        else:
            assert not a[..., 1, :, :].any(), tid
    s = json.loads(out.splitlines()[-1])
    assert (s["trains_sent"], s["trains_skipped"], s["trains_incomplete"]) == (10, 0, 7), out
    [k] = s["keys_omitted"]
    assert (k["source"], k["key"], k["file"]) == \
        ("FXE_DET_LPD1M-1/DET/1CH0:xtdf", "image.data", str(module1)), out
    assert k["train_ranges"] == [[10003, 10009]], out


def test_record_stopped_by_a_signal_on_a_full_disk_exits_1_naming_the_trains_lost(
        tmp_path, full_disk):
    """SIGINT when the disk has filled up under the recorder (another writer): the file being
    written cannot be finished, its trains are lost, and the exit status is 1 (the loss), not
    130, with the lost trains in the summary."""
    import signal
    import time
    path = tmp_path / "da.h5"
    me.make_fxe_da_file(str(path))
    server, endpoint = serve_files(path, "--source", "SA1_XTD2_XGM/DOOCS/MAIN", "--rate", "1")
    run = full_disk / "run"
    try:
        rec = subprocess.Popen([rust_bin("xfel-bridge"), "record", endpoint, "-o", str(run),
                                "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
        # The first train is in (buffered), the next one 1 s away: fill the disk, then stop.
        time.sleep(0.4)
        fd = os.open(full_disk / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        rec.send_signal(signal.SIGINT)
        out, err = rec.communicate(timeout=LIMIT)
    finally:
        server.terminate()
        server.communicate(timeout=LIMIT)
    s = json.loads(out)
    assert rec.returncode == 1, (out, err)
    assert s["files"] == [] and s["lost_train_ranges"] == [[10000, 10000]], out
    assert "write error" in s["errors"][-1], out
    assert os.listdir(run) == []


def test_loop_over_trains_that_are_all_skipped_ends(tmp_path):
    """--loop where no train can be sent (modules whose shapes cannot be stacked): one pass,
    each train reported once, exit 1. It started over for ever, writing GBs of stderr a
    minute, and SIGTERM did not stop it."""
    run = make_rust_fixture(tmp_path / "run", "--trains", "10", "--sequences", "1",
                            "--modules", "2", "--frames", "2", "--frame-height", "4",
                            "--frame-width", "4")
    with h5py.File(run / "RAW-R0450-LPD01-S00000.h5", "r+") as f:
        key = "INSTRUMENT/FXE_DET_LPD1M-1/DET/1CH0:xtdf/image/data"
        n = f[key].shape[0]
        del f[key]
        f[key] = np.zeros((n, 1, 4, 5), dtype="u2")
    proc = subprocess.Popen([rust_bin("xfel-serve"), "files", str(run), "0", "--json", "--loop",
                             "--append-detector-modules", "--source", "*LPD*"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Read a bounded number of lines: the old behaviour never ended.
    skipped = 0
    for line in proc.stderr:
        skipped += "skipped train" in line
        if skipped > 100:
            proc.kill()
            break
    out = proc.stdout.read()
    proc.wait(timeout=LIMIT)
    assert skipped == 10 and proc.returncode == 1, (skipped, proc.returncode)
    s = json.loads(out.splitlines()[-1])
    assert (s["trains_sent"], s["trains_skipped"]) == (0, 10), s
    assert s["skipped_train_ranges"] == [[10000, 10009]], s
