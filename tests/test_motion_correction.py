"""Head motion estimated and corrected: registration of a moved image, the scanner as a moved head
sees it, pose bins, event-by-event OSEM (a still trace gives lm_osem's image; a moved source
comes back to its rest place), and the command's options and bad traces in one line."""

from __future__ import annotations

import numpy as np
import pytest

from coincidence.sorter import sort
from emulator import phantoms
from emulator.engine import simulate
from hw.motion import MotionTrace, Pose, preset, rotation
from infra.errors import UserError
from petdaq.cli import main
from recon.grid import default_grid
from recon.motion import correct
from recon.motion.correct import motion_osem, pose_bins, pose_distance_mm, seen_from
from recon.motion.estimate import Drift, Span, step_time
from recon.motion.register import moved_image, register
from recon.motion.runmotion import run_motion
from recon.motion.signal import N_SUMS, MotionSignal
from recon.pet.lors import LORs, lor_endpoints
from recon.pet.mumap import estimate
from recon.pet.osem import lm_osem
from recon.pet.projector import Projector, pad
from recon.pet.system import sensitivity


def test_a_moved_image_is_registered_back_to_its_pose(brain):
    """The brain phantom's activity on 4 mm voxels, moved by a pose and given Poisson noise of
    2 M counts: the registration finds the pose within 0.2 mm and 0.3 degrees."""
    grid = default_grid(brain, 4.0)
    head = phantoms.get("brain", brain)
    axes = [o + v * np.arange(n) for o, v, n in zip(grid.origin_mm, grid.voxel_mm, grid.shape,
                                                     strict=True)]
    points = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    truth = np.array([4.0, -3.0, 2.0, 3.0, -2.0, 5.0])
    pose = Pose(rotation(*truth[3:]), truth[:3])
    rest = head.activity_at(points).reshape(grid.shape)
    moved = head.activity_at((points - pose.shift_mm) @ pose.rotation).reshape(grid.shape)
    wrong = Pose(pose.rotation.T, -pose.shift_mm)             # the pose's opposite
    for other in (rest, moved_image(rest, grid, wrong)):
        assert np.abs(moved_image(rest, grid, pose) - moved).mean() < 0.5 * np.abs(
            other - moved).mean()
    rng = np.random.default_rng(0)
    noisy = [rng.poisson(a / a.sum() * 2e6).astype(float) for a in (rest, moved)]
    found = register(*noisy, grid)
    assert found[:3] == pytest.approx(truth[:3], abs=0.2)
    assert found[3:] == pytest.approx(truth[3:], abs=0.3)


def _centroids(interval_s: float, centroids: np.ndarray, n: int = 20_000) -> MotionSignal:
    """A signal whose intervals hold ``n`` prompts each at ``centroids`` (k, 3) mm."""
    sums = np.zeros((len(centroids), N_SUMS))
    sums[:, 0] = n
    sums[:, 1:4] = centroids * n
    return MotionSignal(interval_s, sums)


def test_a_drift_is_followed_to_the_spans_ends_and_a_step_is_timed_by_the_centroid():
    """The drift within a span is a local line (no lag at its ends); the step between two spans
    is placed where the fine centroid moved, even when the episode's start is late."""
    rng = np.random.default_rng(0)
    t = (np.arange(60) + 0.5) * 0.5                                  # 30 s of 0.5 s intervals
    drift = np.outer(t, [0.1, 0.0, -0.05])
    coarse = _centroids(0.5, drift + rng.normal(scale=0.05, size=drift.shape))
    whole = Drift.of(coarse, Span(0.0, 30.0, np.zeros(6)))
    for at in (0.5, 15.0, 29.5):
        assert whole.at(at) + whole.mean_mm == pytest.approx([0.1 * at, 0, -0.05 * at], abs=0.1)
    step_s, step_mm = 12.43, np.array([6.0, -4.0, 2.0])
    tf = (np.arange(600) + 0.5) * 0.05
    moved = np.where((tf > step_s)[:, None], step_mm, 0.0)
    fine = _centroids(0.05, moved + rng.normal(scale=0.8, size=moved.shape))
    coarse = _centroids(0.5, np.where((t > step_s)[:, None], step_mm, 0.0))
    before, after = Span(0.0, 12.5, np.zeros(6)), Span(13.0, 30.0, np.zeros(6))
    at = step_time(fine, before, after, Drift.of(coarse, before), Drift.of(coarse, after))
    assert at == pytest.approx(step_s, abs=0.05)
    still = _centroids(0.05, rng.normal(scale=0.8, size=moved.shape))
    assert step_time(still, before, after, Drift.of(coarse, before), Drift.of(coarse, before)) is None


