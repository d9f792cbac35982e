"""The Tango device `xspress3_tango.Xspress3DS` (MAX IV's interface) in a DeviceTestContext, driving
a real `xsp3-acquire serve` with the simulated SDK. Files are checked with h5py against the
simulator's content formula (xsp3_helpers), written independently of the Rust code."""
import os
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest
import tango
import zmq
from tango import DevState

from tango_helpers import device_context, refused, wait_state
from waiting import wait_for
from xsp3_helpers import dead_time_correction, frame, free_port, rust_bin, scalers

NCH = 4
SEED = 1
# The simulator's event width of channel c is 6 + c % 4 ticks (docs/sdk-sim.md).
EVENT_WIDTHS = [6 + c for c in range(NCH)]
SCALER_NAMES = ("time", "reset_ticks", "reset_count", "all_events", "all_good", "in_window_0",
                "in_window_1", "pileup", "total_ticks")


@pytest.fixture
def dev(tmp_path):
    with device_context(tmp_path) as proxy:
        yield proxy


def xspress3_group(path):
    return h5py.File(path, "r")["entry/instrument/xspress3"]


def test_max_iv_attributes_defaults_and_readback(dev):
    assert dev.state() == DevState.STANDBY
    assert dev.ExposureTime == pytest.approx(0.1)
    assert (dev.nTriggers, dev.nFramesPerTrigger) == (1, 1)
    assert dev.LatencyTime == 0.0
    assert dev.TriggerMode == "SOFTWARE"
    assert dev.DestinationFileName == ""
    assert dev.DestinationFileOverwritable is False
    assert dev.WriteHdf5 is True
    assert dev.ReadoutTime == pytest.approx(25e-9)
    assert dev.nFramesAcquired == 0
    assert dev.nChannels == NCH
    assert dev.ReadyForSwTrigger is False
    assert dev.ServerPid > 0
    for name, value in [("ExposureTime", 0.25), ("nTriggers", 7), ("nFramesPerTrigger", 1),
                        ("LatencyTime", 0.001), ("TriggerMode", "EXTERNAL_MULTI_GATE"),
                        ("DestinationFileName", "scan/one.h5"),
                        ("DestinationFileOverwritable", True), ("WriteHdf5", False)]:
        dev.write_attribute(name, value)
        assert dev.read_attribute(name).value == pytest.approx(value), name
    for ch in range(NCH):
        assert list(dev.read_attribute(f"Window1_Ch{ch}").value) == [0, 4095]
        dev.write_attribute(f"Window1_Ch{ch}", [600, 700])
        assert list(dev.read_attribute(f"Window1_Ch{ch}").value) == [600, 700]
        # MAX IV clips windows to 0..4095.
        dev.write_attribute(f"Window2_Ch{ch}", [-5, 5000])
        assert list(dev.read_attribute(f"Window2_Ch{ch}").value) == [0, 4095]
        spectrum = dev.read_attribute(f"Spectrum_Ch{ch}").value
        assert spectrum is None or len(spectrum) == 0
    assert list(dev.ScalerNames) == ["time", "reset_ticks", "reset_count", "all_events",
                                     "all_good", "in_window_0", "in_window_1", "pileup",
                                     "total_ticks"]
    assert dev.LatestFrameNumber == -1
    for counter in ("FramesWritten", "FramesFlushed", "FramesSent", "FramesLost",
                    "FramesLostTotal", "SdkOverruns", "StreamDrops", "StreamUnsent",
                    "FramesUnwritten", "TriggersIgnored", "RingFill", "RingHighWater",
                    "RingFullEvents"):
        assert dev.read_attribute(counter).value == 0
    # What the detector uses, from serve's status: the calibrated widths until others are set.
    assert list(dev.CalibratedEventWidths) == EVENT_WIDTHS
    assert [dev.read_attribute(f"EventWidth_Ch{c}").value for c in range(NCH)] == EVENT_WIDTHS


