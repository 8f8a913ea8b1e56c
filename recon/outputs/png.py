"""PNG pictures of images: axial slices and a maximum-intensity projection, with a tiny PNG writer
(zlib + CRC from the standard library; no plotting package needed).

Display convention (radiological, as DICOM viewers show LPS data): axial pictures have the
patient's right on the left (x to the right) and anterior at the top (y down); the MIP is
coronal, superior at the top (z up) and x to the right. Pictures are smoothed for display by a
Gaussian of :data:`DISPLAY_FWHM_MM` as the console's display filter is; the NIfTI and DICOM
outputs are the image as reconstructed.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from infra.atomic import replacing
from infra.errors import UserError
from recon.grid import Image


def write_png(path: str | Path, pixels: np.ndarray) -> Path:
    """Write a uint8 [rows, columns] (grey) or [rows, columns, 3] (RGB) picture."""
    a = np.ascontiguousarray(pixels, np.uint8)
    if a.ndim == 2:
        colour = 0
    elif a.ndim == 3 and a.shape[2] == 3:
        colour = 2
    else:
        raise UserError(f"a PNG needs [rows, columns] or [rows, columns, 3] pixels, got {a.shape}")
    rows, cols = a.shape[:2]
    raw = np.concatenate([np.zeros((rows, 1), np.uint8), a.reshape(rows, -1)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    png = (b"\x89PNG\r\n\x1a\n"
           + chunk(b"IHDR", struct.pack(">IIBBBBB", cols, rows, 8, colour, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + chunk(b"IEND", b""))
    path = Path(path)
    with replacing(path) as tmp:
        tmp.write_bytes(png)
    return path


def to_grey(values: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """uint8 grey levels: 0 at 0 (or below), 255 at ``vmax`` (default the maximum) and above."""
    v = np.asarray(values, np.float64)
    top = float(v.max()) if vmax is None else float(vmax)
    if not top > 0:
        return np.zeros(v.shape, np.uint8)
    return np.clip(np.rint(255.0 * v / top), 0, 255).astype(np.uint8)


#: The display's white level: this percentile of the positive values, so that a few noisy
#: voxels (the low-sensitivity end slices of a short scan) do not leave the rest black.
WHITE_PERCENTILE = 99.5
#: Pictures are magnified (whole pixels, nearest neighbour) to at least this many pixels across.
MIN_PICTURE_PX = 256


#: FWHM (mm) of the Gaussian that smooths the pictures (not the stored image): a short scan's
#: voxel noise hides the structures a person looks for.
DISPLAY_FWHM_MM = 6.0


def smoothed(volume: np.ndarray, fwhm_mm: float, voxel_mm: tuple[float, float, float]
             ) -> np.ndarray:
    """``volume`` convolved with an isotropic 3-D Gaussian of ``fwhm_mm`` (zero outside the
    volume; an axis whose sigma is under a fifth of a voxel is left alone). A float32 copy."""
    out = np.asarray(volume, np.float32)
    for axis, size_mm in enumerate(voxel_mm):
        sigma_px = fwhm_mm / (2.0 * math.sqrt(2.0 * math.log(2.0))) / float(size_mm)
        if sigma_px < 0.2:
            continue
        i = np.arange(out.shape[axis])
        weights = np.exp(-0.5 * ((i[:, None] - i[None, :]) / sigma_px) ** 2)
        weights[np.abs(i[:, None] - i[None, :]) > math.ceil(3.0 * sigma_px)] = 0.0
        weights /= weights.sum(axis=1, keepdims=True).max()  # the full kernel's sum
        out = np.moveaxis(np.tensordot(weights.astype(np.float32), out, axes=([1], [axis])),
                          0, axis)
    return np.array(out, np.float32)


def for_display(image: Image, fwhm_mm: float = DISPLAY_FWHM_MM) -> Image:
    """``image`` smoothed for its pictures (:func:`smoothed`; ``fwhm_mm`` 0: as it is)."""
    if fwhm_mm <= 0:
        return image
    return replace(image, array=smoothed(image.array, fwhm_mm, tuple(image.voxel_mm)))


def display_max(values: np.ndarray) -> float:
    """The white level of ``values`` (:data:`WHITE_PERCENTILE` of the positive ones; 0 if none)."""
    positive = np.asarray(values)[np.asarray(values) > 0]
    return float(np.percentile(positive, WHITE_PERCENTILE)) if positive.size else 0.0


def magnified(picture: np.ndarray) -> np.ndarray:
    """``picture`` with each pixel repeated to reach :data:`MIN_PICTURE_PX` on its longer side."""
    k = max(1, -(-MIN_PICTURE_PX // max(picture.shape)))
    return np.repeat(np.repeat(picture, k, axis=0), k, axis=1)


def axial_picture(image: Image, k: int, vmax: float | None = None) -> np.ndarray:
    """Slice k as a grey picture [y, x], one pixel per voxel."""
    return to_grey(image.array[:, :, k].T, vmax)


def mip_picture(image: Image) -> np.ndarray:
    """Coronal maximum-intensity projection [z (superior up), x], one pixel per voxel, white at
    :func:`display_max`."""
    mip = image.array.max(axis=1).T[::-1]
    return to_grey(mip, display_max(mip))


def write_slices(image: Image, folder: str | Path, prefix: str = "slice") -> list[Path]:
    """One PNG per axial slice (a common grey scale: white at the image's :func:`display_max`),
    named by slice index, magnified to :data:`MIN_PICTURE_PX`."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    top = display_max(image.array)
    width = len(str(image.array.shape[2] - 1))
    return [write_png(out / f"{prefix}_{k:0{width}d}.png", magnified(axial_picture(image, k, top)))
            for k in range(image.array.shape[2])]


def write_mip(image: Image, path: str | Path) -> Path:
    """The coronal MIP as a PNG, magnified to :data:`MIN_PICTURE_PX`."""
    return write_png(path, magnified(mip_picture(image)))


def mu_map_picture(image: Image, mu_map: Image) -> np.ndarray:
    """RGB [rows, columns, 3]: the image's central axial slice and its central coronal slice
    (superior up) side by side in grey, with the body's edge in the mu-map (half of water's mu)
    drawn in red, bone (more than 1.5 times water's) tinted yellow and lung (0.15 to 0.45 of
    water's, away from the body's edge) blue; one pixel per voxel."""
    water = 0.0096
    panels = []
    for cut in (lambda a: a[:, :, a.shape[2] // 2].T, lambda a: a[:, a.shape[1] // 2, :].T[::-1]):
        emission, mu = cut(np.asarray(image.array)), cut(np.asarray(mu_map.array))
        grey = to_grey(emission, display_max(emission))
        rgb = np.repeat(grey[:, :, None], 3, axis=2)
        body = mu >= water / 2
        edge = body & ~_all_neighbours(body)
        rgb[mu > 1.5 * water] = (rgb[mu > 1.5 * water] // 2 + np.array([120, 110, 0], np.uint8))
        lung = _all_neighbours(mu > 0.15 * water) & (mu < 0.45 * water)
        rgb[lung] = rgb[lung] // 2 + np.array([0, 40, 120], np.uint8)
        rgb[edge] = (255, 40, 40)
        panels.append(rgb)
    rows = max(p.shape[0] for p in panels)
    panels = [np.pad(p, ((0, rows - p.shape[0]), (0, 2), (0, 0))) for p in panels]
    return np.concatenate(panels, axis=1)


def _all_neighbours(mask: np.ndarray) -> np.ndarray:
    """Where ``mask`` and its four neighbours in the picture are all True."""
    return (mask & np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1)
            & np.roll(mask, -1, 1))


def write_mu_map_picture(image: Image, mu_map: Image, path: str | Path) -> Path:
    """:func:`mu_map_picture` of the image smoothed for display (:func:`for_display`) as a PNG,
    magnified to :data:`MIN_PICTURE_PX`; the mu-map is on the image's grid (it is made there)."""
    return write_png(path, magnified(mu_map_picture(for_display(image), mu_map)))
