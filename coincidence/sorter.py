"""``sort`` (one call on all singles) and ``Sorter`` (fed chunk by chunk): the same coincidences.

The semantics are in ``coincidence/SEMANTICS.md``. The streaming sorter keeps the singles whose
windows cannot be closed yet (a window needs every single up to t0 + window, plus the delay when
delayeds are searched), so windows and delayed windows that straddle chunk boundaries come out
exactly as in one call on the concatenation.
"""

from __future__ import annotations

import numpy as np

from coincidence import parallel, search, timeorder
from coincidence.settings import Settings, resolve
from hw.dtypes import COINC_DTYPE, SINGLE_DTYPE, join
from hw.scanner import Scanner
from infra.errors import UserError
from infra.pool import SERIAL, Workers

_END_OF_STREAM = np.iinfo(np.int64).max
_BLOCK = 1 << 16  # singles per kernel call when a big chunk is in order


def _fields(singles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not isinstance(singles, np.ndarray) or singles.ndim != 1:
        raise UserError("singles must be a 1-D numpy array of hw.SINGLE_DTYPE, "
                        f"got {type(singles).__name__}")
    names = singles.dtype.names or ()
    if not all(f in names for f in SINGLE_DTYPE.names):
        raise UserError(f"singles must have fields t, crystal, energy (hw.SINGLE_DTYPE), got "
                        f"dtype {singles.dtype}")
    t, c, e = singles["t"], singles["crystal"], singles["energy"]
    if not (np.issubdtype(t.dtype, np.integer) and np.issubdtype(c.dtype, np.integer)):
        raise UserError(f"singles 't' (ps) and 'crystal' must be integers, got dtype {singles.dtype}")
    return t, c, e


class Sorter:
    """Streaming coincidence sorter: ``feed`` chunks of singles in time order, then ``flush``.

    The concatenation of every ``feed`` output and the ``flush`` output equals one
    :func:`sort` call on the concatenated singles, however the stream is chunked. A chunk may
    be out of order within itself (it is sorted), but no single may be earlier than a single of
    an earlier chunk (equal times are fine): merge the boards' streams first
    (:func:`coincidence.merge_sorted`). ``flush`` ends the stream; the next ``feed`` starts a new
    one. ``workers``: threads for big chunks (:mod:`coincidence.parallel`; the same output for
    any number). Not thread-safe; the kernels release the GIL.
    """

    def __init__(self, *, scanner: Scanner, window_ps: int | None = None,
                 energy_window_kev: tuple[float, float] | None = None,
                 policy: str = "takeAllGoods", delay_ps: int | None = None,
                 min_sector_difference: int | None = None,
                 max_ring_difference: int | None = None, mode: str = "single-window",
                 workers: Workers | None = None) -> None:
        self.settings: Settings = resolve(
            scanner, window_ps=window_ps, energy_window_kev=energy_window_kev, policy=policy,
            delay_ps=delay_ps, min_sector_difference=min_sector_difference,
            max_ring_difference=max_ring_difference, mode=mode)
        self.scanner = scanner
        self.workers = workers or SERIAL
        self._slice_scratch: list[np.ndarray] = []
        """The time slices' output buffers (:func:`parallel.search_slices`), kept."""
        self._module = np.ascontiguousarray(scanner.crystal_module, np.int32)
        self._ring = np.ascontiguousarray(scanner.crystal_ring, np.int32)
        self._reset()

    def _reset(self) -> None:
        # reused buffers: energy-windowed singles not used up yet in [lo, hi), in time order,
        # then search.PAD sentinel times
        self._t = np.full(search.PAD, _END_OF_STREAM, np.int64)
        self._c = np.zeros(search.PAD, np.int32)
        self._e = np.zeros(search.PAD, np.float32)
        self._lo = self._hi = 0
        self._t_last: int | None = None

    def feed(self, singles: np.ndarray) -> np.ndarray:
        """Add a chunk of singles (hw.SINGLE_DTYPE); return the coincidences now complete."""
        t, _, _ = _fields(singles)
        if self._parallel(t.size):
            self._append(singles)
            return self._search_slices(self._t_last)
        return _trimmed(*self._feed(singles, _new_output(t.size), 0))

    def feed_windowed(self, counts: list[int], write: parallel.PieceWriter
                      ) -> np.ndarray | None:
        """Add a time-ordered chunk whose energy window the caller applies, in pieces (on the
        workers): piece ``k`` has ``counts[k]`` singles in the window, which
        ``write(k, (t, crystal, energy), start)`` writes from ``start`` of those columns (the
        sorter's own buffers), saying (bad crystal id, in time order) as
        :func:`parallel.copy_in_window`. The caller saves a copy of every single outside the
        window (the DAQ's energy gate keeps only those inside it). Returns the coincidences now
        complete, as :meth:`feed`; or None, with nothing added, when a piece had a bad crystal
        id or the chunk is out of order: :meth:`feed` it then."""
        n_old = self._make_room(int(sum(counts)))
        end = parallel.write_pieces(self.workers, counts, write, (self._t, self._c, self._e),
                                    n_old)
        if end is None:
            return None
        self._t[end: end + search.PAD] = _END_OF_STREAM
        self._hi = end
        if end > n_old:
            self._t_last = int(self._t[end - 1])
        if self._t_last is None:
            return np.empty(0, COINC_DTYPE)
        if self._parallel(end - self._lo):
            return self._search_slices(self._t_last)
        return _trimmed(*self._search(self._t_last, _new_output(end - self._lo), 0))

    def flush(self) -> np.ndarray:
        """Close every open window (end of stream) and return the remaining coincidences."""
        if self._parallel(self._hi - self._lo):
            out = self._search_slices(_END_OF_STREAM)
        else:
            out = _trimmed(*self._search(_END_OF_STREAM, _new_output(self._hi - self._lo), 0))
        self._reset()
        return out

    def _parallel(self, n: int) -> bool:
        """Whether ``n`` singles are worth the workers."""
        return self.workers.threads > 1 and n >= parallel.PIECE

    def _feed(self, singles: np.ndarray, out: np.ndarray, n_out: int) -> tuple[np.ndarray, int]:
        t, _, _ = _fields(singles)
        if t.size > _BLOCK and timeorder.in_time_order(t):
            # in cache-sized blocks: the same result, faster
            for k in range(0, t.size, _BLOCK):
                out, n_out = self._feed(singles[k: k + _BLOCK], out, n_out)
            return out, n_out
        self._append(singles)
        if self._t_last is None:
            return out, n_out
        return self._search(self._t_last, out, n_out)

    def _append(self, singles: np.ndarray) -> None:
        t_in, c_in, e_in = _fields(singles)
        n_old = self._make_room(t_in.size)
        t, c, e = self._t, self._c, self._e
        end = None
        if self._parallel(t_in.size):
            end = parallel.accept_pieces(self.workers, t_in, c_in, e_in,
                                         self.settings.energy_window_kev,
                                         self.scanner.n_crystals, (t, c, e), n_old)
        if end is None:
            end = self._accept(t_in, c_in, e_in, n_old)
        t[end: end + search.PAD] = _END_OF_STREAM
        self._hi = end
        if end > n_old:
            self._t_last = int(t[end - 1])

    def reserve(self, n_singles: int) -> None:
        """Room for ``n_singles`` singles in the window (those pending and a chunk's), set
        aside and touched now: a live DAQ reserves it before its first data, so that the
        buffers are not grown (fresh pages, zeroed by the kernel) while data flow."""
        n_old = self._make_room(0, at_least=n_singles + search.PAD)
        self._t[n_old: n_old + search.PAD] = _END_OF_STREAM

    def _make_room(self, n_in: int, at_least: int = 0) -> int:
        """Move the pending singles to the front of the buffers, with room for ``n_in`` more and
        the PAD (and for ``at_least`` in all); returns how many are pending."""
        n_old = self._hi - self._lo
        pending = slice(self._lo, self._hi)
        need = max(n_old + n_in + search.PAD, at_least)
        if need > self._t.size:
            size = max(need, 2 * self._t.size)  # touched now: grown memory is used at once
            t, c, e = np.ones(size, np.int64), np.ones(size, np.int32), np.ones(size, np.float32)
        else:
            t, c, e = self._t, self._c, self._e
        t[:n_old], c[:n_old], e[:n_old] = self._t[pending], self._c[pending], self._e[pending]
        self._t, self._c, self._e = t, c, e
        self._lo, self._hi = 0, n_old
        return n_old

    def _accept(self, t_in: np.ndarray, c_in: np.ndarray, e_in: np.ndarray, n_old: int) -> int:
        """The energy window on one thread (:func:`search.accept`), any order; the new end."""
        lo, hi = self.settings.energy_window_kev
        t, c, e = self._t, self._c, self._e
        end, bad, ordered, early = search.accept(
            t_in, c_in, e_in, lo, hi, self.scanner.n_crystals, t, c, e, n_old, 4 * t_in.size)
        if bad:
            i = int(np.flatnonzero((c_in < 0) | (c_in >= self.scanner.n_crystals))[0])
            raise UserError(f"single {i} has crystal id {int(c_in[i])}, outside 0.."
                            f"{self.scanner.n_crystals - 1} of scanner '{self.scanner.name}'")
        if early < _END_OF_STREAM:
            raise UserError(
                f"a single at t={early} ps comes after singles up to t={self._t_last} ps were "
                "fed: chunks must follow each other in time (merge the boards' streams first: "
                "coincidence.merge_sorted)")
        if not ordered:
            perm = timeorder.order(t[:end], c[:end])
            t[:end], c[:end], e[:end] = t[perm], c[perm], e[perm]
        return end

    def _kernel_args(self) -> tuple:
        """The search kernel's arguments before ``start`` (:func:`search.search`)."""
        s = self.settings
        live = slice(self._lo, self._hi + search.PAD)
        return (self._t[live], self._c[live], self._e[live], self._module, self._ring,
                self.scanner.n_modules, s.window_ps, -1 if s.delay_ps is None else s.delay_ps,
                s.min_sector_difference,
                -1 if s.max_ring_difference is None else s.max_ring_difference, s.policy_code,
                s.multi_window)

    def _search(self, t_limit: int, out: np.ndarray, n_out: int) -> tuple[np.ndarray, int]:
        """Close the windows whose horizon is at most ``t_limit``, writing to ``out[n_out:]``
        (grown as needed); drop the singles no later window can use."""
        out, n_out, start = parallel.search_range(self._kernel_args(), 0, None, t_limit, out,
                                                  n_out)
        self._lo += start
        return out, n_out

    def _search_slices(self, t_limit: int) -> np.ndarray:
        """:meth:`_search` slice by slice on the workers (:func:`parallel.search_slices`)."""
        s = self.settings
        horizon = s.window_ps + (0 if s.delay_ps is None else s.delay_ps)
        out, start = parallel.search_slices(self.workers, self._kernel_args(), t_limit, horizon,
                                            s.window_ps, s.multi_window, self._slice_scratch)
        self._lo += start
        return out


def _new_output(n_singles: int) -> np.ndarray:
    return np.empty(max(1024, n_singles // 4), COINC_DTYPE)


def _trimmed(out: np.ndarray, n_out: int) -> np.ndarray:
    out.resize(n_out, refcheck=False)
    return out


def sort(singles: np.ndarray, *, scanner: Scanner, window_ps: int | None = None,
         energy_window_kev: tuple[float, float] | None = None, policy: str = "takeAllGoods",
         delay_ps: int | None = None, min_sector_difference: int | None = None,
         max_ring_difference: int | None = None, mode: str = "single-window",
         threads: int = 1) -> np.ndarray:
    """Sort singles (hw.SINGLE_DTYPE, any order: they are time-ordered first, stably) into
    prompt and, when ``delay_ps`` is given, delayed coincidences (hw.COINC_DTYPE).

    ``window_ps``, ``energy_window_kev`` and ``min_sector_difference`` default to
    ``scanner.acquisition``; see ``coincidence/SEMANTICS.md`` for the exact semantics and the
    output order. ``threads``: how many threads sort (the same output for any number).
    """
    workers = Workers(threads, "sort") if threads != 1 else SERIAL
    try:
        sorter = Sorter(scanner=scanner, window_ps=window_ps, energy_window_kev=energy_window_kev,
                        policy=policy, delay_ps=delay_ps,
                        min_sector_difference=min_sector_difference,
                        max_ring_difference=max_ring_difference, mode=mode, workers=workers)
        t, _, _ = _fields(singles)
        if sorter._parallel(t.size):
            return join([sorter.feed(singles), sorter.flush()], COINC_DTYPE)
        out, n_out = sorter._feed(singles, _new_output(t.size), 0)
        return _trimmed(*sorter._search(_END_OF_STREAM, out, n_out))
    finally:
        if workers is not SERIAL:
            workers.close()
