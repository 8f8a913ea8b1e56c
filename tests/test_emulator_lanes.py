"""The photon transport on SIMD lanes, checked photon by photon on its crystal deposits: time of
flight against geometry, energy conservation, every photon ending once; the same events for any
number of threads; and its kernels compiled to vector code."""

from __future__ import annotations

import re

import numba
import numpy as np
import pytest

import emulator
from emulator import records, rng
from emulator.jit import FASTMATH
from emulator.physics import lanes, pet
from emulator.physics.interactions import SPEED_OF_LIGHT_MM_PER_PS

N_DECAYS = 8192


def _deposits(scanner, phantom: str, seed: int):
    """Deposits and counters of one block of F-18 decays at the centre, every deposit kept."""
    emu = emulator.Emulator(scanner, phantom, "F-18", 1.0, seed=seed, threads=1)
    times = np.arange(N_DECAYS, dtype=np.int64) * 10_000          # 10 ns apart
    pos = np.zeros((N_DECAYS, 3))
    dep = np.empty(8 * N_DECAYS, records.DEPOSIT_DTYPE)
    counters = np.zeros(len(records.COUNTERS), np.int64)
    done, n = pet.decays(times, pos, 0, 0, emu.nuclide.positron_fraction, emu._range,
                         emu._lines, emu._medium, emu._ring, emu._table,
                         np.ones(scanner.n_crystals), dep, 0, counters,
                         rng.state(seed))
    assert done == N_DECAYS and n > 0
    return dep[:n], counters, times


def test_first_deposit_is_one_straight_flight_from_the_annihilation(brain):
    """In air, a photon's earliest deposit lies on its straight path: the path the time of
    flight gives ends inside that crystal (within its half-diagonal of the centre)."""
    dep, _, times = _deposits(brain, "point", 11)
    key = dep["decay"] * 4 + dep["photon"]
    first = np.sort(np.unique(key, return_index=True)[1])
    d = dep[first]
    path = (d["t"] - times[d["decay"]]) * SPEED_OF_LIGHT_MM_PER_PS
    emission = np.stack([d["x"], d["y"], d["z"]], axis=1)
    distance = np.linalg.norm(brain.crystal_centres[d["crystal"]] - emission, axis=1)
    half_diagonal = 0.5 * np.linalg.norm(brain.crystal_size_mm)
    tolerance = half_diagonal + 0.5 * SPEED_OF_LIGHT_MM_PER_PS + 1e-3    # ps rounding
    assert first.size > 0.5 * N_DECAYS
    assert np.all(np.abs(path - distance) <= tolerance)


@pytest.mark.parametrize("phantom", ["point", "point-water"])
def test_each_photon_ends_once_and_deposits_at_most_its_energy(brain, phantom):
    dep, c, _ = _deposits(brain, phantom, 12)
    key = dep["decay"] * 4 + dep["photon"]
    photons, total = np.unique(key, return_inverse=True)
    energy = np.bincount(total, weights=dep["energy"])
    assert np.all(dep["energy"] > 0)
    assert np.all(energy <= 511.0 + 1e-6)
    assert np.all((dep["crystal"] >= 0) & (dep["crystal"] < brain.n_crystals))
    # every photon emitted is absorbed in the phantom, escapes, or leaves deposits: once
    assert c[records.PHOTONS] == c[records.ABSORBED] + c[records.ESCAPED] + photons.size
    assert c[records.DEPOSITS] == dep.size and c[records.REJECTED] == 0
    if phantom == "point":
        assert c[records.SCATTERED] == 0 and c[records.ABSORBED] == 0
        assert np.all(dep["scatters"] == 0)
    else:
        assert c[records.SCATTERED] > 0 and np.any(dep["scatters"] > 0)


def test_the_same_events_whatever_the_number_of_threads(brain):
    """Blocks, lanes and slices are seeded from (seed, slice, block), so the events do not depend
    on how many threads follow the photons (or on the next slice being followed early)."""
    one = emulator.simulate(brain, "nema-iq", "F-18", 5.0, 0.012, seed=21, threads=1,
                            slice_decays=1 << 14)
    two = emulator.simulate(brain, "nema-iq", "F-18", 5.0, 0.012, seed=21, threads=2,
                            slice_decays=1 << 14)
    assert one.raw.size > 10_000
    np.testing.assert_array_equal(one.raw, two.raw)
    assert one.counters == two.counters


