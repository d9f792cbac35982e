"""Multi-module detectors: our stacked arrays, coordinates, availability, virtual CXI files
and error messages vs EXtra-data's components, stack_detector_data and
extra-data-make-virtual-cxi, on its mock runs (AGIPD, LPD, DSSC, JUNGFRAU; raw and
corrected; a missed train) and on our random-valued fixture run with a missing module file."""
import re
import warnings

import h5py
import numpy as np
import pytest

from euxfel_helpers import make_rust_fixture, py_tool, run, rust_bin

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="session")
def det_runs(tmp_path_factory):
    from extra_data.tests import make_examples as me
    from extra_data.tests.mockdata import write_file
    from extra_data.tests.mockdata.detectors import LPDModule

    root = tmp_path_factory.mktemp("det_runs")
    runs = {}
    for name, fn, kw in [
        ("lpd_missed", me.make_lpd_run_mini_missed_train, {}),
        ("fxe_lpd", me.make_fxe_run, {}),
        ("spb_agipd_raw", me.make_spb_run, {"format_version": "1.0"}),
        ("spb_agipd_corr", me.make_modern_spb_proc_run, {}),
        ("agipd500k", me.make_agipd500k_run, {}),
        ("scs_dssc", me.make_scs_run, {}),
        ("jungfrau", me.make_jungfrau_run, {}),
    ]:
        d = root / name
        d.mkdir()
        fn(str(d), **kw)
        runs[name] = d
    # Two modules disagreeing on the frames of every train.
    bad = root / "inconsistent"
    bad.mkdir()
    for m, frames in [(0, 10), (1, 12)]:
        write_file(
            str(bad / f"RAW-R0450-LPD{m:02}-S00000.h5"),
            [LPDModule(f"FXE_DET_LPD1M-1/DET/{m}CH0", frames_per_train=frames)],
            ntrains=4, chunksize=4, format_version="1.0",
        )
    runs["inconsistent"] = bad
    # Ours, random values; module 2 lacks its second sequence file (trains 10020-10039).
    ours = make_rust_fixture(
        root / "ours", "--modules", "4", "--trains", "20", "--sequences", "2", "--frames", "6",
    )
    (ours / "RAW-R0450-LPD02-S00001.h5").unlink()
    runs["ours"] = ours
    return runs


def extract(run_dir, out, *args, key=None, detector=None):
    """xfel-extract --detector[=TYPE] RUN [KEY]: every .npy it wrote, by name."""
    det_opt = f"--detector={detector}" if detector else "--detector"
    key_arg = [key] if key else []
    code, so, se = run([rust_bin("xfel-extract"), run_dir, *key_arg, "--out", out, det_opt,
                        *args])
    assert code == 0, se
    return {p.stem: np.load(p) for p in out.glob("*.npy")}


def xd_detector(cls_name, run_dir, **kw):
    from extra_data import RunDirectory
    from extra_data import components

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(components, cls_name)(RunDirectory(str(run_dir)), **kw)


def xd_pulses(spec):
    from extra_data import by_id, by_index

    kind, rest = spec.split(":", 1)
    if ":" in rest:
        parts = [int(p) if p else None for p in rest.split(":")]
        sel = slice(*parts)
    else:
        sel = [int(p) for p in rest.split(",")]
    return (by_index if kind == "index" else by_id)[sel]


