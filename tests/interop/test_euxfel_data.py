"""Train IDs, sources, keys, shapes, dtypes, data counts and data bytes: ours vs EXtra-data."""
import json
import shutil

import numpy as np
import pytest

from euxfel_helpers import lsxfel_both, make_rust_fixture, run, rust_bin

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="session")
def rust_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("rust_fixtures_data")
    return {
        "r05": make_rust_fixture(root / "r05", "--format", "0.5", "--trains", "30"),
        "r10_legacy": make_rust_fixture(
            root / "r10_legacy", "--format", "1.0", "--legacy-index", "--modules", "2",
        ),
        "r12_padded": make_rust_fixture(
            root / "r12_padded", "--format", "1.2", "--pad-train-ids", "11",
            "--pad-sources", "5", "--sequences", "3", "--trains", "20",
        ),
        "r13": make_rust_fixture(root / "r13", "--format", "1.3", "--sequences", "1"),
    }


def open_xd(path):
    import extra_data

    return extra_data.RunDirectory(str(path)) if path.is_dir() else extra_data.H5File(str(path))


def our_json(path):
    code, out, err = run([rust_bin("lsxfel"), "--no-cache", "--json", str(path)])
    assert code == 0, err
    return json.loads(out)


def expected_timestamps(xd):
    """EXtra-data's train_timestamps() rule (first file holding the train, 0 -> NaT), with
    files in name order. EXtra-data itself walks files in directory-listing order, which
    only matters when files disagree (the example generator stamps each file with its
    own creation time); for our fixtures, which agree, the result is also compared with
    EXtra-data's own train_timestamps()."""
    import h5py

    res = {}
    for fa in sorted(xd.files, key=lambda f: f.filename):
        with h5py.File(fa.filename, "r") as f:
            if "INDEX/timestamp" not in f:
                continue
            tid_all = f["INDEX/trainId"][:]
            ts = f["INDEX/timestamp"][: len(tid_all)]
            for t, s in zip(tid_all[tid_all != 0], ts[tid_all != 0]):
                if int(t) not in res and s != 0:
                    res[int(t)] = int(s)
    return [res.get(int(t)) for t in xd.train_ids]


def compare_structure(path):
    xd = open_xd(path)
    ours = our_json(path)
    assert ours["train_ids"] == [int(t) for t in xd.train_ids]
    assert ours["train_timestamps"] == expected_timestamps(xd)
    assert set(ours["control_sources"]) == set(xd.control_sources)
    assert set(ours["instrument_sources"]) == set(xd.instrument_sources)
    assert ours["legacy_sources"] == dict(xd.legacy_sources)
    for src, info in ours["sources"].items():
        sd = xd[src]
        assert set(info["keys"]) == set(sd.keys()), src
        for key, k in info["keys"].items():
            kd = sd[key]
            assert k["dtype"] == str(kd.dtype), (src, key)
            assert tuple(k["shape"]) == kd.shape, (src, key)
            assert tuple(k["entry_shape"]) == kd.entry_shape, (src, key)
        assert set(info["data_counts"]) == set(sd.index_groups), src
        for group, counts in info["data_counts"].items():
            expected = sd.data_counts(labelled=False, index_group=group or None)
            assert counts == [int(c) for c in expected], (src, group)
    return xd


@pytest.mark.parametrize("name", ["fxe05", "fxe12", "spb10", "sa3_13", "agipd_old", "modern_proc"])
def test_structure_extra_data_examples(examples, name):
    compare_structure(examples[name])


@pytest.mark.parametrize("name", ["r05", "r10_legacy", "r12_padded", "r13"])
def test_structure_rust_fixtures(rust_runs, name):
    xd = compare_structure(rust_runs[name])
    ts = xd.train_timestamps()
    assert our_json(rust_runs[name])["train_timestamps"] == [
        None if np.isnat(t) else int(t.astype("int64")) for t in ts
    ]


def extract(tmp_path, path, source, key, *extra):
    out = tmp_path / "out"
    # '--trains=-4:' so that a negative start is not taken for an option.
    args, it = [], iter(extra)
    for a in it:
        args.append(f"--trains={next(it)}" if a == "--trains" else a)
    extra = args
    code, so, se = run([rust_bin("xfel-extract"), "--no-cache", "--json", str(path), source, key,
                        "--out", str(out), *extra])
    assert code == 0, se
    summary = json.loads(so)
    return np.load(out / "data.npy"), np.load(out / "train_ids.npy"), summary


