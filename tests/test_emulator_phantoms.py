"""Phantoms and nuclides as data: sizes, maps, activity sampling, names."""

from __future__ import annotations

import math

import numpy as np
import pytest

from emulator import phantoms
from emulator.physics import sampling
from emulator.physics.media import mu_water
from emulator.rng import state
from hw import load_scanner, nuclides
from infra.errors import UserError

SCANNERS = ("bedside-brain", "small-animal", "spect-dual-head")


@pytest.mark.parametrize("scanner_name", SCANNERS)
def test_every_phantom_builds_and_fits_its_scanner(scanner_name):
    scanner = load_scanner(scanner_name)
    for name in phantoms.names():
        ph = phantoms.get(name, scanner)
        assert ph.name == name and ph.description
        packed = ph.packed()
        assert ph.blank or packed.src_cdf[-1] == pytest.approx(1.0)
        for region in ph.parts:
            shape = region.shape
            aligned = np.allclose(shape.rotation, np.eye(3))
            reach = math.hypot(*shape.centre_mm[:2]) + max(shape.semi_axes_mm[:2] if aligned
                                                           else shape.semi_axes_mm)
            assert reach <= scanner.transaxial_fov_mm / 2 + 1e-6 or name.startswith("nu4")


def test_nema_iq_regions_maps_and_sampling(brain):
    ph = phantoms.get("nema-iq", brain)
    regions = ph.regions()
    for d in (10, 13, 17, 22, 28, 37):
        sphere = regions[f"sphere_{d}"]
        assert 2 * sphere.shape.semi_axes_mm[0] == pytest.approx(d)
        assert math.hypot(*sphere.shape.centre_mm[:2]) == pytest.approx(57.2)
        assert sphere.activity == 4.0
    mu = ph.mu_map(shape=(100, 100, 10), voxel_mm=2.0, energy_kev=511.0)
    assert mu.shape == (100, 100, 10) and mu.dtype == np.float32
    assert mu[50, 20, 5] == pytest.approx(float(mu_water(511.0)), rel=1e-5)   # background
    assert mu[50, 50, 5] == pytest.approx(0.3 * float(mu_water(511.0)), rel=1e-5)  # lung
    assert mu[0, 0, 5] == 0.0                                                  # air
    act = ph.activity_map(shape=(100, 100, 10), voxel_mm=2.0)
    c = regions["sphere_37"].shape.centre_mm
    i, j = round(c[0] / 2 + 49.5), round(c[1] / 2 + 49.5)
    assert act[i, j, 5] == 4.0 and act[50, 50, 5] == 0.0
    # decay positions follow the concentrations: the 37 mm sphere's share of the activity
    pos = np.empty((400_000, 3))
    sampling.positions(state(5), ph.packed(), pos)
    volume = {n: r.shape.volume_mm3 for n, r in regions.items()}
    spheres = sum(volume[f"sphere_{d}"] for d in (10, 13, 17, 22, 28, 37))
    warm = volume["background"] - volume["lung_insert"] - spheres
    share = 4 * volume["sphere_37"] / (warm + 4 * spheres)
    inside = regions["sphere_37"].shape.contains(pos).mean()
    assert inside == pytest.approx(share, rel=0.05)
    assert not regions["lung_insert"].shape.contains(pos).any()


def test_derenzo_rods_are_disjoint_and_sized_to_the_crystals(brain):
    ph = phantoms.get("derenzo", brain)
    rods = [r for r in ph.parts if r.name.startswith("rod_")]
    sizes = sorted({2 * r.shape.semi_axes_mm[0] for r in rods})
    assert len(sizes) == 6 and sizes[2] == pytest.approx(3.2)
    centres = np.array([r.shape.centre_mm[:2] for r in rods])
    radii = np.array([r.shape.semi_axes_mm[0] for r in rods])
    gap = np.hypot(*(centres[:, None] - centres[None]).transpose(2, 0, 1)) - radii[:, None] - \
        radii[None]
    np.fill_diagonal(gap, np.inf)
    assert gap.min() > 0


def _turn(angle_deg: float) -> np.ndarray:
    a = math.radians(angle_deg)
    return np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0],
                     [0.0, 0.0, 1.0]])


