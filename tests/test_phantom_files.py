"""Phantom files: a lab's shapes, voxels from any source, a reconstructed image back where it was,
built-in phantoms written out and read back, and every bad file one line (exit 2, no run left)."""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from emulator import phantoms
from emulator.engine import simulate
from emulator.phantoms.io.writer import write_shapes, write_voxels
from emulator.phantoms.volume import LPS_TO_RAS
from emulator.physics import sampling
from emulator.physics.media import mu_water
from emulator.rng import state
from hw import load_scanner
from infra.errors import UserError
from petdaq.cli import main
from recon.grid import Grid
from recon.outputs.export import write_nifti

LAB = """
[phantom]
name = "lab-phantom"
description = "a lab's own: a water box with a hot sphere and a cold rod"
activity_units = "Bq/mL"

[[regions]]
name = "box"
shape = "box"
centre_mm = [0, 0, 0]
size_mm = [100, 80, 60]
rotate_deg = [0, 0, 30]
activity = 1000.0
density = 1.0

[[regions]]
name = "hot"
shape = "sphere"
centre_mm = [20, 0, 0]
diameter_mm = 20
activity = 8000.0

[[regions]]
name = "rod"
shape = "cylinder"
centre_mm = [-25, 0, 0]
diameter_mm = 12
length_mm = 50
axis = [0, 1, 0]
activity = 0.0
density = 1.8

[[sources]]
name = "marker"
position_mm = [0, 0, 40]
activity_mbq = 0.1

[placement]
shift_mm = [5, -3, 2]
"""


