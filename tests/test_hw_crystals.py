"""The crystals' non-uniformity: the ``[crystals]`` table, the truth it draws, the emulator that
detects with it, and the blank scan that sees it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scannerfiles import alike_brain, brain_variant

from hw import ScannerError, load_scanner

#: Spreads larger than a real scanner's, so that half a second of Lu-176 shows them clearly.
SPREAD = """
[crystals]
efficiency_spread = 0.25
edge_efficiency = 0.85
corner_efficiency = 0.7
energy_resolution_spread = 0.1
time_resolution_spread = 0.1
dead = [5, 700]
noisy = [{crystal = 1000, rate_cps = 20000.0}]
seed = 7
"""


def _with(tmp_path: Path, table: str, name: str = "spread.toml") -> Path:
    """bedside-brain with ``table`` and a mean acceptance of 0.7, so that few crystals of the
    spread reach an acceptance of 1."""
    return brain_variant(tmp_path / name, table, 0.7)


@pytest.fixture(scope="module")
def spread_scanner(tmp_path_factory):
    return load_scanner(str(_with(tmp_path_factory.mktemp("crystals"), SPREAD)))


def test_a_scanner_without_the_table_has_alike_crystals(tmp_path) -> None:
    ideal = load_scanner(str(alike_brain(tmp_path / "ideal.toml")))
    assert ideal.crystals.uniform
    assert np.all(ideal.crystal_acceptance() == ideal.response.crystal_efficiency)
    assert np.allclose(ideal.crystal_efficiencies(), 1.0, rtol=1e-12)


@pytest.mark.parametrize("name, rms", [("bedside-brain", 0.058), ("small-animal", 0.074)])
def test_the_shipped_scanners_crystals_differ_with_their_mean_kept(name, rms) -> None:
    s = load_scanner(name)
    acceptance, eff = s.crystal_acceptance(), s.crystal_efficiencies()
    live = eff > 0
    assert (~live).sum() == 1 and np.all(acceptance <= 1.0)
    assert acceptance[live].mean() == pytest.approx(s.response.crystal_efficiency, rel=1e-6)
    assert np.std(eff[live]) == pytest.approx(rms, abs=0.003)


def test_a_spread_that_reaches_an_acceptance_of_1_keeps_the_mean(tmp_path) -> None:
    s = load_scanner(str(brain_variant(tmp_path / "wide.toml", SPREAD, 0.95)))
    acceptance = s.crystal_acceptance()
    live = acceptance > 0
    assert acceptance.max() == 1.0 and (acceptance == 1.0).sum() > 1000
    assert acceptance[live].mean() == pytest.approx(0.95, rel=1e-6)


def test_the_truth_is_fixed_by_its_seed_with_a_block_profile_and_dead_crystals(
        spread_scanner) -> None:
    s = spread_scanner
    eff = s.crystal_efficiencies()
    assert np.array_equal(eff, s.crystal_efficiencies())       # the unit's own, every time
    live = np.ones(s.n_crystals, bool)
    live[[5, 700]] = False
    assert np.all(eff[~live] == 0) and eff[live].mean() == pytest.approx(1.0)
    assert 0.2 < np.std(np.log(eff[live])) < 0.35
    # a module's corner crystals detect less than its edges, its edges less than its inside
    ct, ca = 16, 16
    local_t = (np.arange(s.n_crystals) % s.crystals_per_ring) % ct
    local_a = s.crystal_ring % ca
    edge_t, edge_a = np.isin(local_t, (0, ct - 1)), np.isin(local_a, (0, ca - 1))
    inner, corner = ~edge_t & ~edge_a & live, edge_t & edge_a & live
    edge = (edge_t ^ edge_a) & live
    assert eff[corner].mean() < eff[edge].mean() < eff[inner].mean()
    assert eff[edge].mean() / eff[inner].mean() == pytest.approx(0.85, abs=0.03)
    # what a poorer energy resolution moves out of the window counts too
    acceptance = s.crystal_acceptance()
    assert np.all(acceptance <= 1.0) and np.all(acceptance[~live] == 0)
    ratio = eff[live] / (acceptance[live] / acceptance[live].mean())
    worse = s.crystal_fwhm_scale()[live] > 1.2
    assert ratio[worse].mean() < ratio[~worse].mean()


@pytest.mark.parametrize("table, message", [
    ("[crystals]\nefficiency_spread = -0.1\n", "'crystals.efficiency_spread' must be >= 0"),
    ("[crystals]\nedge_efficiency = 1.2\n", "'crystals.edge_efficiency' must be between 0 and 1"),
    ("[crystals]\ndead = [3.5]\n", "'crystals.dead' must be a list of crystal numbers"),
    ("[crystals]\ndead = [99999]\n", "names crystal 99999; the scanner has 12288"),
    ("[crystals]\nnoisy = [{crystal = 3}]\n", "'crystals.noisy' must be a list of {crystal"),
    ("[crystals]\nefficency_spread = 0.1\n", "'crystals.efficency_spread' is not a [crystals] key"),
])
def test_a_bad_crystals_table_is_named_in_one_line(tmp_path, table, message) -> None:
    with pytest.raises(ScannerError) as err:
        load_scanner(str(_with(tmp_path, table)))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_camera_takes_no_crystals_table(tmp_path) -> None:
    path = tmp_path / "camera.toml"
    path.write_text(Path(load_scanner("spect-dual-head").source).read_text()
                    + "\n[crystals]\nefficiency_spread = 0.1\n")
    with pytest.raises(ScannerError, match=r"\[crystals\] is for PET rings"):
        load_scanner(str(path))


@pytest.fixture(scope="module")
def blank_singles(spread_scanner):
    import emulator

    sim = emulator.simulate(spread_scanner, "blank", "F-18", 0.0, 0.5, seed=3, truth=True)
    return sim


def test_a_blank_scan_sees_each_crystals_efficiency_its_dead_and_its_noisy(
        spread_scanner, blank_singles) -> None:
    from emulator import records

    s, sim = spread_scanner, blank_singles
    assert 0.4e6 < sim.raw.size < 0.75e6     # ~1.2 M singles/s of Lu-176 at an acceptance of 0.95
    counts = np.bincount(sim.raw["crystal"], minlength=s.n_crystals).astype(float)
    assert counts[5] == 0 and counts[700] == 0           # dead channels give nothing
    noise = sim.truth["kind"] == records.NOISE
    assert np.all(sim.raw["crystal"][noise] == 1000)
    # 20 kcps of triggers with a flat 0-700 keV spectrum, those above the threshold kept
    assert 6000 < counts[1000] < 10000
    live = s.crystal_acceptance() > 0
    live[1000] = False
    # a crystal's Lu-176 singles follow its acceptance (the window is not applied to
    # singles): ~40 a crystal, so compared over tenths of the crystals ranked by acceptance
    acceptance = s.crystal_acceptance()[live]
    tenths = np.array_split(np.argsort(acceptance), 10)
    seen = np.array([counts[live][t].mean() for t in tenths])
    given = np.array([acceptance[t].mean() for t in tenths])
    assert np.all(np.diff(seen) > 0)
    assert seen / seen.mean() == pytest.approx(given / given.mean(), abs=0.05)


def test_alike_crystals_emulate_as_they_did(brain) -> None:
    """The per-crystal arrays of a scanner without spreads detect exactly as the scalar did:
    the same events, bit for bit, as the scanner's own seed-fixed run."""
    import emulator

    a = emulator.simulate(brain, "point", "F-18", 1.0, 0.02, seed=11)
    b = emulator.simulate(brain, "point", "F-18", 1.0, 0.02, seed=11)
    assert np.array_equal(a.raw, b.raw)
    share = a.raw.size / (1.0e6 * 0.02 + 0.02 * 1.2e6)
    assert 0.1 < share < 1.5


def test_blank_phantom_from_the_command_line_has_no_activity(tmp_path) -> None:
    out = tmp_path / "blank.frames"
    from inprocess import petdaq

    r = petdaq("emulate", "--phantom", "blank", "--duration", "0.05", "--fast", "--to", str(out),
               "--quiet")
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 100_000
    r = petdaq("emulate", "--list")
    assert "blank " in r.stdout and "Lu-176 alone" in r.stdout


def test_blank_settings_carry_no_activity() -> None:
    from daq.control.emulated import EmulatorSettings

    s = EmulatorSettings(phantom="blank", activity_mbq=20.0)
    assert s.activity_mbq == 0.0


def test_the_scanners_summary_says_how_its_crystals_differ(tmp_path) -> None:
    line = [ln for ln in load_scanner("bedside-brain").summary().splitlines()
            if "crystals differ" in ln]
    assert line == ["  crystals differ    efficiency 7 % log-normal, edges 0.92, corners 0.85; "
                    "energy and time resolution 5 % and 5 %; 1 dead, 0 noisy"]
    ideal = load_scanner(str(alike_brain(tmp_path / "ideal.toml")))
    assert "crystals differ    no: every crystal alike" in ideal.summary()
