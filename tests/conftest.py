"""Shared fixtures."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# the tests' own home: never the user's calibration tables, QC history, dicom.toml (a PACS that
# test runs would be sent to) or outbox; a test that needs one sets its own
os.environ["BEDSIDE_PET_HOME"] = tempfile.mkdtemp(prefix="bedside-pet-tests-home-")
atexit.register(shutil.rmtree, os.environ["BEDSIDE_PET_HOME"], ignore_errors=True)


@pytest.fixture(scope="session")
def brain():
    """The default scanner model."""
    from hw import load_scanner

    return load_scanner("bedside-brain")


def pytest_collection_modifyitems(config, items):
    """The modules with a long test (marker ``slow``) first, in their order, then the others:
    with ``--dist loadfile --no-loadscope-reorder`` (``make test``) the workers take the long
    modules early and the short ones fill their gaps at the end, instead of one worker still
    running a long module while the other has nothing left."""
    slow = {item.module.__name__ for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.module.__name__ not in slow)
