"""Server ports: a block that binds, below the range the kernel gives connecting sockets."""

import socket

import pytest

from infra.errors import UserError
from infra.ports import LOWEST_PORT, ephemeral_low, free_port_block


def test_block_binds_and_lies_below_the_ephemeral_range() -> None:
    """A ZeroMQ client that connects before its server binds takes its own port from the ephemeral
    range; a block there was once taken that way between choosing and binding."""
    base = free_port_block(8)
    assert base >= LOWEST_PORT and base + 8 <= ephemeral_low()
    socks = [socket.socket() for _ in range(8)]
    try:
        for k, s in enumerate(socks):
            s.bind(("127.0.0.1", base + k))
    finally:
        for s in socks:
            s.close()


def test_a_block_that_cannot_fit_is_one_line(monkeypatch) -> None:
    monkeypatch.setattr("infra.ports.ephemeral_low", lambda: LOWEST_PORT + 4)
    with pytest.raises(UserError, match="no room for 8 TCP ports"):
        free_port_block(8)
