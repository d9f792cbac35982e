"""The translation of MAX IV's parameters into `configure` requests, without Tango or a server."""
import pytest

from xspress3_tango import mapping


@pytest.mark.parametrize("mode, n_trig, n_fpt, fields, frames", [
    ("SOFTWARE", 1, 50, {"trigger": "software", "triggers": 1, "frames_per_trigger": 50}, 50),
    ("SOFTWARE", 7, 1, {"trigger": "software", "triggers": 7, "frames_per_trigger": 1}, 7),
    ("EXTERNAL_MULTI", 1, 20, {"trigger": "external", "triggers": 1, "frames_per_trigger": 20},
     20),
    ("EXTERNAL_MULTI", 20, 1, {"trigger": "external", "triggers": 20, "frames_per_trigger": 1},
     20),
    # One frame per gate, whichever count holds them, with MAX IV's gate debounce.
    ("EXTERNAL_MULTI_GATE", 1, 5, {"trigger": "gate", "frames": 5, "debounce": 80}, 5),
    ("EXTERNAL_MULTI_GATE", 5, 1, {"trigger": "gate", "frames": 5, "debounce": 80}, 5),
])
def test_trigger_modes_follow_max_iv(mode, n_trig, n_fpt, fields, frames):
    assert mapping.trigger_fields(mode, n_trig, n_fpt, 80) == (fields, frames)


def test_either_factor_must_be_one():
    for mode in mapping.TRIGGER_MODES:
        with pytest.raises(ValueError, match="nTriggers 2 with nFramesPerTrigger 3: one of them"):
            mapping.trigger_fields(mode, 2, 3, 80)
    with pytest.raises(ValueError, match="TriggerMode 'internal'"):
        mapping.trigger_fields("internal", 1, 1, 80)


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


def test_windows_are_clipped_and_sent_per_channel():
    assert mapping.clip_window("Window1_Ch0", [-3, 9000]) == [0, 4095]
    with pytest.raises(ValueError, match=r"Window1_Ch0 \[9, 3\]: low must not be above high"):
        mapping.clip_window("Window1_Ch0", [9, 3])
    assert mapping.channel_windows([[10, 20], [30, 40]], [[0, 4095], [5, 6]]) == [
        [0, 0, 10, 20], [1, 0, 30, 40], [0, 1, 0, 4095], [1, 1, 5, 6]]


def test_event_widths_and_rois():
    assert mapping.check_event_width("EventWidth_Ch1", 0) == 0
    with pytest.raises(ValueError, match="EventWidth_Ch1 -1: give a width of zero or more"):
        mapping.check_event_width("EventWidth_Ch1", -1)
    assert mapping.check_rois(["Fe:630:650", "K_a:2:10:20"]) == ["Fe:630:650", "K_a:2:10:20"]
    for bad in ["Fe", "Fe:1", "Fe:1:2:3:4", "F-e:1:2", ":1:2", "Fe:a:2", "Fe:-1:2", "Fe:²:3"]:
        with pytest.raises(ValueError, match=f"Rois '{bad}': give NAME:\\[CH:\\]LOW:HIGH"):
            mapping.check_rois([bad])
