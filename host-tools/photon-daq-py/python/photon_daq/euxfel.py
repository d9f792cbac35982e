"""EXtra-data's reading API over the Rust ``euxfel`` crate.

File work (opening, index reads, selections, array reads) runs in Rust with the
GIL released; arrays arrive as numpy arrays that own the Rust buffer (no copy).
This module adds EXtra-data's argument forms, reprs, warnings and return types.
"""

import ast
import operator
import os
import os.path as osp
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import _native
from . import euxfel_validation as validation  # noqa: F401  (photon_daq.euxfel.validation)
from .exceptions import PropertyNameError, SourceNameError, TrainIDError

__all__ = [
    "DataCollection",
    "SourceData",
    "KeyData",
    "H5File",
    "RunDirectory",
    "open_run",
    "by_id",
    "by_index",
]

DATA_ROOT_ENV = "EXTRA_DATA_DATA_ROOT"


# -- train selections ---------------------------------------------------------


class _SliceConstructor(type):
    """Lets ``by_id[1:5]`` build an instance."""

    def __getitem__(cls, item):
        return cls(item)


class _SliceConstructable(metaclass=_SliceConstructor):
    def __init__(self, value):
        self.value = value

    def __repr__(self):
        items = self.value if isinstance(self.value, tuple) else (self.value,)
        return f"{type(self).__name__}[{', '.join(_index_repr(v) for v in items)}]"


def _index_repr(value):
    if value is Ellipsis:
        return "..."
    if isinstance(value, slice):
        start = "" if value.start is None else value.start
        stop = "" if value.stop is None else value.stop
        step = "" if value.step is None else f":{value.step}"
        return f"{start}:{stop}{step}"
    return repr(value)


class by_id(_SliceConstructable):
    """Select trains by train ID: ``by_id[start:stop]`` or ``by_id[[ids]]``."""


class by_index(_SliceConstructable):
    """Select trains by position: ``by_index[start:stop:step]`` or a list."""


def _is_int_like(x):
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _emit(messages, stacklevel=3):
    for m in messages:
        warnings.warn(m.removeprefix("warning: "), stacklevel=stacklevel)


def _select_trains(obj, sel, n_trains, train_ids):
    """Apply an EXtra-data train selection to a native Collection or Key;
    returns the new native object (warnings emitted)."""
    if isinstance(sel, by_index):
        sel = sel.value
    if isinstance(sel, by_id):
        v = sel.value
        if isinstance(v, slice):
            new, w = obj.select_trains("id_range", (v.start, v.stop))
            _emit(w, 4)
            if v.step is not None:
                new, w = new.select_trains("index_range", (None, None, v.step))
                _emit(w, 4)
            return new
        if _is_int_like(v):
            v = [operator.index(v)]
        if isinstance(v, (list, np.ndarray)):
            new, w = obj.select_trains("id_list", [int(t) for t in v])
            _emit(w, 4)
            return new
        raise TypeError(type(v))
    if isinstance(sel, slice):
        new, _ = obj.select_trains("index_range", (sel.start, sel.stop, sel.step))
        return new
    if _is_int_like(sel):
        i = operator.index(sel)
        if not -n_trains <= i < n_trains:
            raise IndexError("list index out of range")
        new, _ = obj.select_trains("index_list", [i])
        return new
    if isinstance(sel, np.ndarray) and sel.dtype == np.bool_:
        if len(sel) != n_trains:
            raise ValueError(
                f"Boolean selector length ({len(sel)}) must match "
                f"train_ids length ({n_trains})"
            )
        new, _ = obj.select_trains("id_list", [int(t) for t, k in zip(train_ids, sel) if k])
        return new
    if isinstance(sel, (list, np.ndarray)):
        idx = [operator.index(i) for i in sel]
        for i in idx:
            if not -n_trains <= i < n_trains:
                raise IndexError(f"index {i} is out of bounds for axis 0 with size {n_trains}")
        new, _ = obj.select_trains("index_list", idx)
        return new
    raise TypeError(type(sel))


def _split_parts(n_trains, parts, trains_per_part):
    return _native.split_ranges(n_trains, parts, trains_per_part)


