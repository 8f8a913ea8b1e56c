"""Kinetic phantoms in the emulator: decays follow the compartment model in time and space, and
the events do not depend on the number of threads."""

from __future__ import annotations

import numpy as np
import pytest

from emulator import phantoms
from emulator.engine import Emulator, simulate
from emulator.phantoms.kinetic import Mixture, class_volumes_ml
from hw.scanner import load_scanner
from infra.errors import UserError


@pytest.fixture(scope="module")
def scanner():
    return load_scanner("bedside-brain")


def test_the_class_volumes_are_those_of_the_painted_regions(scanner):
    brain = phantoms.get("brain-fdg", scanner)
    volumes = class_volumes_ml(brain)
    blood = next(r for r in brain.parts if r.name == "blood").shape
    exact = np.pi * blood.semi_axes_mm[0] ** 2 * 2 * blood.semi_axes_mm[2] / 1000
    assert volumes["blood"] == pytest.approx(exact, rel=0.02)
    assert 0 < volumes["white_matter"] < volumes["grey_matter"]


def test_decays_follow_the_model_over_the_scan(scanner):
    """Decays over 0.4 s at 300 model minutes per minute (the first 2 model minutes, the bolus)
    and over 0.2 s later on: the model's integral within Poisson noise (none before the input
    arrives)."""
    emu = Emulator(scanner, "brain-fdg", "F-18", 50.0, seed=3, kinetic_time_scale=300.0)
    lam = emu.nuclide.decay_constant_per_s
    for start, length in ((0.0, 0.4), (2.0, 0.2)):
        list(emu.run(length, chunk_s=length, start_s=start))
        t = np.linspace(start, start + length, 4001)
        expected = np.trapezoid(emu.mixture.activities_bq(t).sum(axis=0) * np.exp(-lam * t), t)
        assert emu.counters["decays"] == pytest.approx(expected, abs=4 * np.sqrt(expected) + 1)
    list(emu.run(0.1, chunk_s=0.1))          # the input arrives 0.734 model min = 0.15 s
    assert emu.counters["decays"] == 0


def test_the_same_seed_gives_the_same_events_on_any_number_of_threads(scanner):
    one = simulate(scanner, "brain-fdg", "F-18", 30.0, 0.05, seed=5, threads=1,
                   kinetic_time_scale=600.0, start_s=0.1)
    two = simulate(scanner, "brain-fdg", "F-18", 30.0, 0.05, seed=5, threads=2,
                   kinetic_time_scale=600.0, start_s=0.1)
    assert one.raw.size > 1000
    assert one.raw.tobytes() == two.raw.tobytes()


def test_a_bad_time_scale_is_refused(scanner):
    with pytest.raises(UserError, match="time scale"):
        Mixture(phantoms.get("brain-fdg", scanner), 1e8, float("nan"))
