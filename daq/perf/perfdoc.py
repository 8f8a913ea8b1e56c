"""``python -m daq.perf.perfdoc [FILE]``: docs/performance.md measured on this machine.

Runs ``petdaq bench`` (stages and the end-to-end chain), ``petdaq bench --scaling``,
``petdaq count-rate --live`` (the default activities) and ``petdaq bench --campaigns`` (Dask), and
writes their tables with the machine
they ran on and the command that made them. Takes a few minutes once numba's cache is warm.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Cores of the many-core node the issue's target is set for.
MANY_CORES = 16

#: The sections in the order they are measured: the scaling, the figures a many-core machine is
#: borrowed for, first.
MEASURE_ORDER = ("scaling", "stages and the chain", "the live count rate",
                 "a recorded scan on every core", "campaigns", "the firmware in the loop")


def _stages(bench: Any) -> list[str]:
    lines = ["| stage | M events/s | events | published anchor / target |", "|---|---|---|---|"]
    for r in bench.results:
        lines.append(f"| {r.stage} | {r.events_per_s / 1e6:.2f} | {r.events} | {r.anchor} |")
    return lines


def _scaling(points: list[Any]) -> list[str]:
    lines = ["| threads | end to end, zero loss (M singles/s) | efficiency | DAQ CPU (ns/event) "
             "| emulator (M singles/s) | efficiency | processing thread on a CPU | "
             "workers on a CPU (mean) | chain limited by |", "|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        e2e = f"{p.e2e_singles_per_s / 1e6:.2f}" if p.zero_loss else "LOSS"
        lines.append(f"| {p.threads} | {e2e} | {p.e2e_efficiency:.2f} | "
                     f"{p.daq_cpu_ns_per_event:.0f} | {p.emulator_singles_per_s / 1e6:.2f} | "
                     f"{p.emulator_efficiency:.2f} | {p.processing_on_cpu:.0%} | "
                     f"{p.workers_on_cpu:.0%} | {p.limited_by} |")
    return lines


def _live(points: list[Any], max_lag_s: float) -> list[str]:
    lines = ["| activity (MBq) | singles (Mcps) | data replayed (s) | zero loss | lag (s) | "
             "end lag (s) | DAQ CPU (ns/event) | kept up |", "|---|---|---|---|---|---|---|---|"]
    for p in points:
        lines.append(f"| {p.activity_mbq:g} | {p.singles_cps / 1e6:.1f} | {p.seconds:.2f} | "
                     f"{'yes' if p.zero_loss else 'NO'} | {p.lag_s:.2f} | {p.end_lag_s:.2f} | "
                     f"{p.daq_ns_per_event:.0f} | {'yes' if p.kept_up else 'no'} |")
    kept = [p.activity_mbq for p in points if p.kept_up]
    lines.append("")
    lines.append(f"Kept up (zero loss, never more than {max_lag_s:g} s behind real time) through "
                 f"{max(kept):g} MBq." if kept else "Kept up at none of the activities.")
    return lines


def _acquire_rate(frames: Path, threads: int, out: Path) -> tuple[float, int, int]:
    """``petdaq acquire --from FRAMES --no-recon --threads N``: (singles/s, singles, prompts)."""
    import shutil
    import subprocess

    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "petdaq", "acquire", "--from", str(frames), "--no-recon",
                    "--threads", str(threads), "--out", str(out), "--name", "run"],
                   check=True, capture_output=True)
    from runstore.rundir import RunDir

    stop = RunDir.open(out / "run").stop
    c = stop.counts
    return c["singles"] / stop.elapsed_s, c["singles"], c["prompts"]


def _acquire(threads: int, repeats: int = 3) -> list[str]:
    """A recorded 40 MBq NU 2 scan (0.5 s) acquired from its frames file on one thread and on
    ``threads``, alternately, ``repeats`` times each."""
    import statistics
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="petdaq-perf-") as tmp:
        frames = Path(tmp) / "nu2-40.frames"
        subprocess.run([sys.executable, "-m", "petdaq", "emulate", "--phantom", "nu2-scatter",
                        "--activity-mbq", "40", "--duration", "0.5", "--fast", "--seed", "3",
                        "--to", str(frames), "--quiet"], check=True, capture_output=True)
        runs: dict[int, list] = {1: [], threads: []}
        for _ in range(repeats):
            for n in runs:
                runs[n].append(_acquire_rate(frames, n, Path(tmp) / "runs"))
    same = len({(r[1], r[2]) for rs in runs.values() for r in rs}) == 1
    rate = {n: statistics.median(r[0] for r in rs) for n, rs in runs.items()}
    one, many = runs[1][0], runs[threads]
    return [f"`petdaq acquire --from FILE.frames --no-recon` on a recorded 0.5 s scan of the NU 2 "
            f"scatter phantom at 40 MBq ({one[1]} singles, {one[2]} prompts), {repeats} runs "
            f"each, alternating: median {rate[1] / 1e6:.2f} M singles/s on 1 thread "
            f"({', '.join(f'{r[0] / 1e6:.2f}' for r in runs[1])}), {rate[threads] / 1e6:.2f} "
            f"on {threads} ({', '.join(f'{r[0] / 1e6:.2f}' for r in many)}): "
            f"**{rate[threads] / rate[1]:.2f}x**; singles and prompts "
            f"{'identical in every run' if same else 'DIFFERENT between runs'}."]


def _costs(points: list[Any], cores: int) -> list[str]:
    from daq.perf.bench import PEAK_NECR_CPS

    one = points[0]
    ns = min(p.daq_cpu_ns_per_event for p in points)
    lines = [f"- The DAQ costs {ns:.0f} ns of CPU per single (all its threads: receivers, "
             f"journal, decode, energy gate, merge, sort, list mode): "
             f"{ns * PEAK_NECR_CPS / 1e9:.1f} cores at the scanner's peak-NECR rate "
             f"({PEAK_NECR_CPS / 1e6:.0f} Mcps), with perfect scaling.",
             f"- The emulator makes {one.emulator_singles_per_s / 1e6:.2f} M singles/s on one "
             "thread (brain phantom, 20 MBq)."]
    if cores < MANY_CORES:
        lines.append(f"- No {MANY_CORES}-core node was available to this measurement: the "
                     f"scaling stops at this machine's {cores} cores.")
    return lines


def _per_single(costs: dict[str, Any], chains: dict[str, dict[str, Any]]) -> list[str]:
    """Each chain's DAQ CPU per single against the baselines' time per single on its recording
    (:mod:`daq.perf.costper`, as CI reads it), and the share of system (kernel) time in the
    DAQ's CPU."""
    lines = ["| chain | singles | DAQ CPU per single (ns) | NumPy sorter per single (ns) | "
             "DAQ / NumPy sorter | frame copy per single (ns) | DAQ / frame copy | "
             "system time of the DAQ's CPU |", "|---|---|---|---|---|---|---|---|"]
    for name, cost in costs.items():
        daq = chains[name]["cpu"]["daq"]
        lines.append(f"| {name} | {cost.singles} | {cost.daq_ns:.1f} | "
                     f"{cost.numpy_sorter_ns:.1f} | {cost.of_numpy_sorter:.2f} | "
                     f"{cost.frame_copy_ns:.2f} | {cost.of_frame_copy:.0f} | "
                     f"{daq['system_s'] / daq['process_cpu_s']:.0%} |")
    return lines


