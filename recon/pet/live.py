"""Real-time list-mode reconstruction: an image that grows while the run acquires.

The DAQ feeds coincidence chunks with :meth:`LiveRecon.add` (cheap: what an event needs for every
later update, its detection weight and its cell of LOR space for the projector's order, is computed
once, on arrival, into append-only columns) and calls :meth:`LiveRecon.update` every few seconds. An
update is one OSEM sub-iteration over a subset of *all* prompts so far, warm-started from the
previous image: with N prompts and a budget of B events per update, the events are split by event
order into ceil(N / B) interleaved subsets and the updates visit them in turn, so an update costs at
most B events whatever the run length, and every event keeps contributing. Before each update the
previous image is scaled by N / N_previous (the image counts expected annihilations over the
acquisition so far, which grows with it). Randoms come from the delayeds so far (fan-sum estimate).

An update copies no event: it sorts the indices of its subset by LOR cell (a counting sort of the
stored cells) and hands them, with the randoms as per-crystal factors, to the EM kernel
(:meth:`recon.pet.projector.Projector.em_back_padded`: forward projection, ratio and back projection
without per-event arrays, in blocks taken by all threads in turn).

At the stop, :meth:`finish` runs full passes over all events (about N / 1 M seconds per pass on
two cores), or the caller simply takes :attr:`image`, which is never older than one update.
"""

from __future__ import annotations

import math
import threading

import numba
import numpy as np

from hw.scanner import SPEED_OF_LIGHT_MM_PER_PS, Scanner
from infra.errors import UserError
from recon.grid import Grid, Image
from recon.pet.lors import LORs, check_crystals, lor_cells, n_lor_cells, order_by_cell
from recon.pet.osem import ListModeEM, split_coinc
from recon.pet.system import PairFactor, event_weights


class _Column:
    """An append-only array with amortised doubling."""

    def __init__(self, dtype: type) -> None:
        self._data = np.empty(1 << 16, dtype)
        self.size = 0

    def extend(self, values: np.ndarray) -> None:
        need = self.size + values.size
        if need > self._data.size:
            grown = np.empty(max(need, 2 * self._data.size), self._data.dtype)
            grown[:self.size] = self._data[:self.size]
            self._data = grown
        self._data[self.size:need] = values
        self.size = need

    def view(self) -> np.ndarray:
        return self._data[:self.size]


def _split(coinc: np.ndarray, n_crystals: int) -> tuple[LORs, np.ndarray]:
    """The prompts of COINC_DTYPE rows as LORs and the delayeds' per-crystal counts (fan sums,
    :func:`recon.corrections.randoms.crystal_counts`), in one pass over the rows; UserError on a foreign
    dtype or a crystal the scanner does not have."""
    split_coinc(coinc[:0])                            # raises UserError on a foreign dtype
    n = coinc.size
    a, b = np.empty(n, np.int32), np.empty(n, np.int32)
    tof = np.empty(n, np.float32)
    delayed = np.zeros(n_crystals, np.int64)
    kept, ok, bad = _split_rows(coinc, np.float32(SPEED_OF_LIGHT_MM_PER_PS / 2.0), a, b, tof,
                                delayed)
    if not ok:                                        # the one-line error of check_crystals
        check_crystals(LORs(np.array([bad]), np.array([bad]), np.zeros(1)), n_crystals)
    return LORs(a[:kept], b[:kept], tof[:kept]), delayed


@numba.njit(nogil=True, cache=True)
def _split_rows(coinc, half_c, a, b, tof, delayed):
    """Prompts into a, b, tof and delayeds' crystals counted: (prompts, True, 0), or
    (_, False, crystal) at the first crystal number out of range."""
    n_crystals = delayed.size
    kept = 0
    for i in range(coinc.size):
        ca, cb = coinc[i].crystal_a, coinc[i].crystal_b
        if ca < 0 or ca >= n_crystals:
            return kept, False, ca
        if cb < 0 or cb >= n_crystals:
            return kept, False, cb
        if coinc[i].delayed == 0:
            a[kept] = ca
            b[kept] = cb
            tof[kept] = np.float32(coinc[i].dt) * half_c
            kept += 1
        else:
            delayed[ca] += 1
            delayed[cb] += 1
    return kept, True, 0