def _train_ids_list(arr):
    # EXtra-data gives a list of numpy.uint64.
    return list(arr)


def _numpy_dtype(name):
    """A dtype name from the native module; compounds come as numpy's list-of-fields form."""
    if name.startswith("["):
        return np.dtype(ast.literal_eval(name))
    return np.dtype(name)


def _value(v, is_control, keep_dims):
    """A native train value -> what EXtra-data returns for one train of a key."""
    if isinstance(v, list):  # strings: per-train reads give bytes, as h5py does
        v = [x.encode("utf-8", "surrogateescape") for x in v]
        if is_control:
            return v[0]
        if len(v) == 1 and not keep_dims:
            return v[0]
        return np.array(v, dtype=object)
    descr, shape, raw = v
    arr = raw.view(_numpy_dtype(descr)).reshape(shape)
    if is_control:
        return arr[()] if arr.ndim == 0 else arr
    if shape[0] == 1 and not keep_dims:
        return arr[0]
    return arr


# trains() reads this many bytes (estimated) or trains per block, whichever is fewer.
# A big key's block buffer is then above glibc's largest mmap threshold (32 MB): it
# comes from the kernel zeroed, and pages of unallocated chunks are never touched;
# heap buffers reused below that size would be zero-filled on every block.
_TRAIN_BLOCK_BYTES = 64 << 20
_TRAIN_BLOCK_TRAINS = 512
# A train without entries for a key (the key is left out of that train's dict).
_NO_DATA = object()


def _block_values(source, key, counts, v, is_control, keep_dims):
    """``(source, key, [value per train of the block])`` from one block read; the
    values are views of the block's array, as ``_value`` shapes them."""
    total = sum(counts)
    if isinstance(v, list):  # strings: per-train reads give bytes, as h5py does
        arr = [x.encode("utf-8", "surrogateescape") for x in v]
    else:
        descr, entry_shape, raw = v
        arr = raw.view(_numpy_dtype(descr)).reshape((total, *entry_shape))
    values = []
    off = 0
    for c in counts:
        if c == 0:
            values.append(_NO_DATA)
        elif is_control:
            values.append(arr[off])
        elif c == 1 and not keep_dims:
            values.append(arr[off])
        elif isinstance(arr, list):
            values.append(np.array(arr[off:off + c], dtype=object))
        else:
            values.append(arr[off:off + c])
        off += c
    return source, key, values


class _FileRef:
    """What the tests and user code look at on ``DataCollection.files``."""

    __slots__ = ("filename", "format_version")

    def __init__(self, filename, format_version):
        self.filename = filename
        self.format_version = format_version

    def __repr__(self):
        return f"<FileAccess for {self.filename!r}>"


# -- DataCollection -----------------------------------------------------------


