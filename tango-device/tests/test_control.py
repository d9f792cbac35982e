"""The monitor reply parser of the device, without Tango or a server."""
import json

import numpy as np
import pytest

from xspress3_tango.control import ControlError, parse_monitor_reply


def reply(meta, payload):
    return [json.dumps(meta).encode(), payload]


def test_image_with_scalers_dead_time_and_rois():
    mca = np.arange(6, dtype="<u4")
    scalers = [[10, 1, 1, 5, 5, 2, 3, 0, 10], [10, 1, 1, 9, 8, 4, 1, 0, 10]]
    rois = [{"name": "Fe", "counts": [1, 2], "dtc": [1.5, None]}]
    got = parse_monitor_reply("m", reply(
        {"htype": "image", "frame": 7, "shape": [2, 3], "type": "uint32", "exptime": 0.1,
         "scalers": scalers, "dead_time_correction": [1.25, None], "rois": rois},
        mca.tobytes()))
    assert got.number == 7
    np.testing.assert_array_equal(got.spectra, [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(got.scalers, scalers)
    assert got.scalers.dtype == np.uint32
    # Saturated (null) is NaN, as in the file's dead_time_correction.
    np.testing.assert_array_equal(got.dead_time_correction, [1.25, np.nan])
    assert got.rois == rois


def test_max_iv_style_reply_has_spectra_only():
    got = parse_monitor_reply("m", reply(
        {"htype": "image", "frame": 1, "shape": [1, 2], "type": "uint32"},
        np.array([4, 5], dtype="<u4").tobytes()))
    assert (got.number, got.scalers, got.dead_time_correction, got.rois) == (1, None, None, None)


def test_none_before_the_first_frame():
    assert parse_monitor_reply("m", reply({"htype": "none", "shape": [0, 0]}, b"")) is None


@pytest.mark.parametrize("parts, why", [
    ([b"{}"], "1 parts, expected 2"),
    ([b"not json", b""], "header is not JSON"),
    (reply({"htype": "image", "frame": 1, "shape": [1, 2]}, b"\0" * 4),
     "4 bytes do not fit shape [1, 2]"),
    (reply({"htype": "image", "shape": [1, 1]}, b"\0" * 4), "malformed header"),
    (reply({"htype": "image", "frame": 1, "shape": [2, 1], "scalers": [[1, 2]]}, b"\0" * 8),
     "malformed header"),
    (reply({"htype": "image", "frame": 1, "shape": [2, 1], "dead_time_correction": [1.0]},
           b"\0" * 8), "1 dead-time corrections for 2 channels"),
])
def test_malformed_replies_are_refused_naming_the_endpoint(parts, why):
    with pytest.raises(ControlError) as e:
        parse_monitor_reply("tcp://m", parts)
    assert "monitor tcp://m" in str(e.value) and why in str(e.value)