def test_the_scanner_as_the_moved_head_sees_it(brain):
    pose = Pose(rotation(5.0, -3.0, 10.0), np.array([6.0, -2.0, 4.0]))
    seen = seen_from(brain, pose)
    assert seen.digest != brain.digest and seen.n_crystals == brain.n_crystals
    ends = lor_endpoints(brain).astype(np.float64)
    assert pose.apply(lor_endpoints(seen)) == pytest.approx(ends, abs=1e-3)


def test_one_projection_over_every_poses_crystals_is_the_sum_of_each_poses(brain):
    """The projector over the crystals of the scanner seen from two poses (pose k's crystal c
    named k * n + c) back-projects a list of both poses' events as the two poses' projectors
    do, each its own."""
    grid = default_grid(brain, 4.0)
    seen = [seen_from(brain, Pose(rotation(*p[3:]), p[:3])) for p in
            (np.zeros(6), np.array([6.0, -2.0, 4.0, 5.0, -3.0, 10.0]))]
    rng = np.random.default_rng(1)
    x = pad(rng.uniform(0.5, 1.5, grid.shape).astype(np.float32))
    both, parts = Projector.over_poses(seen, grid), []
    for k, scanner in enumerate(seen):
        n = 40_000
        a, b = rng.integers(0, brain.n_crystals, (2, n), dtype=np.int32)
        lors = LORs(a, b, rng.normal(0, 30, n).astype(np.float32))
        weights = rng.uniform(0.5, 1.0, n).astype(np.float32)
        own = Projector(scanner, grid).em_back_padded(x, lors, weights)
        parts.append((LORs(a + k * brain.n_crystals, b + k * brain.n_crystals, lors.tof_mm),
                      weights, own))
    lors = LORs(*(np.concatenate([getattr(p[0], f) for p in parts])
                  for f in ("crystal_a", "crystal_b", "tof_mm")))
    stacked = both.em_back_padded(x, lors, np.concatenate([p[1] for p in parts]))
    assert stacked == pytest.approx(parts[0][2] + parts[1][2], rel=1e-4, abs=1e-6)
    assert np.abs(parts[1][2] - parts[0][2]).max() > 0.1 * parts[0][2].max()


def test_a_moving_heads_sensitivity_is_one_ratio_estimate_over_its_poses(brain):
    """The brain phantom's head 12 mm and 6 degrees away for 30 % of the scan: the estimate
    stratified by pose (a still scan's samples in all) agrees with each pose's own
    sensitivity (its mu-map carried to the pose, four times the samples), weighted."""
    grid = default_grid(brain, 4.0)
    mu = grid.image(np.asarray(phantoms.get("brain", brain).mu_map(grid), np.float32), "1/mm")
    trace = MotionTrace(np.array([[0, 0, 0, 0, 0, 0, 0], [7, 0, 0, 0, 0, 0, 0],
                                  [7, 0, -10, -6, 6, 0, 0], [10, 0, -10, -6, 6, 0, 0]]), "a step")
    bins = pose_bins(trace, 10.0)
    assert len(bins.poses) == 2 and bins.weights == pytest.approx([0.7, 0.3])
    pooled = correct.scan_sensitivity(brain, grid, bins, bins.weights, mu, 1_000_000, None, None)
    each = np.zeros(grid.shape)
    for weight, pose in zip(bins.weights, bins.poses, strict=True):
        moved = grid.image(moved_image(np.asarray(mu.array), grid, pose), "1/mm")
        own = np.asarray(sensitivity(brain, grid, moved, 4_000_000, use_cache=False), np.float64)
        each += weight * correct._read_at(own, grid, pose)
    head = (np.asarray(mu.array) > 0.005) & (each > 0.05 * each.max())
    ratio = pooled[head] / each[head]
    assert ratio.mean() == pytest.approx(1.0, abs=0.01)
    assert np.sqrt(np.mean((ratio - 1) ** 2)) < 0.05
    plain = correct.scan_sensitivity(brain, grid, bins, bins.weights, None, 1_000_000, None, None)
    assert np.mean(pooled[head] / plain[head]) < 0.5       # the head's attenuation is in it


