"""The head's pose from the list-mode alone: still spans registered to the first, the drift from the centroid.

The motion signal's episodes (:mod:`recon.motion.episodes`) cut the scan into spans where the
head held still. Each span's prompts are reconstructed quickly (TOF OSEM on 4 mm voxels, without
attenuation: the attenuation moves with the head, so the images differ only by the pose) and
registered to the first span's image (:mod:`recon.motion.register`): the span's pose. Within a
span, a slow drift shows in the centroid: each second's centroid's departure from the span's
mean is added to the span's shift (a local line through the centroid over
:data:`DRIFT_SMOOTH_S`). Between two spans the head steps when the centroid over
:data:`STEP_INTERVAL_S` intervals says it moved from the one's place to the other's (a
change point); where the centroid barely moved (a turn about it), the pose goes linearly
through the episode. The result is a trace in the emulator's columns (:mod:`hw.motion`), the
first span's position the rest pose.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hw.motion import MotionTrace
from hw.scanner import Scanner
from recon.grid import default_grid
from recon.motion.between import events_between
from recon.motion.episodes import Episode, find_episodes
from recon.motion.register import register
from recon.motion.signal import MotionSignal, motion_signal
from recon.pet.osem import lm_osem

#: The span images' voxel (mm).
SPAN_VOXEL_MM = 4.0
#: Prompts a span's image takes at most (evenly spaced through the span).
SPAN_PROMPTS = 1_000_000
#: A span shorter than this (s) is not registered: its pose is its neighbours'.
MIN_SPAN_S = 2.0
#: A scan that ends while the head moves: its last TAIL_S (s), at least MIN_TAIL_S after the
#: episode's start, are taken as a span (the head has most likely come to rest).
TAIL_S, MIN_TAIL_S = 2.0, 1.0
#: The drift's window (s): a line through the span's centroids within half of it each side.
DRIFT_SMOOTH_S = 10.0
#: The trace's step where the head drifts (s).
TRACE_STEP_S = 1.0
#: The fine centroid's interval (s) that times a step between two spans.
STEP_INTERVAL_S = 0.05
#: How far (s) before an episode's start and after its end a step is looked for (the episode
#: starts at the first interval that moved, which may hold the step's start).
STEP_REACH_S = 0.5
#: The centroid's least movement (mm) between two spans whose step is timed by it.
MIN_STEP_MM = 1.5


@dataclass(frozen=True)
class Span:
    """Where the head held still: [start_s, end_s), and its pose's six numbers."""

    start_s: float
    end_s: float
    params: np.ndarray


def still_spans(episodes: list[Episode], end_s: float, interval_s: float = 0.5
                ) -> list[tuple[float, float]]:
    """The spans between the episodes of a scan ending at ``end_s``; an episode still open at
    the end leaves its last :data:`TAIL_S` as one (when that is :data:`MIN_TAIL_S` or more)."""
    spans, t = [], 0.0
    for e in episodes:
        spans.append((t, e.start_s))
        t = e.end_s if e.end_s is not None else end_s
    spans.append((t, end_s))
    spans = [(a, b) for a, b in spans if b - a >= MIN_SPAN_S or a == 0.0]
    if episodes and (episodes[-1].end_s is None or episodes[-1].end_s >= end_s - 1e-9):
        tail = max(episodes[-1].start_s + interval_s, end_s - TAIL_S)
        if end_s - tail >= MIN_TAIL_S:
            spans.append((tail, end_s))
    return [(a, b) for a, b in spans if b > a]


def span_image(coinc: np.ndarray, scanner: Scanner) -> np.ndarray:
    """A quick image of a span's prompts (``coinc``: its coincidences; counts, on the 4 mm
    grid)."""
    picked = np.flatnonzero(coinc["delayed"] == 0)
    if picked.size > SPAN_PROMPTS:
        picked = picked[np.linspace(0, picked.size - 1, SPAN_PROMPTS).astype(np.int64)]
    mine = coinc[picked]
    grid = default_grid(scanner, SPAN_VOXEL_MM)
    return np.asarray(lm_osem(mine, scanner, grid, iterations=2, subsets=4).array)


def estimate_trace(coinc: np.ndarray, scanner: Scanner, end_s: float,
                   say: Callable[[str], None] | None = None,
                   signal: MotionSignal | None = None) -> MotionTrace:
    """The pose over the scan (``end_s`` its length, s), the first still span at rest
    (``signal``: the prompts' motion signal where it is at hand)."""
    signal = motion_signal(coinc, scanner) if signal is None else signal
    episodes = find_episodes(signal)
    grid = default_grid(scanner, SPAN_VOXEL_MM)
    spans: list[Span] = []
    reference: np.ndarray | None = None
    bounds = still_spans(episodes, end_s, signal.interval_s)
    picks = events_between(np.ascontiguousarray(coinc["t"]),
                           [(round(a * 1e12), round(b * 1e12)) for a, b in bounds])
    for (start, end), pick in zip(bounds, picks, strict=True):
        image = span_image(coinc[pick], scanner)
        if reference is None:
            reference, params = image, np.zeros(6)
        else:
            params = register(reference, image, grid, spans[-1].params)
        spans.append(Span(start, end, params))
        if say is not None:
            say(f"span {start:.1f}-{end:.1f} s: shift {np.round(params[:3], 2).tolist()} mm, "
                f"turn {np.round(params[3:], 2).tolist()} deg")
    fine = motion_signal(coinc, scanner, STEP_INTERVAL_S) if len(spans) > 1 else signal
    return MotionTrace(_rows(spans, signal, fine), "estimated from the list-mode")


