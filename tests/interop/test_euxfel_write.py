"""xfel-write against the real EXtra-data: EXtra-data validates and reads every file we write
(copies, virtual files, overview files) with the same values as the source run; our reader reads
EXtra-data's overview files; h5py resolves our virtual sources relative to the file; bad input
gives clear errors and leaves nothing half-written."""
import json
import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest

from euxfel_helpers import make_rust_fixture, py_tool, run, rust_bin

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

BIG_KEY_BYTES = 64 << 20

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
    from extra_data import by_index

    assert list(ours.train_ids) == list(src.train_ids)
    assert ours.all_sources == src.all_sources
    for s in sorted(src.all_sources):
        assert ours[s].keys() == src[s].keys(), s
        for k in sorted(src[s].keys()):
            a, b = src[s, k], ours[s, k]
            if a.nbytes > BIG_KEY_BYTES:
                # Bounded memory: the first trains of the big (mock detector) keys.
                a, b = a.select_trains(by_index[:3]), b.select_trains(by_index[:3])
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
    with open_xd(run_dir, _use_voview=False) as r:
        before = r[src, key].ndarray()
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
    code, so, se = xw("copy", examples["agipd_old"], "-o", out)
    assert code == 1 and "already exists" in se
    assert out.read_bytes() == b"keep me"
    code, so, se = xw("copy", examples["agipd_old"], "-o", out, "--overwrite")
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


@pytest.mark.parametrize("kind", ["copy", "copy-unstaged", "virtual"])
def test_disk_full_leaves_nothing(signal_run, tmp_path, kind):
    """A 256 KiB tmpfs holds neither the copy (30 MB; built in memory and written at the end,
    or written chunk by chunk) nor the virtual file (400 KB)."""
    small = tmp_path / "small"
    small.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        extra = UNSTAGED if kind == "copy-unstaged" else ()
        code, so, se = xw(kind.split("-")[0], signal_run, "-o", small / "o.h5", "--no-cache",
                          *extra)
        assert code == 1, se
        assert f"{small}: no space left on the file system" in se, se
        assert "nothing was written" in se, se
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)])


