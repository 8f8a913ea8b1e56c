"""Zero loss at rate, and counter wraps with multi-board merge over hours of clock time."""

from __future__ import annotations

import numpy as np
import pytest
from boardstream import board_events, board_messages, quantised

from daq.pipeline.process.merge import TimeMerger
from hw import wire

#: Rates at the DAQ's limit: alone, not beside other tests.
pytestmark = pytest.mark.serial


def test_counter_wrap_and_merge_over_three_hours_of_clock(brain) -> None:
    """4 boards, 3 h of clock (500 wraps of the 32-bit, 200 MHz counter... 21.5 s each):
    decoded times unwrap exactly and merge into one time-ordered stream."""
    hours = 3.0
    rate = 40.0  # cps per board: a heartbeat-carrying message every 256 events = 6.4 s < 10.7 s
    n = int(hours * 3600 * rate)
    events = [board_events(brain, b, n, rate, seed=11) for b in range(brain.n_boards)]
    assert events[0]["t"][-1] > 2**32 * brain.digitizer.clock_period_ps * 400
    decoders = [wire.Decoder(brain) for _ in events]
    streams = [board_messages(brain, b, e, frames_per_message=1) for b, e in enumerate(events)]
    merger = TimeMerger(brain.n_boards)
    out = []
    for parts in zip(*streams, strict=True):
        for dec, msg in zip(decoders, parts, strict=True):
            merger.push(dec.feed(msg))
            for board, t in dec.watermarks_ps.items():
                merger.advance(board, t)
        out.append(merger.pop_ready())
    out.append(merger.flush())
    merged = np.concatenate(out)
    expected = np.sort(np.concatenate([quantised(e, brain)["t"] for e in events]))
    assert merger.late_events == 0
    assert np.array_equal(merged["t"], expected)
    assert all(d.stats.seq_gaps == 0 and d.stats.frames_bad == 0 for d in decoders)


@pytest.mark.parametrize("seconds", [
    5.0, pytest.param(30.0, marks=pytest.mark.soak, id="soak-30s")])
def test_zero_loss_at_rate(brain, seconds: float) -> None:
    """Emulated acquisition replayed by a child process over ZeroMQ tcp loopback into the DAQ,
    sustained ``seconds`` (5 s in the tests, 30 s in the soak run): frames sent == frames
    journaled, sequence gaps 0, nothing lost."""
    import emulator
    from daq.perf.e2e import format_cpu, run_chain

    sim = emulator.simulate(brain, "nu2-scatter", "F-18", 40.0, 0.05, seed=5)
    result = run_chain(brain, sim.raw_per_board, seconds)
    print(f"\nend to end: {result['singles_per_s'] / 1e6:.2f} M singles/s over "
          f"{result['seconds']:.1f} s, {result['singles']} singles, losses {result['losses']}")
    print("\n".join(format_cpu(result["cpu"], result["singles"])))
    # sustained to the end: past the sender's stock (encoded ahead) where the run outlasts it
    assert result["seconds"] >= seconds, (result["seconds"], result["past_stock"])
    assert result["frames_sent"] == result["frames_journaled"]
    assert result["seq_gaps"] == 0
    assert result["zero_loss"], result
    assert result["prompts"] > 0
