"""Helpers for the h5daq interop tests: locate the binary, run it, list its files."""

import os
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def h5daq_binary() -> Path:
    """The debug h5daq built by `cargo build --workspace --bins` (CARGO_TARGET_DIR honoured)."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    exe = target / "debug" / "h5daq"
    if not exe.exists():
        raise FileNotFoundError(f"{exe} not found: run `cargo build --workspace --bins` first")
    return exe


def run_h5daq(cwd: Path, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(h5daq_binary()), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def start_h5daq(cwd: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(h5daq_binary()), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def h5_files(directory: Path) -> list:
    return sorted(p for p in directory.iterdir() if p.suffix == ".h5")


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)
