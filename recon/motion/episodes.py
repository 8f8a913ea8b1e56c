"""Motion episodes in the growing signal: when the centroid leaves its settled place, where it settles again.

Each new interval's centroid is compared with the settled reference (the median of the last
:data:`REFERENCE_INTERVALS` settled intervals): it is moving when it is more than the alert
distance away, :data:`ALERT_MM` or :data:`NOISE_SIGMAS` times the centroid's noise in an
interval (the counts' statistics: the points' spread over the square root of their number),
whichever is larger. An episode ends once :data:`SETTLE_INTERVALS` intervals agree with each
other within half that distance; they are then the new reference, and the episode's size is how
far the reference moved. A slow drift moves the reference with it and raises no alert; a scan
starts settled after its first intervals. The same detector runs live (the DAQ) and offline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recon.motion.signal import MotionSignal

#: The smallest centroid movement that is an alert (mm).
ALERT_MM = 1.2
#: The alert distance is at least this many times the noise of a 3-D centroid in an interval
#: (sqrt(trace of the points' covariance / prompts)): a still scan's 3-D Gaussian noise passes
#: it once in about 1e9 intervals.
NOISE_SIGMAS = 4.0
#: Settled intervals whose median is the reference.
REFERENCE_INTERVALS = 8
#: Consecutive intervals that agree: the head has settled.
SETTLE_INTERVALS = 4
#: Intervals with fewer prompts than this are skipped (no centroid worth comparing).
MIN_PROMPTS = 200


@dataclass(frozen=True)
class Episode:
    """A movement: from ``start_s`` to ``end_s`` (s; ``end_s`` None while still moving), the
    centroid moved by ``size_mm`` (``shift_mm`` along x, y, z)."""

    start_s: float
    end_s: float | None
    size_mm: float
    shift_mm: tuple[float, float, float]

    def to_json(self) -> dict[str, object]:
        return {"start_s": round(self.start_s, 3),
                "end_s": None if self.end_s is None else round(self.end_s, 3),
                "size_mm": round(self.size_mm, 2),
                "shift_mm": [round(v, 2) for v in self.shift_mm]}


@dataclass
class Detector:
    """Takes the signal interval by interval (:meth:`update` with the signal so far)."""

    alert_mm: float = ALERT_MM
    episodes: list[Episode] = field(default_factory=list)
    displacement_mm: list[float] = field(default_factory=list)
    """Each interval's distance from the reference (NaN: too few prompts)."""
    _seen: int = 0
    _settled: list[np.ndarray] = field(default_factory=list)
    _moving_since: float | None = None
    _candidates: list[np.ndarray] = field(default_factory=list)
    _before: np.ndarray | None = None

    @property
    def moving(self) -> bool:
        return self._moving_since is not None

    def threshold_mm(self, spread_mm2: np.ndarray, count: float) -> float:
        """The alert distance for an interval of ``count`` prompts of this spread."""
        noise = float(np.sqrt(max(spread_mm2[:3].sum(), 0.0) / max(count, 1.0)))
        return max(self.alert_mm, NOISE_SIGMAS * noise)

    def update(self, signal: MotionSignal) -> list[Episode]:
        """Take the intervals of ``signal`` not seen yet; the episodes that started or ended
        in them (an ended one with its ``end_s``)."""
        news: list[Episode] = []
        centroids, spreads = signal.centroid_mm, signal.spread_mm
        for k in range(self._seen, signal.sums.shape[0]):
            t0 = signal.t0_s + k * signal.interval_s
            if signal.counts[k] < MIN_PROMPTS:
                self.displacement_mm.append(float("nan"))
                continue
            news += self._step(t0, signal.interval_s, centroids[k],
                               self.threshold_mm(spreads[k], signal.counts[k]))
        self._seen = signal.sums.shape[0]
        return news

    def _reference(self) -> np.ndarray | None:
        if len(self._settled) < SETTLE_INTERVALS:
            return None
        return np.median(np.array(self._settled[-REFERENCE_INTERVALS:]), axis=0)

    def _step(self, t0: float, dt: float, c: np.ndarray, threshold: float) -> list[Episode]:
        ref = self._reference()
        distance = float(np.linalg.norm(c - ref)) if ref is not None else 0.0
        self.displacement_mm.append(distance)
        if not self.moving:
            if ref is None or distance <= threshold:
                self._settled.append(c)
                return []
            self._moving_since, self._before, self._candidates = t0, ref, [c]
            started = Episode(t0, None, distance, tuple(float(v) for v in c - ref))
            return [started]
        self._candidates = [*self._candidates[-(SETTLE_INTERVALS - 1):], c]
        window = np.array(self._candidates)
        if len(window) < SETTLE_INTERVALS or np.linalg.norm(
                window - np.median(window, axis=0), axis=1).max() > threshold / 2:
            return []
        settled = np.median(window, axis=0)
        shift = settled - self._before
        end = t0 - (SETTLE_INTERVALS - 1) * dt      # the first settled interval's start
        episode = Episode(self._moving_since, max(end, self._moving_since + dt),
                          float(np.linalg.norm(shift)), tuple(float(v) for v in shift))
        self.episodes.append(episode)
        self._settled, self._moving_since, self._candidates = list(window), None, []
        return [episode]

    def finish(self, end_s: float) -> list[Episode]:
        """The episodes, one still moving at the scan's end ``end_s`` included as ended then."""
        if not self.moving:
            return list(self.episodes)
        last = self._candidates[-1] - self._before
        return [*self.episodes, Episode(self._moving_since, end_s, float(np.linalg.norm(last)),
                                        tuple(float(v) for v in last))]


def find_episodes(signal: MotionSignal, alert_mm: float = ALERT_MM) -> list[Episode]:
    """The episodes of a whole signal."""
    detector = Detector(alert_mm)
    detector.update(signal)
    return detector.finish(signal.t0_s + signal.sums.shape[0] * signal.interval_s)
