"""The head's pose from the list-mode alone: still spans registered to the first, the drift from the centroid.

The motion signal's episodes (:mod:`recon.motion.episodes`) cut the scan into spans where the
head held still. Each span's prompts are reconstructed quickly (TOF OSEM on 4 mm voxels, without
attenuation: the attenuation moves with the head, so the images differ only by the pose) and
registered to the first span's image (:mod:`recon.motion.register`): the span's pose. Within a
span, a slow drift shows in the centroid: each second's centroid's departure from the span's
mean is added to the span's shift (smoothed over :data:`DRIFT_SMOOTH_S`). Through an episode
the pose goes linearly from the span before to the span after. The result is a trace in the
emulator's columns (:mod:`hw.motion`), the first span's position the rest pose.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hw.motion import MotionTrace
from hw.scanner import Scanner
from recon.grid import default_grid
from recon.motion.episodes import Episode, find_episodes
from recon.motion.register import register
from recon.motion.signal import MotionSignal, motion_signal
from recon.pet.osem import lm_osem

#: The span images' voxel (mm).
SPAN_VOXEL_MM = 4.0
#: Prompts a span's image takes at most (evenly spaced through the span).
SPAN_PROMPTS = 2_000_000
#: A span shorter than this (s) is not registered: its pose is its neighbours'.
MIN_SPAN_S = 2.0
#: A scan that ends while the head moves: its last TAIL_S (s), at least MIN_TAIL_S after the
#: episode's start, are taken as a span (the head has most likely come to rest).
TAIL_S, MIN_TAIL_S = 2.0, 1.0
#: The drift's smoothing (s, a running mean of the centroid within a span).
DRIFT_SMOOTH_S = 10.0
#: The trace's step where the head drifts (s).
TRACE_STEP_S = 1.0


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


def span_image(coinc: np.ndarray, scanner: Scanner, start_s: float, end_s: float
               ) -> np.ndarray:
    """A quick image of the span's prompts (counts, on the 4 mm grid)."""
    t = coinc["t"]
    mine = coinc[(coinc["delayed"] == 0) & (t >= round(start_s * 1e12)) & (t < round(end_s * 1e12))]
    if mine.size > SPAN_PROMPTS:
        mine = mine[np.linspace(0, mine.size - 1, SPAN_PROMPTS).astype(np.int64)]
    grid = default_grid(scanner, SPAN_VOXEL_MM)
    return np.asarray(lm_osem(mine, scanner, grid, iterations=2, subsets=4).array)


def estimate_trace(coinc: np.ndarray, scanner: Scanner, end_s: float,
                   say: Callable[[str], None] | None = None) -> MotionTrace:
    """The pose over the scan (``end_s`` its length, s), the first still span at rest."""
    signal = motion_signal(coinc, scanner)
    episodes = find_episodes(signal)
    grid = default_grid(scanner, SPAN_VOXEL_MM)
    spans: list[Span] = []
    reference: np.ndarray | None = None
    for start, end in still_spans(episodes, end_s, signal.interval_s):
        image = span_image(coinc, scanner, start, end)
        if reference is None:
            reference, params = image, np.zeros(6)
        else:
            params = register(reference, image, grid, spans[-1].params)
        spans.append(Span(start, end, params))
        if say is not None:
            say(f"span {start:.1f}-{end:.1f} s: shift {np.round(params[:3], 2).tolist()} mm, "
                f"turn {np.round(params[3:], 2).tolist()} deg")
    return MotionTrace(_rows(spans, signal), "estimated from the list-mode")


def _rows(spans: list[Span], signal: MotionSignal) -> np.ndarray:
    """Rows of the spans' poses with each second's drift, linear through the episodes."""
    centroid = signal.centroid_mm
    rows = []
    for span in spans:
        times = np.arange(span.start_s, span.end_s, TRACE_STEP_S)
        times = np.append(times, span.end_s) if times[-1] < span.end_s else times
        drift = _drift(signal, centroid, span, times)
        for t, d in zip(times, drift, strict=True):
            rows.append([t, *(span.params[:3] + d), *span.params[3:]])
    return np.array(rows)


def _drift(signal: MotionSignal, centroid: np.ndarray, span: Span, times: np.ndarray
           ) -> np.ndarray:
    """(len(times), 3) the span's centroid's smoothed departure from its mean at ``times``."""
    mid = signal.t_s
    inside = (mid > span.start_s) & (mid < span.end_s) & np.all(np.isfinite(centroid), axis=1)
    if np.count_nonzero(inside) < 2:
        return np.zeros((times.size, 3))
    t, c = mid[inside], centroid[inside]
    weights = signal.counts[inside]
    mean = np.average(c, axis=0, weights=weights)
    out = np.empty((times.size, 3))
    for k, at in enumerate(times):
        near = np.abs(t - at) <= DRIFT_SMOOTH_S / 2
        if not np.any(near):
            near = np.abs(t - at) == np.abs(t - at).min()
        out[k] = np.average(c[near], axis=0, weights=weights[near]) - mean
    return out
