"""The SIMD toolkit of the photon transport: its math against libm, lane buffers, lane seeds."""

from __future__ import annotations

import math

import numpy as np

from emulator import rng, simd
from emulator.jit import kernel
from emulator.simd import at, exp, get, log, put, sel, sincos_turn, tab, vmax, vmin


@kernel
def _errors(n):
    """Largest errors of log (relative to max(1, |log x|)), exp (relative, |x| < 40) and
    sincos_turn (absolute) over n points each."""
    e_log, e_exp, e_trig = 0.0, 0.0, 0.0
    for i in range(1, n):
        x = i / n                                       # (0, 1), then far below and above
        for v in (x, math.exp(-700.0 * x), 1.0 + 1e6 * x):
            e_log = max(e_log, abs(log(v) - math.log(v)) / max(1.0, abs(math.log(v))))
        y = -40.0 + 80.0 * x
        e_exp = max(e_exp, abs(exp(y) / math.exp(y) - 1.0))
        c, s = sincos_turn(x)
        e_trig = max(e_trig, abs(c - math.cos(2.0 * math.pi * x)),
                     abs(s - math.sin(2.0 * math.pi * x)))
    return e_log, e_exp, e_trig


def test_polynomial_math_matches_libm():
    e_log, e_exp, e_trig = _errors(400_000)
    assert e_log < 2e-15
    assert e_exp < 2e-15
    assert e_trig < 2e-15


@kernel
def _select(c, a, b):
    return sel(c, a, b), vmin(a, b), vmax(a, b)


def test_select_and_min_max():
    assert _select(True, 1.5, -2.0) == (1.5, -2.0, 1.5)
    assert _select(False, 1.5, -2.0) == (-2.0, -2.0, 1.5)
    assert _select(True, 3, 7) == (3, 3, 7)


@kernel
def _copy_fields(src, dst, table, grid, n):
    """dst[1, i] = src[0, i] + table[i], dst[0, i] = grid[1, i] for the first n lanes."""
    for i in range(n):
        put(dst, 1, i, get(src, 0, i) + tab(table, i))
        put(dst, 0, i, at(grid, 1, i))


def test_lane_buffers_and_tables_work_on_views_of_wider_arrays():
    wide = np.arange(3 * 40, dtype=np.float64).reshape(3, 40)
    out = np.zeros((2, 64))
    grid = np.arange(2 * 50, dtype=np.float64).reshape(2, 50)
    table = np.linspace(0.0, 1.0, 16)
    _copy_fields(wide[:, :16], out[:, :16], table, grid[:, :30], 16)
    np.testing.assert_array_equal(out[1, :16], wide[0, :16] + table)
    np.testing.assert_array_equal(out[0, :16], grid[1, :16])
    assert not out[:, 16:].any()


def test_lane_seeds_give_unrelated_streams():
    """Every word of every lane's state differs (seeds one SplitMix64 step apart once gave
    neighbouring lanes the same words, shifted, and the transport an azimuthal pattern)."""
    states = np.zeros((4, 4096), np.uint64)
    parent = rng.state([3, 1, 4])
    simd.seed_lanes(parent, states)
    assert np.unique(states).size == states.size
    more = np.zeros((4, 4096), np.uint64)
    simd.seed_lanes(parent, more)                       # the parent moved on: other lanes
    assert np.intersect1d(states, more).size == 0
    bits = np.unpackbits(states[0].view(np.uint8)).reshape(-1, 64)
    assert np.all(np.abs(bits.mean(axis=0) - 0.5) < 0.05)
    # neighbouring lanes' words are uncorrelated bit by bit
    agree = (bits[1:] == bits[:-1]).mean()
    assert abs(agree - 0.5) < 0.01
