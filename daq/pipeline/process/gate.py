"""The PET singles' gate before the time merge: calibrated, counted and windowed as they arrive.

Every decoded single, by pieces on the workers (three short passes a piece:
:func:`gate_piece`): its energy (``float32(adc) * scale[crystal]``, as
:meth:`daq.pipeline.process.calibration.Calibration.apply`), the monitor's energy spectrum and
hit map, the singles rates of the dead-time correction (:mod:`runstore.singlesrates`); the
singles in the energy window are kept (t, crystal, energy) and handed to the time merge. The
merge and the coincidence sorter then handle the windowed singles alone (a sixth of them behind
the NU 2 phantom's scatter). A single older than the time the merge has already released
through is *late*: counted apart (the journal keeps it, ``petdaq replay`` recovers it), never
counted or merged. The counts are integers summed over the workers: the same for any number of
them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numba
import numpy as np

from coincidence import histograms
from daq.pipeline.process.merge import SLICE_EVENTS, TimeMerger
from infra.errors import UserError
from infra.pool import Workers
from runstore.singlesrates import SinglesRates

_NEVER = np.iinfo(np.int64).max

Staged = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""Decoded singles as the gate takes them: t (int64 ps), crystal (int32), adc (uint16), and a
float32 column of the same length for their energies (keV), written by the gate."""


class Cut(NamedTuple):
    """What the gate keeps (a bundle for :func:`gate_piece`)."""

    scale: np.ndarray
    """(crystals,) float32 keV per ADC code."""
    lo_kev: float
    hi_kev: float
    """The energy window [lo, hi)."""
    late_before_ps: int
    """A single before this time is late."""


class Tally(NamedTuple):
    """One worker's counts (a bundle for :func:`gate_piece`)."""

    spectrum: np.ndarray
    """(bins,) int64: the energy spectrum over [0, e_max_kev)."""
    e_max_kev: float
    hits: np.ndarray
    """(crystals,) int64: the hit map, by crystal id (PET's ids run ring by ring)."""
    rates: np.ndarray
    """(bins, units) int64: singles per dead-time unit (``unit_of[crystal]``) and rate bin,
    from ``first_bin``, bins of ``bin_ps``."""
    unit_of: np.ndarray
    first_bin: int
    bin_ps: int
    row_hits: np.ndarray
    """(crystals,) int64 scratch, zero between pieces: the hits of the rate bin being counted,
    folded into ``hits`` and ``rates`` when the bin is done."""


@numba.njit(nogil=True, cache=True)
def time_span(t, late_before_ps):
    """(earliest, latest) time of the singles that are not late ((max, min) int64 for none), and
    how many are late."""
    lo, hi = _NEVER, -_NEVER - 1
    late = 0
    for i in range(t.size):
        ti = t[i]
        if ti >= late_before_ps:
            lo = min(lo, ti)
            hi = max(hi, ti)
        else:
            late += 1
    return lo, hi, late


@numba.njit(nogil=True, cache=True)
def _energies(crystal, adc, scale, out_e):
    """``out_e = float32(adc) * scale[crystal]`` up to the first single whose crystal id is
    outside the scanner; returns its index, else -1."""
    n_crystals = scale.size
    for i in range(crystal.size):
        c = crystal[i]
        if c < 0 or c >= n_crystals:
            return i
        out_e[i] = np.float32(adc[i]) * scale[c]
    return -1


@numba.njit(nogil=True, cache=True)
def _fold(tally, row):
    """``tally.row_hits`` (the hits of rate bin ``row``) added to the hit map and the rates,
    and cleared."""
    for c in range(tally.row_hits.size):
        h = tally.row_hits[c]
        tally.hits[c] += h
        tally.rates[row, tally.unit_of[c]] += h
        tally.row_hits[c] = 0


@numba.njit(nogil=True, cache=True)
def _count_in_row(crystal, energy, n, tally, row):
    """The first ``n`` singles (none late, all in rate bin ``row``) counted into ``tally``."""
    n_bins = tally.spectrum.size
    for i in range(n):
        b = histograms.energy_bin(energy[i], tally.e_max_kev, n_bins)
        if b >= 0:
            tally.spectrum[b] += 1
        tally.row_hits[crystal[i]] += 1
    _fold(tally, row)


@numba.njit(nogil=True, cache=True)
def _count(t, crystal, energy, n, late_before_ps, tally):
    """The first ``n`` singles counted into ``tally``, bin by rate bin, the late ones apart;
    returns how many were late."""
    n_bins = tally.spectrum.size
    bin_ps = tally.bin_ps
    row, row_lo, row_hi = -1, 0, 0  # the rate bin being counted, and its times
    late = 0
    for i in range(n):
        ti = t[i]
        if ti < late_before_ps:
            late += 1
            continue
        if ti >= row_hi or ti < row_lo:
            if row >= 0:
                _fold(tally, row)
            row = ti // bin_ps - tally.first_bin
            row_lo = (row + tally.first_bin) * bin_ps
            row_hi = row_lo + bin_ps
        b = histograms.energy_bin(energy[i], tally.e_max_kev, n_bins)
        if b >= 0:
            tally.spectrum[b] += 1
        tally.row_hits[crystal[i]] += 1
    if row >= 0:
        _fold(tally, row)
    return late


