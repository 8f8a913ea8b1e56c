"""The left ventricle's axis found in an image of the cardiac phantom, and given by hand."""

from __future__ import annotations

import numpy as np
import pytest

from emulator import phantoms
from hw import load_scanner
from infra.errors import UserError
from recon.grid import default_grid
from recon.spect.cardiac import axis_report
from recon.spect.lvaxis import find_lv_axis, parse_lv_axis


def test_the_axis_of_the_phantoms_own_activity_is_the_phantoms():
    camera = load_scanner("spect-dual-head")
    phantom = phantoms.get("cardiac", camera)
    grid = default_grid(camera)
    image = grid.image(phantom.activity_map(grid), "truth")
    report = axis_report(find_lv_axis(image), "image", phantom)
    assert report["angle_to_phantom_deg"] < 8.0, report
    assert report["apex_to_phantom_mm"] < 10.0 and report["base_to_phantom_mm"] < 10.0, report


@pytest.mark.parametrize(("text", "said"), [
    ("1,2,3", "give APEX_X,Y,Z:BASE_X,Y,Z in mm"),
    ("1,2,3:4,5,x", "give APEX_X,Y,Z:BASE_X,Y,Z in mm"),
    ("0,0,0:1,1,1", "apex and base are 1.7 mm apart"),
])
def test_a_manual_axis_that_is_not_one_says_why(text, said):
    with pytest.raises(UserError, match=said):
        parse_lv_axis(text)
    lv = parse_lv_axis("45,-40,-25:10,-5,17")
    assert np.allclose(lv.apex_mm, [45, -40, -25]) and np.allclose(lv.base_mm, [10, -5, 17])
