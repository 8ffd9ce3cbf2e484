"""Session setup shared by every test file."""

import pytest

from uvmlab.cli import notices


@pytest.fixture(scope="session", autouse=True)
def _compiled_model():
    """Fill numba's on-disk cache before the first test, as a user's first run does.

    Tests that run ``uvmlab`` in a subprocess check its stderr line by line; with a cold cache
    the command's first two lines would be the compile notes, whichever test happens to run
    first (a fresh clone, or a run of one file). ``compile_model`` is what the CLI itself does.
    """
    notices.compile_model()