def test_bad_values_are_refused_with_the_reason(dev, tmp_path):
    cases = [
        ("ExposureTime", -1.0, "ExposureTime -1.0: give a positive number of seconds"),
        ("ExposureTime", float("nan"), "ExposureTime is a NaN or INF value"),  # Tango itself
        ("LatencyTime", -0.5, "LatencyTime -0.5"),
        ("nTriggers", 0, "nTriggers 0: give at least 1"),
        ("nFramesPerTrigger", -3, "nFramesPerTrigger -3: give at least 1"),
        ("TriggerMode", "INTERNAL", "use SOFTWARE, EXTERNAL_MULTI, EXTERNAL_MULTI_GATE"),
        ("DestinationFileName", "/elsewhere/x.h5", "is not inside the output directory"),
        ("DestinationFileName", "../x.h5", "give a file name inside the output directory"),
        ("Window1_Ch2", [700, 600], "Window1_Ch2 [700, 600]: low must not be above high"),
        ("Window2_Ch0", [5], "Window2_Ch0 [5]: give two bins"),
        ("Window2_Ch0", [1, 2, 3], "X dimesion is greater than the max"),  # Tango itself
        ("EventWidth_Ch3", -1, "EventWidth_Ch3 -1: give a width of zero or more clock ticks"),
        ("Rois", ["Fe:600"], "Rois 'Fe:600': give NAME:[CH:]LOW:HIGH"),
        ("Rois", ["Fe-K:1:2"], "Rois 'Fe-K:1:2': give NAME:[CH:]LOW:HIGH"),
    ]
    for name, value, why in cases:
        assert why in refused(lambda: dev.write_attribute(name, value)), name
    assert dev.ExposureTime == pytest.approx(0.1)
    assert "Arm first" in refused(dev.SoftwareTrigger)
    for mode in ("SOFTWARE", "EXTERNAL_MULTI", "EXTERNAL_MULTI_GATE"):
        dev.TriggerMode = mode
        dev.nTriggers, dev.nFramesPerTrigger = 2, 3
        assert "nTriggers 2 with nFramesPerTrigger 3: one of them must be 1" in refused(dev.Arm)
    dev.TriggerMode = "SOFTWARE"
    dev.nTriggers = 1
    dev.ExposureTime, dev.LatencyTime = 0.001, 0.002
    assert "leaves no live time" in refused(dev.Arm)
    dev.LatencyTime = 0.0
    for cmd in ("ReadRawCounts_Window1", "ReadDtcCounts_Window2"):
        assert "channel 9 is outside 0..3" in refused(lambda: dev.command_inout(cmd, [9, 1, 2]))
        assert "last frame 1 is before the first 4" in refused(
            lambda: dev.command_inout(cmd, [0, 4, 1]))
        assert "give [channel, first frame, last frame]" in refused(
            lambda: dev.command_inout(cmd, [0]))
    # The serve process refuses an existing file when overwriting is not allowed and the device
    # cannot see the directory; here it can, so MAX IV's rule applies: `name_.h5`.
    assert dev.state() == DevState.STANDBY


def test_software_triggered_acquisition_to_file(dev, tmp_path):
    dev.TriggerMode = "SOFTWARE"
    dev.ExposureTime = 0.002
    dev.nTriggers, dev.nFramesPerTrigger = 6, 1
    dev.DestinationFileName = str(tmp_path / "sw.h5")
    for ch in range(NCH):
        dev.write_attribute(f"Window1_Ch{ch}", [600, 700])
        dev.write_attribute(f"Window2_Ch{ch}", [1100, 1300])
    dev.Arm()
    assert dev.state() == DevState.RUNNING
    for i in range(6):
        wait_for(f"ReadyForSwTrigger before trigger {i}", lambda: dev.ReadyForSwTrigger)
        dev.SoftwareTrigger()
    wait_state(dev, DevState.STANDBY)
    assert dev.ReadyForSwTrigger is False
    assert dev.nFramesAcquired == 6
    assert (dev.FramesWritten, dev.FramesLost) == (6, 0)
    assert list(dev.LastFiles) == [str(tmp_path / "sw.h5")]

    g = xspress3_group(tmp_path / "sw.h5")
    assert g["data"].shape == (6, NCH, 4096)
    for i in range(6):
        np.testing.assert_array_equal(g["data"][i], frame(SEED, i, NCH))
    assert g.attrs["trigger_mode"] in ("software", b"software")
    assert g.attrs["exposure_ticks"] == round((0.002 - 25e-9) * 80e6)
    assert (g.attrs["windows"][:, :2] == [600, 700]).all()
    assert (g.attrs["windows"][:, 2:] == [1100, 1300]).all()

    # MAX IV's per-frame window counts (frames from 1), raw and dead-time corrected.
    for ch in range(NCH):
        raw = dev.command_inout("ReadRawCounts_Window1", [ch, 1, 6])
        expected = [int(frame(SEED, i, NCH)[ch, 600:701].sum()) for i in range(6)]
        assert list(raw) == expected
        assert list(dev.command_inout("ReadRawCounts_Window2", [ch, 2, 3])) == list(
            g["in_window_1"][1:3, ch])
        scalers = np.stack([g[s][:, :] for s in ("time", "reset_ticks", "reset_count",
                                                 "all_events", "all_good", "in_window_0",
                                                 "in_window_1", "pileup", "total_ticks")],
                           axis=2)
        dtc = np.array([dead_time_correction(scalers[i], EVENT_WIDTHS)[ch] for i in range(6)])
        np.testing.assert_allclose(dev.command_inout("ReadDtcCounts_Window1", [ch, 1, 6]),
                                   np.array(expected) * dtc)
        # Frames beyond the acquisition are -1, as in MAX IV's device.
        assert list(dev.command_inout("ReadRawCounts_Window1", [ch, 5, 8]))[2:] == [-1, -1]
        assert dev.read_attribute(f"EventWidth_Ch{ch}").value == EVENT_WIDTHS[ch]

    # Readback of the last frame: spectra, ROI sums, scalers and dead-time correction.
    last = frame(SEED, 5, NCH)
    assert dev.LatestFrameNumber == 5
    for ch in range(NCH):
        np.testing.assert_array_equal(dev.read_attribute(f"Spectrum_Ch{ch}").value, last[ch])
    assert list(dev.LatestWindow1Counts) == [int(last[c, 600:701].sum()) for c in range(NCH)]
    assert list(dev.LatestWindow2Counts) == [int(last[c, 1100:1301].sum()) for c in range(NCH)]
    np.testing.assert_array_equal(dev.Scalers, scalers[5])
    np.testing.assert_allclose(dev.DeadTimeCorrection,
                               dead_time_correction(scalers[5], EVENT_WIDTHS))
    np.testing.assert_allclose(dev.DeadTimeCorrection, g["dead_time_correction"][5])


