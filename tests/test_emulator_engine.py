"""The emulator's engine: determinism, streaming, ordering, digitizer, electronics, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import emulator
from emulator import records, rng
from emulator.detector import electronics
from emulator.detector.ring import crystal_centres, ring_of
from hw import load_scanner
from infra.errors import UserError


@pytest.fixture(scope="module")
def small_run(brain):
    return emulator.simulate(brain, "nema-iq", "F-18", activity_mbq=2.0, duration_s=0.02, seed=7,
                             truth=True)


def test_same_seed_same_events_whatever_the_chunking(brain, small_run):
    emu = emulator.Emulator(brain, "nema-iq", "F-18", 2.0, seed=7, truth=True)
    chunks = list(emu.run(0.02, chunk_s=0.0013))
    assert len(chunks) == 16
    raw = np.concatenate([c.raw for c in chunks])
    np.testing.assert_array_equal(raw, small_run.raw)
    np.testing.assert_array_equal(np.concatenate([c.truth for c in chunks]), small_run.truth)
    np.testing.assert_array_equal(np.concatenate([c.board for c in chunks]), small_run.board)
    for c in chunks:
        assert np.all((c.raw["t"] >= c.t_start_ps) & (c.raw["t"] < c.t_stop_ps))
    assert emu.counters == small_run.counters
    other = emulator.simulate(brain, "nema-iq", "F-18", 2.0, 0.02, seed=8)
    assert other.raw.size != small_run.raw.size or not np.array_equal(other.raw, small_run.raw)


def test_events_are_time_ordered_per_board_and_merged(brain, small_run):
    raw = small_run.raw
    assert np.all(np.diff(raw["t"]) >= 0)
    boards = small_run.raw_per_board
    assert len(boards) == brain.n_boards
    assert sum(b.size for b in boards) == raw.size
    for b, events in enumerate(boards):
        assert np.all(np.diff(events["t"]) >= 0)
        assert np.all(brain.crystal_board[events["crystal"]] == b)
    assert raw["t"].min() >= 0 and raw["t"].max() < 0.02e12


def test_digitizer_quantisation_and_perfect_calibration(brain, small_run):
    raw, d = small_run.raw, brain.digitizer
    sent = electronics.wire_time(raw["t"], d.clock_period_ps, d.tdc_bits)
    assert np.all((sent >= raw["t"]) & (sent - raw["t"] <= 1))
    np.testing.assert_array_equal(
        electronics.quantise_time(sent, d.clock_period_ps, d.tdc_bits), raw["t"])
    assert raw["adc"].max() <= (1 << d.adc_bits) - 1
    singles = small_run.singles
    gains = brain.crystal_gains()
    expected = raw["adc"] * d.kev_per_adc_code / gains[raw["crystal"]]
    np.testing.assert_allclose(singles["energy"], expected, rtol=1e-6)
    # the measured energy follows the deposited one within the resolution
    tr = small_run.truth
    ok = tr["energy"] > 100
    rel = (singles["energy"][ok] - tr["energy"][ok]) / brain.response.fwhm_kev(tr["energy"][ok])
    assert abs(np.median(rel)) < 0.05
    assert 0.35 < np.std(rel) < 0.5            # sigma / FWHM = 1 / 2.355


def test_truth_describes_the_singles(brain, small_run):
    tr = small_run.truth
    assert tr.dtype == emulator.TRUTH_DTYPE and tr.size == small_run.raw.size
    source = tr["kind"] == records.ANNIHILATION
    assert np.all(tr["decay"][source] < records.LU176_ID_BASE)
    assert np.all(tr["decay"][tr["kind"] == records.LU176] >= records.LU176_ID_BASE)
    # jitter: measured minus true time has the CTR / sqrt(2) / 2.355 sigma
    dt = (small_run.raw["t"] - tr["t"]).astype(np.float64)
    sigma = brain.response.ctr_ps / (2.3548 * np.sqrt(2))
    assert np.std(dt) == pytest.approx(np.hypot(sigma, brain.digitizer.tdc_lsb_ps / np.sqrt(12)),
                                       rel=0.1)
    # emission points of the source lie in the phantom's hot regions or background
    phantom = emulator.phantoms.get("nema-iq", brain)
    points = np.stack([tr["x"], tr["y"], tr["z"]], axis=1)[source]
    assert np.mean(phantom.activity_at(points) > 0) > 0.97
    counters = small_run.counters
    assert counters["singles"] == small_run.raw.size
    assert counters["decays"] == pytest.approx(2e6 * 0.02, rel=0.05)


def test_decay_of_the_activity_over_the_run(brain):
    emu = emulator.Emulator(brain, "point", "C-11", activity_mbq=1.0, seed=1, intrinsic=False)
    late = emulator.Emulator(brain, "point", "C-11", activity_mbq=1.0, seed=1, intrinsic=False)
    list(emu.run(0.01))
    list(late.run(0.01, start_s=20.364 * 60))                 # one half-life later
    assert late.counters["decays"] / emu.counters["decays"] == pytest.approx(0.5, rel=0.05)


def test_ring_model_matches_every_scanner_crystal():
    for name in ("bedside-brain", "small-animal"):
        scanner = load_scanner(name)
        np.testing.assert_allclose(crystal_centres(ring_of(scanner)), scanner.crystal_centres,
                                   atol=1e-9)


def _deposits(times, crystals, energies, decays=None) -> np.ndarray:
    dep = np.zeros(len(times), records.DEPOSIT_DTYPE)
    dep["t"], dep["crystal"], dep["energy"] = times, crystals, energies
    dep["decay"] = np.arange(len(times)) if decays is None else decays
    return dep


def _electronics(scanner, dep, threshold=50.0):
    fe = electronics.front_end(scanner, threshold)
    state = electronics.initial_state(fe, scanner.n_crystals)
    out = np.zeros(dep.size, records.PENDING_DTYPE)
    counters = np.zeros(len(records.COUNTERS), np.int64)
    n = electronics.process(dep, np.arange(dep.size), 0, out, fe, state, counters, rng.state(0))
    return out[:n], dict(zip(records.COUNTERS, counters, strict=True))


def test_pileup_in_one_crystal_sums_energies(brain):
    integ = round(brain.response.integration_time_ns * 1000)
    dead = round(brain.response.dead_time_ns * 1000)
    dep = _deposits([0, integ // 2, integ + 10, dead + 10], [5, 5, 5, 5], [300.0, 200.0, 400, 80])
    out, counters = _electronics(brain, dep)
    assert out.size == 2
    assert out["energy"][0] == pytest.approx(500.0) and out["pileup"][0] == 1
    assert counters["dead_time_losses"] == 1         # after the window, module still dead
    assert out["t"][1] == dead + 10
    # another crystal of the module within the integration window gives its own single
    dep = _deposits([0, 1000, integ + 1000], [5, 6, 7], [300.0, 300.0, 300.0])
    out, counters = _electronics(brain, dep)
    assert list(out["crystal"]) == [5, 6] and counters["dead_time_losses"] == 1
    # below the trigger threshold nothing happens
    out, counters = _electronics(brain, _deposits([0], [5], [20.0]))
    assert out.size == 0 and counters["below_threshold"] == 1


@pytest.mark.parametrize("name", ["bedside-brain", "spect-dual-head"])
def test_dead_time_follows_its_model(name):
    scanner = load_scanner(name)
    tau = scanner.response.dead_time_ns * 1e-9
    rate = 0.8 / tau                                         # deposits per s in one module
    rng = np.random.default_rng(1)
    times = np.cumsum(rng.exponential(1e12 / rate, 200_000)).astype(np.int64)
    crystals = rng.integers(0, 64, times.size) * 0 + np.flatnonzero(
        (scanner.crystal_module == 0) & (scanner.crystal_module_ring == 0))[
        rng.integers(0, 64, times.size)]
    fe = electronics.front_end(scanner, 0.0)
    integ = fe.integration_ps * 1e-12
    out, _ = _electronics(scanner, _deposits(times, crystals, np.full(times.size, 500.0)), 0.0)
    seconds = times[-1] * 1e-12
    if scanner.response.dead_time_kind == "paralysable":
        # Anger head: every deposit extends the dead time; pile-up within the window
        expected = rate * np.exp(-rate * tau)
        assert out.size / seconds == pytest.approx(expected, rel=0.05)
    else:
        # per-crystal singles inside the window, then dead: singles per trigger > 1
        triggers = rate / (1 + rate * tau)
        assert out.size / seconds > triggers
        assert out.size / seconds < triggers * (1 + rate * integ)


def test_bad_input_is_one_clear_line(brain):
    with pytest.raises(UserError, match=r"unknown phantom .banana.*nema-iq"):
        emulator.simulate(brain, "banana")
    with pytest.raises(UserError, match=r"unknown nuclide .F-19.*Ga-68"):
        emulator.simulate(brain, "point", "F-19")
    with pytest.raises(UserError, match="activity"):
        emulator.simulate(brain, "point", "F-18", activity_mbq=-1.0)
    with pytest.raises(UserError, match="duration"):
        emulator.simulate(brain, "point", "F-18", duration_s=0.0)
