"""photon_daq.euxfel.validation against extra_data.validation on the same broken
files: the same problems (messages and fields), the same exception and text."""

import h5py
import numpy as np
import pytest

pd_euxfel = pytest.importorskip("photon_daq.euxfel")
xd_validation = pytest.importorskip("extra_data.validation")
from extra_data.tests import make_examples  # noqa: E402

pd_validation = pd_euxfel.validation


def break_train_ids(f):
    f["INDEX/trainId"][12] = 0


def break_index_gap(f):
    f["INDEX/SPB_DET_AGIPD1M-1/DET/0CH0:xtdf/image/first"][1] = 128


def break_index_overlap(f):
    f["INDEX/SPB_DET_AGIPD1M-1/DET/0CH0:xtdf/image/first"][1] = 0


def no_change(f):
    pass


def canonical(problems):
    """EXtra-data checks index groups in set order: compare problems as sets."""
    return sorted(problems, key=lambda p: sorted((k, str(v)) for k, v in p.items()))


def problems(lib, path):
    with pytest.raises(lib.ValidationError) as exc:
        lib.FileValidator(lib.FileAccess(str(path))).validate()
    return exc.value


@pytest.mark.parametrize("breakage", [break_train_ids, break_index_gap, break_index_overlap])
def test_file_problems_match_extra_data(tmp_path, breakage):
    path = tmp_path / "RAW-R0239-AGIPD00-S00000.h5"
    make_examples.make_agipd_file(str(path))
    with h5py.File(path, "r+") as f:
        breakage(f)
    theirs, ours = problems(xd_validation, path), problems(pd_validation, path)
    assert canonical(ours.problems) == canonical(theirs.problems)
    if len(theirs.problems) == 1:
        assert str(ours) == str(theirs)
    # validate() gives the same dicts (and no more: one file has no run checks).
    assert pd_validation.validate(path) == ours.problems


def test_run_problems_match_extra_data(tmp_path):
    make_examples.make_fxe_run(str(tmp_path), format_version="1.2")
    for lib in (xd_validation, pd_validation):
        lib.RunValidator(str(tmp_path)).validate()
    assert pd_validation.validate(tmp_path, extra_checks=False) == []
    bad = sorted(tmp_path.glob("*DA01*.h5"))[0]
    with h5py.File(bad, "r+") as f:
        ts = f["CONTROL/SA1_XTD2_XGM/DOOCS/MAIN/pulseEnergy/photonFlux/timestamp"]
        ts[:] = np.arange(len(ts)) + 1
        ts[10] = 5
    theirs, ours = (lib.RunValidator(str(tmp_path)).run_checks()
                    for lib in (xd_validation, pd_validation))
    assert theirs and canonical(ours) == canonical(theirs)


def test_unknown_check_name(tmp_path):
    with pytest.raises(ValueError, match="no_such_check"):
        pd_validation.validate(tmp_path, skip_checks=["no_such_check"])
