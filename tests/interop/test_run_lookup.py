"""Run lookup by proposal and run number (`--proposal P --run R --data D`) against EXtra-data's
`open_run(P, R, data=D)` in a fake data root (`EXTRA_DATA_DATA_ROOT`): for every run layout (raw
and proc with overlapping sources, no proc, an empty proc, no raw, a custom location only,
nothing) and every `data` value, our `lsxfel --json` describes the collection `open_run` returns
(train IDs, sources, keys, dtypes, shapes, data counts), `xfel-extract` reads the same values,
the same `No data available ...` warnings come on stderr, and we fail exactly where EXtra-data
raises. `xfel-validate` checks the directories `open_run` would read, in its order.
"""
import json
import os
import shutil
import warnings

import h5py
import numpy as np
import pytest

from euxfel_helpers import run, rust_bin

PROPOSAL = "2012"
AGIPD = "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"
XGM = "SA1_XTD2_XGM/DOOCS/MAIN:output"
PROC_ONLY = "SPB_PROC_XGM/DOOCS/MAIN:output"
CUSTOM = "usr/Shared/amore"
DATA_VALUES = ["default", "all", "raw", "proc", CUSTOM, "proc,raw"]
RUNS = {
    238: "raw and proc, sources in both",
    239: "raw, and an empty proc directory",
    240: "proc only",
    241: "only the custom location",
    242: "nothing",
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from extra_data.tests import make_examples as me
    from extra_data.tests.mockdata import write_file
    from extra_data.tests.mockdata.xgm import XGM as MockXGM

    root = tmp_path_factory.mktemp("exp")
    prop = root / "SPB" / "201830" / f"p{int(PROPOSAL):06d}"
    raw, proc = prop / "raw" / "r0238", prop / "proc" / "r0238"
    raw.mkdir(parents=True)
    proc.mkdir(parents=True)
    me.make_spb_run(str(raw))
    # Processed AGIPD data under the raw source names (other keys and shapes), plus the XGM
    # again and a source of its own.
    me.make_spb_run(str(proc), raw=False)
    write_file(str(proc / "CORR-R0238-DA01-S00000.h5"),
               [MockXGM("SA1_XTD2_XGM/DOOCS/MAIN"), MockXGM("SPB_PROC_XGM/DOOCS/MAIN")],
               ntrains=64)
    # Values that differ from raw's, so the winner of a source is seen in the data.
    with h5py.File(proc / "CORR-R0238-AGIPD00-S00000.h5", "r+") as f:
        ds = f[f"INSTRUMENT/{AGIPD}/image/cellId"]
        ds[:] = ds[:] + 100
    with h5py.File(proc / "CORR-R0238-DA01-S00000.h5", "r+") as f:
        ds = f[f"INSTRUMENT/{XGM}/data/intensityTD"]
        ds[:] = np.arange(ds.size, dtype=ds.dtype).reshape(ds.shape)

    shutil.copytree(raw, prop / "raw" / "r0239")
    (prop / "proc" / "r0239").mkdir()
    shutil.copytree(proc, prop / "proc" / "r0240")
    shutil.copytree(proc, prop / CUSTOM / "r0241")
    # A second proposal directory of another number must not be taken.
    (root / "SPB" / "201830" / "p002013" / "raw").mkdir(parents=True)
    return root


def xd_open(root, run_no, data, monkeypatch):
    """open_run's collection or the exception it raises, and its warnings."""
    import extra_data

    monkeypatch.setenv("EXTRA_DATA_DATA_ROOT", str(root))
    data_arg = data.split(",") if "," in data else data
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            dc = extra_data.open_run(PROPOSAL, run_no, data=data_arg)
        except Exception as e:  # noqa: BLE001 - the class is compared below
            dc = e
    msgs = [str(w.message) for w in caught if "No data available" in str(w.message)]
    return dc, msgs


def ours(tool, root, run_no, data, *args):
    env = dict(os.environ, EXTRA_DATA_DATA_ROOT=str(root))
    return run([rust_bin(tool), *args, "--proposal", PROPOSAL, "--run", str(run_no),
                "--data", data], env=env)


def our_warnings(stderr):
    return [l.removeprefix("warning: ") for l in stderr.splitlines()
            if "No data available" in l]


def compare_structure(xd, js):
    assert js["train_ids"] == [int(t) for t in xd.train_ids]
    assert set(js["control_sources"]) == set(xd.control_sources)
    assert set(js["instrument_sources"]) == set(xd.instrument_sources)
    for src, info in js["sources"].items():
        sd = xd[src]
        assert set(info["keys"]) == set(sd.keys()), src
        for key, k in info["keys"].items():
            kd = sd[key]
            assert k["dtype"] == str(kd.dtype), (src, key)
            assert tuple(k["shape"]) == kd.shape, (src, key)
        for group, counts in info["data_counts"].items():
            expected = sd.data_counts(labelled=False, index_group=group or None)
            assert counts == [int(c) for c in expected], (src, group)


@pytest.mark.parametrize("data", DATA_VALUES)
@pytest.mark.parametrize("run_no", sorted(RUNS))
def test_lsxfel_lists_what_open_run_opens(data_root, run_no, data, monkeypatch):
    xd, xd_warnings = xd_open(data_root, run_no, data, monkeypatch)
    code, out, err = ours("lsxfel", data_root, run_no, data, "--no-cache", "--json")
    if isinstance(xd, BaseException):
        # EXtra-data raises FileNotFoundError for a missing run; we fail naming the same
        # directory.
        assert isinstance(xd, FileNotFoundError), repr(xd)
        assert code == 1, (out, err)
        missing = str(xd).split(": ", 1)[-1].strip("'").split(" with glob")[0]
        missing = missing.removeprefix("No HDF5 files found in ")
        assert missing in err, (str(xd), err)
        return
    assert code == 0, err
    compare_structure(xd, json.loads(out))
    assert our_warnings(err) == xd_warnings, err


# (source, key): a source in raw and proc (the winner's shape and values differ), one
# in both with the same shape, one only in raw, one only in proc.
KEYS = [
    (AGIPD, "image.cellId"),
    (XGM, "data.intensityTD"),
    ("SPB_XTD9_XGM/DOOCS/MAIN:output", "data.intensityTD"),
    (PROC_ONLY, "data.intensityTD"),
]


@pytest.mark.parametrize("data", ["default", "all", "proc,raw", "raw,proc"])
@pytest.mark.parametrize("source,key", KEYS)
def test_xfel_extract_reads_what_open_run_reads(data_root, tmp_path, monkeypatch, data,
                                                source, key):
    xd, xd_warnings = xd_open(data_root, 238, data, monkeypatch)
    out = tmp_path / "out"
    code, so, se = ours("xfel-extract", data_root, 238, data, "--no-cache", source, key,
                        "--out", out)
    if source not in xd.all_sources:
        assert code == 1 and "no source named" in se.lower(), se
        return
    assert code == 0, se
    kd = xd[source, key]
    expected = kd.ndarray()
    got = np.load(out / "data.npy")
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert got.tobytes() == expected.tobytes()
    assert np.array_equal(np.load(out / "train_ids.npy"), kd.train_id_coordinates())
    assert our_warnings(se) == xd_warnings


def test_the_winner_is_the_later_origin(data_root, tmp_path, monkeypatch):
    """Guard against comparing equal data: with 'default' the raw cellId (100 lower than
    proc's, shape (n, 1)) wins, with 'all' proc's."""
    cells = {}
    for data in ["default", "all"]:
        out = tmp_path / data
        code, _, se = ours("xfel-extract", data_root, 238, data, "--no-cache", AGIPD,
                           "image.cellId", "--out", out)
        assert code == 0, se
        cells[data] = np.load(out / "data.npy")
    assert cells["default"].shape[1:] == (1,) and cells["all"].ndim == 1
    assert np.array_equal(cells["default"][:, 0] + 100, cells["all"])


@pytest.mark.parametrize("data", ["default", "all", "raw", "proc"])
@pytest.mark.parametrize("run_no", sorted(RUNS))
def test_xfel_validate_checks_the_directories_open_run_reads(data_root, run_no, data,
                                                             monkeypatch):
    xd, _ = xd_open(data_root, run_no, data, monkeypatch)
    code, out, err = ours("xfel-validate", data_root, run_no, data)
    if isinstance(xd, BaseException):
        assert code == 1, (out, err)
        return
    checked = [l.removeprefix("Checking run directory: ") for l in out.splitlines()
               if l.startswith("Checking run directory: ")]
    origins = {"default": ["proc", "raw"], "all": ["raw", "proc"]}.get(data, [data])
    prop = data_root / "SPB" / "201830" / "p002012"
    expected = [str(prop / o / f"r{run_no:04}") for o in origins]
    # The directories open_run took files from, in its order.
    read = {os.path.dirname(f.filename) for f in xd.files}
    assert checked == [d for d in expected if d in read], (out, err)
