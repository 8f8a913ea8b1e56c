"""The emulator: a scanner with a phantom in it, producing the digitizer's events over time.

Simulated time is cut into fixed *slices* (about ``slice_decays`` decays each, set by the activity,
not by how the output is chunked), each seeded from (seed, slice index): the same seed gives the
same events whatever the chunk length. In a slice: decay times and positions, the photons'
physics into crystal deposits, the scanner's Lu-176 decays, then the electronics (pile-up and
dead time carried over from slice to slice) and the digitizer. Events come out time-ordered.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from emulator import phantoms, records, rng
from emulator.blocks import BlockRunner, workers
from emulator.detector import electronics, lu176, noise
from emulator.detector.frontend import Bucketed, FrontEnds
from emulator.detector.ring import ring_of
from emulator.phantoms.kinetic import Mixture
from emulator.phantoms.posed import PosedMedium
from emulator.physics import flight, lanes, pet, sampling, spect
from emulator.physics.interactions import rayleigh_norms
from emulator.physics.media import TABLE_KEV, crystal_table, water_table
from hw import nuclides, wire
from hw.dtypes import RAW_DTYPE, SINGLE_DTYPE, join
from hw.motion import MotionTrace, Pose
from hw.scanner import Scanner, load_scanner
from infra.errors import UserError

if TYPE_CHECKING:
    from emulator.outputs.packers import Packer

#: Default trigger threshold (keV of deposited energy).
THRESHOLD_KEV = 50.0
_MIN_SLICE_S, _MAX_SLICE_S = 1e-6, 1.0
_WARM_UP_S = 1e-3
"""Emulated time of :meth:`Emulator.warm_up` (s)."""
#: A kinetic phantom's longest slice, in the model's seconds (its activity is taken constant
#: over a slice, at the slice's middle).
_KINETIC_SLICE_MODEL_S = 1.0
#: A moving patient's longest slice (s): the pose is that of the slice's middle.
MOTION_SLICE_S = 0.01
#: Room for deposits per Lu-176 decay (the local one and its gammas' hits: 2.8 on average in
#: bedside-brain; a block that overflows is run again with twice the room, at twice the cost).
LU176_DEPOSITS_PER_DECAY = 4.0


@dataclass
class Chunk:
    """Events with ``t`` in [t_start_ps, t_stop_ps), time-ordered over all boards."""

    t_start_ps: int
    t_stop_ps: int
    raw: np.ndarray
    """RAW_DTYPE: t ps as the digitizer quantised it, global crystal, ADC code."""
    board: np.ndarray
    """(n,) int32: the board each event came from."""
    n_boards: int
    truth: np.ndarray | None = None
    """TRUTH_DTYPE aligned with ``raw`` when truth is kept."""

    @property
    def raw_per_board(self) -> list[np.ndarray]:
        """Each board's events, in that board's time order."""
        return [self.raw[self.board == b] for b in range(self.n_boards)]


def _check_activity(activity_mbq: float) -> float:
    value = float(activity_mbq)
    if not math.isfinite(value) or value < 0:
        raise UserError(f"activity must be a finite number of MBq >= 0, got {activity_mbq}")
    return value


class Emulator:
    """A scanner, a phantom filled with a nuclide, and the electronics that read it out.

    ``run(duration_s, chunk_s)`` yields :class:`Chunk` s of events, memory-bounded; counters of
    what happened are in ``counters`` (names in :data:`emulator.records.COUNTERS`).
    """

    def __init__(self, scanner: Scanner | str = "bedside-brain",
                 phantom: str | phantoms.Phantom = "point", nuclide: str = "F-18",
                 activity_mbq: float = 1.0, seed: int = 0, *, truth: bool = False,
                 threshold_kev: float = THRESHOLD_KEV, intrinsic: bool = True,
                 slice_decays: int = 1 << 17, threads: int | None = None,
                 kinetic_time_scale: float = 1.0, motion: MotionTrace | None = None) -> None:
        """``activity_mbq``: the activity at t = 0; of a kinetic phantom, the injected activity
        (injected at t = 0). ``kinetic_time_scale``: a kinetic phantom's model minutes per
        minute of acquisition (physical decay stays in acquisition time). ``motion``: the
        phantom's rigid pose over time (:mod:`hw.motion`; each slice's decays and medium at the
        pose of its middle); a still trace is no motion."""
        self.scanner = scanner if isinstance(scanner, Scanner) else load_scanner(scanner)
        self.activity_mbq = _check_activity(activity_mbq)
        self.nuclide = nuclides.get(nuclide)
        self.phantom = phantoms.get(phantom, self.scanner)
        if self.phantom.blank:     # nothing in the scanner: no activity, whatever was asked
            self.activity_mbq = 0.0
        self.mixture = (Mixture(self.phantom, self.activity_mbq * 1e6, kinetic_time_scale)
                        if self.phantom.kinetics is not None else None)
        """A kinetic phantom's tissue classes, their volumes and curves."""
        self.seed = int(seed)
        self.truth = bool(truth)
        self._packed = self.phantom.packed()
        self._medium = flight.medium(self._packed.layers, self._packed.layer_boxes, water_table(),
                                     self._packed.density)
        self.motion = motion if motion is not None and not motion.still else None
        self._posed = PosedMedium(self.phantom, self._packed, water_table()) \
            if self.motion is not None else None
        self._crystal = crystal_table(self.scanner.material)
        if self.scanner.kind == "pet":
            self._ring = ring_of(self.scanner)
            self._table = lanes.medium_table(water_table(), self._medium.rho_max, self._crystal)
            self.history_weight = 1
        else:
            self._heads = spect.heads_of(self.scanner)
            self._norms = rayleigh_norms(TABLE_KEV)
            self.history_weight = spect.history_weight(self.scanner)
        self._lines = self.nuclide.lines()
        self._range = self.nuclide.positron_range()
        # PET: each crystal's own acceptance (dead channels 0); SPECT heads: the scanner's
        self._efficiency = self.scanner.crystal_acceptance() if self.scanner.kind == "pet" \
            else self.scanner.response.crystal_efficiency
        self._fe = electronics.front_end(self.scanner, threshold_kev)
        self._dig = electronics.digitizer(self.scanner)
        self._beta = lu176.beta_inverse_cdf()
        n = self.scanner.n_crystals
        volume = n * lu176.crystal_volume_cm3(self.scanner)
        self.lu176_bq = self.scanner.material.lu176_bq_per_cm3 * volume \
            if intrinsic and self.scanner.kind == "pet" else 0.0
        total = self._peak_bq() / self.history_weight + self.lu176_bq
        slice_s = min(max(slice_decays / total, _MIN_SLICE_S), _MAX_SLICE_S) if total else \
            _MAX_SLICE_S
        if self.mixture is not None:
            slice_s = max(min(slice_s, _KINETIC_SLICE_MODEL_S / self.mixture.time_scale),
                          _MIN_SLICE_S)
        if self.motion is not None:
            slice_s = max(min(slice_s, MOTION_SLICE_S), _MIN_SLICE_S)
        self.slice_ps = round(slice_s * 1e12)
        self.counters = dict.fromkeys(records.COUNTERS, 0)
        self._workers = workers(threads)
        self._blocks = BlockRunner(self._workers)

    # ------------------------------------------------------------------ public

    def warm_up(self, pack: Packer | None = None) -> None:
        """Emulate (and with ``pack``, a packer, encode) a moment of the scan and throw it away,
        so that numba compiles every kernel now (seconds to a minute on a fresh install) rather
        than while boards stream; a later :meth:`run` is the same as without it."""
        if self.mixture is not None:  # no activity at injection: compile the class draw now
            sampling.picks(rng.state([0]), np.ones(1), np.empty(1, np.int64))
        for chunk in self.run(_WARM_UP_S, chunk_s=_WARM_UP_S):
            if pack is not None:
                for b, events in enumerate(chunk.raw_per_board):
                    pack.events(events, b, 1)
                    pack.status(b, 2, chunk.t_stop_ps, events.size)
                    pack.marker(wire.RUN_START, b, 0, 0, 1)
        self.counters = dict.fromkeys(records.COUNTERS, 0)

    def slices(self, duration_s: float, start_s: float = 0.0) -> Slices:
        """The slices of an acquisition of ``duration_s`` from ``start_s`` (s)."""
        if not duration_s > 0 or start_s < 0:
            raise UserError(f"duration must be > 0 s and start >= 0 s, got {duration_s}, "
                            f"{start_s}")
        start_ps = round(start_s * 1e12)
        end_ps = start_ps + round(duration_s * 1e12)
        if self.scanner.kind == "spect":
            self._view = (start_ps, max(1, round((end_ps - start_ps) / self._heads.views)))
        return Slices(start_ps, end_ps, -(-(end_ps - start_ps) // self.slice_ps))

    def slice_physics(self, k: int, slices: Slices) -> SlicePhysics:
        """Slice ``k``'s physics with decay ids counted from 0 (:func:`renumbered` gives them
        their place in the run): what a shard of the acquisition computes on its own."""
        t_a = slices.start_ps + k * self.slice_ps
        return self._physics(k, t_a, min(t_a + self.slice_ps, slices.end_ps), 0, 0)

    def run(self, duration_s: float, chunk_s: float = 0.1, start_s: float = 0.0,
            physics: Iterator[SlicePhysics] | None = None) -> Iterator[Chunk]:
        """Emulate ``duration_s`` seconds from ``start_s`` (the activity is the given one at
        t = 0 and decays from there), yielding the events chunk by chunk, ``chunk_s`` long.
        ``physics``: the slices' physics in order (:meth:`slice_physics`, computed elsewhere,
        e.g. by the shards of :mod:`emulator.shards`); by default computed here."""
        if not duration_s > 0 or not chunk_s > 0 or start_s < 0:
            raise UserError(f"duration and chunk must be > 0 s and start >= 0 s, got "
                            f"{duration_s}, {chunk_s}, {start_s}")
        plan = self.slices(duration_s, start_s)
        self.counters = dict.fromkeys(records.COUNTERS, 0)
        counters = np.zeros(len(records.COUNTERS), np.int64)
        if self.mixture is not None:  # its curves tabulated now, not while boards stream
            self.mixture.concentrations(np.array([start_s + duration_s]))
        start_ps, end_ps, n_slices = plan
        chunk_ps = max(1, round(chunk_s * 1e12))
        fronts = FrontEnds(self._fe, self._dig, self.scanner.n_crystals, self.seed, self.truth,
                           self._workers)
        done_raw: list[np.ndarray] = []
        done_truth: list[np.ndarray] = []
        chunk_start = start_ps
        # with threads, the next slice's photons are followed while this one's electronics run
        ahead = physics is None and self._workers.threads > 1
        per_history = spect.IDS_PER_HISTORY if self.scanner.kind == "spect" else 1

        def local(k: int, first: int, first_lu: int) -> Future | SlicePhysics:
            if physics is not None:
                return renumbered(next(physics), first * per_history, first_lu)
            t_a = start_ps + k * self.slice_ps
            args = (k, t_a, min(t_a + self.slice_ps, end_ps), first, first_lu)
            return _AHEAD.submit(self._physics, *args) if ahead else self._physics(*args)

        pending = local(0, 0, 0)
        first = first_lu = 0
        for k in range(n_slices):
            phys = pending.result() if ahead else pending
            first, first_lu = first + phys.histories, first_lu + phys.lu176
            if ahead and k + 1 < n_slices:
                pending = local(k + 1, first, first_lu)
            counters += phys.counts
            t_b = min(start_ps + (k + 1) * self.slice_ps, end_ps)
            last = k == n_slices - 1
            raw, truth, counts, bound = fronts.slice(k, phys.blocks, t_b, last)
            counters += counts
            if not ahead and k + 1 < n_slices:
                pending = local(k + 1, first, first_lu)
            done_raw.append(raw)
            done_truth.append(truth)
            while chunk_start < end_ps and (last or bound - self._dig.period_ps >=
                                            chunk_start + chunk_ps):
                chunk_stop = min(chunk_start + chunk_ps, end_ps)
                yield self._cut(chunk_start, chunk_stop, done_raw, done_truth)
                chunk_start = chunk_stop
            self._publish(counters)
        self._publish(counters)

    # ------------------------------------------------------------------ internals

    def _peak_bq(self) -> float:
        """The source's activity (Bq) at t = 0; a kinetic phantom's highest in the field of
        view over its first two model hours (it sets the slices' length)."""
        if self.mixture is None:
            return self.activity_mbq * 1e6
        t_s = np.linspace(0.0, 7200.0 / self.mixture.time_scale, 4001)
        return float(self.mixture.activities_bq(t_s).sum(axis=0).max())

    def _pose(self, t_a: int, t_b: int) -> Pose | None:
        """The patient's pose in the slice [t_a, t_b) ps (its middle's); None when still."""
        return None if self.motion is None else self.motion.pose_at((t_a + t_b) * 0.5e-12)

    def _source(self, t_a: int, t_b: int) -> tuple[float, Callable[[np.ndarray, int], np.ndarray]]:
        """The source's decay rate (Bq) at t_a (ps) and how a block draws its decay positions
        (where the slice's pose puts them)."""
        rate, draw = self._source_at_rest(t_a, t_b)
        pose = self._pose(t_a, t_b)
        if pose is None:
            return rate, draw
        return rate, lambda block_rs, n: pose.apply(draw(block_rs, n))

    def _source_at_rest(self, t_a: int, t_b: int
                        ) -> tuple[float, Callable[[np.ndarray, int], np.ndarray]]:
        """The source's decay rate (Bq) at t_a (ps) and how a block draws its decay positions
        at rest: a kinetic phantom's classes weighted by their activity in the slice's middle."""
        lam = self.nuclide.decay_constant_per_s
        decay = math.exp(-lam * t_a * 1e-12)
        if self.mixture is None:
            def draw(block_rs: np.ndarray, n: int) -> np.ndarray:
                pos = np.empty((n, 3))
                sampling.positions(block_rs, self._packed, pos)
                return pos

            return self.activity_mbq * 1e6 * decay, draw
        weights = self.mixture.activities_bq(np.array([(t_a + t_b) * 0.5e-12]))[:, 0]
        total = float(weights.sum())
        cdf = np.cumsum(weights) / total if total > 0 else np.ones(weights.size)

        def draw_mixture(block_rs: np.ndarray, n: int) -> np.ndarray:
            classes = np.empty(n, np.int64)
            sampling.picks(block_rs, cdf, classes)
            pos = np.empty((n, 3))
            for k, packed in enumerate(self.mixture.packed):
                mine = np.flatnonzero(classes == k)
                if mine.size:
                    part = np.empty((mine.size, 3))
                    sampling.positions(block_rs, packed, part)
                    pos[mine] = part
            return pos

        return total * decay, draw_mixture

    def _publish(self, counters: np.ndarray) -> None:
        self.counters = {name: int(v) for name, v in zip(records.COUNTERS, counters,
                                                         strict=True)}

    def _cut(self, t0: int, t1: int, done_raw: list[np.ndarray], done_truth: list[np.ndarray]
             ) -> Chunk:
        """The singles before t1 (ps) of the slices done, taken out of ``done_raw`` (each
        slice's time-ordered, one after the other) and ``done_truth``, as a chunk."""
        k, n = _split_at(done_raw, t1)
        raw = self._taken(done_raw, k, n, RAW_DTYPE)
        truth = self._taken(done_truth, k, n, records.TRUTH_DTYPE)
        return Chunk(t0, t1, raw, self._boards(raw), self.scanner.n_boards,
                     truth if self.truth else None)

    def _taken(self, parts: list[np.ndarray], k: int, n: int, dtype: np.dtype) -> np.ndarray:
        """``parts[:k]`` and the first n of ``parts[k]``, joined (on the workers), removed
        from ``parts``."""
        taken = [*parts[:k], *([parts[k][:n]] if k < len(parts) else [])]
        parts[:] = [parts[k][n:], *parts[k + 1:]] if k < len(parts) else []
        return taken[0] if len(taken) == 1 else join(taken, dtype, workers=self._workers)

    def _boards(self, raw: np.ndarray) -> np.ndarray:
        """The board of each single, looked up in pieces on the workers."""
        board = np.empty(raw.size, self._dig.board_of.dtype)
        crystal = raw["crystal"]
        step = max(1 << 18, -(-raw.size // self._workers.threads))

        def look(p: int) -> None:
            board[p * step:(p + 1) * step] = self._dig.board_of[crystal[p * step:(p + 1) * step]]

        self._workers.map(look, -(-raw.size // step), "boards")
        return board

    def _spread_ps(self, rate: float) -> float:
        """SPECT: the time over which one history's detected photons (different decays) are
        spread, 64 mean history spacings but at most 1 % of a view."""
        spacing = 1e12 / rate if rate > 0 else 0.0
        return min(64.0 * spacing, 0.01 * self._view[1])

    def _physics(self, k: int, t_a: int, t_b: int, first: int, first_lu: int) -> SlicePhysics:
        """Slice k's decays in [t_a, t_b) ps and their photons' crystal deposits; ``first`` and
        ``first_lu`` the ids of its first source and Lu-176 decays."""
        rs = rng.state([self.seed, k, 0])
        c = records.COUNTERS
        counts = np.zeros(len(c), np.int64)
        n_layers = self._packed.layers.shape[0]
        # decay times of the source (SPECT: histories, each standing for history_weight
        # decays) and of the crystals' Lu-176
        lam = self.nuclide.decay_constant_per_s
        source_bq, positions = self._source(t_a, t_b)
        rate = source_bq / self.history_weight
        times = _decay_times(rs, t_a, t_b, rate, lam)
        lu_times = _decay_times(rs, t_a, t_b, self.lu176_bq, 0.0)
        counts[c.index("histories")] = times.size
        counts[c.index("decays")] = times.size * self.history_weight

        pose = self._pose(t_a, t_b)
        medium = self._medium if pose is None else self._posed.at(pose)
        common = (self.nuclide.positron_fraction, self._range, self._lines, medium)
        if self.scanner.kind == "pet":
            src, n = self._blocks.run([self.seed, k, 2], times, first, positions, pet.decays, (
                *common, self._ring, self._table, self._efficiency), tuple, 2.0)
        else:
            src, n = self._blocks.run([self.seed, k, 2], times, first, positions, spect.decays, (
                *common, self._heads, self._crystal, self._efficiency, self._norms,
                self.history_weight, self._spread_ps(rate), *self._view),
                lambda: (np.empty(flight.work_size(n_layers)),), 1.0)
        counts += n
        lu: list[np.ndarray] = []
        if lu_times.size:
            counts[c.index("lu176_decays")] = lu_times.size
            lu, n = self._blocks.run(
                [self.seed, k, 3], lu_times, records.LU176_ID_BASE + first_lu,
                lambda block_rs, m: None, lu176.decays,
                (self._ring, self._table, self._efficiency, self._beta, medium), tuple,
                LU176_DEPOSITS_PER_DECAY)
            counts += n
        noisy = self.scanner.noisy_channels()
        if noisy:
            lu = [*lu, noise.deposits(noisy, t_a, t_b, [self.seed, k, 4])]
        blocks = self._workers.map(lambda b: Bucketed([*src, *lu][b], self._fe),
                                   len(src) + len(lu))
        return SlicePhysics(blocks, counts, times.size, lu_times.size)


class Slices(NamedTuple):
    """An acquisition's time (ps) cut into ``n`` slices."""

    start_ps: int
    end_ps: int
    n: int


class SlicePhysics(NamedTuple):
    """A slice's physics, for its electronics."""

    blocks: list[Bucketed]          # each block's deposits by dead-time unit
    counts: np.ndarray              # its counters
    histories: int
    lu176: int


def _split_at(parts: list[np.ndarray], t_ps: int) -> tuple[int, int]:
    """(k, n): the singles before ``t_ps`` are ``parts[:k]`` and the first n of ``parts[k]``
    (the parts' times in order, one part after the other); the times searched in place
    (``np.searchsorted`` would copy the field first)."""
    k = 0
    while k < len(parts) and (parts[k].size == 0 or parts[k]["t"][-1] < t_ps):
        k += 1
    return (k, 0) if k == len(parts) else (k, bisect.bisect_left(parts[k]["t"], t_ps))


def renumbered(phys: SlicePhysics, first: int, first_lu: int) -> SlicePhysics:
    """``phys`` (computed with ids from 0) with its source decays' ids moved up by ``first``
    and its Lu-176 decays' by ``first_lu``: the ids a run from the start gives them."""
    if first or first_lu:
        for block in phys.blocks:
            decay = block.deposits["decay"]
            lu = decay >= records.LU176_ID_BASE
            decay += np.where(lu, first_lu, first)
    return phys


#: Runs the next slice's physics while the electronics process this one (multi-threaded runs).
_AHEAD = ThreadPoolExecutor(1, thread_name_prefix="emulator-ahead")


def _decay_times(rs: np.ndarray, t_a: int, t_b: int, rate_bq: float, lam_per_s: float
                 ) -> np.ndarray:
    """Sorted decay times (int64 ps) in [t_a, t_b) of a source of ``rate_bq`` at t_a."""
    mean = rate_bq * (t_b - t_a) * 1e-12
    times = np.empty(int(mean + 10 * math.sqrt(mean) + 64), np.int64)
    return times[:sampling.decay_times(rs, t_a, t_b - t_a, rate_bq, lam_per_s, times)]


def calibrated(raw: np.ndarray, scanner: Scanner) -> np.ndarray:
    """Singles (keV) of raw events as a perfect energy calibration gives them:
    adc x kev_per_adc_code / true gain."""
    out = np.empty(raw.size, SINGLE_DTYPE)
    out["t"] = raw["t"]
    out["crystal"] = raw["crystal"]
    gains = scanner.crystal_gains()
    out["energy"] = raw["adc"] * scanner.digitizer.kev_per_adc_code / gains[raw["crystal"]]
    return out


@dataclass
class Simulation:
    """A whole emulated acquisition in memory (see :func:`simulate`)."""

    scanner: Scanner
    raw: np.ndarray
    """RAW_DTYPE, all boards merged, time-ordered."""
    board: np.ndarray
    truth: np.ndarray | None
    counters: dict[str, int]
    duration_s: float
    start_s: float = 0.0
    _singles: np.ndarray | None = field(default=None, repr=False)

    @property
    def raw_per_board(self) -> list[np.ndarray]:
        """Each board's events in its time order."""
        return [self.raw[self.board == b] for b in range(self.scanner.n_boards)]

    @property
    def singles(self) -> np.ndarray:
        """SINGLE_DTYPE, aligned with ``raw``, energies from the true gains."""
        if self._singles is None:
            self._singles = calibrated(self.raw, self.scanner)
        return self._singles


def simulate(scanner: Scanner | str = "bedside-brain", phantom: str | phantoms.Phantom = "point",
             nuclide: str = "F-18", activity_mbq: float = 1.0, duration_s: float = 1.0,
             seed: int = 0, truth: bool = False, start_s: float = 0.0,
             **options: float) -> Simulation:
    """Emulate a whole acquisition in memory; ``options`` go to :class:`Emulator`."""
    emu = Emulator(scanner, phantom, nuclide, activity_mbq, seed, truth=truth, **options)
    chunks = list(emu.run(duration_s, chunk_s=duration_s, start_s=start_s))
    if len(chunks) == 1:
        raw, board, tr = chunks[0].raw, chunks[0].board, chunks[0].truth
    else:
        raw = join([ch.raw for ch in chunks], RAW_DTYPE)
        board = np.concatenate([ch.board for ch in chunks])
        tr = join([ch.truth for ch in chunks], records.TRUTH_DTYPE) if truth else None
    return Simulation(emu.scanner, raw, board, tr, emu.counters, duration_s, start_s)
