"""The built-in phantoms, sized to the scanner they are put in.

Every builder takes the scanner (for its field of view) and returns a :class:`Phantom`. Sizes
follow the standards where they fit and shrink with the field of view where they do not; the
sizes used are in the phantom's regions, so figures of merit never assume the nominal ones.
Coordinates: scanner mm, LPS patient frame (+x left, +y posterior, +z superior).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from emulator.phantoms.compartments import FengInput, Kinetics, TissueClass, TissueModel
from emulator.phantoms.model import LineSource, Phantom, PointSource, Region
from emulator.phantoms.shapes import Shape, cylinder, ellipsoid, rotation_to, sphere
from hw.scanner import Scanner

#: Polyethylene (0.96 g/cm3, 3 % more electrons per gram than water): water-equivalent density.
POLYETHYLENE = 0.99
LUNG = 0.3
BONE = 1.8
#: PMMA (1.19 g/cm3, 3 % fewer electrons per gram than water): water-equivalent density.
PMMA = 1.16
#: Air (0.0012 g/cm3, 10 % fewer electrons per gram than water): water-equivalent density.
AIR = 0.0011
#: NEMA NU 2 scatter phantom: 203 mm diameter x 700 mm, line source 45 mm below the axis.
NU2_DIAMETER_MM, NU2_LENGTH_MM, NU2_OFFSET_MM = 203.0, 700.0, 45.0


def _body_diameter(scanner: Scanner, nominal_mm: float) -> float:
    """The nominal diameter, or 85 % of the transaxial field of view when that is smaller."""
    return min(nominal_mm, 0.85 * scanner.transaxial_fov_mm)


def _body_length(scanner: Scanner) -> float:
    """The NU 2 phantom's 700 mm scaled to the scanner: twice the axial field of view, so that
    activity outside the field adds singles and randoms as it does in the standard test."""
    return min(NU2_LENGTH_MM, 2.0 * scanner.axial_fov_mm)


def blank(scanner: Scanner) -> Phantom:
    return Phantom("blank", "nothing in the scanner: the crystals' own Lu-176 alone (a blank scan "
                   "for the normalization and the daily check)", blank=True)


def point(scanner: Scanner) -> Phantom:
    return Phantom("point", "point source at the centre, in air",
                   sources=(PointSource("point", (0.0, 0.0, 0.0)),))


def point_water(scanner: Scanner) -> Phantom:
    d, length = _body_diameter(scanner, NU2_DIAMETER_MM), _body_length(scanner)
    return Phantom("point-water", f"point source at the centre of a {d:.0f} x {length:.0f} mm "
                   "water cylinder",
                   parts=(Region("water", cylinder((0, 0, 0), d, length), 0.0, 1.0),),
                   sources=(PointSource("point", (0.0, 0.0, 0.0)),))


def line(scanner: Scanner) -> Phantom:
    half = scanner.axial_fov_mm / 2.0
    return Phantom("line", "line source on the axis across the axial field of view, in air",
                   sources=(LineSource("line", (0.0, 0.0, -half), (0.0, 0.0, half)),))


def uniform_cylinder(scanner: Scanner, diameter_mm: float | None = None,
                     length_mm: float | None = None) -> Phantom:
    d = diameter_mm or _body_diameter(scanner, NU2_DIAMETER_MM)
    length = length_mm or _body_length(scanner)
    return Phantom("cylinder", f"uniform water cylinder {d:.0f} x {length:.0f} mm",
                   parts=(Region("cylinder", cylinder((0, 0, 0), d, length), 1.0, 1.0),))


def _line_in_cylinder(name: str, d: float, length: float, offset: float, line_length: float,
                      note: str) -> Phantom:
    half = line_length / 2.0
    return Phantom(name, f"{note}: polyethylene cylinder {d:.0f} x {length:.0f} mm, line source "
                   f"{offset:.1f} mm off axis",
                   parts=(Region("cylinder", cylinder((0, 0, 0), d, length), 0.0, POLYETHYLENE),),
                   sources=(LineSource("line", (0.0, -offset, -half), (0.0, -offset, half)),))


def nu2_scatter(scanner: Scanner, length_mm: float | None = None) -> Phantom:
    d = _body_diameter(scanner, NU2_DIAMETER_MM)
    length = length_mm or _body_length(scanner)
    return _line_in_cylinder("nu2-scatter", d, length, NU2_OFFSET_MM * d / NU2_DIAMETER_MM,
                             length, "NEMA NU 2 scatter phantom")


def nu4_mouse(scanner: Scanner) -> Phantom:
    return _line_in_cylinder("nu4-mouse", 25.0, 70.0, 10.0, 60.0, "NEMA NU 4 mouse phantom")


def nu4_rat(scanner: Scanner) -> Phantom:
    return _line_in_cylinder("nu4-rat", 50.0, 150.0, 17.5, 140.0, "NEMA NU 4 rat phantom")


#: NEMA NU 4 image-quality phantom (mm): PMMA body, its cavity, the rods' block and circle, the
#: cold chambers (inner diameter, length, wall, centres' distance from the axis).
NU4_IQ_BODY_D_MM, NU4_IQ_BODY_LENGTH_MM = 33.5, 56.0
NU4_IQ_CAVITY_D_MM, NU4_IQ_CAVITY_Z_MM = 30.0, (-25.0, 25.0)
NU4_IQ_RODS_Z_MM, NU4_IQ_ROD_CIRCLE_MM = (-25.0, -5.0), 7.0
NU4_IQ_ROD_DIAMETERS_MM = (1.0, 2.0, 3.0, 4.0, 5.0)
NU4_IQ_INSERT_D_MM, NU4_IQ_INSERT_Z_MM, NU4_IQ_INSERT_WALL_MM = 8.0, (10.0, 25.0), 1.0
NU4_IQ_INSERT_OFFSET_MM = 7.5


def _z_cylinder(x_mm: float, y_mm: float, diameter_mm: float, z_mm: tuple[float, float]
                ) -> Shape:
    """A cylinder along z from ``z_mm[0]`` to ``z_mm[1]``."""
    lo, hi = z_mm
    return cylinder((x_mm, y_mm, (lo + hi) / 2.0), diameter_mm, hi - lo)


def _nu4_iq_insert(name: str, x_mm: float, density: float) -> tuple[Region, Region]:
    """A cold chamber of the lid: its PMMA wall (bottom included) and its cold filling."""
    lo, hi = NU4_IQ_INSERT_Z_MM
    wall = NU4_IQ_INSERT_WALL_MM
    return (Region(f"{name}_wall", _z_cylinder(x_mm, 0.0, NU4_IQ_INSERT_D_MM + 2 * wall,
                                               (lo - wall, hi)), 0.0, PMMA),
            Region(name, _z_cylinder(x_mm, 0.0, NU4_IQ_INSERT_D_MM, (lo, hi)), 0.0, density))


def nu4_iq(scanner: Scanner) -> Phantom:
    """NEMA NU 4-2008 image-quality phantom (NEMA NU 4-2008 section 6, as reproduced by Goertzen
    et al., J Nucl Med 53:1300 (2012), and the Leeds Test Objects NU4 IQ phantom): a PMMA body
    33.5 mm across and 56 mm long on the scanner's axis, its cavity (z -25 to 25 mm) a 20 mm
    solid PMMA block (z -25 to -5) drilled through by five rods 1-5 mm across on a 7 mm circle
    (at 90 + 72 k degrees), filled from a uniform chamber 30 mm across (z -5 to 25); in it, hung
    from the lid (z 10 to 25), two cold chambers 8 mm across with 1 mm PMMA walls, at x = +7.5 mm
    filled with water and at x = -7.5 mm with air. Uniform water and rods have activity 1."""
    parts = [Region("body", _z_cylinder(0.0, 0.0, NU4_IQ_BODY_D_MM,
                                        (-NU4_IQ_BODY_LENGTH_MM / 2, NU4_IQ_BODY_LENGTH_MM / 2)),
                    0.0, PMMA),
             Region("uniform", _z_cylinder(0.0, 0.0, NU4_IQ_CAVITY_D_MM,
                                           (NU4_IQ_RODS_Z_MM[1], NU4_IQ_CAVITY_Z_MM[1])), 1.0, 1.0)]
    for k, d in enumerate(NU4_IQ_ROD_DIAMETERS_MM):
        phi = math.radians(90.0 + 72.0 * k)
        x, y = NU4_IQ_ROD_CIRCLE_MM * math.cos(phi), NU4_IQ_ROD_CIRCLE_MM * math.sin(phi)
        parts.append(Region(f"rod_{d:g}", _z_cylinder(x, y, d, NU4_IQ_RODS_Z_MM), 1.0, 1.0))
    parts += [*_nu4_iq_insert("water_insert", NU4_IQ_INSERT_OFFSET_MM, 1.0),
              *_nu4_iq_insert("air_insert", -NU4_IQ_INSERT_OFFSET_MM, AIR)]
    rods = ", ".join(f"{d:g}" for d in NU4_IQ_ROD_DIAMETERS_MM)
    return Phantom("nu4-iq", f"NEMA NU 4 image quality: {NU4_IQ_BODY_D_MM:g} mm PMMA body, hot "
                   f"rods {rods} mm, uniform chamber {NU4_IQ_CAVITY_D_MM:g} mm, cold water and "
                   f"air inserts {NU4_IQ_INSERT_D_MM:g} mm", parts=tuple(parts))


def nema_iq(scanner: Scanner) -> Phantom:
    """NEMA NU 2 image quality-like: six spheres 10-37 mm at 4:1 on a 57.2 mm circle in a warm
    cylinder, with a cold lung insert (density 0.3) on the axis."""
    s = min(1.0, _body_diameter(scanner, 200.0) / 200.0)
    body = Region("background", cylinder((0, 0, 0), 200.0 * s, 180.0 * s), 1.0, 1.0)
    lung = Region("lung_insert", cylinder((0, 0, 0), 50.0 * s, 180.0 * s), 0.0, LUNG)
    spheres = []
    for k, d in enumerate((10.0, 13.0, 17.0, 22.0, 28.0, 37.0)):
        phi = math.radians(60.0 * k)
        centre = (57.2 * s * math.cos(phi), 57.2 * s * math.sin(phi), 0.0)
        spheres.append(Region(f"sphere_{d:g}", sphere(centre, d * s), 4.0, None))
    sizes = ", ".join(f"{2 * r.shape.semi_axes_mm[0]:.1f}" for r in spheres)
    return Phantom("nema-iq", f"image quality: hot spheres {sizes} mm at 4:1, cold lung insert",
                   parts=(body, lung, *spheres))


def derenzo(scanner: Scanner) -> Phantom:
    """Hot rods in a cold water cylinder: six sectors of rods of one diameter each, spaced by
    twice the diameter, diameters from 0.6 to 2 crystal pitches."""
    pitch = float(np.linalg.norm(scanner.crystal_centres[1] - scanner.crystal_centres[0]))
    body_d = _body_diameter(scanner, 200.0)
    length = min(80.0, 0.5 * scanner.axial_fov_mm)
    pattern_r = 0.42 * body_d
    parts = [Region("background", cylinder((0, 0, 0), body_d, length), 0.0, 1.0)]
    for k, factor in enumerate((0.6, 0.8, 1.0, 1.25, 1.5, 2.0)):
        d = round(pitch * factor, 1)
        axis = np.array([math.cos(math.radians(60 * k + 30)), math.sin(math.radians(60 * k + 30))])
        perp = np.array([-axis[1], axis[0]])
        row, x = 0, 2.0 * d + 2.0
        while x + d / 2 <= pattern_r:
            for j in range(row + 1):
                t = (j - row / 2) * 2.0 * d
                c = x * axis + t * perp
                if math.hypot(*c) + d / 2 <= pattern_r:
                    parts.append(Region(f"rod_{d:g}_{row}_{j}", cylinder((c[0], c[1], 0.0), d,
                                                                         length), 1.0, None))
            row += 1
            x += 2.0 * d * math.sqrt(3) / 2
    sizes = sorted({float(r.name.split("_")[1]) for r in parts[1:]})
    return Phantom("derenzo", f"hot rods {', '.join(f'{v:g}' for v in sizes)} mm in a "
                   f"{body_d:.0f} mm cold cylinder", parts=tuple(parts))


#: Scalp (water-equivalent density; ICRU 46 skin 1.09 g/mL).
SCALP = 1.05


def brain(scanner: Scanner) -> Phantom:
    """Ellipsoidal head: scalp 5 mm, skull 7 mm, cerebrospinal fluid 3 mm, grey matter 4 : white
    matter 1, ventricles, basal ganglia and cerebellum (grey)."""
    s = min(1.0, 0.85 * scanner.transaxial_fov_mm / 200.0)

    def e(name: str, c: tuple[float, float, float], ax: tuple[float, float, float],
          act: float | None, dens: float | None) -> Region:
        return Region(name, ellipsoid(tuple(s * v for v in c), tuple(s * v for v in ax)), act, dens)

    grey, white, csf = 4.0, 1.0, 0.2
    parts = [e("scalp", (0, 0, 0), (83, 103, 90), 0.0, SCALP),
             e("skull", (0, 0, 0), (78, 98, 85), 0.0, BONE),
             e("csf", (0, 0, 0), (71, 91, 78), 0.0, 1.0),
             e("brain", (0, 0, 0), (68, 88, 75), grey, 1.0)]
    for side, x in (("left", 1.0), ("right", -1.0)):
        parts.append(e(f"white_matter_{side}", (27 * x, -5, 10), (22, 60, 42), white, None))
    for side, x in (("left", 1.0), ("right", -1.0)):
        parts += [e(f"ventricle_{side}", (9 * x, -5, 15), (5, 25, 10), csf, None),
                  e(f"caudate_{side}", (13 * x, -14, 12), (5, 9, 8), grey, None),
                  e(f"putamen_{side}", (24 * x, -2, 0), (5, 12, 9), grey, None)]
    parts.append(e("cerebellum", (0, 40, -45), (45, 25, 18), grey, None))
    return Phantom("brain", "ellipsoidal brain: grey 4 : white 1, ventricles, basal ganglia, "
                   "cerebellum; CSF, skull and scalp around it", parts=tuple(parts),
                   body_part="HEAD")


#: FDG in the brain (two-tissue model, k4 = 0; rate constants in 1/min).
GREY_MATTER_FDG = TissueModel(K1=0.102, k2=0.130, k3=0.062)
WHITE_MATTER_FDG = TissueModel(K1=0.054, k2=0.109, k3=0.045)
#: The blood pool: a cylinder along the axis, 30 mm across, in a cold sheath 6 mm thick (a
#: vessel in cerebrospinal fluid): an image-derived input needs a vessel several resolution
#: lengths wide and little spill-in from the grey matter around it.
BLOOD_POOL_RADIUS_MM, BLOOD_POOL_HALF_LENGTH_MM, BLOOD_SHEATH_MM = 15.0, 30.0, 6.0


def brain_fdg(scanner: Scanner) -> Phantom:
    """The brain phantom with FDG kinetics: grey and white matter follow the two-tissue model
    driven by Feng's plasma input, and a blood pool 30 mm across (in a cold sheath) carries the
    input itself; the ventricles are cold. Its activity is the injected one."""
    head = brain(scanner)
    grey = ("brain", "caudate_left", "caudate_right", "putamen_left", "putamen_right",
            "cerebellum")
    parts = [dataclasses.replace(r, activity=0.0) if r.name.startswith("ventricle") else r
             for r in head.parts]
    s = min(1.0, 0.85 * scanner.transaxial_fov_mm / 200.0)
    centre = (0.0, 50.0 * s, 10.0 * s)
    r, half, sheath = BLOOD_POOL_RADIUS_MM, BLOOD_POOL_HALF_LENGTH_MM, BLOOD_SHEATH_MM
    parts += [Region("sheath", cylinder(centre, 2 * (r + sheath), 2 * (half + sheath)), 0.0,
                     None),
              Region("blood", cylinder(centre, 2 * r, 2 * half), 1.0, None)]
    kinetics = Kinetics(FengInput(), (
        TissueClass("grey_matter", grey, GREY_MATTER_FDG),
        TissueClass("white_matter", ("white_matter_left", "white_matter_right"),
                    WHITE_MATTER_FDG),
        TissueClass("blood", ("blood",))))
    return Phantom("brain-fdg", "brain with FDG kinetics (grey and white matter, a 30 mm "
                   "blood pool, Feng input); activity = injected", parts=tuple(parts),
                   kinetics=kinetics, body_part="HEAD")


def cardiac(scanner: Scanner) -> Phantom:
    """Torso with lungs, liver and a left ventricle (myocardium 10, blood pool 2, background 1)
    with an anterior perfusion defect at 30 % uptake; for SPECT."""
    s = min(1.0, 0.95 * scanner.transaxial_fov_mm / 250.0)
    apex = np.array([0.55, -0.55, -0.63])          # base -> apex: left, anterior, inferior
    apex /= np.linalg.norm(apex)
    rot = rotation_to(apex)
    lv = np.array([25.0, -20.0, 0.0]) * s
    anterior = np.array([0.0, -1.0, 0.0])
    anterior -= apex * (anterior @ apex)            # -y, perpendicular to the long axis
    anterior /= np.linalg.norm(anterior)

    def at(offset_mm: np.ndarray) -> tuple[float, float, float]:
        return tuple(float(v) for v in lv + s * offset_mm)

    parts = (
        Region("torso", cylinder((0, 0, 0), (250 * s, 190 * s), 300 * s), 1.0, 1.0),
        Region("lung_left", ellipsoid((60 * s, 5 * s, 40 * s), (45 * s, 60 * s, 90 * s)), 0.3,
               LUNG),
        Region("lung_right", ellipsoid((-60 * s, 5 * s, 40 * s), (45 * s, 60 * s, 90 * s)), 0.3,
               LUNG),
        Region("liver", ellipsoid((-50 * s, 10 * s, -80 * s), (60 * s, 60 * s, 55 * s)), 6.0,
               1.05),
        Region("myocardium", ellipsoid(at(np.zeros(3)), (30 * s, 30 * s, 48 * s), rot), 10.0,
               None),
        Region("defect", sphere(at(15.0 * apex + 25.0 * anterior), 26.0 * s), 3.0, None),
        Region("blood_pool", ellipsoid(at(2.0 * apex), (20 * s, 20 * s, 40 * s), rot), 2.0, None),
        Region("valve_plane", cylinder(at(-45.0 * apex), 48.0 * s, 30.0 * s, rot), 2.0, None),
    )
    return Phantom("cardiac", "torso, lungs, liver and left ventricle (myocardium 10 : blood 2 : "
                   "background 1) with an anterior perfusion defect", parts=parts)


#: name -> builder
BUILDERS = {
    "point": point,
    "point-water": point_water,
    "line": line,
    "cylinder": uniform_cylinder,
    "nu2-scatter": nu2_scatter,
    "nu4-mouse": nu4_mouse,
    "nu4-rat": nu4_rat,
    "nu4-iq": nu4_iq,
    "nema-iq": nema_iq,
    "derenzo": derenzo,
    "brain": brain,
    "brain-fdg": brain_fdg,
    "cardiac": cardiac,
    "blank": blank,
}
