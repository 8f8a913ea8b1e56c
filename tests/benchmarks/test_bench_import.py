"""``petdaq import`` of a PETsys singles file, against reading it with ``np.fromfile`` and ordering
it with a stable ``np.argsort``.

Data: 0.1 s of the NEMA NU 2 scatter phantom at 40 MBq in bedside-brain (about 2 M singles, 20
Mcps), written as a PETsys singles file (channelID = crystal, energy in keV). The import: records
-> crystals -> keV -> time order -> coincidence sort -> list-mode file, as ``petdaq import
--no-recon`` does past its run directory (:func:`daq.perf.importbench.import_file`).
``extra_info["events_per_s"]``: records per second of the median round.
Run: ``.venv/bin/python -m pytest tests/benchmarks/test_bench_import.py --benchmark-enable``.
"""

from __future__ import annotations

import pytest
from rates import record

import emulator
from daq.perf.importbench import baseline, import_file, write_petsys


@pytest.fixture(scope="module")
def petsys_file(brain, tmp_path_factory):
    sim = emulator.simulate(brain, "nu2-scatter", "F-18", 40.0, 0.1, seed=7)
    path = tmp_path_factory.mktemp("import") / "singles.ldat"
    return path, write_petsys(sim.singles, path)


def test_bench_import_petsys_singles(benchmark, brain, petsys_file, tmp_path):
    path, n = petsys_file
    import_file(brain, path, tmp_path / "warm.h5")  # compiles outside the timed rounds
    result = benchmark(import_file, brain, path, tmp_path / "lm.h5")
    assert result["counts"]["singles"] == n and result["counts"]["prompts"] > 1000
    record(benchmark, n)


def test_bench_import_baseline_fromfile_argsort(benchmark, petsys_file):
    path, n = petsys_file
    assert benchmark(baseline, path) == n
    record(benchmark, n)
