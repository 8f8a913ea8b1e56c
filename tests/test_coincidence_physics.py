"""The sorter on emulated acquisitions with truth: randoms and time of flight.

A prompt is random when its two singles come from different decays (the emulator's truth; the
scanner's own Lu-176 decays included). Point source at the centre of bedside-brain, in air.
"""

from __future__ import annotations

import numpy as np
import pytest

import coincidence
import emulator
from coincidence import histograms
from hw import load_scanner

BRAIN = load_scanner("bedside-brain")
DELAY = BRAIN.acquisition["delay_ps"]
WINDOW = BRAIN.acquisition["coincidence_window_ps"]
SWEEP = [(2.0, 0.2), (10.0, 0.04), (40.0, 0.01)]  # MBq, s: about 3, 10 and 35 Mcps of singles


@pytest.fixture(scope="module")
def acquisitions():
    """(activity, prompts, random flags, delayed count) per activity of the sweep."""
    out = []
    for k, (mbq, seconds) in enumerate(SWEEP):
        sim = emulator.simulate(BRAIN, phantom="point", activity_mbq=mbq, duration_s=seconds,
                                seed=100 + k, truth=True)
        singles, decay = sim.singles, sim.truth["decay"]
        coinc = coincidence.sort(singles, scanner=BRAIN, delay_ps=DELAY)
        key = singles["t"] * BRAIN.n_crystals + singles["crystal"]
        order = np.argsort(key)
        assert np.all(np.diff(key[order]) > 0)  # (t, crystal) names a single

        def decay_of(t, crystal, order=order, key=key, decay=decay):
            return decay[order[np.searchsorted(key[order], t * BRAIN.n_crystals + crystal)]]

        prompts = coinc[coinc["delayed"] == 0]
        random = decay_of(prompts["t"], prompts["crystal_a"]) != \
            decay_of(prompts["t"] + prompts["dt"], prompts["crystal_b"])
        out.append((mbq, prompts, random, int(coinc["delayed"].sum())))
    return out


def test_delayed_count_matches_truth_randoms_over_an_activity_sweep(acquisitions):
    fractions = []
    for mbq, prompts, random, delayeds in acquisitions:
        randoms = int(random.sum())
        assert randoms > 300, mbq
        # the two counts agree within Poisson noise (4 sigma: three comparisons are made)
        assert abs(delayeds - randoms) < 4 * np.sqrt(delayeds + randoms), (mbq, randoms, delayeds)
        fractions.append(randoms / prompts.size)
    # randoms grow as activity squared, trues as activity: the random fraction rises
    assert fractions[0] < fractions[1] < fractions[2]


def test_trues_time_differences_are_centred_with_the_scanners_ctr(acquisitions):
    _, prompts, random, _ = acquisitions[0]
    trues = prompts[~random]
    bin_ps = 25
    hist = np.zeros(2 * WINDOW // bin_ps, np.int64)
    assert histograms.accumulate_dt(trues, hist, WINDOW) == 0
    centres = -WINDOW + bin_ps * (np.arange(hist.size) + 0.5)
    n = hist.sum()
    mean = (hist * centres).sum() / n
    fwhm = 2.355 * np.sqrt((hist * (centres - mean) ** 2).sum() / n)
    ctr = BRAIN.response.ctr_ps
    assert n > 20_000
    assert abs(mean) < 3 * ctr / 2.355 / np.sqrt(n) + 2.0  # ps; a centred source
    assert fwhm == pytest.approx(ctr, rel=0.08)
