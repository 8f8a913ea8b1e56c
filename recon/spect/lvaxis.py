"""The left ventricle's long axis found in a perfusion SPECT image, or given by hand.

Found on the image smoothed to 8 mm FWHM, relative to its maximum, in three steps:

1. **Candidates**: the eight best places of a model ventricle's contrast template-matched over
   the image (:mod:`recon.spect.lvsearch`: the wall's mean against its cavity's and the band
   outside it, over their spread; 14 axes, two sizes). Contrast, not brightness: in many
   patients the liver is the image's hottest organ and the blurred myocardium reads half of it.
   Only places left of the body's midline count (the patient's left: a heart on the right, a
   dextrocardia, needs ``--lv-axis``).
2. **A model ventricle fitted at each**: the apical two thirds of an ellipsoid (short semi-axis
   A, long B, the base open) as the mid-wall, the same shape at 0.55 of its size inside the
   cavity and at 1.4 outside it. The fit maximises the wall's mean less the mean of the cavity
   and outer points, over the spread of all of them, over axes within 60 degrees of anatomy's
   (the apex points left, anterior and inferior: +x, -y, -z in LPS, a supine head-first
   patient), A in 20-28 mm, B in 36-48 mm and the centre within 8 mm, in three rounds. The
   cavity term keeps a perfusion defect, a cold patch of wall, from tilting the fit away from it.
   The candidate whose fit scores highest is the ventricle, refined over finer axes within 20
   degrees of its own.
3. **The axis through the rings**: the fit's axis tilts towards wherever the counts are wrong
   (a map without lungs over-corrects the walls beside them), so it is refined as the line
   through the short-axis wall rings' centres (:mod:`recon.spect.lvrings`), geometry that
   attenuation barely moves.

The apex is then 3 mm inside the model's apical wall, and the base 0.75 of the centre-apex
distance behind the centre (the valve plane of a normal ventricle); the anterior direction is -y.
Measured on 40 virtual torsos' images with the calculated map (docs/phantoms.md,
``python -m recon.validation.projected``, then ``python -m recon.validation.lvfinder``): within
8 degrees of the truth on 37 (24 with three candidates and no rings), within 20 degrees and
20 mm on 38; with the torsos' own maps on 39 and 39.
A manual axis, ``APEX:BASE`` in scanner mm (:func:`parse_lv_axis`), overrides it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from infra.errors import UserError
from recon.grid import Image, sample_trilinear
from recon.outputs.png import smoothed
from recon.spect import lvrings, lvsearch

#: The anatomical direction the apex points to (left, anterior, inferior in LPS).
APEX_PRIOR = np.array([1.0, -1.0, -1.0])
ANTERIOR = np.array([0.0, -1.0, 0.0])
SMOOTH_FWHM_MM = 8.0
#: Candidates: the search's directions over the sphere (those in the cone are used), its model
#: sizes (short, long mid-wall semi-axes, mm), how many places are fitted, and the share of the
#: maximum under which a voxel is outside the body.
SEARCH_DIRECTIONS, SEARCH_SIZES_MM = 60, ((20.0, 36.0), (28.0, 44.0))
CANDIDATES, BODY_CUT = 8, 0.05
#: The model ventricle: short and long mid-wall semi-axes tried (mm), the cavity's and the
#: outer points' scales, the fit's directions over the sphere (the candidates', the winner's),
#: the largest tilt from anatomy's axis (degrees), the centre's search offsets (mm).
SHORT_MM, LONG_MM = (20.0, 24.0, 28.0), (36.0, 42.0, 48.0)
CAVITY_SCALE, OUTER_SCALE = 0.55, 1.4
FIT_DIRECTIONS, MAX_TILT_DEG = (300, 1200), 60.0
#: The winner's refinement tries the fine directions within this of its coarse axis (degrees).
FINE_DEG = 20.0
OFFSETS_MM = np.arange(-8.0, 8.1, 4.0)
_NUMBER = r"\s*[-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?\s*"
_AXIS = re.compile(rf"^({_NUMBER}),({_NUMBER}),({_NUMBER}):({_NUMBER}),({_NUMBER}),({_NUMBER})$")


@dataclass(frozen=True)
class LvAxis:
    """The left ventricle's long axis (scanner mm), its anterior direction and the polar map's
    sampling radii (mm from the axis)."""

    apex_mm: np.ndarray
    base_mm: np.ndarray
    anterior: np.ndarray
    radius_mm: tuple[float, float]
    fit_contrast: float | None = None
    """A found axis' model-ventricle contrast (:func:`find_lv_axis`; None: given by hand)."""

    def to_json(self) -> dict[str, list[float]]:
        return {"apex_mm": [round(float(v), 1) for v in self.apex_mm],
                "base_mm": [round(float(v), 1) for v in self.base_mm]}


def polar_radius_mm(wall_mm: float) -> tuple[float, float]:
    """The polar map's sampling radii (mm from the axis) for a short-axis wall distance."""
    return (3.0, 2.0 * wall_mm)


def parse_lv_axis(text: str) -> LvAxis:
    """A manual axis ``APEX_X,Y,Z:BASE_X,Y,Z`` (scanner mm)."""
    m = _AXIS.match(text)
    if m is None:
        raise UserError(f"--lv-axis {text!r}: give APEX_X,Y,Z:BASE_X,Y,Z in mm "
                        "(e.g. 45,-40,-25:10,-5,17)")
    v = np.array([float(g) for g in m.groups()])
    apex, base = v[:3], v[3:]
    if np.linalg.norm(apex - base) < 10.0:
        raise UserError(f"--lv-axis: apex and base are {np.linalg.norm(apex - base):.1f} mm "
                        "apart; a ventricle is several centimetres long")
    return LvAxis(apex, base, ANTERIOR, polar_radius_mm(25.0))


