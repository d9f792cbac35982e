"""photon_daq's trains() reads blocks of trains and slices each train out of them:
whatever the block size, every train equals EXtra-data's (keys, dtypes, values)."""

import numpy as np
import pytest

pd_euxfel = pytest.importorskip("photon_daq.euxfel")
extra_data = pytest.importorskip("extra_data")

CAMERA = "FXE_XAD_GEC/CAM/CAMERA:daqOutput"


def assert_same_train(theirs, ours):
    assert theirs[0] == ours[0]
    assert sorted(theirs[1]) == sorted(ours[1])
    for src, keys in theirs[1].items():
        assert sorted(keys) == sorted(ours[1][src]), src
        for key, a in keys.items():
            b = ours[1][src][key]
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                assert np.asarray(a).dtype == np.asarray(b).dtype, (src, key)
                np.testing.assert_array_equal(a, b, err_msg=f"{src} {key}")
            else:
                assert type(a) is type(b) and a == b, (src, key)


# 1 train per block, blocks ending mid-file (7), one block for the whole run (512).
@pytest.mark.parametrize("block_trains", [1, 7, 512])
@pytest.mark.parametrize("keep_dims", [False, True])
def test_trains_blocks_match_extra_data(examples, monkeypatch, block_trains, keep_dims):
    monkeypatch.setattr(pd_euxfel, "_TRAIN_BLOCK_TRAINS", block_trains)
    path = str(examples["fxe12"])
    runs = [lib.RunDirectory(path) for lib in (extra_data, pd_euxfel)]
    sels = [r.select([(s, "*") for s in sorted(r.control_sources)[:2] + [CAMERA]])
            for r in runs]
    # Skip a few trains so blocks do not start at file boundaries.
    theirs, ours = (list(s.select_trains(np.s_[3:60]).trains(keep_dims=keep_dims))
                    for s in sels)
    assert len(theirs) == len(ours) == 57
    for a, b in zip(theirs, ours):
        assert_same_train(a, b)