def test_internally_timed_acquisition_after_one_trigger(dev, tmp_path):
    dev.TriggerMode = "SOFTWARE"
    dev.ExposureTime = 0.001
    dev.nTriggers, dev.nFramesPerTrigger = 1, 300
    dev.DestinationFileName = "timed"
    dev.Arm()
    assert dev.ReadyForSwTrigger is True
    dev.SoftwareTrigger()
    assert dev.ReadyForSwTrigger is False
    wait_state(dev, DevState.STANDBY)
    assert dev.nFramesAcquired == 300
    assert (dev.FramesWritten, dev.FramesFlushed, dev.FramesLostTotal) == (300, 300, 0)
    g = xspress3_group(tmp_path / "timed.h5")
    assert g.attrs["trigger_mode"] in ("software_first", b"software_first")
    assert g["data"].shape == (300, NCH, 4096)
    assert list(g["frame_number"][:]) == list(range(300))
    for i in (0, 150, 299):
        np.testing.assert_array_equal(g["data"][i], frame(SEED, i, NCH))
    assert g.attrs["complete"] == 1
    # A second acquisition to the same name is not allowed to replace the file: MAX IV's rule
    # inserts `_` before the extension.
    dev.Arm()
    dev.SoftwareTrigger()
    wait_state(dev, DevState.STANDBY)
    assert list(dev.LastFiles) == [str(tmp_path / "timed_.h5")]
    assert xspress3_group(tmp_path / "timed.h5")["data"].shape[0] == 300


def test_change_events_on_frames_and_state(dev, tmp_path):
    frames, states = [], []
    ids = [dev.subscribe_event("nFramesAcquired", tango.EventType.CHANGE_EVENT,
                               lambda e: e.err or frames.append(e.attr_value.value)),
           dev.subscribe_event("State", tango.EventType.CHANGE_EVENT,
                               lambda e: e.err or states.append(e.attr_value.value))]
    try:
        dev.ExposureTime = 0.005
        dev.nTriggers, dev.nFramesPerTrigger = 1, 100
        dev.Arm()
        dev.SoftwareTrigger()
        wait_state(dev, DevState.STANDBY)
        wait_for("the event of the last frame", lambda: frames and frames[-1] == 100)
        wait_for("the STANDBY event", lambda: states and states[-1] == DevState.STANDBY)
    finally:
        for i in ids:
            dev.unsubscribe_event(i)
    assert DevState.RUNNING in states
    # Pushed as the counter moved, not only at the end, and never backwards.
    assert len(set(frames)) >= 3
    assert frames == sorted(frames)


def test_stop_mid_acquisition_closes_the_file(dev, tmp_path):
    dev.ExposureTime = 0.001
    dev.nTriggers, dev.nFramesPerTrigger = 1, 1_000_000
    dev.DestinationFileName = "stopped.h5"
    dev.Arm()
    dev.SoftwareTrigger()
    wait_for("some frames", lambda: dev.nFramesAcquired > 100)
    frames_seen_running = dev.LatestFrameNumber
    # A second trigger while the frames run is one the acquisition cannot use: serve counts it.
    dev.SoftwareTrigger()
    wait_for("the ignored trigger", lambda: dev.TriggersIgnored == 1)
    dev.Stop()
    assert dev.state() == DevState.STANDBY
    n = dev.nFramesAcquired
    assert 100 < n < 1_000_000
    assert frames_seen_running >= 0  # the monitor served the running acquisition's frames
    g = xspress3_group(tmp_path / "stopped.h5")
    assert g["data"].shape[0] == n == dev.FramesWritten
    np.testing.assert_array_equal(g["data"][n - 1], frame(SEED, n - 1, NCH))
    assert dev.LatestFrameNumber == n - 1
    # Stop when nothing runs is harmless, and the device arms again.
    dev.Stop()
    dev.nFramesPerTrigger = 3
    dev.DestinationFileName = ""
    dev.Arm()
    dev.SoftwareTrigger()
    wait_state(dev, DevState.STANDBY)
    assert dev.nFramesAcquired == 3


