"""The live page of xsp3-viewer in a real browser (Debian's headless Chromium over the DevTools
protocol, tests/interop/cdp.py) while a real `xsp3-acquire serve` acquires with the simulated
SDK. The plotted values are read from the page's uPlot instance and checked against the
simulator's content formula for the frame number the monitor served (xsp3_helpers)."""
import json
import subprocess

import numpy as np
import pytest
import zmq

from cdp import Browser
from waiting import wait_for
from xsp3_helpers import dead_time_correction, frame, free_port, rust_bin, scalers

NCH = 4
SEED = 1
# The simulator's calibrated event widths (docs/sdk-sim.md).
EVENT_WIDTHS = [6 + c for c in range(NCH)]


class Serve:
    """`xsp3-acquire serve` with a control and a monitor socket."""

    def __init__(self):
        self.control = f"tcp://127.0.0.1:{free_port()}"
        self.monitor = f"tcp://127.0.0.1:{free_port()}"
        self.process = subprocess.Popen(
            [rust_bin("xsp3-acquire"), "serve", "-q", "--control", self.control,
             "--monitor", self.monitor, "--ring-frames", "256"], stderr=subprocess.DEVNULL)
        self.context = zmq.Context()
        self.req = self.context.socket(zmq.REQ)
        self.req.setsockopt(zmq.RCVTIMEO, 20000)
        self.req.setsockopt(zmq.LINGER, 0)
        self.req.connect(self.control)

    def request(self, **cmd):
        self.req.send_json(cmd)
        reply = self.req.recv_json()
        assert reply["ok"], reply
        return reply

    def acquire(self, frames, exposure):
        self.request(cmd="configure", frames=frames, exposure=exposure,
                     windows=[[0, 600, 700], [1, 1100, 1300]], rois=["Fe:2:630:650"])
        self.request(cmd="arm")

    def close(self):
        try:
            self.request(cmd="shutdown")
            self.process.wait(30)
        finally:
            self.process.kill()
            self.process.wait()
            self.req.close()
            self.context.term()


