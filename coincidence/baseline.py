"""A vectorised NumPy implementation of takeAllGoods with a delayed window: the baseline that the
numba sorter is measured against in the same run (``petdaq bench``, CI's ratio check).

Same semantics as :func:`coincidence.sort` (single-window mode), same output, written the way a
careful NumPy programmer would (no per-event Python except for the rare over-long windows).
"""

from __future__ import annotations

import numpy as np

from hw.dtypes import COINC_DTYPE


def numpy_take_all_goods(singles: np.ndarray, module: np.ndarray, n_modules: int, window: int,
                         energy_window: tuple[float, float], delay: int, min_sd: int
                         ) -> np.ndarray:
    """takeAllGoods with a delayed window, single-window mode, vectorised with NumPy.

    The semantics of coincidence/SEMANTICS.md: windows from the gaps (a single whose predecessor
    is at least a window earlier opens one; a run of singles spanning more than a window is
    split in a Python loop, rare at these rates), pairs by ``np.repeat``, delayed partners by
    ``np.searchsorted``, output in the sorter's order.
    """
    lo, hi = energy_window
    s = singles[(singles["energy"] >= lo) & (singles["energy"] < hi)]
    t, c = s["t"], s["crystal"]
    if np.any((np.diff(t) < 0) | ((np.diff(t) == 0) & (np.diff(c) < 0))):
        s = s[np.lexsort((c, t))]
        t, c = s["t"], s["crystal"]
    n = t.size
    new = np.ones(n, bool)
    new[1:] = np.diff(t) >= window
    start = np.flatnonzero(new)
    stop = np.append(start[1:], n)
    opener = np.repeat(start, stop - start)
    end = np.repeat(stop, stop - start)  # exclusive end of each single's window
    long = t[stop - 1] - t[start] >= window
    for a, b in zip(start[long], stop[long], strict=True):
        i = a
        while i < b:
            j = i + int(np.searchsorted(t[i:b], t[i] + window))
            opener[i:j], end[i:j] = i, j
            i = j

    def expand(first, count):
        a = np.repeat(np.arange(n), count)
        b = np.repeat(first, count) + np.arange(a.size) - np.repeat(np.cumsum(count) - count, count)
        return a, b

    pa, pb = expand(np.arange(n) + 1, end - np.arange(n) - 1)
    d_lo = np.searchsorted(t, t + delay)
    d_hi = np.searchsorted(t, t[opener] + delay + window)
    da, db = expand(d_lo, np.maximum(d_hi - d_lo, 0))
    a, b = np.concatenate([pa, da]), np.concatenate([pb, db])
    flag = np.concatenate([np.zeros(pa.size, np.uint8), np.ones(da.size, np.uint8)])
    diff = np.abs(module[c[a]] - module[c[b]])
    good = (np.minimum(diff, n_modules - diff) >= min_sd) & (c[a] != c[b])
    a, b, flag = a[good], b[good], flag[good]
    order = np.lexsort((b, flag, a))
    a, b, flag = a[order], b[order], flag[order]
    out = np.empty(a.size, COINC_DTYPE)
    out["t"], out["crystal_a"], out["crystal_b"] = t[a], c[a], c[b]
    out["energy_a"], out["energy_b"] = s["energy"][a], s["energy"][b]
    out["dt"] = t[b] - t[a] - flag.astype(np.int64) * delay
    out["delayed"] = flag
    return out
