"""The DAQ's processing stage: merged, calibrated, histogrammed and sorted in one pass per chunk,
with the numbers of the stand-alone functions (Calibration.apply, coincidence.histograms,
coincidence.sort)."""

from __future__ import annotations

import numpy as np
import pytest

import coincidence
from coincidence import histograms
from daq.pipeline.process.calibration import Calibration
from daq.pipeline.process.processor import ENERGY_HIST_KEV, Processor, SortSettings
from hw.dtypes import RAW_DTYPE
from infra.errors import UserError


def _boards(scanner, n: int, seed: int) -> list[np.ndarray]:
    """Each board's time-ordered raw events, 20 Mcps in all, ADC codes around the photopeak."""
    rng = np.random.default_rng(seed)
    out = []
    for b in range(scanner.n_boards):
        a = np.zeros(n, RAW_DTYPE)
        a["t"] = np.cumsum(rng.exponential(5e4 * scanner.n_boards, n)).astype(np.int64) // 100 * 100
        a["crystal"] = rng.choice(np.flatnonzero(scanner.crystal_board == b), n)
        a["adc"] = rng.integers(50, 1400, n)
        out.append(a)
    return out


def test_one_pass_processing_has_the_numbers_of_the_separate_stages(brain) -> None:
    rng = np.random.default_rng(4)
    gains = rng.uniform(0.8, 1.2, brain.n_crystals)
    cal = Calibration(brain.name, brain.digest, gains, brain.digitizer.kev_per_adc_code, "test")
    boards = _boards(brain, 40000, seed=5)
    coinc = []
    proc = Processor(brain, cal, SortSettings(), None, on_coincidences=coinc.append)
    for start in range(0, 40000, 7000):  # board by board, as the receivers hand them over
        for b, events in enumerate(boards):
            part = events[start:start + 7000]
            proc.consume(part, {b: int(part["t"][-1])})
    proc.finish()

    raw = np.concatenate(boards)
    singles = cal.apply(raw[np.lexsort((raw["crystal"], raw["t"]))])
    energy = np.zeros_like(proc.hist.energy)
    histograms.accumulate_energy(singles["energy"], energy, ENERGY_HIST_KEV[1])
    hitmap = np.zeros_like(proc.hist.hitmap)
    histograms.accumulate_hit_map(singles["crystal"], hitmap)
    assert np.array_equal(proc.hist.energy, energy)
    assert np.array_equal(proc.hist.hitmap, hitmap)
    assert np.array_equal(proc.counters.singles_per_board,
                          np.bincount(brain.crystal_board[raw["crystal"]],
                                      minlength=brain.n_boards))
    expected = coincidence.sort(singles, scanner=brain, **proc.settings)
    got = np.concatenate(coinc)
    assert got.size == expected.size > 0
    assert np.array_equal(got, expected)
    assert proc.counters.prompts + proc.counters.delayeds == expected.size


def test_a_crystal_outside_the_scanner_is_a_clear_error(brain) -> None:
    proc = Processor(brain, Calibration.nominal(brain), SortSettings(), None)
    bad = np.zeros(3, RAW_DTYPE)
    bad["t"] = [1, 2, 3]
    bad["crystal"] = [0, brain.n_crystals, 1]
    with pytest.raises(UserError, match="outside"):
        proc.consume(bad, {0: 10})
        proc.finish()


def test_a_window_longer_than_the_scanners_delay_moves_the_delayed_window_beyond_it(brain):
    """Real channels (slow scintillators, uncalibrated delays) need windows of 100 ns and more:
    the default delayed window then starts twice the window later; an explicit delay shorter
    than the window is one clear error naming --delay-ps."""
    assert SortSettings().resolved(brain)["delay_ps"] == brain.acquisition["delay_ps"]
    wide = SortSettings(window_ps=200_000).resolved(brain)
    assert wide["window_ps"] == 200_000 and wide["delay_ps"] == 400_000
    with pytest.raises(UserError, match="--delay-ps 100000 is shorter than the coincidence"):
        SortSettings(window_ps=200_000, delay_ps=100_000).resolved(brain)
    assert SortSettings(window_ps=200_000, delay_ps=0).resolved(brain)["delay_ps"] is None