def test_nu4_iq_is_the_standards_phantom():
    """NEMA NU 4-2008's image-quality phantom: a 33.5 x 56 mm PMMA body, rods 1-5 mm on a 7 mm
    circle through a 20 mm PMMA block, a 30 mm uniform chamber, cold water and air inserts with
    PMMA walls; it fits the small-animal scanner."""
    scanner = load_scanner("small-animal")
    ph = phantoms.get("nu4-iq", scanner)
    r = ph.regions()
    assert 2 * r["body"].shape.semi_axes_mm[0] == pytest.approx(33.5)
    assert 2 * r["body"].shape.semi_axes_mm[2] == pytest.approx(56.0)
    assert r["body"].shape.semi_axes_mm[0] < scanner.transaxial_fov_mm / 2
    assert r["body"].shape.semi_axes_mm[2] < scanner.axial_fov_mm / 2
    assert 2 * r["uniform"].shape.semi_axes_mm[0] == pytest.approx(30.0)
    for k, d in enumerate((1, 2, 3, 4, 5)):
        rod = r[f"rod_{d}"].shape
        assert 2 * rod.semi_axes_mm[0] == pytest.approx(d)
        assert rod.centre_mm[2] == pytest.approx(-15.0) and rod.semi_axes_mm[2] == 10.0
        a = math.radians(90 + 72 * k)
        assert rod.centre_mm[:2] == pytest.approx((7 * math.cos(a), 7 * math.sin(a)))
        for z in (-24.5, -15.0, -5.5):
            assert ph.activity_at(np.array([[*rod.centre_mm[:2], z]]))[0] == 1.0
    pmma = r["body"].density
    assert pmma == pytest.approx(1.16, abs=0.01)           # 1.19 g/cm3 PMMA, water-equivalent
    points = np.array([[0.0, 0.0, -15.0],    # the rod block's PMMA
                       [0.0, 0.0, -26.5],    # an end wall
                       [0.0, 0.0, 5.0],      # the uniform chamber
                       [7.5, 0.0, 17.0],     # the water insert
                       [-7.5, 0.0, 17.0],    # the air insert
                       [12.0, 0.0, 17.0],    # the water insert's wall
                       [7.5, 0.0, 9.5],      # its bottom
                       [7.5, 0.0, 8.5],      # the chamber under it
                       [16.5, 0.0, 0.0],     # the body's side
                       [17.0, 0.0, 0.0]])    # air outside
    np.testing.assert_array_equal(ph.activity_at(points), [0, 0, 1, 0, 0, 0, 0, 1, 0, 0])
    np.testing.assert_allclose(ph.density_at(points),
                               [pmma, pmma, 1, 1, 0.0011, pmma, pmma, 1, pmma, 0], atol=1e-4)
    assert ph.density_at(points[4:5])[0] < 0.01
    assert "1, 2, 3, 4, 5 mm" in ph.description and "air" in ph.description


def test_moved_phantom_turns_and_shifts_its_regions_and_sources():
    """``moved(20, (3, 0, 0))``: every region's centre and every point inside it go where the
    motion takes them; the activity map is the original's turned and shifted."""
    scanner = load_scanner("small-animal")
    ph = phantoms.get("nu4-iq", scanner)
    turn, shift = _turn(20.0), np.array([3.0, 0.0, 0.0])
    moved = ph.moved(20.0, (3.0, 0.0, 0.0))
    assert moved.name == ph.name and [p.name for p in moved.parts] == [p.name for p in ph.parts]
    rod = ph.regions()["rod_5"].shape
    assert moved.regions()["rod_5"].shape.centre_mm == pytest.approx(
        tuple(turn @ rod.centre_mm + shift))
    rng = np.random.default_rng(3)
    p = rng.uniform(-20.0, 20.0, (50_000, 3)) * (1.0, 1.0, 1.5)
    q = p @ turn.T + shift
    np.testing.assert_array_equal(moved.activity_at(q), ph.activity_at(p))
    np.testing.assert_array_equal(moved.density_at(q), ph.density_at(p))
    assert moved.regions()["rod_5"].shape.contains(rod.centre_mm @ turn.T + shift).all()
    grid = {"shape": (48, 48, 60), "voxel_mm": 1.0}
    before, after = ph.activity_map(**grid), moved.activity_map(**grid)
    assert after.sum() == pytest.approx(before.sum(), rel=0.01)
    axes = [np.arange(n) - (n - 1) / 2 for n in grid["shape"]]
    centroid = [[(np.moveaxis(m, k, -1) @ axes[k]).sum() / m.sum() for k in range(3)]
                for m in (before, after)]
    assert centroid[1] == pytest.approx(turn @ centroid[0] + shift, abs=0.1)
    pos = np.empty((20_000, 3))
    sampling.positions(state(4), moved.packed(), pos)        # the kernels see the motion too
    assert (moved.activity_at(pos) > 0).all()
    line = phantoms.get("nu4-mouse", scanner).sources[0]
    turned = phantoms.get("nu4-mouse", scanner).moved(90.0, (0.0, 5.0, 1.0)).sources[0]
    x, y, z = line.start_mm
    assert turned.start_mm == pytest.approx((-y, x + 5.0, z + 1.0)) and y != 0.0


def test_brain_grey_white_contrast_and_cardiac_defect(brain):
    head = phantoms.get("brain", brain)
    assert head.activity_at(np.array([[0.0, -85.0, 0.0]]))[0] == 4.0      # cortex
    assert head.activity_at(np.array([[27.0, -5.0, 10.0]]))[0] == 1.0     # white matter
    assert head.density_at(np.array([[0.0, 0.0, 81.0]]))[0] == pytest.approx(1.8)  # skull
    assert head.density_at(np.array([[0.0, 0.0, 87.0]]))[0] == pytest.approx(1.05)  # scalp
    heart = phantoms.get("cardiac", load_scanner("spect-dual-head"))
    r = heart.regions()
    assert r["myocardium"].activity == 10.0 and r["defect"].activity == 3.0
    wall = np.array(r["defect"].shape.centre_mm)
    assert heart.activity_at(wall[None])[0] == 3.0


def test_nuclides_table():
    assert nuclides.get("f-18").half_life_s == pytest.approx(6586.2)
    assert nuclides.get("Tc-99m").lines()[0, 0] == pytest.approx(140.5)
    assert set(nuclides.get("Lu-177").gamma_kev) == {112.95, 208.37}
    ga, f = nuclides.get("Ga-68").positron_range(), nuclides.get("F-18").positron_range()
    assert ga[1] < f[1] and ga[2] < f[2]                 # Ga-68's range is longer
    assert nuclides.get("Tc-99m").positron_fraction == 0.0


def test_unknown_names_list_the_known_ones(brain):
    with pytest.raises(UserError, match="known phantoms are point, point-water"):
        phantoms.get("hoffman", brain)
    with pytest.raises(UserError, match="known nuclides are F-18"):
        nuclides.get("Xe-133")
