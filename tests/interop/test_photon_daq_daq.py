"""photon_daq.daq: sdaq's DAQJob/DAQDaemon arguments, errors and attributes, and the
files h5daq writes from Python getters (read back with h5py)."""

import os
import signal
import subprocess
import sys
import threading

import h5py
import numpy as np
import pytest

daq = pytest.importorskip("photon_daq.daq")


def test_job_attributes_like_sdaq():
    job = daq.DAQJob("g", ["a", "b"], lambda: None, shape=[(0,), (5, 2, 2)],
                     dtype=[float, np.float32])
    assert job.group == "g"
    assert job.label == ["time", "a", "b"]
    assert job.dtype_list == [np.float64, float, np.float32]
    assert job.shape_list == [(0,), (0,), (0, 2, 2)]


@pytest.mark.parametrize("kwargs, exc", [
    ({"getter": lambda x: None}, TypeError),
    ({"read_mode": "sometimes"}, KeyError),
    ({"dtype": np.dtype("f4")}, TypeError),
    ({"dtype": [float, float]}, ValueError),
    ({"shape": [(0,), (0,)]}, ValueError),
    ({"shape": 3}, TypeError),
    ({"chunk_length": 0}, ValueError),
    ({"initial_buffer_length": 0}, ValueError),
])
def test_job_argument_errors(kwargs, exc):
    args = dict(group="g", label="a", getter=lambda: None)
    args.update(kwargs)
    with pytest.raises(exc):
        daq.DAQJob(**args)


def read_file(files):
    assert len(files) == 1
    with h5py.File(files[0], "r") as f:
        return {g: {k: f[g][k][()] for k in f[g]} for g in f}


def test_trigger_reads_write_rows(tmp_path):
    n = iter(range(100))

    def getter():
        i = next(n)
        return [i * 1.5, np.full((2, 2), i, dtype=np.int32)]

    job = daq.DAQJob("g", ["x", "m"], getter, shape=[(0,), (0, 2, 2)],
                     dtype=[float, np.int32], read_mode="trigger", compress=False)
    d = daq.DAQDaemon([job], directory=tmp_path, write_period=3600)
    d.start()
    for _ in range(5):
        job.trigger_read()
    files = d.stop()
    data = read_file(files)["g"]
    # start() reads a trigger job once, as sdaq's does; then the five trigger_read() calls.
    assert data["x"].tolist() == [0.0, 1.5, 3.0, 4.5, 6.0, 7.5]
    assert data["m"].dtype == np.int32
    assert data["m"].shape == (6, 2, 2)
    assert (data["m"][4] == 4).all()
    assert data["time"].dtype == np.float64
    assert np.all(np.diff(data["time"]) >= 0)


def test_provide_time_and_skips(tmp_path):
    values = iter([[10.0, 1.0], None, [], [11.0, 2.0], 0, [12.0, 3.0]])
    job = daq.DAQJob("g", "v", lambda: next(values), read_mode="trigger",
                     provide_time=True, compress=False)
    d = daq.DAQDaemon([job], directory=tmp_path, write_period=3600)
    d.start()
    for _ in range(6):
        job.trigger_read()
    data = read_file(d.stop())["g"]
    assert data["time"].tolist() == [10.0, 11.0, 12.0]
    assert data["v"].tolist() == [1.0, 2.0, 3.0]
    assert job.status()["skipped"] == 3


def test_compress_keeps_first_and_last_of_a_run(tmp_path):
    values = iter([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0], [4.0, 6.0]])
    job = daq.DAQJob("g", "v", lambda: next(values), read_mode="trigger", provide_time=True)
    d = daq.DAQDaemon([job], directory=tmp_path, write_period=3600)
    d.start()
    for _ in range(4):
        job.trigger_read()
    data = read_file(d.stop())["g"]
    assert data["v"].tolist() == [5.0, 5.0, 6.0]
    assert data["time"].tolist() == [1.0, 3.0, 4.0]


def test_getter_errors_call_the_handler_by_sdaqs_count(tmp_path):
    calls = []
    # r: raise, s: skip (None), .: a row. sdaq's count: 1 2 3 0 1 1 2; a skip does not
    # end a run of errors, so the handler (limit 2) runs on reads 2, 3 and 7.
    pattern = iter("rrr.rsr")
    counts = []

    def getter():
        c = next(pattern)
        if c == "r":
            raise RuntimeError("offline")
        return None if c == "s" else [1.0]

    job = daq.DAQJob("g", "v", getter, read_mode="trigger",
                     handle_error_function=lambda: calls.append(job.error_count))
    d = daq.DAQDaemon([job], directory=tmp_path, write_period=3600)
    d.start()                       # the first read
    for _ in range(6):
        job.trigger_read()
        counts.append(job.error_count)
    d.stop()
    assert counts == [2, 3, 0, 1, 1, 2]
    assert calls == [2, 3, 2]
    assert job.status()["errors"] == 5


