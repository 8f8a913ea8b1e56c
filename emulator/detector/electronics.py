"""Front-end electronics: trigger, pile-up, dead time, time and energy resolution, digitizer.

Deposits arrive in time order. A deposit at or above the trigger threshold in a module that is
live triggers it: the module integrates for ``integration_time_ns`` (every crystal of the module
that fires in that window gives its own single) and is then dead until ``dead_time_ns`` after the
trigger; a paralysable module's dead time restarts at every deposit that reaches it. A deposit in
a crystal whose single is still integrating adds its energy to it (pile-up): for PET per crystal
(one channel per crystal), for an Anger-camera head (``pileup_per_module``) anywhere on the head.
Deposits of a dead module are lost.

A single's measured time is its trigger time plus a Gaussian of sigma CTR / (2.355 sqrt 2); its
energy the summed deposit with a Gaussian of the scanner's FWHM at that energy; each crystal's
own, as ``[crystals]`` spreads them (:mod:`hw.crystals`). The digitizer
quantises time to its clock and TDC and energy to ADC codes at the crystal's true gain.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from emulator import records
from emulator.jit import inline, kernel
from emulator.rng import normal
from hw.deadtime import dead_time_units
from hw.scanner import Scanner
from hw.wire import WireClock


class FrontEnd(NamedTuple):
    """The electronics' settings in integer ps and keV."""

    module_of: np.ndarray   # (N,) int32 dead-time unit of each crystal
    n_modules: int
    integration_ps: int
    dead_ps: int
    paralysable: bool
    pileup_per_module: bool
    threshold_kev: float
    jitter_sigma_ps: np.ndarray   # (N,) float64 each crystal's time jitter, sigma ps
    jitter_clip_ps: int
    offset_ps: np.ndarray         # (N,) int64 each crystal's time offset (an injected skew)


def front_end(scanner: Scanner, threshold_kev: float) -> FrontEnd:
    """The front end of ``scanner``: one dead-time unit per physical module (PET: sector x module
    ring; SPECT: head)."""
    r = scanner.response
    unit, n_units = dead_time_units(scanner)
    sigma = r.ctr_ps / (2.3548 * math.sqrt(2.0)) * scanner.crystal_jitter_scale()
    offset = scanner.crystal_time_offset_ps()
    # (the clip also bounds how far a single's measured time lies from its trigger's: a skew
    # widens it, so that the singles still leave in measured-time order)
    return FrontEnd(
        module_of=unit, n_modules=n_units,
        integration_ps=round(r.integration_time_ns * 1000), dead_ps=round(r.dead_time_ns * 1000),
        paralysable=r.dead_time_kind == "paralysable", pileup_per_module=scanner.kind == "spect",
        threshold_kev=threshold_kev, jitter_sigma_ps=sigma,
        jitter_clip_ps=int(max(1000.0, 10.0 * sigma.max())) + int(np.abs(offset).max()),
        offset_ps=offset,
    )


class State(NamedTuple):
    """What the electronics remember between calls."""

    dead_until: np.ndarray   # (modules,) int64 ps
    window_end: np.ndarray   # (modules,) int64 ps
    open_slot: np.ndarray    # (crystals or modules,) int64: the pending single integrating
    #                          there, while ``open_end`` lies ahead
    open_end: np.ndarray     # (crystals or modules,) int64 ps: when its integration ends


_LONG_AGO = np.iinfo(np.int64).min // 2


def initial_state(fe: FrontEnd, n_crystals: int) -> State:
    n_open = fe.n_modules if fe.pileup_per_module else n_crystals
    return State(np.full(fe.n_modules, _LONG_AGO, np.int64),
                 np.full(fe.n_modules, _LONG_AGO, np.int64),
                 np.full(n_open, -1, np.int64), np.full(n_open, _LONG_AGO, np.int64))


