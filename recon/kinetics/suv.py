"""Standardised uptake values (body weight): concentration over injected activity per gram.

SUV = C [Bq/mL] / (A_inj [Bq] decayed to the scan's start / weight [g]), with the image
decay-corrected to the scan's start as every image of the product is; a tissue density of 1 g/mL.
The study must give the weight, the injected activity and its time: nothing is assumed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from infra.atomic import replacing
from recon.kinetics.tacs import Curves


def suv_scale(facts: Any) -> float:
    """The factor (g/Bq) that turns Bq/mL (decay-corrected to the scan's start) into SUV."""
    study = facts.study
    study.require("SUV", "weight_kg", "injected_mbq", "injection_time_utc")
    before_s = study.injection_before_s(facts.start_utc) if facts.start_utc else 0.0
    half_life = _half_life_s(facts.nuclide)
    decayed_bq = study.injected_mbq * 1e6 * (
        math.exp(-math.log(2.0) / half_life * before_s) if half_life else 1.0)
    return study.weight_kg * 1000.0 / decayed_bq


def _half_life_s(nuclide: str | None) -> float | None:
    if not nuclide:
        return None
    from hw import nuclides

    return nuclides.get(nuclide).half_life_s


def suv_outputs(frames: np.ndarray, sidecar: dict[str, Any], masks: dict[str, np.ndarray],
                facts: Any, curves: Curves, t_star_min: float, out: Path, img: Any
                ) -> tuple[list[dict[str, Any]], list[Path]]:
    """The SUV image (duration-weighted mean of the frames from t*, or the one frame of a
    static image) as ``suv.nii.gz`` and each region's SUVmean and SUVmax."""
    use = curves.mid_min >= t_star_min if curves.mid_min.size > 1 else np.ones(1, bool)
    if not use.any():
        use = np.zeros(curves.mid_min.size, bool)
        use[-1] = True                                # no frame after t*: the last one
    weights = curves.duration_min[use] / curves.duration_min[use].sum()
    suv = np.tensordot(frames[..., use], weights, axes=([3], [0])) * suv_scale(facts)
    path = out / "suv.nii.gz"
    image = nib.Nifti1Image(suv.astype(np.float32), img.affine)
    image.header.set_xyzt_units("mm", "sec")
    image.header["descrip"] = b"SUVbw g/mL"
    with replacing(path) as tmp:
        nib.save(image, tmp)
    window = f"{curves.start_min[use][0]:g}-{curves.end_min[use][-1]:g} min"
    rows = [{"region": name, "model": "suv", "SUVmean": f"{float(suv[m].mean()):.6g}",
             "SUVmax": f"{float(suv[m].max()):.6g}", "voxels": int(m.sum()), "window": window}
            for name, m in masks.items()]
    return rows, [path]
