"""Where a left ventricle may be in a perfusion image: a model ventricle's contrast everywhere.

The model (:func:`model_masks`) is a mid-wall band of an ellipsoid's apical two thirds, and its
support: the band, the cavity inside it and a band outside it. At every voxel and for a few axes
and sizes, the contrast is the band's mean less the mean of the rest of the support, over the
support's standard deviation (a normalized cross-correlation with the model). A liver far hotter
than the myocardium (the image's hottest organ in many patients) scores no higher than a cold
one: only the shape counts. Each sum is an FFT correlation, three per model.
"""

from __future__ import annotations

import numpy as np

#: The model's bands in units of its mid-wall ellipsoid: the wall, the cavity, the outer band.
WALL_BAND, CAVITY_BAND, OUTER_BAND = (0.75, 1.25), 0.6, (1.45, 1.85)
#: Added to the support's standard deviation (image relative to its maximum): flat regions score 0.
FLAT = 0.02
AXES = (0, 1, 2)


def frame(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors across ``axis`` (unit), right-handed with it."""
    t = np.cross(axis, [1.0, 0.0, 0.0] if abs(axis[0]) < 0.9 else [0.0, 1.0, 0.0])
    t /= np.linalg.norm(t)
    return t, np.cross(axis, t)


def model_masks(axis: np.ndarray, short_mm: float, long_mm: float, voxel_mm: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """(wall, support) as 0/1 kernels on a cube of ``voxel_mm`` centred on the model."""
    k = int(np.ceil(long_mm * OUTER_BAND[1] / voxel_mm))
    i = np.arange(-k, k + 1) * voxel_mm
    p = np.stack(np.meshgrid(i, i, i, indexing="ij"), axis=-1)
    t, v = frame(axis)
    x, y, z = p @ t, p @ v, p @ axis
    r = np.sqrt((x * x + y * y) / short_mm ** 2 + z * z / long_mm ** 2)
    apical = z >= -0.5 * long_mm * r   # within 120 degrees of the apex
    wall = (r > WALL_BAND[0]) & (r < WALL_BAND[1]) & apical
    outer = (r > OUTER_BAND[0]) & (r < OUTER_BAND[1]) & apical
    return wall.astype(np.float64), (wall | outer | (r < CAVITY_BAND)).astype(np.float64)


def contrast_map(a: np.ndarray, voxel_mm: float, axes: np.ndarray,
                 sizes_mm: tuple[tuple[float, float], ...]) -> np.ndarray:
    """The best model contrast at each voxel of ``a`` (relative to its maximum) over ``axes``
    (unit vectors, apex-ward) and ``sizes_mm`` (short, long mid-wall semi-axes)."""
    best = np.full(a.shape, -np.inf)
    spectra: dict[tuple[int, ...], _Spectra] = {}
    for axis in axes:
        for short_mm, long_mm in sizes_mm:
            wall, support = model_masks(axis, short_mm, long_mm, voxel_mm)
            if wall.shape not in spectra:
                spectra[wall.shape] = _Spectra(a, wall.shape)
            np.maximum(best, spectra[wall.shape].contrast(wall, support), out=best)
    return best


class _Spectra:
    """The image's and its square's spectra, padded for kernels of one shape."""

    def __init__(self, a: np.ndarray, kernel_shape: tuple[int, ...]) -> None:
        self.shape = [_fast_length(n + k) for n, k in zip(a.shape, kernel_shape, strict=True)]
        self.crop = tuple(slice(k // 2, k // 2 + n) for k, n in zip(kernel_shape, a.shape,
                                                                     strict=True))
        self.a, self.a2 = (np.fft.rfftn(x, self.shape, AXES) for x in (a, a * a))

    def correlate(self, spectrum: np.ndarray, kernel: np.ndarray) -> np.ndarray:
        flipped = np.fft.rfftn(kernel[::-1, ::-1, ::-1], self.shape, AXES)
        return np.fft.irfftn(spectrum * flipped, self.shape, AXES)[self.crop]

    def contrast(self, wall: np.ndarray, support: np.ndarray) -> np.ndarray:
        """The wall's mean less the rest of the support's, over the support's spread."""
        n_wall, n_support = wall.sum(), support.sum()
        s_wall, s_support = self.correlate(self.a, wall), self.correlate(self.a, support)
        mean = s_support / n_support
        sd = np.sqrt(np.maximum(self.correlate(self.a2, support) / n_support - mean * mean, 0))
        rest = (s_support - s_wall) / (n_support - n_wall)
        return (s_wall / n_wall - rest) / (sd + FLAT)


def local_maxima(score: np.ndarray, n: int) -> np.ndarray:
    """The indices of ``score``'s ``n`` highest finite local maxima (26 neighbours), best first."""
    padded = np.pad(score, 1, constant_values=-np.inf)
    peak = np.isfinite(score)
    for d in np.ndindex(3, 3, 3):
        if d != (1, 1, 1):
            peak &= score >= padded[tuple(slice(k, k + n_) for k, n_ in zip(d, score.shape,
                                                                            strict=True))]
    index = np.argwhere(peak)
    return index[np.argsort(-score[tuple(index.T)], kind="stable")[:n]]


def _fast_length(n: int) -> int:
    """The smallest length of at least ``n`` with no prime factor above 5 (fast FFTs)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1
