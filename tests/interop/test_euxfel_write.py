"""xfel-write against the real EXtra-data: EXtra-data validates and reads every file we write
(copies, virtual files, overview files) with the same values as the source run; our reader reads
EXtra-data's overview files; h5py resolves our virtual sources relative to the file; bad input
gives clear errors and leaves nothing half-written."""
import os
import shutil
import subprocess

import numpy as np
import pytest

from euxfel_helpers import make_rust_fixture, py_tool, run, rust_bin

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

EXAMPLES = ["fxe05", "fxe12", "spb10", "sa3_13", "agipd_old", "modern_proc", "reduced_spb"]


def xw(*args):
    return run([rust_bin("xfel-write"), *args])


def open_xd(path, **kw):
    import extra_data

    path = str(path)
    return extra_data.RunDirectory(path, **kw) if os.path.isdir(path) else extra_data.H5File(path)


def validate(path):
    code, out, err = run([py_tool("extra-data-validate"), str(path)])
    return code, out + err


def assert_same_data(src, ours):
    """Train IDs, sources, keys, every key's ndarray() and train_id_coordinates() equal."""
    assert list(ours.train_ids) == list(src.train_ids)
    assert ours.all_sources == src.all_sources
    for s in sorted(src.all_sources):
        assert ours[s].keys() == src[s].keys(), s
        for k in sorted(src[s].keys()):
            a, b = src[s, k], ours[s, k]
            va, vb = a.ndarray(), b.ndarray()
            assert va.dtype == vb.dtype, (s, k)
            assert va.shape == vb.shape, (s, k)
            assert np.array_equal(va, vb), (s, k)
            assert np.array_equal(a.train_id_coordinates(), b.train_id_coordinates()), (s, k)


def first_trains(src, n):
    """Copies of the big example runs are limited to their first trains (the mock detector
    data is unallocated in the source but real zeros in a copy)."""
    from extra_data import by_index

    return src.select_trains(by_index[:n])


@pytest.mark.parametrize("name", EXAMPLES)
def test_extra_data_validates_and_reads_our_copy(examples, tmp_path, name):
    out = tmp_path / "copy.h5"
    code, so, se = xw("copy", examples[name], "-o", out, "--by-index", "--trains", ":20")
    assert code == 0, se
    code, text = validate(out)
    assert code == 0 and "No problems found" in text, text
    assert_same_data(first_trains(open_xd(examples[name], _use_voview=False), 20), open_xd(out))


@pytest.mark.parametrize("name", EXAMPLES)
def test_extra_data_validates_and_reads_our_virtual_file(examples, tmp_path, name):
    out = tmp_path / "virtual.h5"
    code, so, se = xw("virtual", examples[name], "-o", out)
    assert code == 0, se
    code, text = validate(out)
    assert code == 0 and "No problems found" in text, text
    assert_same_data(open_xd(examples[name], _use_voview=False), open_xd(out))


@pytest.mark.parametrize("mode", ["copy", "virtual"])
def test_selections_by_source_key_and_train_id(examples, tmp_path, mode):
    from extra_data import by_id

    src = open_xd(examples["fxe12"], _use_voview=False)
    tids = src.train_ids
    lo, hi = int(tids[5]), int(tids[30])
    out = tmp_path / "sel.h5"
    code, so, se = xw(
        mode, examples["fxe12"], "-o", out,
        "--source", "SA1_XTD2_XGM/*", "--source", "FXE_DET_LPD1M-1/DET/1CH0:xtdf",
        "--key", "*", "--trains", f"{lo}:{hi}",
    )
    assert code == 0, se
    code, text = validate(out)
    assert code == 0, text
    want = src.select(
        [("SA1_XTD2_XGM/*", "*"), ("FXE_DET_LPD1M-1/DET/1CH0:xtdf", "*")]
    ).select_trains(by_id[lo:hi])
    assert_same_data(want, open_xd(out))
    # Key globs: only the selected keys are written.
    out2 = tmp_path / "keys.h5"
    code, so, se = xw(mode, examples["fxe12"], "-o", out2,
                      "--source", "SA1_XTD2_XGM/DOOCS/MAIN:output", "--key", "data.intensityTD")
    assert code == 0, se
    assert_same_data(src.select("SA1_XTD2_XGM/DOOCS/MAIN:output", "data.intensityTD"), open_xd(out2))


def test_excluding_suspect_trains(tmp_path):
    """--exc-suspect-trains drops trains flagged 0, as inc_suspect_trains=False does."""
    import h5py

    run_dir = make_rust_fixture(tmp_path / "r", "--format", "1.2", "--trains", "10",
                                "--sequences", "1", "--modules", "1")
    for f in sorted(run_dir.glob("*.h5")):
        with h5py.File(f, "r+") as h:
            flag = h["INDEX/flag"]
            flag[3] = 0
    out = tmp_path / "exc.h5"
    code, so, se = xw("copy", run_dir, "-o", out, "--exc-suspect-trains", "--no-cache")
    assert code == 0, se
    want = open_xd(run_dir, inc_suspect_trains=False, _use_voview=False)
    ours = open_xd(out)
    assert_same_data(want, ours)
    assert len(ours.train_ids) == 9