class LiveRecon:
    """Incremental LM-OSEM (see the module docstring). ``max_events_per_update`` bounds the cost of
    one :meth:`update`; the other arguments are those of :class:`recon.pet.osem.ListModeEM`."""

    def __init__(self, scanner: Scanner, grid: Grid | None = None, tof: bool = True,
                 randoms: bool = True, mu_map: Image | np.ndarray | None = None,
                 max_events_per_update: int = 1_000_000, window_ps: float | None = None,
                 min_sector_difference: int | None = None,
                 sensitivity_samples: int | None = None,
                 normalization: PairFactor | None = None) -> None:
        if max_events_per_update < 1:
            raise UserError(f"max_events_per_update must be >= 1, got {max_events_per_update}")
        self.em = ListModeEM(scanner, grid, tof, mu_map, window_ps, min_sector_difference,
                             sensitivity_samples, normalization)
        self.grid = self.em.grid
        self.randoms = randoms
        self.max_events_per_update = int(max_events_per_update)
        self._columns = {"a": _Column(np.int32), "b": _Column(np.int32),
                         "tof": _Column(np.float32), "w": _Column(np.float32),
                         "cell": _Column(np.int32)}
        self._n_cells = n_lor_cells(self.em.projector.endpoints)
        self._delayed = np.zeros(scanner.n_crystals, np.int64)
        self._lock = threading.Lock()
        self._x: np.ndarray | None = None
        self._n_at_x = 0
        self._turn = 0
        self.updates = 0

    @property
    def n_prompts(self) -> int:
        return self._columns["a"].size

    @property
    def n_delayeds(self) -> int:
        return int(self._delayed.sum()) // 2

    def add(self, coinc: np.ndarray) -> None:
        """Take a chunk of COINC_DTYPE coincidences (prompts and delayeds)."""
        lors, delayed = _split(np.asarray(coinc), self.em.scanner.n_crystals)
        weights = event_weights(self.em.scanner, self.grid, lors, self.em.attenuation,
                                self.em.normalization)
        cells = lor_cells(lors, self.em.projector.endpoints)
        with self._lock:
            for key, values in (("a", lors.crystal_a), ("b", lors.crystal_b),
                                ("tof", lors.tof_mm), ("w", weights), ("cell", cells)):
                self._columns[key].extend(values)
            self._delayed += delayed

    def update(self) -> Image:
        """One subset update over the events so far; returns the new image."""
        with self._lock:
            n = self.n_prompts
            cols = {key: c.view() for key, c in self._columns.items()}
            delayed = self._delayed.copy()
        if n == 0:
            return self.image
        if self._x is None:
            randoms = float(delayed.sum()) / 2 if self.randoms else 0.0
            self._x = self.em.initial(n - randoms)
        else:
            self._x *= np.float32(n / self._n_at_x)
        self._n_at_x = n
        n_subsets = math.ceil(n / self.max_events_per_update)
        order = order_by_cell(cols["cell"], self._n_cells, self._turn % n_subsets, n_subsets)
        self._turn += 1
        factors = None
        if self.randoms and delayed.any():
            factors = self.em.randoms_model(delayed).per_crystal()
        self.em.update_lors(self._x, LORs(cols["a"], cols["b"], cols["tof"]), cols["w"],
                            len(order) / n, crystal_randoms=factors, order=order)
        self.updates += 1
        return self.image

    def finish(self, passes: int = 1) -> Image:
        """``passes`` full passes over every event so far (the final image at the stop)."""
        n_subsets = math.ceil(self.n_prompts / self.max_events_per_update)
        for _ in range(passes * n_subsets):
            self.update()
        return self.image

    @property
    def image(self) -> Image:
        """The latest image (counts; zeros before the first update)."""
        meta = {"events": self._n_at_x, "updates": self.updates, "tof": self.em.tof}
        if self._x is None:
            return Image(np.zeros(self.grid.shape, np.float32), self.grid.voxel_mm,
                         self.grid.origin_mm, "counts", meta)
        return self.em.image(self._x, **meta)
