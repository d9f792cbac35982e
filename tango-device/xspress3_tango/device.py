"""Tango device `Xspress3DS`: MAX IV's Xspress3 interface over `xsp3-acquire serve`.

The device keeps MAX IV's attributes, commands, properties and states, and turns them into JSON
commands on the serve process's control socket (docs/tango.md). One lock serialises every use of
the control socket; a thread polls `status` ten times a second, drives the state machine and
pushes change events on `State` and `nFramesAcquired`; while an acquisition runs it also asks the
monitor for the latest frame (spectra, scalers, dead-time correction, ROI values) and keeps each
frame's window counts for `ReadRawCounts_*` / `ReadDtcCounts_*`.
"""
import collections
import os
import threading
import time

import h5py
import numpy as np
import tango
from tango import AttrWriteType, DevState
from tango.server import Device, attribute, command, device_property

from . import mapping
from .control import ControlClient, ControlError, LatestFrame, MonitorClient, Unreachable
from .server import ServeProcess, serve_argv

SCALER_NAMES = ["time", "reset_ticks", "reset_count", "all_events", "all_good", "in_window_0",
                "in_window_1", "pileup", "total_ticks"]
POLL_PERIOD_S = 0.1
# How long Init waits for a started serve process to answer, and Stop for the files to close.
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0
# serve's `arm` replies once every sink is ready (a PUB stream waits up to 1 s for a subscriber).
ARM_TIMEOUT_S = 8.0
# Frames whose window counts the device keeps from the monitor for ReadRawCounts while running
# (about 200 bytes each).
MAX_MONITORED_FRAMES = 20_000


def _refuse(reason, desc, origin):
    tango.Except.throw_exception(reason, desc, origin)


def _status_counter(key, doc):
    def fget(self):
        return int(self._status.get(key, 0))

    return attribute(dtype=int, doc=doc, fget=fget)


