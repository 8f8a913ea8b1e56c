"""Solid shapes of the phantoms: ellipsoids (spheres), elliptic cylinders and boxes, in scanner mm.

A shape maps scanner coordinates to its local unit shape: ``q = rotation @ (p - centre) /
semi_axes``; the unit ellipsoid is ``|q| <= 1``, the unit cylinder ``qx^2 + qy^2 <= 1, |qz| <= 1``
(its axis is the local z) and the unit box ``max |q_i| <= 1``. ``rotation``'s rows are the
shape's local axes in scanner coordinates.
The numba functions below work on packed shapes: a phantom's arrays, or rows of floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from emulator.jit import inline
from emulator.simd import sel, tab

ELLIPSOID = 0
CYLINDER = 1
BOX = 2
_KINDS = {"ellipsoid": ELLIPSOID, "cylinder": CYLINDER, "box": BOX}


@dataclass(frozen=True, eq=False)
class Shape:
    """An ellipsoid, an elliptic cylinder or a box (lengths mm)."""

    kind: str
    centre_mm: tuple[float, float, float]
    semi_axes_mm: tuple[float, float, float]
    """Ellipsoid: the three semi-axes. Cylinder: the two semi-axes of the cross-section and half
    the length. Box: half its three edges."""
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))

    @property
    def code(self) -> int:
        return _KINDS[self.kind]

    @property
    def volume_mm3(self) -> float:
        a, b, c = self.semi_axes_mm
        if self.kind == "box":
            return 8.0 * a * b * c
        return (4.0 / 3.0 if self.kind == "ellipsoid" else 2.0) * math.pi * a * b * c

    def local(self, points_mm: np.ndarray) -> np.ndarray:
        """Points (N, 3) in the shape's unit coordinates."""
        p = np.asarray(points_mm, dtype=np.float64) - np.asarray(self.centre_mm)
        return (p @ self.rotation.T) / np.asarray(self.semi_axes_mm)

    def contains(self, points_mm: np.ndarray) -> np.ndarray:
        """Boolean mask of the points (N, 3) inside the shape."""
        q = self.local(np.atleast_2d(points_mm))
        if self.kind == "ellipsoid":
            return np.einsum("ij,ij->i", q, q) <= 1.0
        if self.kind == "box":
            return np.all(np.abs(q) <= 1.0, axis=1)
        return (q[:, 0] ** 2 + q[:, 1] ** 2 <= 1.0) & (np.abs(q[:, 2]) <= 1.0)

    def moved(self, turn: np.ndarray, shift_mm: tuple[float, float, float]) -> Shape:
        """The shape carried by the rigid motion ``p -> turn @ p + shift_mm`` (``turn`` a 3 x 3
        rotation matrix, about the scanner's origin)."""
        r = np.asarray(turn, dtype=np.float64)
        centre = r @ np.asarray(self.centre_mm) + np.asarray(shift_mm, dtype=np.float64)
        return Shape(self.kind, tuple(float(v) for v in centre), self.semi_axes_mm,
                     np.asarray(self.rotation) @ r.T)

    def bounding_box(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) corners (mm) of an axis-aligned box enclosing the shape."""
        ax = np.asarray(self.semi_axes_mm)
        half = np.abs(self.rotation.T * ax[None, :]).sum(axis=1)
        c = np.asarray(self.centre_mm)
        return c - half, c + half


def sphere(centre_mm: tuple[float, float, float], diameter_mm: float) -> Shape:
    r = diameter_mm / 2.0
    return Shape("ellipsoid", tuple(map(float, centre_mm)), (r, r, r))


def ellipsoid(centre_mm: tuple[float, float, float], semi_axes_mm: tuple[float, float, float],
              rotation: np.ndarray | None = None) -> Shape:
    return Shape("ellipsoid", tuple(map(float, centre_mm)), tuple(map(float, semi_axes_mm)),
                 np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64))


def cylinder(centre_mm: tuple[float, float, float], diameter_mm: float | tuple[float, float],
             length_mm: float, rotation: np.ndarray | None = None) -> Shape:
    """A cylinder along z (or along the third row of ``rotation``); an elliptic one when
    ``diameter_mm`` is a pair."""
    dx, dy = (diameter_mm, diameter_mm) if np.isscalar(diameter_mm) else diameter_mm
    return Shape("cylinder", tuple(map(float, centre_mm)), (dx / 2.0, dy / 2.0, length_mm / 2.0),
                 np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64))


def box(centre_mm: tuple[float, float, float], size_mm: tuple[float, float, float],
        rotation: np.ndarray | None = None) -> Shape:
    """A box of edges ``size_mm`` along the rows of ``rotation`` (default the scanner's axes)."""
    return Shape("box", tuple(map(float, centre_mm)), tuple(float(v) / 2.0 for v in size_mm),
                 np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64))


