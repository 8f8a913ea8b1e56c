"""The energy gate's kernel against a NumPy reference: energies, spectrum, hit map, singles rates
per rate bin, the singles kept, the late ones and a crystal id outside the scanner."""

from __future__ import annotations

import numpy as np
import pytest

from coincidence import histograms
from daq.pipeline.process.gate import Cut, Tally, gate_piece, time_span
from runstore.singlesrates import SinglesRates

E_MAX_KEV = 1000.0


def _singles(scanner, n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Time-ordered singles over 30 ms, crystal ids over the scanner, ADC codes from 0 to 1400."""
    t = np.sort(rng.integers(10**9, 31 * 10**9, n)).astype(np.int64)
    crystal = rng.integers(0, scanner.n_crystals, n).astype(np.int32)
    adc = rng.integers(0, 1400, n).astype(np.uint16)
    return t, crystal, adc


def _gate(scanner, t, crystal, adc, scale, bin_ps, late_before_ps):
    """gate_piece on copies of the singles; returns (kept, late, bad), the kept columns, tally."""
    rates = SinglesRates(scanner, bin_ps=bin_ps)
    span = time_span(t, late_before_ps)
    rates.cover(span[0], span[1])
    tally = Tally(np.zeros(250, np.int64), E_MAX_KEV, np.zeros(scanner.n_crystals, np.int64),
                  rates.counts[0], rates.unit_of, rates.first_bin, rates.bin_ps,
                  np.zeros(scanner.n_crystals, np.int64))
    out_t, out_c, out_e = t.copy(), crystal.copy(), np.zeros(t.size, np.float32)
    done = gate_piece(out_t, out_c, adc, Cut(scale, 350.0, 650.0, late_before_ps), tally, span,
                      out_t, out_c, out_e)
    kept = done[0]
    assert not tally.row_hits.any()  # the scratch is left clear
    return done, (out_t[:kept], out_c[:kept], out_e[:kept]), tally, rates


@pytest.mark.parametrize("bin_ps, late_before_ps", [(10**11, 0), (10**9, 0), (10**9, 7 * 10**9)],
                         ids=["one rate bin", "many rate bins", "late singles"])
def test_the_gate_counts_and_keeps_what_numpy_does(brain, bin_ps, late_before_ps) -> None:
    rng = np.random.default_rng(3)
    t, crystal, adc = _singles(brain, 50000, rng)
    if late_before_ps:  # a board's singles behind the others': the late ones are scattered
        t[::7] -= 3 * 10**9
    scale = rng.uniform(0.4, 0.6, brain.n_crystals).astype(np.float32)
    (kept, late, bad), columns, tally, rates = _gate(brain, t, crystal, adc, scale, bin_ps,
                                                      late_before_ps)
    on_time = t >= late_before_ps
    energy = adc.astype(np.float32) * scale[crystal]
    keep = on_time & (energy >= 350.0) & (energy < 650.0)
    assert bad == -1 and late == int((~on_time).sum()) and (late > 0) == (late_before_ps > 0)
    assert kept == int(keep.sum()) > 0
    for got, want in zip(columns, (t[keep], crystal[keep], energy[keep]), strict=True):
        assert np.array_equal(got, want)
    spectrum = np.zeros(250, np.int64)
    histograms.accumulate_energy(energy[on_time], spectrum, E_MAX_KEV)
    assert np.array_equal(tally.spectrum, spectrum)
    assert np.array_equal(tally.hits, np.bincount(crystal[on_time], minlength=brain.n_crystals))
    rows = t[on_time] // bin_ps - rates.first_bin
    want = np.zeros_like(tally.rates)
    np.add.at(want, (rows, rates.unit_of[crystal[on_time]]), 1)
    assert np.array_equal(tally.rates, want) and (np.unique(rows).size > 1) == (bin_ps < 10**11)


def test_the_gate_stops_at_a_crystal_id_outside_the_scanner(brain) -> None:
    """The singles before it are counted and kept, it and the later ones are left alone."""
    rng = np.random.default_rng(4)
    t, crystal, adc = _singles(brain, 5000, rng)
    crystal[3000] = brain.n_crystals
    scale = np.full(brain.n_crystals, 0.5, np.float32)
    (kept, late, bad), columns, tally, _ = _gate(brain, t, crystal, adc, scale, 10**9, 0)
    energy = adc[:3000].astype(np.float32) * 0.5
    keep = (energy >= 350.0) & (energy < 650.0)
    assert bad == 3000 and late == 0 and kept == int(keep.sum())
    assert np.array_equal(columns[0], t[:3000][keep])
    assert tally.hits.sum() == tally.rates.sum() == tally.spectrum.sum() == 3000
