"""xfel-make-virtual-cxi and xfel-extract --detector under faults: a full disk, an output
directory that is not writable, outputs that exist already, Ctrl-C during a stacked extract,
source files moved after the CXI file was written. Each checks that nothing half-written is
left looking complete, that the error names the output, and the documented exit status."""
import os
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest

from euxfel_helpers import make_rust_fixture, py_tool, run, rust_bin

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CXI = rust_bin("xfel-make-virtual-cxi")
EXTRACT = rust_bin("xfel-extract")


@pytest.fixture(scope="module")
def lpd16(tmp_path_factory):
    """16 LPD modules, 2 x 100 trains of 8 frames of 4x4 pixels: a CXI file of about 120 KB,
    a stacked data.npy of 800 KB."""
    return make_rust_fixture(
        tmp_path_factory.mktemp("lpd16") / "r0001", "--modules", "16", "--trains", "100",
        "--sequences", "2", "--frames", "8", "--frame-height", "4", "--frame-width", "4",
    )


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs: writes to it really fail with ENOSPC."""
    d = tmp_path / "small"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)])


def test_cxi_on_a_full_disk_fails_and_leaves_nothing(lpd16, small_disk):
    out = small_disk / "det.cxi"
    code, so, se = run([CXI, lpd16, "--min-modules", "1", "-o", out])
    assert code == 1, (so, se)
    assert str(out) in se, se
    assert list(small_disk.iterdir()) == [], se


def test_extract_detector_on_a_full_disk_fails_and_leaves_nothing(lpd16, small_disk):
    out = small_disk / "a" / "b" / "ex"
    code, so, se = run([EXTRACT, lpd16, "--detector", "--out", out])
    assert code == 1, (so, se)
    assert str(out / "data.npy") in se and "No space left on device" in se, se
    # The directories it created go too.
    assert list(small_disk.iterdir()) == [], se


def test_extract_detector_failure_keeps_earlier_outputs(lpd16, small_disk):
    """A directory holding a complete earlier extraction: a failing one leaves it as it was
    (neither a truncated data.npy nor new coordinates beside the old data)."""
    out = small_disk / "ex"
    out.mkdir()
    old = np.arange(6, dtype=np.uint16)
    np.save(out / "data.npy", old)
    np.save(out / "train_ids.npy", np.arange(6, dtype=np.uint64))
    code, so, se = run([EXTRACT, lpd16, "--detector", "--out", out])
    assert code == 1, (so, se)
    assert sorted(p.name for p in out.iterdir()) == ["data.npy", "train_ids.npy"], se
    np.testing.assert_array_equal(np.load(out / "data.npy"), old)


def test_unwritable_output_directory(lpd16, tmp_path):
    """A read-only file system (unwritable for root too): EXtra-data's message for the CXI
    file (its os.access check, done before the run is read), the system's for the extract."""
    ro = tmp_path / "ro"
    ro.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        code, so, se = run([CXI, lpd16, "--min-modules", "1", "-o", ro / "x.cxi"])
        assert code == 1, (so, se)
        assert se == f"xfel-make-virtual-cxi: ERROR: Don't have write access to {ro}\n"
        code, so, se = run([py_tool("extra-data-make-virtual-cxi"), lpd16, "--min-modules",
                            "1", "-o", ro / "x.cxi"])
        assert code == 1 and se.endswith(f"ERROR: Don't have write access to {ro}\n"), se
        code, so, se = run([EXTRACT, lpd16, "--detector", "--out", ro / "ex"])
        assert code == 1, (so, se)
        assert str(ro / "ex") in se and "Read-only file system" in se, se
        assert list(ro.iterdir()) == []
    finally:
        subprocess.run(["umount", str(ro)])