def _rows(spans: list[Span], signal: MotionSignal, fine: MotionSignal) -> np.ndarray:
    """Rows of the spans' poses with each second's drift; between two spans, a step at the
    time the fine centroid says (:func:`step_time`), else a line through the episode."""
    drifts = [Drift.of(signal, span) for span in spans]
    bounds = [[span.start_s, span.end_s] for span in spans]
    for k in range(len(spans) - 1):
        at = step_time(fine, spans[k], spans[k + 1], drifts[k], drifts[k + 1])
        if at is not None:
            bounds[k][1] = at - fine.interval_s / 2
            bounds[k + 1][0] = at + fine.interval_s / 2
    rows = []
    for span, drift, (start, end) in zip(spans, drifts, bounds, strict=True):
        times = np.arange(start, end, TRACE_STEP_S)
        times = np.append(times, end) if times[-1] < end else times
        for t in times:
            rows.append([t, *(span.params[:3] + drift.at(t)), *span.params[3:]])
    return np.array(rows)


@dataclass(frozen=True)
class Drift:
    """A span's centroid over time: its departure from the span's mean at any time, a local
    line through the centroid within :data:`DRIFT_SMOOTH_S` (no lag at the span's ends)."""

    t_s: np.ndarray
    centroid_mm: np.ndarray
    weights: np.ndarray
    mean_mm: np.ndarray

    @classmethod
    def of(cls, signal: MotionSignal, span: Span) -> Drift:
        mid, centroid = signal.t_s, signal.centroid_mm
        inside = ((mid > span.start_s) & (mid < span.end_s)
                  & np.all(np.isfinite(centroid), axis=1) & (signal.counts > 0))
        t, c, w = mid[inside], centroid[inside], signal.counts[inside]
        mean = np.average(c, axis=0, weights=w) if t.size else np.zeros(3)
        return cls(t, c, w, mean)

    def at(self, t_s: float) -> np.ndarray:
        """The centroid's departure (mm, 3) from the span's mean at ``t_s``."""
        if self.t_s.size < 2:
            return np.zeros(3)
        near = np.abs(self.t_s - t_s) <= DRIFT_SMOOTH_S / 2
        if np.count_nonzero(near) < 2:
            near = np.argsort(np.abs(self.t_s - t_s))[:2]
        t, c, w = self.t_s[near], self.centroid_mm[near], self.weights[near]
        t0 = np.average(t, weights=w)
        spread = np.sum(w * (t - t0) ** 2)
        level = np.average(c, axis=0, weights=w)
        slope = (np.sum((w * (t - t0))[:, None] * (c - level), axis=0) / spread if spread > 0
                 else np.zeros(3))
        return level + slope * (t_s - t0) - self.mean_mm


def step_time(fine: MotionSignal, before: Span, after: Span, drift_before: Drift,
              drift_after: Drift) -> float | None:
    """When the head moved from ``before`` to ``after`` (s): the change point of the fine
    centroid's progress between the two spans' centroids, searched from :data:`STEP_REACH_S`
    before the episode to as long after; None where the centroid moved less than
    :data:`MIN_STEP_MM` (a turn about it: the pose then goes linearly through the episode)."""
    lo, hi = before.end_s - STEP_REACH_S, after.start_s + STEP_REACH_S
    start = drift_before.mean_mm + drift_before.at(lo)
    step = drift_after.mean_mm + drift_after.at(hi) - start
    size = float(np.linalg.norm(step))
    mid, centroid = fine.t_s, fine.centroid_mm
    inside = (mid > max(lo, before.start_s)) & (mid < min(hi, after.end_s)) & (fine.counts > 0)
    if size < MIN_STEP_MM or np.count_nonzero(inside) < 2:
        return None
    progress = (centroid[inside] - start) @ step / size ** 2
    w = fine.counts[inside]
    # cost of a change after interval j: the ones before at 0, the ones after at 1
    before_cost = np.cumsum(w * progress ** 2)
    after_cost = np.cumsum((w * (1.0 - progress) ** 2)[::-1])[::-1]
    cost = before_cost[:-1] + after_cost[1:]
    j = int(np.argmin(cost))
    return float(mid[inside][j] + fine.interval_s / 2)
