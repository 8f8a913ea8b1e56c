"""A phantom written as a phantom file: its shapes as TOML, or its voxels as NIfTI files beside one.

A folder gets ``phantom.toml`` and, for voxels, ``activity.nii.gz`` (the phantom's concentration:
Bq/mL when it has its own total, else relative), ``density.nii.gz`` (water-equivalent g/mL),
``labels.nii.gz`` with the ``[labels]`` table, and ``truth.json`` when the phantom has a truth
(a shaped cardiac phantom's axis is worked out from its shapes). :func:`emulator.phantoms.io.files.read`
reads it back.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from emulator.phantoms.io.nifti import write_volume
from emulator.phantoms.model import LineSource, Phantom, Region
from emulator.phantoms.rasterize import VOXEL_MM, voxelized
from emulator.phantoms.truth import PhantomTruth, lv_axis_of
from emulator.phantoms.volume import VoxelVolume
from infra.atomic import replacing

TOML = "phantom.toml"


def _text(value: Any) -> str:
    """A TOML value: a string, a number, a list of numbers, a boolean."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    return repr(round(float(value), 6))


def _table(name: str, items: dict[str, Any], array: bool = False) -> list[str]:
    lines = [f"[[{name}]]" if array else f"[{name}]"]
    lines += [f"{k} = {_text(v)}" for k, v in items.items() if v is not None]
    return [*lines, ""]


def _write_text(path: Path, text: str) -> Path:
    with replacing(path) as tmp:
        tmp.write_text(text)
    return path


def angles_xyz(rotation: np.ndarray) -> tuple[float, float, float]:
    """The rotations about x, then y, then z (degrees) that turn a shape's axes to the rows of
    ``rotation`` (its scanner -> local map): R = rotation^T = Rz Ry Rx."""
    r = np.asarray(rotation).T
    ry = math.asin(float(np.clip(-r[2, 0], -1.0, 1.0)))
    rx = math.atan2(r[2, 1], r[2, 2])
    rz = math.atan2(r[1, 0], r[0, 0])
    return tuple(round(math.degrees(a), 9) for a in (rx, ry, rz))


def _region(r: Region, compartment: str | None) -> dict[str, Any]:
    s = r.shape
    a = [2.0 * v for v in s.semi_axes_mm]
    turned = not np.allclose(s.rotation, np.eye(3))
    out: dict[str, Any] = {"name": r.name}
    if s.kind == "ellipsoid" and not turned and np.allclose(a, a[0]):
        out |= {"shape": "sphere", "centre_mm": s.centre_mm, "diameter_mm": a[0]}
    elif s.kind == "ellipsoid":
        out |= {"shape": "ellipsoid", "centre_mm": s.centre_mm, "semi_axes_mm": s.semi_axes_mm}
    elif s.kind == "box":
        out |= {"shape": "box", "centre_mm": s.centre_mm, "size_mm": a}
    else:
        out |= {"shape": "cylinder", "centre_mm": s.centre_mm,
                "diameter_mm": a[0] if math.isclose(a[0], a[1]) else a[:2], "length_mm": a[2]}
    if turned and out["shape"] != "sphere":
        out["rotate_deg"] = angles_xyz(s.rotation)
    return out | {"activity": r.activity, "density": r.density, "compartment": compartment}


def _head(phantom: Phantom, truth: bool) -> list[str]:
    return _table("phantom", {
        "name": phantom.name, "description": phantom.description,
        "body_part": phantom.body_part,
        "activity_units": "Bq/mL" if phantom.activity_mbq is not None else None,
        "truth": "truth.json" if truth else None})


def _sources(phantom: Phantom) -> list[str]:
    lines = []
    for s in phantom.sources:
        where = ({"start_mm": s.start_mm, "stop_mm": s.stop_mm} if isinstance(s, LineSource)
                 else {"position_mm": s.position_mm})
        amount = ({"activity_mbq": s.fraction * phantom.activity_mbq}
                  if phantom.activity_mbq is not None else {"fraction": s.fraction})
        lines += _table("sources", {"name": s.name, **where, **amount}, array=True)
    return lines


def _kinetics(phantom: Phantom) -> tuple[list[str], dict[str, str]]:
    if phantom.kinetics is None:
        return [], {}
    compartment = {r: c.name for c in phantom.kinetics.classes for r in c.regions}
    lines = _table("kinetics", {"input": "feng"})
    for c in phantom.kinetics.classes:
        m = c.model
        lines += _table(f"kinetics.compartments.{c.name}", {"plasma": True} if m is None else
                        {"K1": m.K1, "k2": m.k2, "k3": m.k3, "k4": m.k4})
    return lines, compartment


def truth_of(phantom: Phantom) -> PhantomTruth | None:
    """The phantom's truth, or a shaped heart's axis as one."""
    if phantom.truth is not None:
        return phantom.truth
    axis = lv_axis_of(phantom.regions())
    return PhantomTruth(lv_axis=axis) if axis is not None else None


def write_shapes(phantom: Phantom, folder: Path) -> Path:
    """``phantom`` (shaped) as ``folder/phantom.toml``."""
    folder.mkdir(parents=True, exist_ok=True)
    truth = truth_of(phantom)
    kinetics, compartment = _kinetics(phantom)
    lines = [f"# {phantom.name}: written by petdaq phantoms write (shapes)", ""]
    lines += _head(phantom, truth is not None)
    for r in phantom.parts:
        lines += _table("regions", _region(r, compartment.get(r.name)), array=True)
    lines += _sources(phantom) + kinetics
    if truth is not None:
        _write_text(folder / "truth.json", truth.json_text())
    return _write_text(folder / TOML, "\n".join(lines))


def write_voxels(phantom: Phantom, folder: Path, voxel_mm: float = VOXEL_MM) -> Path:
    """``phantom`` as voxels (a shaped one drawn on ``voxel_mm`` voxels) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    truth = truth_of(phantom)
    v = voxelized(phantom, voxel_mm).volume
    write_volume(folder / "activity.nii.gz", v.activity, v.affine)
    write_grid(folder, v)
    if truth is not None:
        _write_text(folder / "truth.json", truth.json_text())
    return write_voxel_toml(folder / TOML, phantom, "activity.nii.gz", v)


def write_grid(folder: Path, volume: VoxelVolume) -> None:
    """The density and labels that phantom files of one grid share."""
    write_volume(folder / "density.nii.gz", volume.density, volume.affine)
    if volume.labels is not None:
        write_volume(folder / "labels.nii.gz", volume.labels.astype(np.int16), volume.affine)


def write_voxel_toml(path: Path, phantom: Phantom, activity_file: str, volume: VoxelVolume,
                     truth: bool | None = None) -> Path:
    """The phantom file of voxels whose activity is ``activity_file`` and whose density and
    labels :func:`write_grid` wrote beside it; ``truth``: whether truth.json is there (default:
    whether the phantom has one)."""
    truth = truth_of(phantom) is not None if truth is None else truth
    lines = [f"# {phantom.name}: written by petdaq phantoms (voxels)", ""]
    lines += _head(phantom, truth)
    lines += _table("voxels", {"activity": activity_file, "density": "density.nii.gz",
                               "labels": "labels.nii.gz" if volume.labels is not None else None})
    if volume.labels is not None:
        lines += _table("labels", {})[:1] + [f'{k} = {_text(n)}'
                                             for k, n in sorted(volume.label_names.items())] + [""]
    lines += _sources(phantom)
    return _write_text(path, "\n".join(lines))