def rotation_to(axis: tuple[float, float, float]) -> np.ndarray:
    """A rotation whose third row (the local z axis) is the unit vector along ``axis``."""
    w = np.asarray(axis, dtype=np.float64)
    w = w / np.linalg.norm(w)
    helper = np.array([1.0, 0.0, 0.0]) if abs(w[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(helper, w)
    u /= np.linalg.norm(u)
    return np.stack([u, np.cross(w, u), w])


# --------------------------------------------------------------------------- numba kernels


@inline
def unit_contains(kind, qx, qy, qz):
    """Whether the unit coordinates lie in the unit shape of ``kind`` (branch-free)."""
    r2 = qx * qx + qy * qy
    cube = (abs(qx) <= 1.0) & (abs(qy) <= 1.0) & (abs(qz) <= 1.0)
    return sel(kind == ELLIPSOID, r2 + qz * qz <= 1.0,
               sel(kind == CYLINDER, (r2 <= 1.0) & (abs(qz) <= 1.0), cube))


#: A packed shape is a row of ROW floats: kind, centre (3), M = diag(1 / semi-axes) @ rotation
#: (9, row-major: scanner -> unit coordinates).
ROW = 13


def pack_row(shape: Shape) -> np.ndarray:
    """The shape as one row of floats for the kernels."""
    m = np.asarray(shape.rotation) / np.asarray(shape.semi_axes_mm)[:, None]
    return np.concatenate([[shape.code], shape.centre_mm, m.ravel()]).astype(np.float64)


@inline
def to_unit(g, q, x, y, z):
    """Unit coordinates of the point (x, y, z) mm in the shape of row ``q`` of ``g`` (a
    C-contiguous array of packed rows; read as a table, see :func:`emulator.simd.tab`)."""
    o = q * g.shape[1]
    dx, dy, dz = x - tab(g, o + 1), y - tab(g, o + 2), z - tab(g, o + 3)
    return (tab(g, o + 4) * dx + tab(g, o + 5) * dy + tab(g, o + 6) * dz,
            tab(g, o + 7) * dx + tab(g, o + 8) * dy + tab(g, o + 9) * dz,
            tab(g, o + 10) * dx + tab(g, o + 11) * dy + tab(g, o + 12) * dz)


@inline
def unit_direction(g, q, ux, uy, uz):
    """The direction u in the unit coordinates of the shape of row ``q`` of ``g`` (its
    scanner-to-unit map, without the shift; not normalised)."""
    o = q * g.shape[1]
    return (tab(g, o + 4) * ux + tab(g, o + 5) * uy + tab(g, o + 6) * uz,
            tab(g, o + 7) * ux + tab(g, o + 8) * uy + tab(g, o + 9) * uz,
            tab(g, o + 10) * ux + tab(g, o + 11) * uy + tab(g, o + 12) * uz)


@inline
def row_contains(g, q, x, y, z):
    """Whether the point (x, y, z) mm lies inside the shape of row ``q`` of ``g``."""
    qx, qy, qz = to_unit(g, q, x, y, z)
    return unit_contains(tab(g, q * g.shape[1]), qx, qy, qz)


@inline
def row_behind(g, q, x, y, z, ux, uy, uz):
    """Whether the ray from the point (x, y, z) mm along u never enters the shape of row ``q``
    of ``g``: it lies outside and moves away (from an ellipsoid's centre, from a cylinder's
    axis or beyond an end cap away from it; in unit coordinates the distance to the centre,
    the axis or the cap's plane then only grows; a box is taken as the cylinder around it,
    radius sqrt 2 in unit coordinates, beyond its end faces: the test stays as cheap as a
    cylinder's, which keeps the lanes' loop vectorised). A sufficient test; branch-free."""
    qx, qy, qz = to_unit(g, q, x, y, z)
    vx, vy, vz = unit_direction(g, q, ux, uy, uz)
    r2, radial = qx * qx + qy * qy, qx * vx + qy * vy
    sphere = (r2 + qz * qz > 1.0) & (radial + qz * vz >= 0.0)
    kind = tab(g, q * g.shape[1])
    side = (r2 > sel(kind == BOX, 2.0, 1.0)) & (radial >= 0.0)
    cylinder = side | ((abs(qz) > 1.0) & (qz * vz >= 0.0))
    return sel(kind == ELLIPSOID, sphere, cylinder)


@inline
def ray_interval(g, q, px, py, pz, ux, uy, uz):
    """(t_in, t_out) of the line p + t u inside the shape packed in row ``q`` of ``g`` (t in mm
    when |u| = 1); t_in > t_out when the line misses it."""
    qx, qy, qz = to_unit(g, q, px, py, pz)
    vx, vy, vz = unit_direction(g, q, ux, uy, uz)
    if g[q, 0] == BOX:
        t0, t1 = -np.inf, np.inf
        for a, v in ((qx, vx), (qy, vy), (qz, vz)):
            if v == 0.0:
                if abs(a) > 1.0:
                    return np.inf, -np.inf
                continue
            s0, s1 = (-1.0 - a) / v, (1.0 - a) / v
            if s0 > s1:
                s0, s1 = s1, s0
            t0, t1 = max(t0, s0), min(t1, s1)
        return t0, t1
    if g[q, 0] == ELLIPSOID:
        a = vx * vx + vy * vy + vz * vz
        b = qx * vx + qy * vy + qz * vz
        c = qx * qx + qy * qy + qz * qz - 1.0
        disc = b * b - a * c
        if disc < 0.0:
            return np.inf, -np.inf
        s = math.sqrt(disc)
        return (-b - s) / a, (-b + s) / a
    a = vx * vx + vy * vy
    c = qx * qx + qy * qy - 1.0
    if a == 0.0:
        if c > 0.0:
            return np.inf, -np.inf
        t0, t1 = -np.inf, np.inf
    else:
        b = qx * vx + qy * vy
        disc = b * b - a * c
        if disc < 0.0:
            return np.inf, -np.inf
        s = math.sqrt(disc)
        t0, t1 = (-b - s) / a, (-b + s) / a
    if vz == 0.0:
        if abs(qz) > 1.0:
            return np.inf, -np.inf
        return t0, t1
    za, zb = (-1.0 - qz) / vz, (1.0 - qz) / vz
    if za > zb:
        za, zb = zb, za
    return max(t0, za), min(t1, zb)
