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

import numba
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
    """Trilinear image values at points (..., 3) mm; 0 outside (a voxel past the outer voxels'
    centres: the image fades to 0 over that voxel)."""
    f = (np.asarray(points, np.float64).reshape(-1, 3) - np.asarray(image.origin_mm)) \
        / np.asarray(image.voxel_mm)
    out = _trilinear(np.ascontiguousarray(image.array), np.ascontiguousarray(f))
    return out.reshape(np.shape(points)[:-1])


@numba.njit(nogil=True, cache=True, parallel=True)
def _trilinear(a: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Values of ``a`` padded by a voxel of 0 all round at fractional indices ``f`` (N, 3) of
    ``a``; 0 outside the padding. Each point on its own: the same values on any threads."""
    nx, ny, nz = a.shape
    out = np.zeros(f.shape[0])
    for n in numba.prange(f.shape[0]):
        x, y, z = f[n, 0] + 1.0, f[n, 1] + 1.0, f[n, 2] + 1.0
        if not (0.0 <= x < nx + 1.0 - 1e-6 and 0.0 <= y < ny + 1.0 - 1e-6
                and 0.0 <= z < nz + 1.0 - 1e-6):
            continue
        i, j, k = int(x), int(y), int(z)
        wx, wy, wz = x - i, y - j, z - k
        acc = 0.0
        for dx in range(2):
            for dy in range(2):
                for dz in range(2):
                    ii, jj, kk = i + dx - 1, j + dy - 1, k + dz - 1
                    if 0 <= ii < nx and 0 <= jj < ny and 0 <= kk < nz:
                        w = ((wx if dx else 1.0 - wx) * (wy if dy else 1.0 - wy)
                             * (wz if dz else 1.0 - wz))
                        acc += w * a[ii, jj, kk]
        out[n] = acc
    return out


def array_digest(array: np.ndarray) -> str:
    """SHA-256 (hex, 16 characters) of an array's shape, dtype and bytes (for caches)."""
    a = np.ascontiguousarray(array)
    h = hashlib.sha256(f"{a.shape}{a.dtype.str}".encode())
    h.update(a.tobytes())
    return h.hexdigest()[:16]