# (run, class, our args, EXtra-data: min_modules, trains (a position slice (a, b) or a list of
# train IDs), pulses, fill, module_gaps, key)
CASES = [
    ("lpd_missed", "LPD1M", [], 1, None, None, None, False, "image.data"),
    ("lpd_missed", "LPD1M", ["--module-gaps"], 1, None, None, None, True, "image.data"),
    ("lpd_missed", "LPD1M", ["--min-modules", "2"], 2, None, None, None, False, "image.data"),
    ("lpd_missed", "LPD1M", ["--pulses", "index:1:8:3", "--fill-value", "7"],
     1, None, "index:1:8:3", 7, False, "image.data"),
    ("lpd_missed", "LPD1M", ["--pulses", "index:0,4,9,12"],
     1, None, "index:0,4,9,12", None, False, "image.data"),
    ("lpd_missed", "LPD1M", [], 1, None, None, None, False, "image.cellId"),
    ("lpd_missed", "LPD1M", [],
     1, None, None, None, False, "header.pulseCount"),
    ("fxe_lpd", "LPD1M", ["--trains", "5:7", "--by-index", "--pulses", "index:0:4"],
     1, (5, 7), "index:0:4", None, False, "image.data"),
    ("spb_agipd_raw", "AGIPD1M", ["--trains", "0:2", "--by-index", "--pulses", "id:0:8:2"],
     1, (0, 2), "id:0:8:2", None, False, "image.data"),
    ("spb_agipd_corr", "AGIPD1M", ["--trains", "2:4", "--by-index", "--pulses", "id:0:20"],
     1, (2, 4), "id:0:20", None, False, "image.data"),
    ("spb_agipd_corr", "AGIPD1M", ["--trains", "0:1", "--by-index", "--module-gaps"],
     1, (0, 1), None, None, True, "image.mask"),
    ("agipd500k", "AGIPD500K", ["--trains", "0:2", "--by-index", "--pulses", "index:0:3"],
     1, (0, 2), "index:0:3", None, False, "image.data"),
    ("scs_dssc", "DSSC1M", ["--trains", "62:66", "--by-index", "--pulses", "index:0,5,63"],
     1, (62, 66), "index:0,5,63", None, False, "image.data"),
    ("jungfrau", "JUNGFRAU", ["--trains", "0:1", "--by-index"],
     1, (0, 1), None, None, False, "data.gain"),
    ("lpd_missed", "LPD1M", ["--trains", "10001,10002,10004", "--pulses", "id:0,3,7"],
     1, [10001, 10002, 10004], "id:0,3,7", None, False, "image.data"),
    ("lpd_missed", "LPD1M", ["--trains", "10002:", "--module-gaps"],
     1, slice(10002, None), None, None, True, "image.cellId"),
    ("lpd_missed", "LPD1M", ["--astype", "float32", "--module-gaps"],
     1, None, None, None, True, "image.data"),
    # (EXtra-data 1.25's astype with a pulse selection raises TypeError: Cannot cast array
    # data from dtype('float64') to dtype('uint16'); ours converts, tested in Rust.)
    ("ours", "LPD1M", ["--astype", "float64", "--trains", "15:25", "--by-index",
                       "--module-gaps", "--fill-value", "-1"],
     1, (15, 25), None, -1, True, "image.data"),
    ("ours", "LPD1M", [], 1, None, None, None, False, "image.data"),
    ("ours", "LPD1M", ["--module-gaps", "--fill-value", "0xffff", "--trains", "15:25", "--by-index"],
     1, (15, 25), None, 0xFFFF, True, "image.data"),
    ("ours", "LPD1M", ["--pulses", "id:4:20:8", "--min-modules", "4"],
     4, None, "id:4:20:8", None, False, "image.data"),
]


# (run, class, key, roi, our other args, EXtra-data: trains (a position slice), pulses, fill,
# module_gaps, astype)
ROI_CASES = [
    ("ours", "LPD1M", "image.data", "10:20,::3", [], None, None, None, False, None),
    ("ours", "LPD1M", "image.data", "-5:,7",
     ["--pulses", "index:1:5", "--module-gaps", "--fill-value", "7",
      "--trains", "15:25", "--by-index"],
     (15, 25), "index:1:5", 7, True, None),
    # (EXtra-data 1.25's astype with a pulse selection raises TypeError, as above.)
    ("ours", "LPD1M", "image.data", "3:9:2,-4",
     ["--module-gaps", "--fill-value", "-1", "--astype", "float32", "--trains", "15:25",
      "--by-index"],
     (15, 25), None, -1, True, "float32"),
    ("lpd_missed", "LPD1M", "image.data", "0,::50", ["--module-gaps"],
     None, None, None, True, None),
    ("spb_agipd_raw", "AGIPD1M", "image.data", "1,100:110,::7",
     ["--trains", "0:2", "--by-index", "--pulses", "id:0:8:2"],
     (0, 2), "id:0:8:2", None, False, None),
    ("jungfrau", "JUNGFRAU", "data.adc", "0:2,5,::100", ["--trains", "0:2", "--by-index"],
     (0, 2), None, None, False, None),
]