def _write(folder: Path, text: str, name: str = "phantom.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def test_a_labs_shapes_in_bq_per_ml_need_no_code(tmp_path, brain):
    ph = phantoms.get(str(_write(tmp_path, LAB)), brain)
    box, hot, rod = 100 * 80 * 60 / 1e3, 4 / 3 * math.pi * 10 ** 3 / 1e3, \
        math.pi * 6 ** 2 * 50 / 1e3
    expected = (1000.0 * (box - hot - rod) + 8000.0 * hot) / 1e6 + 0.1
    assert ph.activity_mbq == pytest.approx(expected, rel=0.01)       # its own total
    assert ph.sources[0].fraction == pytest.approx(0.1 / ph.activity_mbq, rel=1e-9)
    shift = np.array([5.0, -3.0, 2.0])
    assert ph.density_at(np.array([[-25.0, 0.0, 0.0]]) + shift)[0] == pytest.approx(1.8)
    assert ph.activity_at(np.array([[20.0, 0.0, 0.0]]) + shift)[0] == 8000.0
    corner = np.array([[math.cos(math.radians(30)), math.sin(math.radians(30)), 0.0]]) * 48
    assert ph.density_at(corner + shift)[0] == 1.0                  # turned with the box


def test_built_in_phantoms_written_out_read_back_the_same(tmp_path, brain):
    """As shapes, the same events byte for byte (a kinetic one too); as voxels, the same
    regions and maps but at the voxels' edges."""
    nema = phantoms.get("nema-iq", brain)
    shapes = phantoms.get(str(write_shapes(nema, tmp_path / "s")), brain)
    assert [r.name for r in shapes.parts] == [r.name for r in nema.parts]
    fdg = phantoms.get(str(write_shapes(phantoms.get("brain-fdg", brain), tmp_path / "k")),
                       brain)
    assert [c.model for c in fdg.kinetics.classes] == \
        [c.model for c in phantoms.get("brain-fdg", brain).kinetics.classes]
    for built_in, read_back in ((nema, shapes), (phantoms.get("brain-fdg", brain), fdg)):
        a = simulate(brain, built_in, "F-18", 20.0, 0.003, seed=4, threads=1,
                     kinetic_time_scale=60.0)
        b = simulate(brain, read_back, "F-18", 20.0, 0.003, seed=4, threads=1,
                     kinetic_time_scale=60.0)
        assert np.array_equal(a.raw, b.raw)                           # byte for byte
    voxels = phantoms.get(str(write_voxels(nema, tmp_path / "v", 4.0)), brain)
    assert set(voxels.regions()) == {r.name for r in nema.parts}
    grid = Grid((40, 40, 20), (5.0, 5.0, 5.0), (-97.5, -97.5, -47.5))
    a, b = nema.mu_map(grid), voxels.mu_map(grid)
    assert np.mean(np.abs(a - b) < 1e-3 * mu_water(511.0)) > 0.85    # but at the edges
    assert voxels.mu_map(grid).sum() == pytest.approx(a.sum(), rel=0.01)
    truth = phantoms.get(str(write_voxels(phantoms.get("cardiac", load_scanner(
        "spect-dual-head")), tmp_path / "c", 6.0)), load_scanner("spect-dual-head")).truth
    assert truth.lv_axis is not None                                 # the heart's axis


def test_a_voxel_phantom_emulates_as_its_shapes_do(brain):
    """The same object from shapes and from 3 mm voxels: singles within 2 %, PET and SPECT
    (delta tracking through the voxels, forced detection's line integrals walked through
    them)."""
    from emulator.phantoms.rasterize import voxelized

    nema = phantoms.get("nema-iq", brain)
    a = simulate(brain, nema, "F-18", 20.0, 0.02, seed=3)
    b = simulate(brain, voxelized(nema, 3.0), "F-18", 20.0, 0.02, seed=3)
    assert b.raw.size == pytest.approx(a.raw.size, rel=0.02)
    camera = load_scanner("spect-general")
    heart = phantoms.get("cardiac", camera)
    a = simulate(camera, heart, "Tc-99m", 400.0, 0.5, seed=3)
    b = simulate(camera, voxelized(heart, 3.0), "Tc-99m", 400.0, 0.5, seed=3)
    assert b.raw.size == pytest.approx(a.raw.size, rel=0.02)


def _image(shape=(30, 24, 20), voxel=(2.0, 2.0, 3.0), origin=(-29.0, -23.0, -28.5)) -> Grid:
    return Grid(shape, voxel, origin)


def test_an_image_written_by_recon_lands_where_it_was(tmp_path, brain):
    grid = _image()
    x, y, z = grid.centres_mm()
    blob = np.exp(-((x - 12.0) ** 2 + (y + 7.0) ** 2 + (z - 5.0) ** 2) / 50.0).astype(np.float32)
    mu = np.full(grid.shape, 0.0096, np.float32)
    write_nifti(grid.image(blob * 5e4, "Bq/mL"), tmp_path / "image.nii.gz")
    write_nifti(grid.image(mu, "1/mm"), tmp_path / "mu_map.nii.gz")
    text = ('[phantom]\nname = "last-week"\nactivity_units = "Bq/mL"\n[voxels]\nactivity = '
            '"image.nii.gz"\ndensity = "mu_map.nii.gz"\ndensity_from = "mu_511_per_mm"\n')
    ph = phantoms.get(str(_write(tmp_path, text)), brain)
    weights = blob.astype(np.float64) / blob.sum()
    centre = np.array([(weights * np.broadcast_to(c, grid.shape)).sum() for c in (x, y, z)])
    np.testing.assert_allclose(ph.volume.centre_of_activity_mm(), centre, atol=1e-3)
    assert np.allclose(ph.volume.density, mu / mu_water(511.0), rtol=1e-5)
    drawn = np.empty((200_000, 3))
    sampling.positions(state(4), ph.packed(), drawn)                 # decays drawn from it
    assert np.all(np.abs(drawn.mean(axis=0) - centre) < min(grid.voxel_mm))
    turned = ('[placement]\nrotate_deg = [0, 0, 90]\n')
    moved = phantoms.get(str(_write(tmp_path, text + turned, "turned.toml")), brain)
    np.testing.assert_allclose(moved.volume.centre_of_activity_mm(),
                               [-centre[1], centre[0], centre[2]], atol=1e-3)
    sampling.positions(state(5), moved.packed(), drawn)
    assert np.all(np.abs(drawn.mean(axis=0) - [-centre[1], centre[0], centre[2]]) < 2.0)


def _volume(path: Path, values: np.ndarray, affine: np.ndarray | None = None) -> str:
    a = np.diag([2.0, 2.0, 2.0, 1.0]) if affine is None else affine
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(values, np.float32), LPS_TO_RAS @ a), str(path))
    return path.name


