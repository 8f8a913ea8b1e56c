"""The model's geometric factors: shipped beside the built-in definitions, used for every
definition with the same model, emulated and cached for another, checked against a new
emulation in the soak run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scannerfiles import brain_variant

from hw import load_scanner
from infra.errors import UserError
from recon.calibration import modelfactors, normalization, phantomnorm, shipfactors


@pytest.fixture
def no_emulation(monkeypatch):
    """Any emulation of a model fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("the model was emulated")

    monkeypatch.setattr(normalization, "model_blank_fit", refuse)
    monkeypatch.setattr(phantomnorm, "model_phantom_fit", refuse)


@pytest.mark.parametrize("name", list(shipfactors.SHIPPED))
def test_the_shipped_files_are_of_the_current_definitions(name) -> None:
    scanner = load_scanner(name)
    data = modelfactors.read_shipped(shipfactors.path_of(name))
    assert data["alike_digest"] == scanner.alike_digest, (
        f"stale: python -m recon.calibration.shipfactors {name}")
    n_classes = modelfactors.symmetry_classes(scanner).max() + 1
    keys = [f["key"] for f in data["factors"]]
    assert keys == [kind.key for kind in shipfactors.kinds(name)]
    for f in data["factors"]:
        values = np.asarray(f["class_factors"])
        assert values.shape == (n_classes,) and np.all(np.isfinite(values))
        assert values.min() > 0.2 and values.max() < 5.0 and abs(values.mean() - 1) < 0.05


def test_a_lab_copy_of_a_builtin_gets_its_shipped_factors_without_emulating(
        tmp_path, no_emulation) -> None:
    """Renamed, with crystals of its own, another mean acceptance and a comment: the same model."""
    brain = load_scanner("bedside-brain")
    path = brain_variant(tmp_path / "unit.toml", "\n# our unit\n[crystals]\nseed = 9\n"
                         "efficiency_spread = 0.1\n", 0.85, name="our-unit")
    unit = load_scanner(str(path))
    assert unit.digest != brain.digest and unit.alike_digest == brain.alike_digest
    classes = modelfactors.symmetry_classes(unit)
    shipped = modelfactors.shipped_factors(brain.alike_digest)
    blank = normalization.geometric_factors(unit)
    assert np.array_equal(blank, shipped[normalization.blank_key()][classes])
    cylinder = phantomnorm.phantom_factors(unit, "cylinder")
    assert np.array_equal(cylinder, shipped[phantomnorm.phantom_key("cylinder")][classes])
    assert np.array_equal(modelfactors.per_class(blank, classes),
                          shipped[normalization.blank_key()])


@pytest.mark.parametrize("change, alike", [
    (("crystal_efficiency = 0.95", "crystal_efficiency = 0.9"), True),
    (("# Compact dedicated brain PET", "# A brain PET"), True),
    (('name = "bedside-brain"', 'name = "ours"'), True),
    (("ring_radius_mm = 130.0", "ring_radius_mm = 131.0"), False),
    (("energy_resolution = 0.115", "energy_resolution = 0.12"), False),
    (("delay_ps = 100000", "delay_ps = 200000"), False),
])
def test_the_alike_digest_follows_the_model_alone(tmp_path, change, alike) -> None:
    brain = load_scanner("bedside-brain")
    text = Path(brain.source).read_text()
    assert change[0] in text
    (tmp_path / "s.toml").write_text(text.replace(change[0], change[1]))
    other = load_scanner(str(tmp_path / "s.toml"))
    assert (other.alike_digest == brain.alike_digest) is alike


def test_another_model_is_emulated_once_and_cached(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BEDSIDE_PET_CACHE", str(tmp_path / "cache"))
    text = Path(load_scanner("bedside-brain").source).read_text()
    (tmp_path / "wide.toml").write_text(text.replace("ring_radius_mm = 130.0",
                                                     "ring_radius_mm = 140.0"))
    wide = load_scanner(str(tmp_path / "wide.toml"))
    assert modelfactors.shipped_factors(wide.alike_digest) == {}
    calls = []

    def emulate() -> np.ndarray:
        calls.append(1)
        return np.full(wide.n_crystals, 1.25)

    for _ in range(2):
        got = modelfactors.model_factors(wide, normalization.blank_key(), emulate)
        assert np.all(got == 1.25)
    assert len(calls) == 1 and len(list((tmp_path / "cache").glob("normgeometry-*"))) == 1


def test_a_shipped_key_that_is_not_asked_for_is_emulated(tmp_path, monkeypatch) -> None:
    """A model blank of another length (a quick test's) is not the shipped 60 s one."""
    monkeypatch.setenv("BEDSIDE_PET_CACHE", str(tmp_path / "cache"))
    brain = load_scanner("bedside-brain")
    got = modelfactors.model_factors(brain, normalization.blank_key(0.5),
                                     lambda: np.full(brain.n_crystals, 0.75))
    assert np.all(got == 0.75)


def test_a_broken_shipped_file_is_one_line(tmp_path, monkeypatch) -> None:
    (tmp_path / "bad.toml").write_text('alike_digest = "x"\n[[factors]]\nkey = 3\n')
    monkeypatch.setattr(modelfactors, "SHIPPED_DIR", tmp_path)
    modelfactors.shipped_factors.cache_clear()
    try:
        with pytest.raises(UserError, match=r"bad.toml: not readable .*shipfactors") as err:
            modelfactors.shipped_factors("y")
        assert "\n" not in str(err.value)
    finally:
        modelfactors.shipped_factors.cache_clear()


def test_shipfactors_names_what_it_does_not_ship(capsys) -> None:
    assert shipfactors.main(["spect-dual-head", "--check"]) == 2
    assert "no factors are shipped for 'spect-dual-head'" in capsys.readouterr().out


@pytest.mark.soak
@pytest.mark.parametrize("name", list(shipfactors.SHIPPED))
def test_the_shipped_factors_are_what_the_model_gives(name) -> None:
    """Emulated again (two threads; the files were written on another count), the same."""
    assert shipfactors.check(name, threads=2) == []