@numba.njit(nogil=True, cache=True)
def _keep(t, crystal, energy, n, cut, out_t, out_c, out_e):
    """The first ``n`` singles in the energy window and not late written to ``out_*`` in their
    order; returns how many."""
    kept = 0
    for i in range(n):
        ti, e = t[i], energy[i]
        # written whatever its energy, kept (the next one written after it) when in the
        # window: no branch to mispredict (a sixth of the singles, at random, are in it)
        out_t[kept], out_c[kept], out_e[kept] = ti, crystal[i], e
        kept += (e >= cut.lo_kev) & (e < cut.hi_kev) & (ti >= cut.late_before_ps)
    return kept


@numba.njit(nogil=True, cache=True)
def gate_piece(t, crystal, adc, cut, tally, span, out_t, out_c, out_e):
    """Every single of ``t, crystal, adc`` calibrated (into ``out_e``) and counted into
    ``tally``, those in the energy window written to ``out_*`` (their order kept; ``out_*``
    have room for every single of the piece; ``out_t, out_c`` may be ``t, crystal``), the
    late ones only counted. ``span``: the piece's :func:`time_span`; ``tally.rates`` covers its
    bins (:meth:`runstore.singlesrates.SinglesRates.cover`). Returns (kept: the singles
    written, late, the first single whose crystal id is outside the scanner, else -1: it and
    the later ones are left alone).

    One pass per step (calibrate, count, keep) rather than one pass doing all three: the
    steps' loops are short enough for the CPU to run many singles at once."""
    bad = _energies(crystal, adc, cut.scale, out_e)
    n = t.size if bad < 0 else bad
    lo, hi, late = span
    row = lo // tally.bin_ps
    if late == 0 and hi // tally.bin_ps == row:
        _count_in_row(crystal, out_e, n, tally, row - tally.first_bin)
    else:
        late = _count(t, crystal, out_e, n, cut.late_before_ps, tally)
    return _keep(t, crystal, out_e, n, cut, out_t, out_c, out_e), late, bad


class EnergyGate:
    """The gate of a run (see the module docstring): the calibration ``scale`` (keV per ADC code
    per crystal), the energy window, and where it counts: the monitor's per-worker spectra
    (``spectra``, over [0, ``e_max_kev``)) and hit maps (``hits``, by crystal id) and the
    singles ``rates`` (a table per worker)."""

    def __init__(self, scale: np.ndarray, window_kev: tuple[float, float], spectra: np.ndarray,
                 e_max_kev: float, hits: np.ndarray, rates: SinglesRates, workers: Workers
                 ) -> None:
        self.scale = scale
        self.lo_kev, self.hi_kev = (float(v) for v in window_kev)
        self.spectra, self.e_max_kev, self.hits = spectra, e_max_kev, hits
        self.row_hits = np.zeros_like(hits)
        self.rates, self.workers = rates, workers
        self.late_events = 0

    def tally(self, worker: int) -> Tally:
        """Worker ``worker``'s counts."""
        r = self.rates
        return Tally(self.spectra[worker], self.e_max_kev, self.hits[worker], r.counts[worker],
                     r.unit_of, r.first_bin, r.bin_ps, self.row_hits[worker])

    def run(self, parts: Sequence[Staged], merger: TimeMerger) -> int:
        """Gate the singles of ``parts`` (each in its own order, e.g. a link's) into
        ``merger`` (values: energy in keV), by pieces on the workers; returns how many were
        kept. The kept singles are first written over their part's own columns (its t and
        crystal, and its energy column), so that the merger's store takes only them. A crystal
        id outside the scanner is a :class:`infra.errors.UserError`."""
        late_before = merger.released_through_ps
        pieces = [tuple(col[a:a + SLICE_EVENTS] for col in part)
                  for part in parts for a in range(0, part[0].size, SLICE_EVENTS)]
        if not pieces:
            return 0
        spans = np.array(self.workers.map(lambda k: time_span(pieces[k][0], late_before),
                                          len(pieces), "gate"), np.int64)
        t_min, t_max = int(spans[:, 0].min()), int(spans[:, 1].max())
        span_of = [tuple(row) for row in spans.tolist()]
        if t_min <= t_max:
            self.rates.cover(t_min, t_max)
        cut = Cut(self.scale, self.lo_kev, self.hi_kev, late_before)
        done = np.zeros((len(pieces), 3), np.int64)

        def one(worker: int, k: int) -> None:
            t, crystal, adc, energy = pieces[k]
            done[k] = gate_piece(t, crystal, adc, cut, self.tally(worker), span_of[k], t, crystal,
                                 energy)

        self.workers.run(len(pieces), one, "gate")
        self._check_crystals(pieces, done[:, 2])
        kept = done[:, 0].tolist()
        views = merger.reserve(kept)

        def store(k: int) -> None:
            t, crystal, _, energy = pieces[k]
            for column, view in zip((t, crystal, energy), views[k], strict=True):
                view[:] = column[:kept[k]]

        self.workers.map(store, len(pieces), "gate")
        merger.commit(kept)
        self.late_events += int(done[:, 1].sum())
        if t_min <= t_max:
            self.rates.counted(t_min, t_max)
        return int(done[:, 0].sum())

    def _check_crystals(self, pieces: list[Staged], bad: np.ndarray) -> None:
        """A clear error for the first single whose crystal id is outside the scanner."""
        if (bad >= 0).any():
            k = int(np.flatnonzero(bad >= 0)[0])
            crystal = int(pieces[k][1][bad[k]])
            raise UserError(f"a single has crystal id {crystal}, outside "
                            f"0..{self.scale.size - 1} of the scanner")
