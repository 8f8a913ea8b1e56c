"""PETSIRD export: what petsird's own reader gets back is the run's coincidences, on the scanner's
geometry, with TOF and energy bins consistent with each event."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import petsird
import pytest
from petsird.helpers import are_detections_ordered, expand_detection_bins

from hw import COINC_DTYPE, load_scanner
from hw.scanner import SPEED_OF_LIGHT_MM_PER_PS
from infra.errors import UserError
from petdaq.runs import info
from runstore.listmode import ListModeWriter
from runstore.petsird import export_petsird
from runstore.rundir import RunDir

C_HALF = SPEED_OF_LIGHT_MM_PER_PS / 2  # mm per ps of arrival-time difference
WINDOW_PS = 4000
DELAY_PS = 100_000
ENERGY_WINDOW = (435.0, 585.0)


def _header(scanner_name: str = "bedside-brain") -> dict:
    return {"scanner": scanner_name, "window_ps": WINDOW_PS, "delay_ps": DELAY_PS,
            "energy_window_kev": list(ENERGY_WINDOW), "policy": "takeAllGoods",
            "min_sector_difference": 2, "mode": "single-window"}


def _coincidences(scanner, n: int = 3000, seed: int = 7) -> np.ndarray:
    """Random coincidences between real crystals >= 2 sectors apart, over ~6.3 ms, 1/4 delayed."""
    rng = np.random.default_rng(seed)
    c = np.zeros(n, COINC_DTYPE)
    a = rng.integers(0, scanner.n_crystals, n)
    b = rng.integers(0, scanner.n_crystals, n)
    close = scanner.sector_difference(a, b) < 2
    while close.any():
        b[close] = rng.integers(0, scanner.n_crystals, int(close.sum()))
        close = scanner.sector_difference(a, b) < 2
    c["crystal_a"], c["crystal_b"] = a, b
    # times in order but for a few local swaps, as a streaming sorter may emit them
    t = np.sort(rng.integers(0, 6_300_000_000, n))
    swap = rng.integers(0, n - 1, 50)
    t[swap], t[swap + 1] = t[swap + 1], t[swap].copy()
    c["t"] = t
    c["energy_a"] = rng.uniform(*ENERGY_WINDOW, n)
    c["energy_b"] = rng.uniform(*ENERGY_WINDOW, n)
    c["dt"] = rng.integers(0, WINDOW_PS, n)
    c["dt"][:5] = [0, 34, 35, 36, WINDOW_PS - 1]  # bin edges for the default 70 ps bins
    c["delayed"] = rng.random(n) < 0.25
    return c


def _run(tmp_path: Path, scanner, coinc: np.ndarray, name: str = "run") -> RunDir:
    run = RunDir.create(tmp_path, name)
    run.new_start(scanner.name, scanner.digest, {}, {})
    w = ListModeWriter(run.listmode, _header(scanner.name))
    w.append(coinc)
    w.close()
    return run


def _read(path: Path) -> tuple[petsird.Header, list[petsird.EventTimeBlock]]:
    with petsird.BinaryPETSIRDReader(str(path)) as reader:
        header = reader.read_header()
        blocks = [tb.value for tb in reader.read_time_blocks()]
    return header, blocks


def _crystal(scanner, module: np.ndarray, element: np.ndarray) -> np.ndarray:
    """Global crystal of (module, element): the inverse of the documented mapping."""
    ct = scanner.crystals_per_ring // scanner.n_modules
    ca = scanner.n_rings // scanner.n_module_rings
    sector, module_ring = module % scanner.n_modules, module // scanner.n_modules
    ring = module_ring * ca + element // ct
    tang = sector * ct + element % ct
    return ring * scanner.crystals_per_ring + tang


@pytest.fixture(scope="module")
def exported(tmp_path_factory, brain):
    """One export with 3 energy bins, shared by the read-back checks."""
    tmp = tmp_path_factory.mktemp("petsird")
    coinc = _coincidences(brain)
    run = _run(tmp, brain, coinc)
    out = tmp / "run.petsird"
    n = export_petsird(run, brain, out, energy_bins=3)
    header, blocks = _read(out)
    return coinc, n, header, blocks, out


def test_header_carries_scanner_binning_and_resolutions(exported, brain) -> None:
    coinc, n, header, _, _ = exported
    s = header.scanner
    assert s.model_name == "bedside-brain"
    np.testing.assert_allclose(s.event_energy_bin_edges[0].edges, [435, 485, 535, 585])
    assert s.energy_resolution_at_511[0] == pytest.approx(0.115, rel=1e-6)
    assert s.tof_resolution[0][0] == pytest.approx(350 * C_HALF, rel=1e-6)
    edges = s.tof_bin_edges[0][0].edges
    widths = np.diff(edges)
    np.testing.assert_allclose(widths, 70 * C_HALF, rtol=1e-5)  # CTR / 5
    assert edges.size % 2 == 0  # odd number of bins: 0 ps is a bin centre
    np.testing.assert_allclose(edges, -edges[::-1], atol=1e-4)
    assert edges[-1] >= WINDOW_PS * C_HALF
    assert edges[-1] - 70 * C_HALF < WINDOW_PS * C_HALF
    assert s.prompt_event_policy == petsird.CoincidencePolicy.MULTIPLES_AS_ALL_COINCIDENCES
    assert s.delayed_event_policy == s.prompt_event_policy
    assert header.exam.modality == "PT"
    assert header.exam.study_instance_uid.startswith("2.25.")
    assert n == int((coinc["delayed"] == 0).sum())


def test_geometry_reproduces_crystal_centres(exported, brain) -> None:
    _, _, header, _, _ = exported
    rep = header.scanner.scanner_geometry.replicated_modules
    assert len(rep) == 1
    mods = rep[0]
    elements = mods.object.detecting_elements
    assert len(mods.transforms) == brain.n_modules * brain.n_module_rings
    assert len(elements.transforms) * len(mods.transforms) == brain.n_crystals
    corners = np.array([c.c for c in elements.object.shape.corners], np.float64)
    np.testing.assert_allclose(np.ptp(corners, axis=0), [20.0, 3.0, 3.0], atol=1e-6)
    box_centre = np.append(corners.mean(axis=0), 1.0)
    mod_m = np.array([t.matrix for t in mods.transforms], np.float64)
    el_m = np.array([t.matrix for t in elements.transforms], np.float64)
    module = np.repeat(np.arange(len(mod_m)), len(el_m))
    element = np.tile(np.arange(len(el_m)), len(mod_m))
    in_module = np.einsum("nij,j->ni", el_m[element], box_centre)
    centres = np.einsum("nij,nj->ni", mod_m[module],
                        np.hstack([in_module, np.ones((module.size, 1))]))
    crystal = _crystal(brain, module, element)
    assert np.array_equal(np.sort(crystal), np.arange(brain.n_crystals))
    err = np.abs(centres - brain.crystal_centres[crystal]).max()
    assert err < 1e-3, err


def _expected_blocks(coinc: np.ndarray) -> dict[int, np.ndarray]:
    block = coinc["t"] // 1_000_000_000
    return {int(k): coinc[block == k] for k in np.unique(block)}


@pytest.mark.parametrize("kind", ["prompt", "delayed"])
def test_events_come_back_with_crystals_energies_and_tof(exported, brain, kind: str) -> None:
    coinc, _, header, blocks, _ = exported
    s = header.scanner
    edges_mm = s.tof_bin_edges[0][0].edges
    energy_edges = s.event_energy_bin_edges[0].edges.astype(np.float64)
    expected = _expected_blocks(coinc)
    assert len(blocks) == max(expected) + 1
    flag = int(kind == "delayed")
    total = 0
    for k, blk in enumerate(blocks):
        assert (blk.time_interval.start, blk.time_interval.stop) == (k, k + 1)
        events = (blk.delayed_events if flag else blk.prompt_events)[0][0]
        want = expected.get(k, coinc[:0])
        want = want[want["delayed"] == flag]  # stable: the run's order within a block
        assert len(events) == want.size
        total += want.size
        if not events:
            continue
        assert all(are_detections_ordered([0, 0], *e.detection_bins) for e in events)
        first = expand_detection_bins(s, 0, [e.detection_bins[0] for e in events])
        second = expand_detection_bins(s, 0, [e.detection_bins[1] for e in events])
        c1 = _crystal(brain, np.array([x.module_index for x in first]),
                      np.array([x.element_index for x in first]))
        c2 = _crystal(brain, np.array([x.module_index for x in second]),
                      np.array([x.element_index for x in second]))
        a_first = c1 == want["crystal_a"]
        assert np.array_equal(np.where(a_first, c2, c1), want["crystal_b"])
        assert np.array_equal(np.where(a_first, c1, c2), want["crystal_a"])
        e1 = np.array([x.energy_index for x in first])
        e2 = np.array([x.energy_index for x in second])
        ea, eb = np.where(a_first, e1, e2), np.where(a_first, e2, e1)
        assert np.array_equal(ea, np.searchsorted(energy_edges, want["energy_a"], "right") - 1)
        assert np.array_equal(eb, np.searchsorted(energy_edges, want["energy_b"], "right") - 1)
        # PETSIRD stores (t1 - t2) c/2; dt = t_b - t_a
        # (bins are [lo, hi), compared in float32 as a PETSIRD reader sees the edges)
        tof_mm = (np.where(a_first, -1, 1) * want["dt"] * C_HALF).astype(np.float32)
        idx = np.array([e.tof_idx for e in events])
        assert np.all(edges_mm[idx] <= tof_mm)
        assert np.all(tof_mm < edges_mm[idx + 1])
    assert total == int((coinc["delayed"] == flag).sum())


def test_encoding_is_byte_identical_to_the_petsird_writer(exported, tmp_path: Path) -> None:
    """The array-wise encoder writes exactly what petsird's writer makes of the same objects."""
    _, _, header, blocks, out = exported
    again = tmp_path / "again.petsird"
    with petsird.BinaryPETSIRDWriter(str(again)) as writer:
        writer.write_header(header)
        writer.write_time_blocks([petsird.TimeBlock.EventTimeBlock(b) for b in blocks])
    assert again.read_bytes() == out.read_bytes()


