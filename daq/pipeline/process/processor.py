"""The DAQ's processing stage: decoded events -> energy gate -> time merge -> sorter -> list-mode.

PET: the gate (:mod:`daq.pipeline.process.gate`) calibrates and counts every single as it comes
and hands the merge those in the energy window. For a SPECT scanner every single is merged, then
calibrated and counted, and the projection stage (:mod:`daq.pipeline.process.projections`)
stands where the sorter stands: the calibrated singles are counted into energy-windowed
projections per gantry view.

One :class:`Processor` serves the live acquisition (fed by receiver threads) and the offline
replay/recovery (fed from the journal): the same code makes the same coincidences from the same
bytes. It also keeps the counters and the monitor's histograms; it does no I/O but the list-mode
writer it is given.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numba
import numpy as np

import coincidence
from coincidence import histograms
from coincidence.parallel import PIECE, copy_in_window
from daq.pipeline.cpu import ThreadClock
from daq.pipeline.links.journal import Buffer
from daq.pipeline.process.calibration import Calibration
from daq.pipeline.process.gate import EnergyGate, Staged
from daq.pipeline.process.merge import Columns, TimeMerger, new_columns
from daq.pipeline.process.projections import ProjectionStage
from hw import wire
from hw.dtypes import SINGLE_DTYPE
from hw.scanner import Scanner
from hw.wire.decode import DecodeScratch, decode_streams
from infra.errors import UserError
from infra.pool import SERIAL, Workers
from runstore.listmode import ListModeWriter
from runstore.singlesrates import SinglesRates

ENERGY_HIST_KEV = (0.0, 1000.0)
"""Range of the monitor's energy spectrum (the kernel bins [0, 1000) keV)."""
ENERGY_BINS = 250
DT_BINS = 101
WINDOWED_SHARE = 4
"""PET: the merge's memory is set aside for one single in this many (those in the energy window
behind a phantom's scatter are about one in six); a wider window grows it once."""
_SCRATCH_MAX_EVENTS = 1 << 26
"""A work buffer of singles up to this size is kept for the next chunk (a larger one, after a
long backlog, is given back)."""


@dataclass
class SortSettings:
    """Coincidence sorting settings; ``None`` takes the scanner's default."""

    window_ps: int | None = None
    delay_ps: int | None = None
    energy_window_kev: tuple[float, float] | None = None
    policy: str = "takeAllGoods"
    min_sector_difference: int | None = None
    mode: str = "single-window"
    photopeaks_kev: tuple[float, ...] | None = None
    """SPECT: the photopeaks to window (:func:`daq.pipeline.process.projections.windows_of`);
    None: the scanner's acquisition window."""

    def resolved(self, scanner: Scanner) -> dict[str, Any]:
        """Checked settings for ``scanner`` (:func:`coincidence.resolve`, keyword arguments of
        :func:`coincidence.sort`). The one DAQ difference: the delayed window is on by default,
        at the scanner's delay (``delay_ps=0`` turns it off), or at twice the window where the
        window is longer than that delay (slow scintillators, uncalibrated channels)."""
        delay = self.delay_ps
        if delay is None:
            window = self.window_ps or scanner.acquisition["coincidence_window_ps"]
            delay = max(int(scanner.acquisition["delay_ps"]), 2 * int(window))
        elif 0 < delay < (self.window_ps or scanner.acquisition["coincidence_window_ps"]):
            raise UserError(f"--delay-ps {delay} is shorter than the coincidence window: the "
                            "delayed window must start after the window ends")
        return coincidence.resolve(
            scanner, window_ps=self.window_ps, energy_window_kev=self.energy_window_kev,
            policy=self.policy, delay_ps=delay or None,
            min_sector_difference=self.min_sector_difference, mode=self.mode).as_dict()