class DataCollection:
    """A collection of European XFEL data (EXtra-data's ``DataCollection``)."""

    def __init__(self, native, *, ctx_closes=False):
        self._native = native
        self.ctx_closes = ctx_closes
        self._train_ids = None
        self._sources = None
        self.is_single_run = native.is_single_run()
        self.inc_suspect_trains = native.inc_suspect_trains()

    @classmethod
    def from_paths(cls, paths, *, inc_suspect_trains=True, **_):
        native, w = _native.Collection.from_paths(
            [os.fspath(p) for p in paths], inc_suspect_trains
        )
        _emit(w)
        return cls(native, ctx_closes=True)

    @classmethod
    def from_path(cls, path, *, inc_suspect_trains=True):
        return H5File(path, inc_suspect_trains=inc_suspect_trains)

    def __enter__(self):
        if not self.ctx_closes:
            raise Exception(
                "Only DataCollection objects created by opening "
                "files directly can be used in a 'with' statement, "
                "not those created by selecting from or merging "
                "others."
            )
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        # Files are memory-mapped and closed when the last reference goes.
        return None

    def _new(self, native):
        return DataCollection(native)

    # properties
    @property
    def train_ids(self):
        if self._train_ids is None:
            self._train_ids = _train_ids_list(self._native.train_ids())
        return self._train_ids

    def _source_sets(self):
        if self._sources is None:
            self._sources = (
                frozenset(self._native.control_sources()),
                frozenset(self._native.instrument_sources()),
                self._native.legacy_sources(),
            )
        return self._sources

    @property
    def control_sources(self):
        return self._source_sets()[0]

    @property
    def instrument_sources(self):
        return self._source_sets()[1]

    @property
    def legacy_sources(self):
        return dict(self._source_sets()[2])

    @property
    def all_sources(self):
        return self.control_sources | self.instrument_sources

    @property
    def detector_sources(self):
        import re

        det = re.compile(r"(.+)/DET/(\d+)CH")
        return {s for s in self.instrument_sources if det.match(s)} - self.legacy_sources.keys()

    @property
    def selection(self):
        return {
            src: (None if keys is None else set(keys))
            for src, keys in self._native.selection().items()
        }

    @property
    def files(self):
        return [_FileRef(os.fspath(p), v) for p, v in self._native.files()]

    # access
    def _get_source_data(self, source):
        if source not in self.all_sources:
            raise SourceNameError(source)
        if source in self.legacy_sources:
            warnings.warn(
                f"{source} is a legacy name for {self.legacy_sources[source]}. "
                "Access via this name will be removed for future data.",
                DeprecationWarning,
                stacklevel=3,
            )
        return SourceData(self._native, source)

    def keys_for_source(self, source):
        return self._get_source_data(source).keys()

    def __getitem__(self, item):
        if isinstance(item, tuple) and len(item) == 2 and all(isinstance(e, str) for e in item):
            return self._get_source_data(item[0])[item[1]]
        if isinstance(item, str):
            return self._get_source_data(item)
        if isinstance(item, (by_id, by_index, list, np.ndarray, slice)) or _is_int_like(item):
            return self.select_trains(item)
        raise TypeError("Expected data[source], data[source, key] or data[train_selection]")

    def __contains__(self, item):
        if isinstance(item, tuple) and len(item) == 2 and all(isinstance(e, str) for e in item):
            return item[0] in self.all_sources and item[1] in SourceData(self._native, item[0])
        if isinstance(item, str):
            return item in self.all_sources
        return False

    __iter__ = None  # not iterable, as in EXtra-data

    def _ipython_key_completions_(self):
        return list(self.all_sources)

    def get_entry_shape(self, source, key):
        return self[source, key].entry_shape

    def get_dtype(self, source, key):
        return self[source, key].dtype

    def get_data_counts(self, source, key):
        return self[source, key].data_counts()

    # selection
    def _selection_arg(self, selection):
        """EXtra-data's selection forms -> ("glob", [(source glob, key glob)]) or
        ("exact", {source: keys or None})."""
        if isinstance(selection, DataCollection):
            return "exact", {s: k for s, k in selection.selection.items()}
        if isinstance(selection, SourceData):
            return "exact", {selection.source: selection._sel_keys()}
        if isinstance(selection, KeyData):
            return "exact", {selection.source: {selection.key}}
        if isinstance(selection, dict):
            return "exact", {s: (set(k) if k else None) for s, k in selection.items()}
        patterns = []
        for item in selection:
            if isinstance(item, str):
                patterns.append((item, "*"))
            elif isinstance(item, tuple) and len(item) == 2:
                patterns.append(item)
            else:
                raise TypeError(f"Unknown selection type: {item!r}")
        return "glob", patterns

    def _select_native(self, selection):
        kind, arg = self._selection_arg(selection)
        if kind == "exact":
            return self._native.select_exact(arg)
        return self._native.select(arg, False, False)

    def select(self, seln_or_source_glob, key_glob="*", require_all=False,
               require_any=False, *, warn_drop_trains_frac=1.0):
        if require_all and require_any:
            raise ValueError("select() cannot require both all and any data")
        if isinstance(seln_or_source_glob, str):
            seln_or_source_glob = [(seln_or_source_glob, key_glob)]
        sel = self._select_native(seln_or_source_glob)
        if require_all or require_any:
            tids = self._trains_with_data(sel, require_all, warn_drop_trains_frac)
            sel, _ = sel.select_trains("id_list", tids)
        return self._new(sel)

    @staticmethod
    def _trains_with_data(sel, require_all, frac):
        """Train IDs where all (any) selected sources have data in every selected
        index group, with EXtra-data's warning when a source drops trains."""
        all_tids = [int(t) for t in sel.train_ids()]
        kept = set(all_tids) if require_all else set()
        controls = set(sel.control_sources())
        for source in sorted(controls | set(sel.instrument_sources())):
            if source in controls and not sel.keys(source, True):
                continue  # RUN-only control source
            per_group = [
                {t for t, c in zip(all_tids, sel.data_counts(source, group)) if c > 0}
                for group in sel.index_groups(source)
            ]
            if not per_group:
                continue
            have = set.intersection(*per_group) if require_all else set.union(*per_group)
            before = len(kept)
            if require_all:
                kept &= have
                n_drop = before - len(kept)
                if before and n_drop / before >= frac:
                    warnings.warn(
                        f"{n_drop}/{before} ({n_drop / before:.0%}) trains dropped "
                        f"when filtering by {source}",
                        stacklevel=4,
                    )
            else:
                kept |= have
        return sorted(kept)

    def deselect(self, seln_or_source_glob, key_glob="*"):
        if isinstance(seln_or_source_glob, str):
            seln_or_source_glob = [(seln_or_source_glob, key_glob)]
        kind, arg = self._selection_arg(seln_or_source_glob)
        if kind == "exact":
            arg = [(src, "*") if not keys else (src, k) for src, keys in arg.items()
                   for k in (keys or [None])]
        return self._new(self._native.deselect(arg))

    def select_trains(self, train_range):
        return self._new(
            _select_trains(self._native, train_range, len(self.train_ids), self.train_ids)
        )

    def split_trains(self, parts=None, trains_per_part=None):
        for start, stop in _split_parts(len(self.train_ids), parts, trains_per_part):
            yield self.select_trains(slice(start, stop))

    def union(self, *others):
        natives = []
        for o in others:
            if not isinstance(o, DataCollection):
                raise TypeError(f"Cannot combine DataCollection with {type(o).__name__}")
            natives.append(o._native)
        return self._new(self._native.union(natives))

    def __or__(self, other):
        return self.union(other)

    def __ior__(self, other):
        return self.union(other)

    # trains
    def _assemble(self, tid, data, flat_keys, sources, legacy):
        """One train's dict from ``{source: {key: value}}`` (values as returned)."""
        res = {}
        for source in sources:
            if source in legacy:
                warnings.warn(
                    f"{source} is a legacy name for {legacy[source]}. "
                    "Access via this name will be removed for future data.",
                    DeprecationWarning,
                    stacklevel=4,
                )
            d = {"metadata": {"source": source, "timestamp.tid": tid}}
            d.update(data.get(source, ()))
            res[source] = d
        if flat_keys:
            res = {(s, k): v for s, d in res.items() for k, v in d.items()}
        return res

    def _required_data(self):
        """Per selected source: its index groups (instrument) or whether it has keys
        (control), which ``require_all`` wants in every train."""
        legacy = self.legacy_sources
        need = {}
        for source in self.all_sources:
            if source in legacy:
                continue
            keys = SourceData(self._native, source).keys()
            if source in self.control_sources:
                need[source] = bool(keys)
            else:
                need[source] = {k.partition(".")[0] for k in keys}
        return need

    @staticmethod
    def _missing_data(data, need):
        """A train lacks data for a selected source or index group."""
        for source, want in need.items():
            have = data.get(source, {})
            if want is True:
                if not have:
                    return True
            elif want and want - {k.partition(".")[0] for k in have}:
                return True
        return False

    def trains(self, devices=None, train_range=None, *, require_all=False,
               flat_keys=False, keep_dims=False):
        dc = self
        if devices is not None:
            dc = dc.select(devices)
        if train_range is not None:
            dc = dc.select_trains(train_range)
        return dc._iter_trains(require_all, flat_keys, keep_dims)

    def _iter_trains(self, require_all, flat_keys, keep_dims):
        reader = self._native.train_blocks()
        sources = sorted(self.all_sources)
        legacy = self.legacy_sources
        controls = self.control_sources
        need = self._required_data() if require_all else None
        tids = [int(t) for t in self.train_ids]
        # Trains per block: one read per key and block, bounded in memory.
        step = _TRAIN_BLOCK_BYTES // max(1, reader.bytes_per_train())
        step = max(1, min(_TRAIN_BLOCK_TRAINS, step))
        for start in range(0, len(tids), step):
            block = [
                _block_values(source, key, counts, v, source in controls, keep_dims)
                for source, key, counts, v in reader.read(start, start + step)
            ]
            for i, tid in enumerate(tids[start:start + step]):
                data = {}
                for source, key, values in block:
                    v = values[i]
                    if v is not _NO_DATA:
                        data.setdefault(source, {})[key] = v
                if need is not None and self._missing_data(data, need):
                    continue
                yield tid, self._assemble(tid, data, flat_keys, sources, legacy)

    def train_from_id(self, train_id, devices=None, *, flat_keys=False, keep_dims=False):
        if train_id not in self.train_ids:
            raise TrainIDError(train_id)
        if devices is not None:
            return self.select(devices).train_from_id(
                train_id, flat_keys=flat_keys, keep_dims=keep_dims
            )
        tid = int(train_id)
        controls = self.control_sources
        data = {
            source: {k: _value(v, source in controls, keep_dims) for k, v in keys.items()}
            for source, keys in self._native.train_from_id(tid).items()
        }
        return tid, self._assemble(
            tid, data, flat_keys, sorted(self.all_sources), self.legacy_sources
        )

    def train_from_index(self, train_index, devices=None, *, flat_keys=False, keep_dims=False):
        train_id = self.train_ids[train_index]
        return self.train_from_id(
            int(train_id), devices=devices, flat_keys=flat_keys, keep_dims=keep_dims
        )

    # display
    def __repr__(self):
        return (
            f"<extra_data.DataCollection for {len(self.all_sources)} "
            f"sources and {len(self.train_ids)} trains>"
        )

    def get_series(self, source, key):
        """A pandas Series of a 1D key (:meth:`KeyData.series`)."""
        return self[source, key].series()

    def get_array(self, source, key, extra_dims=None, roi=(), name=None):
        """A labelled array of a key (:meth:`KeyData.xarray`)."""
        if isinstance(roi, by_index):
            roi = roi.value
        return self[source, key].xarray(extra_dims=extra_dims, roi=roi, name=name)

    def write(self, filename):
        """Write the selected data to one new HDF5 file (a copy; chunks copied as
        stored where they line up). An existing file is replaced."""
        self._native.write(os.fspath(filename), False)

    def write_virtual(self, filename):
        """Write one file of virtual datasets pointing into this data's files."""
        self._native.write(os.fspath(filename), True)

    def info(self, details_for_sources=(), *, counts=False, group_sources=True,
             with_aggregators=False, with_auxiliary=False):
        if isinstance(details_for_sources, str):
            details_for_sources = [details_for_sources]
        text, w = self._native.info(
            list(details_for_sources), counts, group_sources, with_aggregators, with_auxiliary
        )
        _emit(w)
        print(text, end="")


