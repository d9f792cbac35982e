"""Our xfel-validate against EXtra-data's extra-data-validate on good runs and files
(EXtra-data's example generator, our make-fixtures) and on deliberately broken copies:
stdout and exit codes.

EXtra-data checks the files of a run in a process pool and prints their problems in
completion order; ours prints them in file name order. The comparison therefore takes
the problem blocks as a sorted list. The `error` field holds the reader's own message
(h5py's or ours) and is compared for presence only. For a control source whose index
points past its data, both report the first key found, which for EXtra-data is the
first of a Python set (hash order): the comparison keeps the source of that key only.
"""
import json
import re
import shutil

import h5py
import numpy as np
import pytest

from euxfel_helpers import make_rust_fixture, py_tool, run, rust_bin

# Our checks that EXtra-data lacks: skipped when comparing with EXtra-data.
EXTRA_CHECKS = [
    "train_ids_unique", "source_conflicts", "run_map_entries", "sequence_gaps", "format_versions",
]
SKIP_EXTRAS = [a for c in EXTRA_CHECKS for a in ("--skip", c)]

XGM_OUT = "SA1_XTD2_XGM/DOOCS/MAIN:output"
XGM = "SA1_XTD2_XGM/DOOCS/MAIN"
DA01 = "RAW-R0450-DA01-S00000.h5"


def ours(*args):
    return run([rust_bin("xfel-validate"), *args])


def theirs(*args):
    return run([py_tool("extra-data-validate"), *args])


def parse(out):
    """(lines up to the summary line, summary line, sorted problem blocks without
    `error` values). A block is the message and its `  key: value` lines."""
    lines = out.split("\n")
    for i, line in enumerate(lines):
        if line == "No problems found" or line.startswith("Validation failed!"):
            head, summary, rest = lines[:i], line, lines[i + 1:]
            break
    else:
        # A single file that does not open: the problem block alone.
        head, summary, rest = lines[:1], None, lines[1:]
    blocks, cur = [], None
    for line in rest:
        if line == "":
            if cur:
                blocks.append(tuple(cur))
            cur = []
        else:
            if line.startswith("  error: "):
                line = "  error: <reader message>"
            if cur and cur[0].startswith("Index referring") and line.startswith("  dataset: CONTROL/"):
                # Control source names have three parts: DOMAIN/TYPE/MEMBER.
                line = "/".join(line.split("/")[:4]) + "/<key>"
            cur.append(line)
    if cur:
        blocks.append(tuple(cur))
    return head, summary, sorted(blocks)


def assert_same(path, *opts):
    tc, to, te = theirs(str(path), *opts)
    oc, oo, oe = ours(str(path), *opts, *SKIP_EXTRAS)
    assert parse(oo) == parse(to), f"ours:\n{oo}\n{oe}\n--- theirs:\n{to}\n{te}"
    assert oc == tc, f"exit {oc} != {tc}\n{oo}{oe}"
    return oo


@pytest.fixture(scope="module")
def rust_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("validate_fixtures")
    return {
        "r05": make_rust_fixture(root / "r05", "--format", "0.5", "--trains", "20"),
        "r10_legacy": make_rust_fixture(
            root / "r10_legacy", "--format", "1.0", "--legacy-index", "--modules", "2",
            "--trains", "20",
        ),
        "r12_padded": make_rust_fixture(
            root / "r12_padded", "--format", "1.2", "--pad-train-ids", "7", "--pad-sources", "5",
            "--trains", "15", "--sequences", "3",
        ),
        "r13": make_rust_fixture(root / "r13", "--format", "1.3", "--sequences", "1"),
    }


@pytest.mark.parametrize("name", ["fxe05", "fxe12", "spb10", "modern_proc", "reduced_spb"])
def test_good_extra_data_runs(examples, name):
    out = assert_same(examples[name])
    assert out.endswith("\n\nNo problems found\n")
    # With every check, ours finds nothing either.
    code, out, err = ours(str(examples[name]))
    assert code == 0, out + err


@pytest.mark.parametrize("name", ["r05", "r10_legacy", "r12_padded", "r13"])
def test_good_rust_runs(rust_runs, name):
    assert_same(rust_runs[name])
    code, out, err = ours(str(rust_runs[name]))
    assert (code, out.splitlines()[-1]) == (0, "No problems found"), out + err


