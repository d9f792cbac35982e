"""MAX IV's Xspress3DS parameters translated into `xsp3-acquire serve`'s `configure` request.

Kept free of Tango so the rules can be tested on their own. Every refusal is a ValueError whose
text names the attribute, the value and what would be accepted.
"""
import math
import os

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


def trigger_fields(mode, n_triggers, frames_per_trigger, gate_debounce):
    """The trigger fields of `configure` and the frame count, as MAX IV arms the SDK.

    SOFTWARE and EXTERNAL_MULTI pass `triggers` and `frames_per_trigger` to the serve process,
    which plans them as MAX IV does: one trigger starting internally timed frames (`*_first`) or
    one frame per trigger. EXTERNAL_MULTI_GATE makes one frame per gate, nTriggers x
    nFramesPerTrigger of them, with MAX IV's debounce of the gate input; it is sent as `frames`
    because serve's own gate plan takes the frames only as nTriggers.
    MAX IV refuses both counts above 1 in every mode."""
    check_trigger_mode(mode)
    check_count("nTriggers", n_triggers)
    check_count("nFramesPerTrigger", frames_per_trigger)
    if n_triggers > 1 and frames_per_trigger > 1:
        raise ValueError(
            f"nTriggers {n_triggers} with nFramesPerTrigger {frames_per_trigger}: one of them "
            "must be 1 (as in MAX IV's device)")
    frames = n_triggers * frames_per_trigger
    if mode == "EXTERNAL_MULTI_GATE":
        return {"trigger": "gate", "frames": frames, "debounce": gate_debounce}, frames
    source = "software" if mode == "SOFTWARE" else "external"
    return {"trigger": source, "triggers": n_triggers,
            "frames_per_trigger": frames_per_trigger}, frames


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


def channel_windows(windows1, windows2):
    """`windows` of `configure`: `[channel, window, low, high]` for every channel's Window1
    (window 0) and Window2 (window 1)."""
    return [[ch, win, lo, hi]
            for win, per_channel in enumerate((windows1, windows2))
            for ch, (lo, hi) in enumerate(per_channel)]


def check_event_width(name, ticks):
    """Negative widths are refused here; the serve process refuses widths above its limit."""
    if ticks < 0:
        raise ValueError(f"{name} {ticks}: give a width of zero or more clock ticks")
    return ticks


ROI_SYNTAX = "NAME:[CH:]LOW:HIGH (NAME of letters, digits and _), e.g. Fe:630:650 or Fe:2:630:650"


def check_rois(specs):
    """The `Rois` attribute: every spec `NAME:[CH:]LOW:HIGH`. Channels and bins are checked by
    the serve process against the detector when the device arms."""
    out = []
    for spec in specs:
        name, _, rest = spec.partition(":")
        parts = [p.strip() for p in rest.split(":")]
        if (not name or not all(c.isascii() and (c.isalnum() or c == "_") for c in name)
                or len(parts) not in (2, 3)
                or not all(p.isascii() and p.isdigit() for p in parts)):
            raise ValueError(f"Rois {spec!r}: give {ROI_SYNTAX}")
        out.append(spec)
    return out
