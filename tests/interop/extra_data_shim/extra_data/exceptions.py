from photon_daq.exceptions import *  # noqa: F401,F403
from photon_daq.exceptions import FileStructureError, NoDataError  # noqa: F401
