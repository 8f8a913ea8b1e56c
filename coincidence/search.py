"""The sorter's numba kernels: energy window, coincidence-window search, policies, delayed window.

The semantics are those of ``coincidence/SEMANTICS.md``; the kernels work on the energy-windowed
singles as three contiguous arrays in time order (t ps int64, crystal int32, energy keV float32).
"""

from __future__ import annotations

import numba
import numpy as np

# policy codes: the index in coincidence.settings.POLICIES
TAKE_ALL_GOODS = 0
TAKE_WINNER_OF_GOODS = 1
TAKE_WINNER_IF_IS_GOOD = 2
TAKE_WINNER_IF_ALL_ARE_GOODS = 3
KILL_ALL = 4
KILL_ALL_IF_MULTIPLE_GOODS = 5

#: Sentinel times (int64 max) after the singles, so that pointers need no bounds checks.
PAD = 3



@numba.njit(nogil=True, cache=True)
def accept(t, crystal, energy, lo, hi, n_crystals, out_t, out_c, out_e, offset, max_moves):
    """Append the singles with ``lo <= energy < hi`` (keV) to ``out_*[:offset]``, in time order.

    ``out_*[:offset]`` must be in time order (t, then crystal) and have room for ``offset +
    t.size``; it is never modified. A single that comes before the previous one (a tie in t, a
    few late singles) is moved back into place, stably, but not below ``offset``; after
    ``max_moves`` such moves, the rest is appended as it comes. Returns ``(end, bad, ordered,
    early)``: the end of ``out_*``; whether a crystal id is outside ``0..n_crystals-1`` (the
    output is then meaningless); whether ``out_*[:end]`` is in time order; the earliest accepted
    time before ``out_t[offset - 1]`` (int64 max if none).
    """
    k = offset
    prev_t = out_t[offset - 1] if offset > 0 else np.iinfo(np.int64).min
    prev_c = out_c[offset - 1] if offset > 0 else np.iinfo(np.int32).min
    floor_t = prev_t
    early = np.iinfo(np.int64).max
    n_c = np.uint32(n_crystals)
    bad = False
    ordered = True
    moves = 0
    for i in range(t.size):
        c = crystal[i]
        ti = t[i]
        e = energy[i]
        bad |= np.uint32(c) >= n_c
        out_t[k] = ti
        out_c[k] = c
        out_e[k] = e
        ok = (e >= lo) & (e < hi)
        if ok & ((ti < prev_t) | ((ti == prev_t) & (c < prev_c))):
            early = min(early, ti) if ti < floor_t else early
            if ordered:
                m = k
                while m > offset and _before(ti, c, out_t[m - 1], out_c[m - 1]):
                    out_t[m], out_c[m], out_e[m] = out_t[m - 1], out_c[m - 1], out_e[m - 1]
                    m -= 1
                out_t[m], out_c[m], out_e[m] = ti, c, e
                moves += k - m
                seam = m == offset > 0 and _before(ti, c, out_t[m - 1], out_c[m - 1])
                ordered = moves <= max_moves and not seam
        else:
            prev_t = ti if ok else prev_t
            prev_c = c if ok else prev_c
        k += ok
    return k, bad, ordered, early


@numba.njit(nogil=True, cache=True, inline="always")
def _before(t1, c1, t2, c2):
    return t1 < t2 or (t1 == t2 and c1 < c2)


@numba.njit(nogil=True, cache=True, inline="always")
def _good(ca, cb, module, ring, n_modules, min_sd, max_rd):
    """Two crystals (never one with itself), circular sector difference >= min_sd and, when
    max_rd >= 0, ring difference <= max_rd."""
    if ca == cb:
        return False
    d = abs(module[ca] - module[cb])
    if min(d, n_modules - d) < min_sd:
        return False
    return max_rd < 0 or abs(ring[ca] - ring[cb]) <= max_rd