def test_killed_serve_process_gives_fault_and_init_recovers(dev):
    pid = dev.ServerPid
    dev.ExposureTime = 0.001
    dev.nTriggers, dev.nFramesPerTrigger = 1, 1_000_000
    dev.Arm()
    dev.SoftwareTrigger()
    os.kill(pid, signal.SIGKILL)
    wait_state(dev, DevState.FAULT)
    assert f"xsp3-acquire serve (pid {pid}) killed by signal 9" in dev.status()
    assert "run Init" in refused(dev.Arm)
    dev.Init()
    assert dev.state() == DevState.STANDBY
    assert dev.ServerPid not in (pid, -1)


def test_external_serve_process_disappearing_gives_fault(tmp_path):
    control = f"tcp://127.0.0.1:{free_port()}"
    serve = subprocess.Popen([rust_bin("xsp3-acquire"), "serve", "-q", "--control", control],
                             stderr=subprocess.DEVNULL)
    try:
        with device_context(tmp_path, start_server=False, ControlEndpoint=control,
                            MonitorPort=0) as dev:
            assert dev.state() == DevState.STANDBY
            assert dev.ServerPid == -1
            serve.kill()
            serve.wait()
            wait_state(dev, DevState.FAULT)
            assert f"no reply from {control}" in dev.status()
    finally:
        serve.kill()
        serve.wait()


def test_readbacks_show_what_an_external_serve_process_uses(tmp_path):
    """Windows and event widths set on the detector before the device starts (by another client
    of the serve process) are what the device reads back: serve's status reports them."""
    control = f"tcp://127.0.0.1:{free_port()}"
    serve = subprocess.Popen([rust_bin("xsp3-acquire"), "serve", "-q", "--control", control],
                             stderr=subprocess.DEVNULL)
    ctx = zmq.Context()
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.RCVTIMEO, 20000)
    req.connect(control)
    try:
        req.send_json({"cmd": "configure", "frames": 1, "windows": [[1, 0, 10, 20], [2, 1, 5, 6]],
                       "event_width": [[3, 15]]})
        assert req.recv_json()["ok"]
        with device_context(tmp_path, start_server=False, ControlEndpoint=control,
                            MonitorPort=0) as dev:
            assert list(dev.Window1_Ch1) == [10, 20] and list(dev.Window2_Ch1) == [0, 4095]
            assert list(dev.Window2_Ch2) == [5, 6] and list(dev.Window1_Ch0) == [0, 4095]
            assert [dev.read_attribute(f"EventWidth_Ch{c}").value for c in range(NCH)] == [
                6, 7, 8, 15]
            assert list(dev.CalibratedEventWidths) == EVENT_WIDTHS
    finally:
        req.close(0)
        ctx.term()
        serve.kill()
        serve.wait()


def test_serve_process_that_cannot_start_gives_fault(tmp_path):
    with device_context(tmp_path, ServerArgs=["--no-such-option"]) as dev:
        assert dev.state() == DevState.FAULT
        assert "exited with code 2" in dev.status()
        assert "--no-such-option" in dev.status()