def test_pose_bins_cut_the_scan_where_the_head_moves():
    step = MotionTrace(np.array([[0, 0, 0, 0, 0, 0, 0], [10, 0, 0, 0, 0, 0, 0],
                                 [10.5, 5, 0, 0, 0, 0, 0]]), "a step")
    bins = pose_bins(step, 20.0)
    assert bins.edges_s[0] == 0 and bins.edges_s[-1] == 20.0
    assert bins.weights.sum() == pytest.approx(1.0)
    assert len(bins.poses) <= 4 and bins.poses[-1].shift_mm == pytest.approx([5, 0, 0])
    assert list(bins.of(np.array([1.0, 19.0]))) == [0, len(bins.poses) - 1]
    decayed = pose_bins(step, 20.0, decay_per_s=0.05)
    assert decayed.weights[0] > bins.weights[0]
    drift = pose_bins(preset("drift"), 600.0)
    assert 9 <= len(drift.poses) <= 12         # 5 mm in steps of at most 0.5 mm
    assert all(pose_distance_mm(np.r_[a.shift_mm, 0, 0, 0], np.r_[b.shift_mm, 0, 0, 0]) <= 0.6
               for a, b in zip(drift.poses, drift.poses[1:], strict=False))


@pytest.fixture(scope="module")
def stepped_point(brain):
    """A point source 1 MBq for 2 s that steps 12 mm along x and 8 along z at 1 s."""
    trace = MotionTrace(np.array([[0, 0, 0, 0, 0, 0, 0], [1.0, 0, 0, 0, 0, 0, 0],
                                  [1.0, 12, 0, 8, 0, 0, 0]]), "a step")
    sim = simulate(brain, "point", "F-18", 1.0, 2.0, seed=2, motion=trace)
    return sort(sim.singles, scanner=brain), trace


def _peak_mm(image) -> np.ndarray:
    a = np.asarray(image.array)
    index = np.array(np.unravel_index(np.argmax(a), a.shape))
    return np.asarray(image.grid.origin_mm) + index * np.asarray(image.grid.voxel_mm)


def test_event_by_event_osem_brings_a_moved_source_back(brain, stepped_point):
    coinc, trace = stepped_point
    grid = default_grid(brain, 4.0)
    plain = lm_osem(coinc, brain, grid, 2, 2, sensitivity_samples=1_000_000)
    still = motion_osem(coinc, brain, preset("still"), 2.0, grid, 2, 2,
                        sensitivity_samples=1_000_000)
    assert np.array_equal(still.array, plain.array)   # one pose at rest: lm_osem's image
    fixed = motion_osem(coinc, brain, trace, 2.0, grid, 2, 2, sensitivity_samples=1_000_000)
    assert _peak_mm(fixed) == pytest.approx([0, 0, 0], abs=2.1)
    assert np.asarray(fixed.array).max() > 1.6 * np.asarray(plain.array).max()
    assert "2 poses" in fixed.meta["motion_correction"]
    memo = len(correct._MEMO)
    again = motion_osem(coinc, brain, trace, 2.0, grid, 2, 2, sensitivity_samples=1_000_000)
    assert np.array_equal(again.array, fixed.array) and len(correct._MEMO) == memo
    late = coinc[coinc["t"] >= 1_000_000_000_000]       # a frame after the step: one pose
    frame = motion_osem(late, brain, trace, 2.0, grid, 2, 2, sensitivity_samples=1_000_000,
                        start_s=1.0, scan_stop_s=2.0)
    assert "1 poses" in frame.meta["motion_correction"] and len(correct._MEMO) == memo
    assert _peak_mm(frame) == pytest.approx([0, 0, 0], abs=2.1)


