"""Phantom files: a TOML of shapes, or of voxel volumes in NIfTI files, read into a :class:`Phantom`.

The format (docs/phantoms.md)::

    [phantom]                 name, description, body_part, activity_units ("relative" or
                              "Bq/mL"), truth (a truth.json)
    [[regions]]               shapes, painted in order: shape (sphere, ellipsoid, cylinder, box),
                              centre_mm, its sizes, axis or rotate_deg; activity, density,
                              compartment (a kinetic class of [kinetics])
    [[sources]]               point (position_mm) or line (start_mm, stop_mm) sources:
                              fraction, or activity_mbq with absolute units
    [kinetics]                input = "feng"; [kinetics.compartments.NAME]: K1, k2, k3, k4, or
                              plasma = true
    [voxels]                  activity, density (density_from: "density", "hu" or
                              "mu_511_per_mm"), labels: NIfTI paths relative to the file
    [labels]                  "N" = "name", or "N" = {name, activity, density}
    [placement]               shift_mm, rotate_deg: the whole object moved, p -> R p + t, R the
                              rotations about x, then y, then z through the scanner's centre

Every mistake is one line naming the file and what is wrong.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np

from emulator.phantoms import shapes as sh
from emulator.phantoms.compartments import FengInput, Kinetics, TissueClass, TissueModel
from emulator.phantoms.io.hounsfield import density as hu_density
from emulator.phantoms.io.nifti import read_volume
from emulator.phantoms.io.tomlkeys import Keys
from emulator.phantoms.kinetic import painted_volumes_ml
from emulator.phantoms.model import LineSource, Phantom, PointSource, Region
from emulator.phantoms.truth import PhantomTruth
from emulator.phantoms.volume import VoxelVolume
from emulator.physics.media import mu_water
from infra.errors import UserError

#: Densities (water-equivalent, g/mL) a phantom may hold.
MAX_DENSITY = 3.0
UNITS = ("relative", "Bq/mL")
DENSITY_FROM = ("density", "hu", "mu_511_per_mm")
SHAPES = ("sphere", "ellipsoid", "cylinder", "box")
#: The largest gap (mm) between two volumes' affines that still counts as the same grid.
SAME_GRID_MM = 1e-3


def rotation_xyz(angles_deg: tuple[float, float, float]) -> np.ndarray:
    """R = Rz Ry Rx: rotations about x, then y, then z (degrees, right-handed)."""
    ax, ay, az = (math.radians(a) for a in angles_deg)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def read(path: str | Path) -> Phantom:
    """The phantom of the file ``path``."""
    path = Path(path)
    origin = str(path)
    if not path.is_file():
        raise UserError(f"phantom file {origin} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"phantom file {origin} is not text (a phantom file is TOML)") from None
    except OSError as exc:
        raise UserError(f"cannot read phantom file {origin}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"phantom file {origin} is not valid TOML: {exc}") from None
    top = Keys(data, origin, "the file").only("phantom", "regions", "sources", "kinetics",
                                              "voxels", "labels", "placement")
    head = top.table("phantom")
    if head is None:
        raise top.fail("the [phantom] table (name, ...) is missing")
    head.only("name", "description", "body_part", "activity_units", "truth")
    units = head.text("activity_units", UNITS, default="relative")
    absolute = units == "Bq/mL"
    if top.has("regions") and top.has("voxels"):
        raise top.fail("give [[regions]] (shapes) or [voxels], not both")
    if not (top.has("regions") or top.has("voxels") or top.has("sources")):
        raise top.fail("it holds nothing: give [[regions]], [voxels] or [[sources]]")
    if top.has("labels") and not top.has("voxels"):
        raise top.fail("[labels] names a [voxels] phantom's labels; this one has no [voxels]")
    regions, kinetics = _regions(top, absolute)
    volume = _voxels(top, path.parent) if top.has("voxels") else None
    sources = _sources(top)
    regions, sources, volume = _placed(top, regions, sources, volume)
    total_mbq = None
    if absolute:
        sources, total_mbq = _shares(regions, sources, volume, origin)
    truth = (PhantomTruth.read(path.parent / head.text("truth"), origin)
             if head.has("truth") else None)
    try:
        return Phantom(head.text("name"), head.text("description", default=""), parts=regions,
                       sources=sources, kinetics=kinetics,
                       body_part=head.text("body_part", default=None), volume=volume,
                       activity_mbq=total_mbq, source=str(path.resolve()), truth=truth)
    except UserError as exc:   # what the phantom itself refuses (no activity at all, ...)
        raise UserError(f"phantom file {origin}: {exc}") from None


# --------------------------------------------------------------------------- shapes


def _orientation(k: Keys) -> np.ndarray | None:
    if k.has("axis") and k.has("rotate_deg"):
        raise k.fail("give 'axis' or 'rotate_deg', not both")
    if k.has("axis"):
        axis = k.vector("axis")
        if np.linalg.norm(axis) == 0:
            raise k.fail("'axis' must not be zero")
        return sh.rotation_to(axis)
    if k.has("rotate_deg"):
        return rotation_xyz(k.vector("rotate_deg")).T
    return None


def _shape(k: Keys) -> sh.Shape:
    kind = k.text("shape", SHAPES)
    centre = k.vector("centre_mm")
    turn = _orientation(k)
    if kind == "sphere":
        return sh.sphere(centre, k.number("diameter_mm", above=0))
    if kind == "ellipsoid":
        return sh.ellipsoid(centre, k.vector("semi_axes_mm", positive=True), turn)
    if kind == "box":
        return sh.box(centre, k.vector("size_mm", positive=True), turn)
    d = k.data.get("diameter_mm")
    diameter = k.vector("diameter_mm", 2, positive=True) if isinstance(d, list) else \
        k.number("diameter_mm", above=0)
    return sh.cylinder(centre, diameter, k.number("length_mm", above=0), turn)


REGION_KEYS = ("name", "shape", "centre_mm", "diameter_mm", "semi_axes_mm", "size_mm",
               "length_mm", "axis", "rotate_deg", "activity", "density", "compartment")


def _regions(top: Keys, absolute: bool) -> tuple[tuple[Region, ...], Kinetics | None]:
    regions, classes = [], {}
    names = set()
    for k in top.tables("regions"):
        k.only(*REGION_KEYS)
        name = k.text("name")
        if name in names:
            raise k.fail(f"region name '{name}' is used twice")
        names.add(name)
        regions.append(Region(name, _shape(k), k.number("activity", None, low=0),
                              k.number("density", None, low=0, high=MAX_DENSITY)))
        if k.has("compartment"):
            classes.setdefault(k.text("compartment"), []).append(name)
    kin = top.table("kinetics")
    if kin is None:
        if classes:
            raise top.fail(f"regions name compartment '{next(iter(classes))}' but there is no "
                           "[kinetics] table")
        return tuple(regions), None
    if absolute:
        raise kin.fail("a kinetic phantom's activity is the injected one: use relative units")
    kin.only("input", "compartments")
    kin.text("input", ("feng",), default="feng")
    table = kin.table("compartments", "[kinetics.compartments]")
    if table is None:
        raise kin.fail("[kinetics.compartments] is missing")
    out = []
    for cname in table.data:
        c = table.table(cname, f"[kinetics.compartments.{cname}]")
        if cname not in classes:
            raise c.fail("no region names this compartment")
        if c.has("plasma"):
            c.only("plasma")
            out.append(TissueClass(cname, tuple(classes[cname])))
            continue
        c.only("K1", "k2", "k3", "k4")
        out.append(TissueClass(cname, tuple(classes[cname]), TissueModel(
            c.number("K1", low=0), c.number("k2", low=0), c.number("k3", low=0),
            c.number("k4", 0.0, low=0))))
    missing = sorted(set(classes) - set(table.data))
    if missing:
        raise kin.fail(f"compartment '{missing[0]}' is named by a region but not defined")
    return tuple(regions), Kinetics(FengInput(), tuple(out))


def _sources(top: Keys) -> tuple[PointSource | LineSource, ...]:
    """The point and line sources, each with its ``fraction`` of the activity (relative units)
    or, until :func:`_shares` makes it one, its activity in MBq (absolute units)."""
    absolute = top.table("phantom").text("activity_units", UNITS, default="relative") != UNITS[0]
    out: list[PointSource | LineSource] = []
    for k in top.tables("sources"):
        k.only("name", "position_mm", "start_mm", "stop_mm", "fraction", "activity_mbq")
        amount = (k.number("activity_mbq", low=0) if absolute else
                  k.number("fraction", 1.0, low=0, high=1))
        if k.has("position_mm") == k.has("start_mm"):
            raise k.fail("a source is a point (position_mm) or a line (start_mm, stop_mm)")
        if k.has("position_mm"):
            out.append(PointSource(k.text("name"), k.vector("position_mm"), amount))
        else:
            out.append(LineSource(k.text("name"), k.vector("start_mm"), k.vector("stop_mm"),
                                  amount))
    return tuple(out)


# --------------------------------------------------------------------------- voxels


def _voxels(top: Keys, folder: Path) -> VoxelVolume:
    k = top.table("voxels")
    k.only("activity", "density", "density_from", "labels")
    origin = k.origin
    how = k.text("density_from", DENSITY_FROM, default="density")
    grids = {}
    for what in ("activity", "density", "labels"):
        if k.has(what):
            grids[what] = read_volume(folder / k.text(what), f"{what} image", origin)
    first = next(iter(grids.items()), None)
    if first is None:
        raise k.fail("give the activity, density or labels images")
    for what, (values, affine) in grids.items():
        if values.shape != first[1][0].shape:
            raise k.fail(f"the {what} image is {values.shape}, the {first[0]} image "
                         f"{first[1][0].shape}: they must share one grid")
        if np.abs(affine - first[1][1]).max() > SAME_GRID_MM:
            raise k.fail(f"the {what} image and the {first[0]} image have different affines: "
                         "they must share one grid")
        if not np.all(np.isfinite(values)):
            raise k.fail(f"the {what} image holds values that are not finite (NaN or inf)")
    affine = first[1][1]
    labels, table = _labels(top, grids.get("labels"))
    activity = grids["activity"][0] if "activity" in grids else _from_table(
        k, labels, table, "activity")
    density = grids["density"][0] if "density" in grids else _from_table(
        k, labels, table, "density")
    if "density" in grids:
        density = (hu_density(density) if how == "hu" else
                   density / float(mu_water(511.0)) if how == "mu_511_per_mm" else density)
    if activity.min() < 0:
        raise k.fail(f"the activity holds negative values (down to {activity.min():g})")
    if density.min() < 0 or density.max() > MAX_DENSITY:
        raise k.fail(f"densities must be from 0 to {MAX_DENSITY:g} g/mL, the file's go from "
                     f"{density.min():.4g} to {density.max():.4g}"
                     + (" (a CT in HU? say density_from = \"hu\")" if density.min() < -100
                        else ""))
    names = {n: e["name"] for n, e in table.items()}
    return VoxelVolume(activity, density, affine, labels, names)


def _labels(top: Keys, image: tuple[np.ndarray, np.ndarray] | None
            ) -> tuple[np.ndarray | None, dict[int, dict]]:
    """The labels image (int32) and the [labels] table: label -> {name, activity, density}."""
    k = top.table("labels")
    table: dict[int, dict] = {}
    if k is not None:
        for key, value in k.data.items():
            if not key.strip().isdigit() or int(key) == 0:
                raise k.fail(f"'{key}' is not a label: labels are integers from 1")
            entry = Keys(value if isinstance(value, dict) else {"name": value}, k.origin,
                         f"[labels] {key}").only("name", "activity", "density")
            table[int(key)] = {"name": entry.text("name"),
                               "activity": entry.number("activity", None, low=0),
                               "density": entry.number("density", None, low=0,
                                                       high=MAX_DENSITY)}
    if image is None:
        if table:
            raise top.fail("[labels] needs [voxels] labels = \"FILE\", the labels image")
        return None, table
    values = image[0]
    if values.min() < 0 or np.any(values != np.rint(values)):
        raise top.fail("the labels image must hold integers >= 0")
    labels = values.astype(np.int32)
    for n in np.unique(labels):
        if n > 0 and int(n) not in table:
            table[int(n)] = {"name": f"label_{n}", "activity": None, "density": None}
    return labels, table


def _from_table(k: Keys, labels: np.ndarray | None, table: dict[int, dict], what: str
                ) -> np.ndarray:
    """The labels' ``what`` (activity or density) painted on their voxels (0 unlabelled)."""
    if labels is None:
        raise k.fail(f"give the {what} image, or a labels image and each label's {what} in "
                     "[labels]")
    missing = [n for n in np.unique(labels) if n > 0 and table[int(n)][what] is None]
    if missing:
        raise k.fail(f"label {missing[0]} ({table[int(missing[0])]['name']}) has no {what}: "
                     f"give it in [labels], or give the {what} image")
    lookup = np.zeros(int(labels.max()) + 1)
    for n, entry in table.items():
        if n < lookup.size and entry[what] is not None:
            lookup[n] = entry[what]
    return lookup[labels]


