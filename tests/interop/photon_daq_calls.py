"""Makes the same public EXtra-data API calls on ``extra_data`` or on
``photon_daq.euxfel`` and pickles what came back: types, reprs, exception classes
and messages, and arrays as (dtype, shape, digest). Run once per implementation
(the two cannot share a process); test_photon_daq_side_by_side.py compares.

    python photon_daq_calls.py {extra_data|photon_daq} OUT.pkl PATH...
"""

import hashlib
import importlib
import os
import pickle
import sys
import warnings

import numpy as np

MAX_BYTES = 50_000_000
# Keys per source whose values are compared: evenly spaced over the sorted keys, so every source
# and both ends of its key list are covered in `make test`; 0 compares every key
# (`make interop-long`). EXtra-data's SA3 example file alone has 3797 keys.
KEYS_PER_SOURCE = int(os.environ.get("SIDE_BY_SIDE_KEYS_PER_SOURCE", "8"))


def sample_keys(keys):
    keys = sorted(keys)
    if KEYS_PER_SOURCE <= 0 or len(keys) <= KEYS_PER_SOURCE:
        return keys
    last = len(keys) - 1
    return [keys[round(i * last / (KEYS_PER_SOURCE - 1))] for i in range(KEYS_PER_SOURCE)]


def digest(a):
    if isinstance(a, np.ndarray):
        if a.dtype.hasobject:
            return ("object", a.shape, repr(a.tolist()))
        return (a.dtype.str, a.shape, hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest())
    if isinstance(a, np.generic):
        return ("scalar", type(a).__name__, a.dtype.str, a.tobytes().hex())
    return ("value", type(a).__name__, repr(a))


def call(out, name, fn):
    """Record fn()'s result, or its exception class and message."""
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        try:
            r = fn()
        except Exception as e:  # the class and text are what we compare
            out[name] = ("raises", type(e).__name__, str(e))
            return None
    out[name] = ("returns", r)
    if w:
        out[name + " warnings"] = sorted(str(x.message) for x in w)
    return None


def describe_train(data):
    return {
        src: {k: (v if k == "metadata" else digest(v)) for k, v in d.items()}
        for src, d in data.items()
    }


def key_calls(out, p, kd, label):
    call(out, f"{p} {label} repr", lambda: repr(kd))
    call(out, f"{p} {label} shape", lambda: kd.shape)
    call(out, f"{p} {label} dtype", lambda: str(kd.dtype))
    call(out, f"{p} {label} entry_shape", lambda: kd.entry_shape)
    call(out, f"{p} {label} ndim", lambda: kd.ndim)
    call(out, f"{p} {label} train_ids", lambda: [int(t) for t in kd.train_ids])
    call(out, f"{p} {label} data_counts",
         lambda: kd.data_counts(labelled=False).tolist())
    call(out, f"{p} {label} train_id_coordinates",
         lambda: kd.train_id_coordinates().tolist())
    if kd.dtype.hasobject or kd.nbytes <= MAX_BYTES:
        call(out, f"{p} {label} ndarray", lambda: digest(kd.ndarray()))


