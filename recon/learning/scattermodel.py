"""The fast path's energy windows: each window's expected counts as a fixed mix of projections of
the patient's activity (as emitted, and blurred and weighted by the tissue's density: where
Compton scatter comes from), fitted once per camera to the emulator's scans of virtual patients.

Scattered photons leave the body from a point inside it, so a parallel-hole camera sees them
only along lines through the body: their projection is that of a broad source where the matter
is (an effective scatter source, after Frey and Tsui's ESSE), not a 2-D blur of the primary
projection, which would spill scatter into the air beside the body. The basis is the attenuated
projection of the activity and of the activity blurred by Gaussians of :data:`SIGMAS_MM` and
weighted by the mu-map relative to water's (electron density: the lungs scatter a quarter of
what soft tissue does); each window (lower scatter, photopeak, upper scatter) is a
non-negative mix of them (NNLS), which also carries the primaries that the energy resolution
spreads into the side windows (what TEW then wrongly subtracts). On the fitted scans the
density weighting leaves a quarter to a half less residual than the body's mask alone.

``python -m recon.learning.fitscatter`` fits a camera's (``recon/learning/scatter/<camera>.json``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.optimize import nnls

from coincidence import spect
from emulator.physics.media import mu_water
from hw.scanner import Scanner
from infra.atomic import replacing
from infra.errors import UserError
from recon.grid import default_grid
from recon.spect.osem import SpectProjector

#: The effective scatter sources' blur (Gaussian sigma, mm).
SIGMAS_MM = (10.0, 20.0, 40.0, 80.0)
#: The basis' names, in order.
BASIS = ("activity", *(f"scatter_source_{s:g}mm" for s in SIGMAS_MM))
#: The windows, in the projections' order.
WINDOWS = ("lower", "peak", "upper")
#: The fitted models of the built-in cameras, ``<camera>.json``.
MODEL_DIR = Path(__file__).resolve().parent / "scatter"


@dataclass(frozen=True)
class ScatterModel:
    """A camera's window model: ``coefficients[window, basis]``, each window's counts per
    photopeak count from each basis projection (scaled to sum to 1 over the activity's)."""

    camera: str
    coefficients: np.ndarray
    fitted_on: str

    def expected(self, basis: np.ndarray) -> np.ndarray:
        """Expected counts [window, head, view, row, column] of a patient's ``basis``."""
        return np.tensordot(self.coefficients, basis, axes=(1, 0)).astype(np.float32)


def basis(scanner: Scanner, activity: np.ndarray, mu_per_mm: np.ndarray,
          energy_kev: float) -> np.ndarray:
    """The basis projections [basis, head, view, row, column] of one patient, each divided by
    the activity's own projection's total."""
    grid = default_grid(scanner)
    projector = SpectProjector(scanner, grid, mu_per_mm, energy_kev=energy_kev)
    density = mu_per_mm / np.float32(mu_water(energy_kev))
    voxel_mm = float(grid.voxel_mm[0])
    sources = [activity] + [gaussian_filter(activity, s / voxel_mm) * density for s in SIGMAS_MM]
    out = np.stack([projector.forward(np.asarray(s, np.float32)) for s in sources])
    return out / np.float32(max(float(out[0].sum()), 1e-30))


def fit(scans: list[np.ndarray], bases: list[np.ndarray]) -> np.ndarray:
    """The coefficients [window, basis] that best give ``scans`` ([window, ...] counts) from
    their patients' ``bases`` (least squares, non-negative), per photopeak count."""
    a = np.concatenate([b.reshape(len(BASIS), -1).T for b in bases]).astype(np.float64)
    coefficients = np.zeros((len(WINDOWS), len(BASIS)))
    for w in range(len(WINDOWS)):
        y = np.concatenate([s[w].ravel() for s in scans]).astype(np.float64)
        coefficients[w], _ = nnls(a, y)
    return coefficients / coefficients[spect.PEAK].sum()


def path_of(camera: str) -> Path:
    """Where a camera's shipped model is."""
    return MODEL_DIR / f"{camera}.json"


def load(camera: str, path: Path | None = None) -> ScatterModel:
    """The camera's window model (``path``, else the shipped one); a one-line error where none
    is."""
    path = path or path_of(camera)
    if not path.is_file():
        raise UserError(f"no scatter model for camera '{camera}' ({path}): fit one with "
                        f"python -m recon.learning.fitscatter POPULATION --camera {camera}")
    try:
        d = json.loads(path.read_text())
        c = np.asarray(d["coefficients"], np.float64)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a scatter model ({type(exc).__name__}: {exc}); fit one "
                        f"with python -m recon.learning.fitscatter") from None
    if d.get("camera") != camera or c.shape != (len(WINDOWS), len(BASIS)) or \
            list(d.get("basis", [])) != list(BASIS):
        raise UserError(f"{path} is not a scatter model of camera '{camera}' with basis "
                        f"{', '.join(BASIS)}")
    return ScatterModel(camera, c, str(d.get("fitted_on", "")))


def save(model: ScatterModel, path: Path, totals: dict[str, float]) -> Path:
    """``model`` as JSON, with the fitted scans' measured and modelled window totals."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:  # a killed fit never leaves half a model under the name
        tmp.write_text(json.dumps({
            "camera": model.camera, "windows": list(WINDOWS), "basis": list(BASIS),
            "coefficients": [[round(float(v), 6) for v in row] for row in model.coefficients],
            "fitted_on": model.fitted_on, "totals": totals}, indent=1) + "\n")
    return path
