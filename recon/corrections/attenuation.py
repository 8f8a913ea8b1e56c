"""Attenuation maps without a CT: the body's outline filled with water (a skull added for a head),
and maps from outside (a NIfTI in 1/mm at 511 keV, or a CT in Hounsfield units).

The calculated map (the method of dedicated brain PET before CT): the outline is where the
smoothed emission image without attenuation correction falls to half the level just inside the
object's edge, filled slice by slice (cold regions inside the body are tissue, not air), water
inside; for a head, whose emission outlines the brain, the layers an adult's brain has around
it (:data:`HEAD`): cerebrospinal fluid, a shell of cortical bone, the scalp; and water where the
emission shows tissue beyond them (the face, the neck: :func:`tissue`). The outline needs
no scale: water and bone have known attenuation, so the map is absolute (what MLAA lacks), and
it costs a short EM image without attenuation (:mod:`recon.pet.mumap`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from emulator.phantoms.io import hounsfield
from infra.errors import UserError
from recon.corrections.distance import distance_mm
from recon.grid import Grid, Image, sample_trilinear
from recon.outputs.png import smoothed

#: Water at 511 keV (1/mm): NIST XCOM 0.0960 cm2/g at 1.00 g/cm3.
MU_WATER_PER_MM = 0.0096
#: The skull of the calculated head map (mm): an adult's mean thickness (6-7 mm).
SKULL_MM = 7.0
#: The whole skull at 511 keV (1/mm): cortical tables and the diploe between them, the value
#: of MR-based head attenuation (0.151 /cm, Keereman et al., J Nucl Med 51:812 (2010)); the
#: population's skulls (water-equivalent density 1.55 +- 0.08) have 0.0149.
MU_SKULL_PER_MM = 0.0151


@dataclass(frozen=True)
class HeadLayers:
    """What lies around a brain's emission outline in a head (mm): cerebrospinal fluid
    (water), the skull (:data:`MU_SKULL_PER_MM`), the scalp (water)."""

    csf_mm: float = 3.0
    skull_mm: float = SKULL_MM
    scalp_mm: float = 5.5
    skull_mu_per_mm: float = MU_SKULL_PER_MM

    def words(self) -> str:
        return (f"{self.csf_mm:g} mm CSF, skull {self.skull_mm:g} mm, scalp "
                f"{self.scalp_mm:g} mm")


#: An adult head's layers (docs/phantoms.md: the population's means; the CSF gap an estimate).
HEAD = HeadLayers()
#: A head's tissue beyond its layers (face, neck, the scalp's far side): where the emission,
#: smoothed by :data:`TISSUE_FWHM_MM`, exceeds this fraction of its 99.9th percentile (FDG's
#: scalp and muscle take about a tenth of grey matter's uptake).
TISSUE_FRACTION, TISSUE_FWHM_MM = 0.11, 10.0
#: Body parts (DICOM Body Part Examined) whose calculated map gets a skull.
HEAD_PARTS = ("HEAD", "BRAIN", "SKULL")
#: The body's share of a voxel across the edge ramps from 0 to 1 as the smoothed emission goes
#: from the first to the second of these fractions of the level inside the edge: the edge is
#: drawn at their middle.
EDGE_RAMP = (0.5, 0.9)
#: The first outline (before the edge's level is known) is where the smoothed emission exceeds
#: this fraction of its 99.9th percentile in the central half of the axial field (the hottest
#: part, a hot sphere or a body's rim; the ends, seen by few lines, are noisy at low counts).
FIRST_FRACTION = 0.25
#: FWHM (mm) of the Gaussian that smooths the emission image before its outline is drawn.
OUTLINE_FWHM_MM = 6.0
#: The rim inside the outline whose median emission sets the edge's level: from this far inside
#: the outline to this far (mm; clear of the edge's own fall).
RIM_MM = (4.0, 12.0)
#: Rounds of level and outline (each outline's rim gives the next level).
RIM_ITERATIONS = 2

NONE, TRUTH, ESTIMATE, LEARNED = "none", "truth", "estimate", "learned"


@dataclass(frozen=True)
class MuMap:
    """The attenuation a reconstruction takes: ``image`` (1/mm at 511 keV; None: none) and how it
    was had, ``method`` (``none``, ``truth``, ``calculated``, ``file``) and ``description`` (the
    words of DICOM's Attenuation Correction Method and BIDS' AttenuationCorrection)."""

    image: Image | None
    method: str
    description: str

    @classmethod
    def none(cls) -> MuMap:
        return cls(None, NONE, "none")


def is_head(body_part: str | None) -> bool:
    """Whether a body part (DICOM Body Part Examined) gets the head's calculated map."""
    return (body_part or "").strip().upper() in HEAD_PARTS


