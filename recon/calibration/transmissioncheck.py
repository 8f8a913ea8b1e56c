"""How many Lu-176 transmission coincidences an emulated scan holds, and how clean they are.

The measurement behind docs/attenuation.md's "the crystals' Lu-176 as a transmission source":
each scan (a blank, the phantom with no activity, the phantom at patient activities) is emulated
with its truth; its singles are paired as a transmission sort would pair them (two singles
within ``window_ps`` and no third, one of them in the cascade gammas' window, the other not),
and the pairs whose crystals lie across the bore (more than ``across_mm`` apart transaxially)
are counted on the lines through the body (within ``body_mm`` of the axis). The truth says
what each pair is: one Lu-176 decay (its beta and a gamma that crossed the bore: transmission),
one annihilation (a photon scattered into the gammas' window), or two decays (random). A
transmission pair's gamma arrives one flight time after its beta: the share of each kind within
``tof_ps`` of that is printed too, which is what time of flight can do to keep one and not the
other.

A validation, not a scan's processing: it reads the emulator's truth, as tests do.

Run: ``python -m recon.calibration.transmissioncheck [SCANNER] [--phantom nema-iq]
[--activities-mbq 0 5 20] [--seed 3]``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

from hw.scanner import Scanner, load_scanner

#: The cascade gammas' window (keV): 201.8 and 306.8 keV with the crystals' resolution.
GAMMA_WINDOW_KEV = (180.0, 340.0)
#: Light's speed (mm/ps).
C_MM_PER_PS = 0.299792458


@dataclass(frozen=True)
class Settings:
    """What is paired and counted."""

    window_ps: int = 3000
    gamma_kev: tuple[float, float] = GAMMA_WINDOW_KEV
    across_mm: float = 150.0
    body_mm: float = 100.0
    tof_ps: float = 1000.0


@dataclass(frozen=True)
class Tally:
    """Pairs per second on the lines through the body, by what they are."""

    scan: str
    singles_per_s: float
    lu176_per_s: float
    lu176_unscattered_per_s: float
    annihilation_per_s: float
    randoms_per_s: float
    lu176_in_tof: float
    others_in_tof: float

    @property
    def pairs_per_s(self) -> float:
        return self.lu176_per_s + self.annihilation_per_s + self.randoms_per_s


def transmission_pairs(singles: np.ndarray, settings: Settings) -> tuple[np.ndarray, np.ndarray]:
    """(gamma side, other side): indices of the time-ordered ``singles`` that pair as
    transmission coincidences (two within the window and no third; exactly one in the
    gammas' window)."""
    t = singles["t"]
    close = np.diff(t) < settings.window_ps
    first = np.nonzero(close)[0]
    alone_before = np.r_[True, ~close[:-1]][first]
    alone_after = np.r_[~close[1:], True][first]
    first = first[alone_before & alone_after]
    lo, hi = settings.gamma_kev
    energy = singles["energy"]
    in_a = (energy[first] >= lo) & (energy[first] <= hi)
    in_b = (energy[first + 1] >= lo) & (energy[first + 1] <= hi)
    one = in_a ^ in_b
    gamma = np.where(in_a, first, first + 1)[one]
    other = np.where(in_a, first + 1, first)[one]
    return gamma, other


def line_geometry(centres: np.ndarray, a: np.ndarray, b: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(transaxial length, distance from the axis, full length) mm of the lines from crystals
    ``a`` to crystals ``b``."""
    p, q = centres[a], centres[b]
    d = q - p
    across = np.hypot(d[:, 0], d[:, 1])
    dist = np.abs(p[:, 0] * q[:, 1] - p[:, 1] * q[:, 0]) / np.maximum(across, 1e-9)
    return across, dist, np.linalg.norm(d, axis=1)


def tally(scan: str, sim, centres: np.ndarray, settings: Settings) -> Tally:
    """The pairs of an emulated scan (with its truth) on the lines through the body."""
    from emulator import records

    singles, truth = sim.singles, sim.truth
    gamma, other = transmission_pairs(singles, settings)
    across, dist, length = line_geometry(centres, singles["crystal"][other],
                                         singles["crystal"][gamma])
    keep = (across > settings.across_mm) & (dist < settings.body_mm)
    gamma, other, length = gamma[keep], other[keep], length[keep]
    same = truth["decay"][gamma] == truth["decay"][other]
    lu = same & (truth["kind"][gamma] == records.LU176)
    ann = same & (truth["kind"][gamma] == records.ANNIHILATION)
    late_ps = (singles["t"][gamma] - singles["t"][other]).astype(float)
    in_tof = np.abs(late_ps - length / C_MM_PER_PS) < settings.tof_ps
    per_s = 1.0 / sim.duration_s
    return Tally(scan, singles.size * per_s, lu.sum() * per_s,
                 (lu & (truth["scatters"][gamma] == 0)).sum() * per_s, ann.sum() * per_s,
                 (~same).sum() * per_s, _share(in_tof, lu), _share(in_tof, ~lu))


def _share(flags: np.ndarray, of: np.ndarray) -> float:
    return float(flags[of].mean()) if of.any() else float("nan")


def measure(scanner: Scanner, phantom: str, activity_mbq: float, duration_s: float, seed: int,
            settings: Settings) -> Tally:
    """One scan emulated with its truth and tallied."""
    import emulator
    from emulator.detector.ring import crystal_centres, ring_of

    sim = emulator.simulate(scanner, phantom, "F-18", activity_mbq, duration_s, seed=seed,
                            truth=True)
    name = "blank" if phantom == "blank" else f"{phantom}, {activity_mbq:g} MBq"
    return tally(name, sim, crystal_centres(ring_of(scanner)), settings)


def table(rows: list[Tally]) -> list[str]:
    """The markdown table of docs/attenuation.md."""
    out = ["| scan | singles (M/s) | pairs through the body (k/s) | Lu-176 transmission (k/s) | "
           "of them unscattered | annihilation photons (k/s) | randoms (k/s) | Lu-176 share | "
           "in the flight-time window: Lu-176 / others |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r.scan} | {r.singles_per_s / 1e6:.2f} | {r.pairs_per_s / 1e3:.2f} | "
                   f"{r.lu176_per_s / 1e3:.2f} | {r.lu176_unscattered_per_s / 1e3:.2f} | "
                   f"{r.annihilation_per_s / 1e3:.2f} | {r.randoms_per_s / 1e3:.2f} | "
                   f"{r.lu176_per_s / max(r.pairs_per_s, 1e-9):.3f} | "
                   f"{r.lu176_in_tof:.2f} / {r.others_in_tof:.2f} |")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m recon.calibration.transmissioncheck",
                                description=__doc__.splitlines()[0])
    p.add_argument("scanner", nargs="?", default="bedside-brain")
    p.add_argument("--phantom", default="nema-iq")
    p.add_argument("--activities-mbq", type=float, nargs="+", default=[0.0, 5.0, 20.0])
    p.add_argument("--decays", type=float, default=3e7,
                   help="each scan's length: about this many decays (the blank: 4 s)")
    p.add_argument("--seed", type=int, default=3)
    args = p.parse_args(argv)
    scanner, settings = load_scanner(args.scanner), Settings()
    rows = []
    for phantom, mbq in [("blank", 0.0), *((args.phantom, a) for a in args.activities_mbq)]:
        duration_s = 4.0 if mbq == 0 else min(4.0, args.decays / (mbq * 1e6))
        t0 = time.perf_counter()
        rows.append(measure(scanner, phantom, mbq, duration_s, args.seed, settings))
        print(f"{rows[-1].scan}: {duration_s:g} s emulated in {time.perf_counter() - t0:.0f} s",
              flush=True)
    print(f"\n{scanner.name}; pairs within {settings.window_ps} ps, one side in "
          f"{settings.gamma_kev[0]:g}-{settings.gamma_kev[1]:g} keV; crystals more than "
          f"{settings.across_mm:g} mm apart across the bore, lines within {settings.body_mm:g} "
          f"mm of the axis; flight-time window +-{settings.tof_ps:g} ps\n")
    print("\n".join(table(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
