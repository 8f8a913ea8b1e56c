"""A patient who moves: motion traces (files and presets, bad ones in one line) and the emulator
emitting each decay from the pose at its time, through a medium that moved with it."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from emulator import phantoms, records
from emulator.engine import MOTION_SLICE_S, simulate
from emulator.phantoms.posed import PosedMedium
from emulator.phantoms.rasterize import voxelized
from emulator.physics import flight
from emulator.physics.media import water_table
from hw.motion import (
    COLUMNS,
    PRESETS,
    MotionTrace,
    Pose,
    load_trace,
    parse_csv,
    preset,
    rotation,
)
from infra.errors import UserError
from petdaq.cli import main

HEADER = ",".join(COLUMNS)


def angles_deg(turn: np.ndarray) -> np.ndarray:
    """(rx, ry, rz) degrees of a rotation ``Rz Ry Rx`` (ry within +-90 deg)."""
    ry = math.asin(max(-1.0, min(1.0, -turn[2, 0])))
    return np.degrees([math.atan2(turn[2, 1], turn[2, 2]), ry, math.atan2(turn[1, 0], turn[0, 0])])


def test_rotations_turn_about_x_then_y_then_z():
    assert rotation(90, 0, 0) @ np.array([0, 1, 0]) == pytest.approx([0, 0, 1])
    assert rotation(0, 90, 0) @ np.array([0, 0, 1]) == pytest.approx([1, 0, 0])
    assert rotation(0, 0, 90) @ np.array([1, 0, 0]) == pytest.approx([0, 1, 0])
    r = rotation(10, 20, 30)
    assert r == pytest.approx(rotation(0, 0, 30) @ rotation(0, 20, 0) @ rotation(10, 0, 0))
    assert angles_deg(r) == pytest.approx([10, 20, 30])


def test_poses_are_interpolated_between_rows_and_a_repeated_time_is_a_step():
    trace = parse_csv(f"# a tracker's export\n{HEADER},quality\n0,0,0,0,0,0,0,1\n"
                      "10,10,0,0,0,0,4,1\n10,20,0,0,0,0,4,1\n20,20,0,-6,0,0,4,1\n", "t.csv")
    p = trace.params_at(np.array([-5.0, 0.0, 5.0, 9.999, 10.0, 15.0, 99.0]))
    assert p[:, 0] == pytest.approx([0, 0, 5, 9.999, 20, 20, 20])
    assert p[:, 2] == pytest.approx([0, 0, 0, 0, 0, -3, -6])
    assert p[:, 5] == pytest.approx([0, 0, 2, 3.9996, 4, 4, 4])
    pose = trace.pose_at(15.0)
    assert pose.apply(np.array([[1.0, 0, 0]]))[0] == pytest.approx(
        rotation(0, 0, 4) @ [1, 0, 0] + [20, 0, -3])
    again = parse_csv(trace.to_csv(), "again")
    assert np.array_equal(again.rows, trace.rows)
    assert MotionTrace.from_json(trace.to_json()).rows == pytest.approx(trace.rows)


BAD = {
    "missing column": ("t_s,tx_mm,ty_mm,tz_mm,rx_deg,ry_deg\n0,0,0,0,0,0\n", "no column 'rz_deg'"),
    "time going back": (f"{HEADER}\n0,0,0,0,0,0,0\n5,1,0,0,0,0,0\n4,1,0,0,0,0,0\n",
                        "time goes back at row 3 (4 s after 5 s)"),
    "not finite": (f"{HEADER}\n0,0,0,0,0,0,0\n5,nan,0,0,0,0,0\n",
                   "row 2 holds a value that is not a finite number"),
    "not a number": (f"{HEADER}\n0,0,zero,0,0,0,0\n", "line 2 holds a value that is not a number"),
    "short line": (f"{HEADER}\n0,0,0\n", "line 2 has 3 values, the header 7"),
    "no rows": (f"{HEADER}\n", "no poses"),
    "empty": ("", "empty"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_malformed_motion_file_is_one_line(tmp_path, capsys, case):
    text, words = BAD[case]
    path = tmp_path / "motion.csv"
    path.write_text(text)
    with pytest.raises(UserError, match=re.escape(words)):
        load_trace(path)
    out = tmp_path / "runs"
    assert main(["run", "--motion", str(path), "--duration", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and str(path) in err[0], err
    assert not out.exists() or not any(out.iterdir())


def test_unknown_presets_and_missing_files_are_one_line(tmp_path):
    with pytest.raises(UserError, match="no such file, and not a preset"):
        load_trace(tmp_path / "gone.csv")
    with pytest.raises(UserError, match="only restless takes a seed"):
        load_trace("nod:3")


def test_presets_are_reproducible_and_restless_steps_are_the_asked_sizes():
    from daq.messages import MOTION_PRESETS

    assert PRESETS == MOTION_PRESETS == ("still", "nod", "turn", "drift", "restless")
    assert preset("still").still and not any(preset(n).still for n in PRESETS[1:])
    a, b, c = preset("restless"), load_trace("restless"), load_trace("restless:3")
    assert np.array_equal(a.rows, b.rows) and not np.array_equal(a.rows, c.rows)
    for trace in (a, c):
        rows = trace.rows
        steps = np.flatnonzero(np.diff(rows[:, 0]) <= 1.0)     # each step lasts 0.5-1 s
        drift = (rows[steps + 1, 0] - rows[steps, 0]) * 5.0 / 600.0      # mm in a step
        assert 10 <= steps.size <= 30
        move = rows[steps + 1, 1:] - rows[steps, 1:]
        shift, turn = np.linalg.norm(move[:, :3], axis=1), np.linalg.norm(move[:, 3:], axis=1)
        assert np.all((shift > 5 - drift) & (shift < 15 + drift)) and np.all((turn > 2.99) & (turn < 10.01))
        assert np.linalg.norm(rows[:, 1:4], axis=1).max() <= 20.0 + 1e-9
        assert np.linalg.norm(rows[:, 4:], axis=1).max() <= 10.0 + 1e-9
    drift = preset("drift").params_at(600.0)
    assert np.linalg.norm(drift[:3]) == pytest.approx(5.0) and not np.any(drift[3:])


@pytest.mark.parametrize("which", ["shapes", "voxels"])
def test_the_moved_medium_is_the_moved_phantoms(brain, which):
    """A phantom's medium carried by a pose is the medium of the phantom moved so (shapes and
    voxels; the voxels' lookup through the moved affine, not resampled)."""
    nema = phantoms.get("nema-iq", brain)
    phantom = nema if which == "shapes" else voxelized(nema, 6.0)
    pose = Pose(rotation(0, 0, 25.0), np.array([7.0, -4.0, 3.0]))
    moved = phantom.moved(25.0, (7.0, -4.0, 3.0))
    want = moved.packed()
    want = flight.medium(want.layers, want.layer_boxes, water_table(), want.density)
    got = PosedMedium(phantom, phantom.packed(), water_table()).at(pose)
    for name in ("layers", "lo", "hi", "vox_map", "vox_lo", "vox_hi"):
        assert np.allclose(getattr(got, name), getattr(want, name), atol=1e-9), name
    assert got.rho_max == want.rho_max and got.vox_max == want.vox_max


