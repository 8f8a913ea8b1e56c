"""Throughput of the DAQ's own stages on emulated data: calibration, the 4-board time merge, the
monitor histograms, and the end-to-end chain (emulator recording -> ZeroMQ -> DAQ, zero loss).

Run: ``.venv/bin/python -m pytest tests/benchmarks/test_bench_daq.py --benchmark-enable``.
"""

from __future__ import annotations

import numpy as np
import pytest
from rates import record

import emulator
from coincidence import histograms
from daq.perf.bench import arrival_order, merge_frames
from daq.pipeline.process.calibration import Calibration


@pytest.fixture(scope="module")
def sim(brain):
    """0.05 s of the NU 2 scatter phantom at 40 MBq: about 20 Mcps singles (``petdaq bench
    --quick``'s recording)."""
    from daq.perf.bench import ACTIVITY_MBQ, SIZES

    return emulator.simulate(brain, "nu2-scatter", "F-18", ACTIVITY_MBQ, SIZES["quick"], seed=7)


def test_bench_calibration(benchmark, brain, sim):
    cal = Calibration.nominal(brain)
    out = benchmark(cal.apply, sim.raw)
    assert out.size == sim.raw.size
    record(benchmark, sim.raw.size)


def test_bench_time_merge_four_boards(benchmark, sim):
    """Each board's stream cut in messages of 64 frames, arriving in order, merged."""
    frames = arrival_order(sim.raw_per_board)
    merged = merge_frames(frames, len(sim.raw_per_board))
    assert merged.size == sim.raw.size and np.all(np.diff(merged["t"]) >= 0)
    n = benchmark(merge_frames, frames, len(sim.raw_per_board), collect=False)
    assert n == sim.raw.size
    record(benchmark, sim.raw.size)


def test_bench_monitor_histograms(benchmark, brain, sim):
    singles = sim.singles
    energy = np.zeros(250, np.int64)
    hitmap = np.zeros((brain.n_rings, brain.crystals_per_ring), np.int64)

    def fill():
        histograms.accumulate_energy(singles["energy"], energy, 1000.0)
        histograms.accumulate_hit_map(singles["crystal"], hitmap)

    benchmark(fill)
    record(benchmark, singles.size)


def test_bench_end_to_end_chain(benchmark, brain, sim):
    """Emulator recording replayed by a child process -> ZeroMQ tcp -> DAQ (journal, decode,
    merge, calibrate, sort), 5 s sustained; counts only with zero loss. The CPU split (DAQ and
    sender CPU seconds, per DAQ thread) goes into the JSON's extra_info, with the DAQ's CPU per
    single against the baselines timed on the same recording (``petdaq bench --quick``'s
    measure, :mod:`daq.perf.costper`)."""
    from daq.perf import costper
    from daq.perf.e2e import run_chain

    result = benchmark.pedantic(run_chain, args=(brain, sim.raw_per_board, costper.CHAIN_S),
                                rounds=1, iterations=1)
    assert result["zero_loss"], result
    daq = result["cpu"]["daq"]
    cost = costper.of_chain(brain, sim, result)
    print(cost.line())
    benchmark.extra_info.update(
        numpy_sorter_ns_per_event=cost.numpy_sorter_ns,
        numpy_sorter_events_per_s=1e9 / cost.numpy_sorter_ns,
        frame_copy_ns_per_event=cost.frame_copy_ns,
        frame_copy_events_per_s=1e9 / cost.frame_copy_ns,
        daq_of_numpy_sorter=cost.of_numpy_sorter, daq_of_frame_copy=cost.of_frame_copy,
        serial_ns_per_event=cost.serial_ns)
    benchmark.extra_info.update(
        events=result["singles"], events_per_s=result["singles_per_s"],
        zero_loss=result["zero_loss"], seq_gaps=result["seq_gaps"],
        daq_cpu_s=daq["process_cpu_s"], sender_cpu_s=result["cpu"]["sender"]["process_cpu_s"],
        daq_cpu_ns_per_event=daq["process_cpu_s"] / result["singles"] * 1e9,
        daq_cpu_events_per_s=result["singles"] / daq["process_cpu_s"],
        daq_system_s=daq["system_s"], daq_page_faults=daq["page_faults"],
        cpu_s_per_thread={k: t["cpu_s"] for k, t in daq["threads"].items()},
        machine_busy_cores=(result["cpu"]["machine"] or {}).get("busy_cores"))


@pytest.fixture(scope="module")
def board_messages(brain, sim):
    """Each board's stream encoded in messages of 64 frames, in the order they arrive."""
    from daq.perf.e2e import MESSAGE_EVENTS
    from hw import wire

    msgs = []
    for b, events in enumerate(sim.raw_per_board):
        seq = 1
        for k in range(0, events.size, MESSAGE_EVENTS):
            chunk = events[k:k + MESSAGE_EVENTS]
            msgs.append((int(chunk["t"][-1]), b,
                         wire.encode(chunk, board=b, first_seq=seq, scanner=brain)))
            seq += wire.frames_for(chunk.size)
    msgs.sort(key=lambda m: m[0])
    return msgs


@pytest.mark.parametrize("threads", ["one", "all"])
def test_bench_processor(benchmark, brain, sim, board_messages, threads):
    """The processing stage on 4 links' frames in batches of 16 messages (what the hand-over
    gives at rate): decode, energy gate (calibration, histograms, window), time merge, coincidence
    sort, on one thread and on every core. Same-run ratio: every core over one (CI's check)."""
    from daq.pipeline.process.processor import Processor, SortSettings
    from hw import wire
    from infra.pool import Workers, available_cores

    n_threads = 1 if threads == "one" else available_cores()
    workers = Workers(n_threads, "bench")

    def process() -> int:
        p = Processor(brain, Calibration.nominal(brain), SortSettings(), None, workers=workers)
        decoders = [wire.Decoder(brain) for _ in sim.raw_per_board]
        for k in range(0, len(board_messages), 16):
            links: dict[int, list[bytes]] = {}
            for _t, b, m in board_messages[k:k + 16]:
                links.setdefault(b, []).append(m)
            p.consume_links([(decoders[b], v) for b, v in sorted(links.items())])
        p.finish()
        return p.counters.singles

    try:
        assert process() == sim.raw.size  # warm-up (compiles) and the count
        assert benchmark(process) == sim.raw.size
    finally:
        workers.close()
    record(benchmark, sim.raw.size, threads=n_threads)
