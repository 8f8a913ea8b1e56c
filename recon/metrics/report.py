"""Figures of merit of an image of a phantom of known geometry (``petdaq recon --report``).

The phantom is anything with ``regions()`` -> {name: part} (``emulator.phantoms.Phantom``): parts
with ``position_mm`` are point sources; parts with a ``shape`` (``centre_mm``, ``semi_axes_mm``,
``rotation`` whose third row is the local axis) and an ``activity`` are volumes. What is reported
depends on what the phantom holds:

- point sources: NEMA NU 2 FWHM / FWTM at each;
- ``sphere_*`` volumes in a ``background``: NEMA NU 2 hot contrast per sphere, background
  variability (background ROIs of each sphere's size on the spheres' circle, 60 degrees apart,
  one sphere diameter plus 10 mm above and below the spheres' plane), and the residual in a cold
  ``lung_insert`` (cold contrast on a ROI of 60 % of its diameter);
- a ``myocardium`` (with a ``blood_pool`` cavity): the AHA 17-segment polar map, written as
  ``polar_map.png`` next to the report when a folder is given;
- every phantom's regions (a voxel phantom's labels): each one's mean in the image
  (``regions``), on the voxels whose centre it holds;
- a single uniform ``cylinder``: NU 4 uniformity in its central 75 % (diameter and length);
- the NU 4 image-quality phantom (``nu4-iq``): the NU 4-2008 table, its regions found in the
  image (:mod:`recon.metrics.nu4`), so that a run that names no phantom gets it too
  (:func:`image_report`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from infra.errors import UserError
from recon.grid import Image
from recon.metrics import figures, nu4
from recon.spect.cardiac import phantom_axis
from recon.spect.reading import map_of, segments_report


def phantom_report(image: Image, phantom: Any, folder: str | Path | None = None
                   ) -> dict[str, Any]:
    """A JSON-ready dict of the figures that ``phantom``'s geometry allows."""
    name = getattr(phantom, "name", "")
    if name in FOUND_IN_IMAGE:
        return image_report(image, name, folder, phantom)
    regions = phantom.regions()
    out: dict[str, Any] = {"phantom": name, "units": image.units}
    points = {n: r for n, r in regions.items() if hasattr(r, "position_mm")}
    if points:
        out["resolution"] = {}
        for name, p in points.items():
            res = figures.point_resolution(image, p.position_mm)
            out["resolution"][name] = {"position_mm": list(p.position_mm),
                                       "peak_mm": list(res.peak_mm),
                                       "fwhm_mm": list(res.fwhm_mm),
                                       "fwtm_mm": list(res.fwtm_mm)}
    spheres = {n: r for n, r in regions.items() if n.startswith("sphere_")
               and getattr(r, "activity", None) and hasattr(r, "shape")}
    if spheres and hasattr(regions.get("background"), "shape"):
        out["image_quality"] = _image_quality(image, spheres, regions)
    if "myocardium" in regions:
        out["polar_map"] = _polar_map(image, phantom, folder)
    means = region_means(image, phantom)
    if means:
        out["regions"] = means
    if set(regions) == {"cylinder"} and hasattr(regions["cylinder"], "shape"):
        cyl = regions["cylinder"].shape
        a = cyl.semi_axes_mm
        out["uniformity"] = figures.uniformity(image, cyl.centre_mm, 1.5 * min(a[0], a[1]),
                                               1.5 * a[2])
    return out


def _nu4(image: Image, folder: str | Path | None, phantom: Any = None) -> dict[str, Any]:
    air = phantom.regions().get("air_insert") if phantom is not None else None
    hint = tuple(air.shape.centre_mm[:2]) if air is not None else None
    return {"nu4_image_quality": nu4.report(image, folder, hint)}


def reconstruction_of(image: Image) -> dict[str, Any]:
    """How ``image`` was reconstructed, as its report states it (the standards ask for the
    algorithm, iterations, subsets, voxel and corrections next to the figures)."""
    meta = image.meta
    out: dict[str, Any] = {"algorithm": "LM-OSEM", "voxel_mm": [float(v) for v in image.voxel_mm]}
    for key in ("iterations", "subsets", "events", "tof", "randoms", "attenuation",
                "attenuation_method", "scatter", "normalization", "normalization_table"):
        if key in meta:
            out["prompts" if key == "events" else key] = meta[key]
    return out