def check_key(tmp_path, kd_xd, path, source, key, extra=()):
    data, tids, summary = extract(tmp_path, path, source, key, *extra)
    expected = kd_xd.ndarray()
    if expected.dtype == object:
        assert data.tolist() == [str(x) for x in expected.tolist()]
    else:
        assert data.dtype == expected.dtype
        assert data.shape == expected.shape
        assert data.tobytes() == expected.tobytes()
    assert np.array_equal(tids, kd_xd.train_id_coordinates())
    assert tids.dtype == np.uint64
    return data


EXAMPLE_KEYS = [
    ("fxe12", "SA1_XTD2_XGM/DOOCS/MAIN:output", "data.intensityTD", ()),
    ("fxe12", "SA1_XTD2_XGM/DOOCS/MAIN", "beamPosition.ixPos.value", ()),
    ("fxe12", "SA1_XTD2_XGM/DOOCS/MAIN", "state.value", ()),
    ("fxe12", "FXE_DET_LPD1M-1/DET/2CH0:xtdf", "image.pulseId", ()),
    ("fxe12", "FXE_DET_LPD1M-1/DET/2CH0:xtdf", "image.data", ("--trains", "10398:10402")),
    ("fxe12", "FXE_XAD_GEC/CAM/CAMERA_NODATA:daqOutput", "data.image.pixels", ()),
    ("fxe05", "SPB_XTD9_XGM/DOOCS/MAIN:output", "data.xTD", ("--trains", "10390:10410")),
    ("fxe05", "FXE_DET_LPD1M-1/DET/15CH0:xtdf", "image.cellId", ()),
    ("spb10", "SPB_DET_AGIPD1M-1/DET/3CH0:xtdf", "image.cellId", ()),
    ("spb10", "SPB_DET_AGIPD1M-1/DET/3CH0:xtdf", "header.pulseCount", ()),
    ("sa3_13", "SA3_XTD10_MCP/ADC/1:channel_3.output", "data.rawData", ()),
    ("sa3_13", "SA3_XTD10_XGM/XGM/DOOCS:output", "data.intensityTD", ()),
    ("agipd_old", "SPB_DET_AGIPD1M-1/DET/7CH0:xtdf", "image.pulseId", ()),
    ("modern_proc", "SPB_DET_AGIPD1M-1/CORR/0CH0:output", "image.cellId", ()),
]


def xd_key(xd, source, key, extra):
    from extra_data import by_id, by_index

    kd = xd[source, key]
    if extra:
        sel = extra[1]
        if ":" in sel:
            a, b = sel.split(":")
            sel = slice(int(a) if a else None, int(b) if b else None)
        else:
            sel = [int(x) for x in sel.split(",")]
        kd = kd.select_trains(by_index[sel] if "--by-index" in extra else by_id[sel])
    return kd


@pytest.mark.parametrize("name,source,key,extra", EXAMPLE_KEYS)
def test_bytes_equal_extra_data_examples(examples, tmp_path, name, source, key, extra):
    xd = open_xd(examples[name])
    check_key(tmp_path, xd_key(xd, source, key, extra), examples[name], source, key, extra)


RUST_KEYS = [
    ("SA1_XTD2_XGM/DOOCS/MAIN:output", "data.intensityTD", ()),
    ("SA1_XTD2_XGM/DOOCS/MAIN", "beamPosition.iyPos.value", ()),
    ("SA1_XTD2_XGM/DOOCS/MAIN", "state.value", ()),
    ("FXE_XAD_GEC/CAM/CAMERA:daqOutput", "data.image.pixels", ("--trains", "10010:10030")),
    ("FXE_DET_LPD1M-1/DET/1CH0:xtdf", "image.data", ()),
    ("FXE_DET_LPD1M-1/DET/1CH0:xtdf", "image.data", ("--trains", "3:-2", "--by-index")),
    ("FXE_DET_LPD1M-1/DET/0CH0:xtdf", "detector.data", ()),
]