@pytest.mark.parametrize("case", ROI_CASES, ids=lambda c: f"{c[0]}-{c[3]}-{'-'.join(c[4]) or 'all'}")
def test_roi_matches_extra_data(det_runs, tmp_path, case):
    name, cls, key, roi, args, trains, pulses, fill, gaps, astype = case
    ours = extract(det_runs[name], tmp_path / "o", "--roi", roi, *args, key=key, detector=cls)
    det = xd_detector(cls, det_runs[name])
    if trains is not None:
        det = det.select_trains(np.s_[trains[0]:trains[1]])
    kd = det[key]
    if pulses is not None:
        kd = kd.select_pulses(xd_pulses(pulses))
    np_roi = eval(f"np.s_[{roi}]")
    np_roi = np_roi if isinstance(np_roi, tuple) else (np_roi,)
    ref = kd.ndarray(roi=np_roi, fill_value=fill, module_gaps=gaps, astype=astype)
    assert ours["data"].dtype == ref.dtype
    assert ours["data"].shape == ref.shape
    np.testing.assert_array_equal(ours["data"], ref)
    np.testing.assert_array_equal(ours["train_ids"], kd.train_id_coordinates())


def test_roi_errors(det_runs, tmp_path):
    for roi, msg in [("300", "out of range"), ("::-1", "step"), ("0,0,0", "too many indices"),
                     ("a:b", "not a region of interest")]:
        code, _, se = run([rust_bin("xfel-extract"), det_runs["ours"], "--out", tmp_path / "o",
                           "--detector=LPD1M", "--roi", roi])
        assert code != 0 and msg in se, (roi, se)
        assert "panicked" not in se


# Our fixture has 6 frames per train: 3 gain stages of 2 pulses.
PARALLEL_GAIN_CASES = [
    ([], None),
    (["--pulses", "index:1:2"], "index:1:2"),
    (["--pulses", "index:0,1,4"], "index:0,1,4"),
    (["--pulses", "id:1,4", "--module-gaps", "--trains", "15:25", "--by-index"], "id:1,4"),
]


@pytest.mark.parametrize("args,pulses", PARALLEL_GAIN_CASES, ids=lambda c: str(c))
def test_parallel_gain_matches_extra_data(det_runs, tmp_path, args, pulses):
    ours = extract(det_runs["ours"], tmp_path / "o", "--parallel-gain", *args,
                   key="image.data", detector="LPD1M")
    det = xd_detector("LPD1M", det_runs["ours"], parallel_gain=True)
    if "--trains" in args:
        det = det.select_trains(np.s_[15:25])
    kd = det["image.data"]
    if pulses is not None:
        kd = kd.select_pulses(xd_pulses(pulses))
    ref = kd.ndarray(module_gaps="--module-gaps" in args)
    assert ours["data"].shape == ref.shape
    np.testing.assert_array_equal(ours["data"], ref)
    np.testing.assert_array_equal(ours["train_ids"], kd.train_id_coordinates())
    np.testing.assert_array_equal(ours["pulse_ids"], kd.pulse_id_coordinates())
    np.testing.assert_array_equal(ours["cell_ids"], kd.cell_id_coordinates())


