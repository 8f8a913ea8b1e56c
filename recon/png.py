"""PNG pictures of images: axial slices and a maximum-intensity projection, with a tiny PNG writer
(zlib + CRC from the standard library; no plotting package needed).

Display convention (radiological, as DICOM viewers show LPS data): axial pictures have the
patient's right on the left (x to the right) and anterior at the top (y down); the MIP is
coronal, superior at the top (z up) and x to the right.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from hw.errors import UserError
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
    path.write_bytes(png)
    return path


def to_grey(values: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """uint8 grey levels: 0 at 0 (or below), 255 at ``vmax`` (default the maximum) and above."""
    v = np.asarray(values, np.float64)
    top = float(v.max()) if vmax is None else float(vmax)
    if not top > 0:
        return np.zeros(v.shape, np.uint8)
    return np.clip(np.rint(255.0 * v / top), 0, 255).astype(np.uint8)


def axial_picture(image: Image, k: int, vmax: float | None = None) -> np.ndarray:
    """Slice k as a grey picture [y, x]."""
    return to_grey(image.array[:, :, k].T, vmax)


def mip_picture(image: Image) -> np.ndarray:
    """Coronal maximum-intensity projection [z (superior up), x]."""
    return to_grey(image.array.max(axis=1).T[::-1])


def write_slices(image: Image, folder: str | Path, prefix: str = "slice") -> list[Path]:
    """One PNG per axial slice (a common grey scale: the image maximum), named by slice index."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    top = float(image.array.max())
    width = len(str(image.array.shape[2] - 1))
    return [write_png(out / f"{prefix}_{k:0{width}d}.png", axial_picture(image, k, top))
            for k in range(image.array.shape[2])]


def write_mip(image: Image, path: str | Path) -> Path:
    """The coronal MIP as a PNG."""
    return write_png(path, mip_picture(image))