def reconstruction_line(record: dict[str, Any]) -> str:
    """:func:`reconstruction_of` in one line of text."""
    corrections = [name for name in ("tof", "attenuation", "scatter") if record.get(name)]
    if record.get("attenuation") and record.get("attenuation_method"):
        corrections[corrections.index("attenuation")] = (
            f"attenuation ({record['attenuation_method']})")
    if record.get("randoms", "none") != "none":
        corrections.append("randoms")
    if record.get("normalization", "none") != "none":
        corrections.append(f"normalization ({record['normalization']})")
    voxel = "x".join(f"{v:g}" for v in record["voxel_mm"])
    its, subsets = record.get("iterations", "?"), record.get("subsets", "?")
    return (f"{record['algorithm']} {its} iteration{'' if its == 1 else 's'} x {subsets} "
            f"subset{'' if subsets == 1 else 's'}, {voxel} mm voxels, "
            f"{', '.join(c.upper() if c == 'tof' else c for c in corrections) or 'no corrections'}"
            + (f"; {record['prompts']:,} prompts" if "prompts" in record else ""))


#: Phantoms whose figures need the image alone: their regions are found in it.
FOUND_IN_IMAGE = {"nu4-iq": _nu4}


def image_report(image: Image, phantom_name: str, folder: str | Path | None = None,
                 phantom: Any = None) -> dict[str, Any]:
    """The figures of a phantom found in the image (:data:`FOUND_IN_IMAGE`), for a run that
    need not name it (``phantom``: the emulated one, whose truth only names what was found)."""
    if phantom_name not in FOUND_IN_IMAGE:
        raise UserError(f"the figures of {phantom_name!r} need the run's phantom; found in the "
                        f"image alone: {', '.join(FOUND_IN_IMAGE)}")
    return {"phantom": phantom_name, "units": image.units,
            **FOUND_IN_IMAGE[phantom_name](image, folder, phantom)}


def _image_quality(image: Image, spheres: dict[str, Any], regions: dict[str, Any]
                   ) -> dict[str, Any]:
    bkg = regions["background"]
    centres = np.array([s.shape.centre_mm for s in spheres.values()])
    radius = float(np.mean(np.hypot(centres[:, 0], centres[:, 1])))
    z0 = float(np.mean(centres[:, 2]))
    dmax = max(2 * s.shape.semi_axes_mm[0] for s in spheres.values())
    background = figures.background_ring(radius, 6, (z0 - dmax - 10.0, z0 + dmax + 10.0))
    hot = [(s.shape.centre_mm, 2 * s.shape.semi_axes_mm[0]) for s in spheres.values()]
    cold = []
    if "lung_insert" in regions:
        lung = regions["lung_insert"].shape
        cold.append(((lung.centre_mm[0], lung.centre_mm[1], z0), 1.2 * lung.semi_axes_mm[0]))
    ratio = float(next(iter(spheres.values())).activity / bkg.activity)
    rows = figures.image_quality(image, hot, cold, background, ratio)
    return {"activity_ratio": ratio,
            "spheres": [{"diameter_mm": r.diameter_mm, "hot": r.hot, "contrast": r.contrast,
                         "background_variability": r.variability} for r in rows]}


def _polar_map(image: Image, phantom: Any, folder: str | Path | None) -> dict[str, Any]:
    """The polar map on the phantom's own axis (its PNG in ``folder`` when given)."""
    pm = map_of(image, phantom_axis(phantom))
    out = segments_report(pm)
    if folder is not None:
        out["png"] = str(pm.write_png(Path(folder) / "polar_map.png"))
    return out


def region_means(image: Image, phantom: Any) -> dict[str, dict[str, float]]:
    """Each region's mean in the image and its voxels: the voxels whose centre the region
    holds (:meth:`emulator.phantoms.Phantom.label_map`); none for a geometry without one."""
    if not hasattr(phantom, "label_map"):
        return {}
    labels, names = phantom.label_map(image.grid)
    out = {}
    for k, name in sorted(names.items()):
        inside = labels == k
        if inside.any():
            out[name] = {"mean": float(image.array[inside].mean()),
                         "voxels": int(inside.sum())}
    return out