def test_singles_older_than_the_time_released_are_late_and_counted_nowhere_else(brain) -> None:
    """The gate before the merge: a board silent for a while (idle) whose singles then come,
    older than the time the others were released through: those singles are late (counted,
    the journal keeps them), in no histogram, singles rate or coincidence; the others count."""
    boards = _boards(brain, 6000, seed=6)
    boards[0]["t"] += boards[0]["t"][-1] // 2  # its second half after the others' last
    proc = Processor(brain, Calibration.nominal(brain), SortSettings(), None)
    for b in range(1, brain.n_boards):
        proc.consume(boards[b], {b: int(boards[b]["t"][-1])}, idle_boards=[0])
    through = proc.merger.released_through_ps
    proc.consume(boards[0], {0: int(boards[0]["t"][-1])})
    proc.finish()
    late = int((boards[0]["t"] < through).sum())
    counted = sum(b.size for b in boards) - late
    assert 0 < late < boards[0].size and proc.late_events == late
    assert proc.counters.singles == counted == proc.hist.energy.sum()
    assert sum(int(t.counts.sum()) for t in proc.rates.history) == counted
    assert proc.counters.singles_per_board[0] == boards[0].size - late


def _work_memory(p: Processor) -> dict[str, int]:
    """Where each of the processor's work buffers lies (its first byte's address)."""
    return {"staging": p._staging[0].ctypes.data, "decode scratch": p._scratch.words.ctypes.data,
            "merge store": p.merger._store[0].ctypes.data,
            "merge output": p.merger._out[0].ctypes.data,
            "sorter": p.stage._t.ctypes.data}


@pytest.mark.parametrize("threads", [1, 2])
def test_the_work_memory_set_aside_at_the_start_is_never_regrown(brain, threads) -> None:
    """Batches of the live chain's kind (four links' messages of 64 frames, four messages a
    batch) of the NU 2 phantom at 40 MBq: no work buffer set aside by ``preallocate`` (and touched there) is
    replaced while data flow, so that no page is touched for the first time then."""
    import emulator
    from daq.perf.e2e import MESSAGE_EVENTS
    from daq.pipeline.links.handover import BATCH_BYTES
    from hw import wire
    from infra.pool import Workers

    sim = emulator.simulate(brain, "nu2-scatter", "F-18", 40.0, 0.03, seed=2)
    messages = []
    for b, events in enumerate(sim.raw_per_board):
        for k in range(0, events.size, MESSAGE_EVENTS):
            chunk = events[k:k + MESSAGE_EVENTS]
            messages.append((int(chunk["t"][-1]), b, wire.encode(
                chunk, board=b, first_seq=1 + wire.frames_for(k), scanner=brain)))
    messages.sort(key=lambda m: m[0])
    workers = Workers(threads, "test")
    p = Processor(brain, Calibration.nominal(brain), SortSettings(), None, workers=workers)
    p.preallocate(BATCH_BYTES, brain.n_boards)
    decoders = [wire.Decoder(brain) for _ in sim.raw_per_board]
    memory = [_work_memory(p)]
    for k in range(0, len(messages), 4):
        links: dict[int, list[bytes]] = {}
        for _t, b, m in messages[k:k + 4]:
            links.setdefault(b, []).append(m)
        p.consume_links([(decoders[b], v) for b, v in sorted(links.items())])
        memory.append(_work_memory(p))
    p.finish()
    workers.close()
    assert p.counters.singles == sim.raw.size and len(memory) > 10
    moved = [(k, name) for k, m in enumerate(memory[1:], 1) for name in m
             if m[name] != memory[k - 1][name]]
    assert not moved, f"work buffers replaced (batch, buffer): {moved}"
