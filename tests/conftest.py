import os
import pathlib
import shutil
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def open_tmp():
    """A scratch directory that user nobody can reach (pytest's is 0700)."""
    path = tempfile.mkdtemp(prefix="mmaudit-test-")
    os.chmod(path, 0o755)
    yield pathlib.Path(path)
    for top, dirs, _ in os.walk(path):
        for d in dirs:
            os.chmod(os.path.join(top, d), 0o755)
    shutil.rmtree(path)
