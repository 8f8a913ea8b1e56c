"""Reconstruction throughput: list-mode projection, one LM-OSEM update, the live update, exports.

Events: 1 M crystal pairs drawn uniformly among bedside-brain's valid pairs (every such LOR
crosses the field of view, ~82 planes of the default 2 mm grid on average), TOF positions
N(0, 50 mm), in acquisition order (consecutive LORs unrelated) or in the LOR-space order that
the reconstructions use (:func:`recon.pet.lors.lor_order`; the OSEM and live benchmarks include that
sort; the live one adds 100 k delayeds to every 1 M prompts: randoms estimate on).
``extra_info``: ``events_per_s`` of the median round (forward + back projection counts an event
once), ``events_per_s_per_thread``, ``threads``.
Run: ``.venv/bin/python -m pytest tests/benchmarks/test_bench_recon.py --benchmark-enable``.
"""

from __future__ import annotations

import numpy as np
import pytest
from rates import record

from hw import COINC_DTYPE, SPEED_OF_LIGHT_MM_PER_PS
from recon import LiveRecon, Projector, default_grid, set_threads
from recon.outputs.export import read_dicom, read_nifti, write_dicom_pet, write_nifti
from recon.pet.lors import LORs, lor_order
from recon.pet.osem import ListModeEM
from recon.pet.projector import pad
from recon.pet.system import sample_pairs
from recon.spect.osem import SpectProjector
from recon.threads import get_threads, max_threads

N_EVENTS = 1_000_000
ROUNDS = 3  # the fastest of 3 (after a warm-up) for the same-run ratios
THREADS = sorted({1, max_threads()})
#: The sensitivity image only scales the update: its Monte-Carlo quality does not matter here.
SENSITIVITY_SAMPLES = 1_000_000


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    import os

    old = os.environ.get("BEDSIDE_PET_CACHE")
    os.environ["BEDSIDE_PET_CACHE"] = str(tmp_path_factory.mktemp("recon-cache"))
    yield
    if old is None:
        os.environ.pop("BEDSIDE_PET_CACHE")
    else:
        os.environ["BEDSIDE_PET_CACHE"] = old


@pytest.fixture(scope="module")
def coinc(brain) -> np.ndarray:
    rng = np.random.default_rng(7)
    lors = sample_pairs(brain, N_EVENTS, rng, brain.acquisition["min_sector_difference"])
    out = np.zeros(N_EVENTS, COINC_DTYPE)
    out["t"] = np.arange(N_EVENTS, dtype=np.int64) * 10_000
    out["crystal_a"], out["crystal_b"] = lors.crystal_a, lors.crystal_b
    out["dt"] = np.rint(rng.normal(0.0, 50.0, N_EVENTS) * 2 / SPEED_OF_LIGHT_MM_PER_PS)
    return out


@pytest.fixture
def threads():
    before = get_threads()
    yield
    set_threads(before)


@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("order", ["lor", "acquisition"])
@pytest.mark.parametrize("tof", [False, True], ids=["nontof", "tof"])
def test_bench_forward_back(benchmark, brain, coinc, tof, order, n_threads, threads):
    """Forward then back projection of every event on the default grid (2 mm voxels)."""
    set_threads(n_threads)
    proj = Projector(brain, default_grid(brain), tof)
    lors = LORs.from_coinc(coinc)
    if order == "lor":
        lors = lors.take(lor_order(lors, proj.endpoints))
    image = pad(np.ones(proj.grid.shape, np.float32))
    proj.back_padded(proj.forward_padded(image, lors.take(slice(0, 100))),
                     lors.take(slice(0, 100)))                 # compiled before timing

    def forward_back():
        return proj.back_padded(proj.forward_padded(image, lors), lors)

    out = benchmark.pedantic(forward_back, rounds=ROUNDS, warmup_rounds=1)
    assert np.isfinite(out).all() and out.max() > 0
    record(benchmark, N_EVENTS, threads=n_threads)


def test_bench_osem_update(benchmark, brain, coinc, threads):
    """One LM-OSEM subset update of 1 M TOF events with randoms and attenuation-free weights."""
    set_threads(max_threads())
    em = ListModeEM(brain, tof=True, sensitivity_samples=SENSITIVITY_SAMPLES)
    events = em.events(coinc, em.randoms_model(np.full(brain.n_crystals, 50)))
    x0 = em.initial(N_EVENTS)
    em.update(x0.copy(), events.take(slice(0, 100)), 1e-4)

    out = benchmark.pedantic(lambda: em.update(x0.copy(), em.in_lor_order(events), 0.1),
                             rounds=ROUNDS, warmup_rounds=1)
    assert np.isfinite(out).all()
    record(benchmark, N_EVENTS, threads=get_threads())


