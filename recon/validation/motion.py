"""Head motion on virtual heads: each scanned still and moving, its pose estimated, the images compared.

For each head (the built-in brain phantom with ``--brain``, and a population's heads): an
emulated FDG scan (bedside-brain, 20 MBq) still and the same scan (same seed) with a restless
trace time-compressed to the scan (``--trace restless:SEED``: steps of 5-15 mm and 3-10 degrees,
the drift, at ``600 / seconds`` times the preset's pace), or a trace file. The moving scan's pose
is estimated from its prompts alone (:func:`recon.motion.estimate.estimate_trace`) and compared
with the truth (RMS over the scan, each second: the shift's distance and the turn's angle); the
moving scan is reconstructed as ``petdaq recon`` does without correction, with it (the default,
``auto``) and with the true trace given as a tracker's, and the grey matter, white matter and
cerebellum means of each image (the phantom's regions at rest) are compared with the still
scan's.

A validation, not a scan's processing: it reads the phantoms' truth and the true trace.

With ``--cost``, only the moving scan is emulated (a 10-minute scan takes tens of minutes on 2
cores) and its reconstruction timed without correction and with ``auto``: the cost of the
estimate and the correction, one after the other in one process.

Run: ``python -m recon.validation.motion POPULATION [--n 10] [--brain] [--seconds 30]
[--trace restless:1] [--cost] [--out motion.csv]``; a table started again goes on where it
stopped, and the scans are kept beside it (``HEAD-still.npy``, ``HEAD-moving.npy``) for another
look.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from emulator import phantoms
from hw.motion import MotionTrace, load_trace, rotation, save
from hw.scanner import Scanner, load_scanner
from infra.pool import available_cores
from recon.calibration.phantomnorm import emulated_coincidences
from recon.motion.estimate import estimate_trace
from recon.pet.runimage import RunReconOptions, reconstruct_run
from recon.validation.heads import GROUPS
from recon.validation.runs import (
    facts_of,
    header_of,
    patients,
    population_parser,
    region_means,
    table,
)

#: The pace of the presets: their steps come every 60-120 s of a 10-minute scan.
PRESET_SCAN_S = 600.0


def compressed(trace: MotionTrace, seconds: float) -> MotionTrace:
    """A preset's trace run ``PRESET_SCAN_S / seconds`` times faster (a trace file: as is)."""
    rows = trace.rows.copy()
    rows[:, 0] *= seconds / PRESET_SCAN_S
    return MotionTrace(rows, f"{trace.source} at {PRESET_SCAN_S / seconds:g} x")


def pose_errors(estimated: MotionTrace, truth: MotionTrace, seconds: float
                ) -> tuple[float, float]:
    """RMS over each second of the scan of the shift's distance (mm) and the turn's angle
    (degrees) between the estimated and the true pose."""
    t = np.arange(0.5, seconds, 1.0)
    a, b = estimated.params_at(t), truth.params_at(t)
    shift = np.linalg.norm(a[:, :3] - b[:, :3], axis=1)
    turn = [np.degrees(np.arccos(np.clip((np.trace(rotation(*p[3:]).T @ rotation(*q[3:])) - 1)
                                         / 2, -1.0, 1.0))) for p, q in zip(a, b, strict=True)]
    return float(np.sqrt(np.mean(shift ** 2))), float(np.sqrt(np.mean(np.square(turn))))


def _means(coinc: np.ndarray, scanner: Scanner, phantom: Any, facts: Any, motion: str
           ) -> tuple[dict[str, float], Any]:
    """Each group's mean in the run's image reconstructed with ``motion`` (auto, none, a
    trace file)."""
    made = reconstruct_run(coinc, header_of(scanner), facts, scanner,
                           RunReconOptions(motion=motion))
    labels, names = phantom.label_map(made.image.grid)
    return region_means(np.asarray(made.image.array), labels, names, GROUPS), made


def _scan(keep: Path, scanner: Scanner, path: str, activity_mbq: float, seconds: float,
          seed: int, trace: MotionTrace | None) -> np.ndarray:
    """An emulated scan's coincidences, kept in ``keep`` (a check started again reads them)."""
    if keep.is_file():
        return np.load(keep)
    coinc = emulated_coincidences(scanner, path, activity_mbq, seconds, seed,
                                  available_cores(), motion=trace)
    np.save(keep, coinc)
    return coinc


