"""A virtual patient's left ventricle: its shapes, its AHA 17 segments and a perfusion defect in them.

The ventricle is a truncated ellipsoidal shell along its long axis u (base to apex, scanner
mm): the cavity an ellipsoid of the end-diastolic radius and length centred on the basal plane's
centre B, the myocardium one wall thickness larger, the part behind the basal plane cut away by
the valve plane (a cylinder of blood). Segments follow the product's polar map
(:mod:`recon.spect.polarmap`): angles about u from the anterior direction (-y made perpendicular
to u) towards the septum (u x anterior), the cavity's length in basal, mid and apical thirds, the
apex beyond the cavity's end. A defect covers, in its coronary territory, an arc of angles, a
span along the axis (from the apex for the LAD, from the base for the RCA and LCx) and the inner
part of the wall (its transmurality).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from emulator.phantoms.shapes import Shape, cylinder, ellipsoid, rotation_to
from emulator.phantoms.truth import DefectTruth, LvTruth

#: The AHA 17-segment model's coronary territories (DOMAIN.md).
TERRITORIES = {"LAD": (1, 2, 7, 8, 13, 14, 17), "RCA": (3, 4, 9, 10, 15),
               "LCx": (5, 6, 11, 12, 16)}
#: Each territory's centre angle (degrees from anterior towards the septum) in the basal and
#: mid rings, and the half-width of its segments there: anterior and anteroseptal (LAD),
#: inferoseptal and inferior (RCA), inferolateral and anterolateral (LCx).
TERRITORY_ANGLE_DEG = {"LAD": 30.0, "RCA": 150.0, "LCx": 270.0}
TERRITORY_HALF_WIDTH_DEG = 60.0


def segment_of(ring: int, theta_deg: np.ndarray) -> np.ndarray:
    """Segment numbers (1-16) of short-axis angles theta (0 = anterior, 90 = septal) in ring 0
    (basal), 1 (mid) or 2 (apical)."""
    t = np.mod(np.asarray(theta_deg, float), 360.0)
    if ring < 2:
        return 1 + 6 * ring + (np.floor((t + 30.0) / 60.0).astype(int) % 6)
    return 13 + (np.floor((t + 45.0) / 90.0).astype(int) % 4)


@dataclass(frozen=True)
class Ventricle:
    """The left ventricle's geometry (mm)."""

    base_mm: np.ndarray        # the basal plane's centre B
    axis: np.ndarray           # u, unit, base to apex
    cavity_radius_mm: float
    cavity_length_mm: float    # B to the cavity's apex
    wall_mm: float

    @property
    def rotation(self) -> np.ndarray:
        return rotation_to(tuple(self.axis))

    @property
    def anterior(self) -> np.ndarray:
        a = np.array([0.0, -1.0, 0.0])
        a = a - (a @ self.axis) * self.axis
        return a / np.linalg.norm(a)

    @property
    def septal(self) -> np.ndarray:
        return np.cross(self.axis, self.anterior)

    @property
    def outer(self) -> tuple[float, float]:
        """(radius, length) of the myocardium's outer ellipsoid."""
        return self.cavity_radius_mm + self.wall_mm, self.cavity_length_mm + self.wall_mm

    def shapes(self) -> dict[str, Shape]:
        """The myocardium, cavity and valve plane, to be painted in that order."""
        r, length = self.outer
        turn, b = self.rotation, tuple(self.base_mm)
        return {"myocardium": ellipsoid(b, (r, r, length), turn),
                "blood_pool": ellipsoid(b, (self.cavity_radius_mm, self.cavity_radius_mm,
                                            self.cavity_length_mm), turn),
                "valve_plane": cylinder(tuple(self.base_mm - length * self.axis), 2 * r + 4.0,
                                        2 * length, turn)}

    def truth(self) -> LvTruth:
        apex = self.base_mm + self.cavity_length_mm * self.axis
        return LvTruth(tuple(float(v) for v in apex), tuple(float(v) for v in self.base_mm),
                       tuple(float(v) for v in self.anterior),
                       (3.0, 1.5 * self.outer[0]))

    def coordinates(self, points_mm: np.ndarray) -> tuple[np.ndarray, ...]:
        """(in_wall, t, theta_deg, depth) of points (N, 3): whether each is in the myocardium,
        its place along the cavity (0 base, 1 the cavity's apex), its angle and its depth in the
        wall (0 endocardium, 1 epicardium)."""
        p = np.asarray(points_mm, float) - self.base_mm
        along = p @ self.axis
        radial = p - along[:, None] * self.axis
        ro, lo = self.outer
        ri, li = self.cavity_radius_mm, self.cavity_length_mm
        rho_out = np.sqrt((radial ** 2).sum(axis=1) / ro ** 2 + along ** 2 / lo ** 2)
        rho_in = np.sqrt((radial ** 2).sum(axis=1) / ri ** 2 + along ** 2 / li ** 2)
        in_wall = (rho_out <= 1.0) & (rho_in > 1.0) & (along >= 0.0)
        depth = (rho_in - 1.0) / np.maximum((rho_in - 1.0) + (1.0 - rho_out), 1e-9)
        theta = np.degrees(np.arctan2(radial @ self.septal, radial @ self.anterior)) % 360.0
        return in_wall, along / li, theta, np.clip(depth, 0.0, 1.0)

    def segments(self, t: np.ndarray, theta_deg: np.ndarray) -> np.ndarray:
        """The AHA segment (1-17) of wall points at ``t`` and ``theta_deg``."""
        out = np.full(t.shape, 17, int)
        for ring in range(3):
            inside = (t <= 1.0) & (np.minimum((3.0 * t).astype(int), 2) == ring)
            out[inside] = segment_of(ring, theta_deg[inside])
        return out


