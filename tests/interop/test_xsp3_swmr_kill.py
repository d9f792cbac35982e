"""h5py reads the files of SWMR writers killed with SIGKILL at any moment: `xsp3-acquire run
--swmr` and `xsp3-receive --swmr`, the first kills as soon as the file name exists
(docs/file-formats.md). A plain (non-SWMR) open works after `h5clear -s`."""
import shutil
import signal
import socket
import subprocess
import time

import h5py
import numpy as np
import pytest

from xsp3_helpers import free_port, rust_bin


def wait_for_h5(root, limit=30.0):
    deadline = time.monotonic() + limit
    while True:
        found = [p for p in root.rglob("*.h5")]
        if found:
            return found
        assert time.monotonic() < deadline, f"no file under {root}"
        time.sleep(0.001)


def kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def frames_swmr(path):
    """Frame numbers as an SWMR reader sees them; data and frame_number agree."""
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        det = f["entry/instrument/xspress3"]
        numbers = det["frame_number"][()]
        assert det["data"].shape[0] >= len(numbers)
        return numbers


@pytest.mark.parametrize("delay", [0.0, 0.0, 0.3])
def test_h5py_opens_the_file_of_a_killed_swmr_run(tmp_path, delay):
    proc = subprocess.Popen([rust_bin("xsp3-acquire"), "run", "-q", "--frames", "0",
                             "--exposure", "1ms", "--swmr", "--flush-interval", "100ms",
                             "--sim", "content=pattern", "--out", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        path = wait_for_h5(tmp_path)[0]
        time.sleep(delay)
    finally:
        kill(proc)
    numbers = frames_swmr(path)
    assert np.array_equal(numbers, np.arange(len(numbers)))
    if delay:
        assert len(numbers) > 0
    if shutil.which("h5clear"):
        subprocess.run(["h5clear", "-s", str(path)], check=True)
        with h5py.File(path, "r") as f:
            assert len(f["entry/instrument/xspress3/frame_number"]) == len(numbers)


def test_h5py_opens_the_files_of_killed_swmr_receivers(tmp_path):
    port = free_port()
    while True:  # acknowledged PUSH uses the next port for the back channel
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            break
        except OSError:
            port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    sender = subprocess.Popen([rust_bin("xsp3-acquire"), "run", "-q", "--frames", "2000",
                               "--exposure", "1ms", "--sim", "content=pattern",
                               "--stream", endpoint, "--file", "scan"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    roots = []
    try:
        for i, delay in enumerate([0.0, 0.0, 0.2]):
            root = tmp_path / f"r{i}"
            roots.append(root)
            rx = subprocess.Popen([rust_bin("xsp3-receive"), "--connect", endpoint, "--root",
                                   str(root), "--swmr", "--flush-interval", "100ms", "-q"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_for_h5(root)
                time.sleep(delay)
            finally:
                kill(rx)
    finally:
        sender.send_signal(signal.SIGINT)
        sender.wait(timeout=60)
    for root in roots:
        for path in root.rglob("*.h5"):
            numbers = frames_swmr(path)
            assert np.all(np.diff(numbers.astype(np.int64)) > 0)
