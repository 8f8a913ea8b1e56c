"""CI's benchmark regression check trips on a deliberately slowed kernel, and only then."""

from __future__ import annotations

import time

import numpy as np
import pytest

from daq.perf.bench import best_time
from daq.perf.benchcheck import RATIOS, check, main
from hw import RAW_DTYPE, wire

DECODER_RATIO = tuple(r for r in RATIOS if r.stage == "test_bench_decode")


def _report(frames: bytes, n: int, decode) -> dict:
    """A pytest-benchmark-like report of the decoder and the memory-copy baseline, measured now."""
    t_dec = best_time(lambda: decode(frames), 3)
    t_copy = best_time(lambda: bytes(memoryview(frames)), 3)
    return {"benchmarks": [
        {"name": "test_bench_decode", "extra_info": {"events_per_s": n / t_dec}},
        {"name": "test_bench_memcpy_baseline", "extra_info": {"events_per_s": n / t_copy}},
    ]}


@pytest.fixture(scope="module")
def frames(brain) -> tuple[bytes, int]:
    rng = np.random.default_rng(1)
    n = 500_000
    raw = np.zeros(n, RAW_DTYPE)
    raw["t"] = np.cumsum(rng.exponential(2e5, n)).astype(np.int64)
    raw["crystal"] = rng.choice(np.flatnonzero(brain.crystal_board == 0), n)
    raw["adc"] = 1000
    return wire.encode(raw, board=0, first_seq=0, scanner=brain), n


@pytest.mark.serial  # the decoder's real throughput: alone
def test_the_real_decoder_passes(frames, brain) -> None:
    data, n = frames
    wire.Decoder(brain).feed(data[:5000])
    assert check(_report(data, n, lambda f: wire.Decoder(brain).feed(f)), DECODER_RATIO) == []


def test_a_slowed_decoder_fails_the_check(frames, brain) -> None:
    data, n = frames

    def slowed(f: bytes) -> np.ndarray:
        time.sleep(0.5)  # the injected regression
        return wire.Decoder(brain).feed(f)

    failures = check(_report(data, n, slowed), DECODER_RATIO)
    assert len(failures) == 1 and "regression" in failures[0]


def test_a_missing_benchmark_fails_and_the_cli_says_so(tmp_path) -> None:
    assert any("did not run" in f for f in check({"benchmarks": []}))
    assert main([str(tmp_path / "none.json")]) == 2


def test_the_daq_cpu_ratio_reads_singles_per_cpu_second() -> None:
    """The end-to-end chain is judged by its singles per DAQ CPU second (extra_info), not by
    its wall-clock rate: a chain that keeps its rate by burning more CPU fails."""
    ratio = tuple(r for r in RATIOS if r.baseline_key == "numpy_sorter_events_per_s")
    assert len(ratio) == 1 and ratio[0].stage_key == "daq_cpu_events_per_s"

    def report(daq_cpu_ns: float) -> dict:
        return {"benchmarks": [
            {"name": "test_bench_end_to_end_chain",
             "extra_info": {"events_per_s": 20e6, "daq_cpu_events_per_s": 1e9 / daq_cpu_ns,
                            "numpy_sorter_events_per_s": 1e9 / 63.0}}]}

    assert check(report(30.0), ratio) == []
    failures = check(report(57.0), ratio)  # a 16-core Xeon's CPU per single
    assert len(failures) == 1 and "regression" in failures[0]


def test_the_parallel_stage_is_judged_by_its_best_rounds() -> None:
    """Every core over one thread compares best rounds: a noisy median (another process taking
    a core from the every-core run) passes, a parallel path slower in its best round fails."""
    ratio = tuple(r for r in RATIOS if r.stage == "test_bench_processor[all]")
    assert len(ratio) == 1

    def report(all_median_s: float, all_best_s: float) -> dict:
        def bench(name: str, median_s: float, best_s: float) -> dict:
            return {"name": name, "extra_info": {"events_per_s": 1e6 / median_s,
                                                 "events_per_s_best": 1e6 / best_s}}
        return {"benchmarks": [bench("test_bench_processor[all]", all_median_s, all_best_s),
                               bench("test_bench_processor[one]", 0.10, 0.10)]}

    assert check(report(0.14, 0.09), ratio) == []
    failures = check(report(0.14, 0.14), ratio)
    assert len(failures) == 1 and "regression" in failures[0]
