"""Virtual adult torsos for myocardial perfusion SPECT (Tc-99m) and chest PET: laws and anatomy.

Body size: height and BMI (NHANES), the chest's width and depth growing as the square root of
mass per height (a cross-section's area follows it); a fat layer that thickens with BMI; breasts
for women; a rib cage, spine and sternum; lungs whose bottoms are the diaphragm's domes (the
right one higher); gut, liver and stomach below them; the whole heart (atria and right
ventricle, blood) and the left ventricle (:mod:`emulator.population.heart`) along its long axis,
at its end-diastolic size, painted last (nothing covers its myocardium). Uptakes are a Tc-99m
perfusion agent's relative to normal myocardium, at stress
(``phantom.toml``) and at rest (``rest.toml``); a defect, in half the patients, shows at stress
and, when fixed (an infarct), at rest too. Densities are water-equivalent (fat 0.95, soft tissue
1.04, lung 0.26, rib cage 1.15, spine 1.35, sternum 1.3). docs/phantoms.md gives every law's
source.
"""

from __future__ import annotations

import math

import numpy as np

from emulator.phantoms.model import Region
from emulator.phantoms.shapes import box, cylinder, ellipsoid
from emulator.population.anatomy import Anatomy
from emulator.population.heart import (
    Ventricle,
    axis_from_angles,
    fitted_defect,
)
from emulator.population.laws import Chance, LogNormal, Normal, Parameter, Uniform

NHANES = "Fryar et al., Vital Health Stat 3(46), 2021 (NHANES 2015-2018; SD from the percentiles)"
LANG = "Lang et al., J Am Soc Echocardiogr 28:1, 2015 (ASE/EACVI normal ranges, mean +- 2 SD)"
ENGBLOM = "Engblom et al., Am Heart J 150:507, 2005 (CMR, 94 adults)"
MPI_RATIOS = ("J Nucl Med 38:428, 1997 (heart/liver, heart/lung at 60 min); Leslie et al., BMC "
              "Nucl Med 6:2, 2006; planar ratios made voxel ratios: estimate")
ESTIMATE = "estimate (no population table found; see docs/phantoms.md)"