# -- SourceData -----------------------------------------------------------------


class SourceData:
    """One source of a collection (EXtra-data's ``SourceData``)."""

    def __init__(self, native, source):
        self._native = native
        self.source = source
        self._train_ids = None

    def _sel_keys(self):
        keys = self._native.selection().get(self.source)
        return None if keys is None else set(keys)

    @property
    def section(self):
        return "CONTROL" if self.source in self._native.control_sources() else "INSTRUMENT"

    @property
    def is_control(self):
        return self.section == "CONTROL"

    @property
    def is_instrument(self):
        return self.section == "INSTRUMENT"

    @property
    def is_legacy(self):
        return self.source in self._native.legacy_sources()

    @property
    def is_run_only(self):
        return self.is_control and not self.keys()

    @property
    def train_ids(self):
        if self._train_ids is None:
            self._train_ids = _train_ids_list(self._native.train_ids())
        return self._train_ids

    @property
    def files(self):
        return DataCollection(self._native).files

    def __repr__(self):
        return f"<extra_data.SourceData source={self.source!r} for {len(self.train_ids)} trains>"

    def keys(self, inc_timestamps=True):
        return set(self._native.keys(self.source, inc_timestamps))

    def __contains__(self, key):
        if self._native.has_key(self.source, key):
            return True
        return self.is_control and self._native.has_key(self.source, key + ".value")

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self:
                raise PropertyNameError(key, self.source)
            return KeyData(self._native.key(self.source, key))
        if isinstance(key, (by_id, by_index, list, np.ndarray, slice)) or _is_int_like(key):
            return self.select_trains(key)
        raise TypeError("Expected data[key] or data[train_selection]")

    def _ipython_key_completions_(self):
        return list(self.keys(inc_timestamps=False))

    def index_groups(self):
        return set(self._native.index_groups(self.source))

    def one_key(self, index_group=None):
        keys = sorted(self.keys())
        if index_group is None or self.is_control:
            return keys[0] if keys else None
        return next((k for k in keys if k.startswith(index_group + ".")), None)

    def select_keys(self, keys):
        """A key name, a glob pattern, or a set of names (None or empty: all)."""
        if isinstance(keys, str):
            if not any(c in keys for c in "*?["):
                if keys not in self:
                    raise PropertyNameError(keys, self.source)
                keys = {keys}
            else:
                return SourceData(self._native.select([(self.source, keys)], False, False),
                                  self.source)
        if not keys:
            return SourceData(self._native.select_exact({self.source: None}), self.source)
        return SourceData(self._native.select_exact({self.source: set(keys)}), self.source)

    def select_trains(self, trains):
        n = len(self.train_ids)
        return SourceData(_select_trains(self._native, trains, n, self.train_ids), self.source)

    def split_trains(self, parts=None, trains_per_part=None):
        for start, stop in _split_parts(len(self.train_ids), parts, trains_per_part):
            yield self.select_trains(slice(start, stop))

    def data_counts(self, labelled=True, index_group=None):
        counts = self._native.data_counts(self.source, index_group)
        if labelled:
            import pandas as pd

            return pd.Series(counts, index=self.train_ids)
        return counts

    def train_id_coordinates(self, index_group=None):
        key = self.one_key(index_group)
        if key is None:
            return np.zeros(0, dtype=np.uint64)
        return self[key].train_id_coordinates()

    def drop_empty_trains(self, index_group=None):
        counts = self.data_counts(labelled=False, index_group=index_group)
        return self.select_trains(by_id[[t for t, c in zip(self.train_ids, counts) if c > 0]])

    def union(self, *others):
        natives = []
        for o in others:
            if not isinstance(o, SourceData) or o.source != self.source:
                raise ValueError("Cannot use SourceData.union() with different sources")
            natives.append(o._native)
        return SourceData(self._native.union(natives).select([(self.source, "*")], False, False),
                          self.source)

    def __or__(self, other):
        return self.union(other)

    def __ior__(self, other):
        return self.union(other)


