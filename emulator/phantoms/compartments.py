"""Tracer kinetics of emulated dynamic scans: the Feng plasma input and two-tissue compartments.

Times are the model's minutes after injection; concentrations are decay-corrected (Bq/mL as if
the nuclide did not decay: physical decay is the emulator's, in acquisition time). The plasma
input is Feng's model (Feng, Huang and Wang 1993, FDG):

    Cp(t) = (A1 u - A2 - A3) exp(-l1 u) + A2 exp(-l2 u) + A3 exp(-l3 u),  u = t - delay >= 0,

scaled so that A2 + A3 (the slow components' amplitudes: the plasma level once the bolus has
mixed, the peak being about 2.4 times higher) is the injected activity spread over
:data:`DISTRIBUTION_ML`. Blood is taken as plasma. A tissue of the two-tissue model (K1, k2,
k3, k4, in 1/min) holds the input convolved with its impulse response; with k4 = 0 (FDG) its
net influx rate is Ki = K1 k3 / (k2 + k3), the Patlak slope.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: The volume (mL) the injected activity is spread over just after the bolus (an adult's
#: extracellular water): sets the input's scale, and so the activity in the field of view.
DISTRIBUTION_ML = 15_000.0
#: Step (min) of the tabulated curves, and the most steps a table has (longer tables get longer
#: steps: the recursion is a Python loop).
STEP_MIN, MAX_STEPS = 0.002, 50_000


@dataclass(frozen=True)
class FengInput:
    """Feng's plasma input function (amplitudes in the model's units, rates in 1/min)."""

    a1: float = 851.1225
    a2: float = 21.8798
    a3: float = 20.8113
    l1_per_min: float = 4.133859
    l2_per_min: float = 0.01043449
    l3_per_min: float = 0.1190996
    delay_min: float = 0.7340

    def shape(self, t_min: np.ndarray) -> np.ndarray:
        """The curve in its own units, 0 before the delay."""
        u = np.maximum(np.asarray(t_min, dtype=np.float64) - self.delay_min, 0.0)
        c = ((self.a1 * u - self.a2 - self.a3) * np.exp(-self.l1_per_min * u)
             + self.a2 * np.exp(-self.l2_per_min * u) + self.a3 * np.exp(-self.l3_per_min * u))
        return np.where(np.asarray(t_min) >= self.delay_min, c, 0.0)

    def plasma_bq_ml(self, t_min: np.ndarray, injected_bq: float) -> np.ndarray:
        """Plasma (and blood) concentration (Bq/mL, decay-corrected) for ``injected_bq``."""
        return self.shape(t_min) * injected_bq / (DISTRIBUTION_ML * (self.a2 + self.a3))


@dataclass(frozen=True)
class TissueModel:
    """A tissue of the two-tissue compartment model (rate constants in 1/min)."""

    K1: float
    k2: float
    k3: float
    k4: float = 0.0

    @property
    def Ki(self) -> float:  # noqa: N802 (the field's name)
        """Net influx rate (mL/min/mL): the Patlak slope of an irreversible tissue (k4 = 0)."""
        return self.K1 * self.k3 / (self.k2 + self.k3)

    def exponentials(self) -> tuple[tuple[float, float], ...]:
        """The impulse response as (amplitude, rate) terms: h(t) = sum a exp(-rate t)."""
        s = self.k2 + self.k3 + self.k4
        root = math.sqrt(max(s * s - 4.0 * self.k2 * self.k4, 0.0))
        a1, a2 = (s - root) / 2.0, (s + root) / 2.0
        if a2 - a1 < 1e-12:
            raise ValueError("the two rates of this tissue coincide")
        f = self.K1 / (a2 - a1)
        return ((f * (self.k3 + self.k4 - a1), a1), (f * (a2 - self.k3 - self.k4), a2))


def convolve_exponential(t_min: np.ndarray, cp: np.ndarray, rate_per_min: float) -> np.ndarray:
    """integral_0^t cp(s) exp(-rate (t - s)) ds on the grid ``t_min`` (cp linear between its
    points: exact for that)."""
    out = np.zeros_like(cp)
    for i in range(1, t_min.size):
        h = t_min[i] - t_min[i - 1]
        x = rate_per_min * h
        if x < 1e-6:
            w0 = w1 = h / 2.0
        else:
            e = math.exp(-x)
            w1 = (x - 1.0 + e) / (rate_per_min * x)      # weight of cp at the step's end
            w0 = (1.0 - e) / rate_per_min - w1           # and at its start
        out[i] = out[i - 1] * math.exp(-x) + w0 * cp[i - 1] + w1 * cp[i]
    return out


def tissue_curve(t_min: np.ndarray, cp: np.ndarray, model: TissueModel) -> np.ndarray:
    """The tissue's concentration on the grid ``t_min`` for the plasma curve ``cp``."""
    return sum(a * convolve_exponential(t_min, cp, rate) for a, rate in model.exponentials())


def curves(input_: FengInput, models: dict[str, TissueModel | None], injected_bq: float,
           t_end_min: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The grid (min) from 0 to ``t_end_min`` and each named curve on it (Bq/mL, decay-
    corrected): a tissue model's response, or the plasma itself for ``None``."""
    step = max(STEP_MIN, t_end_min / MAX_STEPS)
    n = max(2, math.ceil(t_end_min / step) + 1)
    t = np.linspace(0.0, (n - 1) * step, n)
    cp = input_.plasma_bq_ml(t, injected_bq)
    return t, {name: cp if m is None else tissue_curve(t, cp, m) for name, m in models.items()}


@dataclass(frozen=True)
class TissueClass:
    """Regions (by name) that share one time-activity curve: a tissue model, or the plasma input
    itself (``model`` None: blood)."""

    name: str
    regions: tuple[str, ...]
    model: TissueModel | None = None


@dataclass(frozen=True)
class Kinetics:
    """A phantom's kinetics: the plasma input and the tissue classes."""

    input: FengInput
    classes: tuple[TissueClass, ...]

    def models(self) -> dict[str, TissueModel | None]:
        return {c.name: c.model for c in self.classes}
