"""CI's benchmark regression check: ratios measured in the same run, never absolute times.

CI machines are shared and noisy, so a stage is compared with a baseline measured seconds apart
on the same machine (the decoder with a plain memory copy, the sorter with a NumPy sorter, the
projector with a NumPy baseline...). Each ratio has a floor well below what it is on a quiet
machine: only a large regression (a kernel that lost numba, an accidental per-event Python loop)
trips it.

Usage: ``python -m daq.perf.benchcheck BENCH.json`` (the ``--benchmark-json`` of pytest-benchmark);
exit 1 and one line per failed ratio on a regression.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Ratio:
    """``events/s of stage / events/s of baseline`` must stay >= ``floor``."""

    name: str
    stage: str
    baseline: str
    floor: float
    stage_key: str = "events_per_s"
    """The stage's figure in its extra_info (events per second of something)."""
    baseline_key: str = "events_per_s"
    """The baseline's figure in its extra_info."""


#: Benchmarks by their full pytest-benchmark name (test function and parameters).
RATIOS = (
    Ratio("wire decoder vs memory copy", "test_bench_decode", "test_bench_memcpy_baseline",
          0.004),
    Ratio("wire encoder vs memory copy", "test_bench_encode", "test_bench_memcpy_baseline",
          0.004),
    Ratio("sorter vs NumPy sorter", "test_bench_sort[takeAllGoods-delayed]",
          "test_bench_numpy_baseline_take_all_goods_with_delays", 2.0),
    Ratio("time order vs np.argsort (quick)", "test_bench_sort_nearly_sorted",
          "test_bench_numpy_time_order[argsort-quick]", 0.8),
    Ratio("calibration vs memory copy", "test_bench_calibration", "test_bench_memcpy_baseline",
          0.002),
    Ratio("projector non-TOF vs NumPy time order", "test_bench_forward_back[nontof-lor-1]",
          "test_bench_numpy_time_order[argsort-quick]", 0.002),
    # best rounds: the every-core run needs every core, so another process on the machine lands
    # on its median (CI saw 0.84 by medians where the best rounds gave 1.02)
    Ratio("processing stage, every core vs one thread (best)", "test_bench_processor[all]",
          "test_bench_processor[one]", 0.8, stage_key="events_per_s_best",
          baseline_key="events_per_s_best"),
    # a sorted file: the baseline's argsort is one pass (about 0.2 on the 2-core machine)
    Ratio("PETsys import vs np.fromfile + stable np.argsort", "test_bench_import_petsys_singles",
          "test_bench_import_baseline_fromfile_argsort", 0.05),
    Ratio("emulator vs memory copy", "test_bench_full_physics_singles[one-core]",
          "test_bench_memcpy_baseline", 2e-4),
    # a voxel phantom costs at most twice the same object drawn from shapes (the NEMA
    # image-quality phantom, 2 mm voxels)
    Ratio("voxel phantom vs its shapes (emulator)", "test_bench_phantom_singles[voxels]",
          "test_bench_phantom_singles[shapes]", 0.5),
    # singles per DAQ CPU second (every DAQ thread, system time included) over the NumPy
    # sorter's singles per second on the same recording, timed in the same test
    # (daq.perf.costper, petdaq bench --quick's measure): the NumPy sorter's time per single
    # over the DAQ's CPU per single, higher is better; at least 1.2: the DAQ's CPU per single
    # below 0.83 times the NumPy sorter's (the 2-core machine reads 1.6-1.7,
    # docs/performance.md)
    Ratio("NumPy sorter time / DAQ CPU per single", "test_bench_end_to_end_chain",
          "test_bench_end_to_end_chain", 1.2, stage_key="daq_cpu_events_per_s",
          baseline_key="numpy_sorter_events_per_s"),
    # the same over a copy of the recording's frames (memory's speed): at least 1 / 400
    Ratio("frame copy time / DAQ CPU per single", "test_bench_end_to_end_chain",
          "test_bench_end_to_end_chain", 0.0025, stage_key="daq_cpu_events_per_s",
          baseline_key="frame_copy_events_per_s"),
)


def events_per_s(bench: dict, key: str = "events_per_s") -> float:
    """A benchmark's throughput: its extra_info ``key``, else 1 / median time."""
    eps = bench.get("extra_info", {}).get(key)
    if eps:
        return float(eps)
    return 1.0 / float(bench["stats"]["median"])


def _value(r: Ratio, by_name: dict[str, dict]) -> float:
    return (events_per_s(by_name[r.stage], r.stage_key)
            / events_per_s(by_name[r.baseline], r.baseline_key))


def check(report: dict, ratios: tuple[Ratio, ...] = RATIOS) -> list[str]:
    """The failed ratios (empty when all pass), one line each."""
    by_name = {b["name"]: b for b in report.get("benchmarks", [])}
    failures = []
    for r in ratios:
        missing = [n for n in (r.stage, r.baseline) if n not in by_name]
        if missing:
            failures.append(f"{r.name}: benchmark {', '.join(missing)} did not run")
            continue
        value = _value(r, by_name)
        if value < r.floor:
            failures.append(f"{r.name}: ratio {value:.3g} < floor {r.floor:g} (regression)")
    return failures


def table(report: dict, ratios: tuple[Ratio, ...] = RATIOS) -> str:
    """The ratios of a report as text lines."""
    by_name = {b["name"]: b for b in report.get("benchmarks", [])}
    lines = []
    for r in ratios:
        if r.stage in by_name and r.baseline in by_name:
            lines.append(f"{r.name:40s} {_value(r, by_name):8.3g}  (floor {r.floor:g})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m daq.perf.benchcheck BENCH.json", file=sys.stderr)
        return 2
    path = Path(args[0])
    if not path.is_file():
        print(f"benchcheck: {path} does not exist (did the benchmarks run?)", file=sys.stderr)
        return 2
    report = json.loads(path.read_text())
    print(table(report))
    failures = check(report)
    for f in failures:
        print(f"benchcheck: FAIL {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
