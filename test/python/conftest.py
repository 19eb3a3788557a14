"""pytest setup of the Python package tests (ctest: python_pytest).

The package under test is the build tree's (PYTHONPATH=<build>, set by ctest); PREIMAGE_SOURCE_DIR
points at the checkout (examples/, weights/, docs/).
"""
import os
import sys

import pytest

SOURCE_DIR = os.environ.get(
    "PREIMAGE_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
sys.path.insert(0, os.path.join(SOURCE_DIR, "weights"))


@pytest.fixture(scope="session")
def source_dir():
    return SOURCE_DIR


@pytest.fixture(scope="session")
def brick(source_dir):
    import preimage
    return preimage.load_image(os.path.join(source_dir, "examples", "brick.png"))