@kernel
def process(dep, order, n_held, out, fe, state, counters, rs):
    """Turn deposits ``dep[order]`` (``order`` puts them in time order) into pending singles.

    ``out[:n_held]`` holds the singles still integrating from the previous call (in trigger
    order); new singles are appended. Returns the number of singles in ``out``.
    """
    open_slot, open_end = state.open_slot, state.open_end
    for h in range(n_held):
        key = fe.module_of[out[h].crystal] if fe.pileup_per_module else out[h].crystal
        open_slot[key] = h
        open_end[key] = out[h].t + fe.integration_ps
    n = n_held
    for i in range(order.size):
        d = dep[order[i]]
        t = d.t
        m = fe.module_of[d.crystal]
        key = m if fe.pileup_per_module else d.crystal
        # (the open single's end is kept per key: reading it from ``out``, far back, would
        # miss the cache at almost every deposit)
        if t < open_end[key]:
            s = out[open_slot[key]]
            s.energy += d.energy
            if d.decay != s.decay:
                s.pileup = min(s.pileup + 1, 255)
                counters[records.PILEUPS] += 1
            if fe.paralysable:
                state.dead_until[m] = max(state.dead_until[m], t + fe.dead_ps)
            continue
        if d.energy < fe.threshold_kev:
            counters[records.BELOW_THRESHOLD] += 1
            continue
        if t >= state.window_end[m]:
            if t < state.dead_until[m]:
                counters[records.DEAD_TIME_LOSSES] += 1
                if fe.paralysable:
                    state.dead_until[m] = t + fe.dead_ps
                continue
            state.window_end[m] = t + fe.integration_ps
            state.dead_until[m] = t + fe.dead_ps
        elif fe.paralysable:
            state.dead_until[m] = max(state.dead_until[m], t + fe.dead_ps)
        s = out[n]
        s.decay, s.photon, s.kind, s.scatters = d.decay, d.photon, d.kind, d.scatters
        s.x, s.y, s.z = d.x, d.y, d.z
        s.energy = d.energy
        s.t = t
        s.pileup = 0
        s.crystal = d.crystal
        jitter = fe.jitter_sigma_ps[d.crystal] * normal(rs)
        jitter = min(max(jitter, -fe.jitter_clip_ps), fe.jitter_clip_ps)
        s.t_meas = t + round(jitter) + fe.offset_ps[d.crystal]
        open_slot[key] = n
        open_end[key] = t + fe.integration_ps
        n += 1
    for h in range(n):
        key = fe.module_of[out[h].crystal] if fe.pileup_per_module else out[h].crystal
        open_end[key] = _LONG_AGO
    return n


class Digitizer(NamedTuple):
    """Per-crystal gain, the energy resolution and the digitizer's quantisation."""

    gains: np.ndarray        # (N,) true relative gain
    kev_per_code: float
    max_code: int
    period_ps: int
    tdc_bits: int
    board_of: np.ndarray     # (N,) int32
    fwhm_1kev: np.ndarray    # (N,) each crystal's energy resolution FWHM (keV) at 1 keV; it
    #                          scales as sqrt(E)


def digitizer(scanner: Scanner) -> Digitizer:
    d, r = scanner.digitizer, scanner.response
    return Digitizer(gains=scanner.crystal_gains(), kev_per_code=d.kev_per_adc_code,
                     max_code=(1 << d.adc_bits) - 1, period_ps=d.clock_period_ps,
                     tdc_bits=d.tdc_bits, board_of=scanner.crystal_board,
                     fwhm_1kev=float(r.fwhm_kev(1.0)) * scanner.crystal_fwhm_scale())


@inline
def quantised(t, period, bits):
    """The time (int64 ps) a digitizer reports for the true time ``t``: the coarse clock count
    plus the TDC's fraction of a period, ``coarse * period + (fine * period) >> bits``."""
    coarse = t // period
    fine = ((t - coarse * period) << bits) // period
    return coarse * period + ((fine * period) >> bits)


@kernel
def _quantised_all(t, period, bits, out):
    for i in range(t.size):
        out[i] = quantised(t[i], period, bits)