def _ring_mib() -> int:
    """The DAQ's receive ring (MiB)."""
    from daq.pipeline.links.handover import ring_bytes
    from daq.pipeline.links.ring import round_capacity

    return round_capacity(ring_bytes()) >> 20


def _campaigns(times: list[Any]) -> list[str]:
    from daq.perf.campaigns import EMULATION_MBQ, EMULATION_S, STUDY

    activities, decays = STUDY["default"]
    lines = ["| campaign | workers | seconds | vs 1 worker | same result as one process |",
             "|---|---|---|---|---|"]
    for t in sorted(times, key=lambda t: (t.campaign, t.workers)):
        who = "one process, no cluster" if t.workers == 0 else str(t.workers)
        lines.append(f"| {t.campaign} | {who} | {t.seconds:.1f} | {t.speedup:.2f}x | "
                     f"{'yes' if t.same else 'NO'} |")
    start = max(t.start_s for t in times)
    return [f"The count-rate study: {len(activities)} activities "
            f"({', '.join(f'{a:g}' for a in activities)} MBq), {decays:g} decays each, a task "
            f"per activity. The sharded emulation: {EMULATION_S['default']:g} s of the NU 2 "
            f"phantom at {EMULATION_MBQ:g} MBq, the slices' physics on the workers, the "
            "electronics in time order in the client. Workers: a local cluster of that many "
            "single-threaded processes, timed once up (its start-up and the workers' first load "
            f"of the compiled kernels, at most {start:.1f} s, apart); one process uses every "
            "core's threads.", "", *lines]