class Viewer:
    def __init__(self, *args):
        self.process = subprocess.Popen(
            [rust_bin("xsp3-viewer"), "--http", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        assert line.startswith("xsp3-viewer: serving "), line
        self.url = line.split()[-1]

    def close(self):
        self.process.terminate()
        assert self.process.wait(30) == 0


@pytest.fixture
def serve():
    s = Serve()
    yield s
    s.close()


@pytest.fixture
def viewer(serve):
    v = Viewer("--monitor", serve.monitor, "--control", serve.control,
               "--window", "0:600:700", "--window", "1:1100:1300")
    yield v
    v.close()


@pytest.fixture
def page(viewer):
    with Browser() as b:
        b.navigate(viewer.url)
        wait_for("the page's script", lambda: b.evaluate("typeof window.xsp3Viewer") == "object")
        yield b


def page_state(page):
    return page.evaluate("""(() => {
        const v = window.xsp3Viewer;
        return {
            frame: v.frame ? v.frame.number : null,
            exptime: v.frame ? v.frame.exptime : null,
            plotted: v.plotted(),
            bins_per_point: v.binsPerPoint,
            version: v.version,
            updates: v.updates,
            errors: v.errors,
            state: document.getElementById('state').textContent,
            acquired: v.meta && v.meta.status ? v.meta.status.frames_acquired : null,
            rows: [...document.querySelectorAll('#channels tbody tr')]
                  .map(r => [...r.cells].map(c => c.textContent)),
            rois: [...document.querySelectorAll('#rois tbody tr')]
                  .map(r => [...r.cells].map(c => c.textContent)),
            counters: Object.fromEntries([...document.querySelectorAll('#counters tr')]
                  .map(r => [r.id, r.cells[1].dataset.value])),
            windows: v.windowsDrawn(),
            health: document.getElementById('health').textContent,
        };
    })()""")


def check_plotted_frame(state):
    """The page's plot holds exactly the frame the monitor served (by its frame number): each
    point the largest count of its `bins_per_point` bins (one point per pixel column)."""
    expected = frame(SEED, state["frame"], NCH)
    plotted = state["plotted"]
    g = state["bins_per_point"]
    assert g == -(-4096 // 1240)  # the 1280-pixel window's plot: 1240 pixels for 4096 bins
    assert len(plotted) == 1 + NCH
    assert plotted[0] == list(range(0, 4096, g))
    for c in range(NCH):
        np.testing.assert_array_equal(np.array(plotted[1 + c], dtype=np.uint32),
                                      expected[c].reshape(-1, g).max(axis=1))
    for c, row in enumerate(state["rows"]):
        total = int(expected[c].sum())
        assert row[:2] == [str(c), str(total)]
        assert float(row[2]) == pytest.approx(total / state["exptime"], rel=1e-3)
        assert row[3] == str(int(expected[c, 600:701].sum()))
        assert row[4] == str(int(expected[c, 1100:1301].sum()))
    # The frame's dead-time correction, from its scalers (sent by the monitor with the frame).
    ticks = round(state["exptime"] * 80e6)
    dtc = dead_time_correction(scalers(expected, ticks), EVENT_WIDTHS)
    assert [float(row[5]) for row in state["rows"]] == pytest.approx(dtc, abs=1e-4)
    assert state["rois"] == [["Fe", f"0 0 {int(expected[2, 630:651].sum())} 0"]]


def test_page_plots_the_monitor_frames_live_and_across_acquisitions(serve, viewer, page,
                                                                    tmp_path):
    serve.acquire(frames=100_000, exposure=0.005)
    # Frames come from the monitor socket, the state from the control socket's status, which
    # the page polls on its own clock: the first frame can be drawn before "running" is shown.
    first = wait_for("a plotted frame while running", lambda: (s := page_state(page))["frame"]
                     is not None and s["state"] == "running" and s)
    check_plotted_frame(first)
    assert {(w["channel"], w["lo"], w["hi"]) for w in first["windows"]} == {
        (c, lo, hi) for c in range(NCH) for lo, hi in ((600, 700), (1100, 1300))}
    page.screenshot(tmp_path / "live.png")
    assert (tmp_path / "live.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The page follows: newer frames and moving counters, each plotted frame exact.
    later = wait_for("a newer frame and counter", lambda: (s := page_state(page))["frame"] >
                     first["frame"] and int(s["counters"]["counter-frames_acquired"]) >
                     int(first["counters"]["counter-frames_acquired"]) and s)
    check_plotted_frame(later)
    assert later["counters"]["counter-frames_lost"] == "0"
    assert later["errors"] == 0

    # Log scale leaves zero bins out; one channel alone hides the others.
    page.evaluate("document.getElementById('log').click()")
    log = wait_for("the log axis", lambda: (s := page.evaluate("""(() => {
        const p = window.xsp3Viewer.plot;
        return {distr: p.scales.y.distr, min: p.scales.y.min, max: p.scales.y.max,
                zeros: p.data[1].filter(v => v === 0).length,
                nulls: p.data[1].filter(v => v === null).length}; })()"""))["min"] and s)
    assert log["distr"] == 3 and log["zeros"] == 0 and log["nulls"] > 0
    assert 0 < log["min"] <= 1 and log["max"] >= 10  # decades of a log axis
    page.evaluate("""(() => { const s = document.getElementById('channel');
        s.value = '2'; s.dispatchEvent(new Event('change')); })()""")
    shown = page.evaluate("window.xsp3Viewer.plot.series.map(s => s.show)")
    assert shown == [True, False, False, True, False]
    assert {w["channel"] for w in page_state(page)["windows"]} == {2}
    page.screenshot(tmp_path / "log-channel2.png")

    # The acquisition ends: the page stays on its last frame.
    serve.request(cmd="stop")
    wait_for("the end", lambda: page_state(page)["state"] == "done")
    ended = wait_for("the last frame kept", lambda: (s := page_state(page))["health"].find(
        "showing the last frame") >= 0 and s)
    updates = ended["updates"]
    still = wait_for("more page updates", lambda: (s := page_state(page))["updates"] >
                     updates + 5 and s)
    assert still["frame"] == ended["frame"] and still["version"] == ended["version"]
    page.evaluate("document.getElementById('log').click()")
    check_plotted_frame(page_state(page))

    # A new acquisition: the page picks it up without a reload.
    serve.acquire(frames=100_000, exposure=0.005)
    new = wait_for("the new acquisition's frames", lambda: (s := page_state(page))["version"] >
                   still["version"] and s["state"] == "running" and s)
    check_plotted_frame(new)
    serve.request(cmd="stop")


def test_api_live_sends_the_frame_only_when_it_changed(serve, viewer):
    from urllib.request import urlopen

    def live(query=""):
        with urlopen(f"{viewer.url}api/live{query}") as r:
            return json.load(r)
    serve.acquire(frames=100_000, exposure=0.005)
    answer = wait_for("a frame", lambda: (a := live())["frame"] and a)
    served = answer["frame"]["frame"]
    assert served["shape"] == [NCH, 4096] and served["exptime"] == pytest.approx(0.005)
    np.testing.assert_array_equal(np.array(served["spectra"]), frame(SEED, served["number"], NCH))
    serve.request(cmd="stop")
    wait_for("the acquisition's end", lambda: live()["meta"]["status"]["state"] == "done")
    version = live()["meta"]["frame_version"]
    again = live(f"?since={version}")
    assert again["frame"] is None and again["meta"]["frame_version"] == version
    assert live(f"?since={version - 1}")["frame"]["version"] == version
    assert again["meta"]["windows"] == [[0, 600, 700], [1, 1100, 1300]]
    assert again["meta"]["monitor"]["endpoint"] == serve.monitor


def test_viewer_refuses_bad_arguments_and_addresses():
    cases = [(["--monitor", "tcp://127.0.0.1:1", "--window", "2:1:3"], 2, "--window 2:1:3"),
             (["--monitor", "tcp://127.0.0.1:1", "--rate", "0"], 2, "--rate 0"),
             (["--monitor", "tcp://127.0.0.1:1", "--http", "nowhere"], 3,
              "HTTP address nowhere")]
    for args, code, why in cases:
        out = subprocess.run([rust_bin("xsp3-viewer"), *args], capture_output=True, text=True,
                             timeout=30)
        assert out.returncode == code, out
        assert why in out.stderr
