"""Scanner models: geometry, channel maps, detector response, and clear errors on bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hw import ScannerError, builtin_scanners, load_scanner


def test_builtin_scanners_are_there() -> None:
    assert {"bedside-brain", "small-animal", "spect-dual-head"} <= set(builtin_scanners())


@pytest.mark.parametrize("name", ["bedside-brain", "small-animal"])
def test_pet_ring_geometry(name: str) -> None:
    s = load_scanner(name)
    c, n = s.crystal_centres, s.crystal_normals
    assert c.shape == (s.n_crystals, 3) == n.shape
    # each crystal's centre lies half a crystal depth behind its module's flat front face
    depth = s.crystal_size_mm[2]
    assert np.allclose(-(c * n).sum(axis=1), s.ring_radius_mm + depth / 2)
    assert np.allclose(np.linalg.norm(n, axis=1), 1)
    assert np.allclose((n * s.crystal_tangents).sum(axis=1), 0)
    # crystals fill the axial FOV symmetrically, no two at the same place
    assert np.isclose(c[:, 2].max(), -c[:, 2].min())
    assert np.unique(np.round(c, 3), axis=0).shape[0] == s.n_crystals
    # modules: n_modules sectors, each a contiguous arc; numbering ring-major
    assert s.crystal_module.max() + 1 == s.n_modules
    assert np.array_equal(np.arange(s.n_crystals) // s.crystals_per_ring, s.crystal_ring)
    # channel map is a bijection (board, channel) <-> crystal within 12 bits
    assert s.crystal_channel.max() < 4096
    assert np.array_equal(s.channel_map[s.crystal_board, s.crystal_channel],
                          np.arange(s.n_crystals))
    assert (s.channel_map >= 0).sum() == s.n_crystals


def test_bedside_brain_is_in_the_class_of_compact_brain_scanners(brain) -> None:
    assert 250 <= 2 * brain.ring_radius_mm <= 300
    assert 140 <= brain.axial_fov_mm <= 160
    assert brain.material.name == "LYSO" and brain.crystal_size_mm[2] == 20
    assert 265 <= brain.material.lu176_bq_per_cm3 <= 295
    assert np.isclose(brain.response.fwhm_kev(511) / 511, brain.response.energy_resolution)
    # 1/sqrt(E) scaling of the relative resolution
    assert np.isclose(brain.response.fwhm_kev(127.75) / 127.75, 2 * brain.response.energy_resolution)
    g = brain.crystal_gains()
    assert abs(g.mean() - 1) < 0.01 and 0.06 < g.std() < 0.10
    assert np.array_equal(g, brain.crystal_gains())  # the unit's gains are fixed


def test_spect_heads_and_collimator() -> None:
    s = load_scanner("spect-dual-head")
    assert s.kind == "spect" and s.spect is not None and s.n_crystals == 2 * 64 * 64
    col = s.spect.collimator
    # LEHR: R_g about 6-8 mm at 10 cm
    assert 5 < col.geometric_resolution_mm(100) < 9
    assert 1e-4 < col.efficiency < 5e-4
    # heads opposed: normals of head 0 and head 1 point against each other
    n0 = s.crystal_normals[s.crystal_module == 0][0]
    n1 = s.crystal_normals[s.crystal_module == 1][0]
    assert np.allclose(n0, -n1)
    assert len(s.spect.view_angles_deg(0)) == s.spect.views_per_head


def test_unknown_name_is_one_line() -> None:
    with pytest.raises(ScannerError) as err:
        load_scanner("total-body-9000")
    msg = str(err.value)
    assert "unknown scanner 'total-body-9000'" in msg and "bedside-brain" in msg
    assert "\n" not in msg


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    src = Path(load_scanner("bedside-brain").source).read_text()
    assert old in src
    p = tmp_path / "variant.toml"
    p.write_text(src.replace(old, new))
    return p


@pytest.mark.parametrize(("old", "new", "message"), [
    ("ring_radius_mm = 130.0", "", "key 'geometry.ring_radius_mm' is missing"),
    ("ring_radius_mm = 130.0", "ring_radius_mm = -5", "key 'geometry.ring_radius_mm' must be > 0"),
    ("ring_radius_mm = 130.0", "ring_radius_mm = 100.0", "too small for 16 modules"),
    ("ctr_ps = 350.0", 'ctr_ps = "fast"', "key 'response.ctr_ps' must be a number"),
    ('dead_time_kind = "nonparalysable"', 'dead_time_kind = "sometimes"',
     "key 'response.dead_time_kind' must be one of paralysable, nonparalysable"),
    ("boards = 4", "boards = 3", "key 'digitizer.boards' must divide"),
    ("boards = 4", "boards = 1", "the wire format carries at most 4096"),
    ("energy_window_kev = [435.0, 585.0]", "energy_window_kev = [585.0, 435.0]",
     "low < high"),
    ("[material]", "[material\n", "not valid TOML"),
])
def test_malformed_definitions_name_the_key(tmp_path: Path, old: str, new: str,
                                            message: str) -> None:
    with pytest.raises(ScannerError, match=message.replace("[", r"\[")):
        load_scanner(str(_variant(tmp_path, old, new)))


def _quantification_line() -> str:
    src = Path(load_scanner("bedside-brain").source).read_text()
    return next(line for line in src.splitlines() if line.startswith("counts_per_annihilation"))


@pytest.mark.parametrize(("value", "message"), [
    ("0", "must be > 0"), ("-0.5", "must be > 0"), ("inf", "must be a finite number > 0"),
    ('"high"', "must be a number"),
])
def test_quantification_factor_must_be_a_positive_number(tmp_path: Path, value: str,
                                                         message: str) -> None:
    path = _variant(tmp_path, _quantification_line(), f"counts_per_annihilation = {value}")
    with pytest.raises(ScannerError,
                       match=f"key 'quantification.counts_per_annihilation' {message}"):
        load_scanner(str(path))


def test_quantification_factor_is_measured_for_pet_and_defaults_to_one(tmp_path: Path) -> None:
    for name in ("bedside-brain", "small-animal"):
        assert 0.1 < load_scanner(name).counts_per_annihilation < 1.0
    assert load_scanner("spect-dual-head").counts_per_annihilation == 1.0
    bare = _variant(tmp_path, _quantification_line(), "")
    assert load_scanner(str(bare)).counts_per_annihilation == 1.0
    bare.write_text(bare.read_text().replace("[quantification]", ""))
    assert load_scanner(str(bare)).counts_per_annihilation == 1.0


def test_digest_leaves_out_the_quantification_table(tmp_path: Path) -> None:
    """A new cross-calibration keeps the model's digest (its energy calibrations and cached
    sensitivity images stay valid); any other change makes a new one."""
    brain = load_scanner("bedside-brain")
    line = _quantification_line()
    recalibrated = load_scanner(str(_variant(tmp_path, line, "counts_per_annihilation = 0.7")))
    assert recalibrated.counts_per_annihilation == 0.7 and recalibrated.digest == brain.digest
    src = Path(brain.source).read_text()
    without = src[:src.index("[quantification]")].rstrip("\n") + "\n"
    (tmp_path / "without.toml").write_text(without)
    assert load_scanner(str(tmp_path / "without.toml")).digest == brain.digest
    changed = load_scanner(str(_variant(tmp_path, "ctr_ps = 350.0", "ctr_ps = 351.0")))
    assert changed.digest != brain.digest


def _with_voxel(tmp_path: Path, name: str, value: str) -> Path:
    """The built-in ``name`` with a ``[reconstruction] voxel_mm = value`` table at its end."""
    p = tmp_path / f"{name}-voxel.toml"
    src = Path(load_scanner(name).source).read_text()
    p.write_text(f"{src.rstrip()}\n\n[reconstruction]\n# the image's voxel\nvoxel_mm = {value}\n")
    return p


def test_default_voxel_is_the_reconstruction_tables_and_leaves_the_digest(tmp_path: Path
                                                                           ) -> None:
    """``[reconstruction] voxel_mm`` sets a PET scanner's default image voxel (2 mm without it);
    like ``[quantification]`` it is no part of the model's digest."""
    brain, animal = load_scanner("bedside-brain"), load_scanner("small-animal")
    assert brain.default_voxel_mm == 2.0 and animal.default_voxel_mm == 0.5
    assert load_scanner("spect-dual-head").default_voxel_mm == 2.0
    fine = load_scanner(str(_with_voxel(tmp_path, "bedside-brain", "1.25")))
    assert fine.default_voxel_mm == 1.25 and fine.digest == brain.digest
    src = Path(animal.source).read_text()
    start = src.index("[reconstruction]")
    without = src[:start] + src[src.index("[quantification]", start):]
    (tmp_path / "plain.toml").write_text(without)
    plain = load_scanner(str(tmp_path / "plain.toml"))
    assert plain.default_voxel_mm == 2.0 and plain.digest == animal.digest


@pytest.mark.parametrize(("value", "message"), [
    ("0", "must be > 0"), ("-0.5", "must be > 0"), ("inf", "must be a finite number > 0"),
    ('"fine"', "must be a number"),
])
def test_default_voxel_must_be_a_positive_number(tmp_path: Path, value: str, message: str
                                                 ) -> None:
    with pytest.raises(ScannerError, match=f"key 'reconstruction.voxel_mm' {message}"):
        load_scanner(str(_with_voxel(tmp_path, "bedside-brain", value)))


def test_default_voxel_is_for_pet(tmp_path: Path) -> None:
    with pytest.raises(ScannerError, match=r"'reconstruction\.voxel_mm' is for PET scanners"):
        load_scanner(str(_with_voxel(tmp_path, "spect-dual-head", "2.0")))


def test_missing_file() -> None:
    with pytest.raises(ScannerError, match="does not exist"):
        load_scanner("/no/such/scanner.toml")
