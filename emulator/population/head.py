"""Virtual adult heads for brain PET (FDG and amyloid): laws and anatomy.

The cranium is an ellipsoid of the head's breadth and length under a scalp, as tall as holds the
drawn intracranial volume; the skull between it and the intracranial cavity, whose thickness
differs at the front, back, sides and vertex (the cavity's ellipsoid is shifted back by half the
front-back difference); the posterior fossa below it at the back, lined by the occipital bone;
frontal sinus (absent in a few) and mastoid air cells; the face and neck below. In the cavity:
cerebrospinal fluid around a brain whose cortex is grey matter, two hemispheres of white matter
of their drawn share of the intracranial volume (less where a 10-14 mm cortex leaves no room),
lateral ventricles, caudate, putamen and thalamus; the cerebellum and brainstem in the fossa.
Activities relative to grey matter for FDG (``phantom.toml``) and to
cerebellar grey matter for an amyloid tracer (``amyloid.toml``: cortex positive or negative).
Densities are water-equivalent (scalp 1.05, skull drawn about 1.55, brain 1.04, CSF 1.0,
sinus air 0.0012, mastoid cells 0.3). docs/phantoms.md gives every law's source.
"""

from __future__ import annotations

import math

from emulator.phantoms.model import Region
from emulator.phantoms.shapes import cylinder, ellipsoid
from emulator.population.anatomy import Anatomy
from emulator.population.laws import Chance, LogNormal, Normal, Parameter

PHEASANT = "Pheasant, Bodyspace (British adults 19-65)"
SKULL_CT = "CT of 100 adults, cranial vault thickness (Nepal); no sex difference"
YAMADA = "Yamada et al., Eur Radiol 33:7099, 2023 (MRI, 133 adults 21-92)"
ESTIMATE = "estimate (no population table found; see docs/phantoms.md)"

