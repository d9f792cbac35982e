"""A package named ``extra_data`` that is photon_daq.euxfel, so EXtra-data's own
test modules (copied next to it at test time) run against our implementation."""

from photon_daq.euxfel import (  # noqa: F401
    DataCollection,
    H5File,
    KeyData,
    RunDirectory,
    SourceData,
    by_id,
    by_index,
    open_run,
)
from photon_daq.exceptions import (  # noqa: F401
    AliasError,
    MultiRunError,
    PropertyNameError,
    SourceNameError,
    TrainIDError,
)
