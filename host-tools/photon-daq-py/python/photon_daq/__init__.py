"""photon_daq: the project's Rust crates from Python.

- :mod:`photon_daq.euxfel`: EXtra-data's API (``open_run``, ``RunDirectory``,
  ``H5File``, ``DataCollection``/``SourceData``/``KeyData``) over the euxfel crate.
- :mod:`photon_daq.components`: EXtra-data's multi-module detectors (``AGIPD1M``,
  ``LPD1M``, ``JUNGFRAU``..., ``stack_detector_data``) over euxfel-components.
"""

from . import components, exceptions
from .euxfel import (
    DataCollection,
    H5File,
    KeyData,
    RunDirectory,
    SourceData,
    by_id,
    by_index,
    open_run,
)
from .exceptions import (
    AliasError,
    MultiRunError,
    PropertyNameError,
    SourceNameError,
    TrainIDError,
)

__all__ = [
    "components",
    "exceptions",
    "DataCollection",
    "H5File",
    "KeyData",
    "RunDirectory",
    "SourceData",
    "by_id",
    "by_index",
    "open_run",
    "AliasError",
    "MultiRunError",
    "PropertyNameError",
    "SourceNameError",
    "TrainIDError",
]
