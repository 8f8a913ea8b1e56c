"""The emulator's samplers against their exact distributions: the generator's variates, Compton
and the scattering azimuth, decay positions in a phantom."""

from __future__ import annotations

import math

import numpy as np
import pytest

from emulator import phantoms, rng
from emulator.jit import kernel
from emulator.physics import sampling
from emulator.physics.interactions import deflect, klein_nishina, klein_nishina_pdf
from emulator.rng import exponential, normal, uniform
from emulator.simd import sincos_turn

N = 400_000


@kernel
def _draw(rs, which, out):
    for i in range(out.size):
        if which == 0:
            out[i] = exponential(rs)
        elif which == 1:
            out[i] = normal(rs)
        elif which == 2:
            c, s = sincos_turn(uniform(rs))
            out[i] = math.atan2(s, c)
        else:
            out[i] = klein_nishina(rs, float(which))[1]


def _draws(which: int, seed: int = 7) -> np.ndarray:
    out = np.empty(N)
    _draw(rng.state(seed), which, out)
    return out


def _ks(samples: np.ndarray, cdf) -> float:
    """Kolmogorov-Smirnov distance of the samples from ``cdf``."""
    x = np.sort(samples)
    f = cdf(x)
    n = x.size
    return float(max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n)))


#: KS distance that N samples of the right law exceed with probability 1e-3.
KS_LIMIT = 1.95 / math.sqrt(N)


def test_ziggurat_exponential_and_normal_follow_their_laws():
    e = _draws(0)
    assert _ks(e, lambda x: 1.0 - np.exp(-x)) < KS_LIMIT
    assert e.mean() == pytest.approx(1.0, abs=0.01) and e.max() > 10.0          # the tail
    z = _draws(1)
    erf = np.vectorize(math.erf)
    assert _ks(z, lambda x: 0.5 * (1.0 + erf(x / math.sqrt(2.0)))) < KS_LIMIT
    assert z.std() == pytest.approx(1.0, abs=0.01) and np.abs(z).max() > 4.0   # both tails
    phi = _draws(2)
    assert _ks(phi, lambda x: (x + math.pi) / (2 * math.pi)) < KS_LIMIT


def test_ziggurat_tables_are_the_published_ones():
    constants = pytest.importorskip("numba.np.random._constants")
    np.testing.assert_allclose(rng._WE, constants.we_double, rtol=1e-12)
    np.testing.assert_allclose(rng._FE, constants.fe_double, rtol=1e-12)
    np.testing.assert_allclose(rng._KE.astype(float), np.asarray(constants.ke_double, float),
                               rtol=1e-12)
    np.testing.assert_allclose(rng._WI, constants.wi_double, rtol=1e-8)
    np.testing.assert_allclose(rng._KI.astype(float), np.asarray(constants.ki_double, float),
                               rtol=1e-8)


@pytest.mark.parametrize("energy_kev", [511, 140, 30])
def test_kahn_sampling_follows_klein_nishina(energy_kev):
    cos_t = _draws(energy_kev)
    grid = np.linspace(-1.0, 1.0, 4001)
    pdf = np.array([klein_nishina_pdf(float(energy_kev), c) for c in grid]) * 2 * np.pi
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(grid))])
    assert cdf[-1] == pytest.approx(1.0, abs=1e-6)
    assert _ks(cos_t, lambda x: np.interp(x, grid, cdf)) < KS_LIMIT


@kernel
def _deflected(rs, cos_t, out):
    for i in range(out.shape[0]):
        out[i, 0], out[i, 1], out[i, 2] = deflect(rs, 0.36, -0.48, 0.8, cos_t)


def test_deflection_keeps_the_polar_angle_and_spreads_the_azimuth():
    u = np.array([0.36, -0.48, 0.8])
    v = np.empty((20_000, 3))
    _deflected(rng.state(3), 0.3, v)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(v @ u, 0.3, atol=1e-12)
    across = v - 0.3 * u                              # the azimuth: no preferred direction
    assert np.abs(across.mean(axis=0)).max() < 0.02


def test_brain_positions_follow_the_painted_concentrations(brain):
    head = phantoms.get("brain", brain)
    pos = np.empty((N, 3))
    sampling.positions(rng.state(9), head.packed(), pos)
    # the concentration at the sampled points against the concentration-weighted volume
    grid = dict(shape=(160, 200, 180), voxel_mm=1.0)
    act = head.activity_map(**grid)
    drawn = head.activity_at(pos)
    for value in (4.0, 1.0, 0.2):
        expected = act[act == value].sum() / act.sum()
        assert np.mean(drawn == value) == pytest.approx(expected, abs=0.01)
    assert np.all(drawn > 0)


def test_neighbouring_keys_give_distinct_streams():
    """Slices and blocks are seeded from (seed, slice, stream, block): keys one apart must not
    meet in one generator state (they did once, and repeated whole blocks of decays)."""
    seen = {}
    for key in ((5, k, s, b) for k in range(100) for s in range(4) for b in range(32)):
        words = tuple(int(v) for v in rng.state(list(key)))
        assert words not in seen, (key, seen.get(words))
        seen[words] = key
    first = np.array([rng.state([5, 0, 2, b])[0] for b in range(256)])
    bits = np.unpackbits(first.view(np.uint8)).reshape(256, 64).mean(axis=0)
    assert np.all(np.abs(bits - 0.5) < 0.15)          # every bit of the state varies