def _header(info: dict[str, Any], pending: list[str]) -> list[str]:
    lines = ["# Performance", "",
             f"Measured by `python -m daq.perf.perfdoc` on {info['cpu']}, {info['cores']} cores, "
             f"Python {info['python']}. Every figure comes from one run of that command; the "
             "machine may be shared, so compare figures of one run with each other (same-run "
             "ratios), not with another machine's."]
    if pending:
        lines += ["", f"Not measured (the run stopped first): {', '.join(pending)}."]
    return lines


def _live_section(scanner: Any, cores: int) -> list[str]:
    from daq.perf import countrate_live

    live = countrate_live.sweep(scanner, None, 3.0, None, threads=cores, max_lag_s=0.5)
    return [
        "## Keeping up with the scanner: `petdaq count-rate --live`", "",
        "Each activity of the NU 2 scatter phantom recorded by the emulator, replayed by a "
        "digitizer stand-in (a child process, one ZeroMQ socket per board) at its real rate into "
        f"the live DAQ on {cores} threads for 3 s. *Lag*: the most the DAQ held the boards "
        "behind real time; *end lag*: from the last frame sent to the last event sorted.", "",
        *_live(live, 0.5)]


def _acquire_section(cores: int) -> list[str]:
    return ["## A recorded scan on every core: `petdaq acquire --from`", "", *_acquire(cores)]


def _scaling_section(scanner: Any, cores: int, say: Callable[[str], None]) -> list[str]:
    import emulator
    from daq.perf import scaling
    from daq.perf.bench import ACTIVITY_MBQ, SIZES

    sim = emulator.simulate(scanner, "nu2-scatter", "F-18", ACTIVITY_MBQ, SIZES["default"],
                            seed=7)
    points = scaling.measure(scanner, sim.raw_per_board, "default", cores, say)
    return [
        "## Scaling: `petdaq bench --scaling`", "",
        "End to end: the recording replayed as fast as the DAQ takes it from frames the sender "
        "encoded ahead (`daq.perf.sender`), zero loss (frames sent == journaled, no sequence "
        "gaps), the DAQ's processing on that many threads (the sender shares the machine); "
        "*limited by*: the side the CPU and wait shares name (`daq.perf.e2e.limited_by`). "
        "Emulator: brain phantom, 20 MBq, on that many threads. "
        "Efficiency: rate / (threads x the one-thread rate).", "",
        *_scaling(points), "", *_costs(points, cores)]


def _campaigns_section(scanner: Any, cores: int, say: Callable[[str], None]) -> list[str]:
    from daq.perf import campaigns, scaling

    times = campaigns.measure(scanner, "default", scaling.thread_counts(cores), say)
    return ["## Campaigns on Dask: `petdaq bench --campaigns`", "", *_campaigns(times)]


