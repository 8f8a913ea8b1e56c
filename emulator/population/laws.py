"""The laws a virtual patient's parameters are drawn from: normal, log-normal, uniform, a yes/no.

Each law maps a probability u in (0, 1) to a value (its inverse distribution function), so that a
population is drawn by stratified (Latin hypercube) sampling (:mod:`emulator.population.sampling`)
and a population of 50 already has its laws' means and spreads. Bounds clip a normal's tails
(a height of 3 m); they are far enough out to leave its mean and spread as stated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

_UNIT = NormalDist()


@dataclass(frozen=True)
class Normal:
    """A normal law of ``mean`` and ``sd``, clipped to [low, high]."""

    mean: float
    sd: float
    low: float = -math.inf
    high: float = math.inf

    def value(self, u: float) -> float:
        return min(max(self.mean + self.sd * _UNIT.inv_cdf(u), self.low), self.high)

    @property
    def spread(self) -> float:
        return self.sd

    def words(self) -> str:
        return f"normal {self.mean:g} ± {self.sd:g}"


@dataclass(frozen=True)
class LogNormal:
    """A log-normal law of arithmetic ``mean`` and ``sd`` (right-skewed: volumes, ratios)."""

    mean: float
    sd: float

    @property
    def sigma(self) -> float:
        return math.sqrt(math.log1p((self.sd / self.mean) ** 2))

    @property
    def mu(self) -> float:
        return math.log(self.mean) - 0.5 * self.sigma ** 2

    def value(self, u: float) -> float:
        return math.exp(self.mu + self.sigma * _UNIT.inv_cdf(u))

    @property
    def spread(self) -> float:
        return self.sd

    def words(self) -> str:
        return f"log-normal {self.mean:g} ± {self.sd:g}"


@dataclass(frozen=True)
class Uniform:
    """A uniform law on [low, high]."""

    low: float
    high: float

    def value(self, u: float) -> float:
        return self.low + (self.high - self.low) * u

    @property
    def mean(self) -> float:
        return 0.5 * (self.low + self.high)

    @property
    def spread(self) -> float:
        return (self.high - self.low) / math.sqrt(12.0)

    def words(self) -> str:
        return f"uniform {self.low:g} to {self.high:g}"


@dataclass(frozen=True)
class Chance:
    """Yes (1) with probability ``p``, else no (0)."""

    p: float

    def value(self, u: float) -> float:
        return 1.0 if u < self.p else 0.0

    @property
    def mean(self) -> float:
        return self.p

    @property
    def spread(self) -> float:
        return math.sqrt(self.p * (1.0 - self.p))

    def words(self) -> str:
        return f"yes with probability {self.p:g}"


Law = Normal | LogNormal | Uniform | Chance


@dataclass(frozen=True)
class Parameter:
    """A drawn parameter: its name (a ``population.csv`` column), unit, law for men and for
    women (the same law when sex does not matter) and where the law comes from."""

    name: str
    unit: str
    men: Law
    women: Law
    source: str

    def law(self, male: bool) -> Law:
        return self.men if male else self.women
