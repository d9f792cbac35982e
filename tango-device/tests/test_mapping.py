"""The translation of MAX IV's parameters into `configure` requests, without Tango or a server."""
import numpy as np
import pytest

from xspress3_tango import mapping


@pytest.mark.parametrize("mode, n_trig, n_fpt, expected", [
    ("SOFTWARE", 1, 50, ("software_first", 50)),
    ("SOFTWARE", 7, 1, ("software", 7)),
    ("SOFTWARE", 1, 1, ("software_first", 1)),
    ("EXTERNAL_MULTI", 1, 20, ("external_first", 20)),
    ("EXTERNAL_MULTI", 20, 1, ("external", 20)),
    ("EXTERNAL_MULTI_GATE", 4, 5, ("gate", 20)),
])
def test_trigger_modes_follow_max_iv(mode, n_trig, n_fpt, expected):
    assert mapping.trigger_and_frames(mode, n_trig, n_fpt) == expected


def test_either_factor_must_be_one():
    with pytest.raises(ValueError, match="nTriggers 2 with nFramesPerTrigger 3: one of them"):
        mapping.trigger_and_frames("SOFTWARE", 2, 3)
    with pytest.raises(ValueError, match="TriggerMode 'internal'"):
        mapping.trigger_and_frames("internal", 1, 1)


def test_live_time_is_exposure_minus_latency_minus_gap():
    assert mapping.exposure_seconds(0.1, 0.01) == pytest.approx(0.09 - 25e-9)
    with pytest.raises(ValueError, match="leaves no live time"):
        mapping.exposure_seconds(0.001, 0.001)
    with pytest.raises(ValueError, match="ExposureTime 0"):
        mapping.exposure_seconds(0, 0)
    with pytest.raises(ValueError, match="LatencyTime -1"):
        mapping.exposure_seconds(1, -1)


def test_file_names_are_confined_to_the_output_directory():
    assert mapping.relative_file_name("scan.h5", "") == "scan"
    assert mapping.relative_file_name("sub/scan", "") == "sub/scan"
    assert mapping.relative_file_name("/data/out/sub/scan.h5", "/data/out") == "sub/scan"
    assert mapping.relative_file_name("/data/out/./a/../scan.h5", "/data/out/") == "scan"
    for bad, why in [("/data/outside.h5", "not inside"), ("/data/out", "not inside"),
                     ("/data/out/../x.h5", "not inside"), ("../x", "inside the output"),
                     ("a/../../x", "inside the output"), (".h5", "inside the output")]:
        with pytest.raises(ValueError, match=why):
            mapping.relative_file_name(bad, "/data/out")
    with pytest.raises(ValueError, match="set the device property OutputDirectory"):
        mapping.relative_file_name("/data/out/x.h5", "")


def test_unused_name_inserts_underscores(tmp_path):
    assert mapping.unused_name("scan", tmp_path) == "scan"
    (tmp_path / "scan.h5").touch()
    (tmp_path / "scan_.h5").touch()
    assert mapping.unused_name("scan", tmp_path) == "scan__"


def test_windows_are_clipped_and_must_agree():
    assert mapping.clip_window("Window1_Ch0", [-3, 9000]) == [0, 4095]
    with pytest.raises(ValueError, match=r"Window1_Ch0 \[9, 3\]: low must not be above high"):
        mapping.clip_window("Window1_Ch0", [9, 3])
    same = [[10, 20]] * 3
    assert mapping.common_windows(same, [[0, 4095]] * 3) == [[0, 10, 20], [1, 0, 4095]]
    with pytest.raises(ValueError, match=r"Window2 differs between channels \(Ch0=\[0, 1\], "):
        mapping.common_windows(same, [[0, 1], [0, 2], [0, 1]])


def test_dead_time_correction_and_saturation():
    dtc = mapping.dead_time_correction(np.array([1000, 1000]), np.array([10, 200]),
                                       np.array([100, 0]), np.array([6, 6]))
    assert dtc[0] == pytest.approx(1000 / (1000 - (10 * 7 + 100)))
    assert np.isnan(dtc[1])  # 200 * 7 ticks dead out of 1000: no finite correction
