"""LiveRecon: incremental LM-OSEM over all events so far, warm-started."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from test_recon_sampler import points_in_sphere, sample_coinc

from hw import COINC_DTYPE
from infra.errors import UserError
from recon.grid import Grid
from recon.pet.live import LiveRecon
from recon.pet.lors import crystal_efficiency
from recon.pet.osem import lm_mlem
from recon.pet.system import sample_pairs

GRID = Grid((24, 24, 24), (2.0, 2.0, 2.0), (-23.0, -23.0, -23.0))
SAMPLES = 1_000_000


@pytest.fixture(scope="module")
def blob(brain):
    rng = np.random.default_rng(21)
    return sample_coinc(brain, points_in_sphere(rng, 200_000, (5.0, -3.0, 2.0), 16.0), rng)


def test_live_with_every_event_in_one_update_is_mlem(brain, blob):
    """Chunks added, then k updates with a budget above the event count: k MLEM iterations."""
    live = LiveRecon(brain, GRID, tof=True, randoms=False, sensitivity_samples=SAMPLES)
    for chunk in np.array_split(blob, 7):
        live.add(chunk)
    for _ in range(3):
        image = live.update()
    reference = lm_mlem(blob, brain, GRID, iterations=3, tof=True, sensitivity_samples=SAMPLES)
    np.testing.assert_allclose(image.array, reference.array, rtol=1e-4,
                               atol=1e-5 * float(reference.array.max()))
    assert image.meta["events"] == len(blob) and live.updates == 3


def test_live_with_randoms_and_attenuation_is_mlem_too(brain, blob):
    """Delayeds (fan-sum randoms, per-crystal factors in the kernel) and a mu-map: still the
    LM-MLEM of the same data, chunk boundaries and subsets notwithstanding."""
    rng = np.random.default_rng(22)
    n_r = len(blob) // 4
    randoms = []
    for delayed in (0, 1):
        lors = sample_pairs(brain, n_r, rng, brain.acquisition["min_sector_difference"])
        r = np.zeros(n_r, COINC_DTYPE)
        r["crystal_a"], r["crystal_b"] = lors.crystal_a, lors.crystal_b
        r["dt"] = rng.integers(0, brain.acquisition["coincidence_window_ps"], n_r)
        r["delayed"] = delayed
        randoms.append(r)
    data = np.concatenate([blob, *randoms])[rng.permutation(len(blob) + 2 * n_r)]
    x, y, z = GRID.centres_mm()
    mu = np.where(x ** 2 + y ** 2 + z ** 2 <= 20.0 ** 2, 0.0096, 0.0).astype(np.float32)
    live = LiveRecon(brain, GRID, tof=True, randoms=True, mu_map=mu, sensitivity_samples=SAMPLES)
    for chunk in np.array_split(data, 5):
        live.add(chunk)
    for _ in range(2):
        image = live.update()
    reference = lm_mlem(data, brain, GRID, iterations=2, tof=True, randoms="delayed", mu_map=mu,
                        sensitivity_samples=SAMPLES)
    np.testing.assert_allclose(image.array, reference.array, rtol=1e-3,
                               atol=1e-4 * float(reference.array.max()))
    assert live.n_delayeds == n_r


def test_live_grows_with_the_data_and_bounds_each_update(brain, blob):
    live = LiveRecon(brain, GRID, tof=True, randoms=False, max_events_per_update=10_000,
                     sensitivity_samples=SAMPLES)
    assert live.image.array.sum() == 0
    totals = []
    for chunk in np.array_split(blob, 4):
        live.add(chunk)
        live.update()
        totals.append(float(live.image.array.sum()))
    # the image counts expected annihilations so far: it grows with the prompts
    expected = np.cumsum([len(c) for c in np.array_split(blob, 4)]) / len(blob)
    np.testing.assert_allclose(np.array(totals) / totals[-1], expected, rtol=0.08)
    final = live.finish()
    assert live.updates == 4 + int(np.ceil(len(blob) / 10_000))
    emitted = 200_000 / crystal_efficiency(brain) ** 2
    assert final.array.sum() == pytest.approx(emitted, rel=0.05)
    assert final.meta["events"] == len(blob)


def test_live_add_and_update_from_two_threads(brain, blob):
    live = LiveRecon(brain, GRID, tof=False, max_events_per_update=20_000,
                     sensitivity_samples=SAMPLES)
    chunks = np.array_split(blob, 20)
    errors = []

    def feed():
        try:
            for c in chunks:
                live.add(c)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=feed)
    thread.start()
    while thread.is_alive():
        live.update()
    thread.join()
    live.update()
    assert not errors
    assert live.n_prompts == len(blob)
    assert np.isfinite(live.image.array).all() and live.image.array.sum() > 0


def test_live_rejects_bad_input(brain):
    with pytest.raises(UserError, match="max_events_per_update"):
        LiveRecon(brain, GRID, max_events_per_update=0)
    live = LiveRecon(brain, GRID, sensitivity_samples=SAMPLES)
    with pytest.raises(UserError, match="field"):
        live.add(np.zeros(4, [("t", np.int64)]))
    bad = np.zeros(3, COINC_DTYPE)
    bad["crystal_b"] = 1
    bad["delayed"][2] = 1
    bad["crystal_a"][2] = brain.n_crystals
    with pytest.raises(UserError, match=f"crystal {brain.n_crystals}"):
        live.add(bad)
    assert live.n_prompts == 0 and live.n_delayeds == 0
