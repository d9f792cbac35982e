"""The Xspress3 file as NeXus tools see it: nexusformat finds something to plot through the
`default` attributes, punx (a NeXus validator, with the NXDL definitions it ships) finds no errors
or warnings, units and times are where the base classes put them; and per-channel detector
settings given on the command line shape each channel's scalers, checked with numpy against the
spectra in the file."""
import datetime
import os
import re
import subprocess
import sys

import h5py
import numpy as np
from nexusformat.nexus import nxload

from xsp3_helpers import SCALERS, dead_time_correction, frame, rust_bin, scalers

NCH = 4
SEED = 1


def acquire(*args, timeout=120):
    r = subprocess.run([rust_bin("xsp3-acquire"), "run", "-q", *map(str, args)],
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr
    return r


def punx_summary(path):
    """punx's summary counts by status, from `punx validate`."""
    punx = os.path.join(os.path.dirname(sys.executable), "punx")
    r = subprocess.run([punx, "validate", str(path)], capture_output=True, text=True,
                       timeout=300, cwd=os.path.dirname(str(path)))
    assert r.returncode == 0, r.stderr
    counts = dict(re.findall(r"^(OK|NOTE|WARN|ERROR|TODO|UNUSED|COMMENT|OPTIONAL)\s+(\d+)\s",
                             r.stdout, re.M))
    assert "OK" in counts, r.stdout[-2000:]
    return {k: int(v) for k, v in counts.items()}, r.stdout


def test_nexusformat_finds_the_spectra_to_plot(tmp_path):
    acquire("--frames", 12, "--exposure", "1ms", "--out", tmp_path, "--file", "nx")
    root = nxload(str(tmp_path / "nx.h5"))
    data = root.plottable_data
    assert data is not None and data.nxclass == "NXdata"
    assert data.nxpath == "/entry/data"
    assert data.nxsignal.nxname == "data" and data.nxsignal.shape == (12, NCH, 4096)
    assert [a.nxname for a in data.nxaxes] == ["frame_number", "channel", "bin"]
    np.testing.assert_array_equal(data.nxaxes[0].nxvalue, np.arange(12))
    np.testing.assert_array_equal(data.nxaxes[1].nxvalue, np.arange(NCH))
    np.testing.assert_array_equal(data.nxaxes[2].nxvalue, np.arange(4096))
    # The signal is the detector's data itself (a link), frame for frame the simulator's.
    with h5py.File(tmp_path / "nx.h5", "r") as f:
        assert f.attrs["default"] == "entry" and f["entry"].attrs["default"] == "data"
        assert f["entry/data/data"].id == f["entry/instrument/xspress3/data"].id
        for i in (0, 11):
            np.testing.assert_array_equal(f["entry/data/data"][i], frame(SEED, i, NCH))


def test_units_and_times_follow_the_base_classes(tmp_path):
    before = datetime.datetime.now(datetime.timezone.utc)
    acquire("--frames", 5, "--exposure", "2ms", "--out", tmp_path, "--file", "u")
    after = datetime.datetime.now(datetime.timezone.utc)
    with h5py.File(tmp_path / "u.h5", "r") as f:
        det = f["entry/instrument/xspress3"]
        for name in ("time", "reset_ticks", "total_ticks", "event_width"):
            assert det[name].attrs["units"] == "12.5 ns", name
        for name in ("reset_count", "all_events", "all_good", "in_window_0", "in_window_1",
                     "pileup"):
            assert det[name].attrs["units"] == "counts", name
        # 12.5 ns ticks: the Time scaler is the exposure.
        assert det["time"][0, 0] * 12.5e-9 == 2e-3
        assert det["count_time"][()] == 2e-3 and det["count_time"].attrs["units"] == "s"
        start = datetime.datetime.fromisoformat(f["entry/start_time"][()].decode())
        end = datetime.datetime.fromisoformat(f["entry/end_time"][()].decode())
    assert before - datetime.timedelta(seconds=1) <= start <= end <= after


def test_punx_finds_no_errors_or_warnings(tmp_path):
    acquire("--frames", 8, "--exposure", "1ms", "--out", tmp_path, "--file", "v")
    counts, text = punx_summary(tmp_path / "v.h5")
    assert counts.get("ERROR", 0) == 0 and counts.get("WARN", 0) == 0, text[-4000:]
    assert "NeXus default plot" in text and "found by v3: /entry/data@signal" in text


def test_rolled_over_parts_each_have_their_plottable_data(tmp_path):
    acquire("--frames", 40, "--exposure", "200us", "--out", tmp_path, "--frames-per-file", 16)
    for i, n in enumerate([16, 16, 8]):
        root = nxload(str(tmp_path / f"xspress3_{i:05d}.h5"))
        data = root.plottable_data
        assert data.nxsignal.shape == (n, NCH, 4096)
        np.testing.assert_array_equal(data.nxaxes[0].nxvalue, np.arange(16 * i, 16 * i + n))
        assert root.entry.end_time.nxvalue >= root.entry.start_time.nxvalue


def test_per_channel_settings_shape_each_channels_scalers(tmp_path):
    acquire("--frames", 10, "--exposure", "1ms", "--out", tmp_path, "--file", "s",
            "--window", "0:600:700", "--window", "2:0:1100:1300", "--window", "3:1:0:99",
            "--good-threshold", "40", "--good-threshold", "1:900", "--event-width", "2:14")
    windows = np.array([[600, 700, 0, 4095], [600, 700, 0, 4095], [1100, 1300, 0, 4095],
                        [600, 700, 0, 99]])
    good = np.array([40, 900, 40, 40])
    with h5py.File(tmp_path / "s.h5", "r") as f:
        det = f["entry/instrument/xspress3"]
        np.testing.assert_array_equal(det.attrs["windows"], windows)
        np.testing.assert_array_equal(det.attrs["good_thresholds"], good)
        widths = det["event_width"][()]
        np.testing.assert_array_equal(widths, [6, 7, 14, 9])
        data = det["data"][()]
        for i in range(10):
            expected = frame(SEED, i, NCH)
            np.testing.assert_array_equal(data[i], expected)
            sc = np.stack([det[name][i] for name in SCALERS], axis=1)
            want = np.concatenate([scalers(expected[c:c + 1], 80000, windows[c:c + 1],
                                           good=good[c]) for c in range(NCH)])
            np.testing.assert_array_equal(sc, want)
            np.testing.assert_allclose(det["dead_time_correction"][i],
                                       dead_time_correction(sc, widths), rtol=1e-12)


def roi_expected(data, ranges, dtc):
    """ROI sums of (N, nch, bins) spectra over per-channel inclusive ranges (None: 0), and the
    sums times the dead-time correction."""
    sums = np.zeros(data.shape[:2], dtype=np.uint64)
    for c, r in enumerate(ranges):
        if r is not None:
            sums[:, c] = data[:, c, r[0]:r[1] + 1].astype(np.uint64).sum(axis=1)
    return sums, sums.astype(np.float64) * dtc


ROI_ARGS = ["--roi", "Fe:630:650", "--roi", "Fe:3:600:700", "--roi", "Cu:1:790:820"]
ROI_RANGES = {"Fe": [(630, 650), (630, 650), (630, 650), (600, 700)],
              "Cu": [None, (790, 820), None, None]}


def test_roi_datasets_match_numpy_sums_of_the_spectra(tmp_path):
    acquire("--frames", 30, "--exposure", "1ms", "--out", tmp_path, "--file", "r", *ROI_ARGS)
    with h5py.File(tmp_path / "r.h5", "r") as f:
        det = f["entry/instrument/xspress3"]
        data = det["data"][()]
        for i in range(30):
            np.testing.assert_array_equal(data[i], frame(SEED, i, NCH))
        sc = np.stack([det[name][()] for name in SCALERS], axis=2)
        dtc = np.stack([dead_time_correction(sc[i], det["event_width"][()])
                        for i in range(30)])
        for name, ranges in ROI_RANGES.items():
            sums, corrected = roi_expected(data, ranges, dtc)
            np.testing.assert_array_equal(det[f"roi_{name}"][()], sums)
            np.testing.assert_allclose(det[f"roi_{name}_dtc"][()], corrected, rtol=1e-12)
            want = [[-1, -1] if r is None else list(r) for r in ranges]
            np.testing.assert_array_equal(det[f"roi_{name}"].attrs["ranges"], want)


def test_roi_values_travel_with_every_frame_of_the_stream():
    import json
    import zmq
    from xsp3_helpers import free_port
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc = subprocess.Popen([rust_bin("xsp3-acquire"), "run", "-q", "--frames", "20",
                             "--exposure", "1ms", "--stream", endpoint, *ROI_ARGS],
                            stdout=subprocess.PIPE, text=True)
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVTIMEO, 20000)
    pull.setsockopt(zmq.LINGER, 0)
    pull.connect(endpoint)
    try:
        header = json.loads(pull.recv_multipart()[0])
        assert [r["name"] for r in header["rois"]] == ["Fe", "Cu"]
        assert header["rois"][1]["ranges"] == [None, [790, 820], None, None]
        widths = np.array(header["event_widths"])
        for i in range(20):
            parts = pull.recv_multipart()
            meta = json.loads(parts[0])
            mca = np.frombuffer(parts[1], dtype="<u4").reshape(meta["shape"])
            sc = np.frombuffer(parts[2], dtype="<u4").reshape(meta["scaler_shape"])
            np.testing.assert_array_equal(mca, frame(SEED, i, NCH))
            dtc = dead_time_correction(sc, widths)
            for values in meta["rois"]:
                sums, corrected = roi_expected(mca[None], ROI_RANGES[values["name"]], dtc)
                np.testing.assert_array_equal(values["counts"], sums[0])
                np.testing.assert_allclose(values["dtc"], corrected[0], rtol=1e-12)
        assert json.loads(pull.recv_multipart()[0])["htype"] == "series_end"
    finally:
        pull.close()
        ctx.term()
        assert proc.wait(timeout=60) == 0


