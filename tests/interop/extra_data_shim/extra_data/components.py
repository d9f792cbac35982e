"""extra_data.components is photon_daq.components (EXtra-data's multi-module detector
classes over the euxfel-components crate)."""

from photon_daq.components import (  # noqa: F401
    AGIPD1M,
    AGIPD500K,
    DSSC1M,
    JUNGFRAU,
    LPD1M,
    LPDSolo,
    MultimodKeyData,
    XtdfImageMultimodKeyData,
    identify_multimod_detectors,
    stack_detector_data,
)
