"""Corruption fuzz over files made by EXtra-data's own generator (and one of them
rewritten with HDF5's newest format, read through libhdf5): truncations and byte
mutations, each read by lsxfel (every key listed) and xfel-validate. Every run
must end with an exit status of its own: no signal (segfault, abort), no Rust panic
(101), no hang (timeout).

EUXFEL_FUZZ_CASES (default 60 per file) sets the number of cases; the full run of
the issue is EUXFEL_FUZZ_CASES=1500 (about 3000 cases, some minutes).
"""
import os
import random

import pytest

from euxfel_helpers import run, rust_bin

CASES = int(os.environ.get("EUXFEL_FUZZ_CASES", "60"))
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
