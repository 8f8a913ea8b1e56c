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
