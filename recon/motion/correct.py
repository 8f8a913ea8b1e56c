"""Event-by-event motion correction: each line moved into the head's frame, the sensitivity averaged.

A head at pose P (a point p of the head at rest is at ``R p + t``) sees the detector moved by
P's inverse. The scan's time is cut into bins over which the pose moves less than
:data:`BIN_MM` anywhere within :data:`HEAD_RADIUS_MM` of the field's centre; a bin's prompts are
reconstructed through the scanner as the head saw it then (:func:`seen_from`: its crystals
moved by the inverse pose, so the projector, the attenuation through the head's own mu-map and
the sensitivity all follow), the EM's back projection of a subset taking every bin's events
at once through one projector over all the bins' crystals (:meth:`Projector.over_poses`;
MOLAR, Carson et al. 2003). The scan's sensitivity is the bins' weighted by the decays each
holds (its duration, decay-weighted), floored only as a whole
(:data:`recon.pet.osem.SENSITIVITY_FLOOR`): the scanner's plain sensitivity (computed in its
frame, where its symmetries hold) read where each voxel of the head then is, times what the
attenuation through the head's own mu-map and the crystals' efficiencies keep of it. That
ratio is one estimate over all the poses, the still scan's ratio estimate
(:mod:`recon.pet.system`) stratified by pose: each pose draws its share of the samples
through the scanner as the head then saw it, straight on the head's grid, so that a scan of
24 poses costs about what a still one does. The bins are cut once over the whole scan and a
frame takes those it overlaps, clipped to its window, so the frames of a dynamic scan share
their poses; each pose's sums are computed once per process (kept in memory,
:data:`MEMO_BYTES`). The crystals' efficiencies, the pair geometry and the randoms are the
detector's own and do not move.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import pairwise

import numpy as np

from hw.motion import MotionTrace, Pose
from hw.scanner import Scanner
from infra.errors import UserError
from recon.corrections.randoms import crystal_counts
from recon.grid import Grid, Image, default_grid
from recon.motion.between import events_between
from recon.motion.register import moved_image
from recon.pet.lors import LORs
from recon.pet.osem import (
    Events,
    ListModeEM,
    RandomsEstimate,
    split_coinc,
)
from recon.pet.projector import Projector
from recon.pet.system import (
    RATIO_SHARE,
    Attenuation,
    as_mu_map,
    default_samples,
    min_sector_difference,
    nontrivial,
    ratio_sums,
    sensitivity,
    valid_pair_count,
)
from recon.threads import parallel_map

#: A pose bin's largest movement (mm) of a point within HEAD_RADIUS_MM of the centre.
BIN_MM = 0.5
HEAD_RADIUS_MM = 100.0
#: The step at which the trace is read to cut the bins (s), besides its rows' times.
BIN_STEP_S = 0.5
#: The most bytes of poses' sensitivity images kept in memory (the oldest dropped first).
MEMO_BYTES = 1 << 30
_MEMO: dict[str, tuple[np.ndarray, ...]] = {}
#: The least share of a still scan's ratio samples a pose draws (a frame held by the pose of
#: a short bin still gets a steady ratio).
MIN_POSE_SHARE = 0.05


def seen_from(scanner: Scanner, pose: Pose) -> Scanner:
    """The scanner as the head at ``pose`` sees it: its crystals moved by the inverse pose."""
    r, t = pose.rotation, pose.shift_mm
    key = hashlib.sha256(np.round(pose.matrix, 9).tobytes()).hexdigest()[:12]
    return replace(scanner, crystal_centres=(scanner.crystal_centres - t) @ r,
                   crystal_normals=scanner.crystal_normals @ r,
                   crystal_tangents=scanner.crystal_tangents @ r,
                   digest=f"{scanner.digest}+seen-from-{key}")


@dataclass(frozen=True)
class PoseBins:
    """The scan cut into bins of nearly one pose: bin k is [edges[k], edges[k + 1]) s."""

    edges_s: np.ndarray
    poses: tuple[Pose, ...]
    weights: np.ndarray
    """Each bin's share of the scan's decays."""

    def of(self, t_s: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(self.edges_s, t_s, side="right") - 1, 0,
                       len(self.poses) - 1)

    def picks(self, t_s: np.ndarray) -> list[slice | np.ndarray]:
        """Each bin's events at times ``t_s`` (s; the first and last bins open-ended):
        :func:`recon.motion.between.events_between`."""
        edges = [-np.inf, *self.edges_s[1:-1].tolist(), np.inf]
        return events_between(t_s, list(pairwise(edges)))

    def within(self, start_s: float, stop_s: float, decay_per_s: float = 0.0) -> PoseBins:
        """The bins that overlap ``[start_s, stop_s]``, clipped to it, with their poses."""
        first = int(self.of(np.array([start_s]))[0])
        last = min(max(int(np.searchsorted(self.edges_s, stop_s, side="left")) - 1, first),
                   len(self.poses) - 1)
        inner = self.edges_s[first + 1:last + 1]
        edges = np.concatenate([[start_s], inner[(inner > start_s) & (inner < stop_s)], [stop_s]])
        poses = self.poses[first:first + len(edges) - 1]
        return PoseBins(edges, poses, decay_shares(edges, decay_per_s))


def decay_shares(edges_s: np.ndarray, decay_per_s: float) -> np.ndarray:
    """Each span's share of the decays between ``edges_s`` (s)."""
    if decay_per_s > 0:
        held = np.exp(-decay_per_s * edges_s[:-1]) - np.exp(-decay_per_s * edges_s[1:])
    else:
        held = np.diff(edges_s)
    return held / held.sum()