def test_h5py_resolves_virtual_sources_relative_to_the_file(examples, tmp_path):
    """The run directory and the virtual file move together and stay readable."""
    import h5py

    moved = tmp_path / "a"
    shutil.copytree(examples["spb10"], moved / "run")
    out = moved / "virtual.h5"
    code, so, se = xw("virtual", moved / "run", "-o", out)
    assert code == 0, se
    elsewhere = tmp_path / "b"
    shutil.move(str(moved), str(elsewhere))
    src = open_xd(elsewhere / "run", _use_voview=False)
    key = ("SPB_DET_AGIPD1M-1/DET/0CH0:xtdf", "image.data")
    with h5py.File(elsewhere / "virtual.h5", "r") as f:
        ds = f[src[key].hdf5_data_path]
        assert ds.is_virtual
        names = {vs.file_name for vs in ds.virtual_sources()}
        assert all(not os.path.isabs(n) for n in names), names
        assert np.array_equal(ds[:], src[key].ndarray())


def test_extra_data_reads_our_overview_file(examples, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(examples["fxe12"], run_dir)
    code, so, se = xw("overview", run_dir)
    assert code == 0, se
    assert (run_dir / "overview.h5").is_file()
    code, out, err = run([py_tool("python"), "-m", "extra_data.voview", "--check", run_dir])
    assert code == 0 and "overview file can be used" in out, out + err
    code, out, err = xw("overview", run_dir, "--check")
    assert code == 0 and "overview file can be used" in out, out + err
    with_ov = open_xd(run_dir)
    assert [os.path.basename(f.filename) for f in with_ov.files] == ["overview.h5"]
    assert_same_data(open_xd(run_dir, _use_voview=False), with_ov)
    code, text = validate(run_dir / "overview.h5")
    assert code == 0, text
    # Written again only with --overwrite.
    code, out, err = xw("overview", run_dir)
    assert code == 1 and "already exists" in err and "--overwrite" in err
    code, out, err = xw("overview", run_dir, "--overwrite")
    assert code == 0, err
    # A changed file size makes it outdated, for both checkers.
    with open(sorted(run_dir.glob("RAW-*.h5"))[0], "ab") as f:
        f.write(b"\0" * 16)
    code, out, err = xw("overview", run_dir, "--check")
    assert code == 1 and "outdated" in out
    code, out, err = run([py_tool("python"), "-m", "extra_data.voview", "--check", run_dir])
    assert code == 1


def test_our_reader_uses_extra_datas_overview_file(tmp_path):
    """After EXtra-data writes an overview, values that only the overview holds (its copied
    image.pulseId) are what our reader returns, as RunDirectory does."""
    import h5py

    run_dir = make_rust_fixture(tmp_path / "r", "--format", "1.2", "--trains", "10",
                                "--sequences", "1", "--modules", "1")
    code, out, err = run([py_tool("python"), "-m", "extra_data.voview", run_dir])
    assert code == 0, err
    code, out, err = xw("overview", run_dir, "--check")
    assert code == 0, out + err
    src, key = "FXE_DET_LPD1M-1/DET/0CH0:xtdf", "image.pulseId"
    before = open_xd(run_dir, _use_voview=False)[src, key].ndarray()
    # Same size, new values: the overview stays valid but now differs from the file.
    path = next(run_dir.glob("*LPD00*.h5"))
    with h5py.File(path, "r+") as f:
        ds = f[f"INSTRUMENT/{src}/image/pulseId"]
        ds[...] = ds[...] + 1000
    assert not np.array_equal(open_xd(run_dir, _use_voview=False)[src, key].ndarray(), before)
    assert np.array_equal(open_xd(run_dir)[src, key].ndarray(), before)
    code, out, err = run([rust_bin("xfel-extract"), "--no-cache", run_dir, src, key,
                          "--out", tmp_path / "x"])
    assert code == 0, err
    assert np.array_equal(np.load(tmp_path / "x" / "data.npy"), before)


def test_existing_output_is_kept(examples, tmp_path):
    out = tmp_path / "o.h5"
    out.write_bytes(b"keep me")
    code, so, se = xw("copy", examples["sa3_13"], "-o", out)
    assert code == 1 and "already exists" in se
    assert out.read_bytes() == b"keep me"
    code, so, se = xw("copy", examples["sa3_13"], "-o", out, "--overwrite")
    assert code == 0, se
    assert validate(out)[0] == 0


def test_selection_matching_nothing_is_an_error(examples, tmp_path):
    out = tmp_path / "o.h5"
    code, so, se = xw("copy", examples["fxe12"], "-o", out, "--source", "NO_SUCH/*")
    assert code == 1 and "NO_SUCH" in se, se
    assert list(tmp_path.iterdir()) == []


def test_read_only_output_directory(examples, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code, so, se = xw("copy", examples["sa3_13"], "-o", ro / "o.h5")
        assert code == 1 and str(ro) in se, se
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_read_only_output_directory_via_bind_mount_or_chattr(examples, tmp_path):
    """As root, a read-only filesystem stands in for a read-only directory."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount")
    ro = tmp_path / "ro"
    ro.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        code, so, se = xw("copy", examples["sa3_13"], "-o", ro / "o.h5")
        assert code == 1 and "Read-only file system" in se, se
        assert list(ro.iterdir()) == []
    finally:
        subprocess.run(["umount", str(ro)])


def test_disk_full_leaves_nothing(examples, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        code, so, se = xw("copy", examples["sa3_13"], "-o", small / "o.h5")
        assert code == 1, se
        assert "No space left on device" in se or "failed" in se, se
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)])
