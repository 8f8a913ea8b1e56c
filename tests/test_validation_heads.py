"""The heads' validation measures a head's layers against the calculated map's."""

from __future__ import annotations

import pytest

from recon.corrections.attenuation import HEAD, MU_WATER_PER_MM
from recon.validation.heads import excess_mm


def _head(csf_mm: float, scalp_mm: float, density: float) -> dict[str, str]:
    return {"csf_gap_mm": str(csf_mm), "scalp_mm": str(scalp_mm), "skull_density": str(density)}


def test_a_head_of_the_maps_layers_has_no_excess_and_a_millimetre_more_skull_has_one():
    density = HEAD.skull_mu_per_mm / MU_WATER_PER_MM       # the map's skull, as water-equivalent
    same = _head(HEAD.csf_mm, HEAD.scalp_mm, density)
    assert excess_mm(same, HEAD.skull_mm) == pytest.approx(0.0, abs=1e-9)
    assert excess_mm(same, HEAD.skull_mm + 1.0) == pytest.approx(1.0)
    thinner_csf = _head(HEAD.csf_mm - 2.0, HEAD.scalp_mm, density)
    assert excess_mm(thinner_csf, HEAD.skull_mm) == pytest.approx(
        -2.0 * MU_WATER_PER_MM / HEAD.skull_mu_per_mm)
