from photon_daq.euxfel import (  # noqa: F401
    DataCollection,
    H5File,
    RunDirectory,
    by_id,
    by_index,
    open_run,
)

DEFAULT_ALIASES_FILE = "{}/usr/extra-data-aliases.yml"
