"""The count-rate sweep through the real DAQ, each activity replayed at its real rate (``--live``).

For each activity the emulator records a short acquisition (NU 2 scatter phantom by default);
a digitizer stand-in (:mod:`daq.perf.e2e`) replays it, paced at its real rate, over ZeroMQ into the
live DAQ (receivers, journal, decode, energy gate, merge, sort, list mode) for ``seconds``. A
point *kept up* when nothing was lost (frames sent == journaled, no sequence gaps, no late
events) and the DAQ never held the boards more than ``max_lag_s`` behind real time, nor needed
more than that after the last frame to sort the last event. A point that falls further behind is
stopped there (its lag is then at least the limit).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from hw.scanner import Scanner
from infra.atomic import replacing
from infra.errors import UserError, make_folder
from infra.progress import Progress

#: Default activities (MBq): through the peak NECR of the bedside-brain scanner.
DEFAULT_MBQ = (5.0, 10.0, 20.0, 40.0, 70.0, 100.0, 150.0)


@dataclass
class LivePoint:
    """One activity through the live DAQ."""

    activity_mbq: float
    singles_cps: float
    """The rate the boards delivered (the recording's singles per second of data)."""
    seconds: float
    """Seconds of data replayed."""
    singles: int
    zero_loss: bool
    lag_s: float
    """The most the DAQ held the boards behind real time (s)."""
    end_lag_s: float
    """From the last frame sent to the last event sorted (s)."""
    kept_up: bool
    threads: int
    daq_ns_per_event: float


def measure(scanner: Scanner, activity_mbq: float, seconds: float, *, decays: float = 3e6,
            phantom: str = "nu2-scatter", nuclide: str = "F-18", seed: int = 0,
            threads: int | None = None, max_lag_s: float = 0.5) -> LivePoint:
    """Record ``decays`` decays at ``activity_mbq`` and replay them at their rate for ``seconds``."""
    from daq.perf.e2e import run_chain
    from emulator import simulate

    recording_s = decays / (activity_mbq * 1e6)
    sim = simulate(scanner, phantom, nuclide, activity_mbq, recording_s, seed=seed)
    r = run_chain(scanner, sim.raw_per_board, seconds, threads=threads, realtime=True,
                  give_up_lag_s=max_lag_s)
    data_s = r["singles"] / (sim.raw.size / recording_s)
    kept_up = (r["zero_loss"] and not r["gave_up"] and r["lag_s"] <= max_lag_s
               and r["end_lag_s"] <= max_lag_s)
    return LivePoint(activity_mbq, sim.raw.size / recording_s, data_s, r["singles"],
                     r["zero_loss"], r["lag_s"], r["end_lag_s"], kept_up, r["threads"],
                     r["cpu"]["daq"]["process_cpu_s"] / max(r["singles"], 1) * 1e9)


def sweep(scanner: Scanner, activities_mbq: Sequence[float] | None, seconds: float,
          progress: Progress | None = None, seed: int = 0, **kw) -> list[LivePoint]:
    """:func:`measure` for every activity, in increasing order (the k-th with ``seed + k``)."""
    activities = sorted(activities_mbq or DEFAULT_MBQ)
    if min(activities) <= 0:
        raise UserError(f"count-rate activities must be > 0 MBq, got {activities}")
    if not seconds > 0:
        raise UserError(f"count-rate --seconds must be > 0, got {seconds}")
    points = []
    for k, a in enumerate(activities):
        points.append(measure(scanner, a, seconds, seed=seed + k, **kw))
        if progress is not None:
            p = points[-1]
            progress.update(k + 1, f"{a:g} MBq: {'kept up' if p.kept_up else 'behind'}, "
                            f"lag {p.lag_s:.2f} s")
    if progress is not None:
        progress.close(len(activities))
    return points


def format_table(points: list[LivePoint], max_lag_s: float) -> list[str]:
    """The sweep as text lines."""
    lines = [f"{'MBq':>6s} {'Mcps':>7s} {'s':>5s} {'zero loss':>9s} {'lag s':>6s} "
             f"{'end lag s':>9s} {'ns/ev':>6s}  kept up (lag <= {max_lag_s:g} s)"]
    for p in points:
        lines.append(f"{p.activity_mbq:6g} {p.singles_cps / 1e6:7.1f} {p.seconds:5.2f} "
                     f"{'yes' if p.zero_loss else 'NO':>9s} {p.lag_s:6.2f} {p.end_lag_s:9.2f} "
                     f"{p.daq_ns_per_event:6.0f}  {'yes' if p.kept_up else 'no'}")
    return lines


def save(points: list[LivePoint], folder: Path) -> Path:
    """``count_rate_live.csv`` in ``folder``."""
    folder = make_folder(folder)
    path = folder / "count_rate_live.csv"
    with replacing(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(asdict(points[0])))
        writer.writeheader()
        for p in points:
            writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v
                             for k, v in asdict(p).items()})
    return path
