"""Huge INDEX counts (issue 14, robust reading): one train's count of 10**12 and the next
one's of 2**63 spoil only those two trains. EXtra-data reads every later train from its own
`first` (`train_from_id`, a selection starting after the bad trains); ours reads the same
values, refuses a read that reaches the bad trains naming the file and the train (EXtra-data
hands out the dataset's rows up to its end for them, or fails to allocate), and xfel-serve
sends the intact trains of a range that starts at the bad ones.

Build first: cargo build -p euxfel -p euxfel-components -p karabo-bridge --bins
"""
import h5py
import numpy as np
import pytest

from euxfel_helpers import run, rust_bin
from test_karabo_bridge import ours, receive

SRC = "SA1_XTD2_XGM/DOOCS/MAIN:output"
KEY = "data.xTD"


@pytest.fixture(params=[(10**12, 2**63), (2**64 - 1, 2**64 - 1)], ids=["1e12_2e63", "u64max"])
def bad_file(tmp_path, request):
    from extra_data.tests import make_examples as me

    p = tmp_path / "RAW-R0450-DA01-S00000.h5"
    me.make_fxe_da_file(str(p))
    with h5py.File(p, "r+") as f:
        c = f[f"INDEX/{SRC}/data/count"]
        c[5], c[6] = request.param
    return p


def test_trains_after_huge_counts_read_as_extra_data(bad_file, tmp_path):
    import extra_data as ed

    kd = ed.H5File(str(bad_file))[SRC, KEY]
    tids = kd.train_ids
    assert tids[5:7] == [10005, 10006]
    # Selections starting after the bad trains: the same values as EXtra-data.
    for a in (10007, 10008):
        out = tmp_path / f"from{a}"
        code, _, err = run([rust_bin("xfel-extract"), bad_file, SRC, KEY, "--no-cache",
                            "--out", out, "--trains", f"{a}:10010"])
        assert code == 0, err
        want = kd.select_trains(ed.by_id[a:10010])
        assert np.array_equal(np.load(out / "data.npy"), want.ndarray())
        assert np.array_equal(np.load(out / "train_ids.npy"), want.train_id_coordinates())
    # A selection reaching the bad trains: refused naming the file and train 10006.
    code, _, err = run([rust_bin("xfel-extract"), bad_file, SRC, KEY, "--no-cache",
                        "--out", tmp_path / "from10006", "--trains", "10006:10010"])
    assert code == 1, err
    assert str(bad_file) in err and "train 10006" in err, err
    assert "allocat" not in err, err
    # lsxfel lists the key with its counts and details.
    for args in (["--counts"], ["-d", "*XGM*"]):
        code, out, err = run([rust_bin("lsxfel"), "--no-cache", *args, bad_file])
        assert code == 0, err
        assert SRC in out, out


def test_serve_sends_the_intact_trains_of_a_range_from_the_bad_ones(bad_file):
    import extra_data as ed

    kd = ed.H5File(str(bad_file))[SRC, KEY]
    srv = ours("files", bad_file, "0", "--source", SRC, "--train-range", "10006:10010")
    try:
        got = receive(srv, 4)
    finally:
        srv.stop()
    sent = {}
    for data, meta in got:
        tid = meta[SRC]["timestamp.tid"]
        sent[tid] = data[SRC]
    assert sorted(sent) == [10006, 10007, 10008, 10009]
    assert KEY not in sent[10006]
    for tid in (10007, 10008, 10009):
        assert KEY in sent[tid], (tid, sorted(sent[tid]))
        assert np.array_equal(sent[tid][KEY], kd.train_from_id(tid)[1]), tid
