"""sdaq's ``DAQJob`` and ``DAQDaemon`` over the h5daq crate's Rust jobs and writer.

The constructors take sdaq's arguments and raise its errors; the getter (a Python
callable) is called from the job's Rust thread with the GIL taken only for the
call. The files match sdaq's for the same getters (tests/interop/
test_sdaq_side_by_side.py); the differences by design (docs/python.md): times are
true UTC, buffers are bounded, files stay readable after a crash, run_end/file_end
are always written, de-duplication compares NaN as equal.
"""

import atexit
import inspect
import sys
import weakref

import numpy as np

from . import _native

__all__ = ["DAQJob", "DAQDaemon"]

READ_MODES = ("schedule", "constant", "trigger")


def _check_getter(getter):
    if not callable(getter):
        raise TypeError(f"getter must be callable, got {type(getter).__name__}")
    try:
        sig = inspect.signature(getter)
    except (TypeError, ValueError):
        return
    required = [
        p for p in sig.parameters.values()
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if required:
        raise TypeError("getter must be callable without arguments")


class DAQJob:
    """A group of datasets filled by a getter (sdaq's ``DAQJob``)."""

    def __init__(self, group, label, getter, read_period=1, thread_id=None, shape=(0,),
                 dtype=np.float32, chunk_length=2**6, read_mode="schedule",
                 constant_read_error_delay=1, error_count_limit=2,
                 handle_error_function=None, compress=True, initial_buffer_length=100,
                 provide_time=False, extend_mode=False, attrs=None):
        _check_getter(getter)
        if read_mode not in READ_MODES:
            raise KeyError(f"read_mode {read_mode!r} not in {READ_MODES}")
        labels = [label] if isinstance(label, str) else list(label)
        if "time" in labels:
            raise ValueError("the label 'time' is reserved")
        dtypes = list(dtype) if isinstance(dtype, (list, tuple)) else [dtype] * len(labels)
        if len(dtypes) != len(labels):
            raise ValueError(f"{len(dtypes)} dtypes for {len(labels)} labels")
        for d in dtypes:
            if type(d) is not type:
                raise TypeError(f"dtype must be a type (e.g. float, np.float32), got {d!r}")
        if isinstance(shape, tuple):
            shapes = [shape] * len(labels)
        elif isinstance(shape, list):
            shapes = list(shape)
        else:
            raise TypeError(f"shape must be a tuple or a list of tuples, got {shape!r}")
        if len(shapes) != len(labels):
            raise ValueError(f"{len(shapes)} shapes for {len(labels)} labels")
        for s in shapes:
            if not isinstance(s, tuple) or not s:
                raise TypeError(f"shape must be a non-empty tuple, got {s!r}")
        shapes = [(0,) + tuple(s[1:]) for s in shapes]
        if initial_buffer_length < 1:
            raise ValueError(f"initial_buffer_length, has to be >1 : '{initial_buffer_length}'")
        if chunk_length < 1:
            raise ValueError(f"chunk_length, has to be > 0 : '{chunk_length}'")
        if extend_mode:
            provide_time, compress = True, False

        self.group = group
        self.label = ["time"] + labels
        self.dtype_list = [np.float64] + dtypes
        self.shape_list = [(0,)] + shapes
        self.read_period = read_period
        self.read_mode = read_mode
        self.thread_id = thread_id
        self.provide_time = provide_time
        self.extend_mode = extend_mode
        self.compress = compress
        self.chunk_length = chunk_length
        self.initial_buffer_length = initial_buffer_length
        self.attrs = dict(attrs or {})
        self.getter = getter
        self._stopped = False
        self._native = _native.Job(
            group, labels, [np.dtype(d).name for d in dtypes],
            [list(s[1:]) for s in shapes], getter, read_mode, float(read_period),
            None if thread_id is None else int(thread_id), provide_time, extend_mode,
            compress, int(chunk_length), int(error_count_limit), handle_error_function,
            float(constant_read_error_delay), list(self.attrs.items()),
        )

    def trigger_read(self):
        """Read once and return when the read is done (sdaq reads in the caller's
        thread; here the job's thread reads while the caller waits, GIL released)."""
        if self._stopped:
            raise RuntimeError("the job's daemon has stopped")
        self._native.trigger_read()

    def status(self):
        names = ("reads", "rows", "written", "buffered", "skipped", "deduplicated",
                 "dropped", "errors", "early_writes")
        return dict(zip(names, self._native.status()))

    @property
    def error_count(self):
        """sdaq's count: failed reads since the last stored row (a skip leaves it)."""
        return self._native.error_count()

    def __repr__(self):
        return f"<DAQJob group={self.group!r} labels={self.label[1:]!r} mode={self.read_mode!r}>"


ROLLOVER_UNITS = ("years", "months", "weeks", "days", "hours", "minutes", "seconds")

# Daemons between start() and stop(): stopped (final write, rename) when Python exits.
_running = weakref.WeakSet()


@atexit.register
def _stop_running_daemons():
    for d in list(_running):
        try:
            d.stop()
        except (RuntimeError, OSError, ValueError) as e:
            print(f"photon_daq: stopping the daemon {d.name!r} at exit failed: {e}",
                  file=sys.stderr)


class DAQDaemon:
    """Runs jobs and appends their data to HDF5 files (sdaq's ``DAQDaemon``)."""

    def __init__(self, job_list, name="", write_period=60, write_period_jitter=None,
                 directory=".", file_format_str="DAQ_{date_from}_{date_to}.hdf5",
                 rollover_interval_dict=None, compression_dict=None, attrs=None):
        if not any(k in file_format_str for k in ("{date_from}", "{date_to}")):
            raise KeyError("file_format_str has to include at least one placeholder of "
                           f"['{{date_from}}', '{{date_to}}'], given: {file_format_str}")
        head, _, rest = file_format_str.partition("{date_from}")
        if "{date_to}" not in rest or "{" in head + rest.replace("{date_to}", "", 1):
            raise ValueError("file_format_str must hold {date_from} and then {date_to}, once "
                             f"each (h5daq names every file by both), given: {file_format_str}")
        if not isinstance(write_period, (int, float)):
            raise TypeError("write_period must be one of type int or float; "
                            f"got type: {type(write_period)}")
        if isinstance(write_period_jitter, (int, float)):
            if write_period <= write_period_jitter:
                raise ValueError("write_period must be greater than write_period_jitter; "
                                 f"got: {write_period}, {write_period_jitter}; respectively")
        elif write_period_jitter is not None:
            raise TypeError("write_period_jitter must be one of type int, float or None; "
                            f"got type: {type(write_period_jitter)}")
        rollover = dict(rollover_interval_dict or {"days": 1})
        if len(rollover) != 1:
            raise KeyError(f"interval_dict must have exactly one key: received {rollover}")
        (unit, count), = rollover.items()
        if unit not in ROLLOVER_UNITS:
            raise KeyError(f"round_interval_dict key {rollover.keys()} not from "
                           f"{list(ROLLOVER_UNITS)}")
        count = int(count)
        if count < 1:
            raise KeyError(f"round_interval_dict value has to be >1, given {count}")
        deflate, shuffle = None, False
        if compression_dict is not None:
            method = compression_dict["compression"]
            opts = compression_dict["compression_opts"]
            if method not in (None, "gzip"):
                raise ValueError(f"compression {method!r}: only gzip (deflate) is supported")
            if method == "gzip":
                deflate = 4 if opts is None else int(opts)
            shuffle = bool(compression_dict.get("shuffle", False))
        self.job_list = list(job_list)
        self.name = name
        self.write_period = write_period
        self.directory = directory
        self.attrs = dict(attrs or {})
        self._settings = (name, float(write_period),
                          None if write_period_jitter is None else float(write_period_jitter),
                          str(directory), file_format_str, unit, count, deflate, shuffle)
        self._native = None
        self.files = []

    def start(self, attrs=None):
        """Start the jobs and the periodic writer; ``attrs`` are added to the root
        attributes. Returns sdaq's message naming the file. A daemon runs once (a
        second start() raises RuntimeError; sdaq starts a new run)."""
        if self._native is not None:
            raise RuntimeError("the daemon was already started")
        all_attrs = dict(self.attrs, **(attrs or {}))
        self._native = _native.Daemon(
            [j._native for j in self.job_list], *self._settings, list(all_attrs.items())
        )
        self._native.start()
        _running.add(self)
        # sdaq's start() reads every 'trigger' job once (without waiting for the read).
        for j in self.job_list:
            j._native.trigger()
        return f"Starting the logger daemon in file: {self._native.current_file()}"

    def flush(self):
        """Write every buffered row now."""
        if self._native is None:
            raise RuntimeError("the daemon is not running")
        self._native.flush()

    def stop(self):
        """Stop the jobs, make the final write and close the file; returns the run's
        files. Never waits while holding the GIL."""
        if self._native is None:
            raise RuntimeError("the daemon is not running")
        for j in self.job_list:
            j._stopped = True
        _running.discard(self)
        self.files = [str(p) for p in self._native.stop()]
        return self.files

    @property
    def is_active(self):
        return self._native is not None and self._native.is_running()

    def status(self):
        """Whether the daemon runs (sdaq's ``status()``); see ``counters()``."""
        return self.is_active

    def counters(self):
        """The daemon's state and every job's counters (``DAQJob.status()``)."""
        return {
            "running": self.is_active,
            "current_file": None if self._native is None else self._native.current_file(),
            "jobs": {j.group: j.status() for j in self.job_list},
        }
