"""``petdaq count-rate --live``: the count-rate sweep through the real DAQ at each activity's rate.

For each activity the emulator records a short acquisition (NU 2 scatter phantom by default);
a digitizer stand-in (:mod:`daq.e2e`) replays it, paced at its real rate, over ZeroMQ into the
live DAQ (receivers, journal, decode, merge, calibration, sort, list mode) for ``seconds``. A
point *kept up* when nothing was lost (frames sent == journaled, no sequence gaps, no late
events) and the DAQ never held the boards more than ``max_lag_s`` behind real time, nor needed
more than that after the last frame to sort the last event. A point that falls further behind is
stopped there (its lag is then at least the limit).
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from hw.atomic import replacing
from hw.errors import UserError, make_folder
from hw.progress import Progress
from hw.scanner import Scanner

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
    from daq.e2e import run_chain
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


def cmd_live(args: argparse.Namespace) -> int:
    from hw import load_scanner
    from hw.pool import check_threads

    threads = check_threads(args.threads)
    scanner = load_scanner(args.scanner)
    points = sweep(scanner, args.activities_mbq, args.seconds,
                   Progress("count-rate --live", unit="points"), decays=args.decays,
                   phantom=args.phantom, nuclide=args.nuclide, seed=args.seed,
                   threads=threads, max_lag_s=args.max_lag_s)
    print("\n".join(format_table(points, args.max_lag_s)))
    print(save(points, args.out))
    return 0


def extend(sub: argparse._SubParsersAction) -> None:
    """Give the emulator's ``count-rate`` its ``--live`` mode (the DAQ sits above the
    emulator, so it adds itself to the command)."""
    from daq.commands import add_threads_option

    p = sub.choices["count-rate"]
    p.add_argument("--live", action="store_true",
                   help="replay each activity at its real rate through ZeroMQ into the live DAQ "
                        "and report whether it kept up with zero loss")
    p.add_argument("--seconds", type=float, default=3.0,
                   help="--live: seconds of data replayed per activity")
    p.add_argument("--max-lag-s", type=float, default=0.5,
                   help="--live: the most the DAQ may fall behind real time and still keep up")
    add_threads_option(p)
    study = p.get_default("func")
    p.set_defaults(func=lambda args: cmd_live(args) if args.live else study(args))
