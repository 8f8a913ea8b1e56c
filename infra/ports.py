"""Free loopback TCP ports for servers, chosen below the kernel's ephemeral range."""

from __future__ import annotations

import random
import socket
from pathlib import Path

from infra.errors import UserError

LOWEST_PORT = 20000
"""The lowest port handed out: above the well-known and most registered services."""

_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def ephemeral_low() -> int:
    """The first port the kernel may give a connecting socket as its own (Linux's default 32768)."""
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_block(count: int, host: str = "127.0.0.1") -> int:
    """A base port such that ``base .. base + count - 1`` are free on ``host`` now.

    The block lies below the ephemeral range: a client that connects before its server binds (a
    ZeroMQ socket retrying) takes its own port from that range, and could take a port of the block
    before the server binds it.
    """
    high = ephemeral_low() - count
    if high <= LOWEST_PORT:
        raise UserError(f"no room for {count} TCP ports between {LOWEST_PORT} and the "
                        f"ephemeral range ({ephemeral_low()})")
    pick = random.SystemRandom()
    for _ in range(200):
        base = pick.randrange(LOWEST_PORT, high)
        if _all_bind(host, range(base, base + count)):
            return base
    raise UserError(f"no block of {count} free TCP ports on {host}")


def _all_bind(host: str, ports: range) -> bool:
    """Whether every port of ``ports`` binds on ``host`` now (all released again)."""
    socks: list[socket.socket] = []
    try:
        for port in ports:
            s = socket.socket()
            socks.append(s)
            s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()