class Xspress3DS(Device):
    """Xspress3 detector (MAX IV's Xspress3DS interface) driving `xsp3-acquire serve`."""

    ControlEndpoint = device_property(
        dtype=str, default_value="tcp://127.0.0.1:9997",
        doc="The serve process's JSON control socket (its --control).")
    StartServer = device_property(
        dtype=bool, default_value=False,
        doc="Start and watch `xsp3-acquire serve` with the properties below as its options.")
    ServerBinary = device_property(
        dtype=str, default_value="xsp3-acquire", doc="With StartServer: the binary to run.")
    ServerArgs = device_property(
        dtype=(str,), default_value=[],
        doc="With StartServer: further options, e.g. --channels 4 --sim content=spectrum.")
    BindAddress = device_property(
        dtype=str, default_value="127.0.0.1",
        doc="With StartServer: the address the data stream and monitor bind to.")
    StreamerPort = device_property(
        dtype=int, default_value=9999,
        doc="With StartServer: port of the data stream (0: no stream).")
    StreamerType = device_property(
        dtype=str, default_value="pub",
        doc="With StartServer: pub (lossy, as MAX IV's streamer) or push (lossless).")
    MonitorPort = device_property(
        dtype=int, default_value=9998,
        doc="Port of the live monitor (0: none); the device reads the latest spectrum from it on "
            "the control endpoint's host.")
    OutputDirectory = device_property(
        dtype=str, default_value="",
        doc="The serve process's --out: DestinationFileName lies inside it.")
    Channels = device_property(
        dtype=int, default_value=4,
        doc="Channels of the detector (passed as --channels with StartServer).")
    ReturnCounters = device_property(
        dtype=bool, default_value=False,
        doc="Add the commands ReadRawCounts_Window1/2 and ReadDtcCounts_Window1/2.")
    EventWidths = device_property(
        dtype=(int,), default_value=[],
        doc="Per-channel event widths (clock ticks) overriding the calibrated ones in the "
            "dead-time correction, one per channel (as MAX IV's: otherwise ignored).")
    GateDebounce = device_property(
        dtype=int, default_value=80,
        doc="Debounce of the gate input in clock ticks with TriggerMode EXTERNAL_MULTI_GATE "
            "(MAX IV's 80: 1 us).")

    # ---- life cycle -------------------------------------------------------------------------

    def init_device(self):
        super().init_device()
        self._lock = threading.RLock()
        self._events = collections.deque()
        self._set_state(DevState.INIT, "initialising")
        self._status = {}
        self._exposure_time = 0.1
        self._n_triggers = 1
        self._frames_per_trigger = 1
        self._latency_time = 0.0
        self._trigger_mode = "SOFTWARE"
        self._destination = ""
        self._overwritable = False
        self._write_hdf5 = True
        # The Tango database stores an empty string property as " ".
        out = self.OutputDirectory.strip()
        self._output_directory = os.path.abspath(out) if out else ""
        n = self.Channels
        self._windows = {1: [[0, mapping.N_BINS - 1]] * n, 2: [[0, mapping.N_BINS - 1]] * n}
        # Event widths sent with every configure, by channel: the EventWidths property (MAX IV
        # uses it only when it has one value per channel), then EventWidth_ChN writes.
        widths = list(self.EventWidths)
        self._event_width_override = dict(enumerate(widths)) if len(widths) == n else {}
        self._rois = []
        self._armed = None
        self._sw_triggers = 0
        self._frames_pushed = -1
        self._last_files = []
        self._latest = None  # LatestFrame
        # frame number -> float[3, channels]: in_window_0, in_window_1, dead-time correction
        self._monitored = collections.OrderedDict()
        self._process = None
        self.set_change_event("State", True, False)
        self.set_change_event("nFramesAcquired", True, False)
        self._control = ControlClient(self.ControlEndpoint)
        self._monitor = None
        if self.MonitorPort > 0:
            host = self.ControlEndpoint.rsplit(":", 1)[0]
            self._monitor = MonitorClient(f"{host}:{self.MonitorPort}")
        try:
            if self.StartServer:
                self._start_server()
            self._status = self._control.request("status")
            self._adopt_detector_windows()
        except (RuntimeError, Unreachable, ControlError) as e:
            self._set_state(DevState.FAULT, str(e))
        else:
            ignored = (f"; EventWidths property ignored: {len(widths)} values for {n} channels "
                       "(MAX IV's rule: one per channel, else the calibrated widths)"
                       if widths and len(widths) != n else "")
            self._set_state(DevState.STANDBY, "ready" + ignored)
        self._push_events()
        self._stop_polling = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, daemon=True)
        self._poller.start()

    def delete_device(self):
        self._stop_polling.set()
        self._poller.join()
        if self._process is not None:
            # `shutdown` is answered at once; the process then finishes a running acquisition,
            # closes its files and exits, which terminate() waits for.
            if self._process.exit_code() is None:
                try:
                    self._control.request("shutdown")
                except (ControlError, Unreachable) as e:
                    self.warn_stream(f"shutdown of the serve process: {e}")
            self._process.terminate()
            self._process = None
        self._control.close()
        if self._monitor is not None:
            self._monitor.close()

    def _adopt_detector_windows(self):
        """The windows the detector holds (serve's `status`) become the attributes' values."""
        windows = self._status.get("windows")
        if isinstance(windows, list) and len(windows) == self.Channels:
            self._windows = {1: [[int(w[0]), int(w[1])] for w in windows],
                             2: [[int(w[2]), int(w[3])] for w in windows]}

    def _start_server(self):
        extra = list(self.ServerArgs)
        if "--channels" not in extra:
            extra += ["--channels", str(self.Channels)]
        argv = serve_argv(self.ServerBinary, self.ControlEndpoint, self.BindAddress,
                          self.StreamerPort, self.StreamerType, self.MonitorPort,
                          self._output_directory, extra)
        self._process = ServeProcess(argv)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._process.exit_code() is not None:
                raise RuntimeError(self._process.describe_exit())
            try:
                self._control.request("status")
                return
            except Unreachable:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"xsp3-acquire serve (pid {self._process.pid}) did not "
                                       f"answer on {self.ControlEndpoint} within "
                                       f"{START_TIMEOUT_S:g} s") from None

    # ---- state machine ----------------------------------------------------------------------

    def _set_state(self, state, text):
        if self.get_state() != state:
            self._events.append(("State", state))
        self.set_state(state)
        self.set_status(text)

    def _push_events(self):
        """Pushes the events queued under the lock, after releasing it: pushing waits for the
        Tango device monitor, which a client request holds while it waits for the lock."""
        while True:
            try:
                name, value = self._events.popleft()
            except IndexError:  # empty (another thread may have taken the last one)
                return
            self.push_change_event(name, value)

    def _poll_loop(self):
        while not self._stop_polling.wait(POLL_PERIOD_S):
            self._refresh()
            if self.get_state() == DevState.RUNNING:
                with self._lock:
                    self._poll_monitor_locked()

    def always_executed_hook(self):
        self._refresh()

    def _refresh(self):
        with self._lock:
            self._refresh_locked()
        self._push_events()

    def _refresh_locked(self):
        """One `status` round trip: counters, the end of an acquisition, FAULT if unreachable."""
        if self.get_state() in (DevState.FAULT, DevState.INIT):
            return
        if self._process is not None and self._process.exit_code() is not None:
            self._set_state(DevState.FAULT, self._process.describe_exit())
            return
        try:
            status = self._control.request("status")
        except (Unreachable, ControlError) as e:
            gone = self._process is not None and self._process.exit_code() is not None
            self._set_state(DevState.FAULT, self._process.describe_exit() if gone else str(e))
            return
        self._status = status
        frames = int(status.get("frames_acquired", 0))
        if frames != self._frames_pushed:
            self._frames_pushed = frames
            self._events.append(("nFramesAcquired", frames))
        # `stopping` (also at the end of every acquisition): the files are still being closed.
        if self._armed is not None and status.get("state") not in ("running", "stopping"):
            self._end_of_acquisition(status)

    def _end_of_acquisition(self, status):
        self._armed = None
        self._last_files = [f["path"] for f in status.get("files", [])]
        # Between acquisitions serve's monitor answers with the last frame of this one.
        if not self._poll_monitor_locked():
            self._read_file_tail()
        state = status.get("state")
        if state in ("failed", "fault"):
            why = status.get("last_error") or "; ".join(status.get("errors", [])) or state
            self._set_state(DevState.FAULT, f"acquisition {state}: {why}")
        else:
            self._set_state(DevState.STANDBY, f"acquisition {state}: "
                                              f"{status.get('frames_acquired', 0)} frames")

    def _poll_monitor_locked(self):
        """Asks the monitor for the latest frame; true if one came."""
        if self._monitor is None:
            return False
        try:
            latest = self._monitor.latest()
        except (Unreachable, ControlError) as e:
            self.debug_stream(f"monitor: {e}")
            return False  # keep the last frame
        if latest is None:
            return False
        self._latest = latest
        if latest.scalers is not None and latest.dead_time_correction is not None:
            counts = np.stack([latest.scalers[:, 5], latest.scalers[:, 6],
                               latest.dead_time_correction]).astype(np.float64)
            self._monitored[latest.number] = counts
            self._monitored.move_to_end(latest.number)
            while len(self._monitored) > MAX_MONITORED_FRAMES:
                self._monitored.popitem(last=False)
        return True

    # ---- files of the last acquisition ------------------------------------------------------

    def _rows(self, dataset, first, stop):
        """Rows first..stop (0-based, stop exclusive) of `dataset` across the last files."""
        parts, offset = [], 0
        for path in self._last_files:
            with h5py.File(path, "r") as f:
                d = f["entry/instrument/xspress3"][dataset]
                n = d.shape[0]
                lo, hi = max(first - offset, 0), min(stop - offset, n)
                if lo < hi:
                    parts.append(d[lo:hi])
                offset += n
        return np.concatenate(parts) if parts else None

    def _frames_in_files(self):
        total = 0
        for path in self._last_files:
            with h5py.File(path, "r") as f:
                total += f["entry/instrument/xspress3/time"].shape[0]
        return total

    def _read_file_tail(self):
        """The last frame's spectra and scalers from the files (without a monitor)."""
        if not self._last_files:
            return
        try:
            n = self._frames_in_files()
            if n == 0:
                return
            spectra = self._rows("data", n - 1, n)[0]
            scalers = np.stack([self._rows(s, n - 1, n)[0] for s in SCALER_NAMES], axis=1)
            dtc = self._rows("dead_time_correction", n - 1, n)[0]
            with h5py.File(self._last_files[-1], "r") as f:
                last = int(f["entry/instrument/xspress3/frame_number"][-1])
        except (OSError, KeyError) as e:
            self.warn_stream(f"cannot read the acquisition's files {self._last_files}: {e}")
            return
        self._latest = LatestFrame(last, spectra, scalers.astype(np.uint32), dtc, None)

    def _event_width(self, ch):
        """The width the next Arm sends, else the one the detector uses now (serve's status)."""
        if ch in self._event_width_override:
            return self._event_width_override[ch]
        widths = self._status.get("event_widths")
        if isinstance(widths, list) and ch < len(widths):
            return int(widths[ch])
        _refuse("Xspress3DS_Unknown",
                f"the serve process at {self.ControlEndpoint} does not report event widths in "
                f"its status; write EventWidth_Ch{ch} or set the EventWidths property",
                f"EventWidth_Ch{ch}")

    # ---- MAX IV's attributes ----------------------------------------------------------------

    @attribute(dtype=float, format="%e", unit="s")
    def ExposureTime(self):
        return self._exposure_time

    @ExposureTime.write
    def ExposureTime(self, value):
        self._exposure_time = mapping.check_positive_time("ExposureTime", value)

    @attribute(dtype=int)
    def nTriggers(self):
        return self._n_triggers

    @nTriggers.write
    def nTriggers(self, value):
        self._n_triggers = mapping.check_count("nTriggers", value)

    @attribute(dtype=int)
    def nFramesPerTrigger(self):
        return self._frames_per_trigger

    @nFramesPerTrigger.write
    def nFramesPerTrigger(self, value):
        self._frames_per_trigger = mapping.check_count("nFramesPerTrigger", value)

    @attribute(dtype=float, format="%.2e", unit="s")
    def LatencyTime(self):
        return self._latency_time

    @LatencyTime.write
    def LatencyTime(self, value):
        self._latency_time = mapping.check_latency(value)

    @attribute(dtype=str, doc="SOFTWARE, EXTERNAL_MULTI or EXTERNAL_MULTI_GATE")
    def TriggerMode(self):
        return self._trigger_mode

    @TriggerMode.write
    def TriggerMode(self, value):
        self._trigger_mode = mapping.check_trigger_mode(value)

    @attribute(dtype=str, memorized=True, hw_memorized=True,
               doc="File written on Arm, inside OutputDirectory; empty: no file")
    def DestinationFileName(self):
        return self._destination

    @DestinationFileName.write
    def DestinationFileName(self, value):
        if value:
            mapping.relative_file_name(value, self._output_directory)
        self._destination = value

    @attribute(dtype=bool)
    def DestinationFileOverwritable(self):
        return self._overwritable

    @DestinationFileOverwritable.write
    def DestinationFileOverwritable(self, value):
        self._overwritable = value

    @attribute(dtype=bool, doc="Write DestinationFileName on Arm")
    def WriteHdf5(self):
        return self._write_hdf5

    @WriteHdf5.write
    def WriteHdf5(self, value):
        self._write_hdf5 = value

    @attribute(dtype=float, format="%.2e", unit="s", doc="The time-frame generator gap")
    def ReadoutTime(self):
        return mapping.GAP_NS * 1e-9

    @attribute(dtype=int, doc="Frames read from the detector in this (or the last) acquisition")
    def nFramesAcquired(self):
        return int(self._status.get("frames_acquired", 0))

    @attribute(dtype=int)
    def nChannels(self):
        return self.Channels

    @attribute(dtype=bool, doc="Running in SOFTWARE mode and every trigger sent has its frames")
    def ReadyForSwTrigger(self):
        acq = self._armed
        if self.get_state() != DevState.RUNNING or acq is None or acq["mode"] != "SOFTWARE":
            return False
        done = int(self._status.get("frames_acquired", 0))
        return (self._sw_triggers < acq["n_triggers"]
                and done >= self._sw_triggers * acq["frames_per_trigger"])

    # ---- per-channel attributes -------------------------------------------------------------

    def initialize_dynamic_attributes(self):
        for ch in range(self.Channels):
            for win in (1, 2):
                self.add_attribute(
                    tango.SpectrumAttr(f"Window{win}_Ch{ch}", tango.DevLong,
                                       AttrWriteType.READ_WRITE, 2),
                    r_meth=self.read_window, w_meth=self.write_window)
            self.add_attribute(
                tango.Attr(f"EventWidth_Ch{ch}", tango.DevShort, AttrWriteType.READ_WRITE),
                r_meth=self.read_event_width, w_meth=self.write_event_width)
            self.add_attribute(
                tango.SpectrumAttr(f"Spectrum_Ch{ch}", tango.DevULong, AttrWriteType.READ,
                                   mapping.N_BINS),
                r_meth=self.read_spectrum)
        if self.ReturnCounters:
            for name, out in (("ReadRawCounts_Window1", int), ("ReadRawCounts_Window2", int),
                              ("ReadDtcCounts_Window1", float),
                              ("ReadDtcCounts_Window2", float)):
                cmd = command(f=getattr(self, name), dtype_in=(int,), dtype_out=(out,),
                              doc_in="channel, first frame, last frame (frames from 1)",
                              doc_out="counts per frame, -1 where not available")
                self.add_command(cmd, True)

    @staticmethod
    def _channel_of(attr):
        name = attr.get_name()
        return int(name.rsplit("Ch", 1)[1]), name

    def read_window(self, attr):
        ch, name = self._channel_of(attr)
        attr.set_value(self._windows[1 if name.startswith("Window1") else 2][ch])

    def write_window(self, attr):
        ch, name = self._channel_of(attr)
        value = mapping.clip_window(name, [int(v) for v in attr.get_write_value()])
        win = 1 if name.startswith("Window1") else 2
        windows = list(self._windows[win])
        windows[ch] = value
        self._windows[win] = windows

    def read_event_width(self, attr):
        ch, _ = self._channel_of(attr)
        attr.set_value(self._event_width(ch))

    def write_event_width(self, attr):
        ch, name = self._channel_of(attr)
        self._event_width_override[ch] = mapping.check_event_width(name, attr.get_write_value())

    def read_spectrum(self, attr):
        ch, _ = self._channel_of(attr)
        latest = self._latest
        attr.set_value(latest.spectra[ch] if latest is not None
                       else np.zeros(0, dtype=np.uint32))

    # ---- beyond MAX IV: readback and loss counters ------------------------------------------

    @attribute(dtype=int, doc="Frame number of the spectra in Spectrum_ChN (-1: none yet)")
    def LatestFrameNumber(self):
        return -1 if self._latest is None else int(self._latest.number)

    def _window_sums(self, win):
        latest = self._latest
        if latest is None:
            return np.zeros(0, dtype=np.int64)
        if latest.scalers is not None:
            # The detector's own in-window scalers (in_window_0, in_window_1).
            return latest.scalers[:, 4 + win].astype(np.int64)
        return np.array([int(latest.spectra[c, lo:hi + 1].sum())
                         for c, (lo, hi) in enumerate(self._windows[win])], dtype=np.int64)

    @attribute(dtype=(int,), max_dim_x=256,
               doc="Per channel: the in_window_0 scaler of frame LatestFrameNumber")
    def LatestWindow1Counts(self):
        return self._window_sums(1)

    @attribute(dtype=(int,), max_dim_x=256,
               doc="Per channel: the in_window_1 scaler of frame LatestFrameNumber")
    def LatestWindow2Counts(self):
        return self._window_sums(2)

    @attribute(dtype=((int,),), max_dim_x=9, max_dim_y=256,
               doc="Scalers [channel][ScalerNames] of frame LatestFrameNumber: from the monitor "
                   "while running, the last frame after")
    def Scalers(self):
        latest = self._latest
        if latest is None or latest.scalers is None:
            return np.zeros((0, 9), dtype=np.int64)
        return latest.scalers.astype(np.int64)

    @attribute(dtype=(str,), max_dim_x=9)
    def ScalerNames(self):
        return SCALER_NAMES

    @attribute(dtype=(float,), max_dim_x=256,
               doc="Per channel dead-time correction of frame LatestFrameNumber with the "
                   "acquisition's event widths, as the file has it (NaN: saturated)")
    def DeadTimeCorrection(self):
        latest = self._latest
        if latest is None or latest.dead_time_correction is None:
            return np.zeros(0)
        return latest.dead_time_correction

    @attribute(dtype=(int,), max_dim_x=256,
               doc="Per channel event widths (clock ticks) of the detector's calibration")
    def CalibratedEventWidths(self):
        return [int(w) for w in self._status.get("calibrated_event_widths", [])]

    @attribute(dtype=(str,), max_dim_x=64,
               doc="Software ROIs NAME:[CH:]LOW:HIGH sent with Arm (serve's `rois`): summed per "
                   "frame into the file (roi_NAME, roi_NAME_dtc) and read back in RoiCounts")
    def Rois(self):
        return self._rois

    @Rois.write
    def Rois(self, value):
        self._rois = mapping.check_rois(list(value))

    def _roi_source(self):
        """(ROI values, frame): the monitor's latest frame, else serve's status (which sums the
        frames the file or stream took)."""
        latest = self._latest
        if latest is not None and latest.rois is not None:
            return latest.rois, latest.number
        return self._status.get("rois", []), self._status.get("rois_frame")

    def _roi_values(self, key, dtype, fill):
        rois, _ = self._roi_source()
        if not rois:
            return np.zeros((0, 0), dtype=dtype)
        return np.array([[fill if v is None else v for v in r[key]] for r in rois], dtype=dtype)

    @attribute(dtype=(str,), max_dim_x=64, doc="Names of the rows of RoiCounts and RoiDtcCounts")
    def RoiNames(self):
        return [r["name"] for r in self._roi_source()[0]]

    @attribute(dtype=((int,),), max_dim_x=256, max_dim_y=64,
               doc="[roi][channel] sums of frame RoiFrame")
    def RoiCounts(self):
        return self._roi_values("counts", np.int64, 0)

    @attribute(dtype=((float,),), max_dim_x=256, max_dim_y=64,
               doc="RoiCounts times the dead-time correction (NaN where saturated)")
    def RoiDtcCounts(self):
        return self._roi_values("dtc", np.float64, np.nan)

    @attribute(dtype=int, doc="Frame of RoiCounts (-1: none)")
    def RoiFrame(self):
        frame = self._roi_source()[1]
        return -1 if frame is None else int(frame)

    FramesWritten = _status_counter("frames_written", "Frames written to the file")
    FramesSent = _status_counter("frames_sent", "Frames sent on the data stream")
    FramesFlushed = _status_counter("frames_flushed", "Frames written and flushed to disk")
    FramesLost = _status_counter("frames_lost", "Frames overwritten in the SDK before readout")
    FramesLostTotal = _status_counter(
        "frames_lost_total", "Every frame missing somewhere: FramesLost + StreamDrops + "
                             "StreamUnsent + FramesUnwritten")
    StreamUnsent = _status_counter("stream_unsent", "Frames acquired, not delivered to the stream")
    FramesUnwritten = _status_counter("frames_unwritten", "Frames acquired, not in the file")
    TriggersIgnored = _status_counter(
        "triggers_ignored", "Software triggers the acquisition could not use")
    SdkOverruns = _status_counter("sdk_overruns", "SDK circular-buffer overruns")
    StreamDrops = _status_counter("stream_drops", "Frames refused by a PUB stream")
    RingFill = _status_counter("ring_fill", "Frames waiting in the ring")
    RingSlots = _status_counter("ring_slots", "Ring capacity in frames")
    RingHighWater = _status_counter("ring_high_water", "Most frames ever waiting in the ring")
    RingFullEvents = _status_counter("ring_full_events", "Times the ring was full")

    @attribute(dtype=int, doc="Process id of the serve process started by the device (-1: none)")
    def ServerPid(self):
        return -1 if self._process is None else self._process.pid

    @attribute(dtype=float, unit="Hz")
    def AcquisitionRate(self):
        return float(self._status.get("rate_hz", 0.0))

    @attribute(dtype=(str,), max_dim_x=4096, doc="Files of the last finished acquisition")
    def LastFiles(self):
        return self._last_files

    # ---- MAX IV's commands ------------------------------------------------------------------

    def _configure_request(self):
        """(the `configure` fields, the frames they acquire)."""
        trigger, frames = mapping.trigger_fields(
            self._trigger_mode, self._n_triggers, self._frames_per_trigger, self.GateDebounce)
        req = {
            **trigger,
            "exposure": mapping.exposure_seconds(self._exposure_time, self._latency_time),
            "gap_ns": mapping.GAP_NS,
            "windows": mapping.channel_windows(self._windows[1], self._windows[2]),
        }
        if self._event_width_override:
            req["event_width"] = sorted([ch, w] for ch, w in self._event_width_override.items())
        if self._rois:
            req["rois"] = self._rois
        if self._write_hdf5 and self._destination:
            name = mapping.relative_file_name(self._destination, self._output_directory)
            if not self._overwritable and self._output_directory:
                name = mapping.unused_name(name, self._output_directory)
            req["file"] = name
            req["overwrite"] = self._overwritable
        return req, frames

    @command
    def Arm(self):
        try:
            with self._lock:
                self._arm_locked()
        finally:
            self._push_events()

    def _arm_locked(self):
        state = self.get_state()
        if state == DevState.FAULT:
            _refuse("Xspress3DS_Fault", f"device in FAULT ({self.get_status()}); run Init",
                    "Arm")
        if state == DevState.RUNNING:
            _refuse("Xspress3DS_Running", "an acquisition is running; Stop it first", "Arm")
        try:
            req, frames = self._configure_request()
        except ValueError as e:
            _refuse("Xspress3DS_BadValue", str(e), "Arm")
        try:
            self._control.request("configure", **req)
            self._control.request("arm", timeout_s=ARM_TIMEOUT_S)
        except ControlError as e:
            _refuse("Xspress3DS_Refused", f"xsp3-acquire serve: {e}", "Arm")
        except Unreachable as e:
            self._set_state(DevState.FAULT, str(e))
            _refuse("Xspress3DS_Unreachable", str(e), "Arm")
        self._sw_triggers = 0
        self._armed = {"mode": self._trigger_mode, "n_triggers": self._n_triggers,
                       "frames_per_trigger": self._frames_per_trigger,
                       "frames": frames}
        self._latest = None
        self._monitored.clear()
        self._set_state(DevState.RUNNING, f"acquiring {frames} frames ({req['trigger']})")

    @command
    def SoftwareTrigger(self):
        with self._lock:
            acq = self._armed
            if self.get_state() != DevState.RUNNING or acq is None:
                _refuse("Xspress3DS_NotRunning", "no acquisition is running: Arm first",
                        "SoftwareTrigger")
            if acq["mode"] != "SOFTWARE":
                _refuse("Xspress3DS_NotSoftware",
                        f"the acquisition was armed with TriggerMode {acq['mode']}",
                        "SoftwareTrigger")
            try:
                self._control.request("trigger", count=1)
            except (ControlError, Unreachable) as e:
                _refuse("Xspress3DS_Refused", f"xsp3-acquire serve: {e}", "SoftwareTrigger")
            self._sw_triggers += 1

    @command
    def Stop(self):
        """Stops the acquisition and returns once the serve process has closed its files."""
        try:
            with self._lock:
                self._stop_locked()
        finally:
            self._push_events()

    def _stop_locked(self):
        if self.get_state() == DevState.FAULT:
            _refuse("Xspress3DS_Fault", f"device in FAULT ({self.get_status()}); run Init",
                    "Stop")
        try:
            self._control.request("stop")
        except (ControlError, Unreachable) as e:
            _refuse("Xspress3DS_Refused", f"xsp3-acquire serve: {e}", "Stop")
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while self._armed is not None and time.monotonic() < deadline:
            time.sleep(0.02)
            self._refresh_locked()

    # ---- window counts per frame (ReturnCounters) -------------------------------------------

    def _counts(self, arg, window, dtc, origin):
        if len(arg) != 3:
            _refuse("Xspress3DS_BadValue",
                    f"{origin} {list(arg)}: give [channel, first frame, last frame]", origin)
        channel, first, last = (int(v) for v in arg)
        if not 0 <= channel < self.Channels:
            _refuse("Xspress3DS_BadValue",
                    f"{origin}: channel {channel} is outside 0..{self.Channels - 1}", origin)
        first = max(first, 1)
        if last < first:
            _refuse("Xspress3DS_BadValue", f"{origin}: last frame {last} is before the first "
                                           f"{first}", origin)
        out = np.full(last - first + 1, -1.0 if dtc else -1, dtype=float if dtc else np.int64)
        if self._armed is not None or not self._last_files:
            return self._monitored_counts(out, channel, first, last, window, dtc)
        try:
            raw = self._rows(f"in_window_{window - 1}", first - 1, last)
            if raw is None:
                return out
            counts = raw[:, channel].astype(np.float64)
            if dtc:
                # The file's correction, made with the event widths of that acquisition; NaN
                # (saturated) becomes 0 as in MAX IV's device.
                factor = self._rows("dead_time_correction", first - 1, last)[:, channel]
                counts = np.nan_to_num(counts * factor)
        except (OSError, KeyError) as e:
            _refuse("Xspress3DS_File", f"{origin}: cannot read {self._last_files}: {e}", origin)
        out[:len(counts)] = counts
        return out

    def _monitored_counts(self, out, channel, first, last, window, dtc):
        """While running (or without files): the counts of the frames the monitor served; a frame
        acquired but not yet seen makes the device ask the monitor once (so a step scan reads
        each point's frame), the others stay -1."""
        with self._lock:
            acquired = int(self._status.get("frames_acquired", 0))
            wanted = range(first - 1, min(last, acquired))
            if any(f not in self._monitored for f in wanted):
                self._poll_monitor_locked()
            rows = [(i, self._monitored.get(f)) for i, f in enumerate(range(first - 1, last))]
        for i, row in rows:
            if row is not None:
                value = row[window - 1, channel]
                # NaN (saturated) becomes 0 as in MAX IV's device.
                out[i] = np.nan_to_num(value * row[2, channel]) if dtc else int(value)
        return out

    def ReadRawCounts_Window1(self, arg):
        return self._counts(arg, 1, False, "ReadRawCounts_Window1")

    def ReadRawCounts_Window2(self, arg):
        return self._counts(arg, 2, False, "ReadRawCounts_Window2")

    def ReadDtcCounts_Window1(self, arg):
        return self._counts(arg, 1, True, "ReadDtcCounts_Window1")

    def ReadDtcCounts_Window2(self, arg):
        return self._counts(arg, 2, True, "ReadDtcCounts_Window2")


def main(args=None):
    """Console script: `Xspress3DS INSTANCE`."""
    return Xspress3DS.run_server(args=args)
