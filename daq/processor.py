"""The DAQ's processing stage: decoded events -> time merge -> calibration -> sorter -> list-mode.

One :class:`Processor` serves the live acquisition (fed by receiver threads) and the offline
replay/recovery (fed from the journal): the same code makes the same coincidences from the same
bytes. It also keeps the counters and the monitor's histograms; it does no I/O but the list-mode
writer it is given.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import coincidence
from coincidence import histograms
from daq.calibration import Calibration
from daq.listmode import ListModeWriter
from daq.merge import TimeMerger
from hw.scanner import Scanner

ENERGY_HIST_KEV = (0.0, 1000.0)
"""Range of the monitor's energy spectrum (the kernel bins [0, 1000) keV)."""
ENERGY_BINS = 250
DT_BINS = 101


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
    dt: np.ndarray
    """Prompts' signed time differences over dt_range_ps."""
    hitmap: np.ndarray
    """Singles per crystal: [crystal ring, crystal in ring] (PET), [row, head x column] (SPECT)."""
    sinogram: np.ndarray | None
    """Prompts' transaxial LORs [angle, radial] (PET)."""
    dt_range_ps: tuple[int, int]

    @classmethod
    def for_scanner(cls, scanner: Scanner, window_ps: int) -> Histograms:
        pet = scanner.kind == "pet"
        return cls(
            energy=np.zeros(ENERGY_BINS, np.int64), dt=np.zeros(DT_BINS, np.int64),
            hitmap=np.zeros((scanner.n_rings, scanner.crystals_per_ring), np.int64),
            sinogram=np.zeros(histograms.sinogram_shape(scanner), np.int64) if pet else None,
            dt_range_ps=(-window_ps, window_ps),
        )


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
                 on_coincidences: Callable[[np.ndarray], None] | None = None) -> None:
        self.scanner, self.calibration = scanner, calibration
        self.settings = sort.resolved(scanner)
        self.sorter = coincidence.Sorter(scanner=scanner, **self.settings)
        self.merger = TimeMerger(scanner.n_boards, quiet_timeout_s)
        self.writer = writer
        self.on_coincidences = on_coincidences
        self.hist = Histograms.for_scanner(scanner, self.settings["window_ps"])
        self.counters = Counters(singles_per_board=np.zeros(scanner.n_boards, np.int64))
        self._lock = threading.Lock()

    def consume(self, raw: np.ndarray, watermarks_ps: dict[int, int],
                idle_boards: Collection[int] = ()) -> None:
        """Take decoded events and the boards' watermarks; process what the merge releases.
        ``idle_boards``: boards whose link has been silent for the quiet timeout."""
        with self._lock:
            self.merger.push(raw)
            for board, t in watermarks_ps.items():
                self.merger.advance(board, t)
            self._process(self.merger.pop_ready(idle_boards))

    def finish(self) -> None:
        """End of run: release everything held, flush the sorter, flush the list-mode file."""
        with self._lock:
            self._process(self.merger.flush())
            self._emit(self.sorter.flush())
            if self.writer is not None:
                self.writer.flush()

    def _process(self, events: np.ndarray) -> None:
        if events.size == 0:
            return
        singles = self.calibration.apply(events)
        self.counters.released += events.size
        self.counters.singles_per_board += np.bincount(
            self.scanner.crystal_board[events["crystal"]], minlength=self.scanner.n_boards)
        self._accumulate_singles(singles)
        self._emit(self.sorter.feed(singles))

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
        if self.writer is not None:
            self.writer.append(coinc)
        if self.on_coincidences is not None:
            self.on_coincidences(coinc)

    def _accumulate_singles(self, singles: np.ndarray) -> None:
        histograms.accumulate_energy(singles["energy"], self.hist.energy, ENERGY_HIST_KEV[1])
        if self.scanner.kind == "pet":
            histograms.accumulate_hit_map(singles["crystal"], self.hist.hitmap)

    @property
    def late_events(self) -> int:
        return self.merger.late_events

