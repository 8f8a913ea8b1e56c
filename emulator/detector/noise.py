"""Noise triggers of the scanner's noisy channels: a Poisson stream of deposits per channel, with
a flat spectrum from 0 to ``MAX_KEV``.

A noisy channel (``[crystals] noisy``) triggers on its own, from SiPM dark counts, crosstalk or an
oscillating front end: its singles rate rises while its crystal's photons are detected as
before. Below the trigger threshold the electronics drop them; in the energy window they make
singles and random coincidences like any photon.
"""

from __future__ import annotations

import numpy as np

from emulator import records

#: The noise's spectrum: flat from 0 to this (keV).
MAX_KEV = 700.0
#: Decay ids of noise triggers start here (above the source's and Lu-176's).
NOISE_ID_BASE = 1 << 52


def deposits(noisy: tuple[tuple[int, float], ...], t_a: int, t_b: int,
             seed: list[int]) -> np.ndarray:
    """The noise triggers in [t_a, t_b) ps of every ``(crystal, rate_cps)`` as deposits
    (:data:`emulator.records.DEPOSIT_DTYPE`, not in time order), drawn from ``seed`` (the slice's);
    each its own decay id, so that noise piling onto a photon counts as pile-up."""
    rs = np.random.default_rng(seed)
    counts = [rs.poisson(rate * (t_b - t_a) * 1e-12) for _, rate in noisy]
    out = np.zeros(sum(counts), records.DEPOSIT_DTYPE)
    out["crystal"] = np.repeat([c for c, _ in noisy], counts)
    out["t"] = rs.integers(t_a, t_b, out.size) if t_b > t_a else t_a
    out["energy"] = rs.uniform(0.0, MAX_KEV, out.size)
    out["decay"] = NOISE_ID_BASE + rs.integers(0, 1 << 50, out.size)
    out["kind"] = records.NOISE
    return out
