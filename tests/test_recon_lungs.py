"""Lungs in the calculated mu-map: Chang's factors, and the large cold regions of a body read
through them as lung while small cold regions and a body's own cupping stay water."""

from __future__ import annotations

import numpy as np
import pytest

from recon import Grid
from recon.corrections import attenuation, lungs
from recon.corrections.attenuation import MU_WATER_PER_MM
from recon.outputs.png import mu_map_picture, smoothed
from recon.pet.mumap import calculated_map

GRID = Grid((80, 80, 50), (2.0, 2.0, 2.0), (-79.0, -79.0, -49.0))
RADIUS_MM = 70.0


def _radius() -> np.ndarray:
    x, y, _ = GRID.centres_mm()
    return np.broadcast_to(np.hypot(x, y), GRID.shape)


def _emission(activity: np.ndarray) -> np.ndarray:
    """The emission image without attenuation correction of ``activity`` in a water cylinder of
    :data:`RADIUS_MM`: weighted by the body's Chang factors, blurred by 4 mm."""
    body = (_radius() <= RADIUS_MM).astype(np.float32)
    factors = lungs.chang_factors(body * np.float32(MU_WATER_PER_MM), GRID.voxel_mm)
    return smoothed((activity * body * factors).astype(np.float32), 4.0, GRID.voxel_mm)


def _share(activity: np.ndarray) -> np.ndarray:
    counts = _emission(activity)
    return lungs.lung_share(counts, attenuation.outline(counts, GRID.voxel_mm), GRID.voxel_mm)


def test_changs_factor_at_a_discs_centre_is_the_attenuation_of_its_diameter():
    mu = np.where(_radius() <= 50.0, np.float32(MU_WATER_PER_MM), 0.0).astype(np.float32)
    factors = lungs.chang_factors(mu, GRID.voxel_mm)
    assert factors[40, 40, 25] == pytest.approx(np.exp(-MU_WATER_PER_MM * 100.0), rel=0.03)
    assert factors[0, 0, 25] == 1.0 and factors[40, 40, 25] < factors[40, 62, 25] < 1.0


def test_a_large_cold_core_is_lung_of_its_volume_and_the_tissue_around_it_water():
    r = _radius()
    share = _share(np.where(r < 25.0, 0.1, 1.0))
    assert share[40, 40, 25] == 1.0 and share[r > 35.0].max() == 0.0
    true_ml = np.pi * 25.0 ** 2 * 100.0 / 1000.0
    assert lungs.volume_ml(share, GRID.voxel_mm) == pytest.approx(true_ml, rel=0.15)
    mu = lungs.with_lungs(attenuation.calculated((r <= RADIUS_MM).astype(np.float32), GRID).array, share)
    assert mu[40, 40, 25] == pytest.approx(lungs.MU_LUNG_PER_MM)
    assert mu[40, 70, 25] == pytest.approx(MU_WATER_PER_MM) and mu[0, 0, 25] == 0.0


def test_the_calculated_map_of_a_body_records_its_lungs_volume_and_of_a_head_none():
    r = _radius()
    counts = _emission(np.where(r < 25.0, 0.1, 1.0))
    body, words = calculated_map(counts, GRID, None)
    assert body.meta["lung_ml"] == pytest.approx(np.pi * 25.0 ** 2 * 100.0 / 1000.0, rel=0.15)
    assert f"lungs {body.meta['lung_ml']:.0f} mL" in words
    head, words = calculated_map(counts, GRID, "HEAD")
    assert "lung_ml" not in head.meta and "lungs" not in words


def test_the_maps_picture_shows_a_lung_in_blue_and_no_lung_where_there_is_none():
    r = _radius()
    body = (r <= RADIUS_MM).astype(np.float32)
    water = attenuation.calculated(body, GRID)
    share = _share(np.where(r < 25.0, 0.1, 1.0))
    lunged = GRID.image(lungs.with_lungs(water.array, share), "1/mm")
    emission = GRID.image(body, "Bq/mL")

    def blue(mu):
        rgb = mu_map_picture(emission, mu).astype(int)
        return int(np.count_nonzero(rgb[..., 2] > rgb[..., 0] + 60))

    assert blue(lunged) > 100 and blue(water) == 0


def test_a_cold_sphere_and_a_bodys_own_cupping_are_not_lung():
    x, y, z = GRID.centres_mm()
    sphere = np.broadcast_to(np.sqrt(x ** 2 + (y - 20.0) ** 2 + z ** 2) < 18.0, GRID.shape)
    assert not _share(np.where(sphere, 0.0, 1.0)).any()       # 24 mL: a cold lesion
    assert not _share(np.ones(GRID.shape, np.float32)).any()   # the centre reads low, uncorrected


def test_parts_are_labelled_with_their_sizes():
    mask = np.zeros((6, 6, 3), np.bool_)
    mask[0:2, 0:2, 0] = True
    mask[4:6, 3:6, 1:3] = True
    labels, sizes = attenuation.connected_parts(mask)
    assert sorted(sizes.tolist()) == [4, 12] and labels.max() == 2 and not labels[~mask].any()
    assert attenuation.connected_parts(np.zeros((3, 3, 3), np.bool_))[1].size == 0
