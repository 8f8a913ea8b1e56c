"""The sorter on several threads: the energy window by pieces, the window search by slices.

Both give exactly the single-threaded result:

- **Energy window**: each piece of a chunk counts its singles inside the window, then copies them
  to its place (known from the counts before it). Used only when the chunk is in time order
  (t, then crystal) and follows the singles already buffered; anything else goes the
  single-threaded way (:func:`coincidence.search.accept`), which also reports it.
- **Window search**: the buffered singles are cut into slices at *sync points*, singles that
  open a window whatever came before them: in single-window mode a single at least one window
  after the previous single (no window opened earlier can still be open), in multi-window mode
  any single. A slice's windows may read singles beyond it (window members, the delayed window:
  the halo), never write them; the slices' coincidences, one after the other, are those of one
  search over all of them.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np

from coincidence import search
from hw.dtypes import COINC_DTYPE
from infra.pool import Workers

#: Singles per piece of the energy window and per slice of the search (cache-sized work).
PIECE = 1 << 16
PieceWriter = Callable[[int, tuple[np.ndarray, ...], int], tuple[bool, bool]]
"""``write(piece, (t, crystal, energy), start) -> (bad crystal id, in time order)``: writes a
piece's singles from ``start`` of the columns (:func:`write_pieces`)."""


@numba.njit(nogil=True, cache=True)
def count_in_window(energy, lo, hi):
    """How many of ``energy`` (keV) lie in [lo, hi)."""
    n = 0
    for i in range(energy.size):
        n += (energy[i] >= lo) & (energy[i] < hi)
    return n


@numba.njit(nogil=True, cache=True)
def copy_in_window(t, crystal, energy, lo, hi, n_crystals, out_t, out_c, out_e, offset):
    """Copy the singles with ``lo <= energy < hi`` to ``out_*[offset:]``. Returns whether a
    crystal id is outside ``0..n_crystals-1`` and whether the copied singles are in time order
    (t, then crystal)."""
    k = offset
    bad = False
    ordered = True
    prev_t = np.iinfo(np.int64).min
    prev_c = np.iinfo(np.int32).min
    n_c = np.uint32(n_crystals)
    for i in range(t.size):
        e = energy[i]
        if (e >= lo) & (e < hi):
            ti, c = t[i], crystal[i]
            bad |= np.uint32(c) >= n_c
            ordered &= (ti > prev_t) | ((ti == prev_t) & (c >= prev_c))
            prev_t, prev_c = ti, c
            out_t[k], out_c[k], out_e[k] = ti, c, e
            k += 1
    return bad, ordered