HEAD = (
    Parameter("head_length_mm", "mm", Normal(195.0, 8.0), Normal(180.0, 7.0), PHEASANT),
    Parameter("head_breadth_mm", "mm", Normal(155.0, 6.0), Normal(145.0, 6.0), PHEASANT),
    Parameter("icv_ml", "mL", Normal(1538.0, 137.0), Normal(1393.0, 91.0), YAMADA),
    Parameter("scalp_mm", "mm", Normal(5.5, 1.2, 2.5, 10), Normal(5.5, 1.2, 2.5, 10), ESTIMATE),
    Parameter("skull_frontal_mm", "mm", Normal(7.9, 2.0, 3, 15), Normal(8.7, 2.0, 3, 15),
              "J Craniofac Surg 32:1683, 2021 (CT, 174 adults)"),
    Parameter("skull_parietal_mm", "mm", Normal(7.0, 1.4, 3, 12), Normal(7.0, 1.4, 3, 12),
              SKULL_CT),
    Parameter("skull_temporal_mm", "mm", Normal(4.7, 1.3, 2, 9), Normal(4.7, 1.3, 2, 9),
              SKULL_CT),
    Parameter("skull_occipital_mm", "mm", Normal(8.0, 2.5, 3, 16), Normal(8.0, 2.5, 3, 16),
              SKULL_CT),
    Parameter("skull_density", "", Normal(1.55, 0.08), Normal(1.55, 0.08),
              "ICRU 46: whole vault 1.61 g/mL, cortical bone 1.92 g/mL (water-equivalent: "
              "estimate)"),
    Parameter("frontal_sinus", "", Chance(0.96), Chance(0.96),
              "bilateral absence 0.7-6 % (Cakur et al., Int J Med Sci 8:278, 2011)"),
    Parameter("frontal_sinus_ml", "mL", LogNormal(7.0, 2.8), LogNormal(4.0, 1.8),
              "Sapmaz et al., J Clin Anal Med 6:485, 2015 (CT, 140 adults)"),
    Parameter("mastoid_ml", "mL", LogNormal(7.9, 2.3), LogNormal(7.9, 2.3),
              "J Laryngol Otol 117:595, 2003 (per ear)"),
    Parameter("csf_gap_mm", "mm", Normal(3.0, 1.0, 1, 7), Normal(3.0, 1.0, 1, 7), ESTIMATE),
    Parameter("white_fraction", "", Normal(0.29, 0.025), Normal(0.29, 0.025),
              YAMADA + ": white matter / intracranial volume (442/1538, 405/1393)"),
    Parameter("ventricles_ml", "mL", LogNormal(32.0, 15.0), LogNormal(25.0, 12.0),
              YAMADA + " (27 +- 13, 20 +- 10 mL, larger after 60): estimate for 50-80"),
    Parameter("cerebellum_ml", "mL", Normal(142.0, 16.0), Normal(133.0, 12.0), YAMADA),
    Parameter("fdg_grey_white", "", Normal(3.0, 0.3, 2, 4.5), Normal(3.0, 0.3, 2, 4.5),
              "estimate: grey 0.33 umol/cm3/min (Huisman et al., EJNMMI Res 2:63, 2012), white "
              "0.10-0.14"),
    Parameter("fdg_cerebellum", "", Normal(0.85, 0.05), Normal(0.85, 0.05), ESTIMATE),
    Parameter("fdg_deep_grey", "", Normal(1.0, 0.08), Normal(1.0, 0.08), ESTIMATE),
    Parameter("amyloid_positive", "", Chance(0.55), Chance(0.55),
              "Rabinovici et al., JAMA 321:1286, 2019 (IDEAS: 55.3 % of MCI)"),
    Parameter("amyloid_negative_suvr", "", Normal(1.05, 0.06), Normal(1.05, 0.06),
              "Bullich et al., Alzheimers Res Ther 2021 (florbetaben, controls)"),
    Parameter("amyloid_positive_suvr", "", Normal(1.55, 0.20), Normal(1.55, 0.20),
              "Bullich et al., Alzheimers Res Ther 2021 (florbetaben, AD: 1.54 +- 0.22)"),
    Parameter("amyloid_white_suvr", "", Normal(1.8, 0.15), Normal(1.8, 0.15), ESTIMATE),
)

SCALP, BRAIN, CSF, AIR, MASTOID, FACE, NECK = 1.05, 1.04, 1.0, 0.0012, 0.3, 1.15, 1.04
SCANS = {"phantom": "FDG", "amyloid": "amyloid"}


def _ml(ml: float, aspect: tuple[float, float, float]) -> tuple[float, float, float]:
    k = (3.0 * ml * 1000.0 / (4.0 * math.pi * aspect[0] * aspect[1] * aspect[2])) ** (1 / 3)
    return (k * aspect[0], k * aspect[1], k * aspect[2])


def _volume_ml(semi: tuple[float, float, float]) -> float:
    return 4.0 / 3.0 * math.pi * semi[0] * semi[1] * semi[2] / 1000.0


