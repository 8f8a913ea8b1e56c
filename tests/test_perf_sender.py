"""The end-to-end chain's digitizer stand-in: repetitions encoded in any order, its stock's size, and
which side a chain's CPU split names as its limit."""

from __future__ import annotations

import numpy as np
import pytest
from boardstream import board_events

from daq.perf import sender
from daq.perf.e2e import SIDES, limited_by
from hw import wire


def test_a_repetition_encodes_alone_as_in_sequence(brain) -> None:
    """Repetition k encoded on its own (on any thread, in any order) is byte for byte what the
    board sends after the k before it: times shifted by k spans, sequence numbers and the
    heartbeats' event counts continuing; the stream decodes with no gap."""
    events = board_events(brain, 1, 3 * sender.MESSAGE_EVENTS // 2, 2e6, seed=4)
    span = int(events["t"][-1]) + 1
    enc = sender.Encoder(brain, 1, events, span)
    backwards = [enc.repetition(k) for k in (2, 1, 0)][::-1]
    assert len(backwards[0]) == 2  # one and a half messages' events: two messages
    seq, sent = 1, 0
    for k, messages in enumerate(backwards):
        for (msg, t_last), chunk in zip(messages, enc.chunks, strict=True):
            shifted = chunk.copy()
            shifted["t"] += k * span
            expected = wire.encode(shifted, board=1, first_seq=seq, scanner=brain)
            nf = wire.frames_for(chunk.size)
            sent += chunk.size
            expected += wire.encode_status(board=1, seq=seq + nf, t_ps=int(shifted["t"][-1]),
                                           events_sent=sent, fifo_overflows=0, scanner=brain)
            assert msg == expected and t_last == int(shifted["t"][-1])
            seq += nf + 1
        assert enc.state_after(k + 1) == (seq, seq, sent)
    decoder = wire.Decoder(brain)
    decoder.feed(wire.encode_marker(wire.RUN_START, board=1, seq=0, t_ps=0, run=1,
                                    scanner=brain))
    out = [decoder.feed(msg) for messages in backwards for msg, _ in messages]
    decoded = np.concatenate(out)
    assert decoded.size == 3 * events.size
    assert np.all(np.diff(decoded["t"]) >= 0)
    assert decoder.stats.seq_gaps == 0 and decoder.stats.events_lost == 0


def test_the_stock_is_sized_for_the_daq_and_the_memory(monkeypatch) -> None:
    """As fast as the DAQ takes it: STOCK_SINGLES_PER_CORE_S on each core the DAQ may use, for
    the run's seconds, within the memory share; paced: the run's repetitions, whatever the
    memory."""
    monkeypatch.setattr(sender, "available_cores", lambda: 16)
    monkeypatch.setattr(sender, "available_memory_bytes", lambda: 100 << 30)
    per_core = sender.STOCK_SINGLES_PER_CORE_S
    # 1 thread and its receiver: two cores' worth of 10 M-single repetitions for 5 s
    assert sender.stock_repetitions(10**7, 1 << 20, 5.0, False, 10**11, 1) == \
        int(np.ceil(5 * per_core * 2 / 1e7))
    # 16 threads: every core (not 17)
    assert sender.stock_repetitions(10**7, 1 << 20, 5.0, False, 10**11, 16) == \
        int(np.ceil(5 * per_core * 16 / 1e7))
    # 1 GiB repetitions: a quarter of 100 GiB holds 25
    assert sender.stock_repetitions(10**7, 1 << 30, 5.0, False, 10**11, 16) == 25
    # always at least one
    assert sender.stock_repetitions(10**7, 1 << 40, 5.0, False, 10**11, 16) == 1
    # paced: 3 s of 0.1 s repetitions, however big
    assert sender.stock_repetitions(10**7, 1 << 40, 3.0, True, 10**11, 16) == 30


def _split(board_busy: float, processing_wait_s: float, machine_busy: float = 2.0) -> dict:
    thread = {"busy": 0.5, "cpu_s": 5.0, "parts": {"decode": 1.0}, "wall_s": 10.0,
              "wall_parts": {"wait": processing_wait_s}}
    return {"daq": {"wall_s": 10.0, "process_cpu_s": 10.0,
                    "threads": {"processing": thread, "receiver": {**thread, "busy": 0.2}}},
            "sender": {"process_cpu_s": 2.0, "threads": {
                "board 0": {"busy": board_busy}, "board 1": {"busy": 0.05}}},
            "machine": {"busy_cores": machine_busy, "steal_cores": 0.0, "cores": 16}}


@pytest.mark.parametrize(("split", "side"), [
    (_split(0.05, 1.0, machine_busy=15.0), SIDES[0]),   # every core busy
    (_split(0.95, 6.0), SIDES[1]),                       # a board thread always on a CPU
    (_split(0.05, 1.0), SIDES[2]),                       # the processing had work waiting
    (_split(0.05, 6.0), SIDES[3]),                       # it waited, and so did the sender
])
def test_a_chain_names_the_side_that_limited_it(split: dict, side: str) -> None:
    named, why = limited_by(split)
    assert named == side
    assert "sender's busiest board thread" in why


def _children() -> list[str]:
    """The command lines of this process's live children."""
    import os
    from pathlib import Path

    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid() and fields[0] != "Z":
                out.append((stat.parent / "cmdline").read_bytes().decode(errors="replace"))
        except (OSError, IndexError, ValueError):
            continue
    return out


def test_a_chain_whose_daq_fails_to_start_leaves_no_sender(brain, monkeypatch) -> None:
    """The DAQ fails after the sender has encoded its stock: the error comes through and the
    sender, waiting for its go, is gone (it would otherwise wait on its sockets for ever)."""
    from daq.perf import e2e
    from daq.pipeline import acquisition

    def broken(*_args, **_kwargs):
        raise RuntimeError("no DAQ today")

    monkeypatch.setattr(acquisition, "Acquisition", broken)
    monkeypatch.setattr(e2e, "_warm_daq", lambda *_args: None)  # no DAQ to warm
    template = [board_events(brain, b, 2000, 2e6, seed=3) for b in range(brain.n_boards)]
    with pytest.raises(RuntimeError, match="no DAQ today"):
        e2e.run_chain(brain, template, 0.01)
    assert not [c for c in _children() if "daq.perf.sender" in c]


def test_the_daq_shares_of_a_split() -> None:
    """The processing thread's CPU and wait over its wall, the workers' mean CPU share."""
    from daq.perf.e2e import daq_shares

    daq = _split(0.05, 2.0)["daq"]
    daq["threads"]["worker 1"] = {"busy": 0.2}
    daq["threads"]["worker 2"] = {"busy": 0.4}
    shares = daq_shares(daq)
    assert shares.processing_on_cpu == pytest.approx(0.5)
    assert shares.processing_waited == pytest.approx(0.2)
    assert shares.workers_on_cpu == pytest.approx(0.3)
