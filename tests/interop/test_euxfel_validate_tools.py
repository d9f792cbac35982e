"""xfel-locality against EXtra-data's extra-data-locality, with fake dCache
pseudo-files as EXtra-data's own tests use; xfel-readable on readable, broken,
hanging (FIFO) and tape-only files (extra-data-readable itself fails on machines
with fewer than 4 CPUs, so it is not run here)."""
import os
import re
import shutil

import pytest

from euxfel_helpers import py_tool, run, rust_bin

LOCALITIES = ["ONLINE", "NEARLINE", "UNAVAILABLE", "ONLINE_AND_NEARLINE", "BOGUS", None]


COUNTER = re.compile(r"^\d+ on disk, \d+ only on tape, \d+ unavailable\s*$")


def final(out):
    """The output with the counter line (rewritten in place with '\\r' after each
    file, in completion order for EXtra-data; universal newlines make each state a
    line here) reduced to its last state."""
    lines = [line.rstrip() for line in out.splitlines()]
    counters = [i for i, line in enumerate(lines) if COUNTER.match(line)]
    return [line for i, line in enumerate(lines) if i not in counters[:-1]]


@pytest.fixture
def fake_dcache(examples, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(examples["fxe12"], d)
    names = sorted(p.name for p in d.glob("*.h5"))
    for name, loc in zip(names, LOCALITIES * len(names)):
        if loc is not None:
            (d / f".(get)({name})(locality)").write_text(loc + "\n")
    return d


@pytest.mark.parametrize("skip", [(), ("BOGUS",), ("BOGUS", "NEARLINE", "UNAVAILABLE")])
def test_locality_same_as_extra_data(fake_dcache, skip):
    for p in fake_dcache.glob(".(get)*"):
        if p.read_text().strip() in skip:
            p.unlink()
    tc, to, te = run([py_tool("extra-data-locality"), str(fake_dcache)])
    oc, oo, oe = run([rust_bin("xfel-locality"), str(fake_dcache)])
    assert final(oo) == final(to), f"ours:\n{oo}\n{oe}\ntheirs:\n{to}\n{te}"
    assert oc == tc


def test_locality_missing_path_and_single_file(fake_dcache, tmp_path):
    for args in ([str(tmp_path / "nope")], [str(sorted(fake_dcache.glob("*.h5"))[1])]):
        tc, to, _ = run([py_tool("extra-data-locality"), *args])
        oc, oo, _ = run([rust_bin("xfel-locality"), *args])
        assert (oc, final(oo)) == (tc, final(to))


def test_readable(examples, tmp_path):
    d = tmp_path / "files"
    d.mkdir()
    good = sorted(examples["fxe12"].glob("*.h5"))[:2]
    for p in good:
        shutil.copy(p, d)
    code, out, err = run([rust_bin("xfel-readable"), str(d)])
    lines = out.splitlines()
    assert (code, lines[0], lines[-1]) == (0, "..", "all files readable"), out + err
    assert lines[1].startswith("average access time: ")
    (d / "RAW-R0450-DA99-S00000.h5").write_bytes(b"not hdf5")
    os.mkfifo(d / "RAW-R0450-DA98-S00000.h5")  # opening it blocks: a hanging filesystem
    (d / f".(get)({good[1].name})(locality)").write_text("NEARLINE\n")
    code, out, err = run([rust_bin("xfel-readable"), str(d), "--timeout", "1", "-a"])
    lines = out.splitlines()
    assert code == 1, out + err
    assert sorted(lines[0]) == sorted(".XXT")
    states = {line.split()[0]: line.split(None, 1)[1] for line in lines[2:]}
    assert states == {
        str(d / good[0].name): "readable",
        str(d / good[1].name): "dCache reports tape only",
        str(d / "RAW-R0450-DA99-S00000.h5"): "file on GPFS but read attempt raises OSError",
        str(d / "RAW-R0450-DA98-S00000.h5"): "file on GPFS but read attempt hangs",
    }
    code, out, _ = run([rust_bin("xfel-readable"), str(tmp_path / "empty_dir_missing")])
    assert (code, out) == (0, "No HDF5 files to check\n")


@pytest.mark.parametrize("content", ["", "online\n", "ONLINE\nNEARLINE\n", " NEARLINE \r\n", "it's\n"])
def test_locality_odd_pseudo_file_contents_same_as_extra_data(tmp_path, content):
    """Pseudo-files EXtra-data reads without failing: the same counts, lists and
    unknown localities (printed as Python's repr), the same exit code."""
    for name in ("a.h5", "b.h5"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".(get)(a.h5)(locality)").write_text(content)
    tc, to, te = run([py_tool("extra-data-locality"), str(tmp_path)])
    oc, oo, oe = run([rust_bin("xfel-locality"), str(tmp_path)])
    assert final(oo) == final(to), f"ours:\n{oo}\n{oe}\ntheirs:\n{to}\n{te}"
    assert oc == tc
