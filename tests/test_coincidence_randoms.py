"""The delayed window estimates the random prompts: checked against truth on synthetic streams.

The stream is built here with its truth (which decay each single came from): annihilations at
Poisson times, each photon detected with some probability in roughly opposite crystals, time
jitter from the scanner's CTR, energies from a photopeak plus a continuum. A prompt is random when
its two singles come from different decays.
"""

from __future__ import annotations

import numpy as np
import pytest

import coincidence
from hw import SINGLE_DTYPE, load_scanner

BRAIN = load_scanner("bedside-brain")
DELAY = BRAIN.acquisition["delay_ps"]


def _stream(rng: np.random.Generator, singles_cps: float, duration_s: float,
            efficiency: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """Singles (time-ordered) and the decay each came from."""
    n = rng.poisson(singles_cps * duration_s / (2 * efficiency))
    t_decay = rng.integers(0, int(duration_s * 1e12), n)
    cpr = BRAIN.crystals_per_ring
    ring, tang = rng.integers(0, BRAIN.n_rings, n), rng.integers(0, cpr, n)
    ring_b = np.clip(ring + rng.integers(-6, 7, n), 0, BRAIN.n_rings - 1)
    tang_b = (tang + cpr // 2 + rng.integers(-30, 31, n)) % cpr
    sigma_ps = BRAIN.response.ctr_ps / 2.355 / np.sqrt(2)
    t = np.concatenate([t_decay + rng.normal(0, sigma_ps, n), t_decay + rng.normal(0, sigma_ps, n)])
    crystal = np.concatenate([ring * cpr + tang, ring_b * cpr + tang_b])
    decay = np.concatenate([np.arange(n), np.arange(n)])
    seen = rng.random(2 * n) < efficiency
    s = np.zeros(seen.sum(), SINGLE_DTYPE)
    s["t"], s["crystal"] = np.rint(t[seen]), crystal[seen]
    m = s.size
    s["energy"] = np.where(rng.random(m) < 0.7, rng.normal(511, 25, m), rng.uniform(440, 500, m))
    order = np.argsort(s["t"], kind="stable")
    return s[order], decay[seen][order]


def _prompts_randoms_delayeds(singles, decay, **kw) -> tuple[int, int, int]:
    coinc = coincidence.sort(singles, scanner=BRAIN, delay_ps=DELAY, **kw)
    key = singles["t"] * BRAIN.n_crystals + singles["crystal"]  # unique here
    order = np.argsort(key)

    def decay_of(t, crystal):
        return decay[order[np.searchsorted(key[order], t * BRAIN.n_crystals + crystal)]]

    prompts = coinc[coinc["delayed"] == 0]
    a = decay_of(prompts["t"], prompts["crystal_a"])
    b = decay_of(prompts["t"] + prompts["dt"], prompts["crystal_b"])
    return prompts.size, int((a != b).sum()), int(coinc["delayed"].sum())


@pytest.mark.parametrize("mode", coincidence.MODES)
def test_delayeds_match_truth_randoms_over_an_activity_sweep(mode):
    rng = np.random.default_rng(2026)
    for singles_cps, duration_s in [(1e6, 1.0), (5e6, 0.2), (20e6, 0.05)]:
        singles, decay = _stream(rng, singles_cps, duration_s)
        prompts, randoms, delayeds = _prompts_randoms_delayeds(singles, decay, mode=mode)
        assert randoms > 2000  # enough to mean something
        assert abs(delayeds - randoms) < 3 * np.sqrt(delayeds + randoms), (singles_cps, prompts)


@pytest.mark.parametrize("policy", coincidence.POLICIES[1:])
def test_delayeds_track_randoms_with_the_other_policies(policy):
    """An approximation for these policies (a few % at 5 Mcps, 4 ns), not an identity."""
    rng = np.random.default_rng(5)
    singles, decay = _stream(rng, 5e6, 0.3)
    _, randoms, delayeds = _prompts_randoms_delayeds(singles, decay, policy=policy)
    assert abs(delayeds / randoms - 1) < 0.06
