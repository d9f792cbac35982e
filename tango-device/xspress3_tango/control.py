"""Clients of `xsp3-acquire serve`'s ZeroMQ sockets: the JSON control socket (REQ/REP) and the
live monitor (REQ/REP, latest frame). docs/protocol.md describes both.

A REQ socket that got no reply is stuck (it may not send again), so after a timeout the socket is
closed and a new one connected: the next request starts clean.
"""
import collections
import json

import numpy as np
import zmq


class ControlError(Exception):
    """The serve process answered `{"ok": false, "error": ...}`."""


class Unreachable(Exception):
    """No reply from a socket within the timeout (the process is gone, hung or elsewhere)."""


class _ReqSocket:
    def __init__(self, context, endpoint, timeout_s):
        self.context = context
        self.endpoint = endpoint
        self.timeout_ms = int(timeout_s * 1000)
        self.socket = None

    def _connect(self):
        s = self.context.socket(zmq.REQ)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDTIMEO, self.timeout_ms)
        s.connect(self.endpoint)
        self.socket = s

    def exchange(self, payload, timeout_s=None):
        if self.socket is None:
            self._connect()
        timeout_ms = self.timeout_ms if timeout_s is None else int(timeout_s * 1000)
        try:
            self.socket.send(payload)
            if self.socket.poll(timeout_ms, zmq.POLLIN) == 0:
                raise zmq.Again()
            return self.socket.recv_multipart()
        except zmq.Again:
            self.close()
            raise Unreachable(
                f"no reply from {self.endpoint} within {timeout_ms / 1000:g} s"
            ) from None

    def close(self):
        if self.socket is not None:
            self.socket.close(0)
            self.socket = None


class ControlClient:
    """JSON commands to `xsp3-acquire serve --control ENDPOINT`."""

    def __init__(self, endpoint, timeout_s=2.0, context=None):
        self.endpoint = endpoint
        self._req = _ReqSocket(context or zmq.Context.instance(), endpoint, timeout_s)

    def request(self, cmd, timeout_s=None, **fields):
        """Sends `{"cmd": cmd, **fields}`; returns the reply dict or raises ControlError."""
        parts = self._req.exchange(json.dumps({"cmd": cmd, **fields}).encode(), timeout_s)
        try:
            reply = json.loads(parts[0])
        except (ValueError, IndexError) as e:
            raise ControlError(f"{cmd}: unreadable reply from {self.endpoint}: {e}") from None
        if not isinstance(reply, dict):
            raise ControlError(f"{cmd}: reply from {self.endpoint} is not a JSON object")
        if not reply.get("ok", False):
            raise ControlError(f"{cmd}: {reply.get('error', 'refused without a reason')}")
        return reply

    def close(self):
        self._req.close()


class LatestFrame(collections.namedtuple(
        "LatestFrame", "number spectra scalers dead_time_correction rois")):
    """One monitor reply: the frame number, its spectra `uint32[channels, bins]`, and (from a
    serve process that sends them) its scalers `uint32[channels, 9]`, dead-time correction
    `float[channels]` (NaN where saturated) and ROI values (`[{name, counts, dtc}]`), else None."""


def parse_monitor_reply(endpoint, parts):
    """A LatestFrame of a 2-part monitor reply, None before the first frame."""
    if len(parts) != 2:
        raise ControlError(f"monitor {endpoint}: {len(parts)} parts, expected 2")
    try:
        meta = json.loads(parts[0])
    except ValueError as e:
        raise ControlError(f"monitor {endpoint}: header is not JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("htype") != "image":
        return None
    try:
        shape = tuple(int(n) for n in meta["shape"])
        number = int(meta["frame"])
        scalers = meta.get("scalers")
        if scalers is not None:
            scalers = np.array(scalers, dtype=np.uint32).reshape(shape[0], 9)
        dtc = meta.get("dead_time_correction")
        if dtc is not None:
            dtc = np.array([np.nan if v is None else v for v in dtc], dtype=np.float64)
            if dtc.shape != (shape[0],):
                raise ValueError(f"{dtc.size} dead-time corrections for {shape[0]} channels")
    except (KeyError, TypeError, ValueError) as e:
        raise ControlError(f"monitor {endpoint}: malformed header: {e}") from None
    mca = np.frombuffer(parts[1], dtype="<u4")
    if len(shape) != 2 or mca.size != shape[0] * shape[1]:
        raise ControlError(
            f"monitor {endpoint}: {len(parts[1])} bytes do not fit shape {list(shape)}")
    return LatestFrame(number, mca.reshape(shape), scalers, dtc, meta.get("rois"))


class MonitorClient:
    """The latest frame from `--monitor ENDPOINT` (serve answers between acquisitions too, with
    the last frame of the previous one)."""

    def __init__(self, endpoint, timeout_s=0.5, context=None):
        self.endpoint = endpoint
        self._req = _ReqSocket(context or zmq.Context.instance(), endpoint, timeout_s)

    def latest(self):
        """A LatestFrame, or None before the first frame."""
        return parse_monitor_reply(self.endpoint, self._req.exchange(b"give us a frame please!"))

    def close(self):
        self._req.close()
