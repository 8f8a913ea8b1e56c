"""GATE's coincidences into runs: GATE 9's classic ``Coincidences`` and ``delay`` trees, its
``tree`` output (a prompts file and a delayed file, branches of the two sides interleaved) and
GATE 10's coincidence trees, written here with uproot from our sorter's prompts and delayeds of
emulated singles; each pair placed on the crystals nearest its sides' positions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_import_formats import _import, petdaq

from runstore.listmode import read_listmode

uproot = pytest.importorskip("uproot")


@pytest.fixture(scope="module")
def singles(brain) -> np.ndarray:
    import emulator

    return emulator.simulate(brain, "nema-iq", "F-18", 20.0, 0.01, seed=5).singles


@pytest.fixture(scope="module")
def sorted_pairs(brain, singles) -> np.ndarray:
    """Our sorter's prompts and delayeds of a short emulated scan."""
    import coincidence

    acq = brain.acquisition
    c = coincidence.sort(singles, scanner=brain, window_ps=acq["coincidence_window_ps"],
                         energy_window_kev=acq["energy_window_kev"], delay_ps=acq["delay_ps"],
                         min_sector_difference=acq["min_sector_difference"])
    assert (c["delayed"] == 1).sum() > 50 and (c["delayed"] == 0).sum() > 1000
    return c


def _branches(brain, c: np.ndarray, version: str, rng) -> dict[str, np.ndarray]:
    """The pairs as GATE writes them: each side's own time (a delayed pair's later side a delay
    later), position 0.6 mm off its crystal's centre, energy in MeV; side 1 the later single
    half the time."""
    delay = brain.acquisition["delay_ps"]
    t_b = c["t"] + c["dt"] + np.where(c["delayed"] == 1, delay, 0)
    swap = rng.random(c.size) < 0.5
    sides = [(np.where(swap, t_b, c["t"]), np.where(swap, c["crystal_b"], c["crystal_a"]),
              np.where(swap, c["energy_b"], c["energy_a"])),
             (np.where(swap, c["t"], t_b), np.where(swap, c["crystal_a"], c["crystal_b"]),
              np.where(swap, c["energy_a"], c["energy_b"]))]
    out = {}
    for k, (t, crystal, e) in enumerate(sides, 1):
        xyz = brain.crystal_centres[crystal] + rng.uniform(-0.6, 0.6, (c.size, 3))
        if version == "GATE 9":
            out[f"time{k}"] = t.astype(np.float64) / 1e12
            out[f"energy{k}"] = e.astype(np.float64) / 1000.0
            for i, x in enumerate("XYZ"):
                out[f"globalPos{x}{k}"] = xyz[:, i].astype(np.float32)
        else:
            out[f"GlobalTime{k}"] = t.astype(np.float64) / 1e3
            out[f"TotalEnergyDeposit{k}"] = e.astype(np.float64) / 1000.0
            for i, x in enumerate("XYZ"):
                out[f"PostPosition_{x}{k}"] = xyz[:, i]
    # the tree output and GATE 10 interleave the sides' branches: X1, X2, Y1, Y2 ...
    return dict(sorted(out.items(), key=lambda kv: (kv[0][:-1], kv[0][-1])))


def _write(path: Path, trees: dict[str, dict[str, np.ndarray]]) -> Path:
    with uproot.recreate(path) as f:
        for name, branches in trees.items():
            tree = f.mktree(name, {k: v.dtype for k, v in branches.items()})
            tree.extend(branches)
    return path


def _key(c: np.ndarray) -> np.ndarray:
    keep = c[["t", "crystal_a", "crystal_b", "dt", "delayed"]]
    return np.sort(keep, order=["t", "crystal_a", "crystal_b", "dt", "delayed"])


def _check(run: Path, want: np.ndarray) -> None:
    got, _ = read_listmode(run / "coincidences.h5")
    assert np.all(np.diff(got["t"]) >= 0)
    assert np.array_equal(_key(got), _key(want))
    assert np.allclose(np.sort(got["energy_a"] + got["energy_b"]),
                       np.sort(want["energy_a"] + want["energy_b"]), atol=1e-3)
    stop = json.loads((run / "run.json").read_text())["stop"]
    assert stop["counts"]["prompts"] == (want["delayed"] == 0).sum()
    assert stop["counts"]["delayeds"] == (want["delayed"] == 1).sum()


