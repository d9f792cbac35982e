"""xsp3-acquire against the Python tools users have: pyzmq reads the stream, h5py reads the
files. Expected values come from xsp3_helpers, an independent numpy version of the simulator's
content formula and of the dead-time maths."""
import json
import subprocess

import h5py
import numpy as np
import pytest
import zmq

from xsp3_helpers import (SCALERS, dead_time_correction, frame, free_port,
                          output_count_rate, rust_bin, scalers)

NCH = 4
SEED = 1


def acquire(*args, timeout=120):
    return subprocess.run([rust_bin("xsp3-acquire"), "run", "-q", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def test_pyzmq_receiver_reads_every_frame_as_the_simulator_made_it():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc = subprocess.Popen([rust_bin("xsp3-acquire"), "run", "-q", "--frames", "200",
                             "--exposure", "1ms", "--stream", endpoint, "--window", "0:600:700"],
                            stdout=subprocess.PIPE, text=True)
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVTIMEO, 20000)
    pull.setsockopt(zmq.LINGER, 0)
    pull.connect(endpoint)
    try:
        header = json.loads(pull.recv_multipart()[0])
        assert header["htype"] == "header"
        assert header["n_channels"] == NCH and header["n_bins"] == 4096
        assert header["scaler_names"] == SCALERS
        assert header["exposure_ticks"] == 80000
        windows = np.array(header["windows"])
        assert (windows[:, 0] == 600).all() and (windows[:, 1] == 700).all()
        for i in range(200):
            parts = pull.recv_multipart(copy=False)
            assert len(parts) == 3
            meta = json.loads(parts[0].bytes)
            assert (meta["htype"], meta["frame"], meta["msg_number"]) == ("image", i, i)
            assert meta["type"] == "uint32" and meta["compression"] == "none"
            assert meta["shape"] == [NCH, 4096]
            mca = np.frombuffer(parts[1].buffer, dtype="<u4").reshape(meta["shape"])
            expected = frame(SEED, i, NCH)
            np.testing.assert_array_equal(mca, expected)
            sc = np.frombuffer(parts[2].buffer, dtype="<u4").reshape(meta["scaler_shape"])
            np.testing.assert_array_equal(sc, scalers(expected, 80000, windows))
        end = json.loads(pull.recv_multipart()[0])
        assert end["htype"] == "series_end"
        assert end["frames_sent"] == 200 and end["frames_lost"] == 0
        assert end["lost_ranges"] == []
    finally:
        pull.close()
        ctx.term()
        assert proc.wait(timeout=60) == 0


def test_h5py_reads_the_nexus_file(tmp_path):
    r = acquire("--frames", 150, "--exposure", "1ms", "--out", tmp_path, "--file", "run1",
                "--good-threshold", "100", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["frames_written"] == 150
    with h5py.File(tmp_path / "run1.h5", "r") as f:
        assert f["entry"].attrs["NX_class"] == "NXentry"
        assert f["entry/instrument"].attrs["NX_class"] == "NXinstrument"
        det = f["entry/instrument/xspress3"]
        assert det.attrs["NX_class"] == "NXdetector"
        assert det.attrs["n_channels"] == NCH and det.attrs["frames_in_file"] == 150
        assert det.attrs["complete"] == 1 and det.attrs["frames_lost"] == 0
        assert det["data"].shape == (150, NCH, 4096) and det["data"].dtype == np.uint32
        assert det["data"].chunks[0] == det.attrs["chunk_frames"]
        for name in SCALERS:
            assert det[name].shape == (150, NCH) and det[name].dtype == np.uint32
        assert det["dead_time_correction"].dtype == np.float64
        assert det["output_count_rate"].dtype == np.float64
        assert det["output_count_rate"].attrs["units"] == "counts/s"
        assert det["frame_number"].dtype == np.uint64
        assert det["timestamp"].attrs["units"] == "ns"
        assert det["lost_frame_ranges"].shape == (0, 2)
        widths = det["event_width"][()]
        data = det["data"][()]
        for i in range(150):
            expected = frame(SEED, i, NCH)
            np.testing.assert_array_equal(data[i], expected)
            sc = np.stack([det[name][i] for name in SCALERS], axis=1)
            np.testing.assert_array_equal(sc, scalers(expected, 80000, good=100))
            np.testing.assert_allclose(det["dead_time_correction"][i],
                                       dead_time_correction(sc, widths), rtol=1e-12)
            np.testing.assert_allclose(det["output_count_rate"][i], output_count_rate(sc),
                                       rtol=1e-12)
        assert (det["dead_time_saturated"][()] == 0).all()
        # Frame read-out times are real wall-clock times, in order.
        ts = det["timestamp"][()]
        assert (np.diff(ts.astype(np.int64)) >= 0).all()
        import time
        assert abs(ts[-1] / 1e9 - time.time()) < 600


def test_h5py_sees_saturated_channels_flagged_not_silent(tmp_path):
    # 100 counts per bin of background in 1 us frames: far more dead ticks than live ones.
    r = acquire("--frames", 5, "--exposure", "1us", "--sim", "background=100", "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "xspress3.h5", "r") as f:
        det = f["entry/instrument/xspress3"]
        assert (det["dead_time_saturated"][()] == 1).all()
        assert np.isnan(det["dead_time_correction"][()]).all()
        assert np.isfinite(det["output_count_rate"][()]).all()


@pytest.mark.parametrize("swmr", [False, True])
def test_h5py_reads_rolled_over_files_in_order(tmp_path, swmr):
    args = ["--frames", 70, "--exposure", "200us", "--out", tmp_path, "--frames-per-file", 32]
    r = acquire(*args, *(["--swmr"] if swmr else []))
    assert r.returncode == 0, r.stderr
    numbers = []
    for i in range(3):
        with h5py.File(tmp_path / f"xspress3_{i:05d}.h5", "r") as f:
            det = f["entry/instrument/xspress3"]
            assert det.attrs["file_index"] == i and det.attrs["file_count"] == 3
            numbers.extend(det["frame_number"][()].tolist())
            np.testing.assert_array_equal(det["data"][-1],
                                          frame(SEED, numbers[-1], NCH))
    assert numbers == list(range(70))
