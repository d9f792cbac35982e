"""photon_daq.components next to extra_data.components on EXtra-data's example runs
(LPD raw, LPD parallel gain, LPD Mini with a missed train, AGIPD raw and corrected,
AGIPD500K, DSSC, JUNGFRAU): the same public calls give the same types, reprs,
exception classes and messages, warnings and equal arrays (dtype, shape, values).
Each implementation runs in its own process (this file as a script), as
test_photon_daq_side_by_side.py does.

    python test_photon_daq_components.py {extra_data|photon_daq} OUT.pkl RUN_DIR
"""

import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from euxfel_helpers import side_by_side
from photon_daq_calls import call, digest

RUNS = {
    "lpd_raw": ("make_fxe_run", {}),
    "lpd_parallel_gain": ("make_lpd_parallelgain_run", {}),
    "lpd_mini_missed_train": ("make_lpd_run_mini_missed_train", {}),
    "agipd_raw": ("make_spb_run", {}),
    "agipd_proc": ("make_spb_run", {"raw": False}),
    "agipd_reduced_proc": ("make_reduced_spb_run", {"raw": False}),
    "agipd500k": ("make_agipd500k_run", {}),
    "dssc": ("make_scs_run", {}),
    "jungfrau": ("make_jungfrau_run", {}),
}
# `make test` compares one run of each detector family (missed trains, corrected data, 1-based
# JUNGFRAU modules, DSSC); `make interop-long` (INTEROP_LONG=1) compares every run above.
if os.environ.get("INTEROP_LONG") != "1":
    RUNS = {k: RUNS[k] for k in ("lpd_mini_missed_train", "agipd_proc", "dssc", "jungfrau")}


def key_calls(out, p, kd, xtdf_image, roi):
    call(out, f"{p} shape", lambda: kd.shape)
    call(out, f"{p} dtype", lambda: str(kd.dtype))
    call(out, f"{p} dimensions", lambda: kd.dimensions)
    call(out, f"{p} modules", lambda: kd.modules)
    call(out, f"{p} ndarray", lambda: digest(kd.ndarray()))
    call(out, f"{p} ndarray gaps fill", lambda: digest(kd.ndarray(fill_value=7, module_gaps=True)))
    call(out, f"{p} ndarray float32", lambda: digest(kd.ndarray(astype=np.float32)))
    if roi is not None:
        call(out, f"{p} ndarray roi", lambda: digest(kd.ndarray(roi=roi)))
    call(out, f"{p} train_id_coordinates", lambda: digest(kd.train_id_coordinates()))
    call(out, f"{p} data_availability", lambda: digest(kd.data_availability(module_gaps=True)))
    call(out, f"{p} trains 1:", lambda: digest(kd.select_trains(np.s_[1:]).ndarray()))
    call(out, f"{p} split", lambda: [digest(k.ndarray()) for k in kd.split_trains(trains_per_part=1)])
    if xtdf_image:
        call(out, f"{p} pulse ids", lambda: digest(kd.pulse_id_coordinates()))
        call(out, f"{p} cell ids", lambda: digest(kd.cell_id_coordinates()))
        sel = kd.select_pulses(np.s_[1:7:2])
        call(out, f"{p} pulses 1:7:2", lambda: (sel.shape, digest(sel.ndarray())))
        call(out, f"{p} pulses 1:7:2 ids", lambda: digest(sel.pulse_id_coordinates()))
        call(out, f"{p} pulses [0, 3] trains 1:", lambda: digest(
            kd.select_pulses([0, 3]).select_trains(np.s_[1:]).ndarray()))
        call(out, f"{p} pulses negative", lambda: kd.select_pulses(np.s_[-1:]))
        call(out, f"{p} pulses step 0", lambda: kd.select_pulses(np.s_[0:4:0]))


