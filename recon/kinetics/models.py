"""Kinetic quantities from time-activity curves: Patlak, Logan (reference region), SUVR.

Integrals of image curves are frame-exact: a frame's mean times its duration is its integral, so
the integral up to a frame's middle is the sum over the frames before it plus half the frame
(the scan must start at the injection, or the input before the first frame is missing). A
sampled plasma curve is integrated by the trapezoid rule from (0, 0). Linear fits use the frames
whose middle is at or after ``t_star_min`` (at least 3).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infra.errors import UserError
from recon.kinetics.tacs import Curves


@dataclass(frozen=True)
class Input:
    """The input function at the frames' middles: its value and its integral from 0 (min)."""

    at_mid: np.ndarray
    integral_to_mid: np.ndarray
    source: str


@dataclass(frozen=True)
class Fit:
    """A straight-line fit: slope, intercept, R^2 and the points (x, y) it used."""

    slope: float
    intercept: float
    r2: float
    x: np.ndarray
    y: np.ndarray


def frame_integral(curve: np.ndarray, duration_min: np.ndarray) -> np.ndarray:
    """integral_0^mid of a frame-averaged curve at each frame's middle (Bq min/mL)."""
    before = np.concatenate([[0.0], np.cumsum(curve * duration_min)[:-1]])
    return before + curve * duration_min / 2


def _from_injection(curves: Curves, what: str) -> None:
    """Integrals of image curves need frames back to back from the injection."""
    gaps = np.abs(curves.start_min[1:] - curves.end_min[:-1])
    if curves.start_min[0] > 1e-6 or np.any(gaps > 1e-6):
        raise UserError(f"{what} needs frames back to back from the injection; the first "
                        f"starts {curves.start_min[0]:g} min after it")


def input_from_region(curves: Curves, region: str) -> Input:
    """An image-derived input: the region's curve."""
    _from_injection(curves, "an image-derived input (else use --input-file)")
    c = curves.curve(region)
    return Input(c, frame_integral(c, curves.duration_min), f"region {region}")


def input_from_file(path: str | Path, curves: Curves) -> Input:
    """A sampled plasma curve: a CSV with columns ``time_min`` and ``plasma_bq_ml``."""
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"cannot read the plasma file {path}: {exc}") from None
    if not rows or not {"time_min", "plasma_bq_ml"} <= set(rows[0]):
        found = ", ".join(rows[0]) if rows else "no rows"
        raise UserError(f"the plasma file {path} needs columns time_min and plasma_bq_ml "
                        f"(found: {found})")
    try:
        t = np.array([float(r["time_min"]) for r in rows])
        c = np.array([float(r["plasma_bq_ml"]) for r in rows])
    except (TypeError, ValueError) as exc:
        raise UserError(f"the plasma file {path}: a value is not a number ({exc})") from None
    if np.any(np.diff(t) <= 0) or not np.all(np.isfinite(c)) or t[0] < 0:
        raise UserError(f"the plasma file {path}: times must increase from 0 or later, values "
                        "be numbers")
    if t[0] > 0:
        t, c = np.concatenate([[0.0], t]), np.concatenate([[0.0], c])
    mid = curves.mid_min
    if mid[-1] > t[-1] * 1.001:
        raise UserError(f"the plasma file {path} ends at {t[-1]:g} min, before the last frame's "
                        f"middle ({mid[-1]:g} min)")
    fine = np.union1d(t, mid)
    cf = np.interp(fine, t, c)
    cumulative = np.concatenate([[0.0], np.cumsum(np.diff(fine) * (cf[1:] + cf[:-1]) / 2)])
    return Input(np.interp(mid, t, c), np.interp(mid, fine, cumulative), f"file {path}")


def line_fit(x: np.ndarray, y: np.ndarray, use: np.ndarray, what: str) -> Fit:
    """Least-squares line through the points ``use`` selects (at least 3)."""
    xs, ys = x[use], y[use]
    if xs.size < 3:
        raise UserError(f"{what} needs at least 3 frames after t* ({xs.size} there): lower "
                        "--t-star-min or use more frames")
    slope, intercept = np.polyfit(xs, ys, 1)
    residual = ys - (slope * xs + intercept)
    total = np.sum((ys - ys.mean()) ** 2)
    r2 = 1.0 - float(np.sum(residual ** 2) / total) if total > 0 else 1.0
    return Fit(float(slope), float(intercept), r2, xs, ys)


def _positive(curve: np.ndarray, use: np.ndarray, what: str) -> None:
    if np.any(curve[use] <= 0):
        raise UserError(f"{what}: the curve is zero or negative in a frame after t*")


def patlak(tissue: np.ndarray, inp: Input, curves: Curves, t_star_min: float) -> Fit:
    """Patlak plot: C_T/Cp against integral(Cp)/Cp; slope Ki (1/min), intercept V0."""
    use = curves.mid_min >= t_star_min
    _positive(inp.at_mid, use, "Patlak's input")
    with np.errstate(divide="ignore", invalid="ignore"):
        x, y = inp.integral_to_mid / inp.at_mid, tissue / inp.at_mid
    return line_fit(x, y, use, "Patlak")


def logan_reference(tissue: np.ndarray, reference: np.ndarray, curves: Curves,
                    t_star_min: float, k2_prime_per_min: float | None = None) -> Fit:
    """Logan plot with a reference region: integral(C_T)/C_T against (integral(C_ref) +
    C_ref / k2') / C_T; slope the distribution volume ratio (the k2' term left out when not
    given)."""
    _from_injection(curves, "Logan")
    use = curves.mid_min >= t_star_min
    _positive(tissue, use, "Logan's region")
    d = curves.duration_min
    ref_term = frame_integral(reference, d) + (reference / k2_prime_per_min
                                               if k2_prime_per_min else 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        x, y = ref_term / tissue, frame_integral(tissue, d) / tissue
    return line_fit(x, y, use, "Logan")


def suvr(tissue: np.ndarray, reference: np.ndarray, curves: Curves, t_star_min: float) -> float:
    """The ratio of the region's to the reference's duration-weighted mean after t*."""
    use = curves.mid_min >= t_star_min
    if not use.any():
        raise UserError(f"SUVR: no frame after t* = {t_star_min:g} min")
    d = curves.duration_min[use]
    ref = float(np.sum(reference[use] * d))
    if ref <= 0:
        raise UserError("SUVR: the reference region has no activity after t*")
    return float(np.sum(tissue[use] * d)) / ref