def test_a_frame_takes_the_scans_pose_bins_it_overlaps():
    step = MotionTrace(np.array([[0, 0, 0, 0, 0, 0, 0], [10, 0, 0, 0, 0, 0, 0],
                                 [10.5, 5, 0, 0, 0, 0, 0]]), "a step")
    whole = pose_bins(step, 20.0, decay_per_s=0.01)
    part = whole.within(5.0, 15.0, 0.01)
    assert part.edges_s[0] == 5.0 and part.edges_s[-1] == 15.0
    assert set(whole.edges_s[1:-1]) >= set(part.edges_s[1:-1])
    assert all(any(p is q for q in whole.poses) for p in part.poses)
    assert part.weights.sum() == pytest.approx(1.0) and part.weights[0] > part.weights[-1] * 0.5
    late = whole.within(12.0, 20.0)
    assert len(late.poses) == 1 and late.poses[0] is whole.poses[-1]
    assert whole.within(0.0, 20.0).edges_s.tolist() == whole.edges_s.tolist()


def test_a_bins_events_are_slices_of_a_time_ordered_list_mode_and_masks_of_another():
    step = MotionTrace(np.array([[0, 0, 0, 0, 0, 0, 0], [10, 0, 0, 0, 0, 0, 0],
                                 [10.5, 5, 0, 0, 0, 0, 0]]), "a step")
    bins = pose_bins(step, 20.0)
    t = np.random.default_rng(3).uniform(-1.0, 21.0, 5000)
    t[100:110] = bins.edges_s[1]                     # events on an edge
    t.sort()
    ordered, shuffled = bins.picks(t), bins.picks(t[::-1])
    assert all(isinstance(pick, slice) for pick in ordered)
    for k, (pick, mask) in enumerate(zip(ordered, shuffled, strict=True)):
        assert np.array_equal(np.arange(t.size)[pick], np.flatnonzero(bins.of(t) == k))
        assert np.array_equal(np.sort(t[::-1][mask]), t[pick])


def _centre_mm(image) -> np.ndarray:
    a = np.asarray(image.array, np.float64)
    axes = [o + v * np.arange(n) for o, v, n in zip(image.grid.origin_mm, image.grid.voxel_mm,
                                                     a.shape, strict=True)]
    return np.array([(a.sum(axis=tuple(j for j in range(3) if j != i)) * x).sum() / a.sum()
                     for i, x in enumerate(axes)])


def test_a_moving_heads_mu_map_is_its_outline_at_rest(brain):
    """The brain phantom 2 s, 12 mm to the side after the first: the calculated mu-map drawn on
    the motion-corrected emission sits where the head's own does; drawn on the plain emission,
    it is pulled a few millimetres towards where the head went."""
    trace = MotionTrace(np.array([[0, 0, 0, 0, 0, 0, 0], [1.0, 0, 0, 0, 0, 0, 0],
                                  [1.0, 12, 0, 0, 0, 0, 0]]), "a step")
    coinc = sort(simulate(brain, "brain", "F-18", 3.0, 2.0, seed=4, motion=trace).singles,
                 scanner=brain)
    grid = default_grid(brain, 4.0)
    truth = _centre_mm(grid.image(phantoms.get("brain", brain).mu_map(grid, 511.0), "1/mm"))
    fixed = _centre_mm(estimate(coinc, brain, "HEAD", motion=trace, scan_stop_s=2.0).image)
    blurred = _centre_mm(estimate(coinc, brain, "HEAD").image)
    assert fixed == pytest.approx(truth, abs=1.5)
    assert blurred[0] - truth[0] > 3.0


def test_run_motion_takes_a_trace_that_covers_the_scan(brain, tmp_path, stepped_point):
    coinc, trace = stepped_point
    path = tmp_path / "tracker.csv"
    path.write_text(trace.to_csv())
    with pytest.raises(UserError, match="covers 0-1 s, the scan 0-10 s"):
        run_motion(coinc, brain, str(path), 10.0, "HEAD")
    assert run_motion(coinc, brain, str(path), 1.5, "HEAD").rows.shape == trace.rows.shape
    assert run_motion(coinc, brain, "none", 2.0, "HEAD") is None
    assert run_motion(coinc, brain, "auto", 2.0, "CHEST") is None   # a rigid head only


def test_petdaq_recon_refuses_a_bad_trace_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("t_s,tx_mm\n0,0\n")
    assert main(["recon", str(tmp_path / "nowhere"), "--motion-correction", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no column 'ty_mm'" in err[0], err
