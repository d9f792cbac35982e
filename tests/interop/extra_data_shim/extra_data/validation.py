"""``extra_data.validation`` for EXtra-data's tests: photon_daq's validation."""

from photon_daq.euxfel_validation import (  # noqa: F401
    FileAccess,
    FileValidator,
    RunValidator,
    ValidationError,
    main,
)
