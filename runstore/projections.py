"""A SPECT run's projections on disk: counts per energy window, head, view, row and column."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from infra.errors import UserError

PROJECTIONS_FILE = "projections.npz"


def has_projections(run: str | Path) -> bool:
    """Whether the run directory ``run`` holds projections (a SPECT run)."""
    return (Path(run) / PROJECTIONS_FILE).is_file()


def write_projections(directory: Path, counts: np.ndarray, windows_kev: np.ndarray,
                      view_duration_ps: int) -> Path:
    """Write ``directory/projections.npz``: ``counts`` [window, head, view, row, column], the
    energy windows' edges (keV) and each gantry view's duration (ps)."""
    path = directory / PROJECTIONS_FILE
    np.savez(path, projections=counts, windows_kev=windows_kev, view_duration_ps=view_duration_ps)
    return path


def read_projections(run: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(counts [window, head, view, row, column], window edges keV) of the run ``run``."""
    path = Path(run) / PROJECTIONS_FILE
    if not path.is_file():
        raise UserError(f"run {run} has no {PROJECTIONS_FILE} (rebuild it: petdaq sort)")
    with np.load(path, allow_pickle=False) as f:
        return f["projections"], f["windows_kev"]
