"""The receive ring: the boards' bytes flow through memory touched before the run, never through
fresh pages, however far behind its boards the DAQ falls."""

from __future__ import annotations

import pytest

import emulator
from daq.pipeline.links.handover import MAX_BYTES, ring_bytes
from daq.pipeline.links.ring import ReceiveRing, round_capacity
from daq.pipeline.links.sources import RCVHWM


@pytest.mark.serial  # page faults counted while the queue is full: alone
def test_a_full_hand_over_queue_costs_no_fresh_pages(brain) -> None:
    """The end-to-end chain with boards that send as fast as the DAQ takes (the DAQ falls
    behind, its hand-over queue fills to its 256 MiB bound): ZeroMQ's I/O thread touches
    fresh pages only for what ZeroMQ itself holds (its high-water marks), not for the queue,
    and the receiver thread touches almost none; nothing is lost."""
    from daq.perf.e2e import MESSAGE_EVENTS, run_chain

    sim = emulator.simulate(brain, "nu2-scatter", "F-18", 40.0, 0.01, seed=3)
    r = run_chain(brain, sim.raw_per_board, 6.0)  # about 2 GB: 8 times the queue
    assert r["zero_loss"], r
    assert r["journal_bytes"] > 2 * MAX_BYTES, r["journal_bytes"]  # the queue can fill
    daq = r["cpu"]["daq"]
    io_faults = daq["native_kernel"]["ZMQbg/IO/0"]["page_faults"]
    zmq_holds = RCVHWM * brain.n_boards * MESSAGE_EVENTS * 9  # messages of ~8 B an event
    assert io_faults * 4096 < 2 * zmq_holds < MAX_BYTES // 2, io_faults
    assert daq["threads"]["receiver"]["page_faults"] * 4096 < 16 << 20


def test_the_ring_holds_the_queue_a_batch_and_the_journal_s_blocks() -> None:
    """Sized from the hand-over queue; made once for the process and reused."""
    assert ring_bytes(MAX_BYTES) > MAX_BYTES
    ring = ReceiveRing.take(ring_bytes())
    assert ring.capacity == round_capacity(ring_bytes()) and ring.capacity % 4096 == 0
    ring.give_back()
    assert ReceiveRing.take(ring_bytes()) is ring

