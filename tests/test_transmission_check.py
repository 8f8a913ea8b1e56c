"""The Lu-176 transmission count of docs/attenuation.md: a blank's asymmetric pairs across the
bore are the crystals' own transmission, a head takes about half of them, and at 1 MBq already
most pairs in the gammas' window are scattered annihilation photons, which the flight time
does not sort out."""

from __future__ import annotations

import numpy as np
import pytest

from recon.calibration.transmissioncheck import (
    Settings,
    measure,
    table,
    transmission_pairs,
)


def test_pairs_are_two_singles_alone_in_the_window_one_in_the_gammas_window():
    singles = np.zeros(7, [("t", np.int64), ("crystal", np.int32), ("energy", np.float32)])
    singles["t"] = [0, 1000, 10_000, 11_000, 12_000, 30_000, 31_000]
    singles["energy"] = [300, 450, 300, 450, 450, 300, 250]
    gamma, other = transmission_pairs(singles, Settings(window_ps=3000))
    # the first pair; not the three within 3 ns; not two in the gammas' window
    assert gamma.tolist() == [0] and other.tolist() == [1]


def test_a_blank_and_a_head_with_and_without_activity(brain):
    settings = Settings()
    blank = measure(brain, "blank", 0.0, 1.0, 3, settings)
    head = measure(brain, "brain", 0.0, 1.0, 3, settings)
    hot = measure(brain, "brain", 1.0, 0.5, 3, settings)
    assert blank.lu176_per_s / blank.pairs_per_s > 0.99 and blank.lu176_in_tof > 0.9
    assert blank.lu176_per_s == pytest.approx(5.6e3, rel=0.1)      # 5.62 k/s over 4 s
    assert 0.4 < head.lu176_per_s / blank.lu176_per_s < 0.65        # 0.53 over 4 s
    assert hot.lu176_per_s / hot.pairs_per_s < 0.3                  # 0.145 over 4 s
    assert hot.others_in_tof > 0.5                                  # 0.70: TOF keeps them
    assert len(table([blank, head, hot])) == 5
