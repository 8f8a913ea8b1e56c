"""coincidence.sort against a plain-Python reference written from coincidence/SEMANTICS.md."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import coincidence
from hw import COINC_DTYPE, SINGLE_DTYPE, UserError, load_scanner

SCANNER = load_scanner("bedside-brain")
W = 1000  # ps: small, so that random streams are dense
D = 2500  # ps
ENERGY_WINDOW = (435.0, 585.0)


def reference(singles, *, window, energy_window, policy, delay, msd, mrd, mode):
    """The semantics, one statement at a time, in plain Python."""
    lo, hi = energy_window
    kept = [(int(t), int(c), float(e), k) for k, (t, c, e) in enumerate(singles.tolist())
            if lo <= e < hi]
    s = sorted(kept, key=lambda x: (x[0], x[1], x[3]))
    n = len(s)
    module, ring, n_mod = SCANNER.crystal_module, SCANNER.crystal_ring, SCANNER.n_modules

    def good(p, q):
        d = abs(int(module[s[p][1]]) - int(module[s[q][1]]))
        ok = min(d, n_mod - d) >= msd and s[p][1] != s[q][1]  # never a crystal with itself
        return ok and (mrd is None or abs(int(ring[s[p][1]]) - int(ring[s[q][1]])) <= mrd)

    def esum(pair):
        return s[pair[0]][2] + s[pair[1]][2]

    def policy_keeps(pairs):
        goods = [pq for pq in pairs if good(*pq)]
        if len(pairs) <= 1:
            return goods
        winner = max(pairs, key=esum)  # max() returns the first of equal maxima
        if policy == "takeAllGoods":
            return goods
        if policy == "takeWinnerOfGoods":
            return [max(goods, key=esum)] if goods else []
        if policy == "takeWinnerIfIsGood":
            return [winner] if good(*winner) else []
        if policy == "takeWinnerIfAllAreGoods":
            return [winner] if len(goods) == len(pairs) else []
        if policy == "killAll":
            return []
        assert policy == "killAllIfMultipleGoods"
        return goods if len(goods) == 1 else []

    windows = []  # (opener, singles in the window, singles that pair)
    if mode == "single-window":
        i = 0
        while i < n:
            members = [k for k in range(i, n) if s[k][0] < s[i][0] + window]
            windows.append((i, members, members))
            i = members[-1] + 1
    else:
        for i in range(n):
            windows.append((i, [k for k in range(i, n) if s[k][0] < s[i][0] + window], [i]))

    rows = []
    for o, members, pairing in windows:
        prompts = [(p, q) for p in pairing for q in members if q > p]
        rows += [(a, b, 0) for a, b in policy_keeps(prompts)]
        if delay is not None:
            late = [x for x in range(n) if s[o][0] + delay <= s[x][0] < s[o][0] + delay + window]
            delayed = [(p, x) for p in pairing for x in late if s[p][0] + delay <= s[x][0]]
            among_late = [(x, y) for x in late for y in late if x < y]
            candidates = sorted(prompts + delayed + (among_late if mode == "single-window" else []))
            rows += [(a, b, 1) for a, b in policy_keeps(candidates) if (a, b) in delayed]
    rows.sort(key=lambda r: (r[0], r[2], r[1]))
    out = np.zeros(len(rows), COINC_DTYPE)
    for k, (a, b, flag) in enumerate(rows):
        shift = delay if flag else 0
        out[k] = (s[a][0], s[a][1], s[b][1], s[a][2], s[b][2], s[b][0] - s[a][0] - shift, flag)
    return out


# a few crystals in sectors 0, 1, 2, 8, 9, 15 and rings 0, 1, 5, 40
_CRYSTALS = [r * SCANNER.crystals_per_ring + m * 16 + k
             for r, m, k in [(0, 0, 0), (0, 0, 7), (1, 1, 3), (5, 2, 0), (0, 8, 8), (40, 8, 1),
                             (1, 9, 15), (0, 15, 4), (5, 15, 15)]]
_ENERGIES = [300.0, 435.0, 440.0, 470.5, 500.0, 511.0, 511.0, 584.9, 585.0, 620.0]
# near multiples of 250 ps, so that lags often fall on W = 1000 and D = 2500 or 1 ps either side
_GAPS = [0, 0, 1, 249, 250, 250, 251, 500, 999, 1000, 1001, 1500, 2499, 2500, 2501]


@st.composite
def streams(draw, max_size=28):
    n = draw(st.integers(0, max_size))
    gaps = draw(st.lists(st.one_of(st.sampled_from(_GAPS), st.integers(0, 3 * W)),
                         min_size=n, max_size=n))
    t0 = draw(st.integers(-10**12, 10**12))
    s = np.zeros(n, SINGLE_DTYPE)
    s["t"] = t0 + np.cumsum(np.asarray(gaps, np.int64))
    s["crystal"] = draw(st.lists(st.sampled_from(_CRYSTALS), min_size=n, max_size=n))
    s["energy"] = draw(st.lists(st.sampled_from(_ENERGIES), min_size=n, max_size=n))
    if draw(st.booleans()):
        s = s[np.asarray(draw(st.permutations(range(n))), np.int64)]
    return s


def _check(singles, policy, mode, delay, msd, mrd):
    got = coincidence.sort(singles, scanner=SCANNER, window_ps=W, energy_window_kev=ENERGY_WINDOW,
                           policy=policy, delay_ps=delay, min_sector_difference=msd,
                           max_ring_difference=mrd, mode=mode)
    want = reference(singles, window=W, energy_window=ENERGY_WINDOW, policy=policy, delay=delay,
                     msd=msd, mrd=mrd, mode=mode)
    assert got.dtype == COINC_DTYPE
    assert got.tolist() == want.tolist()
    return got


@pytest.mark.parametrize("mode", coincidence.MODES)
@pytest.mark.parametrize("policy", coincidence.POLICIES)
@settings(max_examples=40, deadline=None)
@given(singles=streams(), delay=st.sampled_from([None, D, W]), msd=st.integers(0, 3),
       mrd=st.sampled_from([None, 0, 1, 4]))
def test_matches_reference(policy, mode, singles, delay, msd, mrd):
    _check(singles, policy, mode, delay, msd, mrd)


@settings(max_examples=30, deadline=None)
@given(singles=streams(max_size=60), policy=st.sampled_from(coincidence.POLICIES),
       mode=st.sampled_from(coincidence.MODES))
def test_dense_streams_with_many_multiples(singles, policy, mode):
    """Bursts of singles within one window: triples and more on every draw."""
    singles["t"] = singles["t"] // 8  # gaps now mostly well inside the window
    _check(singles, policy, mode, D, 2, None)


def _singles(rows):
    s = np.zeros(len(rows), SINGLE_DTYPE)
    for k, row in enumerate(rows):
        s[k] = row
    return s


# crystals of sectors 0, 4, 8 (ring 0) and 1 (next to sector 0)
S0, S1, S4, S8 = 0, 16, 64, 128


def _pairs(coinc):
    return [(int(c["crystal_a"]), int(c["crystal_b"]), int(c["delayed"])) for c in coinc]


@pytest.mark.parametrize(("policy", "expected"), [
    ("takeAllGoods", [(S0, S4, 0), (S0, S8, 0), (S4, S8, 0)]),
    ("takeWinnerOfGoods", [(S4, S8, 0)]),
    ("takeWinnerIfIsGood", [(S4, S8, 0)]),
    ("takeWinnerIfAllAreGoods", [(S4, S8, 0)]),
    ("killAll", []),
    ("killAllIfMultipleGoods", []),
])
def test_policies_on_a_triple_of_good_pairs(policy, expected):
    triple = _singles([(0, S0, 450.0), (100, S4, 500.0), (200, S8, 520.0)])
    got = coincidence.sort(triple, scanner=SCANNER, window_ps=W, policy=policy,
                           min_sector_difference=2)
    assert _pairs(got) == expected


@pytest.mark.parametrize(("policy", "expected"), [
    ("takeAllGoods", [(S0, S8, 0), (S1, S8, 0)]),
    ("takeWinnerOfGoods", [(S1, S8, 0)]),
    ("takeWinnerIfIsGood", []),  # the winner (S0, S1) is in neighbouring sectors
    ("takeWinnerIfAllAreGoods", []),
    ("killAll", []),
    ("killAllIfMultipleGoods", []),
])
def test_policies_when_the_winner_is_bad(policy, expected):
    triple = _singles([(0, S0, 560.0), (100, S1, 570.0), (200, S8, 440.0)])
    got = coincidence.sort(triple, scanner=SCANNER, window_ps=W, policy=policy,
                           min_sector_difference=2)
    assert _pairs(got) == expected


def test_kill_all_if_multiple_goods_keeps_a_lone_good_pair():
    s2 = 32  # sector 2: good with sector 0 only
    triple = _singles([(0, S0, 560.0), (100, S1, 570.0), (200, s2, 440.0)])
    for policy, expected in [("killAllIfMultipleGoods", [(S0, s2, 0)]), ("killAll", [])]:
        got = coincidence.sort(triple, scanner=SCANNER, window_ps=W, policy=policy,
                               min_sector_difference=2)
        assert _pairs(got) == expected


def test_single_window_versus_multi_window():
    # 0 opens [0, W); 600 is in it; 1200 is not, so in single-window mode it opens [1200, 2200)
    chain = _singles([(0, S0, 511.0), (600, S8, 511.0), (1200, S4, 511.0)])
    single = coincidence.sort(chain, scanner=SCANNER, window_ps=W, min_sector_difference=2)
    multi = coincidence.sort(chain, scanner=SCANNER, window_ps=W, min_sector_difference=2,
                             mode="multi-window")
    assert _pairs(single) == [(S0, S8, 0)]
    assert _pairs(multi) == [(S0, S8, 0), (S8, S4, 0)]


def test_record_fields_tie_order_and_delayed_dt():
    s = _singles([(5000, S8, 500.0), (5000, S0, 510.0), (5000 + D + 300, S4, 505.0)])
    got = coincidence.sort(s, scanner=SCANNER, window_ps=W, delay_ps=D, min_sector_difference=2)
    # tie in t: the lower crystal id is a; the delayed partner of both, in [t0 + D, t0 + D + W)
    assert got.tolist() == [
        (5000, S0, S8, 510.0, 500.0, 0, 0),
        (5000, S0, S4, 510.0, 505.0, 300, 1),
        (5000, S8, S4, 500.0, 505.0, 300, 1),
    ]
    assert np.all(np.diff(got["t"]) >= 0)


def test_empty_and_all_rejected_inputs():
    empty = coincidence.sort(np.zeros(0, SINGLE_DTYPE), scanner=SCANNER, window_ps=W, delay_ps=D)
    assert empty.dtype == COINC_DTYPE and empty.size == 0
    low = _singles([(0, S0, 100.0), (10, S8, 100.0)])
    assert coincidence.sort(low, scanner=SCANNER).size == 0


def test_defaults_come_from_the_scanner():
    s = coincidence.Sorter(scanner=SCANNER).settings
    acq = SCANNER.acquisition
    assert s.window_ps == acq["coincidence_window_ps"]
    assert s.energy_window_kev == tuple(acq["energy_window_kev"])
    assert s.min_sector_difference == acq["min_sector_difference"]
    assert s.delay_ps is None and s.policy == "takeAllGoods" and s.mode == "single-window"
    assert s.as_dict()["energy_window_kev"] == list(acq["energy_window_kev"])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"policy": "takeAll"}, "unknown policy 'takeAll': valid policies are takeAllGoods, "),
    ({"mode": "double"}, "unknown mode 'double'"),
    ({"window_ps": 0}, "window_ps must be in 1.."),
    ({"window_ps": -5}, "window_ps must be in 1.."),
    ({"window_ps": 2.5}, "window_ps must be an integer"),
    ({"delay_ps": 100}, "delay_ps must be at least the window (4000 ps), got 100"),
    ({"energy_window_kev": (600, 500)}, "energy_window_kev must be (low, high)"),
    ({"energy_window_kev": "wide"}, "energy_window_kev must be (low, high)"),
    ({"min_sector_difference": 9}, "min_sector_difference must be in 0..8"),
    ({"max_ring_difference": -1}, "max_ring_difference must be >= 0"),
])
def test_bad_settings_are_one_line_user_errors(kwargs, message):
    with pytest.raises(UserError) as err:
        coincidence.sort(np.zeros(1, SINGLE_DTYPE), scanner=SCANNER, **kwargs)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_crystal_outside_the_scanner_is_named():
    s = _singles([(0, S0, 511.0), (5, SCANNER.n_crystals, 511.0), (9, -3, 511.0)])
    with pytest.raises(UserError, match=r"single 1 has crystal id 12288, outside 0..12287"):
        coincidence.sort(s, scanner=SCANNER)


def test_not_singles_and_spect_scanner_are_refused():
    with pytest.raises(UserError, match="SINGLE_DTYPE"):
        coincidence.sort(np.zeros(3), scanner=SCANNER)
    with pytest.raises(UserError, match="SINGLE_DTYPE"):
        coincidence.Sorter(scanner=SCANNER).feed([(0, 1, 511.0)])
    with pytest.raises(UserError, match="needs a PET scanner"):
        coincidence.sort(np.zeros(1, SINGLE_DTYPE), scanner=load_scanner("spect-dual-head"))
