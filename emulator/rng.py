"""Random numbers of the emulator's kernels: xoshiro256++ (Blackman & Vigna 2018), inlined.

A generator is its state, a (4,) uint64 array (``rs``) passed explicitly to every kernel that
draws: one per block of decays, seeded from (seed, slice, stream, block), so runs are
deterministic whatever the threads. numba's ``np.random`` costs about 13 ns a draw (a call into
the runtime for the thread's state); this one about 1-2 ns, and the photon physics draws 10-20
numbers a photon.

Exponential and normal variates use the 256-layer ziggurat (Marsaglia & Tsang 2000) with
numpy's 53/52-bit layout: one 64-bit draw and a table lookup almost every time (98.9 / 99.3 %),
instead of a logarithm (about 10 ns here).
"""

from __future__ import annotations

import math

import numpy as np
from numba import uint64

from emulator.jit import inline

TO_UNIT = 1.0 / 9007199254740992.0   # 2^-53

#: Ziggurat parameters: the base strip's right edge r and each strip's area v.
EXP_R = 7.69711747013104972
_EXP_AREA = 0.0039496598225815571993
NOR_R = 3.6541528853610088
_NOR_INV_R = 1.0 / NOR_R
_NOR_AREA = 0.00492867323399


def ziggurat_tables(r: float, area: float, f, f_inverse, mantissa: float
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(k, w, f) tables of a 256-strip ziggurat for the decreasing density ``f`` (unnormalised,
    f(0) = 1) whose strips have ``area``, the last at ``r``; ``mantissa`` = 2^bits of the
    uniform integer the sampler draws (Marsaglia & Tsang 2000)."""
    k = np.zeros(256, np.uint64)
    w = np.zeros(256)
    fv = np.zeros(256)
    x1 = r
    w[255], fv[255] = x1 / mantissa, f(x1)
    k[0] = np.uint64(math.floor(x1 * fv[255] / area * mantissa))
    w[0], fv[0] = area / fv[255] / mantissa, 1.0
    for i in range(254, 0, -1):
        x = f_inverse(area / x1 + fv[i + 1])
        k[i + 1] = np.uint64(math.floor(x / x1 * mantissa))
        w[i], fv[i] = x / mantissa, f(x)
        x1 = x
    return k, w, fv


_KE, _WE, _FE = ziggurat_tables(EXP_R, _EXP_AREA, lambda x: math.exp(-x), lambda y: -math.log(y),
                                2.0 ** 53)
_KI, _WI, _FI = ziggurat_tables(NOR_R, _NOR_AREA, lambda x: math.exp(-0.5 * x * x),
                                lambda y: math.sqrt(-2.0 * math.log(y)), 2.0 ** 52)


_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> tuple[int, int]:
    """One step of SplitMix64 (Steele, Lea & Flood 2014): (next state, output)."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x, z ^ (z >> 31)


def state(seed: int | list[int]) -> np.ndarray:
    """A generator state (4 uint64, never all zero) from a seed or a key of integers (seed,
    slice, stream, block): the key's words are mixed by SplitMix64, the seeding its authors
    recommend for xoshiro, so that neighbouring keys give unrelated streams."""
    x = 0
    for word in np.atleast_1d(np.asarray(seed, dtype=object)).tolist():
        for part in range(0, max(int(word).bit_length(), 1), 64):
            # the mixed output, not the counter, carries on: keys that differ only slightly
            # (neighbouring slices and blocks) must not meet in the same state
            _, x = _splitmix64(x ^ ((int(word) >> part) & _MASK64))
    out = []
    for _ in range(4):
        x, z = _splitmix64(x)
        out.append(z)
    return np.array(out if any(out) else [1, 0, 0, 0], dtype=np.uint64)


@inline
def rotl(x, k):
    return (x << uint64(k)) | (x >> uint64(64 - k))


@inline
def draw(a, b, c, d):
    """One xoshiro256++ step on the four state words: (64 random bits, the next words). The
    SIMD lanes keep the words in locals while a loop body runs (:mod:`emulator.simd`)."""
    result = rotl(a + d, 23) + a
    t = b << uint64(17)
    c ^= a
    d ^= b
    b ^= c
    a ^= d
    c ^= t
    return result, a, b, c, rotl(d, 45)


@inline
def draw3(a, b, c, d):
    """Three :func:`draw` steps: (three times 64 random bits, the next words)."""
    r0, a, b, c, d = draw(a, b, c, d)
    r1, a, b, c, d = draw(a, b, c, d)
    r2, a, b, c, d = draw(a, b, c, d)
    return r0, r1, r2, a, b, c, d


@inline
def bits(rs):
    """64 random bits (uint64) from the state array ``rs``."""
    result, rs[0], rs[1], rs[2], rs[3] = draw(rs[0], rs[1], rs[2], rs[3])
    return result


@inline
def uniform(rs):
    """A float64 uniform in [0, 1) (53 random bits)."""
    return (bits(rs) >> uint64(11)) * TO_UNIT


@inline
def keyed_unit(salt, a, b):
    """A float64 uniform in [0, 1) fixed by (``salt``, ``a``, ``b``): SplitMix64's mix of the
    three, so that every draw with the same key gives the same number (one decay's photons in
    one crystal share their fate)."""
    z = uint64(salt) + uint64(a) * uint64(0x9E3779B97F4A7C15) + uint64(b) * uint64(
        0xD1B54A32D192ED03)
    z = (z ^ (z >> uint64(30))) * uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> uint64(27))) * uint64(0x94D049BB133111EB)
    z = z ^ (z >> uint64(31))
    return (z >> uint64(11)) * TO_UNIT


@inline
def exponential(rs):
    """An exponential variate of mean 1 (ziggurat)."""
    while True:
        ri = bits(rs) >> uint64(3)
        idx = np.intp(ri & uint64(0xFF))
        ri >>= uint64(8)
        x = ri * _WE[idx]
        if ri < _KE[idx]:
            return x
        if idx == 0:
            return EXP_R - math.log(1.0 - uniform(rs))
        if (_FE[idx - 1] - _FE[idx]) * uniform(rs) + _FE[idx] < math.exp(-x):
            return x


@inline
def normal(rs):
    """A standard normal variate (ziggurat)."""
    while True:
        r = bits(rs)
        idx = np.intp(r & uint64(0xFF))
        r >>= uint64(8)
        rabs = (r >> uint64(1)) & uint64(0x000FFFFFFFFFFFFF)
        x = rabs * _WI[idx]
        if r & uint64(1):
            x = -x
        if rabs < _KI[idx]:
            return x
        if idx == 0:
            while True:
                xx = -_NOR_INV_R * math.log(1.0 - uniform(rs))
                yy = -math.log(1.0 - uniform(rs))
                if yy + yy > xx * xx:
                    return -(NOR_R + xx) if (rabs >> uint64(8)) & uint64(1) else NOR_R + xx
        elif (_FI[idx - 1] - _FI[idx]) * uniform(rs) + _FI[idx] < math.exp(-0.5 * x * x):
            return x