def test_bins_and_rebin_record_the_reduced_spectrum_numpy_computes(tmp_path):
    acquire("--frames", 12, "--exposure", "1ms", "--out", tmp_path, "--file", "b",
            "--bins", "512:1535", "--rebin", "8", "--roi", "Fe:624:655")
    with h5py.File(tmp_path / "b.h5", "r") as f:
        det = f["entry/instrument/xspress3"]
        assert det.attrs["first_bin"] == 512 and det.attrs["rebin"] == 8
        data = det["data"][()]
        assert data.shape == (12, NCH, 128)
        for i in range(12):
            full = frame(SEED, i, NCH).astype(np.uint64)
            reduced = full[:, 512:1536].reshape(NCH, 128, 8).sum(axis=2)
            np.testing.assert_array_equal(data[i], reduced)
            np.testing.assert_array_equal(det["roi_Fe"][i], full[:, 624:656].sum(axis=1))
    root = nxload(str(tmp_path / "b.h5"))
    axis = root.plottable_data.nxaxes[2].nxvalue
    np.testing.assert_array_equal(axis, 512 + 8 * np.arange(128))
    counts, text = punx_summary(tmp_path / "b.h5")
    assert counts.get("ERROR", 0) == 0 and counts.get("WARN", 0) == 0, text[-4000:]