def quantise_time(t_ps: np.ndarray, period_ps: int, tdc_bits: int) -> np.ndarray:
    """:func:`quantised` for an array of true times (int64 ps)."""
    t = np.ascontiguousarray(t_ps, dtype=np.int64).ravel()
    out = np.empty_like(t)
    _quantised_all(t, period_ps, tdc_bits, out)
    return out.reshape(np.shape(t_ps))


def wire_time(t_ps: np.ndarray, period_ps: int, tdc_bits: int) -> np.ndarray:
    """The earliest true time that the digitizer reports as ``t_ps`` (a :func:`quantise_time`
    value): the time to hand the wire encoder so that the receiver decodes exactly ``t_ps``.
    (Decoded times are not themselves fixed points of the encoder: ``fine * P >> tdc_bits``
    rounds down.)"""
    t = np.asarray(t_ps, dtype=np.int64)
    coarse = t // period_ps
    rest = t - coarse * period_ps
    fine = -((-rest << tdc_bits) // period_ps)                  # ceil(rest * 2^bits / P)
    return coarse * period_ps + (-((-fine * period_ps) >> tdc_bits))  # + ceil(fine P / 2^bits)


@kernel
def readout(pending, bound_ps, dig, rs, raw, truth, held, t_meas):
    """Digitise the pending singles that can no longer change (``t_meas`` < ``bound_ps``) in
    the order of their measured time, into ``raw`` (RAW_DTYPE), their measured times into
    ``t_meas`` and, when ``truth`` has room, their truth; the others go to ``held`` in their
    order. Energies get a Gaussian of the crystal's FWHM (scaling as sqrt(E)), then the
    crystal's gain and the ADC's code; times the clock and TDC (:func:`quantised`). Returns
    (digitised, held)."""
    n_out, n_held = 0, 0
    idx = np.empty(pending.size, np.int64)
    for i in range(pending.size):
        if pending[i].t_meas >= bound_ps:
            held[n_held] = pending[i]
            n_held += 1
            continue
        # insertion by measured time: the jitter moves a single past few others
        w = n_out
        t = pending[i].t_meas
        while w > 0 and pending[idx[w - 1]].t_meas > t:
            idx[w] = idx[w - 1]
            w -= 1
        idx[w] = i
        n_out += 1
    period, bits = dig.period_ps, dig.tdc_bits
    keep_truth = truth.size > 0
    for o in range(n_out):
        s = pending[idx[o]]
        r = raw[o]
        t_meas[o] = s.t_meas
        r.t = quantised(s.t_meas, period, bits)
        r.crystal = s.crystal
        e = float(s.energy)
        sigma_per_sqrt_kev = dig.fwhm_1kev[s.crystal] / 2.3548
        e = max(e + sigma_per_sqrt_kev * math.sqrt(max(e, 1e-3)) * normal(rs), 0.0)
        code = round(e * dig.gains[s.crystal] / dig.kev_per_code)
        r.adc = min(max(code, 0), dig.max_code)
        if keep_truth:
            tr = truth[o]
            tr.decay, tr.photon, tr.kind, tr.scatters = s.decay, s.photon, s.kind, s.scatters
            tr.x, tr.y, tr.z, tr.energy = s.x, s.y, s.z, s.energy
            tr.t, tr.pileup = s.t, s.pileup
    return n_out, n_held


def latched(raw: np.ndarray, clock: WireClock, channel_of: np.ndarray, out: np.ndarray
            ) -> np.ndarray:
    """Fill ``out``'s coarse, fine, channel and adc with ``raw``'s events as the digitizer
    latches them (``raw["t"]`` already :func:`emulator.detector.electronics.wire_time`); returns it."""
    p = clock.period_ps
    coarse = raw["t"] // p
    out["coarse"] = coarse & ((1 << clock.counter_bits) - 1)
    out["fine"] = ((raw["t"] - coarse * p) << clock.tdc_bits) // p
    out["channel"] = channel_of[raw["crystal"]]
    out["adc"] = raw["adc"]
    return out