def inverse(pose: Pose) -> Pose:
    return Pose(pose.rotation.T, -pose.shift_mm @ pose.rotation)


def scan_sensitivity(scanner: Scanner, grid: Grid, bins: PoseBins, scan_shares: np.ndarray,
                     mu_map: Image | None, samples: int | None, k: int | None,
                     normalization) -> np.ndarray:
    """[x, y, z] float64: the sensitivity in the head's frame over ``bins``, ``sum_p w_p
    s_p(x)`` (``s_p`` the sensitivity while the head is at bin p's pose, ``w_p`` its share of
    ``bins``' decays; ``scan_shares`` each bin's share of the whole scan's), not floored.

    The plain part is the scanner's own read where each voxel then is; what the attenuation and
    the normalization keep of it is one ratio estimate over all the poses: each pose draws
    ``max(share, MIN_POSE_SHARE)`` of a still scan's ratio samples through the scanner as the
    head then saw it, their sums weighted by ``w_p / n_p`` (see the module docstring). Where
    the scanner's sensitivity is the exact sum over every pair, each pose's is computed whole."""
    k = min_sector_difference(scanner, k)
    samples = default_samples(grid) if samples is None else samples
    norm = nontrivial(normalization)
    mu = as_mu_map(mu_map, grid)
    if samples >= valid_pair_count(scanner, k):
        return _weighted(bins, [_exact_pose_sensitivity(scanner, grid, pose, mu, samples, k,
                                                         norm) for pose in bins.poses])
    plain = np.asarray(sensitivity(scanner, grid, None, samples, k=k), np.float64)
    mean = _weighted(bins, _plain_at(plain, scanner, grid, bins.poses, samples, k))
    if mu is None and norm is None:
        return mean
    kept, drawn = np.zeros(grid.shape), np.zeros(grid.shape)
    total = max(1, round(samples * RATIO_SHARE))
    for pose, weight, share in zip(bins.poses, bins.weights, scan_shares, strict=True):
        n = max(1, round(total * max(float(share), MIN_POSE_SHARE)))
        pose_kept, pose_drawn = _pose_sums(scanner, grid, pose, mu, norm, n, k)
        kept += (weight / n) * pose_kept
        drawn += (weight / n) * pose_drawn
    return mean * np.divide(kept, drawn, out=np.zeros_like(kept), where=drawn > 0)


def _weighted(bins: PoseBins, images: list[np.ndarray]) -> np.ndarray:
    total = np.zeros(images[0].shape, np.float64)
    for weight, image in zip(bins.weights, images, strict=True):
        total += weight * image
    return total


def _read_at(own: np.ndarray, grid: Grid, pose: Pose) -> np.ndarray:
    """float32: the scanner-frame image ``own`` read where each voxel of the head at ``pose``
    is (``s(x) = S(P x)``), zero where that leaves the image's support."""
    back = inverse(pose)
    inside = moved_image((own > 0).astype(np.float64), grid, back) > 1.0 - 1e-6
    return np.where(inside, moved_image(own, grid, back), 0.0).astype(np.float32)


def _plain_at(plain: np.ndarray, scanner: Scanner, grid: Grid, poses: tuple[Pose, ...],
              samples: int, k: int) -> list[np.ndarray]:
    """:func:`_read_at` of the scanner's plain sensitivity at each pose (on the recon threads),
    kept in memory."""
    keys = ["|".join(["plain", scanner.digest, grid.key(), _digest(pose.matrix), str(samples),
                      str(k)]) for pose in poses]
    found = {key: _MEMO[key][0] for key in keys if key in _MEMO}
    new = {key: pose for key, pose in zip(keys, poses, strict=True) if key not in found}
    for key, image in zip(new, parallel_map(lambda p: _read_at(plain, grid, p), new.values()),
                          strict=True):
        _remember(key, (image,))
        found[key] = image
    return [found[key] for key in keys]