@dataclass(frozen=True)
class Defect:
    """A perfusion defect in a territory: an arc of ``half_width_deg`` about the territory's
    angle, ``span`` of the cavity's length (from the apex for the LAD, the base otherwise), the
    inner ``transmurality`` of the wall, its uptake reduced by ``severity``."""

    territory: str
    half_width_deg: float
    span: float
    transmurality: float
    severity: float

    def holds(self, t: np.ndarray, theta_deg: np.ndarray, depth: np.ndarray) -> np.ndarray:
        off = np.abs((theta_deg - TERRITORY_ANGLE_DEG[self.territory] + 180.0) % 360.0 - 180.0)
        along = t >= 1.0 - self.span if self.territory == "LAD" else t <= self.span
        return (off <= self.half_width_deg) & along & (depth <= self.transmurality)


def wall_points(lv: Ventricle, step_mm: float = 1.0) -> tuple[np.ndarray, ...]:
    """(t, theta, depth) of the points of a ``step_mm`` lattice in the myocardium (the lattice
    in the ventricle's own frame, over the box around its wall)."""
    ro, lo = lv.outer
    across = np.arange(-ro, ro + step_mm / 2, step_mm)
    along = np.arange(0.0, lo + step_mm / 2, step_mm)
    x, y, t = (g.reshape(-1) for g in np.meshgrid(across, across, along, indexing="ij"))
    points = (lv.base_mm + x[:, None] * lv.anterior + y[:, None] * lv.septal
              + t[:, None] * lv.axis)
    inside, t, theta, depth = lv.coordinates(points)
    return t[inside], theta[inside], depth[inside]


def fitted_defect(lv: Ventricle, territory: str, extent_percent: float, span: float,
                  transmurality: float, severity: float) -> Defect:
    """The defect of the given shape whose arc (10 degrees each side up to its territory's
    half-width) makes it cover ``extent_percent`` of the myocardium; where the territory's whole
    arc is too little, a longer span, then a deeper reach into the wall (as near as they
    allow)."""
    t, theta, depth = wall_points(lv, 1.5)
    widths = np.arange(10.0, TERRITORY_HALF_WIDTH_DEG + 0.1, 2.5)
    for s_, d_ in ((span, transmurality), (1.0, transmurality), (1.0, 1.0)):
        covered = np.array([100.0 * Defect(territory, w, s_, d_, severity).holds(
            t, theta, depth).mean() for w in widths])
        if covered[-1] >= extent_percent or (s_, d_) == (1.0, 1.0):
            best = widths[int(np.argmin(np.abs(covered - extent_percent)))]
            return Defect(territory, float(best), s_, d_, severity)
    raise AssertionError("unreachable")


def defect_truth(lv: Ventricle, defect: Defect) -> DefectTruth:
    """The defect's extent (% of the myocardium) and the share of each segment it covers."""
    t, theta, depth = wall_points(lv, 1.0)
    hit = defect.holds(t, theta, depth)
    seg = lv.segments(t, theta)
    shares = {int(s): round(float(hit[seg == s].mean()), 3) for s in range(1, 18)
              if np.any(seg == s) and hit[seg == s].any()}
    return DefectTruth(defect.territory, round(100.0 * float(hit.mean()), 2),
                       defect.severity, defect.transmurality, shares)


def axis_from_angles(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """The long axis (base to apex) whose projection on the axial plane points ``azimuth_deg``
    from the patient's left towards anterior, and on the coronal plane ``elevation_deg`` below
    the horizontal towards the left (Engblom et al.'s transverse and frontal angles)."""
    u = np.array([1.0, -math.tan(math.radians(azimuth_deg)),
                  -math.tan(math.radians(elevation_deg))])
    return u / np.linalg.norm(u)
