"""Regions of a dynamic image as voxel masks: an emulated phantom's, a label image's or spheres.

An emulated kinetic phantom gives its tissue classes (``grey_matter``, ``white_matter``,
``blood``, ...), any other phantom its named regions with activity, each where it is visible
once painted. A
label image is a NIfTI on the image's grid (integer labels; names ``label_<n>``, or from a
``NAME=N`` list). A sphere is ``NAME:X,Y,Z,R`` in scanner mm. ``erode_mm`` keeps only the voxels
at least that far inside a region (away from what spills in across its edge).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from infra.errors import UserError

_SPHERE = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*:\s*([-0-9.eE+]+)\s*,\s*([-0-9.eE+]+)\s*,"
                     r"\s*([-0-9.eE+]+)\s*,\s*([0-9.eE+]+)\s*$")


def label_names(text: str | None) -> dict[int, str]:
    """``NAME=N,...`` as {N: NAME}."""
    names = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, _, value = part.partition("=")
        if not value.strip().isdigit():
            raise UserError(f"--label-names: {part.strip()!r} is not NAME=N")
        names[int(value)] = name.strip()
    return names


def phantom_regions(phantom: Any, grid: Any) -> dict[str, np.ndarray]:
    """An emulated phantom's regions (a kinetic one: its tissue classes; a voxel phantom: its
    labels with activity) on ``grid``."""
    labels, names = phantom.label_map(grid)
    if phantom.kinetics is not None:
        groups = [(c.name, set(c.regions)) for c in phantom.kinetics.classes]
    elif phantom.volume is not None:
        v = phantom.volume
        hot = {n for k, n in names.items() if v.labels is not None
               and np.any(v.activity[v.labels == k] > 0)}
        groups = [(n, {n}) for n in names.values() if n in hot]
    else:
        groups = [(r.name, {r.name}) for r in phantom.parts if r.activity]
    if not groups:
        raise UserError(f"phantom '{phantom.name}' has no regions with activity: give regions "
                        "(--labels or --sphere)")
    label_of = {n: k for k, n in names.items()}
    out = {}
    for name, members in groups:
        mask = np.isin(labels, [label_of[m] for m in members if m in label_of])
        if mask.any():
            out[name] = mask
    return out


def label_regions(path: str | Path, shape: tuple[int, ...], names: dict[int, str] | None = None
                  ) -> dict[str, np.ndarray]:
    """The regions of a label NIfTI on the image's grid (``shape``)."""
    import nibabel as nib

    try:
        labels = np.rint(np.asarray(nib.load(str(path)).get_fdata())).astype(np.int64)
    except (OSError, ValueError, nib.filebasedimages.ImageFileError) as exc:
        raise UserError(f"cannot read the label image {path}: {exc}") from None
    if labels.shape[:3] != tuple(shape[:3]):
        raise UserError(f"the label image {path} is {labels.shape[:3]}, the dynamic image "
                        f"{tuple(shape[:3])}: resample it to the image's grid first")
    names = names or {}
    return {names.get(int(v), f"label_{int(v)}"): labels[..., 0] == v if labels.ndim == 4
            else labels == v for v in np.unique(labels) if v > 0}


def sphere_regions(specs: list[str], grid: Any) -> dict[str, np.ndarray]:
    """Spheres ``NAME:X,Y,Z,R`` (scanner mm) on ``grid``."""
    x, y, z = grid.centres_mm()
    out = {}
    for spec in specs:
        m = _SPHERE.match(spec)
        if m is None:
            raise UserError(f"sphere {spec!r}: give NAME:X,Y,Z,R in mm (e.g. putamen:24,-2,0,8)")
        name, cx, cy, cz, r = m.group(1), *map(float, m.groups()[1:])
        mask = (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= r * r
        if not mask.any():
            raise UserError(f"sphere {name} holds no voxel of the image (radius {r:g} mm)")
        out[name] = np.broadcast_to(mask, grid.shape).copy()
    return out


def eroded(mask: np.ndarray, erode_mm: float, voxel_mm: tuple[float, float, float]
           ) -> np.ndarray:
    """The voxels of ``mask`` whose neighbours within ``erode_mm`` along every axis (a cube)
    are in it too: at least ``erode_mm`` inside it."""
    out = mask.copy()
    for axis in range(3):
        for _ in range(round(erode_mm / voxel_mm[axis])):
            inner = out.copy()
            inner[tuple(slice(1, None) if a == axis else slice(None) for a in range(3))] &= \
                out[tuple(slice(None, -1) if a == axis else slice(None) for a in range(3))]
            inner[tuple(slice(None, -1) if a == axis else slice(None) for a in range(3))] &= \
                out[tuple(slice(1, None) if a == axis else slice(None) for a in range(3))]
            inner[tuple(0 if a == axis else slice(None) for a in range(3))] = False
            inner[tuple(-1 if a == axis else slice(None) for a in range(3))] = False
            out = inner
    return out