@numba.njit(nogil=True, cache=True)
def sync_points(t, lo, bound, window, multi, n_slices):
    """Slice starts for the window search over singles ``lo..bound - 1`` (time-ordered ``t``):
    ``lo`` and then about every ``(bound - lo) / n_slices`` singles the next sync point (a single
    at least ``window`` after the previous one; any single in multi-window mode), each before
    ``bound``. Returns them ascending, without repeats."""
    out = np.empty(n_slices, np.int64)
    out[0] = lo
    m = 1
    step = max((bound - lo) // n_slices, 1)
    for s in range(1, n_slices):
        i = max(lo + s * step, out[m - 1] + 1)
        if not multi:
            while i < bound and t[i] - t[i - 1] < window:
                i += 1
        if i >= bound:
            break
        out[m] = i
        m += 1
    return out[:m]


def in_order_after(t: np.ndarray, c: np.ndarray, last_t: int, last_c: int) -> bool:
    """Whether (t[0], c[0]) does not come before (last_t, last_c) in time order."""
    return t.size == 0 or t[0] > last_t or (t[0] == last_t and c[0] >= last_c)


def accept_pieces(workers: Workers, t_in: np.ndarray, c_in: np.ndarray, e_in: np.ndarray,
                  window_kev: tuple[float, float], n_crystals: int, out: tuple[np.ndarray, ...],
                  offset: int) -> int | None:
    """The energy window of a time-ordered chunk, piece by piece on ``workers``, appended to the
    arrays ``out`` (t, crystal, energy) at ``offset``. Returns the new end, or None when the
    chunk is not in time order or has a bad crystal id (the single-threaded way must then do
    it; ``out[:offset]`` is untouched either way)."""
    lo, hi = window_kev
    n_pieces = max(1, -(-t_in.size // PIECE))
    bounds = [min(k * PIECE, t_in.size) for k in range(n_pieces + 1)]
    counts = workers.map(lambda k: count_in_window(e_in[bounds[k]:bounds[k + 1]], lo, hi),
                         n_pieces, "sort")

    def write(k: int, columns: tuple[np.ndarray, ...], start: int) -> tuple[bool, bool]:
        a, b = bounds[k], bounds[k + 1]
        return copy_in_window(t_in[a:b], c_in[a:b], e_in[a:b], lo, hi, n_crystals, *columns,
                              start)

    return write_pieces(workers, counts, write, out, offset)


def write_pieces(workers: Workers, counts: list[int], write: PieceWriter,
                 out: tuple[np.ndarray, ...], offset: int) -> int | None:
    """Piece ``k``'s ``counts[k]`` singles written by ``write(k, out, start)`` on ``workers``,
    one piece after the other from ``offset`` of ``out`` (t, crystal, energy); ``write`` says
    (bad crystal id, in time order) as :func:`copy_in_window`. Returns the new end, or None when
    a piece had a bad crystal id or the pieces are not in time order (``out[:offset]`` is
    untouched either way)."""
    starts = np.concatenate(([0], np.cumsum(counts))).astype(np.int64) + offset
    flags = workers.map(lambda k: write(k, out, int(starts[k])), len(counts), "sort")
    if any(bad or not ordered for bad, ordered in flags):
        return None
    out_t, out_c = out[0], out[1]
    for k in range(len(counts)):  # seams: each piece's first single after the last before it
        a, b = starts[k], starts[k + 1]
        if a > 0 and b > a and not in_order_after(out_t[a:b], out_c[a:b], out_t[a - 1],
                                                        out_c[a - 1]):
            return None
    return int(starts[-1])


def search_range(kernel_args: tuple, first: int, stop: int | None, t_limit: int,
                 out: np.ndarray, n_out: int) -> tuple[np.ndarray, int, int]:
    """:func:`coincidence.search.search` of the windows opened by singles ``first..stop - 1``
    (None: to the end) up to the horizon ``t_limit``, into ``out[n_out:]``, grown (doubled) as
    it fills. ``kernel_args``: the kernel's arguments before ``start`` (the singles with their
    PAD, the scanner's tables, the settings). Returns the output, its count and where the next
    search starts."""
    stop = kernel_args[0].size if stop is None else stop
    while True:
        first, n_out, full = search.search(*kernel_args, first, stop, t_limit, out, n_out)
        if not full:
            return out, n_out, first
        bigger = np.empty(2 * out.size, COINC_DTYPE)
        size = n_out * COINC_DTYPE.itemsize
        bigger.view(np.uint8)[:size] = out.view(np.uint8)[:size]
        out = bigger


def search_slices(workers: Workers, kernel_args: tuple, t_limit: int, horizon_ps: int,
                  window_ps: int, multi: bool, scratch: list[np.ndarray] | None = None
                  ) -> tuple[np.ndarray, int]:
    """:func:`search_range` from the first single up to the horizon ``t_limit``, slice by slice
    on ``workers``. ``horizon_ps``: how far a window's search reaches past its first single
    (window, plus the delay when delayeds are searched). ``scratch``: the slices' output
    buffers, kept from call to call (fresh memory costs page faults). Returns the coincidences
    (a new array) and where the next search starts."""
    t = kernel_args[0]
    n = t.size - search.PAD
    # only singles whose windows close before t_limit can start a slice; the last slice runs on
    # until the horizon stops it, as one search would
    bound = int(np.searchsorted(t[:n], t_limit - horizon_ps, side="right"))
    n_slices = max(1, min(4 * workers.threads, bound // PIECE))
    cuts = sync_points(t, 0, bound, window_ps, multi, n_slices) if bound > 0 else \
        np.zeros(1, np.int64)
    stops = [*cuts[1:].tolist(), n]
    scratch = [] if scratch is None else scratch
    scratch += [np.empty(0, COINC_DTYPE)] * (len(stops) - len(scratch))

    def one(k: int) -> tuple[np.ndarray, int, int]:
        if scratch[k].size < 1024:
            scratch[k] = np.empty(max(1024, (stops[k] - int(cuts[k])) // 16), COINC_DTYPE)
        found = search_range(kernel_args, int(cuts[k]), stops[k], t_limit, scratch[k], 0)
        scratch[k] = found[0]  # grown when it filled up
        return found

    parts = workers.map(one, len(stops), "sort")
    for k in range(len(stops) - 1):
        assert parts[k][2] == stops[k], "a slice did not end at the next sync point"
    return join_parts(workers, [(p[0], p[1]) for p in parts]), parts[-1][2]


def join_parts(workers: Workers, parts: list[tuple[np.ndarray, int]]) -> np.ndarray:
    """The first ``n`` records of each part, one after the other, copied on ``workers``."""
    starts = np.concatenate(([0], np.cumsum([n for _, n in parts]))).tolist()
    out = np.empty(starts[-1], COINC_DTYPE)
    size = COINC_DTYPE.itemsize
    dst = out.view(np.uint8)

    def copy(k: int) -> None:
        src, n = parts[k]
        dst[starts[k] * size:(starts[k] + n) * size] = src.view(np.uint8)[:n * size]

    workers.map(copy, len(parts), "sort")
    return out
