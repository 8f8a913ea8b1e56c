"""ZeroMQ sockets for tests: every send and receive gives up after a timeout, so a test fails
instead of hanging when its peer never answers (a CURVE handshake refused, a process that died)."""

from __future__ import annotations

import zmq

#: How long a test socket waits on one send or receive (ms).
TIMEOUT_MS = 30_000


def timed_socket(kind: int, ctx: zmq.Context | None = None, timeout_ms: int = TIMEOUT_MS
                ) -> zmq.Socket:
    """A socket of ``kind`` whose send and receive raise ``zmq.Again`` after ``timeout_ms`` and
    that lingers on nothing at close."""
    sock = (ctx or zmq.Context.instance()).socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDTIMEO, timeout_ms)
    sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
    return sock
