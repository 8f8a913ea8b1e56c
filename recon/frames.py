"""A dynamic scan's frame schedule: ``"6x10s,8x30s,5x5min"`` -> frames back to back from the
scan's start (list-mode time 0), checked against the run's data.

A schedule is in the kinetic clock: an emulated kinetic run's model time (its
``kinetic_time_scale`` S times the acquisition's), the acquisition's own for every other run.
Frames hold acquisition seconds (what the list-mode is cut by).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from infra.errors import UserError

_PART = re.compile(r"^\s*(?:(\d+)\s*x\s*)?([0-9]*\.?[0-9]+)\s*(s|min|m)?\s*$")


@dataclass(frozen=True)
class Frame:
    """One frame: [start_s, start_s + duration_s) of acquisition time."""

    number: int
    start_s: float
    duration_s: float

    @property
    def stop_s(self) -> float:
        return self.start_s + self.duration_s

    @property
    def mid_s(self) -> float:
        return self.start_s + self.duration_s / 2


def parse_schedule(text: str, time_scale: float = 1.0) -> list[Frame]:
    """Frames from ``"COUNTxDURATION[s|min],..."`` (seconds without a unit) of the kinetic clock
    (``time_scale`` times the acquisition's), back to back from the scan's start."""
    frames: list[Frame] = []
    start = 0.0
    for part in str(text).split(","):
        m = _PART.match(part)
        if m is None:
            raise UserError(f"frame schedule {text!r}: {part.strip()!r} is not COUNTxDURATION "
                            "(e.g. 6x10s,8x30s,5x5min)")
        count = int(m.group(1) or 1)
        seconds = float(m.group(2)) * (60.0 if m.group(3) in ("min", "m") else 1.0)
        if count < 1 or not (math.isfinite(seconds) and seconds > 0):
            raise UserError(f"frame schedule {text!r}: {part.strip()!r} needs a count >= 1 and "
                            "a duration > 0")
        for _ in range(count):
            frames.append(Frame(len(frames) + 1, start / time_scale, seconds / time_scale))
            start += seconds
    return frames


def check_frames(frames: list[Frame], prompt_times_s: np.ndarray, run_s: float | None) -> None:
    """A clear error for frames beyond the run or without prompts."""
    end = run_s if run_s else (float(prompt_times_s.max()) if prompt_times_s.size else 0.0)
    last = frames[-1]
    if last.stop_s > end * (1 + 1e-6) + 1e-3:
        raise UserError(f"the frames end at {last.stop_s:g} s of acquisition but the run's "
                        f"data ends at {end:g} s: shorten the schedule")
    counts = np.histogram(prompt_times_s, bins=[f.start_s for f in frames] + [last.stop_s])[0]
    for f, n in zip(frames, counts, strict=True):
        if n == 0:
            raise UserError(f"frame {f.number} ({f.start_s:g} to {f.stop_s:g} s of acquisition) "
                            "has no prompts to reconstruct: merge it with its neighbour")