# With --bins 600:855 --rebin 4: inside the recorded bins off the rebin boundaries, below and
# above them, across their start, and on one channel across their end.
REC_ROI_ARGS = ["--roi", "In:621:658", "--roi", "Out:100:200", "--roi", "Hi:3000:4095",
                "--roi", "Mix:590:611", "--roi", "End:2:850:900"]
REC_ROI_RANGES = {"In": [(621, 658)] * NCH, "Out": [(100, 200)] * NCH,
                  "Hi": [(3000, 4095)] * NCH, "Mix": [(590, 611)] * NCH,
                  "End": [None, None, (850, 900), None]}


def test_rois_with_bins_and_rebin_are_sums_of_the_full_spectrum(tmp_path):
    acquire("--frames", 16, "--exposure", "1ms", "--out", tmp_path, "--file", "rr",
            "--bins", "600:855", "--rebin", "4", *REC_ROI_ARGS)
    with h5py.File(tmp_path / "rr.h5", "r") as f:
        det = f["entry/instrument/xspress3"]
        data = det["data"][()]
        assert data.shape == (16, NCH, 64)
        full = np.stack([frame(SEED, i, NCH) for i in range(16)])
        np.testing.assert_array_equal(
            data, full[:, :, 600:856].astype(np.uint64).reshape(16, NCH, 64, 4).sum(axis=3))
        sc = np.stack([det[name][()] for name in SCALERS], axis=2)
        dtc = np.stack([dead_time_correction(sc[i], det["event_width"][()])
                        for i in range(16)])
        for name, ranges in REC_ROI_RANGES.items():
            sums, corrected = roi_expected(full, ranges, dtc)
            assert det[f"roi_{name}"].dtype == np.uint64
            np.testing.assert_array_equal(det[f"roi_{name}"][()], sums, err_msg=name)
            np.testing.assert_allclose(det[f"roi_{name}_dtc"][()], corrected, rtol=1e-12)
            want = [[-1, -1] if r is None else list(r) for r in ranges]
            np.testing.assert_array_equal(det[f"roi_{name}"].attrs["ranges"], want)


