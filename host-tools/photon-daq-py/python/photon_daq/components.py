"""EXtra-data's ``extra_data.components`` over the Rust ``euxfel-components`` crate.

Source identification, train/frame bookkeeping, pulse selection and the stacked
reads (modules in parallel, straight into the output buffer, GIL released) run in
Rust; this module adds EXtra-data's classes, argument forms, reprs and labels.
``xarray()``/``get_array()`` need xarray (and pandas for pulse indexes).
"""

import warnings

import numpy as np

from . import _native
from .euxfel import DataCollection, _select_trains, by_id, by_index

__all__ = [
    "AGIPD1M",
    "AGIPD500K",
    "DSSC1M",
    "LPD1M",
    "LPDSolo",
    "JUNGFRAU",
    "identify_multimod_detectors",
    "stack_detector_data",
    "MultimodKeyData",
    "XtdfImageMultimodKeyData",
]

# The end of an open pulse slice, as EXtra-data's MAX_PULSES.
MAX_PULSES = 2700


def _check_pulse_selection(pulses):
    """EXtra-data's normalised pulse selection: by_id/by_index of a full slice or a
    uint64 array."""
    if not isinstance(pulses, (by_id, by_index)):
        pulses = by_index[pulses]
    val = pulses.value
    if isinstance(val, slice):
        start = 0 if val.start is None else val.start
        stop = MAX_PULSES if val.stop is None else val.stop
        step = 1 if val.step is None else val.step
        if not all(isinstance(s, int) for s in (start, stop, step)):
            raise TypeError("Pulse selection slice must use integers or None")
        if step < 1:
            raise ValueError("Pulse selection slice must have positive step")
        if start < 0 or stop < 0:
            raise NotImplementedError("Negative pulse indices not supported")
        return type(pulses)(slice(start, stop, step))
    arr = np.asarray([val] if isinstance(val, int) else val)
    if arr.size and (arr < 0).any():
        if isinstance(pulses, by_id):
            raise ValueError("Pulse IDs cannot be negative")
        raise NotImplementedError("Negative pulse indices not supported")
    return type(pulses)(arr.astype(np.uint64))


def _native_pulses(pulses):
    """A normalised pulse selection as the native module's ``(kind, value)``."""
    kind = "id" if isinstance(pulses, by_id) else "index"
    v = pulses.value
    if isinstance(v, slice):
        return kind, (v.start, v.stop, v.step)
    return kind, [int(p) for p in v]


def _roi_text(roi, ndim):
    """A tuple of ints, slices and at most one Ellipsis over ``ndim`` axes as numpy's
    index syntax without brackets."""
    if isinstance(roi, by_index):
        roi = roi.value
    if not isinstance(roi, tuple):
        roi = (roi,)
    if any(r is Ellipsis for r in roi):
        i = next(i for i, r in enumerate(roi) if r is Ellipsis)
        rest = roi[:i] + roi[i + 1:]
        if any(r is Ellipsis for r in rest):
            raise IndexError("an index can only have a single ellipsis ('...')")
        roi = roi[:i] + (slice(None),) * max(ndim - len(rest), 0) + roi[i + 1:]
    parts = []
    for r in roi:
        if isinstance(r, slice):
            f = ["" if x is None else str(int(x)) for x in (r.start, r.stop, r.step)]
            parts.append(":".join(f))
        else:
            parts.append(str(int(r)))
    return ",".join(parts)