def head(name: str, p: dict[str, float]) -> Anatomy:
    """The head of parameters ``p`` (:data:`HEAD` and ``male``)."""
    male = p["male"] > 0.5
    s, g = p["scalp_mm"], p["csf_gap_mm"]
    tf, to, tp, tt = (p["skull_frontal_mm"], p["skull_occipital_mm"], p["skull_parietal_mm"],
                      p["skull_temporal_mm"])
    # the cavity above the posterior fossa: breadth and length inside scalp and skull, its
    # height what holds the intracranial volume less the fossa's (cerebellum, brainstem)
    ai = p["head_breadth_mm"] / 2 - s - tt
    bi = p["head_length_mm"] / 2 - s - 0.5 * (tf + to)
    supra = p["icv_ml"] - p["cerebellum_ml"] * 1.15 - 30.0
    ci = 3.0 * supra * 1000.0 / (4.0 * math.pi * ai * bi)
    inner = (ai, bi, ci)
    outer = (ai + tt, bi + 0.5 * (tf + to), ci + tp)
    a, b, c = outer[0] + s, outer[1] + s, outer[2] + s
    y0 = 0.5 * (tf - to)                            # the cavity moved back (+y): front thicker
    brain = (ai - g, bi - g, ci - g)
    cer = _ml(p["cerebellum_ml"], (1.9, 1.1, 0.75))
    fossa = (0.0, y0 + 0.50 * bi, -0.80 * ci)       # the cerebellum's centre
    white = _white(brain, p["white_fraction"] * p["icv_ml"] / 2.0)
    vent = _ml(p["ventricles_ml"] / 2.0, (1.0, 4.5, 1.8))
    k = brain[0] / 68.0

    def around(extra: float) -> tuple[float, float, float]:
        return (cer[0] + extra, cer[1] + extra, cer[2] + extra)

    parts = [
        Region("neck", cylinder((0, 0.15 * b, -c - 40.0), (0.72 * 2 * a, 0.62 * 2 * b), 130.0),
               None, NECK),
        Region("face", ellipsoid((0, -0.55 * b, -0.80 * c), (0.78 * a, 0.48 * b, 0.62 * c)),
               None, FACE),
        Region("scalp", ellipsoid((0, 0, 0), (a, b, c)), None, SCALP),
        Region("scalp_fossa", ellipsoid(fossa, around(g + to + s)), None, SCALP),
        Region("skull", ellipsoid((0, 0, 0), outer), None, p["skull_density"]),
        Region("skull_fossa", ellipsoid(fossa, around(g + to)), None, p["skull_density"]),
    ]
    for side, x in (("left", 1.0), ("right", -1.0)):
        m = _ml(p["mastoid_ml"], (0.8, 1.0, 1.2))
        parts.append(Region(f"mastoid_{side}", ellipsoid(
            (x * (outer[0] - m[0] - 1.0), 0.30 * b, -0.75 * ci), m), None, MASTOID))
    if p["frontal_sinus"] > 0.5:
        f = _ml(p["frontal_sinus_ml"], (1.6, 0.55, 1.0))
        parts.append(Region("frontal_sinus", ellipsoid((0, -(outer[1] - 0.5 * tf),
                                                        -0.45 * ci), f), None, AIR))
    parts += [
        Region("csf", ellipsoid((0, y0, 0), inner), None, CSF),
        Region("csf_fossa", ellipsoid(fossa, around(g)), None, CSF),
        Region("cortex", ellipsoid((0, y0, 0), brain), None, BRAIN),
        Region("cerebellum", ellipsoid(fossa, cer), None, BRAIN),
        Region("brainstem", cylinder((0, y0 + 0.15 * bi, -0.80 * ci), 26.0 * k, 80.0 * k), None,
               BRAIN),
    ]
    for side, x in (("left", 1.0), ("right", -1.0)):
        parts.append(Region(f"white_matter_{side}", ellipsoid(
            (x * (white[0] + 3.0), y0, 0.10 * brain[2]), white), None, BRAIN))
    for side, x in (("left", 1.0), ("right", -1.0)):
        parts.append(Region(f"ventricle_{side}", ellipsoid((x * (vent[0] + 2.0), y0 - 4 * k,
                                                            12 * k), vent), None, CSF))
    for side, x in (("left", 1.0), ("right", -1.0)):
        parts += [
            Region(f"thalamus_{side}", ellipsoid((x * 11 * k, y0 + 12 * k, -2 * k),
                                                 (8 * k, 15 * k, 9 * k)), None, BRAIN),
            Region(f"caudate_{side}", ellipsoid((x * (2 * vent[0] + 6.0), y0 - 16 * k, 10 * k),
                                                (5 * k, 10 * k, 9 * k)), None, BRAIN),
            Region(f"putamen_{side}", ellipsoid((x * (2 * vent[0] + 17 * k), y0 - 3 * k, 0),
                                                (5 * k, 13 * k, 10 * k)), None, BRAIN),
        ]
    scans = {"phantom": _fdg(p, parts), "amyloid": _amyloid(p, parts)}
    positive = p["amyloid_positive"] > 0.5
    derived = {"sex": "M" if male else "F", "cavity_height_mm": round(2 * ci, 1),
               "white_ml": round(2 * _volume_ml(white), 1),
               "amyloid": "positive" if positive else "negative"}
    words = {"phantom": f"virtual {'man' if male else 'woman'} {name}: head "
                        f"{p['head_length_mm']:.0f} x {p['head_breadth_mm']:.0f} mm; FDG",
             "amyloid": f"virtual {'man' if male else 'woman'} {name}: amyloid "
                        f"{'positive' if positive else 'negative'}"}
    return Anatomy(name, words["phantom"], "HEAD", tuple(parts), scans, derived,
                   scan_words=words)