def _pose_sums(scanner: Scanner, grid: Grid, pose: Pose, mu_map: Image | None,
               normalization, samples: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ratio's sums (:func:`recon.pet.system.ratio_sums`) of ``samples`` pairs drawn
    through the scanner as the head at ``pose`` sees it, straight on the head's grid (its
    own mu-map, not moved); float32, kept in memory."""
    key = "|".join(["sums", scanner.digest, grid.key(), _digest(pose.matrix), str(samples),
                    str(k), _digest(np.asarray(mu_map.array)) if mu_map is not None else "no-mu",
                    normalization.digest if normalization is not None else "no-norm"])
    if key not in _MEMO:
        seen = seen_from(scanner, pose)
        attenuation = Attenuation(seen, mu_map) if mu_map is not None else None
        rng = np.random.default_rng((2, int(_digest(pose.matrix), 16)))
        sums = ratio_sums(seen, grid, attenuation, normalization, samples, rng, k)
        _remember(key, tuple(a.astype(np.float32) for a in sums))
    return _MEMO[key]


def _exact_pose_sensitivity(scanner: Scanner, grid: Grid, pose: Pose, mu_map: Image | None,
                            samples: int, k: int, normalization) -> np.ndarray:
    """The exact sensitivity (every pair) while the head is at ``pose``: the scanner's own, in
    its frame, with the head's mu-map carried to the pose, read where each voxel then is;
    kept in memory."""
    key = "|".join(["exact", scanner.digest, grid.key(), _digest(pose.matrix), str(k),
                    _digest(np.asarray(mu_map.array)) if mu_map is not None else "no-mu",
                    normalization.digest if normalization is not None else "no-norm"])
    if key not in _MEMO:
        mu = None if mu_map is None else Image(
            moved_image(np.asarray(mu_map.array), mu_map.grid, pose), mu_map.grid.voxel_mm,
            mu_map.grid.origin_mm, "1/mm")
        own = np.asarray(sensitivity(scanner, grid, mu, samples, k=k, use_cache=mu is None,
                                     normalization=normalization), np.float64)
        _remember(key, (_read_at(own, grid, pose),))
    return _MEMO[key][0]


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def _remember(key: str, arrays: tuple[np.ndarray, ...]) -> None:
    size = sum(a.nbytes for a in arrays)
    while _MEMO and sum(a.nbytes for v in _MEMO.values() for a in v) + size > MEMO_BYTES:
        del _MEMO[next(iter(_MEMO))]
    _MEMO[key] = arrays


def pose_distance_mm(a: np.ndarray, b: np.ndarray) -> float:
    """The largest distance between two poses' images of a point within HEAD_RADIUS_MM."""
    pa, pb = Pose.of(a), Pose.of(b)
    turn = np.linalg.norm(pa.rotation - pb.rotation, 2)
    return float(np.linalg.norm(pa.shift_mm - pb.shift_mm) + turn * HEAD_RADIUS_MM)


def pose_bins(trace: MotionTrace, stop_s: float, decay_per_s: float = 0.0, start_s: float = 0.0
              ) -> PoseBins:
    """Bins of ``trace`` over ``[start_s, stop_s]``, each pose its middle's: the trace is read
    every :data:`BIN_STEP_S` and at its own rows' times (a step a trace times to the
    millisecond starts a bin there)."""
    rows = trace.rows[:, 0]
    times = np.append(np.union1d(np.arange(start_s, stop_s, BIN_STEP_S),
                                 rows[(rows > start_s) & (rows < stop_s)]), stop_s)
    params = trace.params_at(times)
    edges, first = [float(start_s)], params[0]
    for t, p in zip(times[1:-1], params[1:-1], strict=True):
        if pose_distance_mm(p, first) > BIN_MM:
            edges.append(float(t))
            first = p
    edges.append(float(stop_s))
    edges = np.array(edges)
    mids = 0.5 * (edges[:-1] + edges[1:])
    poses = tuple(Pose.of(p) for p in trace.params_at(mids))
    return PoseBins(edges, poses, decay_shares(edges, decay_per_s))


