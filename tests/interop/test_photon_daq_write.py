"""photon_daq's DataCollection.write / write_virtual: EXtra-data reads the files
they make, with the same sources, trains and values as the selection written."""

import h5py
import numpy as np
import pytest

pd_euxfel = pytest.importorskip("photon_daq.euxfel")
extra_data = pytest.importorskip("extra_data")

XGM = "SPB_XTD9_XGM/DOOCS/MAIN"


@pytest.mark.parametrize("virtual", [False, True])
def test_written_selection_reads_the_same_in_extra_data(examples, tmp_path, virtual):
    path = str(examples["fxe12"])
    out = tmp_path / "out.h5"
    run = pd_euxfel.RunDirectory(path)
    sel = run.select(f"{XGM}*").select_trains(np.s_[5:300])
    (sel.write_virtual if virtual else sel.write)(out)
    with h5py.File(out, "r") as f:
        assert f[f"CONTROL/{XGM}/beamPosition/ixPos/value"].is_virtual == virtual
    theirs = extra_data.RunDirectory(path).select(f"{XGM}*").select_trains(np.s_[5:300])
    written = extra_data.H5File(str(out))
    assert written.all_sources == theirs.all_sources
    np.testing.assert_array_equal(written.train_ids, theirs.train_ids)
    for src in sorted(theirs.all_sources):
        for key in sorted(theirs[src].keys()):
            a, b = theirs[src, key].ndarray(), written[src, key].ndarray()
            assert a.dtype == b.dtype, (src, key)
            np.testing.assert_array_equal(a, b, err_msg=f"{src} {key}")


def test_write_replaces_an_existing_file_and_refuses_an_empty_selection(examples, tmp_path):
    out = tmp_path / "out.h5"
    out.write_bytes(b"not HDF5")
    run = pd_euxfel.RunDirectory(str(examples["fxe12"]))
    run.select(f"{XGM}", "*").write(out)
    assert extra_data.H5File(str(out)).control_sources == {XGM}
    with pytest.raises(ValueError, match="no trains"):
        run.select_trains(np.s_[0:0]).write(tmp_path / "empty.h5")
    assert not (tmp_path / "empty.h5").exists()