TORSO = (
    Parameter("height_cm", "cm", Normal(175.3, 7.5, 150, 205), Normal(161.3, 7.0, 140, 190),
              NHANES),
    Parameter("bmi", "kg/m2", LogNormal(29.1, 6.0), LogNormal(29.6, 7.5),
              "Fryar et al., NCHS 2018 (NHANES 2015-2016 means); SD: estimate"),
    Parameter("chest_scale", "", Normal(1.0, 0.04), Normal(1.0, 0.04), ESTIMATE),
    Parameter("breast_ml", "mL", Normal(0.0, 0.0), LogNormal(700.0, 400.0),
              "MRI of 400 women (mean 975 mL, 5th-95th percentile 250-1250 mL at BMI 18.5-25)"),
    Parameter("breast_height_mm", "mm", Normal(0.0, 0.0), Normal(-10.0, 20.0), ESTIMATE),
    Parameter("lv_cavity_mm", "mm", Normal(50.2, 4.1), Normal(45.0, 3.6), LANG),
    Parameter("lv_wall_mm", "mm", Normal(8.0, 1.0), Normal(7.5, 0.75), LANG),
    Parameter("lv_length_ratio", "", Normal(1.40, 0.08), Normal(1.41, 0.08),
              "Stoylen et al., Open Heart 2016 (HUNT3: length / outer diameter)"),
    Parameter("lv_azimuth_deg", "deg", Normal(46.0, 7.0), Normal(46.0, 7.0), ENGBLOM),
    Parameter("lv_elevation_deg", "deg", Normal(38.0, 10.0), Normal(38.0, 10.0), ENGBLOM),
    Parameter("heart_left_mm", "mm", Normal(30.0, 8.0), Normal(28.0, 8.0), ESTIMATE),
    Parameter("diaphragm_mm", "mm", Normal(-40.0, 15.0), Normal(-40.0, 15.0),
              "estimate: the left dome below the LV's base plane (0-4 cm below the inferior base)"),
    Parameter("right_dome_mm", "mm", Normal(15.0, 4.0), Normal(15.0, 4.0),
              "Mishra et al. (the right dome 0.9-2.2 cm higher in 98.6 % of chest films)"),
    Parameter("lung_length_mm", "mm", Normal(245.0, 20.0), Normal(220.0, 18.0), ESTIMATE),
    Parameter("liver_ml", "mL", Normal(1710.0, 270.0, 800, 3500),
              Normal(1330.0, 270.0, 600, 3000),
              "ICRP 89 reference masses (1800 g, 1400 g) at 1.05 g/mL; SD: SHIP MRI (273 mL)"),
    Parameter("stomach_ml", "mL", Normal(400.0, 100.0, 100, 900), Normal(370.0, 90.0, 100, 900),
              "ICRP 89 (wall and contents)"),
    Parameter("uptake_liver_stress", "", LogNormal(0.9, 0.3), LogNormal(0.9, 0.3), MPI_RATIOS),
    Parameter("uptake_liver_rest", "", LogNormal(1.3, 0.4), LogNormal(1.3, 0.4), MPI_RATIOS),
    Parameter("uptake_gut", "", LogNormal(0.6, 0.4), LogNormal(0.6, 0.4), MPI_RATIOS),
    Parameter("uptake_stomach", "", LogNormal(0.25, 0.1), LogNormal(0.25, 0.1), ESTIMATE),
    Parameter("uptake_lung", "", LogNormal(0.06, 0.02), LogNormal(0.06, 0.02), MPI_RATIOS),
    Parameter("uptake_blood", "", Normal(0.08, 0.02, 0.02, 0.2), Normal(0.08, 0.02, 0.02, 0.2),
              ESTIMATE),
    Parameter("uptake_background", "", Normal(0.08, 0.02, 0.02, 0.2),
              Normal(0.08, 0.02, 0.02, 0.2), ESTIMATE),
    Parameter("uptake_rv", "", Normal(0.35, 0.08, 0.1, 0.7), Normal(0.35, 0.08, 0.1, 0.7),
              ESTIMATE),
    Parameter("defect", "", Chance(0.5), Chance(0.5),
              "a referral population's abnormal scans (Rozanski et al., JACC 61:1054, 2013: "
              "9-41 %), raised to half to train and test on"),
    Parameter("territory_u", "", Uniform(0.0, 1.0), Uniform(0.0, 1.0),
              "LAD 45 %, RCA 30 %, LCx 25 %: estimate"),
    Parameter("defect_extent_percent", "% of LV", LogNormal(12.0, 7.0), LogNormal(12.0, 7.0),
              "small 5-10 %, medium 10-20 %, large > 20 % of the LV (Hachamovitch et al., "
              "Circulation 107:2900, 2003): estimate"),
    Parameter("defect_severity", "", Uniform(0.25, 0.70), Uniform(0.25, 0.70),
              "mild to severe count reduction (visual 0-4 scores): estimate"),
    Parameter("defect_transmurality", "", Uniform(0.5, 1.0), Uniform(0.5, 1.0), ESTIMATE),
    Parameter("defect_span", "", Uniform(0.4, 0.9), Uniform(0.4, 0.9), ESTIMATE),
    Parameter("defect_fixed", "", Chance(0.4), Chance(0.4), ESTIMATE),
)

FAT, SOFT, BREAST, LUNG, RIBS, SPINE, STERNUM, MUSCLE_HEART = 0.95, 1.04, 0.98, 0.26, 1.15, \
    1.35, 1.3, 1.05
#: Rest and stress: the agent's distribution in each phantom file.
SCANS = {"phantom": "stress", "rest": "rest"}


