"""The DAQ's processing stage: decoded events -> time merge -> calibration -> sorter -> list-mode.

For a SPECT scanner the projection stage (:mod:`daq.projections`) stands where the sorter stands:
the calibrated singles are counted into energy-windowed projections per gantry view.

One :class:`Processor` serves the live acquisition (fed by receiver threads) and the offline
replay/recovery (fed from the journal): the same code makes the same coincidences from the same
bytes. It also keeps the counters and the monitor's histograms; it does no I/O but the list-mode
writer it is given.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numba
import numpy as np

import coincidence
from coincidence import histograms
from daq.calibration import Calibration
from daq.cpu import ThreadClock
from daq.listmode import ListModeWriter
from daq.merge import TimeMerger
from daq.projections import ProjectionStage
from hw.dtypes import SINGLE_DTYPE
from hw.errors import UserError
from hw.scanner import Scanner

ENERGY_HIST_KEV = (0.0, 1000.0)
"""Range of the monitor's energy spectrum (the kernel bins [0, 1000) keV)."""
ENERGY_BINS = 250
DT_BINS = 101
_SCRATCH_MAX_EVENTS = 1 << 23
"""A work buffer of singles up to this size is kept for the next chunk."""


@dataclass
class SortSettings:
    """Coincidence sorting settings; ``None`` takes the scanner's default."""

    window_ps: int | None = None
    delay_ps: int | None = None
    energy_window_kev: tuple[float, float] | None = None
    policy: str = "takeAllGoods"
    min_sector_difference: int | None = None
    mode: str = "single-window"

    def resolved(self, scanner: Scanner) -> dict[str, Any]:
        """Checked settings for ``scanner`` (:func:`coincidence.resolve`, keyword arguments of
        :func:`coincidence.sort`). The one DAQ difference: the delayed window is on by default,
        at the scanner's delay (``delay_ps=0`` turns it off)."""
        delay = scanner.acquisition["delay_ps"] if self.delay_ps is None else self.delay_ps
        return coincidence.resolve(
            scanner, window_ps=self.window_ps, energy_window_kev=self.energy_window_kev,
            policy=self.policy, delay_ps=delay or None,
            min_sector_difference=self.min_sector_difference, mode=self.mode).as_dict()


@dataclass
class Histograms:
    """What the monitor shows, accumulated over the run (coincidence.histograms kernels)."""

    energy: np.ndarray
    """Singles spectrum over ENERGY_HIST_KEV."""
    dt: np.ndarray | None
    """Prompts' signed time differences over dt_range_ps (PET)."""
    hitmap: np.ndarray
    """Singles per crystal: [crystal ring, crystal in ring] (PET), [row, head x column] (SPECT)."""
    hit_cell: np.ndarray
    """Each crystal's index in the flattened hit map."""
    sinogram: np.ndarray | None
    """Prompts' transaxial LORs [angle, radial] (PET)."""
    dt_range_ps: tuple[int, int]

    @classmethod
    def for_scanner(cls, scanner: Scanner, window_ps: int) -> Histograms:
        pet = scanner.kind == "pet"
        return cls(
            energy=np.zeros(ENERGY_BINS, np.int64),
            dt=np.zeros(DT_BINS, np.int64) if pet else None,
            hitmap=np.zeros((scanner.n_rings, scanner.crystals_per_ring), np.int64),
            hit_cell=_hit_cells(scanner),
            sinogram=np.zeros(histograms.sinogram_shape(scanner), np.int64) if pet else None,
            dt_range_ps=(-window_ps, window_ps),
        )


def _hit_cells(scanner: Scanner) -> np.ndarray:
    """Crystal id -> flat hit-map index: the id itself for PET (ring-major); SPECT pixels
    (``head * rows * columns + row * columns + column``) go to [row, head * columns + column]."""
    ids = np.arange(scanner.n_crystals, dtype=np.int64)
    if scanner.kind == "pet":
        return ids
    rows, per_row = scanner.n_rings, scanner.crystals_per_ring
    columns = per_row // scanner.n_modules
    head, rest = np.divmod(ids, rows * columns)
    row, column = np.divmod(rest, columns)
    return np.ascontiguousarray(row * per_row + head * columns + column)


@dataclass
class Counters:
    """Event counts of the run so far (per board where it matters)."""

    singles_per_board: np.ndarray
    prompts: int = 0
    delayeds: int = 0
    released: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    @property
    def singles(self) -> int:
        return int(self.singles_per_board.sum())


