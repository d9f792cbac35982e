"""Our lsxfel against EXtra-data's lsxfel on the same inputs: stdout and exit code."""
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from euxfel_helpers import lsxfel_both, make_rust_fixture, py_tool, run, rust_bin


@pytest.fixture(scope="session")
def rust_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("rust_fixtures")
    return {
        "r05": make_rust_fixture(root / "r05", "--format", "0.5", "--trains", "30"),
        "r10_legacy": make_rust_fixture(
            root / "r10_legacy", "--format", "1.0", "--legacy-index", "--modules", "2",
            "--trains", "20",
        ),
        "r12_padded": make_rust_fixture(
            root / "r12_padded", "--format", "1.2", "--pad-train-ids", "17",
            "--pad-sources", "9", "--trains", "25", "--sequences", "3",
        ),
        "r13": make_rust_fixture(root / "r13", "--format", "1.3", "--sequences", "1"),
    }


def assert_same(args, cwd=None):
    (tc, to, te), (oc, oo, oe) = lsxfel_both(args, cwd=cwd)
    assert oo == to, f"stdout differs for lsxfel {args}\n--- ours stderr:\n{oe}\n--- theirs stderr:\n{te}"
    assert oc == tc, f"exit code {oc} != {tc} for {args}; ours: {oe}"


OPTION_SETS = [
    [],
    ["--counts"],
    ["--no-group"],
    ["-g"],
    ["--detail", "XGM"],
    ["--detail", "*"],
    ["--source", "*XGM*:output", "--counts"],
    ["--detail", "*/DET/*", "-g"],
    ["--source", "nomatch"],
    ["-x"],
]


@pytest.mark.parametrize("name", ["fxe12", "spb10", "sa3_13", "agipd_old", "modern_proc"])
@pytest.mark.parametrize("opts", OPTION_SETS, ids=lambda o: " ".join(o) or "plain")
def test_lsxfel_same_output_extra_data_examples(examples, name, opts):
    assert_same([str(examples[name]), *opts])


@pytest.mark.parametrize(
    "opts", [[], ["--counts"], ["-x"], ["-x", "-g"], ["-x", "--no-group"]],
    ids=lambda o: " ".join(o) or "plain",
)
def test_lsxfel_same_output_auxiliary_sources(examples, opts):
    """REDUCTION / ERRATA sources (make_reduced_spb_run), listed with -x."""
    assert_same([str(examples["reduced_spb"]), *opts])


@pytest.mark.parametrize(
    "opts",
    # Format 0.5 with --detail on control sources makes EXtra-data crash
    # (MultiRunError, see docs/euxfel.md); every other option must match.
    [o for o in OPTION_SETS if not any(x in ("--detail",) for x in o)]
    + [["--detail", "*:output"], ["--detail", "*/DET/*"]],
    ids=lambda o: " ".join(o) or "plain",
)
def test_lsxfel_same_output_format_05(examples, opts):
    assert_same([str(examples["fxe05"]), *opts])


@pytest.mark.parametrize("name", ["r05", "r10_legacy", "r12_padded", "r13"])
@pytest.mark.parametrize(
    "opts", [[], ["--counts", "-g"], ["--detail", "*:output"], ["--detail", "*/DET/*"]],
    ids=lambda o: " ".join(o) or "plain",
)
def test_lsxfel_same_output_rust_fixtures(rust_runs, name, opts):
    assert_same([str(rust_runs[name]), *opts])


def test_lsxfel_several_paths_and_missing(examples):
    assert_same([str(examples["fxe12"]), str(examples["spb10"]), str(examples["sa3_13"])])
    assert_same([str(examples["fxe12"]), "/nonexistent/path"])
    assert_same(["/nonexistent/path"])


def test_lsxfel_unrecognised(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert_same([str(tmp_path / "notes.txt")])
    empty = tmp_path / "emptydir"
    empty.mkdir()
    assert_same([str(empty)])
    assert_same([str(empty), str(tmp_path / "notes.txt")])


def test_lsxfel_proposal_trees(examples, tmp_path):
    prop = tmp_path / "p700000"
    (prop / "raw").mkdir(parents=True)
    shutil.copytree(examples["fxe12"], prop / "raw" / "r0450")
    shutil.copytree(examples["spb10"], prop / "raw" / "r0238")
    # 'Proposal directory' (contains raw/)
    assert_same([str(prop)])
    # 'Proposal data directory' (contains rNNNN runs)
    assert_same([str(prop / "raw")])
    assert_same([str(prop / "raw") + "/"])


def test_lsxfel_run_map_is_shared(examples, tmp_path):
    """Our run map is read by EXtra-data's RunFilesMap, and EXtra-data's by us."""
    from extra_data.run_files_map import RunFilesMap

    run_dir = tmp_path / "run"
    shutil.copytree(examples["fxe12"], run_dir)
    code, out, err = run([rust_bin("lsxfel"), str(run_dir)])
    assert code == 0, err
    cache = run_dir / "karabo_data_map.json"
    assert cache.exists()
    m = RunFilesMap(str(run_dir))
    names = sorted(p.name for p in run_dir.glob("*.h5"))
    assert sorted(m.files_data) == names
    entry = m.get(str(run_dir / "RAW-R0450-DA01-S00000.h5"))
    assert entry is not None and len(entry["train_ids"]) == 400
    # EXtra-data opens with our cache and prints the same.
    assert run([py_tool("lsxfel"), str(run_dir)])[1] == out
    # Byte for byte the file EXtra-data writes (same field order, floats, indent).
    ours_text = cache.read_bytes()
    cache.unlink()
    assert run([py_tool("lsxfel"), str(run_dir)])[0] == 0
    assert cache.read_bytes() == ours_text

    # EXtra-data's cache read by us: prove it is used by editing a cached source list
    # (size and mtime still match, so the entry stays valid for both tools).
    data = json.loads(cache.read_text())
    for e in data:
        if e["filename"] == "RAW-R0450-DA01-S00000.h5":
            e["control_sources"] = [s for s in e["control_sources"] if "SPB_XTD9" not in s]
        if e["filename"] == "RAW-R0450-DA01-S00001.h5":
            e["control_sources"] = [s for s in e["control_sources"] if "SPB_XTD9" not in s]
    cache.write_text(json.dumps(data, indent=2))
    ours = run([rust_bin("lsxfel"), str(run_dir)])
    theirs = run([py_tool("lsxfel"), str(run_dir)])
    assert "3 control sources:" in ours[1]
    assert ours[1] == theirs[1]
    # --no-cache bypasses it.
    assert "4 control sources:" in run([rust_bin("lsxfel"), "--no-cache", str(run_dir)])[1]
    # A stale entry (mtime changed) is ignored by both.
    f = run_dir / "RAW-R0450-DA01-S00000.h5"
    st = f.stat()
    os.utime(f, (st.st_atime, st.st_mtime + 5))
    ours = run([rust_bin("lsxfel"), str(run_dir)])
    assert ours[1] == run([py_tool("lsxfel"), str(run_dir)])[1]


def test_extra_data_validate_accepts_rust_fixtures(rust_runs):
    for name, path in rust_runs.items():
        code, out, err = run([py_tool("extra-data-validate"), str(path)])
        assert code == 0, f"{name}: {out}{err}"
        assert "No problems found" in out