def motion_osem(coinc: np.ndarray, scanner: Scanner, trace: MotionTrace, stop_s: float,
                grid: Grid | None = None, iterations: int = 2, subsets: int = 10,
                tof: bool = True, randoms: str | None = None, mu_map: Image | None = None,
                *, window_ps: float | None = None, min_sector_difference: int | None = None,
                sensitivity_samples: int | None = None, normalization=None,
                decay_per_s: float = 0.0, scatter: np.ndarray | None = None,
                callback: Callable[[int, int, Image], None] | None = None,
                start_s: float = 0.0, scan_stop_s: float | None = None) -> Image:
    """List-mode OSEM of a moving head (:func:`recon.pet.osem.lm_osem`'s arguments; ``trace``
    the head's pose over the scan, whose coincidences span ``[start_s, stop_s]`` s (a frame's
    window, or the run's) of a scan over ``[0, scan_stop_s]`` (None: ``stop_s``), over which
    the pose bins are cut; ``decay_per_s`` the nuclide's decay constant, which weights the
    poses' sensitivities); the image in the head's rest frame."""
    if iterations < 0 or subsets < 1:
        raise UserError(f"iterations must be >= 0 and subsets >= 1, got {iterations}, {subsets}")
    grid = grid if grid is not None else default_grid(scanner)
    prompts, delayeds = split_coinc(np.asarray(coinc))
    scan_bins = pose_bins(trace, max(scan_stop_s or stop_s, stop_s), decay_per_s)
    bins = scan_bins.within(start_s, stop_s, decay_per_s)
    shares = dict(zip(map(id, scan_bins.poses), scan_bins.weights, strict=True))
    sens = scan_sensitivity(scanner, grid, bins, np.array([shares[id(p)] for p in bins.poses]),
                            mu_map, sensitivity_samples, min_sector_difference, normalization)
    picks = bins.picks(prompts["t"] * 1e-12)
    ems, parts = [], []
    model: RandomsEstimate | None = None
    for k, pose in enumerate(bins.poses):
        em = ListModeEM(seen_from(scanner, pose), grid, tof, mu_map, window_ps,
                        min_sector_difference, sensitivity_samples, normalization, sens)
        if randoms == "delayed" and model is None:
            model = em.randoms_model(crystal_counts(LORs.from_coinc(delayeds),
                                                    scanner.n_crystals))
        mine = prompts[picks[k]]
        if mine.size:
            events = em.events(mine, model)
            if scatter is not None:
                events = Events(events.lors, events.weights,
                                events.additive + np.asarray(scatter, np.float32)[picks[k]])
            ems.append(em)
            parts.append([em.in_lor_order(events.take(slice(s, None, subsets)))
                          for s in range(subsets)])
    stacked = [_stacked([p[s] for p in parts], scanner.n_crystals) for s in range(subsets)]
    del parts
    every_pose = ListModeEM(scanner, grid, tof, None, window_ps, min_sector_difference,
                            sensitivity_samples, None, sens, Projector.over_poses(
                                [em.scanner for em in ems] or [scanner], grid, tof))
    n_events = int(prompts.size)
    randoms_total = float(len(delayeds)) if randoms == "delayed" else 0.0
    x = every_pose.initial(n_events - randoms_total)     # as lm_osem starts
    for it in range(iterations):
        for s in range(subsets):
            every_pose.update(x, stacked[s], len(stacked[s]) / max(n_events, 1))
            if callback is not None:
                callback(it, s, every_pose.image(x))
    return every_pose.image(
        x, iterations=iterations, subsets=subsets, tof=tof, events=n_events,
        randoms=randoms or "none", attenuation=mu_map is not None, scatter=scatter is not None,
        motion_correction=f"event by event, {len(bins.poses)} poses ({trace.source})",
        normalization=getattr(normalization, "method", "none"))


def _stacked(parts: list[Events], n_crystals: int) -> Events:
    """The events of every pose (``parts[k]``: pose k's) in one list, pose by pose, crystal c
    of pose k renamed ``k * n_crystals + c`` (:meth:`Projector.over_poses`)."""
    if len(parts) == 1:
        return parts[0]
    if not parts:
        none = np.zeros(0, np.float32)
        return Events(LORs(none, none, none), none, none)

    def crystals(name: str) -> np.ndarray:
        return np.concatenate([getattr(e.lors, name) + np.int32(k * n_crystals)
                               for k, e in enumerate(parts)])
    lors = LORs(crystals("crystal_a"), crystals("crystal_b"),
                np.concatenate([e.lors.tof_mm for e in parts]))
    return Events(lors, np.concatenate([e.weights for e in parts]),
                  np.concatenate([e.additive for e in parts]))


def decay_constant_per_s(half_life_s: float | None) -> float:
    return math.log(2.0) / half_life_s if half_life_s else 0.0
