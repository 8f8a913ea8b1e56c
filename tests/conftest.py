"""Shared fixtures."""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# the tests' own home: never the user's calibration tables, QC history, dicom.toml (a PACS that
# test runs would be sent to) or outbox; a test that needs one sets its own
os.environ["BEDSIDE_PET_HOME"] = tempfile.mkdtemp(prefix="bedside-pet-tests-home-")


@pytest.fixture(scope="session")
def brain():
    """The default scanner model."""
    from hw import load_scanner

    return load_scanner("bedside-brain")
