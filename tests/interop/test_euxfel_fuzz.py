"""Corruption fuzz over files made by EXtra-data's own generator (and one of them
rewritten with HDF5's newest format, read through libhdf5): truncations and byte
mutations, each read by lsxfel (every key listed) and xfel-validate. Every run
must end with an exit status of its own: no signal (segfault, abort), no Rust panic
(101), no hang (timeout).

Variable-length strings get their own files: compact, contiguous and gzip-compressed
string keys (in the default format and in HDF5's newest), mutated mostly around their
global heap references, each read by lsxfel and xfel-extract: a corrupt reference must
be found before libhdf5 follows it (libhdf5 1.10.8 crashes in `H5HG_read`), or the
dataset refused.

EUXFEL_FUZZ_CASES (default 60 per file, a third of it per string file) sets the number
of cases; the full run of the issue is EUXFEL_FUZZ_CASES=1500 (about 4500 files, some
minutes).
"""
import os
import random
import shutil
import struct

import numpy as np
import pytest

from euxfel_helpers import run, rust_bin

CASES = int(os.environ.get("EUXFEL_FUZZ_CASES", "60"))
# Per string file (each case runs lsxfel and xfel-extract): a third, at least 10.
STRING_CASES = max(CASES // 3, 10)
TIMEOUT = 60


def mutate(data, rng, i):
    d = bytearray(data)
    if i % 4 == 0:
        return d[: rng.randrange(len(d))]
    # Half the cases hit the first 64 KiB, where h5py puts the metadata.
    span = min(len(d), 65536) if i % 2 else len(d)
    for _ in range(rng.randint(1, 8)):
        d[rng.randrange(span)] = rng.randrange(256)
    return d


def latest_format_copy(src, dst):
    """The same file written with HDF5's newest format (superblock v3, v2 object
    headers, new-style groups): the map walk leaves it to libhdf5 entirely."""
    import h5py

    with h5py.File(src, "r") as fi, h5py.File(dst, "w", libver="latest") as fo:
        for name in fi:
            fi.copy(fi[name], fo, name=name)


@pytest.mark.parametrize("name", ["fxe12/RAW-R0450-DA01-S00000.h5", "agipd_old", "latest"])
def test_corrupted_files_never_crash(examples, tmp_path, name):
    if name == "latest":
        src = tmp_path / "latest.h5"
        latest_format_copy(examples["fxe12"] / "RAW-R0450-DA01-S00000.h5", src)
    else:
        src = examples[name] if name in examples else examples["fxe12"].parent / name
    data = src.read_bytes()
    rng = random.Random(f"{name}-{CASES}")
    bad = []
    for i in range(CASES):
        p = tmp_path / f"RAW-R0450-DA01-S{i % 100:05d}.h5"
        p.write_bytes(mutate(data, rng, i))
        for cmd in ([rust_bin("lsxfel"), "--no-cache", str(p), "-d", "*"],
                    [rust_bin("xfel-validate"), str(p)]):
            try:
                code, _, err = run(cmd, timeout=TIMEOUT)
            except Exception as e:  # subprocess.TimeoutExpired
                bad.append((i, cmd[0], repr(e)))
                continue
            if code < 0 or code in (101, 134):
                kept = tmp_path / f"crash-{i}.h5"
                p.rename(kept)
                bad.append((i, cmd[0], code, err[-500:], str(kept)))
                break
    assert not bad, bad


STR_SRC = "SA1_XTD2_XGM/DOOCS/MAIN:output"
STR_GROUP = f"INSTRUMENT/{STR_SRC}/data"
STR_KEYS = ["data.strCompact", "data.strContig", "data.strGzip"]


def add_string_keys(path):
    """Add the three string keys to an EuXFEL file: compact, contiguous, gzip."""
    import h5py

    with h5py.File(path, "r+") as f:
        n = f[f"{STR_GROUP}/trainId"].shape[0]
        vals = np.array([f"s{i}-" + "x" * (i % 7) for i in range(n)], dtype=object)
        tid = h5py.h5t.string_dtype()
        sid = h5py.h5s.create_simple((n,))
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        name = f"{STR_GROUP}/strCompact".encode()
        h5py.h5d.create(f.id, name, h5py.h5t.py_create(tid, logical=True), sid, dcpl=dcpl)
        f[f"{STR_GROUP}/strCompact"][:] = vals
        f.create_dataset(f"{STR_GROUP}/strContig", data=vals, dtype=tid)
        f.create_dataset(f"{STR_GROUP}/strGzip", data=vals, dtype=tid, chunks=(8,),
                         compression="gzip")
    return vals


def heap_ref_offsets(data):
    """Offsets of the 8-byte addresses of global heap collections (GCOL) wherever they
    occur: inside the references of contiguous and compact string data."""
    out = []
    start = 0
    while (g := data.find(b"GCOL", start)) >= 0:
        start = g + 4
        addr = struct.pack("<Q", g)
        at = 0
        while (r := data.find(addr, at)) >= 0:
            out.append(r)
            at = r + 1
    return out


def mutate_near_refs(data, rng, i, refs):
    if not refs or i % 3 == 0:
        return mutate(data, rng, i)
    d = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        r = rng.choice(refs) + rng.randrange(-4, 12)
        if 0 <= r < len(d):
            d[r] = rng.randrange(256)
    return d


@pytest.fixture(scope="module")
def string_files(examples, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz_strings")
    src = examples["fxe12"] / "RAW-R0450-DA01-S00000.h5"
    default = root / "default.h5"
    shutil.copy(src, default)
    vals = add_string_keys(default)
    latest = root / "latest.h5"
    latest_format_copy(src, latest)
    add_string_keys(latest)
    return {"default": default, "latest": latest, "values": vals}


def test_string_keys_read_or_refused(string_files, tmp_path):
    """Intact files: compact and contiguous strings read as EXtra-data reads them (the
    compact ones of the newest format, in an object header the map walk does not
    parse, are refused); gzip-compressed strings are refused naming the file."""
    import extra_data

    for kind in ("default", "latest"):
        f = string_files[kind]
        xd = extra_data.H5File(str(f))
        for key in STR_KEYS:
            out = tmp_path / kind / key
            code, so, err = run([rust_bin("xfel-extract"), "--no-cache", f, STR_SRC, key,
                                 "--out", out])
            refused = key == "data.strGzip" or (kind == "latest" and key == "data.strCompact")
            if refused:
                assert code == 1, (kind, key, so)
                assert str(f) in err and "cannot be checked" in err, (kind, key, err)
                assert not out.exists()
            else:
                assert code == 0, (kind, key, err)
                expected = [str(x) for x in xd[STR_SRC, key].ndarray().tolist()]
                assert np.load(out / "data.npy").tolist() == expected, (kind, key)


@pytest.mark.parametrize("kind", ["default", "latest"])
def test_corrupted_string_keys_never_crash(string_files, tmp_path, kind):
    data = string_files[kind].read_bytes()
    refs = heap_ref_offsets(data)
    assert refs, "no global heap reference found"
    rng = random.Random(f"strings-{kind}-{STRING_CASES}")
    bad = []
    for i in range(STRING_CASES):
        p = tmp_path / f"RAW-R0450-DA01-S{i % 100:05d}.h5"
        p.write_bytes(mutate_near_refs(data, rng, i, refs))
        key = STR_KEYS[i % len(STR_KEYS)]
        for cmd in ([rust_bin("lsxfel"), "--no-cache", str(p), "-d", "*"],
                    [rust_bin("xfel-extract"), "--no-cache", str(p), STR_SRC, key,
                     "--out", str(tmp_path / "out")]):
            try:
                code, _, err = run(cmd, timeout=TIMEOUT)
            except Exception as e:  # subprocess.TimeoutExpired
                bad.append((i, cmd[0], repr(e)))
                continue
            if code < 0 or code in (101, 134):
                kept = tmp_path / f"crash-{i}.h5"
                p.rename(kept)
                bad.append((i, cmd[0], code, err[-500:], str(kept)))
                break
    assert not bad, bad


def test_corrupt_compact_string_reference_is_found(string_files, tmp_path):
    """References in compact storage (inside the object header) are checked before
    libhdf5 follows them: one pointing at no heap collection is an error naming the
    file and dataset, found by our check (not libhdf5's)."""
    import h5py

    src = string_files["default"]
    with h5py.File(src) as f:
        ds = f[f"{STR_GROUP}/strContig"]
        contig, n = ds.id.get_offset(), ds.shape[0]
    data = bytearray(src.read_bytes())
    refs = set(heap_ref_offsets(bytes(data)))
    # Runs of n references 16 bytes apart, other than the contiguous key's.
    runs = [r for r in sorted(refs) if r - 16 not in refs and r != contig + 4
            and all(r + 16 * k in refs for k in range(n))]
    assert runs
    for r in runs:
        for k in range(0, n, 50):
            data[r + 16 * k: r + 16 * k + 8] = struct.pack("<Q", 0x200)
    bad = tmp_path / "RAW-R0450-DA01-S00000.h5"
    bad.write_bytes(data)
    code, _, err = run([rust_bin("xfel-extract"), "--no-cache", bad, STR_SRC, "data.strCompact",
                        "--out", tmp_path / "out"])
    assert code == 1, err
    assert str(bad) in err and "strCompact: corrupt variable-length string reference" in err, err
