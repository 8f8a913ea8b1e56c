"""A population of virtual patients written as voxel phantom files, with ``population.csv``.

Each patient is a folder ``DIR/<body>-NNN/``: the density and labels (NIfTI) shared by its scans,
one activity volume and phantom file per scan (a torso: ``phantom.toml`` at stress and
``rest.toml``; a head: ``phantom.toml`` with FDG and ``amyloid.toml``) and ``truth.json``. Its
shapes are drawn on the voxels with the means of 2^3 points a voxel (partial volume); a torso's
defect is taken out of its myocardium's uptake voxel by voxel, by the share of 3^3 points of the
voxel in it. ``population.csv`` holds each patient's drawn parameters and what follows from them.
The patients are drawn on every core; each depends only on (n, seed, its number).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from emulator.phantoms.io.nifti import write_volume
from emulator.phantoms.io.writer import write_grid, write_voxel_toml
from emulator.phantoms.model import Phantom
from emulator.phantoms.rasterize import paint
from emulator.phantoms.truth import PhantomTruth
from emulator.phantoms.volume import VoxelVolume
from emulator.population.anatomy import Anatomy
from emulator.population.head import HEAD, head
from emulator.population.heart import defect_truth
from emulator.population.sampling import draws
from emulator.population.torso import TORSO, torso
from infra.atomic import replacing
from infra.pool import available_cores

BODIES = {"torso": (TORSO, torso), "head": (HEAD, head)}
DEFAULT_VOXEL_MM = {"torso": 3.0, "head": 2.0}
#: Points per axis of a voxel's mean (shapes) and of its share of a defect.
SUBSAMPLES, DEFECT_SUBSAMPLES = 2, 3
CSV = "population.csv"


def grid_for(anatomy: Anatomy, voxel_mm: float) -> tuple[tuple[int, int, int], np.ndarray]:
    """(shape, voxel [0, 0, 0]'s centre) of a grid around the anatomy, one voxel beyond."""
    boxes = np.array([r.shape.bounding_box() for r in anatomy.parts])
    lo, hi = boxes[:, 0].min(axis=0) - voxel_mm, boxes[:, 1].max(axis=0) + voxel_mm
    n = np.ceil((hi - lo) / voxel_mm).astype(np.int64)
    return tuple(int(v) for v in n), (lo + hi) / 2.0 - (n - 1) / 2.0 * voxel_mm


def _defect_share(anatomy: Anatomy, volume: VoxelVolume) -> np.ndarray:
    """Each voxel's share (0-1) of points in the defect, over the ventricle's box."""
    lv, defect = anatomy.ventricle, anatomy.defect
    share = np.zeros(volume.shape, np.float32)
    r, length = lv.outer
    across = r * np.sqrt(1.0 - lv.axis ** 2) + 2.0
    low = lv.base_mm + np.minimum(0.0, length * lv.axis) - across
    high = lv.base_mm + np.maximum(0.0, length * lv.axis) + across
    corners = np.array([[a, b, c] for a in (low[0], high[0]) for b in (low[1], high[1])
                        for c in (low[2], high[2])])
    index = corners @ volume.to_index[:, :3].T + volume.to_index[:, 3]
    top = np.asarray(volume.shape) - 1
    lo_i = np.clip(np.floor(index.min(axis=0)), 0, top).astype(int)
    hi_i = np.clip(np.ceil(index.max(axis=0)), 0, top).astype(int)
    idx = np.stack(np.meshgrid(*[np.arange(a, b + 1) for a, b in zip(lo_i, hi_i, strict=True)],
                               indexing="ij"), -1).reshape(-1, 3).astype(float)
    m = DEFECT_SUBSAMPLES
    offsets = (np.arange(m) + 0.5) / m - 0.5
    hits = np.zeros(idx.shape[0])
    for dx in offsets:
        for dy in offsets:
            for dz in offsets:
                pts = (idx + np.array([dx, dy, dz])) @ volume.affine[:3, :3].T \
                    + volume.affine[:3, 3]
                wall, t, theta, depth = lv.coordinates(pts)
                hits += wall & defect.holds(t, theta, depth)
    i = idx.astype(int)
    share[i[:, 0], i[:, 1], i[:, 2]] = hits / m ** 3
    return share


def _draw_one(body: str, name: str, params: dict[str, float], folder: Path,
              voxel_mm: float) -> dict[str, float | str]:
    """Draw one patient into ``folder``; returns its population.csv row."""
    anatomy = BODIES[body][1](name, params)
    shape, origin = grid_for(anatomy, voxel_mm)
    scans = list(anatomy.scans)
    volumes = paint(anatomy.parts, [[anatomy.scans[s].get(r.name) for r in anatomy.parts]
                                    for s in scans], voxel_mm, SUBSAMPLES, shape, origin)
    labels, names = volumes[0].labels, dict(volumes[0].label_names)
    truth_defect = None
    if anatomy.defect is not None:
        share = _defect_share(anatomy, volumes[0])
        for s, v in zip(scans, volumes, strict=True):
            if s in anatomy.defect_scans:
                v.activity[:] = np.maximum(v.activity - anatomy.defect.severity
                                           * anatomy.scans[s]["myocardium"] * share, 0.0)
        label = max(names) + 1
        names[label] = "defect"
        labels = np.where(share >= 0.5, label, labels).astype(np.int32)
        truth_defect = defect_truth(anatomy.ventricle, anatomy.defect)
    grid = VoxelVolume(volumes[0].activity, volumes[0].density, volumes[0].affine, labels,
                       names)
    folder.mkdir(parents=True, exist_ok=True)
    write_grid(folder, grid)
    row = {"name": name, **anatomy.derived, **{k: round(v, 4) for k, v in params.items()}}
    truth = PhantomTruth(anatomy.ventricle.truth() if anatomy.ventricle is not None else None,
                         truth_defect, row, anatomy.scans["phantom"])
    with replacing(folder / "truth.json") as tmp:
        tmp.write_text(truth.json_text())
    for s, v in zip(scans, volumes, strict=True):
        file = "activity.nii.gz" if s == "phantom" else f"activity_{s}.nii.gz"
        write_volume(folder / file, v.activity, v.affine)
        phantom = Phantom(name if s == "phantom" else f"{name}-{s}", anatomy.scan_words[s],
                          body_part=anatomy.body_part, volume=v)
        write_voxel_toml(folder / f"{s}.toml", phantom, file, grid, truth=True)
    return row


def population(body: str, n: int, seed: int, out: Path, voxel_mm: float,
               on_patient: Callable[[int], None] | None = None,
               threads: int | None = None) -> Path:
    """Draw ``n`` patients of ``body`` (torso or head) from ``seed`` into ``out``; returns the
    path of population.csv."""
    parameters, _ = BODIES[body]
    drawn = draws(parameters, n, seed, body)
    width = max(3, int(math.log10(max(n, 1))) + 1)
    names = [f"{body}-{k + 1:0{width}d}" for k in range(n)]
    rows: list[dict] = [{}] * n
    done = 0
    with ThreadPoolExecutor(threads or available_cores()) as pool:
        futures = {pool.submit(_draw_one, body, names[k], drawn[k], out / names[k], voxel_mm): k
                   for k in range(n)}
        for future, k in futures.items():
            rows[k] = future.result()
            done += 1
            if on_patient is not None:
                on_patient(done)
    path = out / CSV
    columns = list(rows[0])
    with replacing(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows(rows)
    return path
