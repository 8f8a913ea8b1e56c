"""The AHA 17-segment polar map (bull's-eye) of a cardiac SPECT (or PET) image.

Geometry in scanner mm: the left ventricle's long axis runs from ``base_mm`` (centre of the basal,
mitral plane) to ``apex_mm`` (the apex of the cavity on the axis); ``anterior`` is a direction
towards the anterior wall (made perpendicular to the axis); the septal direction is
``axis x anterior`` (axis from base to apex), which points to the patient's right for a heart in
its usual left-anterior-inferior orientation in LPS coordinates (give ``septal`` to override).

Sampling (maximum-count circumferential profiles, as clinical packages do): the cavity is cut into
``slices`` short-axis planes from base to apex; in each, rays at ``angles`` directions from the
axis take the maximum voxel value (trilinear) between ``radius_mm`` bounds. The basal, mid and
apical thirds of the planes give segments 1-6, 7-12 (60 degrees each, segment 1/7 centred on
anterior and then anteroseptal, inferoseptal, inferior, inferolateral, anterolateral) and 13-16
(90 degrees: anterior, septal, inferior, lateral); segment 17 (apex) takes rays from the apex point
within 45 degrees of the axis, beyond the cavity. A segment's value is the mean of its samples.
Territories (DOMAIN.md): LAD 1, 2, 7, 8, 13, 14, 17; RCA 3, 4, 9, 10, 15; LCx 5, 6, 11, 12, 16.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emulator.population.heart import TERRITORIES, segment_of
from infra.errors import UserError
from recon.grid import Image, sample_trilinear
from recon.outputs.png import write_png

SEGMENT_NAMES = (
    "basal anterior", "basal anteroseptal", "basal inferoseptal", "basal inferior",
    "basal inferolateral", "basal anterolateral", "mid anterior", "mid anteroseptal",
    "mid inferoseptal", "mid inferior", "mid inferolateral", "mid anterolateral",
    "apical anterior", "apical septal", "apical inferior", "apical lateral", "apex",
)


@dataclass(frozen=True)
class PolarMap:
    """Per-segment means (index 0 = segment 1) in image units, and as percent of the maximum;
    with the samples they are the means of (image units, and each sample's segment), which the
    normal limits compare point by point (:mod:`recon.spect.normals`)."""

    segments: np.ndarray
    samples: np.ndarray | None = None
    sample_segments: np.ndarray | None = None

    @property
    def percent(self) -> np.ndarray:
        top = float(self.segments.max())
        return 100.0 * self.segments / top if top > 0 else np.zeros_like(self.segments)

    @property
    def samples_percent(self) -> np.ndarray:
        """The samples in percent of the largest segment's mean (the scale of :attr:`percent`)."""
        if self.samples is None:
            raise UserError("this polar map was made from segment values only: it has no samples")
        top = float(self.segments.max())
        return 100.0 * self.samples / top if top > 0 else np.zeros_like(self.samples)

    def territory_means(self) -> dict[str, float]:
        """Mean of each coronary territory's segments."""
        return {name: float(np.mean([self.segments[s - 1] for s in segs]))
                for name, segs in TERRITORIES.items()}

    def write_png(self, path: str | Path, size: int = 320) -> Path:
        """The bull's-eye: anterior at the top, septal on the left; each segment coloured by its
        percent of the maximum, with the number written in it."""
        return write_png(path, render_bullseye(self.percent, size))


def polar_map(image: Image, apex_mm: Sequence[float], base_mm: Sequence[float],
              anterior: Sequence[float], septal: Sequence[float] | None = None,
              radius_mm: tuple[float, float] = (3.0, 40.0), slices: int = 12,
              angles: int = 72, step_mm: float = 1.0) -> PolarMap:
    """The 17-segment polar map of ``image`` (see the module docstring)."""
    apex, base = np.asarray(apex_mm, float), np.asarray(base_mm, float)
    axis = apex - base
    length = float(np.linalg.norm(axis))
    if length <= 0:
        raise UserError("polar map: apex and base must be different points")
    axis /= length
    a = np.asarray(anterior, float)
    a = a - (a @ axis) * axis
    if np.linalg.norm(a) < 1e-6:
        raise UserError("polar map: the anterior direction must not be along the long axis")
    a /= np.linalg.norm(a)
    s = np.cross(axis, a) if septal is None else np.asarray(septal, float)
    s = s - (s @ axis) * axis - (s @ a) * a
    if np.linalg.norm(s) < 1e-6:
        raise UserError("polar map: the septal direction must not be in the axis/anterior plane")
    s /= np.linalg.norm(s)
    if radius_mm[0] < 0 or radius_mm[1] <= radius_mm[0]:
        raise UserError(f"polar map: radius_mm must be (min, max) with 0 <= min < max, "
                        f"got {radius_mm}")
    theta = (np.arange(angles) + 0.5) * 360.0 / angles
    rad = np.deg2rad(theta)
    dirs = np.cos(rad)[:, None] * a + np.sin(rad)[:, None] * s            # (angles, 3)
    r = np.arange(radius_mm[0], radius_mm[1] + step_mm / 2, step_mm)
    values, segs = [], []
    for n in range(slices):
        t = (n + 0.5) / slices                                             # 0 base .. 1 apex
        centre = base + t * length * axis
        pts = centre + dirs[:, None, :] * r[None, :, None]
        values.append(sample_trilinear(image, pts).max(axis=1))
        segs.append(segment_of(min(int(3 * t), 2), theta))
    tilt = np.deg2rad(np.array([0.0, 15.0, 30.0, 45.0]))
    cap = [np.cos(p) * axis + np.sin(p) * d for p in tilt for d in (dirs if p else dirs[:1])]
    cap_pts = apex + np.asarray(cap)[:, None, :] * np.arange(0.0, radius_mm[1], step_mm)[
        None, :, None]
    values.append(sample_trilinear(image, cap_pts).max(axis=1))
    segs.append(np.full(len(cap), 17))
    samples, seg = np.concatenate(values), np.concatenate(segs)
    return PolarMap(segment_means(samples, seg), samples, seg)


def segment_means(values: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """The mean of ``values`` over the samples of each of the 17 segments (``segments``: each
    sample's segment, 1-17; 0 where a segment has no sample)."""
    n = np.maximum(np.bincount(segments - 1, None, 17), 1)
    return np.bincount(segments - 1, values, 17) / n


# ------------------------------------------------------------------------------------ rendering

_DIGITS = {  # 3 x 5 bitmap font, rows top to bottom
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111",
    "3": "111001111001111", "4": "101101111001001", "5": "111100111001111",
    "6": "111100111101111", "7": "111001010010010", "8": "111101111101111",
    "9": "111101111001111",
}
#: Ring radii (fractions of the picture's radius): apex, apical, mid, basal outer edges.
_RINGS = (0.2, 0.47, 0.73, 1.0)


def _colour(percent: np.ndarray) -> np.ndarray:
    """A black-red-yellow ramp of 0..100 percent -> uint8 RGB."""
    p = np.clip(np.asarray(percent, float) / 100.0, 0, 1)[..., None]
    rgb = np.clip(np.concatenate([2 * p, 2 * p - 1, 0 * p], axis=-1), 0, 1)
    return (255 * rgb).astype(np.uint8)


def _text(canvas: np.ndarray, text: str, row: int, col: int, scale: int) -> None:
    """Write digits centred at (row, col), black on a white box."""
    w, h = (4 * len(text) + 1) * scale, 7 * scale
    r0, c0 = row - h // 2, col - w // 2
    canvas[max(r0, 0):r0 + h, max(c0, 0):c0 + w] = 255
    for k, ch in enumerate(text):
        bits = np.array([int(b) for b in _DIGITS[ch]], bool).reshape(5, 3)
        glyph = np.kron(bits, np.ones((scale, scale), bool))
        rr, cc = r0 + scale, c0 + scale + 4 * k * scale
        canvas[rr:rr + 5 * scale, cc:cc + 3 * scale][glyph] = 0


def render_bullseye(percent: np.ndarray, size: int = 320) -> np.ndarray:
    """RGB [size, size, 3] bull's-eye of 17 segment values (percent)."""
    c = (size - 1) / 2
    yy, xx = np.mgrid[0:size, 0:size]
    dx, dy = (xx - c) / c, (c - yy) / c                      # dy up
    rho = np.hypot(dx, dy)
    # short-axis angle: 0 at the top (anterior), 90 on the left (septal)
    theta = np.mod(np.rad2deg(np.arctan2(dy, dx)) - 90.0, 360.0)
    seg = np.zeros((size, size), int)
    seg[rho < _RINGS[0]] = 17
    for ring, (lo, hi) in enumerate(itertools.pairwise(_RINGS)):
        band = (rho >= lo) & (rho < hi)
        seg[band] = segment_of(2 - ring, theta[band])
    pct = np.asarray(percent, float)
    canvas = np.full((size, size, 3), 255, np.uint8)
    inside = seg > 0
    canvas[inside] = _colour(pct[seg[inside] - 1])
    edge = np.zeros((size, size), bool)
    edge[:-1] |= seg[:-1] != seg[1:]
    edge[:, :-1] |= seg[:, :-1] != seg[:, 1:]
    canvas[edge] = 80
    scale = max(1, size // 160)
    for number in range(1, 18):
        row, col = _label_point(number, c)
        _text(canvas, f"{round(float(pct[number - 1]))}", row, col, scale)
    return canvas


def _label_point(number: int, c: float) -> tuple[int, int]:
    """Screen (row, col) of a segment's label: its ring's middle radius at its centre angle."""
    if number == 17:
        return round(c), round(c)
    ring = 0 if number <= 6 else 1 if number <= 12 else 2
    theta = 60.0 * ((number - 1) % 6) if ring < 2 else 90.0 * (number - 13)
    band = 2 - ring
    rho = (_RINGS[band] + _RINGS[band + 1]) / 2 * c
    screen = np.deg2rad(90.0 + theta)                        # septal (90) to the left
    return round(c - rho * np.sin(screen)), round(c + rho * np.cos(screen))