@pytest.mark.parametrize("name", ["r05", "r10_legacy", "r12_padded", "r13"])
@pytest.mark.parametrize("source,key,extra", RUST_KEYS)
def test_bytes_equal_rust_fixtures(rust_runs, tmp_path, name, source, key, extra):
    xd = open_xd(rust_runs[name])
    data = check_key(tmp_path, xd_key(xd, source, key, extra), rust_runs[name], source, key, extra)
    if data.dtype != np.dtype("<U3") and data.dtype.kind in "uif" and data.size:
        assert np.count_nonzero(data) > 0, "fixture data must hold real values"


def test_extract_errors_list_near_matches(examples, tmp_path):
    code, out, err = run([rust_bin("xfel-extract"), str(examples["fxe12"]),
                          "SA1_XTD2_XGM/DOOCS/MAIN:outptu", "data.intensityTD",
                          "--out", str(tmp_path / "o")])
    assert code != 0
    assert "SA1_XTD2_XGM/DOOCS/MAIN:output" in err
    code, out, err = run([rust_bin("xfel-extract"), str(examples["fxe12"]),
                          "SA1_XTD2_XGM/DOOCS/MAIN:output", "data.intensityDT",
                          "--out", str(tmp_path / "o")])
    assert code != 0
    assert "data.intensityTD" in err


TRAIN_SELECTIONS = [
    ("10005:10010",), (":10003",), ("10477:",), ("5:10002",), ("10470:99999",),
    ("20000:30000",), ("1:5",), ("10001,10003,10479,5",), ("3:9", "--by-index"),
    ("-4:", "--by-index"), (":-470", "--by-index"), ("0,5,-1", "--by-index"),
    ("10398:10402",),
]


@pytest.mark.parametrize("sel", TRAIN_SELECTIONS, ids=lambda s: " ".join(s))
def test_train_selection_semantics_match_extra_data(examples, tmp_path, sel):
    """by_id / by_index selections (xfel-extract --trains) select the same trains."""
    extra = ("--trains", *sel)
    xd = open_xd(examples["fxe12"])
    for source, key in [("SA1_XTD2_XGM/DOOCS/MAIN:output", "data.trainId"),
                        ("FXE_DET_LPD1M-1/DET/0CH0:xtdf", "image.cellId")]:
        check_key(tmp_path / key, xd_key(xd, source, key, extra), examples["fxe12"], source, key, extra)


def test_filtered_bigendian_and_odd_types_take_the_safe_path(rust_runs, tmp_path):
    """Datasets the map path must not touch (gzip, shuffle+gzip, big-endian, fixed-length
    strings, bool, misaligned contiguous) read the same as EXtra-data."""
    import h5py

    run_dir = tmp_path / "run"
    shutil.copytree(rust_runs["r13"], run_dir)
    da = run_dir / "RAW-R0450-DA01-S00000.h5"
    grp = "INSTRUMENT/SA1_XTD2_XGM/DOOCS/MAIN:output/data"
    rng = np.random.default_rng(5)
    with h5py.File(da, "r+") as f:
        n = f[grp + "/trainId"].shape[0]
        f.create_dataset(grp + "/gz", data=rng.integers(1, 1000, (n, 7), dtype="u2"),
                         compression="gzip", chunks=(8, 7))
        f.create_dataset(grp + "/shufgz", data=rng.random((n, 3)).astype("f4"),
                         compression="gzip", shuffle=True, chunks=(4, 3))
        f.create_dataset(grp + "/bigend", data=rng.random((n, 2)).astype(">f8"))
        f.create_dataset(grp + "/fixstr", data=np.array([b"ab%d" % i for i in range(n)], dtype="S5"))
        f.create_dataset(grp + "/flag", data=rng.integers(0, 2, n).astype(bool))
        f.create_dataset(grp + "/odd3", data=np.arange(n * 3, dtype="u1").reshape(n, 3))
        f.create_dataset(grp + "/misaligned", data=rng.random(n).astype("f8"))
    xd = open_xd(run_dir)
    src = "SA1_XTD2_XGM/DOOCS/MAIN:output"
    for key in ["data.gz", "data.shufgz", "data.bigend", "data.flag", "data.odd3", "data.misaligned"]:
        data, tids, summary = extract(tmp_path / key, run_dir, src, key)
        expected = xd[src, key].ndarray()
        assert data.shape == expected.shape, key
        assert np.array_equal(data, expected), key
        assert np.array_equal(tids, xd[src, key].train_id_coordinates())
    data, _, _ = extract(tmp_path / "fixstr", run_dir, src, "data.fixstr")
    assert data.tobytes() == xd[src, "data.fixstr"].ndarray().tobytes()