def territory_of(u: float) -> str:
    return "LAD" if u < 0.45 else "RCA" if u < 0.75 else "LCx"


def fat_mm(bmi: float) -> float:
    """Subcutaneous fat (mm) of the chest at a BMI: 8 mm at 22, 21 at 30, 37 at 40 (estimate;
    > 60 mm of soft tissue at BMI >= 40, Lemanowicz et al., Pol J Radiol 2018)."""
    return float(np.clip(2.0 + 1.6 * (bmi - 18.0), 3.0, 60.0))


def torso(name: str, p: dict[str, float]) -> Anatomy:
    """The torso of parameters ``p`` (:data:`TORSO` and ``male``)."""
    male = p["male"] > 0.5
    h_m = p["height_cm"] / 100.0
    weight = p["bmi"] * h_m ** 2
    scale = math.sqrt((weight / h_m) / (80.0 / 1.75)) * p["chest_scale"]
    width, depth = (340.0 if male else 310.0) * scale, (240.0 if male else 220.0) * scale
    fat = fat_mm(p["bmi"])
    wi, di = width - 2 * fat - 30.0, depth - 2 * fat - 30.0   # inside muscle and ribs
    lv_axis = axis_from_angles(p["lv_azimuth_deg"], p["lv_elevation_deg"])
    ri, wall = p["lv_cavity_mm"] / 2.0, p["lv_wall_mm"]
    outer_len = p["lv_length_ratio"] * 2.0 * (ri + wall)
    centre = np.array([p["heart_left_mm"], -0.10 * di, 0.0])
    base = centre - 0.5 * outer_len * lv_axis
    lv = Ventricle(base, lv_axis, ri, outer_len - wall, wall)
    dome_l = base[2] + p["diaphragm_mm"]
    dome_r = dome_l + p["right_dome_mm"]
    lung = p["lung_length_mm"]
    z_lo, z_hi = dome_l - 230.0, dome_l + lung + 40.0
    zc, length = 0.5 * (z_lo + z_hi), z_hi - z_lo
    turn = lv.rotation
    septal = lv.septal
    size = ri / 25.0

    def ell_ml(ml: float, aspect: tuple[float, float, float]) -> tuple[float, float, float]:
        k = (3.0 * ml * 1000.0 / (4.0 * math.pi * np.prod(aspect))) ** (1.0 / 3.0)
        return tuple(k * a for a in aspect)

    liver = ell_ml(p["liver_ml"], (1.0, 0.8, 0.62))
    stomach = ell_ml(p["stomach_ml"], (0.8, 0.6, 1.0))
    parts = [
        Region("fat", cylinder((0, 0, zc), (width, depth), length), None, FAT),
        Region("soft_tissue", cylinder((0, 0, zc), (width - 2 * fat, depth - 2 * fat), length),
               None, SOFT),
    ]
    if p["breast_ml"] > 1.0:
        r = ell_ml(p["breast_ml"], (1.3, 0.6, 1.0))
        y = -0.5 * depth + 0.45 * r[1]
        for side, sign in (("left", 1.0), ("right", -1.0)):
            parts.append(Region(f"breast_{side}", ellipsoid(
                (sign * 0.28 * width, y, p["breast_height_mm"]), r), None, BREAST))
    chest = (dome_l - 40.0, z_hi)
    parts += [
        Region("ribs", cylinder((0, 0, 0.5 * sum(chest)), (wi + 16.0, di + 16.0),
                                chest[1] - chest[0]), None, RIBS),
        Region("thorax", cylinder((0, 0, 0.5 * sum(chest)), (wi, di), chest[1] - chest[0]),
               None, SOFT),
        Region("spine", cylinder((0, 0.5 * di - 20.0, zc), 40.0, length), None, SPINE),
        Region("sternum", box((0, -0.5 * di + 6.0, base[2] + 20.0), (28.0, 12.0, 150.0)), None,
               STERNUM),
        Region("gut", ellipsoid((0, 0.0, dome_l - 150.0), (0.36 * wi, 0.32 * di, 70.0)), None,
               1.0),
        Region("liver", ellipsoid((-0.5 * wi + liver[0] + 8.0, 0.0, dome_r - 0.85 * liver[2]),
                                  liver), None, 1.05),
        Region("stomach", ellipsoid((0.22 * wi, -0.08 * di, dome_l - stomach[2] - 5.0),
                                    stomach), None, 1.0),
        Region("lung_left", ellipsoid((0.26 * wi, 0.05 * di, dome_l + 0.5 * lung),
                                      (0.22 * wi, 0.40 * di, 0.5 * lung)), None, LUNG),
        Region("lung_right", ellipsoid((-0.26 * wi, 0.05 * di, dome_r + 0.5 * lung * 0.95),
                                       (0.23 * wi, 0.40 * di, 0.5 * lung * 0.95)), None, LUNG),
        Region("heart", ellipsoid(tuple(centre + 15.0 * size * septal),
                                  (52.0 * size, 44.0 * size, 68.0 * size), turn), None,
               MUSCLE_HEART),
        Region("rv", ellipsoid(tuple(centre + 24.0 * size * septal), (ri + wall, 1.25 * ri,
                                                                       0.45 * outer_len),
                               turn), None, MUSCLE_HEART),
        Region("rv_cavity", ellipsoid(tuple(centre + 24.0 * size * septal),
                                      (ri + wall - 4.0, 1.25 * ri - 4.0, 0.45 * outer_len - 4.0),
                                      turn), None, MUSCLE_HEART),
    ]
    lv_shapes = lv.shapes()
    parts += [Region(n, s, None, MUSCLE_HEART) for n, s in lv_shapes.items()]
    scans = {scan: _uptakes(p, state) for scan, state in SCANS.items()}
    defect = None
    shown: tuple[str, ...] = ()
    if p["defect"] > 0.5:
        defect = fitted_defect(lv, territory_of(p["territory_u"]), p["defect_extent_percent"],
                               p["defect_span"], p["defect_transmurality"],
                               p["defect_severity"])
        shown = ("phantom", "rest") if p["defect_fixed"] > 0.5 else ("phantom",)
    derived = {"sex": "M" if male else "F", "weight_kg": round(weight, 1),
               "chest_width_mm": round(width, 1), "chest_depth_mm": round(depth, 1),
               "fat_mm": round(fat, 1),
               "territory": defect.territory if defect is not None else "none"}
    words = {scan: f"virtual {'man' if male else 'woman'} {name}, {weight:.0f} kg, "
                   f"{p['height_cm']:.0f} cm; Tc-99m perfusion at {state}"
             + (f", {defect.territory} defect" if defect and scan in shown else "")
             for scan, state in SCANS.items()}
    return Anatomy(name, words["phantom"], "CHEST", tuple(parts), scans, derived, lv, defect,
                   shown, words)


def _uptakes(p: dict[str, float], state: str) -> dict[str, float]:
    bkg, blood = p["uptake_background"], p["uptake_blood"]
    return {"fat": 0.3 * bkg, "soft_tissue": bkg, "breast_left": 0.5 * bkg,
            "breast_right": 0.5 * bkg, "ribs": 0.5 * bkg, "thorax": bkg, "spine": 0.5 * bkg,
            "sternum": 0.5 * bkg, "gut": p["uptake_gut"],
            "lung_left": p["uptake_lung"], "lung_right": p["uptake_lung"],
            "heart": blood, "rv": p["uptake_rv"], "rv_cavity": blood, "myocardium": 1.0,
            "blood_pool": blood, "valve_plane": blood,
            "liver": p["uptake_liver_stress" if state == "stress" else "uptake_liver_rest"],
            "stomach": p["uptake_stomach"]}
