"""An emulated scanner for the DAQ: ``petdaq emulate`` started as a child process.

The emulator runs in its own process (its own core, its own crash domain) and pushes each board's
frames to ``tcp://127.0.0.1:<base + board>``, exactly as digitizer boards would; the DAQ connects
one ZeroMQ PULL receiver per board.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from dataclasses import dataclass

from hw.errors import UserError


@dataclass
class EmulatorSettings:
    """What to emulate (units in the names)."""

    scanner: str = "bedside-brain"
    phantom: str = "nema-iq"
    nuclide: str = "F-18"
    activity_mbq: float = 1.0
    duration_s: float = 10.0
    seed: int = 1
    realtime: bool = True

    def as_dict(self) -> dict[str, object]:
        return dict(vars(self))


def free_port_block(count: int, host: str = "127.0.0.1") -> int:
    """A base port such that ``base .. base + count - 1`` are free on ``host`` now."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind((host, 0))
            base = probe.getsockname()[1]
        if base + count >= 65535:
            continue
        try:
            socks = []
            for k in range(count):
                s = socket.socket()
                socks.append(s)
                s.bind((host, base + k))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise UserError(f"no block of {count} free TCP ports on {host}")


def start_emulator(settings: EmulatorSettings, n_boards: int, host: str = "127.0.0.1"
                   ) -> tuple[subprocess.Popen, list[str]]:
    """Start ``petdaq emulate`` pushing to fresh ports; returns the process and the endpoints."""
    base = free_port_block(n_boards, host)
    cmd = [sys.executable, "-m", "daq", "emulate", "--scanner", settings.scanner,
           "--phantom", settings.phantom, "--nuclide", settings.nuclide,
           "--activity-mbq", str(settings.activity_mbq), "--duration", str(settings.duration_s),
           "--seed", str(settings.seed), "--to", f"tcp://{host}:{base}", "--quiet",
           "--realtime" if settings.realtime else "--fast"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    return proc, [f"tcp://{host}:{base + b}" for b in range(n_boards)]