def check_head(path: str, name: str, trace: MotionTrace, scanner_name: str,
               activity_mbq: float, seconds: float, seed: int, folder: Path) -> dict[str, Any]:
    """One head's row (``folder``: where its scans are kept and the true trace is written for
    the correction with it, as an external tracker's)."""
    scanner = load_scanner(scanner_name)
    phantom = phantoms.get(path, scanner)
    still = _scan(folder / f"{name}-still.npy", scanner, path, activity_mbq, seconds, seed, None)
    moving = _scan(folder / f"{name}-moving.npy", scanner, path, activity_mbq, seconds, seed,
                   trace)
    facts = facts_of(scanner, path, activity_mbq, seconds, "HEAD")
    t0 = time.perf_counter()
    estimated = estimate_trace(moving, scanner, seconds)
    estimate_s = time.perf_counter() - t0
    rms_mm, rms_deg = pose_errors(estimated, trace, seconds)
    reference, _ = _means(still, scanner, phantom, facts, "none")
    t0 = time.perf_counter()
    plain, _ = _means(moving, scanner, phantom, facts, "none")
    plain_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fixed, made = _means(moving, scanner, phantom, facts, "auto")
    fixed_s = time.perf_counter() - t0
    truth_file = folder / f"{name}-true-motion.csv"
    save(trace, truth_file)
    tracked, _ = _means(moving, scanner, phantom, facts, str(truth_file))
    row: dict[str, Any] = {"head": name, "prompts": int(np.count_nonzero(moving["delayed"] == 0)),
                           "pose_rms_mm": round(rms_mm, 3), "pose_rms_deg": round(rms_deg, 3),
                           "poses": made.image.meta.get("motion_correction", "none")}
    for group in GROUPS:
        row[f"{group}_uncorrected_pct"] = round(100 * (plain[group] / reference[group] - 1), 2)
        row[f"{group}_corrected_pct"] = round(100 * (fixed[group] / reference[group] - 1), 2)
        row[f"{group}_true_pose_pct"] = round(100 * (tracked[group] / reference[group] - 1), 2)
    row |= {"estimate_s": round(estimate_s, 1), "recon_s": round(plain_s, 1),
            "corrected_recon_s": round(fixed_s, 1)}
    return row


def check_cost(path: str, name: str, trace: MotionTrace, scanner_name: str,
               activity_mbq: float, seconds: float, seed: int, folder: Path) -> dict[str, Any]:
    """One head's moving scan, reconstructed without correction and with ``auto``, timed."""
    scanner = load_scanner(scanner_name)
    moving = _scan(folder / f"{name}-moving.npy", scanner, path, activity_mbq, seconds, seed,
                   trace)
    facts = facts_of(scanner, path, activity_mbq, seconds, "HEAD")
    options = (RunReconOptions(motion="none"), RunReconOptions(motion="auto"))
    reconstruct_run(moving[:100_000], header_of(scanner), facts, scanner, options[0])  # compiled
    spent = []
    for chosen in options:
        t0 = time.perf_counter()
        made = reconstruct_run(moving, header_of(scanner), facts, scanner, chosen)
        spent.append(time.perf_counter() - t0)
    rms_mm, rms_deg = pose_errors(made.motion, trace, seconds) if made.motion else (None, None)
    return {"head": name, "prompts": int(np.count_nonzero(moving["delayed"] == 0)),
            "pose_rms_mm": rms_mm and round(rms_mm, 3), "pose_rms_deg": rms_deg and round(rms_deg, 3),
            "poses": made.image.meta.get("motion_correction", "none"),
            "recon_s": round(spent[0], 1), "corrected_recon_s": round(spent[1], 1),
            "cost_ratio": round(spent[1] / spent[0], 2)}


def main(argv: list[str] | None = None) -> int:
    p = population_parser("recon.validation.motion", __doc__, "bedside-brain", 20.0, 30.0, 21,
                          "motion.csv")
    p.add_argument("--trace", default="restless:1",
                   help="a preset (compressed to the scan) or a trace file (as is)")
    p.add_argument("--brain", action="store_true", help="also the built-in brain phantom")
    p.add_argument("--cost", action="store_true",
                   help="only the moving scan: its reconstruction timed without and with auto")
    args = p.parse_args(argv)
    trace = load_trace(args.trace)
    if trace.source.split(":")[0] in ("restless", "nod", "turn", "drift"):
        trace = compressed(trace, args.seconds)
    heads = [("brain", "brain")] if args.brain else []
    heads += [(str(d), d.name) for d in patients(args.population, args.n)]
    folders = [Path(name) for _, name in heads]
    where = dict((n, h) for h, n in heads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    check = check_cost if args.cost else check_head
    table(folders, "head", lambda folder, _k: check(
        where[folder.name], folder.name, trace, args.scanner, args.activity_mbq, args.seconds,
        args.seed, args.out.parent), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
