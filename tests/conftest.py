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


def pytest_collection_modifyitems(config, items):
    """The modules that hold slow tests first, the rest in their usual order: pytest-xdist hands
    out whole modules in this order (``--dist loadfile``), so the longest start at once and the
    short ones fill the workers in at the end."""
    def module(item) -> str:
        return item.nodeid.split("::")[0]

    slow = {module(item) for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: module(item) not in slow)
