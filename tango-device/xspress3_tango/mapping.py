"""MAX IV's Xspress3DS parameters translated into `xsp3-acquire serve`'s `configure` request.

Kept free of Tango so the rules can be tested on their own. Every refusal is a ValueError whose
text names the attribute, the value and what would be accepted.
"""
import math
import os

import numpy as np

TRIGGER_MODES = ("SOFTWARE", "EXTERNAL_MULTI", "EXTERNAL_MULTI_GATE")
# The time-frame generator gap the device always configures (MAX IV hard-wires 25 ns too).
GAP_NS = 25
N_BINS = 4096


def check_trigger_mode(mode):
    if mode not in TRIGGER_MODES:
        raise ValueError(f"TriggerMode {mode!r}: use {', '.join(TRIGGER_MODES)}")
    return mode


def check_positive_time(name, seconds):
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{name} {seconds!r}: give a positive number of seconds")
    return seconds


def check_latency(seconds):
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"LatencyTime {seconds!r}: give zero or a positive number of seconds")
    return seconds


def check_count(name, n):
    if n < 1:
        raise ValueError(f"{name} {n}: give at least 1")
    return n


def clip_window(name, value):
    """MAX IV's rule: [lo, hi] clipped to 0..4095; lo > hi is refused (no window would count)."""
    if len(value) != 2:
        raise ValueError(f"{name} {list(value)}: give two bins [low, high]")
    lo, hi = max(0, int(value[0])), min(N_BINS - 1, int(value[1]))
    if lo > hi:
        raise ValueError(f"{name} {list(value)}: low must not be above high (after clipping to "
                         f"0..{N_BINS - 1})")
    return [lo, hi]


def trigger_and_frames(mode, n_triggers, frames_per_trigger):
    """(serve trigger mode, frames) as MAX IV arms the SDK: one trigger starting internally timed
    frames (`*_first`) or one frame per trigger; a gate makes one frame per gate."""
    check_trigger_mode(mode)
    check_count("nTriggers", n_triggers)
    check_count("nFramesPerTrigger", frames_per_trigger)
    frames = n_triggers * frames_per_trigger
    if mode == "EXTERNAL_MULTI_GATE":
        return "gate", frames
    if n_triggers > 1 and frames_per_trigger > 1:
        raise ValueError(
            f"nTriggers {n_triggers} with nFramesPerTrigger {frames_per_trigger}: one of them "
            "must be 1 (as in MAX IV's device)")
    base = "software" if mode == "SOFTWARE" else "external"
    return (base + "_first", frames) if n_triggers == 1 else (base, frames)


def exposure_seconds(exposure, latency):
    """The live time per frame: ExposureTime - LatencyTime - ReadoutTime (MAX IV's `exptime`)."""
    check_positive_time("ExposureTime", exposure)
    check_latency(latency)
    live = exposure - latency - GAP_NS * 1e-9
    if live <= 0:
        raise ValueError(
            f"ExposureTime {exposure!r} s minus LatencyTime {latency!r} s minus the readout time "
            f"{GAP_NS} ns leaves no live time")
    return live


def relative_file_name(destination, output_directory):
    """The `file` of `configure`: DestinationFileName relative to the serve process's `--out`,
    without `.h5` (the writer adds it). An absolute name must lie inside OutputDirectory."""
    name = destination
    if os.path.isabs(name):
        if not output_directory:
            raise ValueError(
                f"DestinationFileName {destination!r} is absolute: set the device property "
                "OutputDirectory to the serve process's --out, or give a name relative to it")
        root = os.path.normpath(output_directory)
        norm = os.path.normpath(name)
        if os.path.commonpath([root, norm]) != root or norm == root:
            raise ValueError(f"DestinationFileName {destination!r} is not inside the output "
                             f"directory {output_directory!r}")
        name = os.path.relpath(norm, root)
    if name.endswith(".h5"):
        name = name[:-3]
    if not name or name.startswith("..") or "/../" in f"/{name}/":
        raise ValueError(f"DestinationFileName {destination!r}: give a file name inside the "
                         "output directory")
    return name


def unused_name(name, output_directory):
    """MAX IV's receiver rule when the file may not be replaced: insert `_` before the extension
    until the name is free."""
    while os.path.exists(os.path.join(output_directory, name + ".h5")):
        name += "_"
    return name


def common_windows(windows1, windows2):
    """serve applies each window to every channel: all channels must agree."""
    out = []
    for win, (label, per_channel) in enumerate((("Window1", windows1), ("Window2", windows2))):
        distinct = {tuple(w) for w in per_channel}
        if len(distinct) > 1:
            listing = ", ".join(f"Ch{c}={list(w)}" for c, w in enumerate(per_channel))
            raise ValueError(
                f"{label} differs between channels ({listing}): xsp3-acquire serve sets each "
                "window for all channels at once; give every channel the same window")
        lo, hi = per_channel[0]
        out.append([win, lo, hi])
    return out


def dead_time_correction(time, all_events, reset_ticks, event_width):
    """Time / (Time - (AllEvents * (EventWidth + 1) + ResetTicks)), per element (numpy arrays)."""
    time = np.asarray(time, dtype=np.float64)
    live = time - (np.asarray(all_events, dtype=np.float64) * (np.asarray(event_width) + 1.0)
                   + np.asarray(reset_ticks, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(live > 0, time / live, np.nan)