def det_calls(out, cmod, lib, path):
    run = lib.RunDirectory(path)
    call(out, "identify", lambda: sorted(
        (n, c.__name__) for n, c in cmod.identify_multimod_detectors(run)))
    name, cls = cmod.identify_multimod_detectors(run, single=True)
    cls = getattr(cmod, cls.__name__)
    call(out, "min_modules 0", lambda: cls(run, min_modules=0))
    call(out, "min_modules 99", lambda: cls(run, min_modules=99))
    call(out, "wrong detector name", lambda: cls(run, detector_name="NO_SUCH_DET"))
    other = cmod.JUNGFRAU if cls is not cmod.JUNGFRAU else cmod.AGIPD1M
    call(out, "no such detector", lambda: other(run))
    kwargs = {"parallel_gain": True} if "parallelgain" in str(path) else {}
    call(out, "open", lambda: cls(run, **kwargs))
    det = cls(run.select_trains(np.s_[:2]), **kwargs)
    call(out, "repr", lambda: repr(det))
    call(out, "detector_name", lambda: det.detector_name)
    call(out, "n_modules", lambda: det.n_modules)
    call(out, "source_to_modno", lambda: sorted(det.source_to_modno.items()))
    call(out, "data sources", lambda: sorted(det.data.all_sources))
    call(out, "train_ids", lambda: [int(t) for t in det.train_ids])
    call(out, "frame_counts", lambda: (digest(det.frame_counts.values),
                                       digest(det.frame_counts.index.values)))
    call(out, "frames_per_train", lambda: int(det.frames_per_train))
    call(out, "data_availability", lambda: digest(det.data_availability()))
    call(out, "select_trains by_id", lambda: [
        int(t) for t in det.select_trains(lib.by_id[[det.train_ids[-1]]]).train_ids])
    call(out, "split frames", lambda: [
        [int(t) for t in d.train_ids] for d in det.split_trains(frames_per_part=100)])
    call(out, "split no args", lambda: list(det.split_trains()))
    main = "data.adc" if cls is cmod.JUNGFRAU else "image.data"
    key_calls(out, main, det[main], main.startswith("image."), np.s_[..., 1:5, 2:9])
    if main.startswith("image."):
        key_calls(out, "image.pulseId", det["image.pulseId"], True, None)
        if "header.pulseCount" in det:
            key_calls(out, "header.pulseCount", det["header.pulseCount"], False, None)
        xa = det.get_array(main, pulses=np.s_[0:4])
        call(out, "get_array", lambda: (xa.dims, digest(xa.values),
                                        [digest(np.asarray(xa.coords[c])) for c in xa.dims]))
    else:
        call(out, "cell_ids", lambda: digest(det.cell_ids()))
        xa = det.get_array(main)
        call(out, "get_array", lambda: (xa.dims, digest(xa.values)))
    sel = run.select([(s, main) for s in det.source_to_modno])
    train = sel.train_from_id(det.train_ids[0])[1]
    pattern = r"/DET/JNGFR(\d+)" if cls is cmod.JUNGFRAU else r"/DET/(\d+)CH"
    call(out, "stack_detector_data", lambda: digest(cmod.stack_detector_data(
        train, main, modules=det.n_modules, pattern=pattern,
        starts_at=1 if cls is cmod.JUNGFRAU else 0)))
    call(out, "stack_detector_data fill", lambda: digest(cmod.stack_detector_data(
        train, main, fillvalue=3,
        modules=det.n_modules + 2, pattern=pattern, axis=-2)))
    call(out, "stack_detector_data none", lambda: cmod.stack_detector_data({}, main))


def main():
    impl, out_path, path = sys.argv[1:4]
    if impl == "extra_data":
        import extra_data as lib
        from extra_data import components as cmod
        from extra_data.stacking import stack_detector_data
        cmod.stack_detector_data = stack_detector_data
    else:
        import photon_daq.euxfel as lib
        from photon_daq import components as cmod
    out = {}
    det_calls(out, cmod, lib, path)
    # Values are compared, not the (implementation-specific) class objects.
    out = {k: (v if not (isinstance(v, tuple) and v[0] == "returns" and not isinstance(
        v[1], (str, int, float, list, tuple, dict, type(None)))) else ("returns", type(v[1]).__name__))
        for k, v in out.items()}
    with open(out_path, "wb") as f:
        pickle.dump(out, f)


@pytest.fixture(scope="module")
def component_runs(tmp_path_factory):
    from extra_data.tests import make_examples as me

    root = tmp_path_factory.mktemp("components")
    paths = {}
    for name, (fn, kw) in RUNS.items():
        d = root / name
        d.mkdir()
        getattr(me, fn)(str(d), **kw)
        paths[name] = d
    return paths


@pytest.mark.parametrize("case", list(RUNS))
def test_same_results(component_runs, tmp_path, case):
    pytest.importorskip("photon_daq")
    theirs, ours = side_by_side(__file__, [component_runs[case]], tmp_path,
                                cwd=Path(__file__).parent)
    assert len(theirs) > 30
    assert sorted(ours) == sorted(theirs)
    different = {k: (theirs[k], ours[k]) for k in theirs if theirs[k] != ours[k]}
    assert not different, "\n".join(f"{k}:\n  extra_data: {a}\n  photon_daq: {b}"
                                     for k, (a, b) in list(different.items())[:20])


if __name__ == "__main__":
    main()