@numba.njit(nogil=True, cache=True, inline="always")
def _first_delayed(p, lo, hi, t, delay):
    """The first of the delayed singles [lo, hi) with t >= t_p + delay (search from ``lo``)."""
    tp = t[p] + delay
    while lo < hi and t[lo] < tp:
        lo += 1
    return lo


@numba.njit(nogil=True, cache=True, inline="always")
def _visit(st, a, b, crystal, energy, module, ring, n_modules, min_sd, max_rd):
    """Fold candidate pair (a, b) into the policy's tally ``st``: (pairs, goods, first good a,
    b, winner a, b, sum, good, best good a, b, sum). Strict > keeps the first of equal sums."""
    n, n_good, ga, gb, wa, wb, w_sum, w_good, bga, bgb, bg_sum = st
    g = _good(crystal[a], crystal[b], module, ring, n_modules, min_sd, max_rd)
    s = np.float64(energy[a]) + np.float64(energy[b])
    if wa < 0 or s > w_sum:
        wa, wb, w_sum, w_good = a, b, s, g
    if g:
        if n_good == 0:
            ga, gb = a, b
        if bga < 0 or s > bg_sum:
            bga, bgb, bg_sum = a, b, s
    return n + 1, n_good + g, ga, gb, wa, wb, w_sum, w_good, bga, bgb, bg_sum


@numba.njit(nogil=True, cache=True, inline="always")
def _choose(policy, delayed, multi, i, last_member, j, dq, hi, t, delay, crystal, energy,
            module, ring, n_modules, min_sd, max_rd):
    """The one pair (a, b) that a winner policy keeps, or (-1, -1).

    Prompts (``delayed`` False): among the window's own pairs. Delayed window: among the own
    pairs, the delayed pairs (p, x) and, in single-window mode, the pairs of delayed singles;
    the caller keeps the result only if it is a delayed pair. Candidates come in (a, b) order;
    one candidate is kept if good; with two or more the policy decides."""
    st = (0, 0, -1, -1, -1, -1, 0.0, False, -1, -1, 0.0)
    lo = dq
    for p in range(i, last_member):
        for q in range(p + 1, j):
            st = _visit(st, p, q, crystal, energy, module, ring, n_modules, min_sd, max_rd)
        if delayed:
            lo = _first_delayed(p, lo, hi, t, delay)
            for x in range(lo, hi):
                st = _visit(st, p, x, crystal, energy, module, ring, n_modules, min_sd, max_rd)
    if delayed and not multi:
        for x in range(dq, hi):
            for y in range(x + 1, hi):
                st = _visit(st, x, y, crystal, energy, module, ring, n_modules, min_sd, max_rd)
    n, n_good, ga, gb, wa, wb, _, w_good, bga, bgb, _ = st
    keep_first_good = n == 1 or policy == KILL_ALL_IF_MULTIPLE_GOODS
    if keep_first_good and n_good == 1:
        return ga, gb
    if not keep_first_good and policy == TAKE_WINNER_OF_GOODS:
        return bga, bgb
    if not keep_first_good and (
        (policy == TAKE_WINNER_IF_IS_GOOD and w_good)
        or (policy == TAKE_WINNER_IF_ALL_ARE_GOODS and n_good == n)
    ):
        return wa, wb
    return -1, -1


@numba.njit(nogil=True, cache=True, inline="always")
def _write(out, k, a, b, t, crystal, energy, shift, flag):
    rec = out[k]
    rec.t = t[a]
    rec.crystal_a = crystal[a]
    rec.crystal_b = crystal[b]
    rec.energy_a = energy[a]
    rec.energy_b = energy[b]
    rec.dt = t[b] - t[a] - shift
    rec.delayed = flag