class Processor:
    """Turn decoded events into coincidences, in time order, chunk by chunk. Thread-safe."""

    def __init__(self, scanner: Scanner, calibration: Calibration, sort: SortSettings,
                 writer: ListModeWriter | None, quiet_timeout_s: float = 3.0,
                 on_coincidences: Callable[[np.ndarray], None] | None = None,
                 scan_duration_s: float | None = None) -> None:
        """``scan_duration_s``: the planned scan time (s), which a SPECT scanner's gantry views
        share (:class:`daq.projections.ProjectionStage`); PET ignores it."""
        self.scanner, self.calibration = scanner, calibration
        self.stage: coincidence.Sorter | ProjectionStage
        if scanner.kind == "spect":
            self.stage = ProjectionStage(scanner, scan_duration_s)
            self.settings = self.stage.settings
        else:
            self.settings = sort.resolved(scanner)
            self.stage = coincidence.Sorter(scanner=scanner, **self.settings)
        self.merger = TimeMerger(scanner.n_boards, quiet_timeout_s)
        self.writer = writer
        self.on_coincidences = on_coincidences
        self.hist = Histograms.for_scanner(scanner, self.settings["window_ps"])
        self.counters = Counters(singles_per_board=np.zeros(scanner.n_boards, np.int64))
        self._lock = threading.Lock()
        self._scale = np.ascontiguousarray(
            (calibration.kev_per_adc_code / calibration.gains).astype(np.float32))
        self._crystal_board = np.ascontiguousarray(scanner.crystal_board, np.int64)
        self._singles: np.ndarray | None = None
        self._clock: ThreadClock | None = None

    def consume(self, raw: np.ndarray | list[np.ndarray], watermarks_ps: dict[int, int],
                idle_boards: Collection[int] = (), clock: ThreadClock | None = None) -> None:
        """Take decoded events (an array, or a list of them) and the boards' watermarks; process
        what the merge releases. ``idle_boards``: boards whose link has been silent for the
        quiet timeout. ``clock``: the calling thread's CPU clock, lapped after each stage
        (merge, calibrate, sort...)."""
        with self._lock:
            self._clock = clock
            for events in raw if isinstance(raw, list) else (raw,):
                self.merger.push(events)
            for board, t in watermarks_ps.items():
                self.merger.advance(board, t)
            ready = self.merger.release(idle_boards)
            self._lap("merge")
            self._process(ready)
            self._clock = None

    def finish(self, clock: ThreadClock | None = None) -> None:
        """End of run: release everything held, flush the sorter, flush the list-mode file.
        ``clock``: the calling thread's CPU clock, lapped as in :meth:`consume`."""
        with self._lock:
            self._clock = clock
            ready = self.merger.release(final=True)
            self._lap("merge")
            self._process(ready)
            self._emit(self.stage.flush())
            if self.writer is not None:
                self.writer.flush()
            self._clock = None

    def save_projections(self, directory: Path) -> Path | None:
        """SPECT: write the projections into ``directory`` (:meth:`ProjectionStage.save`) and
        return the file; PET: nothing to write, None."""
        if isinstance(self.stage, ProjectionStage):
            with self._lock:
                return self.stage.save(directory)
        return None

    def _process(self, events: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        """Released events (t, crystal, adc: :meth:`TimeMerger.release`) -> coincidences."""
        n = events[0].size
        if n == 0:
            return
        singles = self._calibrated(*events)
        self._lap("calibrate + histograms")
        self.counters.released += n
        coinc = self.stage.feed(singles)
        self._lap("sort" if self.scanner.kind == "pet" else "projections")
        self._emit(coinc)

    def _emit(self, coinc: np.ndarray) -> None:
        if coinc.size == 0:
            return
        # histograms first: a monitor snapshot that shows these counts also shows their histograms
        histograms.accumulate_dt(coinc, self.hist.dt, self.hist.dt_range_ps[1])
        if self.hist.sinogram is not None:
            histograms.accumulate_sinogram(coinc, self.scanner, self.hist.sinogram)
        delayed = coinc["delayed"].astype(bool)
        self.counters.delayeds += int(delayed.sum())
        self.counters.prompts += int(coinc.size - delayed.sum())
        self._lap("coincidence histograms")
        if self.writer is not None:
            self.writer.append(coinc)
            self._lap("list-mode write")
        if self.on_coincidences is not None:
            self.on_coincidences(coinc)
            self._lap("live hand-over")

    def _lap(self, part: str) -> None:
        if self._clock is not None:
            self._clock.lap(part)

    def _calibrated(self, t: np.ndarray, crystal: np.ndarray, adc: np.ndarray) -> np.ndarray:
        """Calibrated singles (``calibration.apply``) with, in the same pass, the singles per
        board, the energy spectrum and the hit map (the numbers of
        ``coincidence.histograms.accumulate_energy`` and ``accumulate_hit_map``). The singles
        are in a work buffer that the next call reuses: the sorter copies what it keeps."""
        n = t.size
        if self._singles is None or self._singles.size < n:
            self._singles = np.empty(max(n + n // 2, 1 << 16), SINGLE_DTYPE)  # room to grow
        singles = self._singles[:n]
        if n > _SCRATCH_MAX_EVENTS:
            self._singles = None
        bad = _calibrate_and_count(
            t, crystal, adc, self._scale,
            self._crystal_board, singles["t"], singles["crystal"], singles["energy"],
            self.counters.singles_per_board, self.hist.energy, float(ENERGY_HIST_KEV[1]),
            self.hist.hitmap.reshape(-1), self.hist.hit_cell)
        if bad >= 0:
            raise UserError(f"event {bad} has crystal id {int(crystal[bad])}, outside "
                            f"0..{self.scanner.n_crystals - 1} of scanner '{self.scanner.name}'")
        return singles

    @property
    def late_events(self) -> int:
        return self.merger.late_events


@numba.njit(nogil=True, cache=True)
def _calibrate_and_count(t, crystal, adc, scale, crystal_board, out_t, out_crystal, out_energy,
                         per_board, spectrum, e_max, hits, hit_cell):
    """One pass over the released events: ``energy = float32(adc) * scale[crystal]`` (as
    :meth:`Calibration.apply`), singles per board, the energy spectrum over [0, e_max) and the
    hit map (``hits``: the flat map, ``hit_cell``: each crystal's index in it), binned as
    :mod:`coincidence.histograms` does. Returns the first event whose crystal id is outside the
    scanner (its and later events are left out), else -1."""
    n_crystals = scale.size
    n_bins = spectrum.size
    for i in range(t.size):
        c = crystal[i]
        if c < 0 or c >= n_crystals:
            return i
        e = np.float32(adc[i]) * scale[c]
        out_t[i] = t[i]
        out_crystal[i] = c
        out_energy[i] = e
        per_board[crystal_board[c]] += 1
        b = histograms.energy_bin(e, e_max, n_bins)
        if b >= 0:
            spectrum[b] += 1
        hits[hit_cell[c]] += 1
    return -1