def collection_calls(out, p, run, xd):
    call(out, f"{p} repr", lambda: repr(run))
    call(out, f"{p} type", lambda: type(run).__name__)
    call(out, f"{p} all_sources", lambda: sorted(run.all_sources))
    call(out, f"{p} control_sources", lambda: sorted(run.control_sources))
    call(out, f"{p} instrument_sources", lambda: sorted(run.instrument_sources))
    call(out, f"{p} train_ids", lambda: [int(t) for t in run.train_ids])
    call(out, f"{p} train_ids types", lambda: sorted({type(t).__name__ for t in run.train_ids}))
    tids = [int(t) for t in run.train_ids]
    for src in sorted(run.all_sources):
        sd = run[src]
        call(out, f"{p} {src} repr", lambda: repr(sd))
        call(out, f"{p} {src} keys", lambda: sorted(sd.keys()))
        call(out, f"{p} {src} keys no ts", lambda: sorted(sd.keys(inc_timestamps=False)))
        call(out, f"{p} {src} keys_for_source", lambda: sorted(run.keys_for_source(src)))
        call(out, f"{p} {src} data_counts", lambda: sd.data_counts(labelled=False).tolist())
        call(out, f"{p} {src} missing key", lambda: run[src, "no.such.key"])
        for key in sample_keys(sd.keys()):
            key_calls(out, p, run[src, key], f"{src} {key}")
    call(out, f"{p} missing source", lambda: run["NO/SUCH/SOURCE"])
    call(out, f"{p} no match", lambda: run.select("NO/SUCH*"))
    call(out, f"{p} missing train", lambda: run.train_from_id(1))
    call(out, f"{p} contains", lambda: [s in run for s in sorted(run.all_sources)])
    if not tids:
        return
    sels = {
        "by_index[2:5]": xd.by_index[2:5],
        "by_index[::3]": xd.by_index[::3],
        "by_id[t1:t4]": xd.by_id[tids[0] + 1: tids[0] + 4],
        "by_id[[t0,t-1]]": xd.by_id[[tids[0], tids[-1]]],
        "[0, -1]": [0, -1],
        "by_id[before run]": xd.by_id[: tids[0] - 5],
    }
    for label, sel in sels.items():
        call(out, f"{p} select_trains {label}", lambda: [int(t) for t in run.select_trains(sel).train_ids])
        sub = run.select_trains(sel) if f"{p} select_trains {label}" in out and \
            out[f"{p} select_trains {label}"][0] == "returns" else None
        if sub is None:
            continue
        for src in sorted(sub.all_sources):
            for key in sample_keys(sub[src].keys()):
                kd = sub[src, key]
                if kd.dtype.hasobject or kd.nbytes <= MAX_BYTES:
                    call(out, f"{p} {label} {src} {key} ndarray", lambda: digest(kd.ndarray()))
    call(out, f"{p} split_trains(3)",
         lambda: [[int(t) for t in s.train_ids] for s in run.split_trains(3)])
    call(out, f"{p} split_trains(tpp=2)",
         lambda: [len(s.train_ids) for s in run.split_trains(trains_per_part=2)])
    call(out, f"{p} train_from_index(0)",
         lambda: (lambda r: (r[0], describe_train(r[1])))(run.train_from_index(0)))
    call(out, f"{p} train_from_index(-1) keep_dims",
         lambda: (lambda r: (r[0], describe_train(r[1])))(run.train_from_index(-1, keep_dims=True)))
    call(out, f"{p} trains[:3]",
         lambda: [(t, describe_train(d)) for t, d in zip(range(3), run.trains())])
    call(out, f"{p} trains flat_keys",
         lambda: [sorted(map(str, d)) for _, (_, d) in zip(range(2), run.trains(flat_keys=True))])
    inst = sorted(run.instrument_sources)
    if inst:
        call(out, f"{p} select require_all", lambda: repr(run.select(inst[0], require_all=True)))
        call(out, f"{p} deselect", lambda: repr(run.deselect(inst[0])))
        call(out, f"{p} union", lambda: repr(run.select(inst[0]).union(run.deselect(inst[0]))))
        call(out, f"{p} select by dict", lambda: repr(run.select({inst[0]: set()})))


def main():
    impl, out_path, *paths = sys.argv[1:]
    xd = importlib.import_module("photon_daq.euxfel" if impl == "photon_daq" else "extra_data")
    out = {}
    for path in paths:
        p = os.path.basename(path)
        opener = xd.RunDirectory if os.path.isdir(path) else xd.H5File
        call(out, f"{p} open", lambda: repr(opener(path)))
        run = opener(path)
        collection_calls(out, p, run, xd)
    with open(out_path, "wb") as f:
        pickle.dump(out, f)


if __name__ == "__main__":
    main()