def _bench_section(scanner: Any, say: Callable[[str], None]) -> list[str]:
    import emulator
    from daq.perf import costper
    from daq.perf.bench import ACTIVITY_MBQ, CHAIN_SECONDS, SIZES, Bench

    bench = Bench("default")
    bench.run(say)
    say("end to end")
    e2e = bench.end_to_end(CHAIN_SECONDS["default"])
    say("end to end, --quick, three times")
    recording = emulator.simulate(scanner, "nu2-scatter", "F-18", ACTIVITY_MBQ, SIZES["quick"],
                                  seed=7)
    quick = [costper.measure(scanner, recording, CHAIN_SECONDS["quick"]) for _ in range(3)]
    default_name = f"`petdaq bench` ({CHAIN_SECONDS['default']:g} s)"
    names = [f"`petdaq bench --quick` and CI ({CHAIN_SECONDS['quick']:g} s), run {k + 1}"
             for k in range(3)]
    costs = {default_name: bench.cost, **{n: c for n, (c, _) in zip(names, quick, strict=True)}}
    chains = {default_name: bench.e2e, **{n: r for n, (_, r) in zip(names, quick, strict=True)}}
    return [
        "## Stages and the chain: `petdaq bench`", "", *_stages(bench), "",
        f"End to end: {e2e.events_per_s / 1e6:.2f} M singles/s with zero loss; its CPU split "
        "(`petdaq bench` prints it under the table):", "", "```", *_cpu_lines(bench), "```", "",
        "The DAQ's CPU per single (every DAQ thread, system time included, the work memory "
        "touched at the run's start included; the receive ring, "
        f"{_ring_mib()} MiB made and touched by the warm-up before the boards stream as in "
        "every run, not) of that chain and of three of `petdaq bench --quick`'s (5 s from a "
        "0.05 s recording, as CI's benchmark runs it), against two baselines timed on the "
        "same recording in the same process (`daq.perf.costper`): the NumPy sorter with the "
        "same semantics, and a copy of the recording's wire frames (memory's speed). CI "
        "checks the first ratio (`daq.perf.benchcheck`):", "",
        *_per_single(costs, chains)]


def build(out: Path | None = None) -> str:
    """Measure everything and return the page; with ``out``, the page so far is written there
    after each section, so that a run stopped part-way keeps what it measured."""
    from daq.perf.bench import machine
    from hw import load_scanner
    from infra.pool import available_cores

    say = lambda s: print(f"... {s}", file=sys.stderr)  # noqa: E731
    info, cores = machine(), available_cores()
    scanner = load_scanner("bedside-brain")
    sections: dict[str, Callable[[], list[str]]] = {    # in the page's order
        "the live count rate": lambda: _live_section(scanner, cores),
        "a recorded scan on every core": lambda: _acquire_section(cores),
        "scaling": lambda: _scaling_section(scanner, cores, say),
        "campaigns": lambda: _campaigns_section(scanner, cores, say),
        "stages and the chain": lambda: _bench_section(scanner, say),
        "the firmware in the loop": lambda: firmware_section(say)}
    measured: dict[str, list[str]] = {}
    for name in MEASURE_ORDER:
        say(name)
        measured[name] = sections[name]()
        body = [line for n in sections if measured.get(n) for line in ["", *measured[n]]]
        page = "\n".join([*_header(info, [n for n in sections if n not in measured]), *body])
        if out is not None:
            out.write_text(page)
    return page


def firmware_section(say) -> list[str]:
    """The firmware-in-the-loop section where QEMU and the cross compiler are installed."""
    if shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None:
        return []
    from daq.perf import firmware

    say("the firmware in the loop")
    return firmware.section()


def _cpu_lines(bench: Any) -> list[str]:
    from daq.perf.e2e import format_cpu

    return format_cpu(bench.e2e["cpu"], bench.e2e["singles"])


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path(__file__).resolve().parents[2] / "docs" / \
        "performance.md"
    build(out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