def test_a_row_that_does_not_fit_counts_as_an_error(tmp_path):
    values = iter([[1.0], [[1.0, 2.0]], [2.0]])
    job = daq.DAQJob("g", "v", lambda: next(values), read_mode="trigger", compress=False)
    d = daq.DAQDaemon([job], directory=tmp_path, write_period=3600)
    d.start()
    job.trigger_read()
    assert job.error_count == 1
    job.trigger_read()
    assert job.error_count == 0
    assert read_file(d.stop())["g"]["v"].tolist() == [1.0, 2.0]


def test_values_are_cast_as_numpy_assigns_them(tmp_path):
    values = iter([[3.7, -3.7, 2.5, 7], [300, 0, 0.0, 0]])
    job = daq.DAQJob("g", ["i", "j", "a", "f"], lambda: next(values), read_mode="trigger",
                     dtype=[np.uint8, np.int16, np.int32, np.float32],
                     shape=[(0,), (0,), (0, 2), (0,)], compress=False)
    d = daq.DAQDaemon([job], directory=tmp_path, write_period=3600)
    d.start()
    job.trigger_read()              # 300 does not fit uint8: an error, as in numpy
    data = read_file(d.stop())["g"]
    assert data["i"].tolist() == [3] and data["j"].tolist() == [-3]
    assert data["a"].tolist() == [[2, 2]] and data["f"].tolist() == [7.0]
    assert job.status()["errors"] == 1


@pytest.mark.parametrize("kwargs, exc", [
    ({"file_format_str": "DAQ.hdf5"}, KeyError),
    ({"file_format_str": "{date_to}_{date_from}.h5"}, ValueError),
    ({"rollover_interval_dict": {"days": 1, "hours": 2}}, KeyError),
    ({"rollover_interval_dict": {"fortnights": 1}}, KeyError),
    ({"rollover_interval_dict": {"days": 0}}, KeyError),
    ({"write_period": "60"}, TypeError),
    ({"write_period": 10, "write_period_jitter": 10}, ValueError),
    ({"compression_dict": {"compression": "gzip"}}, KeyError),
])
def test_daemon_argument_errors(tmp_path, kwargs, exc):
    job = daq.DAQJob("g", "v", lambda: None, read_mode="trigger")
    with pytest.raises(exc):
        daq.DAQDaemon([job], directory=tmp_path, **kwargs)


def test_a_file_without_rows_is_removed(tmp_path):
    job = daq.DAQJob("g", "v", lambda: None, read_mode="trigger")
    d = daq.DAQDaemon([job], directory=tmp_path, write_period=3600)
    d.start()
    job.trigger_read()
    d.stop()
    assert list(tmp_path.iterdir()) == []


def test_dropping_a_running_daemon_ends_its_threads(tmp_path):
    count = [0]

    def getter():
        count[0] += 1
        return [1.0]

    job = daq.DAQJob("g", "v", getter, read_mode="constant", compress=False)
    d = daq.DAQDaemon([job], directory=tmp_path, write_period=3600)
    d.start()
    while count[0] < 10:
        threading.Event().wait(0.001)
    del d, job                      # no stop(): the threads end with the GIL released
    n = count[0]
    threading.Event().wait(0.05)
    assert count[0] == n


def test_stop_while_python_is_busy_does_not_deadlock(tmp_path):
    count = [0]

    def getter():
        count[0] += 1
        return [float(count[0])]

    stop_spin = threading.Event()

    def spin():
        while not stop_spin.is_set():
            pass

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        job = daq.DAQJob("g", "v", getter, read_period=0.001, compress=False)
        d = daq.DAQDaemon([job], directory=tmp_path, write_period=3600)
        d.start()
        while count[0] < 20:
            threading.Event().wait(0.001)
        files = d.stop()
    finally:
        stop_spin.set()
        spinner.join()
    data = read_file(files)["g"]
    assert len(data["v"]) == count[0]
    assert data["v"].tolist() == [float(i) for i in range(1, count[0] + 1)]