@pytest.fixture(scope="module")
def live_chunk(brain, coinc) -> np.ndarray:
    """The 1 M prompts plus 100 k delayeds (random pairs, uniform in the window): the randoms
    estimate is part of every live update, as in the DAQ."""
    rng = np.random.default_rng(8)
    n = N_EVENTS // 10
    lors = sample_pairs(brain, n, rng, brain.acquisition["min_sector_difference"])
    delayed = np.zeros(n, COINC_DTYPE)
    delayed["crystal_a"], delayed["crystal_b"] = lors.crystal_a, lors.crystal_b
    delayed["dt"] = rng.integers(0, brain.acquisition["coincidence_window_ps"], n)
    delayed["delayed"] = 1
    out = np.concatenate([coinc, delayed])
    return out[np.argsort(rng.random(out.size), kind="stable")]


@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("tof", [False, True], ids=["nontof", "tof"])
def test_bench_live_update(benchmark, brain, live_chunk, tof, n_threads, threads):
    """The DAQ's live step (daq.control.live.LiveImage: ``add`` the coincidences that arrived, then
    ``update``): add 1 M new prompts (and 100 k delayeds) to a reconstruction that already holds
    1 M or more, and update (one subset of 1 M prompts over all so far, randoms from all the
    delayeds so far). Compiled and the sensitivity image computed before the timed rounds.
    Target (TOF, all threads): within 1 s."""
    set_threads(n_threads)
    live = LiveRecon(brain, tof=tof, max_events_per_update=N_EVENTS,
                     sensitivity_samples=SENSITIVITY_SAMPLES)
    live.add(live_chunk)
    live.update()

    def step():
        live.add(live_chunk)
        return live.update()

    image = benchmark.pedantic(step, rounds=ROUNDS, warmup_rounds=0)
    assert image.meta["events"] >= 2 * N_EVENTS and live.n_delayeds >= 2 * N_EVENTS // 10
    assert np.isfinite(image.array).all()
    record(benchmark, N_EVENTS, threads=n_threads)
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        benchmark.extra_info["within_1_s"] = bool(stats.stats.median < 1.0)


def test_bench_spect_forward_back(benchmark, threads):
    """SPECT projector: all 120 views of the 64^3 grid, with attenuation, forward then back
    (the views' attenuation factors made in the first round and kept, as OSEM's iterations do)."""
    from hw import load_scanner

    set_threads(max_threads())
    scanner = load_scanner("spect-dual-head")
    grid = default_grid(scanner)
    mu = np.full(grid.shape, 0.015, np.float32)
    proj = SpectProjector(scanner, grid, mu)
    x = np.ones(grid.shape, np.float32)
    proj.back(proj.forward(x, [0]), [0])

    out = benchmark.pedantic(lambda: proj.back(proj.forward(x)), rounds=3, warmup_rounds=0)
    assert out.max() > 0
    pixels = int(np.prod(proj.shape))
    record(benchmark, pixels, threads=get_threads())


def test_bench_nifti_dicom_round_trip(benchmark, brain, tmp_path):
    """Write and read back the default-grid image as NIfTI and as a DICOM PET series
    (events = voxels)."""
    grid = default_grid(brain)
    rng = np.random.default_rng(1)
    image = grid.image(rng.random(grid.shape).astype(np.float32) * 1e4, "Bq/mL")
    import datetime as dt

    from recon.outputs.export import Acquisition, Radiopharmaceutical

    now = dt.datetime(2026, 1, 1, 12, 0, 0)
    rp = Radiopharmaceutical("F-18", 6586.2, 0.967, 1e8, now)
    acq = Acquisition(now, 300.0)

    def round_trip():
        write_nifti(image, tmp_path / "i.nii.gz")
        write_dicom_pet(image, tmp_path / "dcm", rp, acq)
        return read_nifti(tmp_path / "i.nii.gz"), read_dicom(tmp_path / "dcm")

    nii, dcm = benchmark.pedantic(round_trip, rounds=3, warmup_rounds=0)
    np.testing.assert_array_equal(nii.array, image.array)
    assert np.abs(dcm.array - image.array).max() <= 1e4 / 32767
    record(benchmark, int(np.prod(grid.shape)), threads=1)
