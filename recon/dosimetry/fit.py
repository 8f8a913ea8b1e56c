"""Mono- and bi-exponential fits of regional activity against time after injection, and their
time-integrated activity from injection to infinity.

Mono: ``A(t) = A0 exp(-lambda t)``, a straight line through ``ln A`` (least squares on the
logarithm: every time point weighs by its relative error, as counting noise has it). Bi:
``A(t) = A1 exp(-l1 t) + A2 exp(-l2 t)``, Levenberg-Marquardt on the relative residuals, started
from the mono fit; it needs at least four time points. The time-integrated activity is the fit's
integral from the injection, ``sum A_i / l_i``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from infra.errors import UserError

MODELS = ("mono", "bi")


@dataclass(frozen=True)
class ExpFit:
    """An exponential fit: amplitudes (MBq) and rate constants (1/h), one pair per term."""

    model: str
    amplitudes_mbq: tuple[float, ...]
    rates_per_h: tuple[float, ...]
    rms_relative: float
    """Root-mean-square of (measured - fitted) / fitted over the time points."""

    def activity_mbq(self, t_h: np.ndarray) -> np.ndarray:
        t = np.asarray(t_h, np.float64)
        return sum(a * np.exp(-k * t) for a, k in zip(self.amplitudes_mbq, self.rates_per_h,
                                                      strict=True))

    @property
    def tia_mbq_h(self) -> float:
        """Time-integrated activity from injection to infinity (MBq h)."""
        return float(sum(a / k for a, k in zip(self.amplitudes_mbq, self.rates_per_h,
                                               strict=True)))

    @property
    def effective_half_life_h(self) -> float:
        """ln 2 over the slowest rate (the mono fit's effective half-life)."""
        return math.log(2.0) / min(self.rates_per_h)


def fit(t_h: np.ndarray, activity_mbq: np.ndarray, model: str = "mono") -> ExpFit:
    """Fit ``model`` to the time points (h after injection, MBq); one-line errors where the
    points cannot carry it."""
    t = np.asarray(t_h, np.float64)
    a = np.asarray(activity_mbq, np.float64)
    check_times(t, model)
    if np.any(~(a > 0)):
        raise UserError("every time point needs activity > 0 in the region (MBq), got "
                        + ", ".join(f"{v:.3g}" for v in a))
    slope, intercept = np.polyfit(t, np.log(a), 1)
    if not slope < 0:
        raise UserError(f"the activity does not fall with time (fitted half-life "
                        f"{-math.log(2) / slope if slope else math.inf:.3g} h): no clearance to "
                        "integrate")
    mono = _result("mono", (math.exp(intercept),), (-slope,), t, a)
    return mono if model == "mono" else _bi(t, a, mono)


def check_times(t_h: np.ndarray, model: str = "mono") -> None:
    """One-line errors where time points (h after injection) cannot carry ``model``: known
    before any image is made."""
    t = np.asarray(t_h, np.float64)
    if model not in MODELS:
        raise UserError(f"unknown fit {model!r}: use {' or '.join(MODELS)}")
    if t.size < 2 or np.unique(t).size < 2:
        raise UserError(f"an exponential fit needs at least 2 distinct time points, got {t.size}")
    if model == "bi" and t.size < 4:
        raise UserError(f"a bi-exponential fit needs at least 4 time points, got {t.size}")


def _result(model: str, amplitudes: tuple[float, ...], rates: tuple[float, ...], t: np.ndarray,
            a: np.ndarray) -> ExpFit:
    f = ExpFit(model, tuple(float(v) for v in amplitudes), tuple(float(v) for v in rates), 0.0)
    fitted = f.activity_mbq(t)
    rms = float(np.sqrt(np.mean(((a - fitted) / fitted) ** 2)))
    return ExpFit(model, f.amplitudes_mbq, f.rates_per_h, rms)


def _bi(t: np.ndarray, a: np.ndarray, mono: ExpFit) -> ExpFit:
    """Levenberg-Marquardt on log-parameters (amplitudes and rates stay > 0)."""
    k0 = mono.rates_per_h[0]
    p = np.log([mono.amplitudes_mbq[0] / 2, 3 * k0, mono.amplitudes_mbq[0] / 2, k0 / 2])

    def residual(q: np.ndarray) -> np.ndarray:
        a1, k1, a2, k2 = np.exp(q)
        return (a1 * np.exp(-k1 * t) + a2 * np.exp(-k2 * t)) / a - 1.0

    damping = 1e-3
    r = residual(p)
    for _ in range(200):
        jac = np.empty((t.size, 4))
        for j in range(4):
            step = np.zeros(4)
            step[j] = 1e-6
            jac[:, j] = (residual(p + step) - r) / 1e-6
        h = jac.T @ jac
        trial = p - np.linalg.solve(h + damping * np.diag(np.diag(h) + 1e-12), jac.T @ r)
        r_trial = residual(trial)
        if r_trial @ r_trial < r @ r:
            converged = abs(r @ r - r_trial @ r_trial) < 1e-14
            p, r, damping = trial, r_trial, damping / 3
            if converged:
                break
        else:
            damping *= 5
    a1, k1, a2, k2 = np.exp(p)
    (a1, k1), (a2, k2) = sorted(((a1, k1), (a2, k2)), key=lambda pair: -pair[1])
    return _result("bi", (a1, a2), (k1, k2), t, a)