class MultimodKeyData:
    """One key over all modules: shape ``(modules, trains, ...)``."""

    def __init__(self, det, native):
        self.det = det
        self._native = native
        self.key = native.key

    def _with(self, native, det=None):
        return type(self)(det or self.det, native)

    @property
    def train_ids(self):
        return self.det.train_ids

    def train_id_coordinates(self):
        return self._native.train_id_coordinates()

    @property
    def modules(self):
        return list(self._native.modules)

    @property
    def ndim(self):
        return len(self.shape)

    def _roi(self, roi):
        if isinstance(roi, tuple) and roi == ():
            return self._native
        return self._native.select_roi(_roi_text(roi, len(self._native.entry_shape)))

    def buffer_shape(self, module_gaps=False, roi=()):
        native = self._roi(roi)
        return tuple(native.shape(module_gaps))

    @property
    def shape(self):
        return self.buffer_shape()

    @property
    def dimensions(self):
        return list(self._native.dimensions)

    @property
    def dtype(self):
        return np.dtype(self._native.dtype)

    def select_trains(self, trains):
        det = self.det.select_trains(trains)
        new = _select_trains(self._native, trains, len(self.train_ids), self.train_ids)
        return self._with(new, det)

    def __getitem__(self, item):
        return self.select_trains(item)

    __iter__ = None  # as EXtra-data: no iteration over a multi-module key

    def split_trains(self, parts=None, trains_per_part=None, frames_per_part=None):
        for det in self.det.split_trains(parts, trains_per_part, frames_per_part):
            new = self._native.select_trains("id_list", [int(t) for t in det.train_ids])[0]
            yield self._with(new, det)

    def ndarray(self, *, fill_value=None, out=None, roi=(), astype=None, module_gaps=False):
        """The data as a plain numpy array ``(modules, entries, ...)``; missing data
        holds ``fill_value`` (NaN for floats, 0 for integers by default)."""
        native = self._roi(roi)
        shape = tuple(native.shape(module_gaps))
        if out is not None and out.shape != shape:
            raise ValueError(f"requires output array of shape {shape}")
        descr = None if astype is None else np.dtype(astype).str
        if descr == self.dtype.str:
            descr = None
        dt, shape, raw = native.ndarray(fill_value, descr, module_gaps)
        arr = raw.view(np.dtype(dt)).reshape(shape)
        if out is not None:
            out[...] = arr
            return out
        return arr

    def _wrap_xarray(self, arr):
        from xarray import DataArray

        coords = {"module": self.modules, "trainId": self.train_id_coordinates()}
        return DataArray(arr, dims=self.dimensions, coords=coords)

    def xarray(self, *, fill_value=None, roi=(), astype=None):
        arr = self.ndarray(fill_value=fill_value, roi=roi, astype=astype)
        return self._wrap_xarray(arr)

    def data_availability(self, module_gaps=False):
        """Boolean ``(modules, entries)``: True where a module has data."""
        return self._native.data_availability(module_gaps)


class XtdfImageMultimodKeyData(MultimodKeyData):
    """A per-frame ``image.*`` key of AGIPD, DSSC or LPD: ``(modules, frames, ...)``."""

    def __init__(self, det, native, pulse_sel=None):
        super().__init__(det, native)
        self._pulse_sel = by_index[0:MAX_PULSES:1] if pulse_sel is None else pulse_sel

    def _with(self, native, det=None):
        return type(self)(det or self.det, native, self._pulse_sel)

    def pulse_id_coordinates(self):
        """Pulse ID of each selected frame."""
        return self._native.pulse_id_coordinates()

    def cell_id_coordinates(self):
        """Memory cell ID of each selected frame."""
        return self._native.cell_id_coordinates()

    def select_pulses(self, pulses):
        sel = _check_pulse_selection(pulses)
        return type(self)(self.det, self._native.select_pulses(*_native_pulses(sel)), sel)

    def ndarray(self, *, fill_value=None, out=None, roi=(), astype=None,
                module_gaps=False, decompress_threads=None):
        # decompress_threads: accepted for EXtra-data's signature; modules are
        # always read in parallel.
        return super().ndarray(
            fill_value=fill_value, out=out, roi=roi, astype=astype, module_gaps=module_gaps
        )

    def _image_index(self, subtrain_index):
        import pandas as pd

        if subtrain_index not in {"pulseId", "cellId"}:
            raise ValueError("subtrain_index must be 'pulseId' or 'cellId'")
        inner = (self.pulse_id_coordinates() if subtrain_index == "pulseId"
                 else self.cell_id_coordinates())
        tids = self.train_id_coordinates()
        name = subtrain_index[:-2]
        if not self.det.parallel_gain:
            return pd.MultiIndex.from_arrays([tids, inner], names=["train", name])
        # Parallel gain: each train's frames are 3 gain stages of equal length.
        gain = np.zeros(len(tids), dtype=np.uint8)
        _, firsts, counts = np.unique(tids, return_index=True, return_counts=True)
        for first, n in zip(firsts, counts):
            per_stage = n // 3
            for stage in range(3):
                gain[first + stage * per_stage:first + (stage + 1) * per_stage] = stage
        return pd.MultiIndex.from_arrays([tids, gain, inner], names=["train", "gain", name])

    def xarray(self, *, pulses=None, fill_value=None, roi=(), astype=None,
               subtrain_index="pulseId", unstack_pulses=False, decompress_threads=None):
        from xarray import Coordinates, DataArray

        arr = self.ndarray(fill_value=fill_value, roi=roi, astype=astype)
        index = self._image_index(subtrain_index)
        coords = Coordinates.from_pandas_multiindex(index, "train_pulse")
        out = DataArray(arr, dims=self.dimensions, coords=coords).assign_coords(
            module=self.modules
        )
        if unstack_pulses:
            order = ["module"] + list(index.names) + self.dimensions[2:]
            return out.unstack("train_pulse").transpose(*order)
        return out