def _emission_points(sim):
    """The phantom's decays' emission points (mm) and the singles' times (s), from the truth."""
    source = sim.truth["decay"] < records.LU176_ID_BASE
    return sim.truth[["x", "y", "z"]][source], sim.raw["t"][source] * 1e-12


def test_each_decay_is_emitted_from_the_pose_at_its_time(brain):
    """The pose is that of each slice's middle (slices of at most MOTION_SLICE_S): a step at
    15 ms moves the decays from the slice starting at 10 ms on."""
    assert MOTION_SLICE_S == 0.01
    step = MotionTrace(np.array([[0, 0, 0, 0, 0, 0, 0], [0.015, 0, 0, 0, 0, 0, 0],
                                 [0.015, 20, 0, -10, 0, 0, 90]]), "a step")
    sim = simulate(brain, "point", "F-18", 2.0, 0.03, seed=1, truth=True, motion=step)
    points, t_s = _emission_points(sim)
    xyz = np.stack([points[k] for k in "xyz"], axis=1)
    before, after = xyz[t_s < 0.0099], xyz[t_s > 0.0101]
    assert before.shape[0] > 1000 and after.shape[0] > 1000
    assert np.median(before, axis=0) == pytest.approx([0, 0, 0], abs=0.05)
    assert np.median(after, axis=0) == pytest.approx([20, 0, -10], abs=0.05)


def test_a_still_trace_is_no_motion_and_threads_give_the_same_moving_scan(brain):
    still = simulate(brain, "nema-iq", "F-18", 20.0, 0.002, seed=5, motion=preset("still"))
    none = simulate(brain, "nema-iq", "F-18", 20.0, 0.002, seed=5)
    assert np.array_equal(still.raw, none.raw)
    nod = MotionTrace(np.array([[0, 0, 0, 0, 0, 0, 0], [0.002, *preset("nod").rows[2, 1:]]]),
                      "a fast nod")
    one = simulate(brain, "nema-iq", "F-18", 20.0, 0.002, seed=5, motion=nod, threads=1)
    two = simulate(brain, "nema-iq", "F-18", 20.0, 0.002, seed=5, motion=nod, threads=2)
    assert np.array_equal(one.raw, two.raw) and not np.array_equal(one.raw, none.raw)


def test_the_daq_records_the_true_trace_and_refuses_a_bad_one(tmp_path):
    from daq.control.emulated import EmulatorSettings

    path = tmp_path / "m.csv"
    path.write_text(preset("nod").to_csv())
    settings = EmulatorSettings.from_request({"phantom": "brain", "motion": str(path)})
    recorded = settings.as_dict()["motion"]
    assert recorded["columns"] == list(COLUMNS)
    assert np.allclose(recorded["rows"], preset("nod").rows, atol=1e-4)
    assert "motion" not in EmulatorSettings(phantom="brain").as_dict()
    with pytest.raises(UserError, match="not a preset"):
        EmulatorSettings.from_request({"phantom": "brain", "motion": "wobble"})
