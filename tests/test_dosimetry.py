"""Theranostic dosimetry: exponential fits, sphere S values, and ``petdaq dosimetry`` on an
emulated three-time-point Lu-177 study whose effective half-life is known."""

from __future__ import annotations

import csv
import datetime as dt
import math
import shutil
import subprocess

import numpy as np
import pytest
from inprocess import petdaq as _inprocess
from sharedruns import lu177_cylinder_at_72_h

from infra.errors import UserError
from recon.dosimetry.fit import fit
from recon.dosimetry.mird import photon_absorbed_fraction, sphere_s_gy_per_mbq_h


def test_mono_and_bi_exponential_fits_recover_their_curves():
    t = np.array([4.0, 24.0, 72.0, 168.0])
    mono = fit(t, 100 * np.exp(-math.log(2) * t / 72))
    assert mono.effective_half_life_h == pytest.approx(72.0)
    assert mono.tia_mbq_h == pytest.approx(100 * 72 / math.log(2))
    curve = 60 * np.exp(-math.log(2) * t / 5) + 40 * np.exp(-math.log(2) * t / 80)
    bi = fit(t, curve, "bi")
    assert bi.amplitudes_mbq == pytest.approx((60, 40), rel=1e-6)
    assert bi.tia_mbq_h == pytest.approx((60 * 5 + 40 * 80) / math.log(2), rel=1e-6)
    assert bi.rms_relative < 1e-6


@pytest.mark.parametrize(("t", "a", "message"), [
    ([24.0], [5.0], "at least 2 distinct time points"),
    ([24.0, 72.0], [5.0, 0.0], "activity > 0"),
    ([24.0, 72.0], [5.0, 6.0], "does not fall with time"),
])
def test_fits_that_the_points_cannot_carry_say_why(t, a, message):
    with pytest.raises(UserError, match=message):
        fit(np.array(t), np.array(a))
    with pytest.raises(UserError, match="at least 4 time points"):
        fit(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0]), "bi")


def test_sphere_s_values_scale_with_mass_and_hold_the_electrons():
    electrons = 147.9 * 1.602176634e-16 * 3.6e9  # J per MBq h
    for mass_g in (10.0, 100.0, 1000.0):
        s = sphere_s_gy_per_mbq_h("Lu-177", mass_g)
        assert electrons / (mass_g / 1000) < s < 1.05 * electrons / (mass_g / 1000)
    assert photon_absorbed_fraction(208.0, 10.0) < photon_absorbed_fraction(208.0, 1000.0) < 0.2
    with pytest.raises(UserError, match="no electron energy per decay for F-18"):
        sphere_s_gy_per_mbq_h("F-18", 100.0)


def petdaq(*args: str) -> subprocess.CompletedProcess:
    return _inprocess(*args)


@pytest.mark.slow
def test_three_time_point_lu177_study_gives_its_half_life_and_tia(tmp_path, tmp_path_factory):
    """Three emulated Lu-177 scans of one patient at 24, 72 and 168 h after injection, the
    activity falling with an effective half-life of 72 h; ``petdaq dosimetry`` with a sphere in
    the cylinder: fitted half-life and time-integrated activity within 10 % of the truth."""
    from emulator import phantoms
    from hw import load_scanner

    half_life_h, a0_mbq, radius_mm = 72.0, 2000.0, 60.0
    runs = []
    for t_h in (24.0, 72.0, 168.0):
        if t_h == 72.0:     # 1000 MBq: the scan the quantification test reads too
            shutil.copytree(lu177_cylinder_at_72_h(tmp_path_factory), tmp_path / "day3")
            runs.append(str(tmp_path / "day3"))
            continue
        now = dt.datetime.now(dt.UTC)  # each run's own start: a run takes a minute or more
        activity = a0_mbq * math.exp(-math.log(2) * t_h / half_life_h)
        injection = (now - dt.timedelta(hours=t_h)).isoformat(timespec="seconds")
        # at least 10 GBq s a scan (as the shared 72 h one): fewer counts bias OSEM low
        seconds = max(10.0, 1e4 / activity)
        r = petdaq("run", "--scanner", "spect-dual-head", "--phantom", "cylinder", "--nuclide",
                   "Lu-177", "--activity-mbq", f"{activity:.3f}", "--duration", f"{seconds:.1f}",
                   "--fast",
                   "--no-recon", "--injection-time", injection, "--patient-id", "P1",
                   "--out", str(tmp_path), "--name", f"day{t_h / 24:g}")
        assert r.returncode == 0, r.stderr
        runs.append(str(tmp_path / f"day{t_h / 24:g}"))
    r = petdaq("dosimetry", *reversed(runs), "--sphere", f"core:0,0,0,{radius_mm:g}",
               "--out", str(tmp_path / "dose"))
    assert r.returncode == 0, r.stdout + r.stderr
    with open(tmp_path / "dose" / "dosimetry.csv") as fh:
        (row,) = list(csv.DictReader(fh))
    camera = load_scanner("spect-dual-head")
    cylinder = phantoms.get("cylinder", camera).regions()["cylinder"].shape
    sphere_ml = float(row["mass_g"])  # unit density
    assert sphere_ml == pytest.approx(4 / 3 * math.pi * radius_mm ** 3 / 1000, rel=0.05)
    true_a0 = a0_mbq * sphere_ml / (cylinder.volume_mm3 / 1000)
    assert float(row["effective_half_life_h"]) == pytest.approx(half_life_h, rel=0.10), row
    assert float(row["tia_mbq_h"]) == pytest.approx(true_a0 * half_life_h / math.log(2),
                                                     rel=0.10)
    assert float(row["absorbed_dose_gy"]) == pytest.approx(
        float(row["tia_mbq_h"]) * sphere_s_gy_per_mbq_h("Lu-177", float(row["mass_g"])),
        rel=1e-3)
    assert (tmp_path / "dose" / "dosimetry.png").stat().st_size > 5000
    with open(tmp_path / "dose" / "timepoints.csv") as fh:
        times = [float(p["time_h"]) for p in csv.DictReader(fh)]
    assert times == pytest.approx([24.0, 72.0, 168.0], abs=0.1)  # sorted, whatever the order

    r = petdaq("dosimetry", runs[0], "--sphere", "core:0,0,0,60")
    assert r.returncode == 2 and "at least 2 distinct time points" in r.stderr, r.stderr
