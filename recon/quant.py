"""From reconstructed counts to activity concentration (Bq/mL), decay-corrected to the scan start.

A reconstruction holds x_j, the expected number of decays seen in voxel j over an acquisition of
``duration_s`` (PET: annihilations, i.e. decays times the positron fraction). With decay constant
lambda, the activity at the start A0 gives ``A0 (1 - exp(-lambda T)) / lambda`` decays in T, so

    A0_j [Bq/mL] = x_j / (branching * V_j[mL] * calibration) * lambda / (1 - exp(-lambda T)).

An image is also corrected for its dead time beyond the calibration's: times its dead-time
factor over the calibration's (:mod:`hw.deadtime`; 1 when the run kept no singles rates).

``calibration`` is the scanner's cross-calibration factor, reconstructed counts per true
annihilation: :attr:`hw.scanner.Scanner.counts_per_annihilation` (its TOML's ``[quantification]``,
measured on an emulated uniform cylinder by :mod:`recon.calibration.crosscal`), which ``petdaq recon`` and the
DAQ's final image use by default; 1 when the system model's absolute efficiency is trusted.
"""

from __future__ import annotations

import math

import numpy as np

from infra.errors import UserError
from recon.grid import Image


def decay_factor(duration_s: float, half_life_s: float | None) -> float:
    """lambda T / (1 - exp(-lambda T)): activity at the start over the mean activity in T (1
    without decay)."""
    if half_life_s is None or half_life_s <= 0 or duration_s <= 0:
        return 1.0
    lt = math.log(2.0) / half_life_s * duration_s
    return lt / -math.expm1(-lt)


def activity_concentration(image: Image, duration_s: float, branching: float = 1.0,
                           half_life_s: float | None = None, calibration: float = 1.0,
                           dead_time: float = 1.0) -> Image:
    """The counts image as Bq/mL at the scan start (see the module docstring); ``dead_time``:
    the image's dead-time correction over the calibration's (:mod:`hw.deadtime`)."""
    if image.units != "counts":
        raise UserError(f"activity concentration needs an image in counts, got '{image.units}'")
    if not (duration_s > 0 and 0 < branching <= 1 and calibration > 0 and dead_time > 0):
        raise UserError("activity concentration needs duration_s > 0, 0 < branching <= 1 and "
                        f"calibration > 0, got {duration_s}, {branching}, {calibration}")
    volume_ml = image.grid.voxel_volume_mm3 / 1000.0
    factor = decay_factor(duration_s, half_life_s) * dead_time / (
        duration_s * branching * volume_ml * calibration)
    out = image.scaled(factor, "Bq/mL")
    out.meta.update(duration_s=duration_s, branching=branching, half_life_s=half_life_s,
                    decay_factor=decay_factor(duration_s, half_life_s), calibration=calibration,
                    dead_time_factor=dead_time)
    return out


def calibration_factor(image: Image, annihilations: float) -> float:
    """Cross-calibration from a scan of a source of known activity: the reconstructed counts
    (attenuation-corrected, whole source inside the image) over the true number of annihilations
    (decays x branching) during the scan. Divide by it (``calibration=``) to quantify: it holds
    what the system model leaves out (energy-window acceptance, dead time, inter-crystal
    scatter)."""
    if image.units != "counts" or not annihilations > 0:
        raise UserError("a calibration needs an image in counts and annihilations > 0, got "
                        f"'{image.units}' and {annihilations}")
    return float(image.array.sum(dtype=np.float64)) / float(annihilations)
