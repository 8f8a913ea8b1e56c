"""SPECT in the DAQ: calibrated singles -> energy-windowed projections per gantry view, and the
SPECT image at the stop.

SPECT has no coincidences: where the PET chain sorts, a SPECT acquisition counts each single in
the projection of its head at the gantry view of its time (:mod:`coincidence.spect`). The gantry
steps and shoots through the scanner's ``views_per_head`` views in equal times from the detector
clock's run start (t = 0 ps, as the emulator's gantry moves), so a SPECT acquisition needs its
duration up front. Windows: the scanner's photopeak window and the two adjacent scatter windows
of the triple-energy-window (TEW) correction. At the stop the projections go to
``RUN/projections.npz``; the journal stays the record of truth (``petdaq replay`` rebuilds them).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from coincidence import spect
from daq.rundir import RunDir
from hw.dtypes import COINC_DTYPE
from hw.errors import UserError
from hw.scanner import Scanner

PROJECTIONS_FILE = "projections.npz"
#: Each scatter window's width, as a fraction of the photopeak energy (Tc-99m: 9.8 keV).
SCATTER_WINDOW_FRACTION = 0.07
_NOTHING = np.zeros(0, COINC_DTYPE)


def windows_of(scanner: Scanner) -> spect.EnergyWindows:
    """The TEW windows around the scanner's acquisition photopeak window."""
    lo, hi = (float(v) for v in scanner.acquisition["energy_window_kev"])
    centre = (lo + hi) / 2
    return spect.energy_windows(centre, (hi - lo) / centre, SCATTER_WINDOW_FRACTION)


def view_duration_ps(scanner: Scanner, duration_s: float | None) -> int:
    """Time per gantry view (ps) of an acquisition of ``duration_s``."""
    if scanner.kind != "spect":
        raise UserError(f"scanner '{scanner.name}' is not a SPECT scanner")
    if duration_s is None or not duration_s > 0:
        raise UserError(f"a SPECT acquisition on '{scanner.name}' needs its duration (--duration "
                        f"seconds): the gantry's {scanner.spect.views_per_head} views share it")
    return max(1, round(duration_s * 1e12 / scanner.spect.views_per_head))


class ProjectionStage:
    """Stands where the coincidence sorter stands in the PET chain (``feed``/``flush``, which
    return no coincidences) and accumulates ``projections`` [window, head, view, row, column]."""

    def __init__(self, scanner: Scanner, duration_s: float | None) -> None:
        self.scanner = scanner
        self.view_ps = view_duration_ps(scanner, duration_s)
        self.windows = windows_of(scanner)
        self.projections = np.zeros(spect.projection_shape(scanner), np.int64)

    @property
    def settings(self) -> dict[str, Any]:
        """What the run documents record about the binning."""
        return {"energy_window_kev": list(self.windows.peak),
                "scatter_windows_kev": [list(self.windows.lower), list(self.windows.upper)],
                "view_duration_ps": self.view_ps, "window_ps": 0}

    def feed(self, singles: np.ndarray) -> np.ndarray:
        """Count calibrated singles (SINGLE_DTYPE, keV) into the projections."""
        spect.bin_projections(singles, self.scanner, self.windows, self.view_ps,
                              out=self.projections)
        return _NOTHING

    def flush(self) -> np.ndarray:
        return _NOTHING

    def save(self, directory: Path) -> Path:
        """Write ``directory/projections.npz`` (counts, window edges keV, view duration ps)."""
        path = directory / PROJECTIONS_FILE
        np.savez(path, projections=self.projections, windows_kev=self.windows.edges_kev,
                 view_duration_ps=self.view_ps)
        return path


def spect_image(run: RunDir, scanner: Scanner, iterations: int = 4, subsets: int = 6) -> Path:
    """OSEM of the run's photopeak projections with TEW scatter and, for an emulated run, the
    phantom's attenuation map at the photopeak energy; NIfTI + PNG slices and MIP in RUN/images."""
    import recon

    t0 = time.monotonic()
    image = spect_run_image(run, scanner, iterations, subsets)
    paths = recon.save_outputs(image, run.images / "image")
    run.update(images={"files": [str(p.relative_to(run.path)) for p in paths],
                       "seconds": round(time.monotonic() - t0, 2)})
    return run.images


def spect_run_image(run: RunDir, scanner: Scanner, iterations: int = 4, subsets: int = 6,
                    attenuation: bool = True) -> Any:
    """The OSEM image (counts) of a SPECT run's projections (``RUN/projections.npz``): TEW
    scatter, and with ``attenuation`` the emulated phantom's mu-map at the photopeak energy."""
    import recon

    path = run.path / PROJECTIONS_FILE
    if not path.is_file():
        raise UserError(f"run {run.path} has no {PROJECTIONS_FILE} (rebuild it: petdaq sort)")
    with np.load(path) as f:
        projections, edges = f["projections"], f["windows_kev"]
    windows = spect.EnergyWindows(*(tuple(float(v) for v in row) for row in edges))
    scatter = spect.tew_scatter(projections, windows)
    grid = recon.default_grid(scanner)
    mu = (_mu_map(run, scanner, grid, float(np.mean(windows.peak))) if attenuation else None)
    return recon.spect_osem(projections[spect.PEAK], scanner, scatter, mu,
                            iterations=iterations, subsets=subsets, grid=grid)


def _mu_map(run: RunDir, scanner: Scanner, grid: Any, energy_kev: float) -> np.ndarray | None:
    """The emulated phantom's mu-map (1/mm) on ``grid``; None for a run from real heads."""
    from daq.rundir import run_facts
    from recon.runimage import run_phantom

    phantom = run_phantom(run_facts(run), scanner)
    return None if phantom is None else phantom.mu_map(grid, energy_kev)