@numba.njit(nogil=True, cache=True, inline="always")
def _emit_all_goods(out, n_out, search_delayed, i, last_member, j, dq, hi, t, delay, crystal,
                    energy, module, ring, n_modules, min_sd, max_rd):
    """takeAllGoods: write every good prompt and delayed pair, by a, prompts first, then b."""
    lo = dq
    for p in range(i, last_member):
        cp = crystal[p]
        for q in range(p + 1, j):
            if _good(cp, crystal[q], module, ring, n_modules, min_sd, max_rd):
                _write(out, n_out, p, q, t, crystal, energy, 0, 0)
                n_out += 1
        if search_delayed:
            lo = _first_delayed(p, lo, hi, t, delay)
            for q in range(lo, hi):
                if _good(cp, crystal[q], module, ring, n_modules, min_sd, max_rd):
                    _write(out, n_out, p, q, t, crystal, energy, delay, 1)
                    n_out += 1
    return n_out


@numba.njit(nogil=True, cache=True)
def search(t, crystal, energy, module, ring, n_modules, window, delay, min_sd, max_rd,
           policy, multi, start, stop, t_limit, out, n_out):
    """Sort the windows opened by singles ``start..stop - 1`` into coincidences written to
    ``out[n_out:]`` (COINC_DTYPE).

    ``t`` ends with ``PAD`` sentinels (int64 max) that are not singles. ``start`` must open a
    window (the first single, or one where an earlier call stopped, or a sync point:
    :func:`coincidence.parallel.sync_points`); the windows' members and delayed singles may lie
    beyond ``stop``.

    Windows are processed in order while their search horizon (t0 + window, plus the delay when
    ``delay >= 0``) is at most ``t_limit``: every single before it must be present. Stops early,
    before a window whose coincidences might not fit in ``out``. Returns ``(next, n_out, full)``:
    where to resume (the next window's first single), the new output count, and whether it
    stopped for room. ``max_rd < 0``: no ring cut; ``delay < 0``: no delayed window.
    """
    n = min(t.size - PAD, stop)
    cap = out.size
    search_delayed = delay >= 0
    i = start
    dq = start  # first single at or after t0 + delay
    hi = start  # first single at or after t0 + delay + window
    while i < n:
        t0 = t[i]
        end = t0 + window
        if (end + delay if search_delayed else end) > t_limit:
            return i, n_out, False
        j = i + 1
        while t[j] < end:
            j += 1
        last_member = i + 1 if multi else j
        m = last_member - i
        n_cand = j - i - 1 if multi else m * (m - 1) // 2
        if search_delayed:
            d_start = t0 + delay
            # three independent loads, not a chain: the common case in one step
            dq += (t[dq] < d_start) + (t[dq + 1] < d_start) + (t[dq + 2] < d_start)
            while t[dq] < d_start:
                dq += 1
            d_end = d_start + window
            hi = dq
            while t[hi] < d_end:
                hi += 1
            n_cand += m * (hi - dq)  # at least the delayed candidates
        if n_cand > 0:
            if n_out + n_cand > cap:
                return i, n_out, True
            if policy == TAKE_ALL_GOODS:
                n_out = _emit_all_goods(out, n_out, search_delayed, i, last_member, j, dq, hi, t,
                                        delay, crystal, energy, module, ring, n_modules, min_sd,
                                        max_rd)
            else:
                pa, pb = _choose(policy, False, multi, i, last_member, j, dq, hi, t, delay,
                                 crystal, energy, module, ring, n_modules, min_sd, max_rd)
                da, db = -1, -1
                if hi > dq:
                    da, db = _choose(policy, True, multi, i, last_member, j, dq, hi, t, delay,
                                     crystal, energy, module, ring, n_modules, min_sd, max_rd)
                    if not da < j <= db:  # the window's own pair or two delayed singles
                        da, db = -1, -1
                if pa >= 0 and (da < 0 or pa <= da):
                    _write(out, n_out, pa, pb, t, crystal, energy, 0, 0)
                    n_out += 1
                if da >= 0:
                    _write(out, n_out, da, db, t, crystal, energy, delay, 1)
                    n_out += 1
                if pa > da >= 0:
                    _write(out, n_out, pa, pb, t, crystal, energy, 0, 0)
                    n_out += 1
        i = i + 1 if multi else j
    return i, n_out, False