def test_classic_coincidences_and_delay_trees(tmp_path, brain, sorted_pairs):
    rng = np.random.default_rng(1)
    prompts = sorted_pairs[sorted_pairs["delayed"] == 0]
    delayeds = sorted_pairs[sorted_pairs["delayed"] == 1]
    path = _write(tmp_path / "gate.root", {
        "Coincidences": _branches(brain, prompts, "GATE 9", rng),
        "delay": _branches(brain, delayeds, "GATE 9", rng)})
    _check(_import(tmp_path, "classic", str(path), "--format", "gate"), sorted_pairs)


def test_tree_output_a_prompts_file_and_a_delayed_file(tmp_path, brain, sorted_pairs):
    """GATE 9's /gate/output/tree: one file a collection, each tree named ``tree``."""
    rng = np.random.default_rng(2)
    prompts = sorted_pairs[sorted_pairs["delayed"] == 0]
    delayeds = sorted_pairs[sorted_pairs["delayed"] == 1]
    a = _write(tmp_path / "out.Coincidences.root",
               {"tree": _branches(brain, prompts, "GATE 9", rng)})
    b = _write(tmp_path / "out.delay.root", {"tree": _branches(brain, delayeds, "GATE 9", rng)})
    run = _import(tmp_path, "tree", str(b), str(a), "--format", "gate")
    _check(run, sorted_pairs)
    # the run replays from the files it kept, merged by time again; a killed one recovers
    r = petdaq("sort", str(run), "--out", str(tmp_path / "again"))
    assert r.returncode == 0, r.stderr
    _check(tmp_path / "again", sorted_pairs)
    (run / "coincidences.h5").unlink()
    doc = json.loads((run / "run.json").read_text())
    del doc["stop"]
    (run / "run.json").write_text(json.dumps(doc))
    r = petdaq("recover", str(run), "--no-recon")
    assert r.returncode == 0, r.stderr
    _check(run, sorted_pairs)


def test_gate_10_coincidence_tree(tmp_path, brain, sorted_pairs):
    rng = np.random.default_rng(3)
    prompts = sorted_pairs[sorted_pairs["delayed"] == 0]
    path = _write(tmp_path / "g10.root", {"coincidences": _branches(brain, prompts, "GATE 10",
                                                                    rng)})
    _check(_import(tmp_path, "g10", str(path), "--format", "gate"), prompts)


def test_empty_and_foreign_root_files_are_one_line(tmp_path):
    with uproot.recreate(tmp_path / "empty.root"):
        pass
    _write(tmp_path / "other.root", {"Hits": {"edep": np.zeros(3)}})
    for path, said in ((tmp_path / "empty.root", "is an empty ROOT file: it holds no tree"),
                       (tmp_path / "other.root", "has neither GATE singles nor coincidences")):
        out = tmp_path / "runs"
        r = petdaq("import", str(path), "--format", "gate", "--out", str(out))
        assert r.returncode == 2 and said in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not out.exists() or not any(out.iterdir())


def test_a_file_with_singles_and_coincidences(tmp_path, brain, singles, sorted_pairs):
    """GATE 9's ROOT output keeps Singles, Coincidences and delay in one file: by default its
    singles are sorted by our sorter (and compared with GATE's); --gate-coincidences takes
    GATE's own pairs."""
    rng = np.random.default_rng(4)
    xyz = brain.crystal_centres[singles["crystal"]] + rng.uniform(-0.6, 0.6, (singles.size, 3))
    keep = sorted_pairs[:500]  # GATE's own: fewer than ours, to tell them apart
    path = _write(tmp_path / "all.root", {
        "Singles": {"time": singles["t"] / 1e12, "energy": singles["energy"] / 1000.0,
                    **{f"globalPos{x}": xyz[:, i] for i, x in enumerate("XYZ")}},
        "Coincidences": _branches(brain, keep[keep["delayed"] == 0], "GATE 9", rng),
        "delay": _branches(brain, keep[keep["delayed"] == 1], "GATE 9", rng)})
    run = _import(tmp_path, "from-singles", str(path), "--format", "gate")
    got, _ = read_listmode(run / "coincidences.h5")
    assert got.size == sorted_pairs.size and (run / "gate_comparison.json").is_file()
    run = _import(tmp_path, "gates-own", str(path), "--format", "gate", "--gate-coincidences")
    _check(run, keep)
    assert not (run / "gate_comparison.json").exists()
    r = petdaq("import", str(path), "--format", "petsys", "--gate-coincidences", "--out",
               str(tmp_path / "runs"))
    assert r.returncode == 2 and "--gate-coincidences: for --format gate" in r.stderr
