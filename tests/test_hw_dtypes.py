"""hw.dtypes.join: packed records joined as bytes, field for field what numpy's concatenate gives."""

from __future__ import annotations

import numpy as np
import pytest

from hw.dtypes import RAW_DTYPE, SINGLE_DTYPE, join


def _raw(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = np.empty(n, RAW_DTYPE)
    a["t"] = rng.integers(0, 1 << 40, n)
    a["crystal"] = rng.integers(0, 1 << 20, n)
    a["adc"] = rng.integers(0, 1 << 16, n)
    return a


def test_join_equals_concatenate_including_strided_views():
    parts = [_raw(5, 1), _raw(0, 2), _raw(9, 3)[::2], _raw(3, 4)]
    joined = join(parts, RAW_DTYPE)
    assert joined.dtype == RAW_DTYPE
    np.testing.assert_array_equal(joined, np.concatenate(parts))


def test_join_into_out_and_empty():
    parts = [_raw(4, 5), _raw(6, 6)]
    out = np.empty(10, RAW_DTYPE)
    assert join(parts, RAW_DTYPE, out=out) is out
    np.testing.assert_array_equal(out, np.concatenate(parts))
    assert join([], RAW_DTYPE).dtype == RAW_DTYPE and join([], RAW_DTYPE).size == 0


def test_join_refuses_another_dtype():
    with pytest.raises(ValueError, match="is not"):
        join([_raw(2, 7), np.zeros(2, SINGLE_DTYPE)], RAW_DTYPE)


def test_join_on_workers_is_the_same_bytes(monkeypatch):
    """A join copied in pieces on the workers (pieces across parts, empty and strided parts,
    into ``out``) gives what the one-thread join gives."""
    from hw import dtypes
    from infra.pool import Workers

    monkeypatch.setattr(dtypes, "JOIN_PIECE_BYTES", 64)  # many pieces, few records
    parts = [_raw(37, 8), _raw(0, 9), _raw(101, 10)[::3], _raw(250, 11)]
    alone = join(parts, RAW_DTYPE)
    workers = Workers(3)
    try:
        np.testing.assert_array_equal(join(parts, RAW_DTYPE, workers=workers), alone)
        out = np.empty(alone.size, RAW_DTYPE)
        assert join(parts, RAW_DTYPE, out=out, workers=workers) is out
        np.testing.assert_array_equal(out, alone)
        with pytest.raises(ValueError, match="out holds"):
            join(parts, RAW_DTYPE, out=np.empty(alone.size - 1, RAW_DTYPE), workers=workers)
    finally:
        workers.close()
