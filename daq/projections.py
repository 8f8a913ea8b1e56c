"""SPECT in the DAQ: calibrated singles -> energy-windowed projections per gantry view, and the
SPECT image at the stop.

SPECT has no coincidences: where the PET chain sorts, a SPECT acquisition counts each single in
the projection of its head at the gantry view of its time (:mod:`coincidence.spect`). The gantry
steps and shoots through the scanner's ``views_per_head`` views in equal times from the detector
clock's run start (t = 0 ps, as the emulator's gantry moves), so a SPECT acquisition needs its
duration up front. Windows: per photopeak, a photopeak window and the two adjacent scatter
windows of the triple-energy-window (TEW) correction. The photopeaks are the nuclide's gamma lines
of at least 5 % yield (Lu-177: 208 and 113 keV), or the scanner's acquisition window alone; a
photopeak inside that window is windowed by it, any other by a window of the same relative
width. At the stop the projections go to ``RUN/projections.npz``; the journal stays the record
of truth (``petdaq replay`` rebuilds them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
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


def select_photopeak(edges_kev: np.ndarray, photopeak_kev: float | None) -> int:
    """Which photopeak of the (3 n, 2) window edges to reconstruct: the one whose window holds
    ``photopeak_kev`` (None: the first, the strongest)."""
    if photopeak_kev is None:
        return 0
    peaks = np.asarray(edges_kev, np.float64)[spect.PEAK::3]
    hit = np.flatnonzero((peaks[:, 0] <= photopeak_kev) & (photopeak_kev < peaks[:, 1]))
    if hit.size == 0:
        have = ", ".join(f"{a:.1f}-{b:.1f}" for a, b in peaks)
        raise UserError(f"no photopeak window holds {photopeak_kev:g} keV: this run has {have} keV")
    return int(hit[0])


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

    def __init__(self, scanner: Scanner, duration_s: float | None,
                 photopeaks_kev: tuple[float, ...] | None = None) -> None:
        self.scanner = scanner
        self.view_ps = view_duration_ps(scanner, duration_s)
        self.photopeaks_kev = tuple(photopeaks_kev) if photopeaks_kev else None
        self.windows = windows_of(scanner, self.photopeaks_kev)
        self.projections = np.zeros(spect.projection_shape(scanner, len(self.windows)), np.int64)

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
        return _NOTHING

    def flush(self) -> np.ndarray:
        return _NOTHING

    def save(self, directory: Path) -> Path:
        """Write ``directory/projections.npz`` (counts, window edges keV, view duration ps)."""
        path = directory / PROJECTIONS_FILE
        np.savez(path, projections=self.projections, windows_kev=spect.edges_of(self.windows),
                 view_duration_ps=self.view_ps)
        return path


@dataclass(frozen=True)
class SpectImage:
    """A SPECT run's image at the stop, and for a cardiac scan its polar map (or None)."""

    image: Any
    polar: Any
    lv: Any
    """The left ventricle's axis the polar map was sampled on (found in the image)."""


def spect_image(run: RunDir, scanner: Scanner, iterations: int = 4, subsets: int = 6
                ) -> SpectImage:
    """OSEM of the run's first photopeak's projections with TEW scatter and, for an emulated run,
    the phantom's attenuation map at the photopeak energy, in Bq/mL where the scanner has the
    sensitivity of the run's nuclide (:mod:`recon.spectquant`); NIfTI + PNG slices and MIP in
    RUN/images. A scan of a phantom with a myocardium gets its bull's-eye too, on the axis found
    in the image (``polar_map.png``, ``polar_map.csv``)."""
    import recon
    from daq.rundir import run_facts
    from recon.spectquant import quantify_spect

    t0 = time.monotonic()
    facts = run_facts(run)
    image, _ = quantify_spect(spect_run_image(run, scanner, iterations, subsets), scanner,
                              facts.nuclide, facts.duration_s)
    paths = list(recon.save_outputs(image, run.images / "image"))
    polar, lv = _bullseye(image, facts, scanner)
    if polar is not None:
        from recon.cardiac import write_segments_csv
        from recon.polarmap import SEGMENT_NAMES

        paths.append(polar.write_png(run.images / "polar_map.png"))
        paths.append(write_segments_csv({f"{i + 1} {n}": float(v) for i, (n, v) in enumerate(
            zip(SEGMENT_NAMES, polar.percent, strict=True))}, run.images / "polar_map.csv"))
    run.update(images={"files": [str(p.relative_to(run.path)) for p in paths],
                       "seconds": round(time.monotonic() - t0, 2)})
    return SpectImage(image, polar, lv)


def _bullseye(image: Any, facts: Any, scanner: Scanner) -> tuple[Any, Any]:
    """(polar map, axis) of a cardiac scan's image, or (None, None)."""
    from recon.runimage import run_phantom

    phantom = run_phantom(facts, scanner)
    if phantom is None or "myocardium" not in phantom.regions():
        return None, None
    from recon.cardiac import map_of
    from recon.lvaxis import find_lv_axis

    lv = find_lv_axis(image)
    return map_of(image, lv), lv


def spect_run_image(run: RunDir, scanner: Scanner, iterations: int = 4, subsets: int = 6,
                    attenuation: bool = True, photopeak_kev: float | None = None) -> Any:
    """The OSEM image (counts) of a SPECT run's projections (``RUN/projections.npz``) in the
    window of ``photopeak_kev`` (None: the first photopeak): TEW scatter, and with
    ``attenuation`` the emulated phantom's mu-map at the photopeak energy. Its meta records the
    photopeak window (``window_kev``)."""
    import recon

    path = run.path / PROJECTIONS_FILE
    if not path.is_file():
        raise UserError(f"run {run.path} has no {PROJECTIONS_FILE} (rebuild it: petdaq sort)")
    with np.load(path) as f:
        projections, edges = f["projections"], f["windows_kev"]
    k = select_photopeak(edges, photopeak_kev)
    windows = spect.triple(edges, k)
    counts = projections[3 * k:3 * k + 3]
    scatter = spect.smooth_scatter(spect.tew_scatter(counts, windows))
    energy = float(np.mean(windows.peak))
    grid = recon.default_grid(scanner)
    mu = (_mu_map(run, scanner, grid, energy) if attenuation else None)
    image = recon.spect_osem(counts[spect.PEAK], scanner, scatter, mu, iterations=iterations,
                             subsets=subsets, grid=grid, energy_kev=energy)
    image.meta["window_kev"] = list(windows.peak)
    return image


def _mu_map(run: RunDir, scanner: Scanner, grid: Any, energy_kev: float) -> np.ndarray | None:
    """The emulated phantom's mu-map (1/mm) on ``grid``; None for a run from real heads."""
    from daq.rundir import run_facts
    from recon.runimage import run_phantom

    phantom = run_phantom(run_facts(run), scanner)
    return None if phantom is None else phantom.mu_map(grid, energy_kev)
