"""Perfusion scores of a polar map against normal limits: each segment's 0-4 score, the summed
stress (or rest) score, the total perfusion deficit and the abnormal coronary territories.

As QPS-style packages do: a sample under its lower normal limit (:data:`THRESHOLD_SD` spreads
under the normal mean; the spread its segment's, :mod:`recon.spect.normals`) is hypoperfused,
with a severity on a continuous scale from 0 at that limit to 4 at no counts at all (absent
uptake); the total perfusion deficit (TPD) is the samples' summed severity over 4 per sample,
in percent of the myocardium (extent and severity in one number). A segment's score is its
samples' mean severity, rounded (0 normal, 1 mildly, 2 moderately, 3 severely reduced, 4
absent); the summed score (SSS at stress, SRS at rest) adds the 17, and the summed difference
score (SDS) adds each segment's stress score over its rest score. A territory is abnormal when
its segments' scores add up to :data:`TERRITORY_SUM` or more: one moderately reduced segment, or
two mildly reduced ones side by side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emulator.population.heart import TERRITORIES
from recon.spect.normals import NormalLimits
from recon.spect.polarmap import PolarMap, segment_means

#: Spreads of the normals under their mean where a sample becomes hypoperfused.
THRESHOLD_SD = 3.0
#: A territory is abnormal when its segments' scores add up to this or more.
TERRITORY_SUM = 2


@dataclass(frozen=True)
class Scores:
    """A polar map's scores against one database (``limits``, its words)."""

    limits: str
    segment_scores: tuple[int, ...]
    tpd_percent: float
    territories: tuple[str, ...]

    @property
    def summed_score(self) -> int:
        return int(sum(self.segment_scores))

    @property
    def abnormal_segments(self) -> list[int]:
        return [i + 1 for i, s in enumerate(self.segment_scores) if s > 0]

    def to_json(self) -> dict:
        return {"limits": self.limits, "segment_scores": list(self.segment_scores),
                "summed_score": self.summed_score, "tpd_percent": round(self.tpd_percent, 1),
                "abnormal_segments": self.abnormal_segments,
                "abnormal_territories": list(self.territories)}


def severity(pm: PolarMap, limits: NormalLimits, threshold_sd: float = THRESHOLD_SD
             ) -> np.ndarray:
    """Each sample's severity (0 normal .. 4 absent uptake) under the lower limit
    ``threshold_sd`` spreads under the normal mean."""
    lower = np.maximum(limits.lower_percent(threshold_sd), 1e-6)
    value = pm.samples_percent
    return np.clip(4.0 * (lower - value) / lower, 0.0, 4.0)


def score(pm: PolarMap, limits: NormalLimits, threshold_sd: float = THRESHOLD_SD) -> Scores:
    """The scores of ``pm`` (with samples) against ``limits``."""
    sev = severity(pm, limits, threshold_sd)
    seg = pm.sample_segments
    mean = segment_means(sev, seg)
    scores = tuple(int(v) for v in np.clip(np.floor(mean + 0.5), 0, 4))
    territories = tuple(name for name, segs in TERRITORIES.items()
                        if sum(scores[s - 1] for s in segs) >= TERRITORY_SUM)
    return Scores(limits.label, scores, float(100.0 * sev.sum() / (4.0 * sev.size)),
                  territories)


def summed_difference(stress: Scores, rest: Scores) -> int:
    """SDS: each segment's stress score over its rest score, added (ischaemia's extent)."""
    return int(sum(max(0, s - r) for s, r in zip(stress.segment_scores, rest.segment_scores,
                                                  strict=True)))


def score_by_sex(pm: PolarMap, limits: dict[str, NormalLimits],
                 sex: str | None) -> dict:
    """The report's scores: against the patient's sex's limits, or without a sex against both
    (the territories both call abnormal are the scan's; those only one calls are named
    ``equivocal_territories``)."""
    if sex is not None:
        return {"sex": sex, **score(pm, limits[sex]).to_json()}
    both = {s: score(pm, x) for s, x in sorted(limits.items())}
    called = [set(x.territories) for x in both.values()]
    sure = set.intersection(*called)
    segments = set.intersection(*(set(x.abnormal_segments) for x in both.values()))
    return {"sex": None, "note": "the study has no sex: scored against both sexes' limits",
            "abnormal_segments": sorted(segments), "abnormal_territories": sorted(sure),
            "equivocal_territories": sorted(set.union(*called) - sure),
            "by_sex": {s: x.to_json() for s, x in both.items()}}