def test_lane_scratch_grows_for_a_longer_log():
    work = lanes.scratch(100)
    cap = work.log_f.shape[1]
    lanes.grow_log()
    assert lanes.scratch(100).log_f.shape[1] == 2 * cap


@pytest.mark.parametrize("name", ["step", "enter"])
def test_the_lane_kernels_compile_to_vector_code(brain, name):
    """What makes the transport fast: LLVM turns each lane kernel's loop into SIMD code (vector
    types in the optimised IR). A lookup or a call that LLVM cannot vectorise would silently
    make it scalar again; compiled afresh here, since numba shows no code of cached kernels."""
    emu = emulator.Emulator(brain, "brain", "F-18", 1.0, seed=1, threads=1)
    work = lanes.scratch(64)
    fresh = numba.njit(nogil=True, error_model="numpy", fastmath=FASTMATH)(
        getattr(lanes, name).py_func)
    md, g = emu._medium, emu._ring
    args = {
        "step": (work.F, work.I, work.R, 8, md, tuple(range(md.layers.shape[0])), g, emu._table),
        "enter": (work.F, work.I, work.need, 0, g),
    }[name]
    fresh(*args)
    ir = "".join(fresh.inspect_llvm().values())
    assert re.search(r"<(2|4|8|16) x double>", ir), f"lanes.{name} did not vectorise"


def test_compton_angles_on_the_lanes_follow_klein_nishina_across_retries(brain):
    """Lanes held in a crystal with a Compton scattering to draw (``AGAIN``): each step makes two
    Kahn trials; a lane whose trials both fail draws again in its next step, without moving.
    The angles that come out, first trial or after retries, follow Klein-Nishina at 511 keV
    (Kolmogorov-Smirnov), and the scattered energy is Compton's for the angle."""
    from emulator.physics.interactions import ELECTRON_KEV, klein_nishina_pdf
    from emulator.simd import seed_lanes

    emu = emulator.Emulator(brain, "point", "F-18", 1.0, seed=1, threads=1)
    g, md = emu._ring, emu._medium
    work = lanes.scratch(64)
    F, I, R, n = work.F, work.I, work.R, lanes.LANES
    seed_lanes(rng.state(21), R)
    u0 = np.array([0.36, -0.48, 0.8])
    centre = brain.crystal_centres[0]

    def arm(which: np.ndarray) -> None:
        F[lanes.X:lanes.Z + 1, which] = centre[:, None]
        F[lanes.UX:lanes.UZ + 1, which] = u0[:, None]
        F[lanes.E, which], F[lanes.PATH, which], F[lanes.TRAV, which] = 511.0, 0.0, 0.0
        I[lanes.STAGE, which], I[lanes.M, which], I[lanes.K, which] = lanes.MODULE, 0, 0
        I[lanes.AGAIN, which] = 1

    arm(np.arange(n))
    cos_t, energy, retried, steps = [], [], 0, 0
    while sum(c.size for c in cos_t) < 50_000:
        step_again = I[lanes.AGAIN, :n].copy()
        lanes.step(F, I, R, n, md, tuple(range(md.layers.shape[0])), g, emu._table)
        steps += 1
        done = I[lanes.AGAIN, :n] == 0
        retried += np.count_nonzero(~done & (step_again == 1))
        assert np.all(F[lanes.X:lanes.Z + 1, :n] == centre[:, None])        # never moved
        cos_t.append(u0 @ F[lanes.UX:lanes.UZ + 1, :n][:, done])
        energy.append(F[lanes.E, :n][done])
        arm(np.flatnonzero(done))
    cos_t, energy = np.concatenate(cos_t), np.concatenate(energy)
    # both trials fail in about a sixth of the steps at 511 keV
    assert 0.1 < retried / (steps * n) < 0.25
    np.testing.assert_allclose(energy, 511.0 / (1.0 + 511.0 / ELECTRON_KEV * (1.0 - cos_t)),
                               rtol=1e-9)
    grid = np.linspace(-1.0, 1.0, 4001)
    pdf = np.array([klein_nishina_pdf(511.0, c) for c in grid]) * 2 * np.pi
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(grid))])
    x = np.sort(cos_t)
    f = np.interp(x, grid, cdf)
    k = np.arange(1, x.size + 1) / x.size
    ks = max(np.max(k - f), np.max(f - (k - 1.0 / x.size)))
    assert ks < 1.95 / np.sqrt(x.size)
