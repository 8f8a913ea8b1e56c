"""Throughput of the wire protocol on one core: encoder, decoder, and a memory-copy baseline.

Whole buffers of 2 M events of one board (bedside-brain crystals, ~4 Mcps for ~0.5 s), as the
emulator encodes and the DAQ decodes them. ``extra_info``: ``events_per_s`` and ``mb_per_s``
(encoded bytes) from the median round, ``events_per_s_best`` from the fastest. The memory copy
of the same encoded buffer is the baseline that CI's ratio check (daq/perf/benchcheck.py) compares
the decoder and encoder with.
Run: ``.venv/bin/python -m pytest tests/benchmarks/test_bench_wire.py --benchmark-enable``.
"""

from __future__ import annotations

import numpy as np
import pytest
from rates import record

from hw import RAW_DTYPE, wire

N_EVENTS = 2_000_000
ROUNDS = 15
BOARD = 1


@pytest.fixture(scope="module")
def events(brain) -> np.ndarray:
    rng = np.random.default_rng(2026)
    raw = np.zeros(N_EVENTS, RAW_DTYPE)
    raw["t"] = np.cumsum(rng.exponential(250_000.0, N_EVENTS)).astype(np.int64)
    raw["crystal"] = rng.choice(np.flatnonzero(brain.crystal_board == BOARD), N_EVENTS)
    raw["adc"] = np.clip(rng.normal(1022, 60, N_EVENTS), 0, 4095).astype(np.uint16)
    return raw


@pytest.fixture(scope="module")
def frames(events, brain) -> bytes:
    return wire.encode(events, board=BOARD, first_seq=0, scanner=brain)


def test_bench_encode(benchmark, events, frames, brain):
    wire.encode(events[:300], board=BOARD, first_seq=0, scanner=brain)  # compiled before timing
    out = benchmark.pedantic(wire.encode, args=(events,),
                             kwargs={"board": BOARD, "first_seq": 0, "scanner": brain},
                             rounds=ROUNDS, warmup_rounds=1)
    assert out == frames
    record(benchmark, events.size, n_bytes=len(frames))


def test_bench_decode(benchmark, events, frames, brain):
    wire.Decoder(brain).feed(frames[:5000])  # compiled before timing

    def fresh_decoder():
        return (wire.Decoder(brain),), {}

    def decode(dec):
        return dec.feed(frames)

    out = benchmark.pedantic(decode, setup=fresh_decoder, rounds=ROUNDS, warmup_rounds=1)
    assert out.size == events.size
    np.testing.assert_array_equal(out["crystal"], events["crystal"])
    record(benchmark, events.size, n_bytes=len(frames))


def test_bench_memcpy_baseline(benchmark, events, frames):
    """Copying the encoded buffer once (bytes -> bytes): the floor any decoder pays."""
    out = benchmark.pedantic(lambda: bytes(memoryview(frames)), rounds=ROUNDS, warmup_rounds=1)
    assert len(out) == len(frames)
    record(benchmark, events.size, n_bytes=len(frames))


def test_bench_crc32(benchmark, frames):
    """CRC-32 of the whole encoded buffer (``hw.wire.crc32``, for the DAQ journal)."""
    wire.crc32(frames[:100])
    benchmark.pedantic(wire.crc32, args=(frames,), rounds=ROUNDS, warmup_rounds=1)
    record(benchmark, N_EVENTS, n_bytes=len(frames))