def test_parallel_gain_errors(det_runs, tmp_path):
    # 10 frames per train: not three gain stages.
    with pytest.raises(ValueError) as xd_err:
        xd_detector("LPD1M", det_runs["lpd_missed"], parallel_gain=True)
    for run_name, det, msg in [("lpd_missed", "LPD1M", str(xd_err.value)),
                               ("scs_dssc", "DSSC1M", "parallel_gain applies to LPD")]:
        code, _, se = run([rust_bin("xfel-extract"), det_runs[run_name], "--out", tmp_path / "o",
                           f"--detector={det}", "--parallel-gain"])
        assert code != 0 and msg in se, se


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[-1]}-{'-'.join(c[2]) or 'all'}")
def test_stacked_key_matches_extra_data(det_runs, tmp_path, case):
    name, cls, args, min_modules, trains, pulses, fill, gaps, key = case
    from extra_data import by_id

    ours = extract(det_runs[name], tmp_path / "o", *args, key=key, detector=cls)
    det = xd_detector(cls, det_runs[name], min_modules=min_modules)
    if isinstance(trains, tuple):
        det = det.select_trains(np.s_[trains[0]:trains[1]])
    elif trains is not None:
        det = det.select_trains(by_id[trains])
    kd = det[key]
    if pulses is not None:
        kd = kd.select_pulses(xd_pulses(pulses))
    astype = args[args.index("--astype") + 1] if "--astype" in args else None
    ref = kd.ndarray(fill_value=fill, module_gaps=gaps, astype=astype)
    assert ours["data"].dtype == ref.dtype
    assert ours["data"].shape == ref.shape
    np.testing.assert_array_equal(ours["data"], ref)
    np.testing.assert_array_equal(ours["train_ids"], kd.train_id_coordinates())
    if gaps:
        # Every slot of the first axis, as ndarray(module_gaps=True) places the modules.
        start = det._modnos_start_at
        np.testing.assert_array_equal(ours["modules"], np.arange(start, start + det.n_modules))
    else:
        np.testing.assert_array_equal(ours["modules"], kd.modules)
    if key.startswith("image.") and cls != "JUNGFRAU":
        np.testing.assert_array_equal(ours["pulse_ids"], kd.pulse_id_coordinates())
        np.testing.assert_array_equal(ours["cell_ids"], kd.cell_id_coordinates())
    if pulses is None:
        # EXtra-data's data_availability cannot align a pulse selection (it asserts).
        np.testing.assert_array_equal(ours["availability"], kd.data_availability(gaps))


def test_get_array_and_detector_availability_match(det_runs, tmp_path):
    ours = extract(det_runs["lpd_missed"], tmp_path / "o", "--pulses", "index:0:5")
    det = xd_detector("LPD1M", det_runs["lpd_missed"])
    arr = det.get_array("image.data", pulses=np.s_[:5])
    assert arr.dims == ("module", "train", "pulse", "slow_scan", "fast_scan")
    np.testing.assert_array_equal(ours["data"].reshape(arr.shape), arr.values)
    np.testing.assert_array_equal(
        np.unique(ours["train_ids"]), arr.coords["train"].values
    )
    np.testing.assert_array_equal(ours["pulse_ids"][:5], arr.coords["pulse"].values)
    # Module 1 missed train 10002: its frames are not available and hold the fill value.
    full = extract(det_runs["lpd_missed"], tmp_path / "full")
    assert not full["availability"][1].all()
    np.testing.assert_array_equal(full["availability"], det.data_availability())


def test_one_train_equals_stack_detector_data(det_runs, tmp_path):
    from extra_data import RunDirectory, stack_detector_data

    r = RunDirectory(str(det_runs["ours"]))
    for pos in (3, 25):  # module 2 present, then missing
        tid, data = r.select("*/DET/*", "image.data").train_from_index(pos)
        stacked = stack_detector_data(data, "image.data")  # (frames, 1, 16, y, x)
        ours = extract(
            det_runs["ours"], tmp_path / f"t{pos}", "--trains", f"{pos}:{pos + 1}", "--by-index",
            "--module-gaps",
        )
        assert ours["data"].shape[0] == 16
        np.testing.assert_array_equal(
            np.moveaxis(stacked[:, 0], 1, 0), ours["data"]
        )
        assert set(ours["train_ids"]) == {tid}