@dataclass
class Histograms:
    """What the monitor shows, accumulated over the run (coincidence.histograms kernels). The
    singles' histograms are kept per worker thread (``*_parts``, summed when read): integer
    counts, the same sums for any number of workers."""

    energy_parts: np.ndarray
    """(workers, ENERGY_BINS): singles spectrum over ENERGY_HIST_KEV."""
    dt: np.ndarray | None
    """Prompts' signed time differences over dt_range_ps (PET)."""
    hitmap_parts: np.ndarray
    """(workers, cells): singles per crystal, flattened [crystal ring, crystal in ring] (PET),
    [row, head x column] (SPECT)."""
    hitmap_shape: tuple[int, int]
    hit_cell: np.ndarray
    """Each crystal's index in the flattened hit map."""
    sinogram: np.ndarray | None
    """Prompts' transaxial LORs [angle, radial] (PET)."""
    dt_range_ps: tuple[int, int]

    @classmethod
    def for_scanner(cls, scanner: Scanner, window_ps: int, workers: int = 1) -> Histograms:
        pet = scanner.kind == "pet"
        shape = (scanner.n_rings, scanner.crystals_per_ring)
        return cls(
            energy_parts=per_worker(workers, ENERGY_BINS),
            dt=np.zeros(DT_BINS, np.int64) if pet else None,
            hitmap_parts=per_worker(workers, shape[0] * shape[1]),
            hitmap_shape=shape,
            hit_cell=_hit_cells(scanner),
            sinogram=np.zeros(histograms.sinogram_shape(scanner), np.int64) if pet else None,
            dt_range_ps=(-window_ps, window_ps),
        )

    @property
    def energy(self) -> np.ndarray:
        """Singles spectrum over ENERGY_HIST_KEV."""
        return self.energy_parts.sum(axis=0)

    @property
    def hitmap(self) -> np.ndarray:
        """Singles per crystal: [crystal ring, crystal in ring] (PET), [row, head x column]
        (SPECT)."""
        return self.hitmap_parts.sum(axis=0).reshape(self.hitmap_shape)


_CACHE_LINE_WORDS = 8


