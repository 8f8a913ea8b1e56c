"""Lungs in a calculated mu-map: the large regions inside a body (not a head) whose emission,
corrected to first order for the body's attenuation, is far below the tissue around them.

An emission image without attenuation correction is cupped: a 20 cm body's centre reads about half
its edge, so a fixed fraction of the edge's level cannot tell a lung from tissue at the centre.
The image is first divided by Chang's factors of the water-filled outline (the mean over
in-plane directions of exp(-mu L) through each voxel; Chang, IEEE Trans Nucl Sci 25:638
(1978)), then by the body's median: tissue reads about 1. A connected region under
:data:`CORE_FRACTION` of at least :data:`MIN_ML` is a lung (a torso's lungs, a NEMA phantom's
lung insert); smaller ones (a cold lesion, a cold sphere, a ventricle) stay water. A lung's edge
is drawn halfway between its own level and the tissue's, as the body's is, and lung is
:data:`MU_LUNG_PER_MM` inside it. A head has no lungs: its white matter (a quarter of grey
matter) would read as one.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from recon.corrections.attenuation import MU_WATER_PER_MM, OUTLINE_FWHM_MM, connected_parts, dilated, eroded
from recon.outputs.png import smoothed

#: Lung at 511 keV (1/mm): water's per gram at density 0.3 (inflated lung 0.26-0.30 g/cm3).
MU_LUNG_PER_MM = 0.3 * MU_WATER_PER_MM
#: A lung's core: emission, corrected and relative to the body's median, under this fraction.
CORE_FRACTION = 0.4
#: The least volume of a lung (mL): a NEMA NU 2 phantom's largest cold sphere is 26.5 mL, its
#: lung insert several hundred, an adult's lung over a litre.
MIN_ML = 100.0
#: A lung's share of a voxel ramps across its edge over this fraction of the step from the lung's
#: level to the tissue's, centred on its middle (the body's edge ramps alike).
EDGE_WIDTH = 0.4
#: In-plane directions over half a turn of Chang's factors, and their voxels' least size (mm).
ANGLES, CHANG_VOXEL_MM = 24, 4.0


def lung_share(counts: np.ndarray, body: np.ndarray, voxel_mm: tuple[float, float, float]
               ) -> np.ndarray:
    """[x, y, z] float32 from 0 to 1: how much of each voxel is lung, in an emission image
    without attenuation correction (``counts``, smoothed as the outline's) and its ``body``
    (:func:`recon.corrections.attenuation.outline`'s share)."""
    image = smoothed(np.clip(counts, 0, None), OUTLINE_FWHM_MM, voxel_mm)
    relative = corrected_relative(image, body, voxel_mm)
    inside = eroded(body >= 0.5, 4.0, voxel_mm)
    core = inside & (relative < CORE_FRACTION)
    labels, sizes = connected_parts(core)
    voxel_ml = float(np.prod(voxel_mm)) / 1000.0
    share = np.zeros(image.shape, np.float32)
    for label, size in enumerate(sizes, start=1):
        if size * voxel_ml < MIN_ML:
            continue
        lung = labels == label
        level = float(np.median(relative[lung]))
        middle = (level + 1.0) / 2.0
        half = EDGE_WIDTH * (1.0 - level) / 2.0
        ramp = np.clip((middle + half - relative) / (2.0 * half), 0.0, 1.0)
        near = dilated(lung, 8.0, voxel_mm) & inside
        share = np.maximum(share, np.where(near, ramp, 0.0).astype(np.float32))
    return share


def volume_ml(share: np.ndarray, voxel_mm: tuple[float, float, float]) -> float:
    """The lungs' volume (mL) of a :func:`lung_share`."""
    return float(share.sum(dtype=np.float64)) * float(np.prod(voxel_mm)) / 1000.0


def with_lungs(mu: np.ndarray, share: np.ndarray) -> np.ndarray:
    """``mu`` (1/mm) with ``share`` of each voxel's water taken as lung."""
    lungs = share > 0
    out = mu.copy()
    out[lungs] = (mu[lungs] * (1.0 - share[lungs])
                  + np.float32(MU_LUNG_PER_MM) * share[lungs] * (mu[lungs] > 0))
    return out.astype(np.float32)


def corrected_relative(image: np.ndarray, body: np.ndarray,
                       voxel_mm: tuple[float, float, float]) -> np.ndarray:
    """``image`` divided by Chang's factors of the water-filled ``body``, then by its median
    inside the body (tissue about 1; 0 outside)."""
    mu = (body * np.float32(MU_WATER_PER_MM)).astype(np.float32)
    factors = chang_factors(mu, voxel_mm)
    inside = body >= 0.5
    corrected = np.where(inside, image / np.maximum(factors, 1e-6), 0.0)
    median = float(np.median(corrected[inside])) if inside.any() else 0.0
    return (corrected / median if median > 0 else corrected).astype(np.float32)


def chang_factors(mu: np.ndarray, voxel_mm: tuple[float, float, float],
                  angles: int = ANGLES) -> np.ndarray:
    """[x, y, z] float32: the mean over in-plane directions of exp(-integral of ``mu``) along
    the line through each voxel (1 where ``mu`` is 0), computed on voxels of at least
    :data:`CHANG_VOXEL_MM` (the factors are smooth) and repeated back onto ``mu``'s."""
    block = [max(1, round(CHANG_VOXEL_MM / v)) for v in voxel_mm]
    coarse = _block_mean(mu, block)
    theta = np.pi * np.arange(angles) / angles
    factors = _chang(coarse, float(voxel_mm[0] * block[0]), float(voxel_mm[1] * block[1]),
                     np.cos(theta), np.sin(theta))
    for axis, b in enumerate(block):
        factors = np.repeat(factors, b, axis=axis)
    nx, ny, nz = mu.shape
    return np.where(mu > 0, factors[:nx, :ny, :nz], 1.0).astype(np.float32)


def _block_mean(a: np.ndarray, block: list[int]) -> np.ndarray:
    """``a`` averaged over blocks of ``block`` voxels (zero-padded up to whole blocks)."""
    padded = np.pad(a, [(0, -n % b) for n, b in zip(a.shape, block, strict=True)])
    shape = [n // b for n, b in zip(padded.shape, block, strict=True)]
    return np.ascontiguousarray(padded.reshape(shape[0], block[0], shape[1], block[1], shape[2],
                                               block[2]).mean(axis=(1, 3, 5)), np.float32)


@numba.njit(cache=True)
def _chang(mu, vx, vy, cos_t, sin_t):
    nx, ny, nz = mu.shape
    out = np.ones(mu.shape, np.float32)
    step = 0.5 * min(vx, vy)
    for k in range(nz):
        for i in range(nx):
            for j in range(ny):
                if mu[i, j, k] <= 0:
                    continue
                total = 0.0
                for a in range(cos_t.size):
                    line = 0.0
                    for sign in (1.0, -1.0):
                        dx, dy = sign * cos_t[a] * step / vx, sign * sin_t[a] * step / vy
                        x, y = i + 0.5 * dx, j + 0.5 * dy
                        while True:
                            if x < -0.5 or y < -0.5:
                                break
                            a_i, a_j = int(x + 0.5), int(y + 0.5)
                            if a_i >= nx or a_j >= ny:
                                break
                            line += mu[a_i, a_j, k] * step
                            x += dx
                            y += dy
                    total += math.exp(-line)
                out[i, j, k] = total / cos_t.size
    return out