def test_odd_types_and_links_are_listed_and_extracted(rust_runs, tmp_path):
    """0-d, empty and short datasets, float16, long double, opaque, complex, enum and
    big-endian keys are listed by `lsxfel -d` as EXtra-data lists them (the listing goes
    on past them); soft and external links are not keys (h5py's visititems does not
    follow them); the numeric ones extract with EXtra-data's values and dtype."""
    import h5py

    run_dir = tmp_path / "run"
    shutil.copytree(rust_runs["r13"], run_dir)
    da = run_dir / "RAW-R0450-DA01-S00000.h5"
    with h5py.File(tmp_path / "ext.h5", "w") as e:
        e["d"] = np.arange(10, dtype="i4")
    grp = "INSTRUMENT/SA1_XTD2_XGM/DOOCS/MAIN:output/data"
    with h5py.File(da, "r+") as f:
        n = f[grp + "/trainId"].shape[0]
        g = f[grp]
        g["scalar0d"] = np.float32(1.5)
        g["empty"] = np.zeros((0,), "u2")
        g["short"] = np.arange(n // 2, dtype="i8")
        g["f16"] = np.arange(n, dtype="f2") / 3
        g["f128"] = np.arange(n, dtype=np.longdouble) / 7
        g["opaque"] = np.zeros(n, dtype="V4")
        g["c64"] = (np.arange(n) + 1j * np.arange(n)).astype("c8")
        g.create_dataset("enum", data=np.arange(n, dtype="u1") % 2,
                         dtype=h5py.enum_dtype({"OFF": 0, "ON": 1}, basetype="u1"))
        g["bigend"] = np.arange(n, dtype=">f4")
        g["soft"] = h5py.SoftLink("/" + grp + "/intensityTD")
        g["ext"] = h5py.ExternalLink(str(tmp_path / "ext.h5"), "/d")
    for args in ([str(da), "-d", "*XGM*:output"], [str(run_dir), "-d", "*"]):
        (tc, to, te), (oc, oo, oe) = lsxfel_both(args)
        assert oo == to, f"ours:\n{oo}\n{oe}\ntheirs:\n{to}\n{te}"
        assert oc == tc
    xd = open_xd(run_dir)
    src = "SA1_XTD2_XGM/DOOCS/MAIN:output"
    for key in ["data.f16", "data.f128", "data.c64", "data.enum", "data.bigend"]:
        data, tids, summary = extract(tmp_path / key, run_dir, src, key)
        expected = xd[src, key].ndarray()
        assert data.dtype == expected.dtype.newbyteorder("<"), key
        assert np.array_equal(data, expected), key
        assert summary["dtype"] == str(expected.dtype), key
        assert np.array_equal(tids, xd[src, key].train_id_coordinates())


def test_unreadable_key_says_why(tmp_path):
    """A key that exists but libhdf5 1.10 cannot open (h5py with libver='latest' and
    gzip writes a layout message it does not know) is reported with libhdf5's reason,
    not as a missing key with itself as the suggestion."""
    import h5py

    p = tmp_path / "RAW-R0001-DA01-S00000.h5"
    with h5py.File(p, "w", libver="latest") as f:
        f["METADATA/dataFormatVersion"] = [b"1.0"]
        f["METADATA/dataSources/dataSourceId"] = [b"INSTRUMENT/A/B/C:out/data"]
        f["INDEX/trainId"] = np.arange(1, 11, dtype="u8")
        f["INDEX/flag"] = np.ones(10, "i4")
        f["INDEX/A/B/C:out/data/first"] = np.arange(10, dtype="u8")
        f["INDEX/A/B/C:out/data/count"] = np.ones(10, dtype="u8")
        f.create_dataset("INSTRUMENT/A/B/C:out/data/gz",
                         data=np.arange(20, dtype="f4").reshape(10, 2), compression="gzip")
    code, out, err = run([rust_bin("xfel-extract"), str(p), "A/B/C:out", "data.gz",
                          "--out", str(tmp_path / "out")])
    if code == 0:
        # A libhdf5 that reads the layout: the values must be right.
        assert np.array_equal(np.load(tmp_path / "out" / "data.npy"),
                              np.arange(20, dtype="f4").reshape(10, 2))
    else:
        assert code == 1
        assert "no key" not in err and "did you mean" not in err, err
        assert str(p) in err and "INSTRUMENT/A/B/C:out/data/gz" in err, err


def test_compound_keys_extract_as_structured_arrays(tmp_path):
    """Compound keys (EXtra-data's own REMI example run, filled with real values, plus
    compounds with padding, big-endian, array, nested, string, bool and enum members)
    extract to .npy as the structured array EXtra-data's ndarray() returns: same dtype
    (member offsets and itemsize included), same bytes; `lsxfel -d` lists them as
    EXtra-data does."""
    import h5py
    from extra_data.tests import make_examples as me

    run_dir = tmp_path / "remi"
    run_dir.mkdir()
    me.make_remi_run(str(run_dir))
    (da,) = run_dir.glob("*.h5")
    src = "SQS_REMI_DLD6/DET/TOP:output"
    grp = f"INSTRUMENT/{src}/rec"
    rng = np.random.default_rng(14)
    padded = np.dtype({"names": ["a", "b", "c"], "formats": [">i2", "<f8", ("u1", (3,))],
                       "offsets": [0, 8, 16], "itemsize": 24})
    nested = np.dtype([("id", "<u4"), ("pos", [("x", ">f4"), ("y", "<f4")]),
                       ("name", "S6"), ("ok", "?"),
                       ("mode", h5py.enum_dtype({"A": 0, "B": 1}, basetype="i1"))])
    with h5py.File(da, "r+") as f:
        for key in ["hits", "signals"]:
            ds = f[f"{grp}/{key}"]
            vals = np.zeros(ds.shape, ds.dtype)
            for name in ds.dtype.names:
                vals[name] = rng.integers(-1000, 1000, ds.shape)
            ds[...] = vals
        n = f[f"{grp}/trainId"].shape[0]
        vals = np.zeros((n, 2), padded)
        vals["a"] = rng.integers(-300, 300, (n, 2))
        vals["b"] = rng.random((n, 2))
        vals["c"] = rng.integers(0, 255, (n, 2, 3))
        # Contiguous and big-endian member: read through libhdf5's conversion.
        f.create_dataset(f"{grp}/padded", data=vals)
        vals = np.zeros(n, nested)
        vals["id"] = np.arange(n)
        vals["pos"]["x"] = rng.random(n)
        vals["pos"]["y"] = rng.random(n)
        vals["name"] = [b"n%d" % i for i in range(n)]
        vals["ok"] = np.arange(n) % 3 == 0
        vals["mode"] = np.arange(n) % 2
        f.create_dataset(f"{grp}/nested", data=vals, chunks=(7,), compression="gzip")
        # All little-endian and contiguous: the stored bytes are used as they are.
        f.create_dataset(f"{grp}/plain", data=f[f"{grp}/hits"][:, :3])
    xd = open_xd(run_dir)
    for key in ["rec.hits", "rec.signals", "rec.padded", "rec.nested", "rec.plain"]:
        data, tids, summary = extract(tmp_path / key, run_dir, src, key)
        expected = xd[src, key].ndarray()
        # Big-endian members are read as native values (as for big-endian keys).
        assert data.dtype == expected.dtype.newbyteorder("<"), key
        assert data.shape == expected.shape, key
        for name in expected.dtype.names:
            assert np.array_equal(data[name], expected[name]), (key, name)
        if key in ("rec.hits", "rec.signals", "rec.plain"):
            assert data.tobytes() == expected.tobytes(), key
        assert np.count_nonzero(data[data.dtype.names[0]]) > 0, key
        assert np.array_equal(tids, xd[src, key].train_id_coordinates())
    (tc, to, te), (oc, oo, oe) = lsxfel_both([str(run_dir), "-d", "*"])
    assert oc == tc
    # The one difference: h5py names big-endian members '>i2', ours name the native
    # type the read gives (documented in docs/euxfel.md).
    assert oo == to.replace("'>", "'<"), f"ours:\n{oo}\ntheirs:\n{to}"
    assert oo != to
