"""The monitor stream's lasting results: a run's result that is sent once (a SPECT image at the
stop, its bull's-eye) is published again while idle, so that a console that lagged when it was
sent, or connects later, still gets it; the next run's start ends it."""

from __future__ import annotations

import time

import zmq

from daq import messages
from daq.control import monitor
from daq.control.emulated import free_port_block
from daq.control.monitor import MonitorLoop, MonitorPublisher


def _topics(sock: zmq.Socket, seconds: float) -> list[bytes]:
    got, end = [], time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if sock.poll(int(left * 1000) + 1):
            got.append(sock.recv_multipart()[0])
    return got


def test_a_runs_lasting_result_reaches_a_late_subscriber_until_the_next_run(monkeypatch):
    monkeypatch.setattr(monitor, "LASTING_EVERY_S", 0.1)
    port = free_port_block(1)
    publisher = MonitorPublisher(f"tcp://127.0.0.1:{port}")
    publisher.send(messages.CURVES_TOPIC, {"once": True})      # nobody listens yet: lost
    publisher.send_lasting(messages.POLAR_TOPIC, {"percent": [1.0] * 17})
    loop = MonitorLoop(publisher, lambda: {"state": "idle"}, interval_s=0.05)
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(f"tcp://127.0.0.1:{port}")
    try:
        got = _topics(sock, 1.5)
        assert messages.POLAR_TOPIC in got and messages.MONITOR_TOPIC in got
        assert messages.CURVES_TOPIC not in got
        publisher.forget_lasting()                              # a new run starts
        _topics(sock, 0.3)                                      # what was already on its way
        later = _topics(sock, 0.8)
        assert messages.MONITOR_TOPIC in later and messages.POLAR_TOPIC not in later
    finally:
        loop.close()
        sock.close()
        publisher.close()
