"""Shared fixtures."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# the tests' own home: never the user's calibration tables, QC history, dicom.toml (a PACS that
# test runs would be sent to) or outbox; a test that needs one sets its own
os.environ["BEDSIDE_PET_HOME"] = tempfile.mkdtemp(prefix="bedside-pet-tests-home-")
atexit.register(shutil.rmtree, os.environ["BEDSIDE_PET_HOME"], ignore_errors=True)


#: Set by the first process of a test run to the tests' cache folder it chose: its xdist
#: workers inherit it and take that folder, not one inside it.
TESTS_CACHE_VAR = "BEDSIDE_PET_TESTS_CACHE"


def _tests_cache() -> str:
    """The tests' cache of computed arrays (sensitivity images, the normalization's geometric
    factors; :mod:`recon.cache`): a folder of the machine's cache named by the source of the
    reconstruction's floor and those below it (what computes them), so that every worker, phase
    and clone of one version shares what it computed, while a changed projector or model is
    always computed afresh (their keys name a model version that a change may forget to raise).
    Older versions' folders are pruned as numba's are (:func:`infra.numbacache._prune`)."""
    from infra.numbacache import ROOT, _prune, floor_digests
    from recon.cache import cache_dir

    if os.environ.get(TESTS_CACHE_VAR):
        return os.environ[TESTS_CACHE_VAR]
    here = cache_dir() / "tests" / floor_digests(ROOT)["recon"]
    here.mkdir(parents=True, exist_ok=True)
    _prune(here.parent, keep={here})
    return str(here)


os.environ["BEDSIDE_PET_CACHE"] = os.environ[TESTS_CACHE_VAR] = _tests_cache()


@pytest.fixture(scope="session")
def unseen_torsos(tmp_path_factory) -> Path:
    """Two virtual torsos drawn from a seed neither the learned mu-map's training nor its curve
    used."""
    from emulator.population.draw import population

    out = tmp_path_factory.mktemp("unseen")
    population("torso", 2, 9090, out, 3.0, threads=2)
    return out


@pytest.fixture(scope="session")
def brain():
    """The default scanner model."""
    from hw import load_scanner

    return load_scanner("bedside-brain")


# The modules that take longest (--durations=0 over phase 1 on the 2-core machine, 3 workers),
# longest first: with ``--dist loadfile --no-loadscope-reorder`` each is handed out before the
# short ones, so the workers end together instead of one finishing a long module alone. The
# dosimetry study and the SPECT quantification share a scan (tests/sharedruns.py): apart, so
# that one does not wait for the other's. A module not named here follows, in file order.
LONGEST_FIRST = (
    "test_dynamic_chain", "test_daq_spect", "test_qc", "test_recon_nu4", "test_recon_scatter",
    "test_recon_learnedmap", "test_recon_emulated", "test_recon_lvaxis", "test_dosimetry",
    "test_recon_normalization", "test_dicom_send", "test_cluster", "test_gui_live",
    "test_daq_service", "test_abcd_live", "test_gui_console", "test_spect_quant",
    "test_import_formats", "test_motion_watch", "test_recon_lvrings", "test_keys",
    "test_dicom_tls", "test_daq_pipeline", "test_motion_correction",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules of :data:`LONGEST_FIRST` first, in its order; each module's tests keep
    theirs."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker more than the cores this process may use. The tests wait on
    child processes, sockets, Orthanc and scans paced in real time; the extra worker fills those
    waits (phase 1 on the 2-core machine: 500 s with 3 workers against 559-633 s with 2)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (cores or 1) + 1
