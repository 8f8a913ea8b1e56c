"""Which events of a list-mode fall between given times: slices of a time-ordered one, masks of another."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def events_between(t: np.ndarray, bounds: Sequence[tuple[float, float]]
                   ) -> list[slice | np.ndarray]:
    """For each ``[a, b)`` of ``bounds`` (in the units of ``t``, the events' times; -inf and
    inf allowed), the events in it: a slice where ``t`` is in time order (a run's list-mode:
    searched, not scanned), else a boolean mask."""
    if t.size == 0 or bool(np.all(t[1:] >= t[:-1])):
        return [slice(int(np.searchsorted(t, a)), int(np.searchsorted(t, b))) for a, b in bounds]
    return [(t >= a) & (t < b) for a, b in bounds]
