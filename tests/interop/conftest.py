"""Fixtures shared by the interop test modules (pytest loads this file itself)."""
import pytest

from euxfel_helpers import make_examples


@pytest.fixture(scope="session")
def examples(tmp_path_factory):
    """EXtra-data's own example runs and files (extra_data.tests.make_examples), made once."""
    return make_examples(tmp_path_factory.mktemp("xd_examples"))
