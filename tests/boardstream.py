"""Test data for the DAQ's transport tests: digitizer board streams built with hw.wire.

The events are uniformly random (crystals of the board, Poisson times, ADC codes); what is under
test here is transport, journal and recovery, not physics (the emulator tests cover that).
"""

from __future__ import annotations

import numpy as np

from hw import wire
from hw.dtypes import RAW_DTYPE
from hw.scanner import Scanner


def board_events(scanner: Scanner, board: int, n: int, rate_cps: float, seed: int) -> np.ndarray:
    """``n`` time-ordered RAW events of ``board`` at ``rate_cps``."""
    rng = np.random.default_rng(seed + 1000 * board)
    crystals = np.flatnonzero(scanner.crystal_board == board)
    raw = np.zeros(n, RAW_DTYPE)
    raw["t"] = np.cumsum(rng.exponential(1e12 / rate_cps, n)).astype(np.int64) + 1000
    raw["crystal"] = rng.choice(crystals, n)
    raw["adc"] = rng.integers(100, 4000, n)
    return raw


def board_messages(scanner: Scanner, board: int, raw: np.ndarray,
                   frames_per_message: int = 16) -> list[bytes]:
    """The board's stream as messages: run start, event frames with a STATUS heartbeat after
    each message, run stop. Every message is whole frames."""
    seq = 0
    out = [wire.encode_marker(wire.RUN_START, board=board, seq=seq, t_ps=0, run=1,
                              scanner=scanner)]
    seq += 1
    step = frames_per_message * wire.EVENTS_PER_FRAME
    for start in range(0, raw.size, step):
        chunk = raw[start:start + step]
        msg = wire.encode(chunk, board=board, first_seq=seq, scanner=scanner)
        seq += wire.frames_for(chunk.size)
        msg += wire.encode_status(board=board, seq=seq, t_ps=int(chunk["t"][-1]),
                                  events_sent=start + chunk.size, fifo_overflows=0,
                                  scanner=scanner)
        seq += 1
        out.append(msg)
    out.append(wire.encode_marker(wire.RUN_STOP, board=board, seq=seq,
                                  t_ps=int(raw["t"][-1]) if raw.size else 0, run=1,
                                  scanner=scanner))
    return out


def quantised(raw: np.ndarray, scanner: Scanner) -> np.ndarray:
    """What the decoder gives back for ``raw``: times floored to the TDC quantum."""
    q = raw.copy()
    period, bits = scanner.digitizer.clock_period_ps, scanner.digitizer.tdc_bits
    coarse = q["t"] // period
    fine = ((q["t"] - coarse * period) << bits) // period
    q["t"] = coarse * period + ((fine * period) >> bits)
    return q
