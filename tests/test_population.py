"""Virtual patients: drawn from their documented laws, reproducible from the seed, written as phantom
files with their truth (the heart's axis, the defect's segments)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from emulator import phantoms
from emulator.population import draw
from emulator.population.head import HEAD
from emulator.population.heart import TERRITORIES
from emulator.population.laws import Chance
from emulator.population.sampling import draws
from emulator.population.torso import TORSO
from petdaq.cli import main


@pytest.mark.parametrize("body, laws", [("torso", TORSO), ("head", HEAD)])
def test_fifty_patients_follow_the_documented_laws(body, laws):
    """Each parameter's mean and spread, for each sex, within 10 % of its law's (of the spread
    for a mean near 0); a yes/no's share within 0.1."""
    people = draws(laws, 50, 1, body)
    male = np.array([p["male"] for p in people]) > 0.5
    assert male.sum() in (25,)
    for p in laws:
        for sex in (True, False):
            law = p.law(sex)
            v = np.array([q[p.name] for q, m in zip(people, male, strict=True) if m == sex])
            if isinstance(law, Chance):
                assert abs(v.mean() - law.p) <= 0.1, p.name
                continue
            if law.spread == 0:
                continue
            scale = max(abs(law.mean), law.spread)
            assert abs(v.mean() - law.mean) <= 0.1 * scale, (p.name, sex, v.mean(), law)
            assert v.std(ddof=1) == pytest.approx(law.spread, rel=0.1), (p.name, sex, law)


def test_a_population_is_the_same_from_the_same_seed():
    assert draws(TORSO, 12, 7, "torso") == draws(TORSO, 12, 7, "torso")
    assert draws(TORSO, 12, 7, "torso") != draws(TORSO, 12, 8, "torso")


def test_a_torso_with_a_defect_knows_its_segments(tmp_path, brain):
    params = draws(TORSO, 4, 3, "torso")[0] | {"defect": 1.0, "territory_u": 0.1,
                                               "defect_extent_percent": 15.0,
                                               "defect_fixed": 0.0}
    row = draw._draw_one("torso", "t-1", params, tmp_path / "t-1", 6.0)
    stress = phantoms.read(tmp_path / "t-1")
    rest = phantoms.read(tmp_path / "t-1" / "rest.toml")
    truth = stress.truth
    assert row["territory"] == "LAD" and truth.defect.territory == "LAD"
    main_segments = {k for k, share in truth.defect.segments.items() if share > 0.2}
    assert main_segments and main_segments <= set(TERRITORIES["LAD"])
    assert truth.defect.extent_percent == pytest.approx(15.0, abs=4.0)
    assert truth.lv_axis is not None and "myocardium" in stress.regions()
    labels = stress.volume.labels
    myo = {n: k for k, n in stress.volume.label_names.items()}
    defect = labels == myo["defect"]
    assert defect.any()
    # a reversible defect: at stress the uptake is lower there than at rest
    assert stress.volume.activity[defect].mean() < 0.9 * rest.volume.activity[defect].mean()
    lungs = labels == myo["lung_left"]
    assert 0.2 < stress.volume.density[lungs].mean() < 0.35


def test_the_command_writes_the_files_and_the_table(tmp_path, capsys):
    out = tmp_path / "heads"
    assert main(["phantoms", "population", "--body", "head", "--n", "2", "--seed", "5",
                 "--out", str(out), "--voxel-mm", "4", "--quiet"]) == 0
    rows = list(csv.DictReader((out / "population.csv").open()))
    assert [r["name"] for r in rows] == ["head-001", "head-002"]
    for r in rows:
        fdg = phantoms.read(out / r["name"])
        amyloid = phantoms.read(out / r["name"] / "amyloid.toml")
        assert fdg.body_part == "HEAD" and fdg.truth.parameters["name"] == r["name"]
        grey = fdg.volume.labels == {n: k for k, n in fdg.volume.label_names.items()}["cortex"]
        assert fdg.volume.activity[grey].mean() > 0.6
        assert amyloid.volume.activity[grey].mean() > 0.6
    assert main(["phantoms", "population", "--body", "head", "--n", "0", "--out",
                 str(out)]) == 2
    assert "--n must be" in capsys.readouterr().err