def test_a_source_file_changing_during_virtual_leaves_nothing(tmp_path):
    """The run's file grows while `virtual` maps it (the writer is stopped with SIGSTOP once
    its partial file exists, a file is appended to, and it goes on)."""
    run_dir = make_rust_fixture(tmp_path / "r", "--format", "1.2", "--trains", "10",
                                "--sequences", "1", "--modules", "1")
    victim = sorted(run_dir.glob("*LPD00*.h5"))[0]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "v.h5"
    p = subprocess.Popen([rust_bin("xfel-write"), "virtual", str(run_dir), "-o", str(out),
                          "--no-cache"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    grown = False
    deadline = time.monotonic() + 60
    while not grown and time.monotonic() < deadline:
        os.kill(p.pid, signal.SIGSTOP)
        if p.poll() is not None:
            break
        if partials(out_dir, out.name):
            with open(victim, "ab") as f:
                f.write(b"\0" * 16)
            grown = True
        os.kill(p.pid, signal.SIGCONT)
        time.sleep(0.001)
    so, se = p.communicate(timeout=60)
    assert grown, se
    assert p.returncode == 1, se
    assert f"{victim}: changed while being read" in se, se
    assert list(out_dir.iterdir()) == []


# --- Signals: interrupted and killed writes ----------------------------------------------

@pytest.fixture(scope="module")
def signal_run(tmp_path_factory):
    """A run whose copy takes a few tenths of a second (30 MB, 90 datasets)."""
    return make_rust_fixture(tmp_path_factory.mktemp("sig") / "r", "--modules", "4",
                             "--sequences", "2", "--trains", "50", "--frames", "8",
                             "--frame-height", "64", "--frame-width", "64")


def partials(directory, out_name):
    return sorted(p for p in directory.iterdir() if p.name.startswith(f".{out_name}.partial-"))


def write_cmd(kind, run_dir, out, *extra):
    if kind == "overview":
        return [rust_bin("xfel-write"), "overview", run_dir, "-o", out, "--json", *extra]
    return [rust_bin("xfel-write"), kind, run_dir, "-o", out, "--no-cache", "--json", *extra]


# A copy of this size is built in memory and its partial file stays empty until the end:
# the "bytes" point (a partial file half written) needs the copy written chunk by chunk.
UNSTAGED = ("--stage-max-bytes", "0")


def start_and_signal(cmd, out, point, sig, min_bytes=0):
    """Starts `cmd` and sends `sig` at `point`: "start" (at once, possibly before the handlers
    are installed), "created" (the partial file exists) or "bytes" (the partial file holds at
    least `min_bytes`). For the last two the child is stopped (SIGSTOP) while it is looked at,
    so the signal arrives in exactly the state seen. Returns (exit code, stdout, stderr,
    whether the point was reached while the write was still running, its pid)."""
    # A shell's background job inherits SIGINT ignored; the child gets the default action.
    p = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    reached = point == "start"
    deadline = time.monotonic() + 60
    while not reached and time.monotonic() < deadline:
        os.kill(p.pid, signal.SIGSTOP)
        if p.poll() is not None:
            break
        found = partials(out.parent, out.name)
        reached = bool(found) and (point == "created" or found[0].stat().st_size >= min_bytes)
        if not reached:
            os.kill(p.pid, signal.SIGCONT)
            time.sleep(0.001)
    if p.poll() is None:
        os.kill(p.pid, sig)
        os.kill(p.pid, signal.SIGCONT)
    so, se = p.communicate(timeout=60)
    return p.returncode, so, se, reached, p.pid


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("kind", ["copy", "virtual", "overview"])
def test_a_signal_mid_write_leaves_no_output_and_no_partial_file(signal_run, tmp_path, kind, sig):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / f"{kind}.h5"
    # A complete copy's size: the "bytes" point is half of it, well before the end.
    points = [("start", 0), ("created", 0)]
    if kind == "copy":
        code, so, se = xw("copy", signal_run, "-o", tmp_path / "whole.h5", "--no-cache")
        assert code == 0, se
        points.append(("bytes", (tmp_path / "whole.h5").stat().st_size // 2))
    for point, min_bytes in points:
        extra = UNSTAGED if point == "bytes" else ()
        code, so, se, reached, _ = start_and_signal(write_cmd(kind, signal_run, out, *extra),
                                                    out, point, sig, min_bytes)
        assert reached, (point, code, se)
        assert partials(out_dir, out.name) == [], (point, se)
        if point == "start":
            # Before the handlers are installed the default action ends the process.
            assert code in (-sig, 128 + sig), (point, code, se)
        else:
            assert code == 128 + sig, (point, code, se)
            assert "interrupted; the output was not written" in se, se
        assert not out.exists(), point
        assert list(out_dir.iterdir()) == []
    assert not (signal_run / "overview.h5").exists()
    assert not any(".partial-" in p.name for p in signal_run.iterdir())


def test_a_killed_write_is_cleaned_up_and_reported_by_the_next_one(signal_run, tmp_path):
    out = tmp_path / "o.h5"
    code, so, se = xw("copy", signal_run, "-o", tmp_path / "whole.h5", "--no-cache")
    assert code == 0, se
    half = (tmp_path / "whole.h5").stat().st_size // 2
    (tmp_path / "whole.h5").unlink()
    code, so, se, reached, pid = start_and_signal(write_cmd("copy", signal_run, out, *UNSTAGED),
                                                  out, "bytes", signal.SIGKILL, half)
    assert reached and code == -signal.SIGKILL, (code, se)
    # The partial file's name says which output and which (now gone) process it belongs to.
    left = partials(tmp_path, out.name)
    assert [p.name for p in left] == [f".o.h5.partial-{pid}"]
    assert not out.exists()
    # Another process's partial file of the same output that is still running is left alone.
    live = tmp_path / f".o.h5.partial-{os.getpid()}"
    live.write_bytes(b"")
    code, so, se = xw("copy", signal_run, "-o", out, "--no-cache", "--json")
    assert code == 0, se
    assert f"removed {left[0]}, left by an earlier write that was killed" in se, se
    assert json.loads(so)["stale_partials_removed"] == [str(left[0])]
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "o.h5"]
    src = open_xd(signal_run, _use_voview=False)
    key = ("FXE_DET_LPD1M-1/DET/3CH0:xtdf", "image.data")
    assert np.array_equal(open_xd(out)[key].ndarray(), src[key].ndarray())


# --- Xspress3 acquisitions as EuXFEL runs ------------------------------------------------

DET = "entry/instrument/xspress3"
DEVICE = "XSPRESS3/DET/XSP3"


def acquire(tmp_path, frames=50, per_file=20):
    out = tmp_path / "acq"
    code, so, se = run([rust_bin("xsp3-acquire"), "run", "--frames", frames, "--exposure", "1ms",
                        "--channels", "2", "--out", out, "--file", "xsp",
                        "--frames-per-file", per_file])
    assert code == 0, se
    return sorted(out.glob("xsp_*.h5"))


def per_frame(parts, name):
    import h5py

    arrays = []
    for p in parts:
        with h5py.File(p, "r") as f:
            arrays.append(f[f"{DET}/{name}"][()])
    return np.concatenate(arrays)


def test_xspress3_acquisition_converts_and_reads_back_equal(tmp_path):
    import h5py

    parts = acquire(tmp_path)
    assert len(parts) == 3
    # An optional per-frame dataset (ROI sums) is carried over when present.
    with h5py.File(parts[0], "r") as f:
        nch = f[DET].attrs["n_channels"]
    for p in parts:
        with h5py.File(p, "r+") as f:
            n = f[f"{DET}/frame_number"].shape[0]
            f[f"{DET}/roi_sums"] = np.arange(n * nch * 2, dtype=np.uint32).reshape(n, nch, 2) + n
    out = tmp_path / "run"
    code, so, se = xw("xspress3", *parts, "-o", out, "--frames-per-train", "4",
                      "--first-train", "1000", "--run", "7")
    assert code == 0, se
    code, text = validate(out)
    assert code == 0 and "No problems found" in text, text
    code, so, se = run([py_tool("lsxfel"), out])
    assert code == 0 and f"{DEVICE}:daqOutput" in so, so + se
    r = open_xd(out)
    inst = f"{DEVICE}:daqOutput"
    assert r.instrument_sources == {inst} and r.control_sources == {DEVICE}
    fnum = per_frame(parts, "frame_number")
    want_tids = 1000 + (fnum - fnum[0]) // 4
    assert list(r.train_ids) == sorted(set(want_tids.tolist()))
    names = ["data", "time", "reset_ticks", "reset_count", "all_events", "all_good",
             "in_window_0", "in_window_1", "pileup", "total_ticks", "dead_time_correction",
             "dead_time_saturated", "output_count_rate", "frame_number", "timestamp", "roi_sums"]
    for name in names:
        key = "data.spectra" if name == "data" else f"data.{name}"
        got, want = r[inst, key].ndarray(), per_frame(parts, name)
        assert got.dtype == want.dtype, key
        assert np.array_equal(got, want, equal_nan=got.dtype.kind == "f"), key
        assert np.array_equal(r[inst, key].train_id_coordinates(), want_tids), key
    with h5py.File(parts[0], "r") as f:
        attrs = dict(f[DET].attrs)
        event_width = f[f"{DET}/event_width"][()]
    assert r[DEVICE, "exposure_time"].as_single_value() == attrs["exposure_time"]
    assert r[DEVICE, "n_channels"].run_value() == attrs["n_channels"]
    assert r[DEVICE, "trigger_mode"].run_value() == attrs["trigger_mode"]
    assert np.array_equal(r[DEVICE, "event_width"].ndarray()[0], event_width)
    assert r[DEVICE].device_class == "Xspress3"
    assert r.run_metadata()["dataFormatVersion"] == "1.3"
    assert r.run_metadata()["runNumber"] == 7


def test_xspress3_train_ids_from_a_timing_dataset(tmp_path):
    import h5py

    parts = acquire(tmp_path, frames=30, per_file=30)
    with h5py.File(parts[0], "r+") as f:
        n = f[f"{DET}/frame_number"].shape[0]
        tids = 5000 + np.arange(n, dtype=np.uint64) // 3 * 2
        f[f"{DET}/train_id"] = tids
    out = tmp_path / "run"
    code, so, se = xw("xspress3", *parts, "-o", out, "--json")
    assert code == 0, se
    assert '"train_ids_from_timing":true' in so
    r = open_xd(out)
    assert list(r.train_ids) == sorted(set(tids.tolist()))
    assert np.array_equal(r[f"{DEVICE}:daqOutput", "data.spectra"].train_id_coordinates(), tids)
    assert validate(out)[0] == 0


def test_xspress3_bad_input(tmp_path):
    parts = acquire(tmp_path, frames=10, per_file=10)
    out = tmp_path / "run"
    code, so, se = xw("xspress3", tmp_path / "missing.h5", "-o", out)
    assert code == 1 and "missing.h5" in se
    code, so, se = xw("xspress3", *parts, "-o", out, "--frames-per-train", "0")
    assert code == 1 and "frames-per-train" in se
    assert not any(out.glob("*.h5")) if out.exists() else True
    code, so, se = xw("xspress3", *parts, "-o", out)
    assert code == 0, se
    code, so, se = xw("xspress3", *parts, "-o", out)
    assert code == 1 and "already exists" in se


def test_train_selection_matching_nothing_is_an_error(examples, tmp_path):
    out = tmp_path / "o.h5"
    code, so, se = xw("copy", examples["fxe12"], "-o", out, "--trains", "1:5")
    assert code == 1 and "no trains" in se, se
    assert list(tmp_path.iterdir()) == []


def test_missing_output_directory_is_named(examples, tmp_path):
    missing = tmp_path / "no" / "such"
    code, so, se = xw("copy", examples["sa3_13"], "-o", missing / "o.h5")
    assert code == 1 and str(missing) in se and "partial" not in se, se


def test_data_never_written_in_the_source_is_not_materialised(examples, tmp_path):
    """EXtra-data's legacy AGIPD example declares 8 GB of images it never writes (contiguous,
    no storage): the copy keeps them unwritten, reading as the same fill value."""
    import h5py
    src = examples["agipd_old"]
    out = tmp_path / "o.h5"
    code, so, se = xw("copy", src, "-o", out)
    assert code == 0, se
    assert out.stat().st_size < 10 * src.stat().st_size
    key = "INSTRUMENT/SPB_DET_AGIPD1M-1/DET/7CH0:xtdf/image/data"
    with h5py.File(src) as a, h5py.File(out) as b:
        assert a[key].id.get_storage_size() == 0 and b[key].id.get_storage_size() == 0
        assert b[key].fillvalue == a[key].fillvalue
        np.testing.assert_array_equal(b[key][:3], a[key][:3])