def test_file_name_and_root_attrs(tmp_path):
    job = daq.DAQJob("g", "v", lambda: [1.0], read_mode="trigger")
    d = daq.DAQDaemon([job], name="bench", directory=tmp_path, write_period=3600,
                      file_format_str="LAB_{date_from}_{date_to}.hdf5")
    assert d.status() is False
    msg = d.start(attrs={"run_id": 12})
    assert msg == f"Starting the logger daemon in file: {d.counters()['current_file']}"
    assert d.status() is True and set(d.counters()["jobs"]) == {"g"}
    job.trigger_read()
    files = d.stop()
    assert d.status() is False
    name = files[0].rsplit("/", 1)[-1]
    assert name.startswith("LAB_") and name.endswith(".hdf5")
    with h5py.File(files[0], "r") as f:
        assert f.attrs["name"] == "bench"
        assert f.attrs["run_id"] == 12


def test_a_daemon_running_at_exit_is_stopped(tmp_path):
    script = (
        "import sys\n"
        "from photon_daq.daq import DAQDaemon, DAQJob\n"
        "job = DAQJob('g', 'v', lambda: [1.0], read_mode='trigger', compress=False)\n"
        "d = DAQDaemon([job], directory=sys.argv[1], write_period=3600)\n"
        "d.start()\n"
        "for _ in range(3):\n"
        "    job.trigger_read()\n"
    )
    r = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    files = list(tmp_path.iterdir())
    assert len(files) == 1
    with h5py.File(files[0], "r") as f:
        assert len(f["g/v"]) == 4
        assert f.attrs["run_end"] == f.attrs["file_end"] >= f.attrs["run_start"]


def test_trigger_read_returns_when_its_own_read_is_recorded(tmp_path):
    def slow():
        threading.Event().wait(0.05)
        return [1.0]

    job = daq.DAQJob("g", "v", slow, read_mode="trigger", compress=False)
    d = daq.DAQDaemon([job], directory=tmp_path / "a", write_period=3600)
    d.start()                       # its read is still running when trigger_read() starts
    job.trigger_read()
    assert job.status()["rows"] == 2
    d.stop()

    blocks = iter([3, 0, 2])        # extend_mode: a block of rows per read, one empty

    def block():
        n = next(blocks)
        return [np.arange(n, dtype=float), np.arange(n)]

    job = daq.DAQJob("g", "v", block, read_mode="trigger", extend_mode=True)
    d = daq.DAQDaemon([job], directory=tmp_path / "b", write_period=3600)
    d.start()
    job.trigger_read()
    assert job.status()["rows"] == 3
    job.trigger_read()
    assert job.status()["rows"] == 5
    assert read_file(d.stop())["g"]["v"].tolist() == [0, 1, 2, 0, 1]


def test_ctrl_c_ends_a_trigger_read_whose_getter_hangs(tmp_path):
    script = (
        "import os, sys, threading\n"
        "from photon_daq.daq import DAQDaemon, DAQJob\n"
        "calls = []\n"
        "def getter():\n"
        "    calls.append(1)\n"
        "    if len(calls) > 1:\n"
        "        threading.Event().wait(60)\n"
        "    return [1.0]\n"
        "job = DAQJob('g', 'v', getter, read_mode='trigger')\n"
        "d = DAQDaemon([job], directory=sys.argv[1], write_period=3600)\n"
        "d.start()\n"
        "print('waiting', flush=True)\n"
        "try:\n"
        "    job.trigger_read()\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
        "os._exit(0)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "waiting"
        threading.Event().wait(0.3)
        os.kill(p.pid, signal.SIGINT)
        out, _ = p.communicate(timeout=30)
    finally:
        p.kill()
    assert out.strip() == "interrupted"



def test_a_constant_job_is_written_early_at_a_long_write_period(tmp_path):
    # (1000,) float32 rows: a job buffer holds 16,743 of them (64 MiB). With write_period=60 a
    # full buffer used to wait for the period; past half of it the rows are written at once.
    counter = iter(range(10**9))
    row = np.zeros(1000, dtype=np.float32)

    def getter():
        row[0] = next(counter)
        return [row]

    job = daq.DAQJob("g", "v", getter, read_mode="constant", compress=False,
                     dtype=np.float32, shape=(0, 1000))
    d = daq.DAQDaemon([job], directory=tmp_path, write_period=60)
    d.start()
    for _ in range(300):  # at most 30 s
        if job.status()["written"] >= 25_000:
            break
        threading.Event().wait(0.1)
    status = job.status()
    files = d.stop()
    assert status["written"] >= 25_000, status
    assert status["early_writes"] >= 2, status
    final = job.status()
    assert final["dropped"] == 0 and final["written"] == final["rows"], final
    stored = np.concatenate([h5py.File(f, "r")["g/v"][:, 0] for f in files])
    # Every row once, in order (the counter is exact in float32 below 2**24).
    assert np.array_equal(stored, np.arange(len(stored), dtype=np.float32))
    assert len(stored) == final["rows"]
