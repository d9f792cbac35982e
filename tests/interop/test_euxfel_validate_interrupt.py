"""Ctrl-C (SIGINT) on the long commands: xfel-extract, xfel-validate and lsxfel stop,
leave no partial output, print one line and exit 130 (128 + SIGINT).

To interrupt at a known point without timing, a FIFO stands in for one file the command
opens with a plain blocking open (an output file, or the run map `karabo_data_map.json`;
data files are opened non-blocking, so a FIFO among them is refused at once): the command
blocks opening it (the kernel shows `wait_for_partner`), SIGINT arrives there, and the
test then opens the other end so the command can go on and notice.
"""
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from euxfel_helpers import rust_bin

TIMEOUT = 30


def blocked_on_fifo(pid):
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "wchan").read_text() == "wait_for_partner":
                return True
        except OSError:
            continue
    return False


def interrupt_at_fifo(cmd, fifo, fifo_mode):
    """Start `cmd`, wait until it blocks opening `fifo`, send SIGINT, then serve the
    FIFO's other end (`fifo_mode`; the command may open it more than once, each open
    is answered, what it writes is drained) until the command ends; return (exit
    code, stdout, stderr)."""
    p = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not blocked_on_fifo(p.pid):
            assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline, "never opened the FIFO"
            time.sleep(0.02)
        p.send_signal(signal.SIGINT)
        while p.poll() is None:
            assert time.monotonic() < deadline + TIMEOUT, "did not stop after SIGINT"
            try:
                fd = os.open(fifo, fifo_mode | os.O_NONBLOCK)
            except OSError:  # no reader yet (ENXIO), or the command removed it
                time.sleep(0.01)
                continue
            try:
                while fifo_mode == os.O_RDONLY and p.poll() is None:
                    try:
                        if not os.read(fd, 1 << 16):
                            time.sleep(0.01)
                    except BlockingIOError:
                        time.sleep(0.01)
            finally:
                os.close(fd)
            time.sleep(0.01)
        out, err = p.communicate(timeout=TIMEOUT)
        return p.returncode, out, err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.fixture
def run_with_fifo(examples, tmp_path):
    """A copy of an example run whose run map is a FIFO (read before any data file)."""
    run_dir = tmp_path / "run"
    shutil.copytree(examples["fxe12"], run_dir)
    fifo = run_dir / "karabo_data_map.json"
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo)
    return run_dir, fifo


def test_xfel_extract_interrupted_leaves_nothing(examples, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    fifo = out / "data.npy.partial"
    os.mkfifo(fifo)
    code, so, se = interrupt_at_fifo(
        [rust_bin("xfel-extract"), "--no-cache", examples["fxe12"],
         "FXE_DET_LPD1M-1/DET/0CH0:xtdf", "image.data", "--out", out], fifo, os.O_RDONLY)
    assert code == 130, se
    assert se.strip().splitlines()[-1] == "xfel-extract: interrupted", se
    assert so == ""
    assert list(out.iterdir()) == []


def test_xfel_validate_interrupted(run_with_fifo):
    run_dir, fifo = run_with_fifo
    code, so, se = interrupt_at_fifo([rust_bin("xfel-validate"), "-j", "1", run_dir],
                                     fifo, os.O_WRONLY)
    assert code == 130, (so, se)
    # EXtra-data's line, and no report of the files not validated.
    assert so.rstrip().splitlines()[-1] == "^C (validation cancelled)", so
    assert "problems" not in so


def test_xfel_validate_json_interrupted(run_with_fifo):
    """With --json: one document saying so, never a report of part of the run."""
    run_dir, fifo = run_with_fifo
    code, so, se = interrupt_at_fifo(
        [rust_bin("xfel-validate"), "-j", "1", "--json", run_dir], fifo, os.O_WRONLY)
    assert code == 130, (so, se)
    assert json.loads(so) == {"ok": False, "error": "interrupted"}


def test_lsxfel_interrupted(run_with_fifo):
    run_dir, fifo = run_with_fifo
    code, so, se = interrupt_at_fifo([rust_bin("lsxfel"), run_dir],
                                     fifo, os.O_WRONLY)
    assert code == 130, se
    assert se.strip() == "lsxfel: interrupted", se
    assert so == ""
