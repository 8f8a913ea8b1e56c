"""Random numbers of the emulator's kernels: xoshiro256+ (Blackman & Vigna 2018), inlined.

A generator is its state, a (4,) uint64 array (``rs``) passed explicitly to every kernel that
draws: one per block of decays, seeded from (seed, slice, stream, block), so runs are
deterministic whatever the threads. numba's ``np.random`` costs about 13 ns a draw (a call into
the runtime for the thread's state); this one about 1-2 ns, and the photon physics draws 10-20
numbers a photon.
"""

from __future__ import annotations

import math

import numpy as np
from numba import uint64

from emulator.jit import inline

_TO_UNIT = 1.0 / 9007199254740992.0   # 2^-53


def state(seed: int | np.ndarray | list[int]) -> np.ndarray:
    """A generator state (4 uint64, never all zero) from a seed (or a SeedSequence entropy)."""
    return np.random.SeedSequence(seed).generate_state(4, np.uint64) | np.uint64(1)


@inline
def _rotl(x, k):
    return (x << uint64(k)) | (x >> uint64(64 - k))


@inline
def uniform(rs):
    """A float64 uniform in [0, 1) (53 random bits)."""
    s0, s1, s2, s3 = rs[0], rs[1], rs[2], rs[3]
    result = s0 + s3
    t = s1 << uint64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    rs[0], rs[1], rs[2], rs[3] = s0, s1, s2, _rotl(s3, 45)
    return (result >> uint64(11)) * _TO_UNIT


@inline
def exponential(rs):
    """An exponential variate of mean 1."""
    return -math.log(1.0 - uniform(rs))


@inline
def disc(rs):
    """A point (a, b) uniform in the unit disc, without its centre, and its squared radius s."""
    while True:
        a = 2.0 * uniform(rs) - 1.0
        b = 2.0 * uniform(rs) - 1.0
        s = a * a + b * b
        if 0.0 < s < 1.0:
            return a, b, s


@inline
def normal(rs):
    """A standard normal variate (Marsaglia's polar method, one of the pair kept)."""
    a, _, s = disc(rs)
    return a * math.sqrt(-2.0 * math.log(s) / s)