class MultimodDetectorBase:
    """A detector made of several modules, each a separate data source."""

    _kind = ""
    _main_data_key = ""
    module_shape = (0, 0)
    n_modules = 0

    def __init__(self, data, detector_name=None, modules=None, *, min_modules=1,
                 raw=None, _n_modules=None, _first_modno=1, _parallel_gain=False):
        if min_modules <= 0:
            raise ValueError(f"min_modules must be a positive integer, not {min_modules!r}")
        if modules is not None:
            modules = [int(m) for m in modules]
        native, w = _native.Detector.new(
            data._native, self._kind, detector_name, modules, min_modules, raw,
            _n_modules, _first_modno, _parallel_gain,
        )
        for msg in w:
            warnings.warn(msg, stacklevel=3)
        self._set_native(native)

    def _set_native(self, native):
        self._native = native
        self.detector_name = native.detector_name
        self.n_modules = native.n_modules
        self.source_to_modno = dict(native.source_to_modno)
        self.modno_to_source = {m: s for s, m in self.source_to_modno.items()}
        # As EXtra-data: only the module sources, all their keys.
        self.data = DataCollection(native.data()).select(
            [(s, "*") for s in self.source_to_modno]
        )
        self.train_ids_perframe = native.train_ids_perframe()

    def _with_native(self, native):
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._set_native(native)
        return new

    @property
    def train_ids(self):
        return self.data.train_ids

    @property
    def frame_counts(self):
        """Frames per train, a pandas Series indexed by train ID."""
        import pandas as pd

        return pd.Series(self._native.frame_counts(), index=self._native.train_ids())

    @property
    def frames_per_train(self):
        try:
            return np.uint64(self._native.frames_per_train())
        except ValueError:
            # EXtra-data's message shows the set of numpy counts.
            counts = set(np.unique(self._native.frame_counts())) - {0}
            raise ValueError(f"Varying number of frames per train: {counts}") from None

    def __getitem__(self, item):
        return MultimodKeyData(self, self._native.key(item))

    def __contains__(self, item):
        return all(item in self.data[s] for s in self.source_to_modno)

    def __repr__(self):
        raw = all("/CORR/" not in s for s in self.source_to_modno) and self._native.is_raw()
        rp = "raw" if raw else "proc"
        return (f"<{type(self).__name__}: Data interface for detector "
                f"{self.detector_name!r} - {rp} data with "
                f"{len(self.source_to_modno)} modules>")

    def select_trains(self, trains):
        new = _select_trains(self._native, trains, len(self.train_ids), self.train_ids)
        return self._with_native(new)

    def split_trains(self, parts=None, trains_per_part=None, frames_per_part=None):
        for native in self._native.split_trains(parts, trains_per_part, frames_per_part):
            yield self._with_native(native)

    def get_array(self, key, *, fill_value=None, roi=(), astype=None):
        """A labelled array (xarray) of one key."""
        return self[key].xarray(fill_value=fill_value, roi=roi, astype=astype)

    def data_availability(self, module_gaps=False):
        """Boolean ``(modules, entries)`` of the main data key."""
        return self._native.data_availability(module_gaps)


class XtdfDetectorBase(MultimodDetectorBase):
    """AGIPD, DSSC and LPD: per-frame data in an ``image`` group."""

    n_modules = 16
    _main_data_key = "image.data"
    parallel_gain = False

    def __getitem__(self, item):
        if item.startswith("image."):
            return XtdfImageMultimodKeyData(self, self._native.key(item))
        return super().__getitem__(item)

    def get_array(self, key, pulses=np.s_[:], unstack_pulses=True, *, fill_value=None,
                  subtrain_index="pulseId", roi=(), astype=None):
        if subtrain_index not in {"pulseId", "cellId"}:
            raise ValueError("subtrain_index must be 'pulseId' or 'cellId'")
        if not isinstance(roi, tuple):
            roi = (roi,)
        if key.startswith("image."):
            return self[key].select_pulses(pulses).xarray(
                fill_value=fill_value, roi=roi, subtrain_index=subtrain_index,
                astype=astype, unstack_pulses=unstack_pulses,
            )
        return super().get_array(key, fill_value=fill_value, roi=roi, astype=astype)


class AGIPD1M(XtdfDetectorBase):
    """An interface to AGIPD-1M data."""

    _kind = "AGIPD1M"
    module_shape = (512, 128)


class AGIPD500K(XtdfDetectorBase):
    """An interface to AGIPD-500K data."""

    _kind = "AGIPD500K"
    module_shape = (512, 128)
    n_modules = 8


