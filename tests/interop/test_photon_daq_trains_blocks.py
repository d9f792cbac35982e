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



LPD = "FXE_DET_LPD1M-1/DET/0CH0:xtdf"


def lpd_and_xgm(run):
    return run.select([(LPD, "*"), ("SA1_XTD2_XGM/DOOCS/MAIN", "*")]).select_trains(np.s_[3:20])


def two_modules(run):
    return run.select("SPB_DET_AGIPD1M-1/DET/[01]CH0:xtdf", "*").select_trains(np.s_[:30])


def xgm_then_camera(run):
    """A union where the XGM has no data in the later trains (counts of 0)."""
    xgm = run.select("SPB_XTD9_XGM/DOOCS/MAIN:output", "*").select_trains(np.s_[:10])
    cam = run.select("SPB_IRU_CAM/CAM/SIDEMIC:daqOutput", "*").select_trains(np.s_[5:20])
    return xgm.union(cam)


# A detector module of many entries per train, mostly unallocated chunks (zeros
# that are never written into the fresh block buffers); a run whose detector
# modules have a different number of pulses in each train; sources without data
# in some trains of a block.
@pytest.mark.parametrize("run,selection", [
    ("fxe12", lpd_and_xgm), ("reduced_spb", two_modules), ("spb10", xgm_then_camera),
])
@pytest.mark.parametrize("block_trains", [1, 3, 512])
def test_trains_blocks_detector_match_extra_data(examples, monkeypatch, run, selection,
                                                 block_trains):
    monkeypatch.setattr(pd_euxfel, "_TRAIN_BLOCK_TRAINS", block_trains)
    path = str(examples[run])
    theirs, ours = (list(selection(lib.RunDirectory(path)).trains())
                    for lib in (extra_data, pd_euxfel))
    assert len(theirs) == len(ours) > 0
    for a, b in zip(theirs, ours):
        assert_same_train(a, b)