def test_rois_with_bins_and_rebin_travel_with_every_frame_of_the_stream():
    import json
    import zmq
    from xsp3_helpers import free_port
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc = subprocess.Popen([rust_bin("xsp3-acquire"), "run", "-q", "--frames", "10",
                             "--exposure", "1ms", "--stream", endpoint, "--bins", "600:855",
                             "--rebin", "4", *REC_ROI_ARGS],
                            stdout=subprocess.PIPE, text=True)
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVTIMEO, 20000)
    pull.setsockopt(zmq.LINGER, 0)
    pull.connect(endpoint)
    try:
        header = json.loads(pull.recv_multipart()[0])
        assert [r["name"] for r in header["rois"]] == list(REC_ROI_RANGES)
        widths = np.array(header["event_widths"])
        for i in range(10):
            parts = pull.recv_multipart()
            meta = json.loads(parts[0])
            assert meta["shape"] == [NCH, 64]
            sc = np.frombuffer(parts[2], dtype="<u4").reshape(meta["scaler_shape"])
            full = frame(SEED, i, NCH)
            dtc = dead_time_correction(sc, widths)
            for values in meta["rois"]:
                sums, corrected = roi_expected(full[None], REC_ROI_RANGES[values["name"]], dtc)
                np.testing.assert_array_equal(values["counts"], sums[0])
                np.testing.assert_allclose(values["dtc"], corrected[0], rtol=1e-12)
        assert json.loads(pull.recv_multipart()[0])["htype"] == "series_end"
    finally:
        pull.close()
        ctx.term()
        assert proc.wait(timeout=60) == 0


def test_the_receiver_writes_the_same_reduced_spectra_and_rois(tmp_path):
    from xsp3_helpers import free_port
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    recv = subprocess.Popen([rust_bin("xsp3-receive"), "--connect", endpoint, "--root",
                             str(tmp_path / "recv"), "--once"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        acquire("--frames", 20, "--exposure", "1ms", "--out", tmp_path, "--file", "sent",
                "--stream", endpoint, "--bins", "600:855", "--rebin", "4",
                "--roi", "Fe:620:659", "--roi", "Cu:1:500:700")
        assert recv.wait(timeout=60) == 0, recv.stderr.read()
    finally:
        if recv.poll() is None:
            recv.kill()
    with h5py.File(tmp_path / "sent.h5", "r") as a, h5py.File(tmp_path / "recv/sent.h5", "r") as b:
        da, db = a["entry/instrument/xspress3"], b["entry/instrument/xspress3"]
        for name in ("data", "roi_Fe", "roi_Cu", "roi_Fe_dtc", "dead_time_correction"):
            np.testing.assert_array_equal(da[name][()], db[name][()], err_msg=name)
        for attr in ("first_bin", "rebin", "n_bins"):
            assert da.attrs[attr] == db.attrs[attr], attr
        np.testing.assert_array_equal(a["entry/data/bin"][()], b["entry/data/bin"][()])
        np.testing.assert_array_equal(db["roi_Cu"].attrs["ranges"],
                                      [[-1, -1], [500, 700], [-1, -1], [-1, -1]])
        # Cu reaches below the recorded bins: the receiver wrote the sender's sums of the full
        # spectrum, which the stream's spectra alone could not give.
        full = np.stack([frame(SEED, i, NCH) for i in range(20)]).astype(np.uint64)
        np.testing.assert_array_equal(db["roi_Cu"][:, 1], full[:, 1, 500:701].sum(axis=1))