def test_default_export_single_energy_bin_and_empty_blocks(tmp_path: Path, brain) -> None:
    coinc = _coincidences(brain, n=200, seed=3)
    coinc["t"][-1] = 9_500_000_000  # leaves ms 7 and 8 without events
    run = _run(tmp_path, brain, coinc)
    n = export_petsird(run, brain, tmp_path / "x.petsird")
    header, blocks = _read(tmp_path / "x.petsird")
    np.testing.assert_allclose(header.scanner.event_energy_bin_edges[0].edges, ENERGY_WINDOW)
    assert len(blocks) == 10
    assert not blocks[7].prompt_events[0][0] and not blocks[8].delayed_events[0][0]
    assert sum(len(b.prompt_events[0][0]) for b in blocks) == n
    assert n == int((coinc["delayed"] == 0).sum())
    assert sum(len(b.delayed_events[0][0]) for b in blocks) == int(coinc["delayed"].sum())


def test_sector_cut_marks_module_pairs_not_in_coincidence(exported, brain) -> None:
    _, _, header, _, _ = exported
    eff = header.scanner.detection_efficiencies
    lut = eff.module_pair_sgidlut[0][0]
    n = brain.n_modules
    for m1 in range(len(lut)):
        for m2 in range(m1 + 1):
            d = abs(m1 % n - m2 % n)
            assert lut[m1][m2] == (0 if min(d, n - d) >= 2 else -1)


