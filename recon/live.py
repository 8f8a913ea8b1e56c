"""Real-time list-mode reconstruction: an image that grows while the run acquires.

The DAQ feeds coincidence chunks with :meth:`LiveRecon.add` (cheap: the events' detection
weights are computed once, on arrival) and calls :meth:`LiveRecon.update` every few seconds. An
update is one OSEM sub-iteration over a subset of *all* prompts so far, warm-started from the
previous image: with N prompts and a budget of B events per update, the events are split by event
order into ceil(N / B) interleaved subsets and the updates visit them in turn, so an update costs at
most B events whatever the run length, and every event keeps contributing. Before each update the
previous image is scaled by N / N_previous (the image counts expected annihilations over the
acquisition so far, which grows with it). Randoms come from the delayeds so far (fan-sum estimate).

At the stop, :meth:`finish` runs full passes over all events (about N / 1 M seconds per pass on
two cores), or the caller simply takes :attr:`image`, which is never older than one update.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from hw.errors import UserError
from hw.scanner import Scanner
from recon.grid import Grid, Image
from recon.lors import LORs, check_crystals
from recon.osem import Events, ListModeEM, split_coinc
from recon.randoms import crystal_counts
from recon.system import DEFAULT_SAMPLES, event_weights


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


class LiveRecon:
    """Incremental LM-OSEM (see the module docstring). ``max_events_per_update`` bounds the cost of
    one :meth:`update`; the other arguments are those of :class:`recon.osem.ListModeEM`."""

    def __init__(self, scanner: Scanner, grid: Grid | None = None, tof: bool = True,
                 randoms: bool = True, mu_map: Image | np.ndarray | None = None,
                 max_events_per_update: int = 1_000_000, window_ps: float | None = None,
                 min_sector_difference: int | None = None,
                 sensitivity_samples: int = DEFAULT_SAMPLES) -> None:
        if max_events_per_update < 1:
            raise UserError(f"max_events_per_update must be >= 1, got {max_events_per_update}")
        self.em = ListModeEM(scanner, grid, tof, mu_map, window_ps, min_sector_difference,
                             sensitivity_samples)
        self.grid = self.em.grid
        self.randoms = randoms
        self.max_events_per_update = int(max_events_per_update)
        self._columns = {"a": _Column(np.int32), "b": _Column(np.int32),
                         "tof": _Column(np.float32), "w": _Column(np.float32)}
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
        prompts, delayeds = split_coinc(np.asarray(coinc))
        lors = LORs.from_coinc(prompts)
        check_crystals(lors, self.em.scanner.n_crystals)
        weights = event_weights(self.em.scanner, self.grid, lors, self.em.attenuation)
        d = LORs.from_coinc(delayeds)
        check_crystals(d, self.em.scanner.n_crystals)
        with self._lock:
            for key, values in (("a", lors.crystal_a), ("b", lors.crystal_b),
                                ("tof", lors.tof_mm), ("w", weights)):
                self._columns[key].extend(values)
            self._delayed += crystal_counts(d, self.em.scanner.n_crystals)

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
        pick = slice(self._turn % n_subsets, n, n_subsets)
        self._turn += 1
        lors = LORs(cols["a"][pick], cols["b"][pick], cols["tof"][pick])
        additive = (self.em.randoms_model(delayed).per_event(lors) if self.randoms
                    else np.zeros(len(lors), np.float32))
        events = Events(lors, np.ascontiguousarray(cols["w"][pick]), additive)
        self.em.update(self._x, self.em.in_lor_order(events), len(events) / n)
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