def outline(counts: np.ndarray, voxel_mm: tuple[float, float, float],
            first_fraction: float = FIRST_FRACTION,
            fwhm_mm: float = OUTLINE_FWHM_MM) -> np.ndarray:
    """[x, y, z] float32 from 0 to 1: how much of each voxel is body, in an emission image
    without attenuation correction (see the module docstring; all 0 when the image holds
    nothing). Inside the outline, 1 (holes filled: cold regions inside a body are tissue);
    across the edge, a ramp of the emission from :data:`EDGE_RAMP` times the rim's level, so
    the edge falls between voxels where the emission crosses the ramp's middle.
    ``first_fraction`` of the hottest sets the first outline (:data:`FIRST_FRACTION`); the image
    is smoothed by ``fwhm_mm`` first (:data:`OUTLINE_FWHM_MM`)."""
    image = smoothed(np.clip(counts, 0, None), fwhm_mm, voxel_mm)
    nz = image.shape[2]
    top = float(np.percentile(image[:, :, nz // 4: nz - nz // 4], 99.9))  # not the noisy ends
    if not top > 0:
        return np.zeros(image.shape, np.float32)
    mask = body_of(image > first_fraction * top)     # a first outline, whatever the body's size
    level = top
    for _ in range(RIM_ITERATIONS):          # the edge's level from the rim inside the outline
        rim = eroded(mask, RIM_MM[0], voxel_mm) & ~eroded(mask, RIM_MM[1], voxel_mm)
        if not rim.any():
            break
        level = float(np.median(image[rim]))
        mask = body_of(image > EDGE_RAMP[0] * level)
    lo, hi = EDGE_RAMP
    ramp = np.clip((image / np.float32(level) - lo) / (hi - lo), 0.0, 1.0)
    inside = eroded(mask, RIM_MM[0], voxel_mm)
    return np.where(inside, 1.0, np.where(mask, ramp, 0.0)).astype(np.float32)


def tissue(counts: np.ndarray, voxel_mm: tuple[float, float, float]) -> np.ndarray:
    """The head's tissue that shows in its emission beyond the brain (:data:`TISSUE_FRACTION`):
    the largest connected part, holes filled."""
    image = smoothed(np.clip(counts, 0, None), TISSUE_FWHM_MM, voxel_mm)
    nz = image.shape[2]
    top = float(np.percentile(image[:, :, nz // 4: nz - nz // 4], 99.9))
    if not top > 0:
        return np.zeros(image.shape, np.bool_)
    return body_of(image > TISSUE_FRACTION * top)


def calculated(body: np.ndarray, grid: Grid, head: HeadLayers | None = None,
               beyond: np.ndarray | None = None) -> Image:
    """The mu-map (1/mm) of a body (:func:`outline`): water, and for a head its ``layers``
    outside it (water, bone, water) and water where ``beyond`` (:func:`tissue`) holds more.
    The layers are drawn at their thickness on any voxel size (:func:`layered`)."""
    mu = body * np.float32(MU_WATER_PER_MM)
    if head is not None:
        brain = body >= 0.5
        out = layered(distance_mm(brain, grid.voxel_mm), grid.voxel_mm, head, beyond)
        mu = np.where(brain, mu, out)
    return grid.image(mu.astype(np.float32), "1/mm")


def layered(distance: np.ndarray, voxel_mm: tuple[float, float, float], head: HeadLayers,
            beyond: np.ndarray | None) -> np.ndarray:
    """mu (1/mm) of the voxels at ``distance`` (mm, centre to the nearest brain voxel's centre)
    from the brain: a voxel spans the distances (d - v, d) from the brain's edge (v its size),
    and takes each layer's mu in the share of that span the layer covers."""
    v = float(np.prod(voxel_mm)) ** (1.0 / 3.0)
    near, far = distance - v, distance

    def share(a_mm: float, b_mm: float) -> np.ndarray:
        return np.clip((np.minimum(far, b_mm) - np.maximum(near, a_mm)) / v, 0.0, 1.0)

    csf = head.csf_mm
    bone = csf + head.skull_mm
    scalp = bone + head.scalp_mm
    mu = (MU_WATER_PER_MM * share(0.0, csf) + head.skull_mu_per_mm * share(csf, bone)
          + MU_WATER_PER_MM * share(bone, scalp))
    if beyond is not None:
        mu = mu + MU_WATER_PER_MM * share(scalp, np.inf) * beyond
    return mu


def from_hounsfield(hu: np.ndarray) -> np.ndarray:
    """mu (1/mm at 511 keV) of CT numbers by the bilinear scaling
    (:mod:`emulator.phantoms.io.hounsfield`)."""
    return hounsfield.mu_per_mm(hu)


def load(path: str | Path) -> MuMap:
    """A mu-map from a NIfTI file in the scanner's frame: 1/mm at 511 keV (values 0 to 0.1), or
    a CT in Hounsfield units (air near -1000), converted (:func:`from_hounsfield`)."""
    from recon.outputs.export import read_nifti

    p = Path(path)
    if not p.is_file():
        raise UserError(f"mu-map {p} does not exist (give a NIfTI file, 'estimate' for the calculated "
                        "map, 'truth', or on SPECT 'learned')")
    image = read_nifti(p)
    values = image.array[np.isfinite(image.array)]
    if values.size == 0:
        raise UserError(f"mu-map {p} holds no finite value")
    lo, hi = float(values.min()), float(values.max())
    if lo >= 0 and hi <= 0.1:
        mu, words = np.nan_to_num(image.array), "1/mm"
    elif lo < -500:
        mu, words = from_hounsfield(np.nan_to_num(image.array, nan=-1000.0)), "CT, bilinear"
    else:
        raise UserError(f"mu-map {p}: values from {lo:g} to {hi:g} are neither 1/mm at 511 keV "
                        "(0 to 0.1) nor Hounsfield units (air near -1000)")
    return MuMap(Image(np.ascontiguousarray(mu, np.float32), image.voxel_mm, image.origin_mm,
                       "1/mm"), "file",
                 f"measured mu-map ({words}): {p.name}")


def on_grid(mu_map: MuMap, grid: Grid) -> MuMap:
    """``mu_map`` resampled (trilinear, zero outside its own grid) onto ``grid``, the
    reconstruction's, as is when it is already there."""
    image = mu_map.image
    if image is None or (image.grid.shape == grid.shape
                         and np.allclose(image.grid.affine, grid.affine)):
        return mu_map
    x, y, z = grid.centres_mm()
    points = np.stack(np.broadcast_arrays(x, y, z), axis=-1)
    array = sample_trilinear(image, points).astype(np.float32)
    resampled = Image(array, grid.voxel_mm, grid.origin_mm, "1/mm", dict(image.meta))
    return MuMap(resampled, mu_map.method, mu_map.description)


def dilated(mask: np.ndarray, radius_mm: float, voxel_mm: tuple[float, float, float]
            ) -> np.ndarray:
    """``mask`` grown by a ball of ``radius_mm``."""
    r = [int(radius_mm // v) for v in voxel_mm]
    out = mask.copy()
    for dx in range(-r[0], r[0] + 1):
        for dy in range(-r[1], r[1] + 1):
            for dz in range(-r[2], r[2] + 1):
                d2 = (dx * voxel_mm[0]) ** 2 + (dy * voxel_mm[1]) ** 2 + (dz * voxel_mm[2]) ** 2
                if 0 < d2 <= radius_mm ** 2:
                    out |= _shifted(mask, (dx, dy, dz))
    return out


def eroded(mask: np.ndarray, radius_mm: float, voxel_mm: tuple[float, float, float]
           ) -> np.ndarray:
    """``mask`` shrunk by a ball of ``radius_mm`` (beyond the array, the mask goes on as at its
    edge: the body goes on beyond the axial field of view)."""
    padded = np.pad(~mask, 1, mode="edge")
    return ~dilated(padded, radius_mm, voxel_mm)[1:-1, 1:-1, 1:-1]


def _shifted(mask: np.ndarray, shift: tuple[int, int, int]) -> np.ndarray:
    """``mask`` moved by ``shift`` voxels, False where it moved in from outside."""
    out = np.zeros_like(mask)
    src = tuple(slice(max(0, -s), n - max(0, s)) for s, n in zip(shift, mask.shape, strict=True))
    dst = tuple(slice(max(0, s), n - max(0, -s)) for s, n in zip(shift, mask.shape, strict=True))
    out[dst] = mask[src]
    return out


def body_of(mask: np.ndarray) -> np.ndarray:
    """The largest connected part of ``mask`` (faces touching), holes filled (:func:`filled`):
    noise beyond the body, in the field of view's low-sensitivity ends, is not body."""
    labels, sizes = connected_parts(mask)
    if sizes.size == 0:
        return filled(np.zeros(mask.shape, np.bool_))
    return filled(labels == int(np.argmax(sizes)) + 1)


def connected_parts(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(label of each voxel, 0 outside ``mask`` and from 1 in it; each label's voxel count) of
    ``mask``'s connected parts (faces touching)."""
    return _parts(np.ascontiguousarray(mask, np.bool_))


@numba.njit(cache=True)
def _parts(mask):
    nx, ny, nz = mask.shape
    label = np.zeros(mask.shape, np.int32)
    stack = np.empty((mask.size, 3), np.int64)
    sizes = np.zeros(16, np.int64)
    current = 0
    for i0 in range(nx):
        for j0 in range(ny):
            for k0 in range(nz):
                if not mask[i0, j0, k0] or label[i0, j0, k0]:
                    continue
                current += 1
                label[i0, j0, k0] = current
                stack[0, 0], stack[0, 1], stack[0, 2] = i0, j0, k0
                n, size = 1, 0
                while n > 0:
                    n -= 1
                    i, j, k = stack[n, 0], stack[n, 1], stack[n, 2]
                    size += 1
                    for di, dj, dk in ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0),
                                       (0, 0, 1), (0, 0, -1)):
                        a, b, c = i + di, j + dj, k + dk
                        if (0 <= a < nx and 0 <= b < ny and 0 <= c < nz and mask[a, b, c]
                                and not label[a, b, c]):
                            label[a, b, c] = current
                            stack[n, 0], stack[n, 1], stack[n, 2] = a, b, c
                            n += 1
                if current > sizes.size:
                    grown = np.zeros(2 * sizes.size, np.int64)
                    grown[:sizes.size] = sizes
                    sizes = grown
                sizes[current - 1] = size
    return label, sizes[:current].copy()


def filled(mask: np.ndarray) -> np.ndarray:
    """``mask`` with each axial slice's holes filled (what the slice's edge cannot reach)."""
    return _fill_slices(np.ascontiguousarray(mask, np.bool_))


@numba.njit(cache=True)
def _fill_slices(mask):
    nx, ny, nz = mask.shape
    out = np.ones_like(mask)
    stack = np.empty((nx * ny, 2), np.int64)
    for k in range(nz):
        n = 0
        for i in range(nx):
            for j in range(ny):
                if (i == 0 or j == 0 or i == nx - 1 or j == ny - 1) and not mask[i, j, k]:
                    out[i, j, k] = False
                    stack[n, 0], stack[n, 1] = i, j
                    n += 1
        while n > 0:
            n -= 1
            i, j = stack[n, 0], stack[n, 1]
            for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                a, b = i + di, j + dj
                if 0 <= a < nx and 0 <= b < ny and out[a, b, k] and not mask[a, b, k]:
                    out[a, b, k] = False
                    stack[n, 0], stack[n, 1] = a, b
                    n += 1
    return out