def numbers(msg):
    return sorted(int(n) for n in re.findall(r"\d+", re.sub(r"np\.uint64\((\d+)\)", r"\1", msg)))


def test_inconsistent_frame_counts_error(det_runs, tmp_path):
    with pytest.raises(ValueError) as ei:
        xd_detector("LPD1M", det_runs["inconsistent"])
    ref = str(ei.value)
    code, _, se = run([
        rust_bin("xfel-extract"), det_runs["inconsistent"], "--detector", "--out", tmp_path / "o",
    ])
    assert code == 1
    ours = se.strip().removeprefix("xfel-extract: ")
    assert ours.startswith("Inconsistent frame counts for train 10000: {")
    assert ref.startswith("Inconsistent frame counts for train 10000: {")
    assert numbers(ours) == numbers(ref)


def test_min_modules_and_no_detector_errors(det_runs, tmp_path):
    with pytest.raises(ValueError) as ei:
        xd_detector("LPD1M", det_runs["lpd_missed"], min_modules=3)
    code, _, se = run([
        rust_bin("xfel-extract"), det_runs["lpd_missed"], "--detector", "--out", tmp_path / "o",
        "--min-modules", "3",
    ])
    assert code == 1 and se.strip() == f"xfel-extract: {ei.value}"
    # No multi-module detector in a run of control data only.
    da = tmp_path / "da"
    da.mkdir()
    from extra_data.tests import make_examples as me

    me.make_fxe_da_file(str(da / "RAW-R0450-DA01-S00000.h5"))
    rc, _, ref_err = run([py_tool("extra-data-make-virtual-cxi"), da, "-o", tmp_path / "r.cxi"])
    code, _, se = run([rust_bin("xfel-make-virtual-cxi"), da, "-o", tmp_path / "o.cxi"])
    assert rc != 0 and code == 1
    assert "ValueError: No detector sources identified in the data" in ref_err
    assert se.strip() == "xfel-make-virtual-cxi: No detector sources identified in the data"


def test_raw_fallback_warning_text(det_runs, tmp_path):
    from extra_data import RunDirectory
    from extra_data.components import LPD1M

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        LPD1M(RunDirectory(str(det_runs["lpd_missed"])))
    ref = [str(x.message) for x in w if "raw data" in str(x.message)]
    _, _, se = run([
        rust_bin("xfel-extract"), det_runs["lpd_missed"], "--detector", "--out", tmp_path / "o",
    ])
    assert ref and f"warning: {ref[0]}" in se


def sel(space):
    """A source/virtual selection as comparable values."""
    return (space.get_select_type(), space.get_regular_hyperslab(), space.shape)


def describe(path):
    """Every object, link, attribute, dataset value and virtual mapping of a CXI file."""
    out = {}
    with h5py.File(path, "r") as f:
        def walk(g, prefix):
            for k in g.keys():
                p = prefix + k
                link = g.get(k, getlink=True)
                if isinstance(link, h5py.SoftLink):
                    out[p] = ("softlink", link.path)
                    continue
                o = g[k]
                attrs = {a: (repr(v), str(getattr(v, "dtype", type(v).__name__)))
                         for a, v in o.attrs.items()}
                if isinstance(o, h5py.Group):
                    out[p] = ("group", attrs)
                    walk(o, p + "/")
                    continue
                info = {"shape": o.shape, "dtype": str(o.dtype), "attrs": attrs,
                        "virtual": o.is_virtual, "fill": repr(o.fillvalue)}
                if o.is_virtual:
                    info["maps"] = sorted(
                        (m.file_name, m.dset_name, sel(m.src_space), sel(m.vspace))
                        for m in o.virtual_sources()
                    )
                else:
                    info["value"] = o[()].tolist()
                out[p] = info
        walk(f, "")
    return out


