"""Where a line p + t u enters and leaves a slab lo <= x <= hi along one axis (t in mm for unit
u): the building block of the box tests in the phantom and the crystal ring."""

from __future__ import annotations

import numpy as np

from emulator.jit import inline
from emulator.simd import sel


@inline
def inverse(u):
    """1 / u, inf for u = 0."""
    return 1.0 / u if u != 0.0 else np.inf


@inline
def slab(p, inv_u, lo, hi):
    """(t0, t1) where lo <= p + t u <= hi, given 1/u (inf for u = 0); t0 > t1 when never."""
    if np.isinf(inv_u):
        if lo <= p <= hi:
            return -np.inf, np.inf
        return np.inf, -np.inf
    a, b = (lo - p) * inv_u, (hi - p) * inv_u
    return (a, b) if a < b else (b, a)


@inline
def slab_exit(p, u, lo, hi):
    """t at which p + t u leaves [lo, hi] (inf: never; 0: outside it, not moving along it).
    Branch-free (SIMD lanes)."""
    still = sel((lo <= p) & (p <= hi), np.inf, 0.0)
    return sel(u > 0.0, (hi - p) / u, sel(u < 0.0, (lo - p) / u, still))
