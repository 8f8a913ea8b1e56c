"""Energy calibration recovers per-crystal gains and is stored with the scanner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daq.pipeline.process import calibration
from hw.dtypes import RAW_DTYPE
from infra.errors import UserError


def _spectrum_run(scanner, counts_per_crystal: int, seed: int = 0) -> np.ndarray:
    """Raw events of a 511 keV source: photopeak (11.5 % FWHM) over a Compton continuum."""
    rng = np.random.default_rng(seed)
    n = scanner.n_crystals * counts_per_crystal
    crystal = rng.integers(0, scanner.n_crystals, n)
    fwhm = scanner.response.fwhm_kev(511.0)
    energy = np.where(rng.random(n) < 0.4, rng.normal(511, fwhm / 2.355, n),
                      rng.uniform(50, 340, n))
    raw = np.zeros(n, RAW_DTYPE)
    raw["crystal"] = crystal
    gains = scanner.crystal_gains()
    raw["adc"] = np.clip(np.round(energy * gains[crystal] / scanner.digitizer.kev_per_adc_code),
                         0, 4095)
    return raw


def test_photopeak_calibration_recovers_gains_to_half_a_percent(brain) -> None:
    raw = _spectrum_run(brain, 600)
    cal, report = calibration.derive(raw, brain, "photopeak")
    err = cal.gains / brain.crystal_gains() - 1
    assert report["calibrated"] == brain.n_crystals
    assert abs(err.mean()) < 0.005 and err.std() < 0.005
    singles = cal.apply(raw[:100000])
    nominal = calibration.Calibration.nominal(brain).apply(raw[:100000])
    peak = lambda e: np.median(e[(e > 430) & (e < 600)])  # noqa: E731
    assert abs(peak(singles["energy"]) - 511) < 3
    # the calibrated photopeak is narrower than the uncalibrated one
    width = lambda e: np.std(e[(e > 400) & (e < 620)])  # noqa: E731
    assert width(singles["energy"]) < width(nominal["energy"])


def test_tables_are_stored_with_the_scanner_and_used(brain, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEDSIDE_PET_HOME", str(tmp_path))
    assert calibration.current(brain).method == "nominal"
    cal, _ = calibration.derive(_spectrum_run(brain, 300, seed=1), brain, "photopeak",
                                created_utc="2026-11-22T01:00:00.000+00:00")
    path = cal.save()
    assert path.parent == tmp_path / "calibration" and path.name.startswith("bedside-brain-")
    loaded = calibration.current(brain)
    assert loaded.method == "photopeak" and np.array_equal(loaded.gains, cal.gains)
    assert loaded.describe()["table"] == str(path)


def test_too_short_a_run_is_refused(brain) -> None:
    with pytest.raises(UserError, match="too short"):
        calibration.derive(_spectrum_run(brain, 2), brain, "photopeak")
    with pytest.raises(UserError, match="unknown calibration method"):
        calibration.derive(_spectrum_run(brain, 2), brain, "cobalt")
