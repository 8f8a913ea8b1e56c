"""Kinetic models and analyses on noise-free curves: the compartment model against its closed
form, Patlak and Logan recovering the rate constants they stand for, and their bad input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from emulator.phantoms import compartments as kinetics
from emulator.phantoms.compartments import FengInput, TissueModel
from infra.errors import UserError
from infra.study import Study
from recon.frames import check_frames, parse_schedule
from recon.kinetics import models
from recon.kinetics.tacs import Curves

GREY = TissueModel(K1=0.102, k2=0.130, k3=0.062)
SCHEDULE = "6x10s,8x30s,5x60s,5x120s,8x300s"  # 60 min


def _frame_curves(models_: dict[str, TissueModel | None]) -> Curves:
    """Frame-averaged model curves (Bq/mL) on :data:`SCHEDULE`, as a perfect scanner sees them."""
    frames = parse_schedule(SCHEDULE)
    end_min = frames[-1].stop_s / 60
    t, named = kinetics.curves(FengInput(), models_, 370e6, end_min + 1)
    start = np.array([f.start_s for f in frames]) / 60
    dur = np.array([f.duration_s for f in frames]) / 60
    means = {}
    for name, c in named.items():
        cum = np.concatenate([[0], np.cumsum(np.diff(t) * (c[1:] + c[:-1]) / 2)])
        means[name] = (np.interp(start + dur, t, cum) - np.interp(start, t, cum)) / dur
    return Curves(start, dur, means, {k: 0 * v for k, v in means.items()},
                  dict.fromkeys(means, 1))


def test_an_irreversible_tissue_matches_its_closed_form_for_a_constant_input():
    t = np.linspace(0, 60, 30001)
    cp = np.ones_like(t)
    got = kinetics.tissue_curve(t, cp, GREY)
    k = GREY.k2 + GREY.k3
    want = GREY.Ki * t + GREY.K1 * GREY.k2 / k ** 2 * (1 - np.exp(-k * t))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


def test_the_feng_input_starts_after_its_delay_and_peaks_within_a_minute():
    f = FengInput()
    t = np.linspace(0, 10, 5001)
    c = f.plasma_bq_ml(t, 370e6)
    assert np.all(c[t < f.delay_min] == 0) and c.max() > 0
    assert f.delay_min < t[np.argmax(c)] < f.delay_min + 1.0


def test_patlak_recovers_ki_of_grey_and_white_matter_from_an_image_derived_input():
    white = TissueModel(K1=0.054, k2=0.109, k3=0.045)
    curves = _frame_curves({"blood": None, "grey": GREY, "white": white})
    inp = models.input_from_region(curves, "blood")
    for name, model in (("grey", GREY), ("white", white)):
        fit = models.patlak(curves.curve(name), inp, curves, 15.0)
        assert fit.slope == pytest.approx(model.Ki, rel=0.02) and fit.r2 > 0.999


def test_logan_with_a_reference_region_gives_the_distribution_volume_ratio():
    target = TissueModel(K1=0.3, k2=0.3, k3=0.1, k4=0.1)       # VT = 2
    reference = TissueModel(K1=0.3, k2=0.3, k3=0.0001, k4=1.0)  # VT ~ 1: one tissue, k2' = k2
    curves = _frame_curves({"target": target, "reference": reference})
    fit = models.logan_reference(curves.curve("target"), curves.curve("reference"), curves, 20,
                                 k2_prime_per_min=reference.k2)

    def vt(m: TissueModel) -> float:
        return m.K1 / m.k2 * (1 + m.k3 / m.k4)

    assert fit.slope == pytest.approx(vt(target) / vt(reference), rel=0.01)


def test_suvr_is_the_ratio_of_the_late_means():
    curves = _frame_curves({"grey": GREY, "white": TissueModel(0.054, 0.109, 0.045)})
    late = curves.mid_min >= 40
    d = curves.duration_min[late]
    want = (curves.curve("grey")[late] @ d) / (curves.curve("white")[late] @ d)
    assert models.suvr(curves.curve("grey"), curves.curve("white"), curves, 40) == \
        pytest.approx(want)


def test_a_sampled_plasma_file_gives_the_same_ki_as_the_model_input(tmp_path: Path):
    curves = _frame_curves({"grey": GREY})
    t = np.linspace(0, 61, 2441)
    path = tmp_path / "plasma.csv"
    path.write_text("time_min,plasma_bq_ml\n" + "".join(
        f"{a:.4f},{c:.6g}\n" for a, c in zip(t, FengInput().plasma_bq_ml(t, 370e6), strict=True)))
    inp = models.input_from_file(path, curves)
    assert models.patlak(curves.curve("grey"), inp, curves, 15).slope == \
        pytest.approx(GREY.Ki, rel=0.03)


@pytest.mark.parametrize(("text", "error"), [
    ("time,value\n0,1\n1,2\n", "needs columns time_min and plasma_bq_ml"),
    ("time_min,plasma_bq_ml\n0,1\n0,2\n", "times must increase"),
    ("time_min,plasma_bq_ml\n0,x\n", "not a number"),
    ("time_min,plasma_bq_ml\n0,1\n5,2\n", "ends at 5 min"),
])
def test_a_plasma_file_that_is_not_one_is_refused_in_one_line(tmp_path: Path, text, error):
    path = tmp_path / "plasma.csv"
    path.write_text(text)
    with pytest.raises(UserError, match=error):
        models.input_from_file(path, _frame_curves({"grey": GREY}))


def test_schedules_frames_and_their_errors():
    frames = parse_schedule("2x10s, 1x1min,30")
    assert [(f.start_s, f.duration_s) for f in frames] == [(0, 10), (10, 10), (20, 60), (80, 30)]
    assert parse_schedule("2x60s", time_scale=60)[1].start_s == pytest.approx(1.0)
    for bad in ("6 x", "0x10s", "x10s", "6x-1s", "abc"):
        with pytest.raises(UserError, match="frame schedule"):
            parse_schedule(bad)
    times = np.array([1.0, 2.0, 25.0])
    with pytest.raises(UserError, match="frames end at 110 s"):
        check_frames(frames, times, 100.0)
    with pytest.raises(UserError, match=r"frame 2 .* has no prompts"):
        check_frames(parse_schedule("2x10s"), np.array([1.0]), 30.0)


def test_study_fields_are_checked_and_suv_names_what_is_missing():
    with pytest.raises(UserError, match="weight_kg must be"):
        Study(weight_kg=math.nan)
    with pytest.raises(UserError, match="patient id"):
        Study(patient_id="a b/c")
    with pytest.raises(UserError, match="unknown study field 'mass'"):
        Study.from_json({"mass": 3})
    with pytest.raises(UserError, match="SUV needs the study's weight_kg"):
        Study(injected_mbq=300).require("SUV", "weight_kg", "injected_mbq")
    assert Study(injection_time_utc="2026-11-24T11:00:00+02:00").injection_time_utc == \
        "2026-11-24T09:00:00.000+00:00"
    s = Study(injection_time_utc="2026-11-24T09:00:00Z")
    assert s.injection_before_s("2026-11-24T09:30:00.5+00:00") == pytest.approx(1800.5)
    assert Study(body_part=" head ").body_part == "HEAD"
    with pytest.raises(UserError, match="body part must be 1 to 16 letters"):
        Study(body_part="head & neck")