def test_console_script_runs_the_device_server(tmp_path):
    """`Xspress3DS INSTANCE` with a file database holding the device's properties."""
    control = f"tcp://127.0.0.1:{free_port()}"
    port = free_port()
    db = tmp_path / "tango.db"
    db.write_text(f"Xspress3DS/test/DEVICE/Xspress3DS: test/xspress3/1\n"
                  f"test/xspress3/1->ControlEndpoint: {control}\n"
                  f"test/xspress3/1->StartServer: true\n"
                  f"test/xspress3/1->ServerBinary: {rust_bin('xsp3-acquire')}\n"
                  f"test/xspress3/1->StreamerPort: 0\n"
                  f"test/xspress3/1->MonitorPort: 0\n")
    script = os.path.join(os.path.dirname(sys.executable), "Xspress3DS")  # the venv's
    server = subprocess.Popen([script, "test", f"-file={db}", "-ORBendPoint",
                               f"giop:tcp:127.0.0.1:{port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        dev = tango.DeviceProxy(f"tango://127.0.0.1:{port}/test/xspress3/1#dbase=no")
        wait_for("the device server", lambda: _answers(dev))
        wait_state(dev, DevState.STANDBY)
        assert dev.nChannels == 4
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    assert not _serve_running(control)


def _answers(dev):
    try:
        dev.ping()
        return True
    except tango.DevFailed:
        return False


def _serve_running(control):
    out = subprocess.run(["pgrep", "-f", f"--control {control}"], capture_output=True)
    return out.returncode == 0 and out.stdout.strip() != b""


def test_stays_usable_after_acquisitions_in_a_row(dev):
    dev.ExposureTime = 0.001
    for n in (5, 40, 1):
        dev.nTriggers, dev.nFramesPerTrigger = 1, n
        dev.Arm()
        dev.SoftwareTrigger()
        wait_state(dev, DevState.STANDBY)
        assert dev.nFramesAcquired == n


def test_failed_acquisition_gives_fault_with_the_error(tmp_path):
    with device_context(tmp_path, ServerArgs=["--sim", "error_at_frame=20"]) as dev:
        dev.ExposureTime = 0.001
        dev.nTriggers, dev.nFramesPerTrigger = 1, 1000
        dev.Arm()
        dev.SoftwareTrigger()
        wait_state(dev, DevState.FAULT)
        assert dev.status().startswith("acquisition failed: ")
        assert dev.nFramesAcquired == 20
        dev.Init()
        assert dev.state() == DevState.STANDBY


def test_serve_refusals_reach_the_client(tmp_path):
    with device_context(tmp_path, OutputDirectory="") as dev:
        dev.DestinationFileName = "scan"
        why = refused(dev.Arm)
        assert "xsp3-acquire serve: configure: this daemon writes no files" in why
        assert dev.state() == DevState.STANDBY


@pytest.mark.parametrize("mode, n_trig, n_fpt, serve_mode, debounce", [
    ("EXTERNAL_MULTI", 40, 1, "external", 0),
    ("EXTERNAL_MULTI", 1, 40, "external_first", 0),
    # One frame per gate also with nFramesPerTrigger (MAX IV's), with MAX IV's gate debounce.
    ("EXTERNAL_MULTI_GATE", 1, 40, "gate", 80),
])
def test_external_trigger_modes(tmp_path, mode, n_trig, n_fpt, serve_mode, debounce):
    # The simulated SDK delivers TTL triggers (and gates) at 400 Hz.
    with device_context(tmp_path, ServerArgs=["--sim", "ext_trigger_hz=400"]) as dev:
        dev.TriggerMode = mode
        dev.ExposureTime = 0.001
        dev.nTriggers, dev.nFramesPerTrigger = n_trig, n_fpt
        dev.DestinationFileName = "ext"
        dev.Arm()
        assert dev.ReadyForSwTrigger is False
        assert "TriggerMode " + mode in refused(dev.SoftwareTrigger)
        wait_state(dev, DevState.STANDBY)
        assert dev.nFramesAcquired == 40
        g = xspress3_group(tmp_path / "ext.h5")
        assert g.attrs["trigger_mode"] in (serve_mode, serve_mode.encode())
        assert g.attrs["debounce_ticks"] == debounce
        assert g["data"].shape == (40, NCH, 4096)


def test_device_shutdown_finishes_the_running_acquisition(tmp_path):
    with device_context(tmp_path) as dev:
        pid = dev.ServerPid
        dev.ExposureTime = 0.001
        dev.nTriggers, dev.nFramesPerTrigger = 1, 1_000_000
        dev.DestinationFileName = "interrupted"
        dev.Arm()
        dev.SoftwareTrigger()
        wait_for("some frames", lambda: dev.nFramesAcquired > 100)
    # The device server is gone; it stopped the serve process through `shutdown`, which closed
    # the file with its final attributes (written only when an acquisition finishes).
    wait_for("the serve process to exit", lambda: not os.path.exists(f"/proc/{pid}"))
    g = xspress3_group(tmp_path / "interrupted.h5")
    n = g["data"].shape[0]
    assert n > 100 and g.attrs["frames_in_file"] == n
    np.testing.assert_array_equal(g["data"][n - 1], frame(SEED, n - 1, NCH))


def test_event_widths_property_overrides_the_calibration(tmp_path):
    widths = [10, 11, 12, 13]
    with device_context(tmp_path, EventWidths=widths) as dev:
        assert [dev.read_attribute(f"EventWidth_Ch{c}").value for c in range(NCH)] == widths
        dev.ExposureTime = 0.001
        dev.nTriggers, dev.nFramesPerTrigger = 1, 4
        dev.DestinationFileName = "widths"
        dev.Arm()
        dev.SoftwareTrigger()
        wait_state(dev, DevState.STANDBY)
        g = xspress3_group(tmp_path / "widths.h5")
        # Sent per channel in configure: the file's correction uses them, as MAX IV's does.
        assert list(g["event_width"][:]) == widths
        sc = np.stack([g[s][3, :] for s in SCALER_NAMES], axis=1)
        np.testing.assert_allclose(g["dead_time_correction"][3], dead_time_correction(sc, widths))
        np.testing.assert_allclose(dev.DeadTimeCorrection, dead_time_correction(sc, widths))
        np.testing.assert_allclose(dev.command_inout("ReadDtcCounts_Window2", [1, 4, 4]),
                                   [sc[1, 6] * dead_time_correction(sc, widths)[1]])


def test_event_widths_property_of_the_wrong_length_is_ignored_as_by_max_iv(tmp_path):
    with device_context(tmp_path, EventWidths=[10, 11]) as dev:
        assert dev.state() == DevState.STANDBY
        assert "EventWidths property ignored: 2 values for 4 channels" in dev.status()
        assert [dev.read_attribute(f"EventWidth_Ch{c}").value for c in range(NCH)] == EVENT_WIDTHS


def _acquire(dev, name, frames, exposure=0.001):
    dev.TriggerMode = "SOFTWARE"
    dev.ExposureTime = exposure
    dev.nTriggers, dev.nFramesPerTrigger = 1, frames
    dev.DestinationFileName = name
    dev.Arm()
    dev.SoftwareTrigger()
    wait_state(dev, DevState.STANDBY)


def test_per_channel_windows_reach_the_file(dev, tmp_path):
    windows = [(600, 700, 1100, 1300), (0, 99, 4000, 4095), (2000, 2000, 0, 4095),
               (10, 3000, 1200, 1201)]
    for ch, (l0, h0, l1, h1) in enumerate(windows):
        dev.write_attribute(f"Window1_Ch{ch}", [l0, h0])
        dev.write_attribute(f"Window2_Ch{ch}", [l1, h1])
    _acquire(dev, "windows", 5)
    g = xspress3_group(tmp_path / "windows.h5")
    np.testing.assert_array_equal(g.attrs["windows"], windows)
    ticks = int(g.attrs["exposure_ticks"])
    for i in range(5):
        expected = scalers(frame(SEED, i, NCH), ticks, windows)
        np.testing.assert_array_equal(g["in_window_0"][i], expected[:, 5])
        np.testing.assert_array_equal(g["in_window_1"][i], expected[:, 6])
    for ch, (l0, h0, l1, h1) in enumerate(windows):
        assert list(dev.command_inout("ReadRawCounts_Window1", [ch, 1, 5])) == [
            int(frame(SEED, i, NCH)[ch, l0:h0 + 1].sum()) for i in range(5)]
        assert list(dev.command_inout("ReadRawCounts_Window2", [ch, 1, 5])) == [
            int(frame(SEED, i, NCH)[ch, l1:h1 + 1].sum()) for i in range(5)]
    last = frame(SEED, 4, NCH)
    assert list(dev.LatestWindow1Counts) == [int(last[c, w[0]:w[1] + 1].sum())
                                             for c, w in enumerate(windows)]
    # The windows stay as written for the next acquisition (sent again with every Arm).
    dev.Window1_Ch1 = [50, 60]
    _acquire(dev, "windows2", 1)
    g = xspress3_group(tmp_path / "windows2.h5")
    assert list(g.attrs["windows"][1]) == [50, 60, 4000, 4095]
    assert list(g.attrs["windows"][0]) == list(windows[0])


def test_per_channel_event_widths_change_the_dead_time_correction(dev, tmp_path):
    _acquire(dev, "calibrated", 3)
    assert [dev.read_attribute(f"EventWidth_Ch{c}").value for c in range(NCH)] == EVENT_WIDTHS
    calibrated = np.array(dev.DeadTimeCorrection)
    dev.EventWidth_Ch1 = 40
    dev.EventWidth_Ch3 = 0
    widths = [EVENT_WIDTHS[0], 40, EVENT_WIDTHS[2], 0]
    assert [dev.read_attribute(f"EventWidth_Ch{c}").value for c in range(NCH)] == widths
    _acquire(dev, "widths", 3)
    g = xspress3_group(tmp_path / "widths.h5")
    assert list(g["event_width"][:]) == widths
    expected = [dead_time_correction(scalers(frame(SEED, i, NCH), int(g.attrs["exposure_ticks"])),
                                     widths) for i in range(3)]
    np.testing.assert_allclose(g["dead_time_correction"][:], expected)
    dtc = np.array(dev.DeadTimeCorrection)
    np.testing.assert_allclose(dtc, expected[2])
    # The same frame content (frame 2 of each acquisition): a wider event means more dead time.
    assert dtc[1] > calibrated[1] and dtc[3] < calibrated[3]
    np.testing.assert_allclose(dtc[[0, 2]], calibrated[[0, 2]])
    for ch in range(NCH):
        raw = dev.command_inout("ReadRawCounts_Window1", [ch, 1, 3])
        np.testing.assert_allclose(dev.command_inout("ReadDtcCounts_Window1", [ch, 1, 3]),
                                   np.array(raw) * np.array(expected)[:, ch])


def test_serve_refuses_per_channel_values_with_its_reason(dev, tmp_path):
    dev.EventWidth_Ch2 = 2000
    why = refused(dev.Arm)
    assert ("xsp3-acquire serve: configure: event_width 2:2000: event width beyond 1000 clock "
            "ticks") in why, why
    assert dev.state() == DevState.STANDBY
    dev.EventWidth_Ch2 = 8
    dev.Rois = ["Fe:9:600:700"]
    why = refused(dev.Arm)
    assert "xsp3-acquire serve: configure: roi Fe:9:600:700: no such channel" in why, why
    dev.Rois = ["Fe:600:5000"]
    assert "roi Fe:600:5000: bins must lie in 0..=4095" in refused(dev.Arm)
    assert dev.state() == DevState.STANDBY
    dev.Rois = []
    _acquire(dev, "accepted", 2)
    assert dev.nFramesAcquired == 2


def test_roi_sums_read_back_live_and_after_the_acquisition(dev, tmp_path):
    assert (list(dev.RoiNames or []), dev.RoiFrame) == ([], -1)
    dev.Rois = ["Fe:600:700", "Mn:1:1100:1300", "Mn:3:0:9"]
    assert list(dev.Rois) == ["Fe:600:700", "Mn:1:1100:1300", "Mn:3:0:9"]
    _acquire(dev, "rois", 7)
    assert list(dev.RoiNames) == ["Fe", "Mn"]
    assert dev.RoiFrame == 6
    last = frame(SEED, 6, NCH)
    fe = [int(last[c, 600:701].sum()) for c in range(NCH)]
    mn = [0, int(last[1, 1100:1301].sum()), 0, int(last[3, 0:10].sum())]
    np.testing.assert_array_equal(dev.RoiCounts, [fe, mn])
    g = xspress3_group(tmp_path / "rois.h5")
    np.testing.assert_array_equal(g["roi_Fe"][6], fe)
    np.testing.assert_allclose(dev.RoiDtcCounts,
                               np.array([fe, mn]) * g["dead_time_correction"][6])
    # Live while running: the frame of the sums moves on.
    dev.nFramesPerTrigger = 1_000_000
    dev.DestinationFileName = "rois_live"
    dev.Arm()
    dev.SoftwareTrigger()
    wait_for("ROI sums of the running acquisition", lambda: dev.RoiFrame > 50)
    first = dev.RoiFrame
    wait_for("later ROI sums", lambda: dev.RoiFrame > first)
    counts = dev.RoiCounts
    assert counts.shape == (2, NCH) and (counts[0] > 0).all()
    dev.Stop()


def _check_frame_readback(dev, number, ticks, windows, rois):
    """Spectra, scalers, dead-time correction, window counts and ROI sums read over Tango are
    those of frame `number` by the simulator's formula."""
    f = frame(SEED, number, NCH)
    sc = scalers(f, ticks, windows)
    dtc = dead_time_correction(sc, EVENT_WIDTHS)
    assert dev.LatestFrameNumber == number
    for ch in range(NCH):
        np.testing.assert_array_equal(dev.read_attribute(f"Spectrum_Ch{ch}").value, f[ch])
    np.testing.assert_array_equal(dev.Scalers, sc)
    np.testing.assert_allclose(dev.DeadTimeCorrection, dtc)
    assert list(dev.LatestWindow1Counts) == list(sc[:, 5])
    assert list(dev.LatestWindow2Counts) == list(sc[:, 6])
    assert dev.RoiFrame == number and list(dev.RoiNames) == [name for name, _ in rois]
    expected = np.array([[int(f[c, lo:hi + 1].sum()) if (lo, hi) != (None, None) else 0
                          for c, (lo, hi) in enumerate(ranges)] for _, ranges in rois])
    np.testing.assert_array_equal(dev.RoiCounts, expected)
    np.testing.assert_allclose(dev.RoiDtcCounts, expected * dtc)
    return sc, dtc


def test_live_readback_while_a_software_triggered_acquisition_runs(dev, tmp_path):
    """Each point of a step scan: trigger, then read the frame's values over Tango while the
    acquisition still runs (MAX IV's device reads them from the SDK; here from the monitor)."""
    windows = [(600, 700, 1100, 1300), (0, 99, 4000, 4095), (2000, 2000, 0, 4095),
               (10, 3000, 1200, 1201)]
    for ch, (l0, h0, l1, h1) in enumerate(windows):
        dev.write_attribute(f"Window1_Ch{ch}", [l0, h0])
        dev.write_attribute(f"Window2_Ch{ch}", [l1, h1])
    dev.Rois = ["Fe:600:700", "Mn:1:1100:1300"]
    rois = [("Fe", [(600, 700)] * NCH),
            ("Mn", [(None, None), (1100, 1300), (None, None), (None, None)])]
    dev.TriggerMode = "SOFTWARE"
    dev.ExposureTime = 0.002
    dev.nTriggers, dev.nFramesPerTrigger = 4, 1
    dev.DestinationFileName = "steps"
    ticks = round((0.002 - 25e-9) * 80e6)
    dev.Arm()
    # The status reports what the detector now uses.
    for ch, (l0, h0, l1, h1) in enumerate(windows):
        assert list(dev.read_attribute(f"Window1_Ch{ch}").value) == [l0, h0]
    seen = []
    for i in range(3):
        wait_for(f"ReadyForSwTrigger before trigger {i}", lambda: dev.ReadyForSwTrigger)
        dev.SoftwareTrigger()
        wait_for(f"frame {i} read back", lambda: dev.LatestFrameNumber == i)
        assert dev.state() == DevState.RUNNING and dev.FramesLostTotal == 0
        sc, dtc = _check_frame_readback(dev, i, ticks, windows, rois)
        seen.append((sc, dtc))
        for ch in range(NCH):
            # Every frame so far, live; the next one is not acquired yet (-1).
            assert list(dev.command_inout("ReadRawCounts_Window1", [ch, 1, i + 2])) == [
                int(s[ch, 5]) for s, _ in seen] + [-1]
            assert list(dev.command_inout("ReadRawCounts_Window2", [ch, i + 1, i + 1])) == [
                int(sc[ch, 6])]
            np.testing.assert_allclose(
                dev.command_inout("ReadDtcCounts_Window1", [ch, 1, i + 1]),
                [s[ch, 5] * d[ch] for s, d in seen])
            np.testing.assert_allclose(
                dev.command_inout("ReadDtcCounts_Window2", [ch, i + 1, i + 2]),
                [sc[ch, 6] * dtc[ch], -1.0])
    wait_for("the last trigger", lambda: dev.ReadyForSwTrigger)
    dev.SoftwareTrigger()
    wait_state(dev, DevState.STANDBY)
    # After the end: the last frame, and the counts (now from the file) are the same.
    _check_frame_readback(dev, 3, ticks, windows, rois)
    g = xspress3_group(tmp_path / "steps.h5")
    for ch in range(NCH):
        assert list(dev.command_inout("ReadRawCounts_Window1", [ch, 1, 3])) == [
            int(s[ch, 5]) for s, _ in seen] == list(g["in_window_0"][:3, ch])


def test_live_window_counts_of_a_fast_acquisition(dev):
    """Internally timed 1 ms frames without a file: the counts of the frames the monitor served
    are exact, the others -1; Stop keeps them readable."""
    dev.TriggerMode = "SOFTWARE"
    dev.ExposureTime = 0.001
    dev.nTriggers, dev.nFramesPerTrigger = 1, 1_000_000
    dev.DestinationFileName = ""
    ticks = round((0.001 - 25e-9) * 80e6)
    dev.Arm()
    dev.SoftwareTrigger()
    # Status and monitor are two sockets: each has to have seen frames.
    wait_for("frames on the monitor", lambda: dev.LatestFrameNumber > 20)
    wait_for("frames in the status", lambda: dev.nFramesAcquired > 20)

    def check(n):
        counts = [np.array(dev.command_inout(cmd, [ch, 1, n]))
                  for cmd in ("ReadRawCounts_Window1", "ReadDtcCounts_Window1")
                  for ch in range(NCH)]
        raw, dtc = counts[:NCH], counts[NCH:]
        seen = np.flatnonzero(raw[0] >= 0)
        assert 0 < len(seen) < n
        for i in map(int, seen):
            sc = scalers(frame(SEED, i, NCH), ticks)
            k = dead_time_correction(sc, EVENT_WIDTHS)
            for ch in range(NCH):
                assert raw[ch][i] == sc[ch, 5]
                assert dtc[ch][i] == pytest.approx(sc[ch, 5] * k[ch])
        for ch in range(NCH):
            assert (raw[ch][raw[0] < 0] == -1).all() and (dtc[ch][raw[0] < 0] == -1).all()
        return raw[0]

    n = dev.nFramesAcquired
    running = check(n)
    assert dev.state() == DevState.RUNNING
    dev.Stop()
    after = check(n)
    np.testing.assert_array_equal(after[running >= 0], running[running >= 0])