def _voxels(tmp_path: Path, activity=None, density=None, extra: str = "") -> Path:
    a = _volume(tmp_path / "a.nii.gz", np.ones((10, 10, 10)) if activity is None else activity)
    d = _volume(tmp_path / "d.nii.gz", np.ones((10, 10, 10)) if density is None else density)
    return _write(tmp_path, f'[phantom]\nname = "v"\n[voxels]\nactivity = "{a}"\n'
                            f'density = "{d}"\n{extra}')


def _bad_cases(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """name -> (phantom argument, what its one line says)."""
    (tmp_path / "garbage").mkdir(parents=True)
    garbage = _write(tmp_path / "garbage", '[phantom]\nname = "g"\n[voxels]\nactivity = '
                                           '"a.nii.gz"\ndensity = "a.nii.gz"\n')
    (tmp_path / "garbage" / "a.nii.gz").write_bytes(b"\x00not a nifti file at all" * 10)
    cases = {
        "missing file": (str(tmp_path / "nowhere.toml"), "does not exist"),
        "missing image": (str(_write(tmp_path / "m", '[phantom]\nname = "m"\n[voxels]\n'
                                                     'activity = "gone.nii.gz"\n')),
                          "gone.nii.gz does not exist"),
        "unreadable image": (str(garbage), "cannot read its activity image"),
        "not toml": (str(_write(tmp_path / "t", "[phantom\nname = 1")), "not valid TOML"),
        "unknown key": (str(_write(tmp_path / "k", '[phantom]\nname = "k"\ncolour = "red"\n'
                                                   '[[regions]]\nname = "r"\nshape = "sphere"'
                                                   '\ncentre_mm = [0, 0, 0]\ndiameter_mm = 9'
                                                   '\nactivity = 1.0\n')),
                        "unknown key 'colour'"),
        "shapes differ": (str(_voxels(tmp_path / "s", density=np.ones((10, 10, 9)))),
                          "must share one grid"),
        "negative": (str(_voxels(tmp_path / "n", activity=-np.ones((10, 10, 10)))),
                     "negative values"),
        "not finite": (str(_voxels(tmp_path / "f", activity=np.full((10, 10, 10), np.nan))),
                       "not finite"),
        "too dense": (str(_voxels(tmp_path / "d", density=np.full((10, 10, 10), 4.0))),
                      "from 0 to 3 g/mL"),
        "not in the bore": (str(_voxels(tmp_path / "b", np.ones((200, 10, 10)),
                                        np.ones((200, 10, 10)))),
                            "does not fit in bedside-brain"),
    }
    (tmp_path / "x").mkdir()
    a = _volume(tmp_path / "x" / "a.nii.gz", np.ones((10, 10, 10)))
    d = _volume(tmp_path / "x" / "d.nii.gz", np.ones((10, 10, 10)), np.diag([2, 2, 2.5, 1.0]))
    cases["affines differ"] = (str(_write(tmp_path / "x", f'[phantom]\nname = "x"\n[voxels]\n'
                                          f'activity = "{a}"\ndensity = "{d}"\n')),
                               "different affines")
    return cases


CASES = ("missing file", "missing image", "unreadable image", "not toml", "unknown key",
         "shapes differ", "affines differ", "negative", "not finite", "too dense",
         "not in the bore")


@pytest.mark.parametrize("case", CASES)
def test_a_bad_phantom_file_is_one_line_exit_2_and_no_run(tmp_path, capsys, case):
    phantom, words = _bad_cases(tmp_path / "p")[case]
    out = tmp_path / "runs"
    code = main(["run", "--phantom", phantom, "--duration", "1", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and words in err[0], err
    assert err[0].startswith("petdaq: error: ") and ("phantom file" in err[0])
    assert not out.exists() or not any(out.iterdir())
    with pytest.raises(UserError, match=words):                     # emulate says the same
        phantoms.get(phantom, load_scanner("bedside-brain"))


def test_the_docs_worked_example_turns_organ_labels_into_a_phantom(tmp_path, brain):
    """docs/phantoms.md's worked example, as written there: a virtual patient's organ labels
    and a table of uptakes and densities."""
    docs = (Path(__file__).parent.parent / "docs" / "phantoms.md").read_text()
    toml = docs.split("cat > fdg-chest/phantom.toml <<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]
    assert main(["phantoms", "population", "--body", "torso", "--n", "1", "--seed", "4",
                 "--out", str(tmp_path / "patients"), "--voxel-mm", "6", "--quiet"]) == 0
    folder = tmp_path / "fdg-chest"
    folder.mkdir()
    (folder / "organs.nii.gz").write_bytes(
        (tmp_path / "patients" / "torso-001" / "labels.nii.gz").read_bytes())
    (folder / "phantom.toml").write_text(toml + "\n")
    ph = phantoms.read(folder)
    v = ph.volume
    index = {n: k for k, n in v.label_names.items()}
    assert np.all(v.activity[v.labels == index["myocardium"]] == 4.0)
    assert np.all(v.density[v.labels == index["lung_left"]] == pytest.approx(0.26))
    assert v.activity[v.labels == 0].max() == 0.0
    assert main(["phantoms", "show", str(folder), "--picture", str(tmp_path / "p.png")]) == 0
    (folder / "phantom.toml").write_text(toml.replace('17 = { name = "myocardium", '
                                                      'activity = 4.0, density = 1.05 }',
                                                      '17 = "myocardium"') + "\n")
    with pytest.raises(UserError, match=r"label 17 \(myocardium\) has no activity"):
        phantoms.read(folder)


def test_petdaq_phantoms_write_show_and_list(tmp_path, capsys):
    assert main(["phantoms", "write", "nema-iq", "--out", str(tmp_path / "n"), "--voxel-mm",
                 "6"]) == 0
    assert main(["phantoms", "show", str(tmp_path / "n")]) == 0
    out = capsys.readouterr().out
    assert "sphere_37" in out and "voxels" in out and (tmp_path / "n" / "phantom.png").is_file()
    png = (tmp_path / "n" / "phantom.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["phantoms", "list"]) == 0 and "cardiac" in capsys.readouterr().out
    for bad, words in ((["phantoms", "write", "nowhere", "--out", str(tmp_path / "x")],
                        "unknown phantom 'nowhere'"),
                       (["phantoms", "write", "brain", "--out", str(tmp_path / "x"),
                         "--voxel-mm", "0"], "--voxel-mm must be"),
                       (["phantoms", "show", str(tmp_path / "gone.toml")], "does not exist")):
        assert main(bad) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err


def test_the_daqs_scan_settings_take_a_phantom_file(tmp_path, monkeypatch):
    """What the console and petdaq run ask the DAQ for: a file's path made absolute, its own
    activity taken when none is given, a bad file refused before anything starts."""
    from daq.control.emulated import EmulatorSettings

    _write(tmp_path / "lab", LAB)
    monkeypatch.chdir(tmp_path)
    own = EmulatorSettings(phantom="lab/phantom.toml", activity_mbq=None)
    assert own.phantom == str((tmp_path / "lab" / "phantom.toml").resolve())
    assert own.activity_mbq == pytest.approx(phantoms.read(own.phantom).activity_mbq)
    asked = EmulatorSettings.from_request({"phantom": "lab", "activity_mbq": 3.0})
    assert asked.activity_mbq == 3.0 and asked.phantom == own.phantom
    with pytest.raises(UserError, match=r"phantom file .*nowhere\.toml does not exist"):
        EmulatorSettings.from_request({"phantom": "nowhere.toml"})