def test_good_single_file(examples, rust_runs):
    assert_same(examples["sa3_13"])
    assert_same(rust_runs["r13"] / DA01)


def test_list_skip_and_usage(examples):
    tc, to, _ = theirs("-l")
    oc, oo, _ = ours("-l")
    assert (oc, tc) == (0, 0)
    # EXtra-data's checks first, in its order; ours after them.
    assert oo.startswith(to)
    assert oo[len(to):].split() == EXTRA_CHECKS
    for bad in (["--skip", "nope"], ["--skip", "zzz", "--skip", "aaa", "--skip", "index_control"]):
        assert ours(str(examples["fxe12"]), *bad)[:2] == theirs(str(examples["fxe12"]), *bad)[:2]
    assert_same(examples["fxe12"], "--skip", "index_instrument", "--skip", "run_json_cache")


def copy_run(examples, tmp_path, name="fxe12"):
    d = tmp_path / name
    shutil.copytree(examples[name], d)
    return d


def edit(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)


def set_values(ds_path, change):
    def fn(f):
        a = f[ds_path][:]
        change(a)
        f[ds_path][:] = a
    return fn


def index_path(src, group=None):
    return f"INDEX/{src}" + (f"/{group}" if group else "")


BROKEN = {
    # INDEX/trainId
    "tid_zero_middle": (DA01, set_values("INDEX/trainId", lambda a: a.__setitem__(3, 0))),
    "tid_not_increasing": (
        DA01, set_values("INDEX/trainId", lambda a: a.__setitem__(5, a[2])),
    ),
    # Instrument index: gap + overlap, first not 0, counts past the data.
    "index_gap": (
        DA01, set_values(index_path(XGM_OUT, "data") + "/first",
                         lambda a: a.__setitem__(4, a[4] + 1)),
    ),
    "index_not_at_0": (
        DA01, set_values(index_path(XGM_OUT, "data") + "/first",
                         lambda a: a.__setitem__(0, 1)),
    ),
    "index_past_data": (
        DA01, set_values(index_path(XGM_OUT, "data") + "/count",
                         lambda a: a.__setitem__(-1, a[-1] + 5)),
    ),
    # Control index past the data.
    "control_past_data": (
        DA01, set_values(index_path(XGM) + "/count", lambda a: a.__setitem__(-1, a[-1] + 3)),
    ),
    # Control timestamps: decreasing, zero before the end.
    "ts_decreasing": (
        DA01, set_values(f"CONTROL/{XGM}/beamPosition/ixPos/timestamp",
                         lambda a: a.__setitem__(4, a[2] - 1)),
    ),
    "ts_zero": (
        DA01, set_values(f"CONTROL/{XGM}/beamPosition/ixPos/timestamp", lambda a: (
            a.__setitem__(slice(None), np.arange(1, len(a) + 1)), a.__setitem__(3, 0))),
    ),
}


def two_d_first(f):
    p = index_path(XGM_OUT, "data") + "/first"
    a = f[p][:]
    del f[p]
    f[p] = a.reshape(-1, 1)


BROKEN["index_2d"] = (DA01, two_d_first)


def signed_negative_count(f):
    """An index count stored as int64 with a negative entry: EXtra-data prints it
    as -5, not as its uint64 bits."""
    p = index_path(XGM_OUT, "data") + "/count"
    a = f[p][:].astype("i8")
    a[1] = -5
    del f[p]
    f[p] = a


BROKEN["index_signed_negative"] = (DA01, signed_negative_count)


def negative_train_id(f):
    """INDEX/trainId stored as int64 ending with -1: out of order for EXtra-data,
    not a huge unsigned ID."""
    a = f["INDEX/trainId"][:].astype("i8")
    a[-1] = -1
    del f["INDEX/trainId"]
    f["INDEX/trainId"] = a


BROKEN["tid_negative_int64"] = (DA01, negative_train_id)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_runs_and_files(examples, tmp_path, name):
    d = copy_run(examples, tmp_path)
    fname, fn = BROKEN[name]
    edit(d / fname, fn)
    out = assert_same(d)
    assert "Validation failed!" in out
    # The broken file alone.
    assert_same(d / fname)


