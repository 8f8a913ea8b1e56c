"""SPECT reconstruction (OSEM) for parallel-hole gamma cameras, with distance-dependent collimator
blur, attenuation and an additive scatter term (TEW).

Projections are ``[head, view, row, column]`` counts (``coincidence.spect`` bins singles this way:
crystal = head * rows * columns + row * columns + column). Head h at view v looks from gantry
angle ``scanner.spect.view_angles_deg(h)[v]`` (counter-clockwise from +x): its collimator face is
``radius_of_rotation_mm`` from the axis along ``r = (cos, sin, 0)``, its columns run along
``t = (-sin, cos, 0)`` and its rows along +z, centred (see :mod:`hw.scanner`).

Projector (rotation-based, ray-driven in the detector frame): for each view, the image is sampled
by trilinear interpolation on a detector-aligned lattice (columns x rows x depth planes one pixel
apart, from the collimator inwards); each depth plane is attenuated by ``exp(-integral mu)`` from
the plane to the detector (the mu-map sampled on the same lattice, half a step for the plane
itself; the factors of a set of views are computed once and kept, up to
``ATTENUATION_CACHE_MB``, since every OSEM iteration projects the same views again), blurred by
the collimator's Gaussian response at that plane's distance ``d`` from the
face (FWHM ``collimator.geometric_resolution_mm(d)``, in quadrature with the camera's intrinsic
resolution when given; separable, truncated at 3 sigma) and summed into the view. The back
projector is its exact adjoint (same weights, scattered). Views run in parallel (numba prange;
back projection with one image buffer per thread).

Units: the image is *counts* (expected emissions per voxel over the whole acquisition). A view
lasts 1 / views_per_head of it, and sees a photon with the collimator's geometric efficiency times
the crystal's detection probability, so ``expected counts = efficiency / views_per_head *
(attenuated, blurred line sums of the emission density)``.

Scatter: the triple-energy-window estimate ``S = (C_low / W_low + C_up / W_up) W_peak / 2`` per
projection pixel (DOMAIN.md, :func:`tew_scatter`) enters the model as an additive term.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from hw.scanner import Scanner
from infra.errors import UserError
from recon.grid import Grid, Image, default_grid
from recon.pet.lors import FWHM_PER_SIGMA
from recon.pet.projector import pad
from recon.threads import apply_threads, get_threads

#: Collimator-response truncation, in standard deviations.
BLUR_NSIGMA = 3.0
#: Memory (MiB) a projector keeps its views' attenuation factors in (a dual-head camera's 120
#: views of 64 x 64 pixels at 65 depths: 128 MiB); views beyond it are attenuated afresh.
ATTENUATION_CACHE_MB = 256


def tew_scatter(lower: np.ndarray, upper: np.ndarray, width_lower_kev: float,
                width_upper_kev: float, width_peak_kev: float) -> np.ndarray:
    """Triple-energy-window scatter estimate in the photopeak window, per projection pixel."""
    if min(width_lower_kev, width_upper_kev, width_peak_kev) <= 0:
        raise UserError("TEW window widths must be > 0 keV, got "
                        f"{width_lower_kev}, {width_upper_kev}, {width_peak_kev}")
    lo = np.asarray(lower, np.float64)
    up = np.asarray(upper, np.float64)
    if lo.shape != up.shape:
        raise UserError(f"TEW windows differ in shape: {lo.shape} and {up.shape}")
    return ((lo / width_lower_kev + up / width_upper_kev) * width_peak_kev / 2).astype(np.float32)


def detection_efficiency(scanner: Scanner, energy_kev: float | None = None) -> float:
    """Collimator geometric efficiency x crystal detection probability at ``energy_kev`` (None:
    the centre of the scanner's acquisition window)."""
    spect = _spect(scanner)
    energy = (float(np.mean(scanner.acquisition["energy_window_kev"])) if energy_kev is None
              else float(energy_kev))
    absorbed = -math.expm1(-float(scanner.material.mu(energy)) * scanner.crystal_size_mm[2])
    return spect.collimator.efficiency * scanner.response.crystal_efficiency * absorbed


def _spect(scanner: Scanner):
    if scanner.kind != "spect" or scanner.spect is None:
        raise UserError(f"scanner {scanner.name} is not a SPECT scanner")
    return scanner.spect


class SpectProjector:
    """Forward and back projection between an image on ``grid`` and projections
    ``[head, view, row, column]`` of ``scanner``; see the module docstring."""

    def __init__(self, scanner: Scanner, grid: Grid | None = None,
                 mu_map: Image | np.ndarray | None = None, intrinsic_fwhm_mm: float = 0.0,
                 energy_kev: float | None = None) -> None:
        """``energy_kev``: the photons' energy (None: the centre of the scanner's acquisition
        window), for the crystal's detection probability."""
        spect = _spect(scanner)
        self.scanner, self.spect = scanner, spect
        self.grid = grid if grid is not None else default_grid(scanner)
        self.shape = (spect.n_heads, spect.views_per_head, spect.rows, spect.columns)
        angles = np.stack([spect.view_angles_deg(h) for h in range(spect.n_heads)])
        self._angles = np.deg2rad(angles).reshape(-1)
        pixel = spect.pixel_mm
        if min(self.grid.voxel_mm) < pixel * 0.99:
            raise UserError(f"SPECT voxels must be at least the detector pixel ({pixel:g} mm), "
                            f"got {self.grid.voxel_mm}")
        # depth planes one pixel apart across the field of view (the circle that every view
        # sees, radius half the detector width), from the collimator side (plane 0) to the far
        # side; voxels outside it are never seen
        reach = min(scanner.transaxial_fov_mm / 2, spect.radius_of_rotation_mm - pixel / 2)
        self._depth0 = reach
        n_depth = math.floor(2 * reach / pixel) + 1
        distance = spect.radius_of_rotation_mm - (reach - pixel * np.arange(n_depth))
        fwhm = np.sqrt(spect.collimator.geometric_resolution_mm(distance) ** 2
                       + intrinsic_fwhm_mm ** 2)
        self._taps = _gaussian_taps(fwhm / FWHM_PER_SIGMA / pixel)
        self._scale = np.float32(detection_efficiency(scanner, energy_kev) / spect.views_per_head
                                 * pixel ** 3 / self.grid.voxel_volume_mm3)
        self._geometry = (np.array(self.grid.origin_mm, np.float64),
                          np.array(self.grid.voxel_mm, np.float64))
        self._attenuation: dict[bytes, np.ndarray] = {}
        if mu_map is None:
            self._mu = np.zeros((0, 0, 0), np.float32)
            self._mu_geometry = self._geometry
        else:
            mu = mu_map if isinstance(mu_map, Image) else self.grid.image(mu_map, "1/mm")
            if isinstance(mu_map, np.ndarray) and mu_map.shape != self.grid.shape:
                raise UserError(f"mu-map shape {mu_map.shape} is not the grid's "
                                f"{self.grid.shape}")
            if np.any(~np.isfinite(mu.array)) or np.any(mu.array < 0):
                raise UserError("mu-map must be finite and >= 0 (1/mm)")
            self._mu = pad(mu.array)
            self._mu_geometry = (np.array(mu.origin_mm, np.float64),
                                 np.array(mu.voxel_mm, np.float64))

    def _views(self, views: np.ndarray | None) -> np.ndarray:
        """Flat (head * views_per_head + view) indices; all when None."""
        if views is None:
            return np.arange(self._angles.size)
        return np.asarray(views, np.int64)

    def _factors(self, v: np.ndarray) -> np.ndarray:
        """exp(-integral mu) [view of v, depth plane, row, column] from each plane's lattice
        points to the collimator (empty without a mu-map), kept while the cache has room."""
        if not self._mu.size:
            return np.ones((0, 0, 0, 0), np.float32)
        key = v.tobytes()
        if key in self._attenuation:
            return self._attenuation[key]
        att = np.empty((v.size, self._taps.shape[0], *self.shape[2:]), np.float32)
        apply_threads()
        _spect_attenuation(self._mu, *self._mu_geometry, self._angles, v, self.spect.pixel_mm,
                           self._depth0, att)
        kept = sum(a.nbytes for a in self._attenuation.values())
        if kept + att.nbytes <= ATTENUATION_CACHE_MB << 20:
            self._attenuation[key] = att
        return att

    def forward(self, image: np.ndarray, views: np.ndarray | None = None) -> np.ndarray:
        """Expected counts [head, view, row, column] (zeros in views not asked for)."""
        if tuple(image.shape) != self.grid.shape:
            raise UserError(f"image shape {image.shape} is not the grid's {self.grid.shape}")
        out = np.zeros((self._angles.size, *self.shape[2:]), np.float32)
        v = self._views(views)
        apply_threads()
        _spect_forward(pad(image), *self._geometry, self._factors(v), self._angles, v,
                       self.spect.pixel_mm, self._depth0, self._taps, self._scale, out)
        return out.reshape(self.shape)

    def back(self, projections: np.ndarray, views: np.ndarray | None = None) -> np.ndarray:
        """The adjoint of :meth:`forward` applied to ``projections`` (only ``views``)."""
        p = np.ascontiguousarray(projections, np.float32)
        if p.shape != self.shape:
            raise UserError(f"projections must be [head, view, row, column] {self.shape}, "
                            f"got {p.shape}")
        out = np.zeros(tuple(n + 2 for n in self.grid.shape), np.float32)
        v = self._views(views)
        att = self._factors(v)
        apply_threads()
        _spect_back(p.reshape(-1, *self.shape[2:]), *self._geometry, att, self._angles, v,
                    self.spect.pixel_mm, self._depth0, self._taps, self._scale, get_threads(),
                    out)
        return np.ascontiguousarray(out[1:-1, 1:-1, 1:-1])


def spect_osem(projections: np.ndarray, scanner: Scanner, scatter: np.ndarray | None = None,
               mu_map: Image | np.ndarray | None = None, iterations: int = 4, subsets: int = 8,
               grid: Grid | None = None, image: Image | None = None,
               intrinsic_fwhm_mm: float = 0.0, callback=None,
               energy_kev: float | None = None) -> Image:
    """OSEM of photopeak ``projections`` [head, view, row, column] (counts); ``scatter`` the
    additive scatter estimate in the same layout (e.g. :func:`tew_scatter`); ``mu_map`` 1/mm at
    the photon energy (an Image on any grid, or an array on ``grid``). Subsets interleave the view
    index (each holds every head's views v, v + subsets, ...). ``callback(iteration, subset,
    image)`` after every subset; ``energy_kev`` the photopeak (None: the centre of the
    scanner's acquisition window). Returns counts per voxel over the acquisition."""
    proj = SpectProjector(scanner, grid, mu_map, intrinsic_fwhm_mm, energy_kev)
    y = np.asarray(projections, np.float32)
    if y.shape != proj.shape:
        raise UserError(f"projections must be [head, view, row, column] {proj.shape}, "
                        f"got {y.shape}")
    if np.any(~(y >= 0)):
        raise UserError("projections must be counts >= 0")
    additive = np.zeros_like(y) if scatter is None else np.asarray(scatter, np.float32)
    if additive.shape != y.shape:
        raise UserError(f"scatter must have the projections' shape {y.shape}, "
                        f"got {additive.shape}")
    n_views = proj.shape[1]
    if not 1 <= subsets <= n_views or iterations < 0:
        raise UserError(f"subsets must be between 1 and {n_views} and iterations >= 0, "
                        f"got {subsets}, {iterations}")
    heads = np.arange(proj.shape[0])[:, None] * n_views
    parts = [(heads + np.arange(s, n_views, subsets)[None, :]).ravel() for s in range(subsets)]
    ones = np.ones_like(y)
    sens = [proj.back(ones, v) for v in parts]
    if image is not None:
        if image.grid.shape != proj.grid.shape:
            raise UserError(f"warm-start image grid {image.grid} is not {proj.grid}")
        x = image.array.astype(np.float32).copy()
    else:
        total = max(float(y.sum() - additive.sum()), 1.0)
        x = (sum(sens) > 0).astype(np.float32)
        x *= np.float32(total / max(float((sum(sens) * x).sum()), 1e-30))
    for it in range(iterations):
        for s, views in enumerate(parts):
            ybar = proj.forward(x, views) + additive
            ratio = np.divide(y, ybar, out=np.zeros_like(y), where=ybar > 0)
            back = proj.back(ratio, views)
            x *= np.divide(back, sens[s], out=np.zeros_like(back), where=sens[s] > 0)
            if callback is not None:
                callback(it, s, proj.grid.image(x.copy(), "counts"))
    return Image(x, proj.grid.voxel_mm, proj.grid.origin_mm, "counts",
                 {"iterations": iterations, "subsets": subsets,
                  "attenuation": mu_map is not None, "scatter": scatter is not None})


# ------------------------------------------------------------------------------------ kernels


def _gaussian_taps(sigma_px: np.ndarray) -> np.ndarray:
    """(planes, 2 J + 1) float32 normalised Gaussian taps, J = ceil(3 sigma) of the widest; a
    plane's taps beyond its own 3 sigma are zero (and skipped by :func:`_blur`)."""
    j = max(1, math.ceil(BLUR_NSIGMA * float(sigma_px.max())))
    x = np.arange(-j, j + 1)[None, :]
    s = np.maximum(sigma_px, 1e-3)[:, None]
    taps = np.exp(-0.5 * (x / s) ** 2) * (np.abs(x) <= np.ceil(BLUR_NSIGMA * s))
    return (taps / taps.sum(axis=1, keepdims=True)).astype(np.float32)


@numba.njit(nogil=True, cache=True, fastmath=True)
def _lattice(angle, pixel, depth0, k, rows, cols, origin, voxel):
    """Depth plane k of a view in padded voxel-index coordinates: the point of (row 0, column 0)
    and the steps per column and per row."""
    ca, sa = math.cos(angle), math.sin(angle)
    w = depth0 - k * pixel
    u0 = -(cols - 1) / 2 * pixel
    z0 = -(rows - 1) / 2 * pixel
    f0 = ((w * ca - u0 * sa - origin[0]) / voxel[0] + 1.0,
          (w * sa + u0 * ca - origin[1]) / voxel[1] + 1.0,
          (z0 - origin[2]) / voxel[2] + 1.0)
    return f0, (-sa * pixel / voxel[0], ca * pixel / voxel[1]), pixel / voxel[2]


@numba.njit(nogil=True, cache=True, fastmath=True)
def _trilinear(shape, fx, fy, fz):
    """Flat padded index of the lower corner, the fractions and the strides; ok False outside."""
    if not (fx >= 0.0 and fy >= 0.0 and fz >= 0.0 and fx < shape[0] - 1.0
            and fy < shape[1] - 1.0 and fz < shape[2] - 1.0):
        return False, 0, 0.0, 0.0, 0.0, 0, 0
    i, j, k = int(fx), int(fy), int(fz)
    sy = shape[2]
    sx = shape[1] * sy
    return True, i * sx + j * sy + k, fx - i, fy - j, fz - k, sx, sy


@numba.njit(nogil=True, cache=True, fastmath=True)
def _sample_plane(img, f0, df, dz, plane):
    """plane[r, c] = image (padded, flat) at the lattice points (trilinear, 0 outside)."""
    rows, cols = plane.shape
    f = img.reshape(-1)
    for r in range(rows):
        fz = f0[2] + r * dz
        for c in range(cols):
            ok, b, ax, ay, az, sx, sy = _trilinear(img.shape, f0[0] + c * df[0],
                                                  f0[1] + c * df[1], fz)
            if not ok:
                plane[r, c] = 0.0
                continue
            if az == 0.0:  # planes on the voxels' (a detector row per voxel row): bilinear
                plane[r, c] = ((1 - ax) * ((1 - ay) * f[b] + ay * f[b + sy])
                               + ax * ((1 - ay) * f[b + sx] + ay * f[b + sx + sy]))
                continue
            plane[r, c] = ((1 - ax) * ((1 - ay) * ((1 - az) * f[b] + az * f[b + 1])
                                       + ay * ((1 - az) * f[b + sy] + az * f[b + sy + 1]))
                           + ax * ((1 - ay) * ((1 - az) * f[b + sx] + az * f[b + sx + 1])
                                   + ay * ((1 - az) * f[b + sx + sy]
                                           + az * f[b + sx + sy + 1])))


@numba.njit(nogil=True, cache=True, fastmath=True)
def _spread_plane(img, f0, df, dz, plane):
    """The adjoint of :func:`_sample_plane`: add plane's values into the image."""
    rows, cols = plane.shape
    f = img.reshape(-1)
    for r in range(rows):
        fz = f0[2] + r * dz
        for c in range(cols):
            v = plane[r, c]
            if v == 0.0:
                continue
            ok, b, ax, ay, az, sx, sy = _trilinear(img.shape, f0[0] + c * df[0],
                                                  f0[1] + c * df[1], fz)
            if not ok:
                continue
            if az == 0.0:  # as in _sample_plane: the z neighbour's weight is 0
                f[b] += (1 - ax) * (1 - ay) * v
                f[b + sy] += (1 - ax) * ay * v
                f[b + sx] += ax * (1 - ay) * v
                f[b + sx + sy] += ax * ay * v
                continue
            f[b] += (1 - ax) * (1 - ay) * (1 - az) * v
            f[b + 1] += (1 - ax) * (1 - ay) * az * v
            f[b + sy] += (1 - ax) * ay * (1 - az) * v
            f[b + sy + 1] += (1 - ax) * ay * az * v
            f[b + sx] += ax * (1 - ay) * (1 - az) * v
            f[b + sx + 1] += ax * (1 - ay) * az * v
            f[b + sx + sy] += ax * ay * (1 - az) * v
            f[b + sx + sy + 1] += ax * ay * az * v


@numba.njit(nogil=True, cache=True, fastmath=True)
def _blur(plane, taps, tmp, out):
    """out = separable truncated convolution of plane [rows, columns] with symmetric taps (zero
    taps at the ends skipped); inner loops run along contiguous columns."""
    rows, cols = plane.shape
    j0 = (taps.size - 1) // 2
    j = j0
    while j > 0 and taps[j0 + j] == 0.0:
        j -= 1
    tmp[:] = 0.0
    out[:] = 0.0
    for r in range(rows):
        for t in range(-j, j + 1):
            w = taps[j0 + t]
            for c in range(max(0, -t), min(cols, cols - t)):
                tmp[r, c] += w * plane[r, c + t]
    for r in range(rows):
        for t in range(max(-j, -r), min(j, rows - 1 - r) + 1):
            w = taps[j0 + t]
            for c in range(cols):
                out[r, c] += w * tmp[r + t, c]


@numba.njit(nogil=True, cache=True, fastmath=True)
def _attenuate(plane, factors):
    """plane *= factors (a depth plane's attenuation)."""
    rows, cols = plane.shape
    for r in range(rows):
        for c in range(cols):
            plane[r, c] *= factors[r, c]


@numba.njit(nogil=True, cache=True, fastmath=True, parallel=True)
def _spect_attenuation(mu, mu_origin, mu_voxel, angles, views, pixel, depth0, out):
    """out[q, k] = exp(-(path + mu step / 2)) at depth plane k of view views[q]: path the mu
    integral from the plane before it to the collimator, the step the plane's own."""
    rows, cols = out.shape[2], out.shape[3]
    for q in numba.prange(views.size):
        mu_plane = np.empty((rows, cols), np.float32)
        path = np.zeros((rows, cols), np.float32)
        for k in range(out.shape[1]):
            m0, mdf, mdz = _lattice(angles[views[q]], pixel, depth0, k, rows, cols, mu_origin,
                                    mu_voxel)
            _sample_plane(mu, m0, mdf, mdz, mu_plane)
            for r in range(rows):
                for c in range(cols):
                    m = mu_plane[r, c] * pixel
                    out[q, k, r, c] = math.exp(-(path[r, c] + 0.5 * m))
                    path[r, c] += m


@numba.njit(nogil=True, cache=True, fastmath=True, parallel=True)
def _spect_forward(img, origin, voxel, att, angles, views, pixel, depth0, taps, scale, out):
    rows, cols = out.shape[1], out.shape[2]
    for q in numba.prange(views.size):
        v = views[q]
        plane = np.empty((rows, cols), np.float32)
        tmp = np.empty((rows, cols), np.float32)
        blurred = np.empty((rows, cols), np.float32)
        for k in range(taps.shape[0]):
            f0, df, dz = _lattice(angles[v], pixel, depth0, k, rows, cols, origin, voxel)
            _sample_plane(img, f0, df, dz, plane)
            if att.size:
                _attenuate(plane, att[q, k])
            _blur(plane, taps[k], tmp, blurred)
            for r in range(rows):
                for c in range(cols):
                    out[v, r, c] += scale * blurred[r, c]


@numba.njit(nogil=True, cache=True, fastmath=True, parallel=True)
def _spect_back(proj, origin, voxel, att, angles, views, pixel, depth0, taps, scale, n_threads,
                out):
    rows, cols = proj.shape[1], proj.shape[2]
    n = views.size
    n_chunks = max(1, min(n, n_threads))
    buffers = np.zeros((n_chunks, out.shape[0], out.shape[1], out.shape[2]), np.float32)
    for chunk in numba.prange(n_chunks):
        buf = buffers[chunk]
        plane = np.empty((rows, cols), np.float32)
        tmp = np.empty((rows, cols), np.float32)
        for q in range(chunk * n // n_chunks, (chunk + 1) * n // n_chunks):
            v = views[q]
            for k in range(taps.shape[0]):
                f0, df, dz = _lattice(angles[v], pixel, depth0, k, rows, cols, origin, voxel)
                _blur(proj[v], taps[k], tmp, plane)
                if att.size:
                    _attenuate(plane, att[q, k])
                for r in range(rows):
                    for c in range(cols):
                        plane[r, c] *= scale
                _spread_plane(buf, f0, df, dz, plane)
    for b in range(n_chunks):
        out += buffers[b]
