"""SPECT in the DAQ: calibrated singles -> energy-windowed projections per gantry view.

SPECT has no coincidences: where the PET chain sorts, a SPECT acquisition counts each single in
the projection of its head at the gantry view of its time (:mod:`coincidence.spect`). The gantry
steps and shoots through the scanner's ``views_per_head`` views in equal times from the detector
clock's run start (t = 0 ps, as the emulator's gantry moves), so a SPECT acquisition needs its
duration up front. Windows: per photopeak, a photopeak window and the two adjacent scatter
windows of the triple-energy-window (TEW) correction. The photopeaks are the nuclide's gamma lines
of at least 5 % yield (Lu-177: 208 and 113 keV), or the scanner's acquisition window alone; a
photopeak inside that window is windowed by it, any other by a window of the same relative
width. At the stop the projections go to ``RUN/projections.npz`` (:mod:`runstore.projections`);
the journal stays the record of truth (``petdaq replay`` rebuilds them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from coincidence import spect
from hw.dtypes import COINC_DTYPE
from hw.scanner import Scanner
from infra.errors import UserError
from runstore.projections import write_projections

#: Each scatter window's width, as a fraction of the photopeak energy (Tc-99m: 9.8 keV).
SCATTER_WINDOW_FRACTION = 0.07
_NOTHING = np.zeros(0, COINC_DTYPE)


#: Gamma lines of lower yield per decay get no window of their own.
MIN_WINDOW_YIELD = 0.05


def photopeaks_of(nuclide: str) -> tuple[float, ...]:
    """The photopeaks (keV) that a SPECT acquisition of ``nuclide`` windows: its gamma lines of
    at least :data:`MIN_WINDOW_YIELD` per decay, the strongest first."""
    from hw import nuclides

    n = nuclides.get(nuclide)
    lines = sorted(zip(n.gamma_yield, n.gamma_kev, strict=True), reverse=True)
    peaks = tuple(float(e) for y, e in lines if y >= MIN_WINDOW_YIELD)
    if not peaks:
        raise UserError(f"{nuclide} has no gamma line of at least {MIN_WINDOW_YIELD:.0%} yield "
                        f"to image with a gamma camera")
    return peaks


def windows_of(scanner: Scanner, photopeaks_kev: tuple[float, ...] | None = None
               ) -> tuple[spect.EnergyWindows, ...]:
    """The TEW windows of each photopeak (None: the scanner's acquisition window alone): the
    acquisition window for a photopeak inside it, else one of the same relative width centred on
    the photopeak, each with its two adjacent scatter windows."""
    lo, hi = (float(v) for v in scanner.acquisition["energy_window_kev"])
    centre = (lo + hi) / 2
    fraction = (hi - lo) / centre
    if not photopeaks_kev:
        return (spect.energy_windows(centre, fraction, SCATTER_WINDOW_FRACTION),)
    windows = tuple(spect.energy_windows(centre if lo <= e < hi else e, fraction,
                                         SCATTER_WINDOW_FRACTION) for e in photopeaks_kev)
    spect.edges_of(windows)  # a one-line error where they overlap
    return windows




def view_duration_ps(scanner: Scanner, duration_s: float | None) -> int:
    """Time per gantry view (ps) of an acquisition of ``duration_s``."""
    if scanner.kind != "spect":
        raise UserError(f"scanner '{scanner.name}' is not a SPECT scanner")
    if duration_s is None or not duration_s > 0:
        raise UserError(f"a SPECT acquisition on '{scanner.name}' needs its duration (--duration "
                        f"seconds): the gantry's {scanner.spect.views_per_head} views share it")
    return max(1, round(duration_s * 1e12 / scanner.spect.views_per_head))


@dataclass(frozen=True)
class LiveProjections:
    """A SPECT scan's projections as the console shows them (photopeak counts): each head's
    current view side by side ``[row, head x column]``, the sinogram of the central row
    ``[angle, column]`` and the counts per angle (every head's views in gantry-angle order),
    and the view the heads are at (0-based) of ``views`` per head."""

    heads_now: np.ndarray
    sinogram: np.ndarray
    counts_per_angle: np.ndarray
    view: int
    views: int


class ProjectionStage:
    """Stands where the coincidence sorter stands in the PET chain (``feed``/``flush``, which
    return no coincidences) and accumulates ``projections`` [window, head, view, row, column]."""

    def __init__(self, scanner: Scanner, duration_s: float | None,
                 photopeaks_kev: tuple[float, ...] | None = None) -> None:
        self.scanner = scanner
        self.view_ps = view_duration_ps(scanner, duration_s)
        self.photopeaks_kev = tuple(photopeaks_kev) if photopeaks_kev else None
        self.windows = windows_of(scanner, self.photopeaks_kev)
        self.projections = np.zeros(spect.projection_shape(scanner, len(self.windows)), np.int64)
        self.latest_ps = 0
        """The latest single's time (ps from the scan's start): its view is the heads' now."""

    @property
    def settings(self) -> dict[str, Any]:
        """What the run documents record about the binning (the energy and scatter windows of
        the first photopeak; ``window_edges_kev``, every window)."""
        first = self.windows[0]
        return {"energy_window_kev": list(first.peak),
                "scatter_windows_kev": [list(first.lower), list(first.upper)],
                "photopeaks_kev": list(self.photopeaks_kev) if self.photopeaks_kev else None,
                "window_edges_kev": spect.edges_of(self.windows).tolist(),
                "view_duration_ps": self.view_ps, "window_ps": 0}

    def feed(self, singles: np.ndarray) -> np.ndarray:
        """Count calibrated singles (SINGLE_DTYPE, keV) into the projections."""
        spect.bin_projections(singles, self.scanner, self.windows, self.view_ps,
                              out=self.projections)
        if singles.size:
            self.latest_ps = max(self.latest_ps, int(singles["t"].max()))
        return _NOTHING

    def live_view(self) -> LiveProjections:
        """What the console shows of the first photopeak's projections now."""
        peak = self.projections[spect.PEAK]                      # [head, view, row, column]
        heads, views, rows, _ = peak.shape
        view = min(views - 1, max(0, self.latest_ps // self.view_ps))
        angles = np.concatenate([self.scanner.spect.view_angles_deg(h) for h in range(heads)])
        order = np.argsort(np.mod(angles, 360.0), kind="stable")
        by_angle = peak.reshape(heads * views, rows, -1)[order]
        return LiveProjections(np.concatenate(list(peak[:, view]), axis=1),
                               by_angle[:, rows // 2, :], by_angle.sum(axis=(1, 2)), int(view),
                               views)

    def flush(self) -> np.ndarray:
        return _NOTHING

    def save(self, directory: Path) -> Path:
        """Write ``directory/projections.npz`` (counts, window edges keV, view duration ps)."""
        return write_projections(directory, self.projections, spect.edges_of(self.windows),
                                 self.view_ps)