def test_unreadable_files(examples, tmp_path):
    d = copy_run(examples, tmp_path)
    (d / "RAW-R0450-DA02-S00000.h5").write_bytes(b"this is not HDF5" * 10)
    out = assert_same(d)
    assert "Could not open HDF5 file" in out
    # A single file that does not open: the problem alone, exit 1.
    out = assert_same(d / "RAW-R0450-DA02-S00000.h5")
    assert "Validation failed" not in out
    # A path that does not exist.
    assert_same(tmp_path / "missing.h5")
    # A directory without usable files.
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x.h5").write_bytes(b"")
    out = assert_same(empty)
    assert "No usable files found" in out


def test_run_map_disagreeing_with_files(examples, tmp_path):
    from extra_data import RunDirectory

    d = copy_run(examples, tmp_path)
    RunDirectory(str(d))  # writes karabo_data_map.json
    cache = d / "karabo_data_map.json"
    entries = json.loads(cache.read_text())
    entries[0]["train_ids"] = entries[0]["train_ids"][:-1]
    entries[1]["legacy_sources"] = {"X/Y:z": "A/B:c"}
    cache.write_text(json.dumps(entries, indent=2))
    out = assert_same(d)
    assert "Incorrect data map cache entry" in out
    # Our run_map_entries also sees the legacy names that run_json_cache ignores.
    code, out, _ = ours(str(d))
    assert code == 1
    assert "Data map cache entry disagrees on legacy_sources" in out

    # A relative path: EXtra-data names the cache file as given.
    tc, to, _ = run([py_tool("extra-data-validate"), d.name], cwd=tmp_path)
    oc, oo, oe = run([rust_bin("xfel-validate"), d.name, *SKIP_EXTRAS], cwd=tmp_path)
    assert (oc, parse(oo)) == (tc, parse(to)), oo + oe
    assert f"  cache_file: {d.name}/karabo_data_map.json" in oo
    # Shards of the relative path merged from another working directory: the run
    # map is still read and its problems reported, as in the unsharded run.
    code, full, _ = run([rust_bin("xfel-validate"), d.name], cwd=tmp_path)
    results = []
    for i in range(2):
        code, out, err = run(
            [rust_bin("xfel-validate"), d.name, "--shard", f"{i}/2", "--json"], cwd=tmp_path
        )
        assert code in (0, 1), err
        results.append(tmp_path / f"shard{i}.json")
        results[-1].write_text(out)
    code, merged, err = run([rust_bin("xfel-validate"), "--merge", *results], cwd="/")
    assert (code, merged) == (1, full), err


def test_crash_and_misreport_of_extra_data_are_real_problems(examples, tmp_path):
    """Where EXtra-data crashes (control count shorter than first) or misreports
    (legacy index padded with zeros), ours reports the real problem."""
    d = copy_run(examples, tmp_path)

    def short_count(f):
        p = index_path(XGM) + "/count"
        a = f[p][:]
        del f[p]
        f[p] = a[:-2]

    edit(d / DA01, short_count)
    tc, to, te = theirs(str(d))
    assert "ValueError" in te  # numpy cannot broadcast first + count
    code, out, _ = ours(str(d))
    assert code == 1
    assert "Index first & count have different number of entries" in out
    assert f"  dataset: INDEX/{XGM}" in out

    # EXtra-data's legacy example (first/last/status padded with zeros to 256 entries).
    tc, to, _ = theirs(str(examples["agipd_old"]))
    assert tc == 1 and "Index has wrong number of entries" in to
    code, out, _ = ours(str(examples["agipd_old"]))
    assert (code, out.splitlines()[-1]) == (0, "No problems found"), out