def per_worker(workers: int, n: int) -> np.ndarray:
    """(workers, n) int64 zeros whose rows never share a cache line: threads that count into
    neighbouring rows would otherwise pass the line back and forth at every count."""
    padded = -(-n // _CACHE_LINE_WORDS) * _CACHE_LINE_WORDS + _CACHE_LINE_WORDS
    return np.zeros((workers, padded), np.int64)[:, :n]


def _hit_cells(scanner: Scanner) -> np.ndarray:
    """Crystal id -> flat hit-map index: the id itself for PET (ring-major); SPECT pixels
    (``head * rows * columns + row * columns + column``) go to [row, head * columns + column]."""
    ids = np.arange(scanner.n_crystals, dtype=np.int32)
    if scanner.kind == "pet":
        return ids
    rows, per_row = scanner.n_rings, scanner.crystals_per_ring
    columns = per_row // scanner.n_modules
    head, rest = np.divmod(ids, rows * columns)
    row, column = np.divmod(rest, columns)
    return np.ascontiguousarray(row * per_row + head * columns + column, np.int32)


@dataclass
class Counters:
    """Event counts of the run so far; singles come from the hit map (each hit-map cell is one
    crystal, on one board)."""

    hist: Histograms
    board_of_cell: np.ndarray
    """Each hit-map cell's board."""
    n_boards: int
    prompts: int = 0
    delayeds: int = 0
    released: int = 0
    """Singles released by the time merge (PET: those in the energy window)."""
    extra: dict[str, int] = field(default_factory=dict)

    @property
    def singles_per_board(self) -> np.ndarray:
        hits = self.hist.hitmap_parts.sum(axis=0)
        return np.bincount(self.board_of_cell, weights=hits,
                           minlength=self.n_boards).astype(np.int64)

    @property
    def singles(self) -> int:
        return int(self.hist.hitmap_parts.sum())


class Processor:
    """Turn decoded events into coincidences, in time order, chunk by chunk. Thread-safe.

    ``workers`` (:class:`infra.pool.Workers`): the threads that decode, gate, merge, calibrate
    and sort each batch, by link, by piece and by time slice; the output does not depend on how
    many.
    """

    def __init__(self, scanner: Scanner, calibration: Calibration, sort: SortSettings,
                 writer: ListModeWriter | None, quiet_timeout_s: float = 3.0,
                 on_coincidences: Callable[[np.ndarray], None] | None = None,
                 scan_duration_s: float | None = None, workers: Workers | None = None) -> None:
        """``scan_duration_s``: the planned scan time (s), which a SPECT scanner's gantry views
        share (:class:`daq.pipeline.process.projections.ProjectionStage`); PET ignores it."""
        self.scanner, self.calibration = scanner, calibration
        self.workers = workers or SERIAL
        n = self.workers.threads
        self.stage: coincidence.Sorter | ProjectionStage
        if scanner.kind == "spect":
            peaks = tuple(sort.photopeaks_kev) if sort.photopeaks_kev else None
            self.stage = ProjectionStage(scanner, scan_duration_s, peaks)
            self.settings = self.stage.settings
        else:
            self.settings = sort.resolved(scanner)
            self.stage = coincidence.Sorter(scanner=scanner, workers=self.workers,
                                            **self.settings)
        self.hist = Histograms.for_scanner(scanner, self.settings["window_ps"], n)
        self._scale = np.ascontiguousarray(
            (calibration.kev_per_adc_code / calibration.gains).astype(np.float32))
        self.rates: SinglesRates | None = None
        """PET: the singles per module and time bin, for the list-mode file's dead-time
        correction (:mod:`hw.deadtime`)."""
        self.gate: EnergyGate | None = None
        """PET: the singles' calibration, counts and energy window before the merge."""
        if scanner.kind == "pet":
            self.rates = SinglesRates(scanner, workers=n)
            h = self.hist
            self.gate = EnergyGate(self._scale, self.settings["energy_window_kev"],
                                   h.energy_parts, float(ENERGY_HIST_KEV[1]), h.hitmap_parts,
                                   self.rates, self.workers)  # PET's hit map: by crystal id
        value = np.float32 if self.gate is not None else np.uint16
        self.merger = TimeMerger(scanner.n_boards, quiet_timeout_s, self.workers, value)
        self.writer = writer
        self.on_coincidences = on_coincidences
        self._last_released_ps = 0
        board_of_cell = np.empty(scanner.n_crystals, np.int64)
        board_of_cell[self.hist.hit_cell] = scanner.crystal_board
        self.counters = Counters(self.hist, board_of_cell, scanner.n_boards)
        self._lock = threading.Lock()
        self._singles: np.ndarray | None = None
        self._staging: Staged = (*new_columns(0), np.zeros(0, np.float32))
        """PET: where the batch's singles are decoded (t, crystal, adc) and gated (energy)."""
        self._scratch = DecodeScratch()
        """Decoding's work memory, shared by every link (:func:`hw.wire.decode.decode_streams`)."""
        self._clock: ThreadClock | None = None

    @property
    def last_single_ps(self) -> int:
        """The detector-clock time of the latest single processed (ps since the run start)."""
        if self.rates is not None:  # PET: every single counted at the gate, late ones apart
            return self.rates.last_single_ps
        return self._last_released_ps

    def preallocate(self, batch_bytes: int, n_links: int) -> None:
        """The work memory of batches of up to ``batch_bytes`` from ``n_links`` links, allocated
        and touched now, before the first data: in the steady state no page is then touched for
        the first time (a page fault, a page the kernel zeroes) while data flow."""
        events = batch_bytes // 8
        self._scratch.reserve(batch_bytes, n_links)
        if self.gate is not None:  # the merge holds only the singles in the energy window
            self.merger.preallocate(events // WINDOWED_SHARE)
            self._stage_room(events + 3 * n_links, touch=True)
            self.stage.reserve(2 * (events // WINDOWED_SHARE))  # a release, and those pending
        else:
            self.merger.preallocate(events)
            if self._singles is None or self._singles.size < events:
                self._singles = np.ones(events, SINGLE_DTYPE)

    def _stage_room(self, n: int, touch: bool = False) -> Staged:
        """The staging columns, with room for ``n`` events (grown by doubling)."""
        if self._staging[0].size < n:
            n = max(n, 2 * self._staging[0].size)
            energy = (np.ones if touch else np.empty)(n, np.float32)
            self._staging = (*new_columns(n, touch=touch), energy)
        return self._staging

    def consume(self, raw: np.ndarray | list[np.ndarray], watermarks_ps: dict[int, int],
                idle_boards: Collection[int] = (), clock: ThreadClock | None = None) -> None:
        """Take decoded events (an array, or a list of them) and the boards' watermarks; process
        what the merge releases. ``idle_boards``: boards whose link has been silent for the
        quiet timeout. ``clock``: the calling thread's CPU clock, lapped after each stage
        (gate, merge, sort...)."""
        with self._lock:
            self._clock = clock
            for events in raw if isinstance(raw, list) else (raw,):
                if self.gate is None:
                    self.merger.push(events)
                elif events.size:
                    staged = tuple(col[:events.size] for col in self._stage_room(events.size))
                    for column, field in zip(staged, ("t", "crystal", "adc"), strict=False):
                        column[:] = events[field]
                    self.gate.run([staged], self.merger)
            self._lap("gate")
            self._advance(watermarks_ps)
            self._release(idle_boards)
            self._clock = None

    def consume_links(self, links: Sequence[tuple[wire.Decoder, Sequence[Buffer]]],
                      idle_boards: Collection[int] = (), clock: ThreadClock | None = None
                      ) -> None:
        """Decode what each link received (its decoder, the byte buffers in order) on the
        workers (:func:`hw.wire.decode.decode_streams`), PET: into the staging columns and
        through the gate, SPECT: straight into the merger's store; then process what the merge
        releases (as :meth:`consume`)."""
        with self._lock:
            self._clock = clock
            sizes = [d.max_events(sum(len(memoryview(p)) for p in parts)) for d, parts in links]
            views = self._decode_room(sizes)
            counts = decode_streams([d for d, _ in links], [p for _, p in links],
                                    [v[:3] for v in views], self.workers, self._scratch)
            self._lap("decode")
            if self.gate is None:
                self.merger.commit(counts)
            else:
                self.gate.run([tuple(c[:k] for c in v) for v, k in zip(views, counts,
                                                                         strict=True)],
                              self.merger)
                self._lap("gate")
            for decoder, _ in links:
                self._advance(decoder.watermarks_ps)
            self._release(idle_boards)
            self._clock = None

    def _decode_room(self, sizes: list[int]) -> list[tuple[np.ndarray, ...]]:
        """Columns for ``sizes[i]`` decoded events each: PET, views of the staging columns (t,
        crystal, adc, energy); SPECT, reservations in the merger's store (t, crystal, adc)."""
        if self.gate is None:
            return self.merger.reserve(sizes)
        staging, views, at = self._stage_room(sum(sizes)), [], 0
        for n in sizes:
            views.append(tuple(col[at:at + n] for col in staging))
            at += n
        return views

    def finish(self, clock: ThreadClock | None = None) -> None:
        """End of run: release everything held, flush the sorter, flush the list-mode file.
        ``clock``: the calling thread's CPU clock, lapped as in :meth:`consume`."""
        with self._lock:
            self._clock = clock
            self._release(final=True)
            self._emit(self.stage.flush())
            if self.writer is not None:
                if self.rates is not None:
                    self.writer.append_rates(self.rates.finish())
                self.writer.flush()
            elif self.rates is not None:
                self.rates.finish()
            self._clock = None

    def save_projections(self, directory: Path) -> Path | None:
        """SPECT: write the projections into ``directory`` (:meth:`ProjectionStage.save`) and
        return the file; PET: nothing to write, None."""
        if isinstance(self.stage, ProjectionStage):
            with self._lock:
                return self.stage.save(directory)
        return None

    def _advance(self, watermarks_ps: dict[int, int]) -> None:
        for board, t in watermarks_ps.items():
            self.merger.advance(board, t)

    def _release(self, idle_boards: Collection[int] = (), final: bool = False) -> None:
        ready = self.merger.release(idle_boards, final)
        self._lap("merge")
        self._process(ready)
        if self.rates is not None and not final:
            table = self.rates.take(self.merger.released_through_ps)
            if self.writer is not None:
                self.writer.append_rates(table)

    def _process(self, events: Columns) -> None:
        """Released events (t, crystal and PET: energy, SPECT: adc; :meth:`TimeMerger.release`)
        -> coincidences or projections."""
        n = events[0].size
        if n == 0:
            return
        self._last_released_ps = max(self._last_released_ps, int(events[0][-1]))
        self.counters.released += n
        if isinstance(self.stage, coincidence.Sorter):
            coinc = self._sorted(*events)
        else:
            singles = self._calibrated(*events)
            self._lap("calibrate + histograms")
            coinc = self.stage.feed(singles)
            self._lap("projections")
        self._emit(coinc)

    def _pieces(self, n: int) -> list[int]:
        """Bounds of the pieces of ``n`` events that the workers share."""
        n_pieces = max(1, -(-n // PIECE)) if self.workers.threads > 1 else 1
        return [k * n // n_pieces for k in range(n_pieces + 1)]

    def _sorted(self, t: np.ndarray, crystal: np.ndarray, energy: np.ndarray) -> np.ndarray:
        """PET: the released singles (all in the energy window: the gate's) copied into the
        sorter's buffers (:meth:`coincidence.Sorter.feed_windowed`), piece by piece on the
        workers. Returns the coincidences now complete."""
        bounds = self._pieces(t.size)
        n_crystals = self.scanner.n_crystals

        def write(k: int, columns: tuple[np.ndarray, ...], start: int) -> tuple[bool, bool]:
            a, b = bounds[k], bounds[k + 1]
            return copy_in_window(t[a:b], crystal[a:b], energy[a:b], -np.inf, np.inf,
                                  n_crystals, *columns, start)

        coinc = self.stage.feed_windowed(np.diff(bounds).tolist(), write)
        if coinc is None:  # out of time order (never from the merge): the sorter's general way
            singles = np.empty(t.size, SINGLE_DTYPE)
            singles["t"], singles["crystal"], singles["energy"] = t, crystal, energy
            coinc = self.stage.feed(singles)
        self._lap("sort")
        return coinc

    def _check_crystals(self, crystal: np.ndarray, bounds: list[int], bad: np.ndarray) -> None:
        """A clear error for the first event whose crystal id is outside the scanner (``bad``:
        each piece's first such event, -1 for none)."""
        if (bad >= 0).any():
            k = int(np.flatnonzero(bad >= 0)[0])
            first = bounds[k] + int(bad[k])
            raise UserError(f"event {first} has crystal id {int(crystal[first])}, outside "
                            f"0..{self.scanner.n_crystals - 1} of scanner '{self.scanner.name}'")

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
        ``coincidence.histograms.accumulate_energy`` and ``accumulate_hit_map``), piece by piece
        on the workers, each into its own histograms. The singles are in a work buffer that the
        next call reuses: the sorter copies what it keeps."""
        n = t.size
        if self._singles is None or self._singles.size < n:
            grown = 2 * self._singles.size if self._singles is not None else 0
            self._singles = np.empty(max(n + n // 2, grown, 1 << 16), SINGLE_DTYPE)
        singles = self._singles[:n]
        if n > _SCRATCH_MAX_EVENTS:
            self._singles = None
        bounds, h = self._pieces(n), self.hist
        bad = np.full(len(bounds) - 1, -1, np.int64)

        def piece(worker: int, k: int) -> None:
            a, b = bounds[k], bounds[k + 1]
            bad[k] = _calibrate_and_count(
                t[a:b], crystal[a:b], adc[a:b], self._scale, singles["t"][a:b],
                singles["crystal"][a:b], singles["energy"][a:b], h.energy_parts[worker],
                float(ENERGY_HIST_KEV[1]), h.hitmap_parts[worker], h.hit_cell)

        self.workers.run(len(bounds) - 1, piece, "calibrate + histograms")
        self._check_crystals(crystal, bounds, bad)
        return singles

    @property
    def late_events(self) -> int:
        """Singles older than what was already released (gate and merge)."""
        gated = self.gate.late_events if self.gate is not None else 0
        return self.merger.late_events + gated


@numba.njit(nogil=True, cache=True)
def _calibrate_and_count(t, crystal, adc, scale, out_t, out_crystal, out_energy, spectrum,
                         e_max, hits, hit_cell):
    """One pass over the released events: ``energy = float32(adc) * scale[crystal]`` (as
    :meth:`Calibration.apply`), the energy spectrum over [0, e_max) and the hit map (``hits``:
    the flat map, ``hit_cell``: each crystal's index in it), binned as
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
        b = histograms.energy_bin(e, e_max, n_bins)
        if b >= 0:
            spectrum[b] += 1
        hits[hit_cell[c]] += 1
    return -1