# --------------------------------------------------------------------------- placement, units


def _placed(top: Keys, regions: tuple[Region, ...], sources: tuple,
            volume: VoxelVolume | None) -> tuple[tuple, tuple, VoxelVolume | None]:
    k = top.table("placement")
    if k is None:
        return regions, sources, volume
    k.only("shift_mm", "rotate_deg")
    turn = rotation_xyz(k.vector("rotate_deg", default=(0.0, 0.0, 0.0)))
    shift = np.asarray(k.vector("shift_mm", default=(0.0, 0.0, 0.0)))

    def at(p: tuple[float, float, float]) -> tuple[float, float, float]:
        return tuple(float(v) for v in turn @ np.asarray(p) + shift)

    regions = tuple(Region(r.name, r.shape.moved(turn, tuple(shift)), r.activity, r.density)
                    for r in regions)
    sources = tuple(LineSource(s.name, at(s.start_mm), at(s.stop_mm), s.fraction)
                    if isinstance(s, LineSource) else PointSource(s.name, at(s.position_mm),
                                                                  s.fraction) for s in sources)
    if volume is not None:
        motion = np.eye(4)
        motion[:3, :3], motion[:3, 3] = turn, shift
        volume = VoxelVolume(volume.activity, volume.density, motion @ volume.affine,
                             volume.labels, volume.label_names)
    return regions, sources, volume


def _shares(regions: tuple[Region, ...], sources: tuple, volume: VoxelVolume | None,
            origin: str) -> tuple[tuple, float]:
    """With absolute units: the sources with their shares of the total, and the total (MBq)."""
    if volume is not None:
        volumetric_bq = volume.total_activity()
    elif regions:
        hot = [r for r in regions if r.activity is not None]
        index = {r.name: k + 1 for k, r in enumerate(hot)}
        volumes = painted_volumes_ml(regions, index)
        volumetric_bq = sum(r.activity * volumes[index[r.name]] for r in hot)
    else:
        volumetric_bq = 0.0
    sources_bq = [s.fraction * 1e6 for s in sources]
    total = volumetric_bq + sum(sources_bq)
    if total <= 0:
        raise UserError(f"phantom file {origin}: its activity adds up to 0 Bq")
    shared = tuple(
        (LineSource(s.name, s.start_mm, s.stop_mm, bq / total) if isinstance(s, LineSource)
         else PointSource(s.name, s.position_mm, bq / total))
        for s, bq in zip(sources, sources_bq, strict=True))
    return shared, total / 1e6