#: The cortex around each hemisphere's white matter (mm): lateral, front and back, top.
CORTEX_MM = (10.0, 14.0, 12.0)


def _white(brain: tuple[float, float, float], ml: float) -> tuple[float, float, float]:
    """A hemisphere's white matter: ``ml`` where the brain leaves room for it under a cortex
    of :data:`CORTEX_MM` (and 6 mm between the hemispheres), smaller where it does not."""
    room = ((brain[0] - CORTEX_MM[0] - 3.0) / 2.0, brain[1] - CORTEX_MM[1],
            0.75 * brain[2] - CORTEX_MM[2] * 0.5)
    scale = min(1.0, (ml / _volume_ml(room)) ** (1.0 / 3.0))
    return (room[0] * scale, room[1] * scale, room[2] * scale)


def _by_kind(parts: list[Region], fixed: dict[str, float], kinds: dict[str, float]
             ) -> dict[str, float]:
    """Each region's uptake: ``fixed``'s by name, else ``kinds``' by its kind (the name less
    its side, e.g. ``white_matter`` of ``white_matter_left``)."""
    out = dict(fixed)
    for r in parts:
        kind = r.name.rsplit("_", 1)[0]
        if r.name not in out and kind in kinds:
            out[r.name] = kinds[kind]
    return out


def _fdg(p: dict[str, float], parts: list[Region]) -> dict[str, float]:
    white, deep = 1.0 / p["fdg_grey_white"], p["fdg_deep_grey"]
    return _by_kind(parts, {
        "neck": 0.1, "face": 0.1, "scalp": 0.1, "scalp_fossa": 0.1, "skull": 0.03,
        "skull_fossa": 0.03, "csf": 0.05, "csf_fossa": 0.05, "cortex": 1.0,
        "cerebellum": p["fdg_cerebellum"], "brainstem": white, "frontal_sinus": 0.0},
        {"mastoid": 0.03, "white_matter": white, "thalamus": deep, "caudate": deep,
         "putamen": deep, "ventricle": 0.05})


def _amyloid(p: dict[str, float], parts: list[Region]) -> dict[str, float]:
    cortex = p["amyloid_positive_suvr" if p["amyloid_positive"] > 0.5 else
               "amyloid_negative_suvr"]
    white, deep = p["amyloid_white_suvr"], max(cortex, 1.2)
    return _by_kind(parts, {
        "neck": 0.3, "face": 0.3, "scalp": 0.3, "scalp_fossa": 0.3, "skull": 0.1,
        "skull_fossa": 0.1, "csf": 0.1, "csf_fossa": 0.1, "cortex": cortex, "cerebellum": 1.0,
        "brainstem": white, "frontal_sinus": 0.0},
        {"mastoid": 0.1, "white_matter": white, "thalamus": deep, "caudate": deep,
         "putamen": deep, "ventricle": 0.1})
