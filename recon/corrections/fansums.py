"""The fan-sum fixed point: per-crystal factors ``s`` of a rank-one pair model ``s_a s_b h_ab``
fitted to each crystal's fan sum (Casey & Hoffman 1986; Defrise et al. PMB 1991).

Each crystal's count ``C_a`` (events in any valid pair that contains a) must equal
``s_a sum_b h_ab s_b``; the damped iteration ``s <- sqrt(s C / H(s))``, ``H(s)_a = sum_b h_ab
s_b``, converges in a few tens of steps. The randoms estimate takes ``h`` = 1 over valid pairs
(:mod:`recon.corrections.randoms`), the normalization the geometry of the events it fits
(:mod:`recon.calibration.normalization`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def fixed_point(counts: np.ndarray, partners: Callable[[np.ndarray], np.ndarray],
                iterations: int) -> np.ndarray:
    """(N,) float64 ``s`` with ``s_a partners(s)_a = counts_a``; 0 where ``counts`` is 0."""
    counts = np.asarray(counts, np.float64)
    total = counts.sum()
    if total <= 0:
        return np.zeros(counts.size)
    s = counts / np.sqrt(total)
    for _ in range(iterations):
        h = partners(s)
        ratio = np.divide(counts, h, out=np.zeros(counts.size), where=h > 0)
        s = np.sqrt(s * ratio)
    return s