def test_export_command(tmp_path: Path, brain, capsys) -> None:
    """``petdaq export RUN --petsird FILE`` as petdaq.runs.info registers it."""
    parser = argparse.ArgumentParser(prog="petdaq")
    info.add_commands(parser.add_subparsers())
    coinc = _coincidences(brain, n=100, seed=5)
    run = _run(tmp_path, brain, coinc)
    args = parser.parse_args(["export", str(run.path), "--petsird", str(tmp_path / "cli.petsird")])
    assert args.func(args) == 0
    assert f"wrote {int((coinc['delayed'] == 0).sum())} prompts" in capsys.readouterr().out
    assert (tmp_path / "cli.petsird").is_file()


def test_missing_listmode_is_a_user_error(tmp_path: Path, brain) -> None:
    run = RunDir.create(tmp_path, "empty")
    out = tmp_path / "x.petsird"
    with pytest.raises(UserError, match="does not exist"):
        export_petsird(run, brain, out)
    assert not out.exists()


def test_spect_run_is_a_user_error(tmp_path: Path) -> None:
    spect = load_scanner("spect-dual-head")
    run = RunDir.create(tmp_path, "spect")
    with pytest.raises(UserError, match="PETSIRD export is for PET runs"):
        export_petsird(run, spect, tmp_path / "x.petsird")


def test_inconsistent_listmode_is_a_user_error(tmp_path: Path, brain) -> None:
    coinc = _coincidences(brain, n=50, seed=11)
    coinc["energy_a"][3] = 600.0
    run = _run(tmp_path, brain, coinc, "energy")
    out = tmp_path / "x.petsird"
    with pytest.raises(UserError, match="1 coincidences have energies outside"):
        export_petsird(run, brain, out)
    assert not out.exists() and not (tmp_path / "x.petsird.tmp").exists()
    other = _run(tmp_path, brain, _coincidences(brain, n=50), "other")
    with pytest.raises(UserError, match="written for scanner bedside-brain, not small-animal"):
        export_petsird(other, load_scanner("small-animal"), out)