# -- KeyData ----------------------------------------------------------------------


class KeyData:
    """One key of one source (EXtra-data's ``KeyData``)."""

    def __init__(self, native):
        self._native = native
        self.source = native.source
        self.key = native.key
        self.section = native.section
        self._train_ids = None

    def __repr__(self):
        return (
            f"<extra_data.KeyData source={self.source!r} key={self.key!r} "
            f"for {len(self.train_ids)} trains>"
        )

    @property
    def is_control(self):
        return self.section == "CONTROL"

    @property
    def is_instrument(self):
        return self.section == "INSTRUMENT"

    @property
    def index_group(self):
        return "" if self.is_control else self.key.partition(".")[0]

    @property
    def hdf5_data_path(self):
        return f"/{self.section}/{self.source}/{self.key.replace('.', '/')}"

    @property
    def train_ids(self):
        if self._train_ids is None:
            self._train_ids = _train_ids_list(self._native.train_ids())
        return self._train_ids

    @property
    def files(self):
        return [_FileRef(os.fspath(p), None) for p in self._native.file_paths()]

    @property
    def dtype(self):
        return _numpy_dtype(self._native.dtype)

    @property
    def shape(self):
        return tuple(self._native.shape)

    @property
    def entry_shape(self):
        return tuple(self._native.entry_shape)

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def nbytes(self):
        n = self._native.nbytes
        return n if n is not None else int(np.prod(self.shape)) * self.dtype.itemsize

    @property
    def size_mb(self):
        return self.nbytes / 1e6

    @property
    def size_gb(self):
        return self.nbytes / 1e9

    def select_trains(self, trains):
        new = _select_trains(self._native, trains, len(self.train_ids), self.train_ids)
        return KeyData(new)

    def __getitem__(self, item):
        return self.select_trains(item)

    def split_trains(self, parts=None, trains_per_part=None):
        for start, stop in _split_parts(len(self.train_ids), parts, trains_per_part):
            yield self.select_trains(slice(start, stop))

    def data_counts(self, labelled=True):
        counts = self._native.data_counts()
        if labelled:
            import pandas as pd

            return pd.Series(counts, index=self.train_ids)
        return counts

    def drop_empty_trains(self):
        counts = self._native.data_counts()
        return self.select_trains(by_id[[t for t, c in zip(self.train_ids, counts) if c > 0]])

    def train_id_coordinates(self):
        return self._native.train_id_coordinates()

    def _read_all(self):
        data = self._native.read()
        if isinstance(data, list):
            return np.array(data, dtype=object).reshape(self.shape)
        dt = self.dtype
        if data.dtype != dt:  # bool (read as uint8) and other raw types
            data = data.view(dt).reshape(self.shape)
        return data

    def ndarray(self, roi=(), out=None):
        """Load the data as a numpy array; ``roi`` selects part of each entry."""
        if not isinstance(roi, tuple):
            roi = (roi,)
        if not roi:
            if out is None:
                return self._read_all()
            if out.shape != self.shape:
                raise ValueError(f"requires output array of shape {self.shape}")
            if out.dtype == self.dtype and out.flags.c_contiguous:
                self._native.read_into(out.reshape(-1).view(np.uint8))
            else:
                out[...] = self._read_all()
            return out
        data = self._read_all()[(slice(None),) + roi]
        if out is None:
            return data
        if out.shape != data.shape:
            raise ValueError(f"requires output array of shape {data.shape}")
        out[...] = data
        return out

    def _train_data(self, tid, count, keep_dims):
        sel = KeyData(self._native.select_trains("id_list", [int(tid)])[0])
        arr = sel._read_all()
        if arr.dtype.hasobject:  # per-train reads give bytes, as h5py does
            arr = np.array([x.encode("utf-8", "surrogateescape") for x in arr.flat],
                           dtype=object).reshape(arr.shape)
        if count == 1 and not keep_dims:
            return arr[0]
        return arr

    def train_from_id(self, tid, keep_dims=False):
        if tid not in self.train_ids:
            raise TrainIDError(tid)
        i = self.train_ids.index(tid)
        count = int(self._native.data_counts()[i])
        if count == 0:
            return tid, np.empty((0,) + self.entry_shape, dtype=self.dtype)
        return tid, self._train_data(tid, count, keep_dims)

    def train_from_index(self, i, keep_dims=False):
        return self.train_from_id(self.train_ids[i], keep_dims=keep_dims)

    def trains(self, keep_dims=False, include_empty=False):
        """Yield ``(train ID, array)`` for each train with data (all trains with
        ``include_empty``)."""
        empty = None
        if keep_dims and include_empty:
            empty = np.zeros((0,) + self.entry_shape, dtype=self.dtype)
        counts = self._native.data_counts()
        for tid, count in zip(self.train_ids, counts):
            if count > 0:
                yield tid, self._train_data(tid, int(count), keep_dims)
            elif include_empty:
                yield tid, empty

    def xarray(self, extra_dims=None, roi=(), name=None):
        import xarray

        data = self.ndarray(roi=roi)
        if extra_dims is None:
            extra_dims = [f"dim_{i}" for i in range(data.ndim - 1)]
        if name is None:
            name = f"{self.source}.{self.key.removesuffix('.value')}"
        return xarray.DataArray(
            data,
            dims=["trainId"] + list(extra_dims),
            coords={"trainId": self.train_id_coordinates()},
            name=name,
        )

    def series(self):
        import pandas as pd

        if self.ndim > 1:
            raise TypeError("pandas Series are only available for 1D data")
        name = self.source + "/" + self.key.removesuffix(".value")
        index = pd.Index(self.train_id_coordinates(), name="trainId")
        return pd.Series(self.ndarray(), index=index, name=name)


