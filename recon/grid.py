"""Image grids and images in scanner coordinates.

Scanner coordinates are mm: z along the bore axis, x/y transaxial, origin at the centre of the
field of view (see :mod:`hw.scanner`). An image array is indexed ``[x, y, z]``; voxel ``[i, j, k]``
has its centre at ``origin_mm + (i, j, k) * voxel_mm``.

Patient orientation (the convention of every export): the patient lies head first supine and the
scanner frame *is* the DICOM patient frame (LPS): +x towards the patient's left, +y posterior, +z
superior. NIfTI uses RAS, so ``affine_ras = diag(-1, -1, 1, 1) @ affine``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from hw.scanner import Scanner
from infra.errors import UserError

#: Scanner (LPS) -> RAS.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _affine(voxel_mm: tuple[float, float, float], origin_mm: tuple[float, float, float]
            ) -> np.ndarray:
    a = np.eye(4)
    a[[0, 1, 2], [0, 1, 2]] = voxel_mm
    a[:3, 3] = origin_mm
    return a


@dataclass(frozen=True)
class Grid:
    """A regular voxel grid: ``shape`` voxels of ``voxel_mm``; ``origin_mm`` is voxel [0, 0, 0]'s
    centre in scanner mm."""

    shape: tuple[int, int, int]
    voxel_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]

    def __post_init__(self) -> None:
        shape = tuple(int(n) for n in self.shape)
        voxel = tuple(float(v) for v in self.voxel_mm)
        origin = tuple(float(v) for v in self.origin_mm)
        if len(shape) != 3 or min(shape) < 1:
            raise UserError(f"grid shape must be three positive integers, got {self.shape}")
        if len(voxel) != 3 or min(voxel) <= 0:
            raise UserError(f"grid voxel_mm must be three positive sizes, got {self.voxel_mm}")
        if len(origin) != 3:
            raise UserError(f"grid origin_mm must be three coordinates, got {self.origin_mm}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "voxel_mm", voxel)
        object.__setattr__(self, "origin_mm", origin)

    @property
    def affine(self) -> np.ndarray:
        """4x4: voxel index (i, j, k, 1) -> scanner mm."""
        return _affine(self.voxel_mm, self.origin_mm)

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.voxel_mm))

    def axis_mm(self, axis: int) -> np.ndarray:
        """Voxel-centre coordinates (mm) along ``axis`` (0 = x, 1 = y, 2 = z)."""
        return self.origin_mm[axis] + self.voxel_mm[axis] * np.arange(self.shape[axis])

    def centres_mm(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable voxel-centre coordinates (x[:, None, None], y[None, :, None], z[None,
        None, :])."""
        return (self.axis_mm(0)[:, None, None], self.axis_mm(1)[None, :, None],
                self.axis_mm(2)[None, None, :])

    def index_of(self, point_mm: np.ndarray) -> np.ndarray:
        """Continuous voxel index of a scanner point (mm)."""
        return (np.asarray(point_mm, float) - self.origin_mm) / self.voxel_mm

    def is_centred(self) -> bool:
        """True when the grid is symmetric about the scanner centre in x, y and z."""
        return all(abs(o + (n - 1) * v / 2) < 1e-6 * v
                   for o, n, v in zip(self.origin_mm, self.shape, self.voxel_mm, strict=True))

    def key(self) -> str:
        """A short text that identifies the grid (for caches)."""
        return f"{self.shape}|{self.voxel_mm}|{self.origin_mm}"

    def image(self, array: np.ndarray | None = None, units: str = "") -> Image:
        """An :class:`Image` on this grid (zeros when ``array`` is None)."""
        if array is None:
            array = np.zeros(self.shape, np.float32)
        return Image(np.asarray(array, np.float32), self.voxel_mm, self.origin_mm, units)


def default_grid(scanner: Scanner, voxel_mm: float | None = None) -> Grid:
    """A centred grid covering the scanner's transaxial FOV (square) by its axial FOV.

    ``voxel_mm`` defaults to 2.0 mm for PET and to the detector pixel for SPECT.
    """
    if voxel_mm is None:
        voxel_mm = scanner.spect.pixel_mm if scanner.spect is not None else 2.0
    if not voxel_mm > 0:
        raise UserError(f"voxel size must be > 0 mm, got {voxel_mm}")
    nxy = max(1, math.ceil(scanner.transaxial_fov_mm / voxel_mm - 1e-6))
    nz = max(1, math.ceil(scanner.axial_fov_mm / voxel_mm - 1e-6))
    shape = (nxy, nxy, nz)
    return Grid(shape, (voxel_mm,) * 3, tuple(-(n - 1) * voxel_mm / 2 for n in shape))


@dataclass(frozen=True, eq=False)
class Image:
    """A reconstructed image: ``array`` [x, y, z] float32 with its geometry.

    ``units`` says what a voxel holds: ``"counts"`` (expected emissions in the voxel over the
    acquisition, the native unit of the reconstructions), ``"Bq/mL"``, or ``""`` (unspecified).
    """

    array: np.ndarray
    voxel_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    units: str = ""
    meta: dict = field(default_factory=dict)
    """Free-form provenance (iterations, subsets, events, ...)."""

    @property
    def grid(self) -> Grid:
        return Grid(self.array.shape, self.voxel_mm, self.origin_mm)

    @property
    def affine(self) -> np.ndarray:
        """4x4: voxel index -> scanner mm (= DICOM LPS for a head-first supine patient)."""
        return _affine(self.voxel_mm, self.origin_mm)

    @property
    def affine_ras(self) -> np.ndarray:
        """4x4: voxel index -> RAS mm (the NIfTI convention)."""
        return LPS_TO_RAS @ self.affine

    def scaled(self, factor: float, units: str) -> Image:
        """This image times ``factor``, in ``units``."""
        return Image((self.array * np.float32(factor)).astype(np.float32), self.voxel_mm,
                     self.origin_mm, units, dict(self.meta))


def sample_trilinear(image: Image, points: np.ndarray) -> np.ndarray:
    """Trilinear image values at points (..., 3) mm; 0 outside."""
    f = (points - np.asarray(image.origin_mm)) / np.asarray(image.voxel_mm)
    a = np.pad(image.array, 1)
    f = f + 1.0
    hi = np.array(a.shape) - 1.0 - 1e-6
    inside = np.all((f >= 0) & (f < hi), axis=-1)
    f = np.clip(f, 0, hi)
    i = np.floor(f).astype(int)
    w = f - i
    out = np.zeros(points.shape[:-1])
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                wt = ((w[..., 0] if dx else 1 - w[..., 0]) * (w[..., 1] if dy else 1 - w[..., 1])
                      * (w[..., 2] if dz else 1 - w[..., 2]))
                out += wt * a[i[..., 0] + dx, i[..., 1] + dy, i[..., 2] + dz]
    return np.where(inside, out, 0.0)


def array_digest(array: np.ndarray) -> str:
    """SHA-256 (hex, 16 characters) of an array's shape, dtype and bytes (for caches)."""
    a = np.ascontiguousarray(array)
    h = hashlib.sha256(f"{a.shape}{a.dtype.str}".encode())
    h.update(a.tobytes())
    return h.hexdigest()[:16]
