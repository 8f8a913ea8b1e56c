"""Shared fixtures."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session")
def brain():
    """The default scanner model."""
    from hw import load_scanner

    return load_scanner("bedside-brain")
