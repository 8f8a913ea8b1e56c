"""The learned mu-map of a SPECT scan without a CT: a network (ONNX weights, run by onnxruntime
on the CPU) that reads the OSEM image without attenuation correction and draws the map.

The network sees :data:`CONTEXT_SLICES` neighbouring transaxial slices of the image, each
divided by the image's :data:`SCALE_PERCENTILE`-th percentile and square-rooted (the body's
faint background then weighs as much as its hot organs), and answers the centre slice's
attenuation in 1/cm at the photopeak it was trained at; a scan at another energy is scaled by
water's ratio. The model file names its camera, grid and version in its metadata: a model of
another camera or grid is refused in one line. ``python -m recon.learning.train`` trains one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emulator.physics.media import mu_water
from infra.errors import UserError
from recon.corrections import attenuation
from recon.corrections.attenuation import MuMap
from recon.grid import Image

#: The folder of the shipped models, ``<camera>.onnx`` with their cards ``<camera>.md``.
MODEL_DIR = Path(__file__).resolve().parent / "models"
#: Transaxial slices the network reads around the one it draws.
CONTEXT_SLICES = 5
#: The image is divided by this percentile of its voxels before the network reads it.
SCALE_PERCENTILE = 99.5
#: Intensities above this many times the percentile are clipped.
CLIP = 2.0
#: The network answers 1/cm; the map is 1/mm.
PER_CM_IN_PER_MM = 0.1
#: The method's name in the outputs (MuMap.method) and the ``--mu-map`` choice of the shipped
#: model.
LEARNED = attenuation.LEARNED


@dataclass(frozen=True)
class LearnedModel:
    """A loaded model: its file, the camera and grid it was trained for, its version, the
    photopeak (keV) its maps are at, and the onnxruntime session."""

    path: Path
    camera: str
    version: str
    energy_kev: float
    grid_shape: tuple[int, int, int]
    voxel_mm: tuple[float, float, float]
    session: Any

    def words(self) -> str:
        """The method's words for the report and DICOM's Attenuation Correction Method."""
        return f"learned: CT-less mu-map from the emission ({self.camera} model {self.version})"


def features(without_attenuation: np.ndarray) -> np.ndarray:
    """The network's input [slice, channel, x, y] (float32) of an image [x, y, z] without
    attenuation correction: each slice with its :data:`CONTEXT_SLICES` neighbours (the edge
    slices repeated), scaled and square-rooted as the module docstring says."""
    a = np.nan_to_num(np.asarray(without_attenuation, np.float32))
    top = float(np.percentile(a, SCALE_PERCENTILE))
    a = np.sqrt(np.clip(a / top, 0.0, CLIP)) if top > 0 else np.zeros_like(a)
    half = CONTEXT_SLICES // 2
    padded = np.pad(a, ((0, 0), (0, 0), (half, half)), mode="edge")
    stack = np.stack([padded[:, :, k:k + a.shape[2]] for k in range(CONTEXT_SLICES)])
    return np.ascontiguousarray(stack.transpose(3, 0, 1, 2), np.float32)


def shipped(camera: str) -> Path | None:
    """The shipped model of ``camera``, or None."""
    path = MODEL_DIR / f"{camera}.onnx"
    return path if path.is_file() else None


def load(path: str | Path, threads: int | None = None) -> LearnedModel:
    """The model in ``path`` (ONNX with the metadata :mod:`recon.learning.onnxgraph` writes),
    or a one-line :class:`UserError`: missing, truncated or not a model of this product.
    ``threads``: onnxruntime's threads (None: every core; the answer is the same for any)."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise UserError(f"learned mu-map model {path}: no such file")
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own kinds for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"learned mu-map model {path} cannot be read (truncated or not ONNX): "
                        f"{first[:160]}") from None
    meta = session.get_modelmeta().custom_metadata_map
    try:
        return LearnedModel(path, meta["camera"], meta["version"], float(meta["energy_kev"]),
                            tuple(json.loads(meta["grid_shape"])),
                            tuple(json.loads(meta["voxel_mm"])), session)
    except (KeyError, ValueError) as exc:
        raise UserError(f"learned mu-map model {path} names no camera, grid or version "
                        f"({exc}): not a model of this product") from None


def model_for(camera: str, path: str | Path | None = None) -> LearnedModel:
    """``path``'s model (None or ``learned``: the camera's shipped one), refused in one line
    when it is of another camera or when the camera has none."""
    if path is None or str(path) == LEARNED:
        found = shipped(camera)
        if found is None:
            raise UserError(f"no learned mu-map model ships for camera {camera} (train one: "
                            "python -m recon.learning.train; or --mu-map calculated)")
        path = found
    model = load(path)
    if model.camera != camera:
        raise UserError(f"learned mu-map model {model.path} is of camera {model.camera}, "
                        f"not {camera}")
    return model


def predict(model: LearnedModel, without_attenuation: Image, energy_kev: float) -> MuMap:
    """The learned map (1/mm at ``energy_kev``, on the image's grid) of an OSEM image without
    attenuation correction; refused when the image's grid is not the model's."""
    grid = without_attenuation.grid
    if tuple(grid.shape) != model.grid_shape or not np.allclose(grid.voxel_mm, model.voxel_mm):
        raise UserError(f"learned mu-map model {model.path} reads a {model.grid_shape} grid "
                        f"of {model.voxel_mm} mm voxels, not {grid.shape} of {grid.voxel_mm}")
    x = features(without_attenuation.array)
    name = model.session.get_inputs()[0].name
    out = model.session.run(None, {name: x})[0][:, 0]          # [z, x, y], 1/cm
    per_mm = np.maximum(out, 0.0).transpose(1, 2, 0) * PER_CM_IN_PER_MM
    per_mm *= float(mu_water(energy_kev) / mu_water(model.energy_kev))
    image = Image(np.ascontiguousarray(per_mm, np.float32), grid.voxel_mm, grid.origin_mm,
                  "1/mm", {"method": LEARNED, "energy_kev": energy_kev,
                           "model": model.path.name, "model_version": model.version})
    return MuMap(image, LEARNED, model.words())