def find_lv_axis(image: Image) -> LvAxis:
    """The left ventricle's axis in ``image`` (see the module docstring)."""
    grid = image.grid
    a = smoothed(image.array, SMOOTH_FWHM_MM, grid.voxel_mm).astype(np.float64)
    if not a.max() > 0:
        raise UserError("the image is empty: no ventricle to find")
    a /= a.max()
    prior = APEX_PRIOR / np.linalg.norm(APEX_PRIOR)
    cone = np.cos(np.radians(MAX_TILT_DEG))
    search_axes = _directions(SEARCH_DIRECTIONS)
    score = lvsearch.contrast_map(a, float(grid.voxel_mm[0]),
                                  search_axes[search_axes @ prior > cone], SEARCH_SIZES_MM)
    score[a < BODY_CUT] = -np.inf
    score[_right_of_midline(a)] = -np.inf
    coarse, fine = (_directions(n) for n in FIT_DIRECTIONS)
    smooth = grid.image(a, "relative")
    origin, voxel = np.array(grid.origin_mm), np.array(grid.voxel_mm)
    fits = [_fit(smooth, origin + index * voxel, coarse[coarse @ prior > cone])
            for index in lvsearch.local_maxima(score, CANDIDATES)]
    _, start, axis, _, _ = max(fits, key=lambda f: f[0])
    near = np.cos(np.radians(FINE_DEG))
    contrast, centre, axis, short, long_ = _fit(smooth, start, fine[(fine @ prior > cone)
                                                                   & (fine @ axis > near)])
    centre, axis = lvrings.refine(smooth, centre, axis, short, long_)
    apex = centre + (long_ - 3.0) * axis
    return LvAxis(apex, centre - 0.75 * (apex - centre), ANTERIOR, polar_radius_mm(short),
                  contrast)


def _right_of_midline(a: np.ndarray) -> np.ndarray:
    """The voxels on the patient's right of the body's midline (x under the body's mean x,
    LPS): a left ventricle's centre lies left of it."""
    x = np.nonzero(a >= BODY_CUT)[0]
    midline = float(x.mean()) if x.size else a.shape[0] / 2.0
    return np.broadcast_to((np.arange(a.shape[0]) < midline)[:, None, None], a.shape)


def _fit(image: Image, centre: np.ndarray, axes: np.ndarray
         ) -> tuple[float, np.ndarray, np.ndarray, float, float]:
    """(score, centre, axis, short, long semi-axis mm) of the model ventricle fitted from
    ``centre``."""
    offsets = np.stack(np.meshgrid(OFFSETS_MM, OFFSETS_MM, OFFSETS_MM, indexing="ij"),
                       axis=-1).reshape(-1, 3)
    for _ in range(3):
        _, axis, short, long_ = _best_model(image, centre, axes)
        moved = _score(image, centre + offsets, np.repeat(axis[None], len(offsets), 0), short,
                       long_)
        centre = centre + offsets[int(np.argmax(moved))]
    best, axis, short, long_ = _best_model(image, centre, axes)
    return best, centre, axis, short, long_


def _best_model(image: Image, centre: np.ndarray, axes: np.ndarray
                ) -> tuple[float, np.ndarray, float, float]:
    """(score, axis, short, long semi-axis mm) of the best-scoring model ventricle at
    ``centre``."""
    best = (-np.inf, axes[0], SHORT_MM[0], LONG_MM[0])
    centres = np.repeat(centre[None], len(axes), 0)
    for short in SHORT_MM:
        for long_ in LONG_MM:
            score = _score(image, centres, axes, short, long_)
            k = int(np.argmax(score))
            if score[k] > best[0]:
                best = (float(score[k]), axes[k], short, long_)
    return best


def _score(image: Image, centres: np.ndarray, axes: np.ndarray, short_mm: float,
           long_mm: float) -> np.ndarray:
    """Per (centre, axis): the mean on the model's wall less that of its cavity and outer
    points, over the spread of all of them."""
    t = np.stack([lvsearch.frame(axis)[0] for axis in axes])
    v = np.cross(axes, t)
    values = []
    for scale in (1.0, CAVITY_SCALE, OUTER_SCALE):
        local = _surface(short_mm * scale, long_mm * scale)
        points = (centres[:, None, :] + local[None, :, :1] * t[:, None]
                  + local[None, :, 1:2] * v[:, None] + local[None, :, 2:3] * axes[:, None])
        values.append(sample_trilinear(image, points))
    wall, rest = values[0], np.concatenate(values[1:], axis=1)
    spread = np.concatenate(values, axis=1).std(axis=1)
    return (wall.mean(axis=1) - rest.mean(axis=1)) / (spread + lvsearch.FLAT)


def _surface(short_mm: float, long_mm: float) -> np.ndarray:
    """Points of the ellipsoid's apical two thirds (polar angle 0-120 degrees from the apex),
    in the ventricle's frame (x, y across, z along the axis), mm."""
    polar, azimuth = np.meshgrid(np.radians(np.arange(0, 121, 10)),
                                 np.radians(np.arange(0, 360, 20)), indexing="ij")
    polar, azimuth = polar.ravel(), azimuth.ravel()
    return np.stack([short_mm * np.sin(polar) * np.cos(azimuth),
                     short_mm * np.sin(polar) * np.sin(azimuth), long_mm * np.cos(polar)], axis=1)


def _directions(n: int) -> np.ndarray:
    """``n`` unit vectors spread evenly over the sphere (Fibonacci lattice)."""
    k = np.arange(n) + 0.5
    polar = np.arccos(1.0 - 2.0 * k / n)
    azimuth = np.pi * (1.0 + 5.0 ** 0.5) * k
    return np.stack([np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar),
                     np.cos(polar)], axis=1)