def test_cxi_replaces_an_existing_output(lpd16, tmp_path):
    out = tmp_path / "det.cxi"
    out.write_bytes(b"not hdf5" * 1000)
    code, so, se = run([CXI, lpd16, "--min-modules", "1", "-o", out])
    assert code == 0, se
    with h5py.File(out, "r") as f:
        assert f["entry_1/instrument_1/detector_1/data"].shape == (1600, 16, 1, 4, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["det.cxi"]


def test_cxi_output_that_is_a_directory(lpd16, tmp_path):
    out = tmp_path / "det.cxi"
    out.mkdir()
    code, so, se = run([CXI, lpd16, "--min-modules", "1", "-o", out])
    assert code == 1, (so, se)
    assert str(out) in se and "directory" in se, se
    assert list(out.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["det.cxi"]


def test_cxi_refuses_to_overwrite_a_source_file(tmp_path):
    run_dir = make_rust_fixture(tmp_path / "r", "--modules", "2", "--trains", "3",
                                "--sequences", "1", "--frames", "2", "--frame-height", "2",
                                "--frame-width", "2")
    victim = run_dir / "RAW-R0450-LPD01-S00000.h5"
    before = victim.read_bytes()
    code, so, se = run([CXI, run_dir, "--min-modules", "1", "-o", victim])
    assert code == 1, (so, se)
    assert str(victim) in se, se
    assert victim.read_bytes() == before


@pytest.fixture(scope="module")
def lpd_large(tmp_path_factory):
    """16 LPD modules of 2 x 25 trains of 32 frames of 64x64 pixels: a 200 MB stacked read."""
    return make_rust_fixture(
        tmp_path_factory.mktemp("lpd_large") / "r", "--modules", "16", "--trains", "25",
        "--sequences", "2", "--frames", "32", "--frame-height", "64", "--frame-width", "64",
    )


def _opened_a_module_file(pid):
    try:
        return any("-LPD" in os.readlink(f"/proc/{pid}/fd/{fd}")
                   for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def _resident_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0


@pytest.mark.parametrize("when", ["opening", "reading"])
def test_ctrl_c_during_a_stacked_extract_leaves_nothing(lpd_large, tmp_path, when):
    """SIGINT once a module file is open (the run is being opened), or once the process holds
    over 100 MiB (the 200 MiB stacked read or its write is under way)."""
    out = tmp_path / "ex"
    p = subprocess.Popen([str(EXTRACT), str(lpd_large), "--detector", "--no-cache",
                          "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = {"opening": _opened_a_module_file,
               "reading": lambda pid: _resident_mib(pid) > 100}[when]
    try:
        for _ in range(20000):
            if started(p.pid) or p.poll() is not None:
                break
            time.sleep(0.001)
        if p.poll() is not None:
            pytest.skip("the extraction ended before the signal could be sent")
        p.send_signal(signal.SIGINT)
        so, se = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, (p.returncode, se)
    assert "xfel-extract: interrupted" in se, se
    assert not out.exists(), list(out.iterdir())


def test_cxi_after_the_cxi_or_the_run_moved(tmp_path):
    """Source files are mapped by absolute path, as extra-data-make-virtual-cxi maps them:
    both files keep working when they are moved, and when the run moves both read the fill
    value (libhdf5 finds no source file; neither tool can do better with absolute paths)."""
    run_dir = make_rust_fixture(tmp_path / "r", "--modules", "2", "--trains", "3",
                                "--sequences", "1", "--frames", "2", "--frame-height", "2",
                                "--frame-width", "2")
    args = [run_dir, "--min-modules", "1", "--fill-value", "data", "7"]
    ours, theirs = tmp_path / "ours.cxi", tmp_path / "theirs.cxi"
    code, so, se = run([CXI, *args, "-o", ours])
    assert code == 0, se
    code, so, se = run([py_tool("extra-data-make-virtual-cxi"), *args, "-o", theirs])
    assert code == 0, se
    data = "entry_1/instrument_1/detector_1/data"
    with h5py.File(ours, "r") as f, h5py.File(theirs, "r") as g:
        sources = sorted((s.file_name, s.dset_name) for s in f[data].virtual_sources())
        assert sources == sorted((s.file_name, s.dset_name) for s in g[data].virtual_sources())
        assert {s[0] for s in sources} == {str(p) for p in run_dir.glob("*LPD*.h5")}
        before = f[data][:]
        np.testing.assert_array_equal(before, g[data][:])
    assert (before[:, :2] != 7).any()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for p in (ours, theirs):
        p.rename(elsewhere / p.name)
        with h5py.File(elsewhere / p.name, "r") as f:
            np.testing.assert_array_equal(f[data][:], before)
    run_dir.rename(tmp_path / "moved_run")
    for p in (ours, theirs):
        with h5py.File(elsewhere / p.name, "r") as f:
            assert (f[data][:] == 7).all()


def _mixed_run(root, name, module1, second_sequence=False):
    """Two LPD modules of 4 trains; module 1 written with the class `module1`, in its second
    sequence file only if `second_sequence`."""
    from extra_data.tests.mockdata import write_file
    from extra_data.tests.mockdata.detectors import LPDModule

    d = root / name
    d.mkdir()
    for m in range(2):
        src = f"FXE_DET_LPD1M-1/DET/{m}CH0"
        seqs = [(0, LPDModule), (1, module1 if m else LPDModule)] if second_sequence else \
            [(0, module1 if m else LPDModule)]
        for seq, cls in seqs:
            path = d / f"RAW-R0450-LPD{m:02}-S{seq:05}.h5"
            write_file(str(path), [cls(src, frames_per_train=2)], ntrains=4,
                       firsttrain=10000 + 4 * seq, chunksize=4, format_version="1.0")
            with h5py.File(path, "r+") as f:
                ds = f[f"INSTRUMENT/{src}:xtdf/image/data"]
                ds[...] = (np.arange(ds.size) % 1000 + 1).reshape(ds.shape)
    return d


@pytest.fixture(scope="module")
def mixed_runs(tmp_path_factory):
    from extra_data.tests.mockdata.detectors import LPDModule

    class Float32(LPDModule):
        @property
        def image_keys(self):
            return [(k, "f4" if k == "data" else t, s, o) for k, t, s, o in super().image_keys]

    class Wider(LPDModule):
        image_dims = (1, 256, 257)

    root = tmp_path_factory.mktemp("mixed")
    return {
        "dtype": _mixed_run(root, "dtype", Float32),
        "shape": _mixed_run(root, "shape", Wider),
        "sequence_shape": _mixed_run(root, "sequence_shape", Wider, second_sequence=True),
    }


def test_modules_of_different_dtypes(mixed_runs, tmp_path):
    """Stacking refuses them (it read module 1's float32 bytes as uint16: made-up values with
    exit 0); the virtual CXI file maps them in module 0's dtype, libhdf5 converting, as
    EXtra-data's does."""
    run_dir = mixed_runs["dtype"]
    code, so, se = run([EXTRACT, run_dir, "--detector", "--out", tmp_path / "ex"])
    assert code == 1, (so, se)
    assert se.strip().endswith(
        "FXE_DET_LPD1M-1/DET/1CH0:xtdf image.data: dtype float32, entry shape [1, 256, 256]; "
        "module FXE_DET_LPD1M-1/DET/0CH0:xtdf has uint16, [1, 256, 256]: the modules cannot "
        "be stacked"), se
    assert not (tmp_path / "ex").exists()
    ours, theirs = tmp_path / "ours.cxi", tmp_path / "theirs.cxi"
    assert run([CXI, run_dir, "--min-modules", "1", "-o", ours])[0] == 0
    assert run([py_tool("extra-data-make-virtual-cxi"), run_dir, "--min-modules", "1",
                "-o", theirs])[0] == 0
    data = "entry_1/instrument_1/detector_1/data"
    with h5py.File(ours, "r") as f, h5py.File(theirs, "r") as g:
        # (EXtra-data takes the dtype of whichever module its set yields first.)
        assert f[data].dtype == np.uint16 and g[data].dtype in (np.uint16, np.float32)
        np.testing.assert_array_equal(f[data][:, :2], g[data][:, :2].astype(np.uint16))
        assert f[data][0, 1].max() > 0


@pytest.mark.parametrize("name,what", [
    ("shape", "FXE_DET_LPD1M-1/DET/1CH0:xtdf image.data: dtype uint16, entry shape "
              "[1, 256, 257]; module FXE_DET_LPD1M-1/DET/0CH0:xtdf has uint16, [1, 256, 256]: "
              "the modules cannot be stacked"),
    ("sequence_shape", "RAW-R0450-LPD01-S00001.h5: /INSTRUMENT/FXE_DET_LPD1M-1/DET/1CH0:xtdf/"
                       "image/data: shape [8, 1, 256, 257], but the entries of this key are "
                       "[1, 256, 256] in its other files"),
])
def test_modules_of_different_shapes(mixed_runs, tmp_path, name, what):
    """Refused by both tools (the stacked read placed module 1's rows misaligned, exit 0;
    EXtra-data: `Can't broadcast`), with an error naming the module or file."""
    run_dir = mixed_runs[name]
    code, so, se = run([EXTRACT, run_dir, "--detector", "--out", tmp_path / "ex"])
    assert code == 1 and what in se, (so, se)
    code, so, se = run([CXI, run_dir, "--min-modules", "1", "-o", tmp_path / "x.cxi"])
    assert code == 1 and what in se, (so, se)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_run_dir_with_dot_dot_as_extra_data(tmp_path):
    """`.../proc/r0012/../r0012` is `.../proc/r0012` (os.path.abspath): the default output
    and the mapped file names are those of the plain path (ours kept the `..`, so the default
    output rule refused it)."""
    proc = tmp_path / "p900001" / "proc"
    (tmp_path / "p900001" / "scratch").mkdir(parents=True)
    make_rust_fixture(proc / "r0012", "--modules", "2", "--trains", "3", "--sequences", "1",
                      "--frames", "2", "--frame-height", "2", "--frame-width", "2")
    code, so, se = run([CXI, proc / "r0012" / ".." / "r0012", "--min-modules", "1"])
    assert code == 0, se
    out = tmp_path / "p900001" / "scratch" / "r0012_proc_detectors_virt.cxi"
    with h5py.File(out, "r") as f:
        files = {s.file_name for s in f["entry_1/instrument_1/detector_1/data"].virtual_sources()}
    assert files == {str(p) for p in (proc / "r0012").glob("*LPD*.h5")}


def test_ctrl_c_during_make_virtual_cxi_leaves_nothing(lpd_large, tmp_path):
    """SIGINT once a module file is open: exit 130, neither the CXI file nor its .partial."""
    out = tmp_path / "x.cxi"
    p = subprocess.Popen([str(CXI), str(lpd_large), "--min-modules", "1", "-o", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(20000):
            if _opened_a_module_file(p.pid) or p.poll() is not None:
                break
            time.sleep(0.001)
        if p.poll() is not None:
            pytest.skip("the command ended before the signal could be sent")
        p.send_signal(signal.SIGINT)
        so, se = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, (p.returncode, se)
    assert "xfel-make-virtual-cxi: interrupted" in se, se
    assert list(tmp_path.iterdir()) == []
