"""Helpers for the Tango device tests: a device in a DeviceTestContext driving a real
`xsp3-acquire serve`, and waiting on its attributes without wall-clock assertions."""
import tango
from tango.test_context import DeviceTestContext

from waiting import wait_for
from xsp3_helpers import free_port, rust_bin
from xspress3_tango import Xspress3DS


def device_context(out_dir, start_server=True, **properties):
    props = {
        "ControlEndpoint": f"tcp://127.0.0.1:{free_port()}",
        "StartServer": start_server,
        "ServerBinary": rust_bin("xsp3-acquire"),
        "StreamerPort": 0,
        "MonitorPort": free_port(),
        "OutputDirectory": str(out_dir),
        "ReturnCounters": True,
        "ServerArgs": ["--ring-frames", "256"],
    }
    props.update(properties)
    return DeviceTestContext(Xspress3DS, properties=props, process=True, timeout=30)


def wait_state(dev, state):
    wait_for(f"state {state} (now {dev.state()}: {dev.status()})", lambda: dev.state() == state)


def refused(call):
    """Runs `call`, which must raise DevFailed; returns the description text."""
    try:
        call()
    except tango.DevFailed as e:
        return " ".join(err.desc for err in e.args)
    raise AssertionError("expected a Tango exception")
