"""Helpers for the Xspress3 interop tests: the simulated SDK's content formula in numpy
(docs/sdk-sim.md, "Content formula") and the dead-time maths, written independently of the Rust
code they check."""
import socket

import numpy as np

from euxfel_helpers import rust_bin  # noqa: F401  (re-exported for the tests)

NBINS = 4096
PEAKS = [(640, 12, 400), (705, 10, 60), (805, 14, 250), (1200, 40, 80)]
SCALERS = ["time", "reset_ticks", "reset_count", "all_events", "all_good",
           "in_window_0", "in_window_1", "pileup", "total_ticks"]
CLOCK_HZ = 80e6
M64 = (1 << 64) - 1


def _sm64(x):
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def spectrum(seed, frame, chan, background=0, amplitude_percent=3):
    """Counts of one channel of one frame, uint32[4096]."""
    b = np.arange(NBINS, dtype=np.int64)
    lam = np.full(NBINS, background, dtype=np.int64)
    for centre, w, a in PEAKS:
        ac = a * amplitude_percent * (8 + chan % 4) // 800
        inside = np.abs(b - centre) < w
        lam[inside] += ac * (w * w - (b[inside] - centre) ** 2) // (w * w)
    s0 = int(_sm64(np.array([seed & M64], dtype=np.uint64))[0])
    key = int(_sm64(np.array([(s0 + (frame << 8) + chan) & M64], dtype=np.uint64))[0])
    with np.errstate(over="ignore"):
        u = _sm64(np.uint64(key) + b.astype(np.uint64))
    r = np.floor(np.sqrt(lam.astype(np.float64))).astype(np.int64)
    s = (5 * r) >> 1
    lo = (u & np.uint64(0xFFFF)) + ((u >> np.uint64(16)) & np.uint64(0xFFFF))
    tri = (lo.astype(np.int64) * s) >> 16
    return np.maximum(0, lam + tri - s).astype(np.uint32)


def frame(seed, f, n_channels):
    return np.stack([spectrum(seed, f, c) for c in range(n_channels)])


def scalers(mca, exposure_ticks, windows=None, good=0, reset_rate_hz=1000, reset_ticks=200,
            pileup_ppm=2000):
    """uint32[n_channels, 9] in SDK order for a frame's spectra."""
    out = []
    for c, m in enumerate(mca.astype(np.int64)):
        (l0, h0, l1, h1) = windows[c] if windows is not None else (0, 4095, 0, 4095)
        total = int(m.sum())
        pileup = total * pileup_ppm // 1_000_000
        resets = exposure_ticks * reset_rate_hz // 80_000_000
        out.append([
            exposure_ticks, resets * reset_ticks, resets, total + pileup, int(m[good:].sum()),
            int(m[l0:h0 + 1].sum()) if l0 <= h0 else 0,
            int(m[l1:h1 + 1].sum()) if l1 <= h1 else 0,
            pileup, exposure_ticks,
        ])
    return np.array(out, dtype=np.uint32)


def dead_time_correction(sc, event_width):
    """Time / (Time - (AllEvent * (EventWidth + 1) + ResetTicks)) per channel."""
    sc = sc.astype(np.float64)
    dead = sc[:, 3] * (np.asarray(event_width, dtype=np.float64) + 1) + sc[:, 1]
    return sc[:, 0] / (sc[:, 0] - dead)


def output_count_rate(sc):
    """AllGood * clock / TotalTicks, counts per second."""
    sc = sc.astype(np.float64)
    return sc[:, 4] * CLOCK_HZ / sc[:, 8]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
