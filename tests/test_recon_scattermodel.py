"""The fast path's window model: its fit gives back the mix that made a scan, the shipped model's
scatter stays inside the body's shadow as the emulator's does, and a missing, foreign or
truncated model is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from coincidence import spect
from emulator import phantoms
from hw.scanner import load_scanner
from infra.errors import UserError
from recon.grid import default_grid
from recon.learning import scattermodel

CAMERA = "spect-general"


@pytest.fixture(scope="module")
def torso(unseen_torsos) -> Path:
    return unseen_torsos


@pytest.fixture(scope="module")
def torso_basis(torso) -> np.ndarray:
    scanner = load_scanner(CAMERA)
    grid = default_grid(scanner)
    ph = phantoms.get(str(torso / "torso-001"), scanner)
    return scattermodel.basis(scanner, ph.activity_map(grid), ph.mu_map(grid, 140.0), 140.0)


def test_the_fit_gives_back_the_mix_that_made_a_scan(torso_basis):
    truth = np.array([[0.01, 0.1, 0.0, 0.3, 0.0], [0.8, 0.0, 0.15, 0.05, 0.0],
                      [0.01, 0.0, 0.0, 0.01, 0.001]])
    made = scattermodel.ScatterModel(CAMERA, truth, "test").expected(torso_basis)
    scan = np.random.default_rng(1).poisson(made * 2e6 / made[spect.PEAK].sum())
    got = scattermodel.fit([scan], [torso_basis])
    assert got[spect.PEAK].sum() == pytest.approx(1.0)
    fitted = scattermodel.ScatterModel(CAMERA, got, "fit").expected(torso_basis)
    made, fitted = made / made[spect.PEAK].sum(), fitted / fitted[spect.PEAK].sum()
    for w in range(3):  # each window's counts per photopeak count come back within 1 %
        assert fitted[w].sum() == pytest.approx(made[w].sum(), rel=0.01)
    assert np.abs(fitted - made).sum() < 0.02 * made.sum()


def test_the_shipped_models_scatter_stays_in_the_bodys_shadow(torso_basis):
    """The emulator's scatter reaches the air beside the body hardly at all (under 1 % of the
    scatter windows' counts in the fitted scans); the model's does likewise."""
    model = scattermodel.load(CAMERA)
    expected = model.expected(torso_basis)
    shadow = torso_basis[0] > 0.02 * torso_basis[0].max()
    for w in (spect.LOWER, spect.UPPER):
        assert expected[w][~shadow].sum() < 0.03 * expected[w].sum()
    side = expected[spect.LOWER].sum() / expected[spect.PEAK].sum()
    assert 0.1 < side < 0.4  # the emulator's lower window holds about a fifth of the peak's


def test_a_missing_foreign_or_truncated_scatter_model_is_refused_in_one_line(tmp_path):
    shipped = json.loads(scattermodel.path_of(CAMERA).read_text())
    other = tmp_path / "other.json"
    other.write_text(json.dumps(shipped | {"camera": "spect-dual-head"}))
    cut = tmp_path / "cut.json"
    cut.write_text(scattermodel.path_of(CAMERA).read_text()[:300])
    cases = [(lambda: scattermodel.load("spect-dual-head", tmp_path / "gone.json"),
              "python -m recon.learning.fitscatter POPULATION --camera spect-dual-head"),
             (lambda: scattermodel.load(CAMERA, other), "is not a scatter model of camera"),
             (lambda: scattermodel.load(CAMERA, cut), "cut.json: not a scatter model")]
    for call, words in cases:
        with pytest.raises(UserError) as err:
            call()
        assert words in str(err.value) and "\n" not in str(err.value)


def test_the_fit_command_emulates_fits_and_writes_a_model_that_loads(torso, tmp_path,
                                                                     monkeypatch):
    """A short emulated scan (the chain path's, at a fraction of the counts) kept beside the
    patient, and a model whose windows' totals are the scan's."""
    from recon.learning import chainpath, fitscatter

    monkeypatch.setattr(chainpath, "ACTIVITY_MBQ", 100.0)
    monkeypatch.setattr(chainpath, "SECONDS", 2.0)
    out = tmp_path / "fitted.json"
    assert fitscatter.main([str(torso), "--n", "1", "--out", str(out)]) == 0
    assert (torso / "torso-001" / "chain-spect-general-2s.npz").is_file()
    model = scattermodel.load(CAMERA, out)
    assert model.coefficients[spect.PEAK].sum() == pytest.approx(1.0)
    t = json.loads(out.read_text())["totals"]
    assert t["lower_modelled"] == pytest.approx(t["lower_measured"], rel=0.05)
    assert fitscatter.main([str(torso), "--n", "3", "--out", str(out)]) == 2  # two patients