class DSSC1M(XtdfDetectorBase):
    """An interface to DSSC-1M data."""

    _kind = "DSSC1M"
    module_shape = (128, 512)


class LPDBase(XtdfDetectorBase):
    module_shape = (256, 256)

    def __init__(self, data, detector_name=None, modules=None, *, min_modules=1,
                 parallel_gain=False, raw=None):
        super().__init__(data, detector_name, modules, min_modules=min_modules, raw=raw,
                         _parallel_gain=parallel_gain)
        self.parallel_gain = parallel_gain


class LPD1M(LPDBase):
    """An interface to LPD-1M data."""

    _kind = "LPD1M"


class LPDSolo(LPDBase):
    """An interface to LPD-Mini/Solo data (one module)."""

    _kind = "LPDSolo"
    n_modules = 1


class JUNGFRAU(MultimodDetectorBase):
    """An interface to JUNGFRAU data: trains along the first and memory cells along
    the second dimension of ``data.*``."""

    _kind = "JUNGFRAU"
    _main_data_key = "data.adc"
    module_shape = (512, 1024)

    def __init__(self, data, detector_name=None, modules=None, *, min_modules=1,
                 n_modules=None, first_modno=1, raw=None):
        super().__init__(data, detector_name, modules, min_modules=min_modules, raw=raw,
                         _n_modules=None if n_modules is None else int(n_modules),
                         _first_modno=first_modno)

    @staticmethod
    def _label_dims(arr):
        per_train = arr.ndim
        if "trainId" in arr.dims:
            arr = arr.rename({"trainId": "train"})
            per_train = arr.ndim - 1
        if per_train == 4:
            arr = arr.rename({"dim_0": "cell", "dim_1": "slow_scan", "dim_2": "fast_scan"})
        elif per_train == 2:
            arr = arr.rename({"dim_0": "cell"})
        return arr

    def get_array(self, key, *, fill_value=None, roi=(), astype=None):
        arr = super().get_array(key, fill_value=fill_value, roi=roi, astype=astype)
        return self._label_dims(arr)

    def cell_ids(self):
        """Memory cell of each frame slot, from the first train (the same in all modules)."""
        missing = 255  # fits data.memoryCell's uint8
        cells = self.select_trains(np.s_[:1])["data.memoryCell"].ndarray(
            fill_value=missing)[:, 0]
        lowest = cells.min(axis=0)
        if (lowest == missing).any():
            raise Exception("Failed to find memoryCell")
        cells[cells == missing] = 0
        if (lowest != cells.max(axis=0)).any():
            raise Exception("Inconsistent memoryCell for different modules")
        return lowest


_CLASSES = {c._kind: c for c in (AGIPD1M, AGIPD500K, DSSC1M, LPD1M, LPDSolo, JUNGFRAU)}


def identify_multimod_detectors(data, detector_name=None, *, single=False, clses=None):
    """``{(detector name, class)}`` of the multi-module detectors in ``data``; with
    ``single=True`` the one ``(name, class)``, ValueError if not exactly one.
    ``detector_name`` is accepted and unused, as in EXtra-data."""
    kinds = None if clses is None else [c._kind for c in clses]
    found = {
        (name, _CLASSES[kind])
        for name, kind in _native.identify_multimod_detectors(data._native, kinds)
    }
    if single:
        if len(found) < 1:
            raise ValueError("No detector sources identified in the data")
        if len(found) > 1:
            raise ValueError("Multiple detectors identified: {}".format(
                ", ".join(n for n, _ in found)))
        return found.pop()
    return found


def stack_detector_data(train, data, axis=-3, modules=16, fillvalue=None, real_array=True,
                        *, pattern=r"/DET/(\d+)CH", starts_at=0):
    """Stack one train's module arrays of key ``data`` along a new module axis
    (missing modules hold ``fillvalue``: NaN for floats, 0 for integers by default).
    The result is always a real array (``real_array`` is accepted for EXtra-data's
    signature)."""
    per_source = {}
    for src, keys in train.items():
        a = keys.get(data) if hasattr(keys, "get") else None
        if a is None:
            per_source[src] = None
            continue
        a = np.ascontiguousarray(a)
        per_source[src] = (a.dtype.str, list(a.shape), a.reshape(-1).view(np.uint8))
    if fillvalue is not None and per_source:
        dtypes = {v[0] for v in per_source.values() if v is not None}
        if len(dtypes) == 1:
            np.dtype(dtypes.pop()).type(fillvalue)  # as EXtra-data: the value must fit
    dt, shape, raw = _native.stack_detector_data(
        per_source, data, axis, modules, fillvalue, pattern, starts_at
    )
    return raw.view(np.dtype(dt)).reshape(shape)
