"""Phantoms and nuclides as data: sizes, maps, activity sampling, names."""

from __future__ import annotations

import math

import numpy as np
import pytest

from emulator import phantoms, sampling
from emulator.media import mu_water
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
        assert packed.src_cdf[-1] == pytest.approx(1.0)
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


def test_brain_grey_white_contrast_and_cardiac_defect(brain):
    head = phantoms.get("brain", brain)
    assert head.activity_at(np.array([[0.0, -85.0, 0.0]]))[0] == 4.0      # cortex
    assert head.activity_at(np.array([[27.0, -5.0, 10.0]]))[0] == 1.0     # white matter
    assert head.density_at(np.array([[0.0, 0.0, 78.0]]))[0] == pytest.approx(1.8)  # skull
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