CXI_CASES = [
    ("fxe_lpd", []),
    ("lpd_missed", ["--min-modules", "1"]),
    ("lpd_missed", ["--min-modules", "1", "--fill-value", "data", "5"]),
    ("spb_agipd_raw", []),
    ("spb_agipd_corr", ["--fill-value", "mask", "0x0f", "--fill-value", "gain", "2"]),
    # A negative number is a value, underscores as Python reads numbers.
    ("spb_agipd_corr", ["--fill-value", "data", "-1", "--fill-value", "mask", "0x_1_0",
                        "--fill-value", "gain", "1_0"]),
    ("agipd500k", []),
    ("scs_dssc", ["--exc-suspect-trains"]),
    ("jungfrau", []),
    ("jungfrau", ["--n-modules", "10", "--min-modules", "8"]),
    ("ours", ["--min-modules", "3", "--fill-value", "data", "0x7"]),
]


@pytest.mark.parametrize("name,args", CXI_CASES, ids=lambda x: str(x))
def test_virtual_cxi_equals_extra_data(det_runs, tmp_path, name, args):
    ref, ours = tmp_path / "ref.cxi", tmp_path / "ours.cxi"
    rc, _, re_ = run([py_tool("extra-data-make-virtual-cxi"), det_runs[name], "-o", ref, *args])
    assert rc == 0, re_
    code, _, se = run([rust_bin("xfel-make-virtual-cxi"), det_runs[name], "-o", ours, *args])
    assert code == 0, se
    a, b = describe(ref), describe(ours)
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k] == b[k], k
    # Element-wise through the virtual mappings (sampled frames for the big mocks).
    with h5py.File(ref, "r") as fa, h5py.File(ours, "r") as fb:
        det = "entry_1/instrument_1/detector_1"
        for ds in ["entry_1/cellId", f"{det}/data", f"{det}/gain", f"{det}/mask"]:
            if ds not in fa:
                continue
            n = fa[ds].shape[0]
            # Reading big frames through chunked virtual sources is slow in libhdf5
            # (h5py#1597): fewer samples of big frames.
            frame_bytes = fa[ds].dtype.itemsize * int(np.prod(fa[ds].shape[1:]))
            samples = 40 if frame_bytes < 2**22 else 3
            idx = np.unique(np.linspace(0, n - 1, num=min(n, samples)).astype(int))
            x, y = fa[ds][idx], fb[ds][idx]
            np.testing.assert_array_equal(x, y)


def test_virtual_cxi_values_of_random_run(det_runs, tmp_path):
    """Every frame of our random-valued run through the CXI file equals the stacked read."""
    out = tmp_path / "ours.cxi"
    code, _, se = run([rust_bin("xfel-make-virtual-cxi"), det_runs["ours"], "-o", out,
                       "--min-modules", "1"])
    assert code == 0, se
    stacked = extract(det_runs["ours"], tmp_path / "o", "--module-gaps")
    with h5py.File(out, "r") as f:
        data = f["entry_1/instrument_1/detector_1/data"][:, :, 0]  # (frames, 16, y, x)
        np.testing.assert_array_equal(np.moveaxis(data, 1, 0), stacked["data"])
        np.testing.assert_array_equal(f["entry_1/trainId"][:], stacked["train_ids"])
        np.testing.assert_array_equal(f["entry_1/pulseId"][:], stacked["pulse_ids"])


def test_virtual_cxi_default_output_rule(tmp_path, det_runs):
    code, _, se = run([rust_bin("xfel-make-virtual-cxi"), det_runs["lpd_missed"]])
    rc, _, ref = run([py_tool("extra-data-make-virtual-cxi"), det_runs["lpd_missed"]])
    assert code == 1 and rc == 1
    assert ref.strip() in se
    prop = tmp_path / "p900001"
    (prop / "raw").mkdir(parents=True)
    (prop / "scratch").mkdir()
    (prop / "raw" / "r0450").symlink_to(det_runs["lpd_missed"])
    code, _, se = run([rust_bin("xfel-make-virtual-cxi"), prop / "raw" / "r0450",
                       "--min-modules", "1"])
    assert code == 0, se
    assert (prop / "scratch" / "r0450_raw_detectors_virt.cxi").exists()
