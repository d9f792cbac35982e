"""Tango device server `Xspress3DS` with MAX IV's interface, driving `xsp3-acquire serve`."""
from .device import Xspress3DS, main

__all__ = ["Xspress3DS", "main"]