# -- opening --------------------------------------------------------------------


def H5File(path, *, inc_suspect_trains=True):
    """Open one EuXFEL HDF5 file; returns a :class:`DataCollection`."""
    native, w = _native.Collection.open_file(os.fspath(path), inc_suspect_trains)
    _emit(w)
    return DataCollection(native, ctx_closes=True)


def RunDirectory(path, include="*", file_filter=None, *, inc_suspect_trains=True,
                 parallelize=True, _use_voview=True):
    """Open a run directory; returns a :class:`DataCollection`.

    ``file_filter`` (EXtra-data's locality filters) is not supported.
    """
    if file_filter is not None:
        raise NotImplementedError("file_filter is not supported by photon_daq")
    native, w = _native.Collection.open_run(
        os.fspath(path), include, inc_suspect_trains, parallelize
    )
    _emit(w)
    return DataCollection(native, ctx_closes=True)


def _data_root():
    return Path(os.environ.get(DATA_ROOT_ENV, "/gpfs/exfel/exp"))


def _find_proposal(propno):
    if "/" in propno:
        return propno
    for d in _data_root().glob(f"*/*/{propno}"):
        return str(d)
    raise Exception(f"Couldn't find proposal dir for {propno!r}")


def open_run(proposal, run, data="default", include="*", file_filter=None, *,
             inc_suspect_trains=True, parallelize=True, aliases=None, _use_voview=True):
    """Open a run by proposal and run number (EXtra-data's ``open_run``): the
    proposal directory is looked up under ``$EXTRA_DATA_DATA_ROOT`` (default
    ``/gpfs/exfel/exp``). ``data`` is ``'raw'``, ``'proc'``, ``'default'``
    (proc over raw, proc optional), ``'all'`` or a sequence of locations.

    Aliases are not supported (``aliases`` must be None).
    """
    if aliases is not None:
        raise NotImplementedError("aliases are not supported by photon_daq")
    absence_ok = set()
    if data == "default":
        data, absence_ok = ["proc", "raw"], {"proc"}
    elif data == "all":
        data = ["raw", "proc"]
    if isinstance(data, Sequence) and not isinstance(data, str):
        base = None
        for origin in data:
            try:
                dc = open_run(proposal, run, data=origin, include=include,
                              file_filter=file_filter, inc_suspect_trains=inc_suspect_trains,
                              parallelize=parallelize)
            except FileNotFoundError:
                if origin not in absence_ok:
                    if base is None:
                        raise
                    warnings.warn(f"No data available for this run at origin {origin}")
                continue
            if base is None:
                base = dc
                continue
            extra = base.deselect([(s, "*") for s in base.all_sources & dc.all_sources])
            base = dc.union(extra) if extra.all_sources else dc
            if extra.all_sources:
                base.is_single_run = True
        return base

    if isinstance(proposal, os.PathLike):
        prop_dir = os.fsdecode(proposal)
    else:
        if isinstance(proposal, str):
            if "/" not in proposal and not proposal.startswith("p"):
                proposal = "p" + proposal.rjust(6, "0")
        else:
            proposal = f"p{operator.index(proposal):06d}"
        prop_dir = _find_proposal(proposal)
    if isinstance(run, str):
        run = run.removeprefix("r")
    else:
        run = operator.index(run)
    run_dir = osp.join(prop_dir, data, "r" + str(run).zfill(4))
    if not osp.isdir(run_dir):
        raise FileNotFoundError(f"No HDF5 files found in {run_dir} with glob pattern {include}")
    return RunDirectory(run_dir, include=include, file_filter=file_filter,
                        inc_suspect_trains=inc_suspect_trains, parallelize=parallelize)
