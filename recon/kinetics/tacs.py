"""Time-activity curves: each region's mean and standard deviation (Bq/mL) in every frame.

Times are the kinetic clock's minutes (an emulated kinetic run's model time) from TimeZero of
the BIDS sidecar (the injection when known).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from infra.atomic import replacing
from infra.errors import UserError

COLUMNS = ("region", "frame", "start_min", "end_min", "mid_min", "mean_bq_ml", "sd_bq_ml",
           "voxels")


@dataclass(frozen=True)
class Curves:
    """Frame times (min) and each region's curve."""

    start_min: np.ndarray
    duration_min: np.ndarray
    mean_bq_ml: dict[str, np.ndarray]
    sd_bq_ml: dict[str, np.ndarray]
    voxels: dict[str, int]

    @property
    def mid_min(self) -> np.ndarray:
        return self.start_min + self.duration_min / 2

    @property
    def end_min(self) -> np.ndarray:
        return self.start_min + self.duration_min

    def curve(self, region: str) -> np.ndarray:
        if region not in self.mean_bq_ml:
            raise UserError(f"no region {region!r}: the regions are "
                            f"{', '.join(self.mean_bq_ml) or 'none'}")
        return self.mean_bq_ml[region]


def frame_times_min(sidecar: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(start, duration) of every frame in minutes, from a BIDS-PET sidecar."""
    start = np.asarray(sidecar["FrameTimesStart"], np.float64) / 60.0
    duration = np.asarray(sidecar["FrameDuration"], np.float64) / 60.0
    return start, duration


def region_curves(frames: np.ndarray, sidecar: dict[str, Any], regions: dict[str, np.ndarray]
                  ) -> Curves:
    """The curves of ``regions`` (masks on the image's grid) in ``frames`` [x, y, z, frame]."""
    start, duration = frame_times_min(sidecar)
    if frames.shape[-1] != start.size:
        raise UserError(f"the dynamic image has {frames.shape[-1]} frames, its sidecar "
                        f"{start.size}")
    means, sds, voxels = {}, {}, {}
    for name, mask in regions.items():
        n = int(mask.sum())
        if n == 0:
            raise UserError(f"region {name} holds no voxel (eroded away?)")
        values = frames[mask]                      # (voxels, frames)
        means[name] = values.mean(axis=0, dtype=np.float64)
        sds[name] = values.std(axis=0, dtype=np.float64)
        voxels[name] = n
    return Curves(start, duration, means, sds, voxels)


def write_tacs(curves: Curves, path: Path) -> Path:
    """``tacs.csv``: one row per region and frame (:data:`COLUMNS`)."""
    with replacing(path) as tmp, tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for name in curves.mean_bq_ml:
            for k in range(curves.start_min.size):
                w.writerow([name, k + 1, f"{curves.start_min[k]:.6g}", f"{curves.end_min[k]:.6g}",
                            f"{curves.mid_min[k]:.6g}", f"{curves.mean_bq_ml[name][k]:.6g}",
                            f"{curves.sd_bq_ml[name][k]:.6g}", curves.voxels[name]])
    return path
