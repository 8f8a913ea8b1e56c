"""Coincidence sorting and the monitor's kernels: pure array code (numba), no I/O.

Singles (``hw.SINGLE_DTYPE``: t int64 ps, crystal, energy keV) become prompt and delayed
coincidences (``hw.COINC_DTYPE``) by :func:`sort` (one call) or :class:`Sorter` (fed chunk by
chunk; the same output for any chunking). Exact semantics (also in ``coincidence/SEMANTICS.md``):

1. Energy window first: only singles with ``lo <= E < hi`` take part.
2. Time order: by t, ties by crystal id, then input position (stable). Unordered input is sorted.
3. Single-window mode (default): a single opens ``[t0, t0 + W)`` only if it fell into no open
   window; every single with t in it joins; the window's pairs are all pairs ``i < j``.
   Multi-window mode: every single opens its own window; its pairs are (opener, later single).
4. Good pair: two crystals (never one with itself), circular sector difference >=
   ``min_sector_difference`` (and, if given, crystal ring difference <= ``max_ring_difference``).
5. One pair: kept if good. Two or more: the policy, with the winner = largest ``E_a + E_b`` (first
   pair in (a, b) order on ties): ``takeAllGoods`` every good pair; ``takeWinnerOfGoods`` the best
   good pair; ``takeWinnerIfIsGood`` the winner if good; ``takeWinnerIfAllAreGoods`` the winner if
   all pairs are good; ``killAll`` nothing; ``killAllIfMultipleGoods`` the good pair if exactly one.
6. Delayed window (``delay_ps=D >= W``): the singles in ``[t0 + D, t0 + D + W)``. Its delayed
   pairs are (p, x): p a single that pairs in the window (single-window: each; multi-window: the
   opener), x a delayed single with ``t_x - D >= t_p``. The policy is applied to the delayed pairs
   together with the window's own pairs (single-window: and the pairs of delayed singles); the
   kept delayed pairs are output, flagged ``delayed``. With takeAllGoods their count is an
   unbiased estimate of the random prompts.
7. ``crystal_a`` is the earlier single; ``t = t_a``; ``dt = t_b - t_a >= 0`` (delayeds:
   ``t_b - D - t_a`` in ``[0, W)``).
8. Output ordered by single a's position, prompts before delayeds, then by single b: t never
   decreases.

Also: :func:`merge_sorted` / :func:`sort_nearly_sorted` (time order of boards' streams),
:mod:`coincidence.spect` (energy windows, TEW scatter, projections) and
:mod:`coincidence.histograms` (energy spectra, dt histogram, hit map, sinogram).
"""

import hw  # noqa: F401  (first: it configures numba's disk cache)
from coincidence.settings import MODES, POLICIES, Settings, resolve
from coincidence.sorter import Sorter, sort
from coincidence.timeorder import merge_sorted, sort_nearly_sorted

__all__ = [
    "MODES",
    "POLICIES",
    "Settings",
    "Sorter",
    "merge_sorted",
    "resolve",
    "sort",
    "sort_nearly_sorted",
]
