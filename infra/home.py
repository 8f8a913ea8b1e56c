"""Where the product keeps what outlives a run: ``$BEDSIDE_PET_HOME`` (default
``~/.local/share/bedside-pet``), its calibration tables under ``calibration/``."""

from __future__ import annotations

import os
from pathlib import Path


def data_home() -> Path:
    """``$BEDSIDE_PET_HOME``, or ``~/.local/share/bedside-pet``."""
    return Path(os.environ.get("BEDSIDE_PET_HOME") or Path.home() / ".local/share/bedside-pet")


def calibration_dir() -> Path:
    """Where the scanners' calibration tables live: ``$BEDSIDE_PET_HOME/calibration``."""
    return data_home() / "calibration"