def test_cross_file_checks(rust_runs, tmp_path):
    """The checks EXtra-data lacks: the same trains of a source in two files, duplicate
    train IDs in a file, sequence gaps, mixed format versions."""
    d = tmp_path / "run"
    shutil.copytree(rust_runs["r12_padded"], d)
    names = sorted(p.name for p in d.glob("RAW-*-DA01-*.h5"))
    assert len(names) == 3
    # Sequence 1 holds the trains of sequence 0: same source, same trains in two files.
    with h5py.File(d / names[0], "r") as f0:
        t0 = f0["INDEX/trainId"][:]
    edit(d / names[1], set_values("INDEX/trainId", lambda a: a.__setitem__(slice(0, len(a)), t0[: len(a)])))
    code, out, _ = ours(str(d))
    assert code == 1
    assert "Same train IDs of one source in several files" in out
    # EXtra-data's validator does not see it (its reader refuses to open the run).
    tc, to, _ = theirs(str(d))
    assert "Same train IDs" not in to

    d2 = tmp_path / "run2"
    shutil.copytree(rust_runs["r12_padded"], d2)
    (d2 / names[1]).unlink()
    edit(d2 / names[0], set_values("INDEX/trainId", lambda a: a.__setitem__(2, a[1])))
    edit(d2 / names[2], lambda f: f["METADATA/dataFormatVersion"].__setitem__(0, b"1.3"))
    code, out, _ = ours(str(d2))
    assert code == 1
    assert "Duplicate train IDs (1), e.g." in out
    assert "Missing sequence files (1) of RAW-R0450-DA01, e.g. S00001" in out
    assert re.search(r"Files have different format versions: 1\.2 \(\d+ files, e\.g\. \S+\), "
                     r"1\.3 \(1 files, e\.g\. RAW-R0450-DA01-S00002\.h5\)", out), out


def test_json_output(examples, tmp_path):
    d = copy_run(examples, tmp_path)
    edit(d / DA01, BROKEN["index_gap"][1])
    code, out, _ = ours(str(d), "--json")
    assert code == 1
    r = json.loads(out)
    assert r["run"] is True and r["ok"] is False
    assert [f["path"] for f in r["files"]] == [str(p) for p in sorted(d.glob("*.h5"))]
    msgs = {p["msg"].split(" (")[0] for p in r["problems"]}
    assert {"Gaps", "Overlaps"} <= msgs
    assert all(p["check"] == "index_instrument" for p in r["problems"])
    assert all(p["file"].endswith(DA01) for p in r["problems"])
    code, out, _ = ours(str(examples["fxe12"]), "--json")
    assert code == 0 and json.loads(out)["problems"] == []


def test_sharded_then_merged_equals_unsharded(rust_runs, examples, tmp_path):
    """Each shard checks its share of the files; --merge of all shards prints the
    report of the unsharded run, cross-file checks included (text and --json)."""
    d = tmp_path / "run"
    shutil.copytree(rust_runs["r12_padded"], d)
    names = sorted(p.name for p in d.glob("RAW-*-DA01-*.h5"))
    with h5py.File(d / names[0], "r") as f0:
        t0 = f0["INDEX/trainId"][:]
    # Problems in single files and across files.
    edit(d / names[1], set_values("INDEX/trainId", lambda a: a.__setitem__(slice(0, len(a)), t0[: len(a)])))
    edit(d / names[2], set_values("INDEX/trainId", lambda a: a.__setitem__(3, 0)))
    (d / "RAW-R0450-DA09-S00000.h5").write_bytes(b"garbage")
    for good in (False, True):
        run_dir = examples["fxe12"] if good else d
        code, full, _ = ours(str(run_dir))
        assert code == int(not good)
        code, full_json, _ = ours(str(run_dir), "--json")
        results = []
        n = 3
        shard_files = []
        for i in range(n):
            code, out, err = ours(str(run_dir), "--shard", f"{i}/{n}", "--json")
            assert code in (0, 1), err
            shard = json.loads(out)
            assert shard["shard"] == {"index": i, "count": n} and shard["run_problems"] == []
            shard_files.append([f["path"] for f in shard["files"]])
            p = tmp_path / f"shard{i}-{good}.json"
            p.write_text(out)
            results.append(str(p))
        # Every file in exactly one shard.
        all_files = sorted(f for fs in shard_files for f in fs)
        assert all_files == sorted(str(p) for p in run_dir.glob("*.h5"))
        code, merged, err = ours("--merge", *reversed(results))
        assert (code, merged) == (int(not good), full), err
        code, merged_json, _ = ours("--merge", *results, "--json")
        assert json.loads(merged_json) == json.loads(full_json)
    # A missing shard is refused.
    code, _, err = ours("--merge", *results[:2])
    assert code == 1 and "shard 2/3 are missing" in err
