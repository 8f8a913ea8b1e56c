"""A run's head motion for its image: none, a tracker's trace, or the pose estimated from its prompts."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hw.motion import MotionTrace, load_trace
from hw.scanner import Scanner
from infra.errors import UserError
from recon.motion.episodes import find_episodes
from recon.motion.estimate import estimate_trace
from recon.motion.signal import motion_signal

AUTO, NONE = "auto", "none"
#: How far (s) an external trace may stop short of the scan's ends.
COVER_TOLERANCE_S = 1.0
#: The study's body part whose motion is corrected by default (a rigid head).
RIGID = "HEAD"


def checked(choice: str) -> str:
    """``--motion-correction``: auto, none or a trace file (read now: its one-line error)."""
    if choice not in (AUTO, NONE):
        load_trace(choice)
    return choice


def run_motion(coinc: np.ndarray, scanner: Scanner, choice: str, duration_s: float | None,
               body_part: str | None, say: Callable[[str], None] | None = None,
               kinetic_time_scale: float = 1.0) -> MotionTrace | None:
    """The trace a run's image is corrected for (None: none): an external trace (``choice``
    a file; it must cover the scan), or with ``auto`` a head's pose estimated from its prompts
    where they show motion episodes (not for a kinetic phantom run faster than real time
    (``kinetic_time_scale`` > 1), whose tracer moves the centroid as fast as a head would)."""
    if choice == NONE or scanner.kind != "pet" or not duration_s:
        return None
    if choice != AUTO:
        trace = load_trace(choice)
        first, last = float(trace.rows[0, 0]), float(trace.rows[-1, 0])
        if first > COVER_TOLERANCE_S or last < duration_s - COVER_TOLERANCE_S:
            raise UserError(f"motion trace {choice} covers {first:g}-{last:g} s, the scan "
                            f"0-{duration_s:g} s: a trace must cover the whole scan")
        return None if trace.still else trace
    if (body_part or "").upper() != RIGID or kinetic_time_scale > 1.0:
        return None
    signal = motion_signal(coinc, scanner)
    episodes = find_episodes(signal)
    if not episodes:
        return None
    if say is not None:
        say(f"motion: {len(episodes)} episode(s), estimating the head's pose")
    return estimate_trace(coinc, scanner, duration_s, say, signal)
