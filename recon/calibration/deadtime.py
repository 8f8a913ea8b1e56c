"""Fit of a PET scanner's singles dead time (:mod:`hw.deadtime`) to an emulated count-rate series.

The scanner's calibration cylinder (that of :mod:`recon.calibration.crosscal`) is emulated at several
activities, each for the same number of decays, and sorted with the scanner's defaults. The net
prompts (prompts minus delayeds) per decay fall as the rates rise; the singles dead time ``tau``
is the one whose correction (the mean of ``1 / (L_a L_b)``, ``L = 1 - S tau``, from each
acquisition's singles rates per module) makes them the same at every activity (least squares
of their logarithms). It is stored as ``[quantification] singles_dead_time_ns``.

Run: ``python -m recon.calibration.deadtime SCANNER [--activities-mbq A ...] [--decays N] [--seed S]``;
it prints each acquisition, the fitted value and the TOML line to store.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from hw.deadtime import RateTable, correction_factor
from hw.scanner import Scanner, load_scanner
from infra.errors import UserError
from runstore.singlesrates import rate_table

#: The activities (MBq) of the series: bedside-brain's singles rates from about 4 to 60 Mcps.
ACTIVITIES_MBQ = (5.0, 10.0, 20.0, 40.0, 80.0)
#: Decays of each acquisition (about 2 % statistical error on the net prompts per decay).
DECAYS = 2e7
#: The range (ns) the fit searches.
TAU_RANGE_NS = (0.0, 400.0)


@dataclass(frozen=True)
class RatePoint:
    """One acquisition of the series."""

    activity_mbq: float
    duration_s: float
    singles: int
    prompts: int
    delayeds: int
    rates: RateTable | None
    prompt_lors: np.ndarray
    """The prompts' (t, crystal_a, crystal_b) columns."""

    @property
    def net_per_mbq_s(self) -> float:
        return (self.prompts - self.delayeds) / (self.activity_mbq * self.duration_s)

    def corrected(self, scanner: Scanner, tau_ns: float) -> float:
        """Net prompts per MBq s corrected for dead time with ``tau_ns``."""
        p = self.prompt_lors
        return self.net_per_mbq_s * correction_factor(self.rates, scanner, tau_ns, p["t"],
                                                      p["crystal_a"], p["crystal_b"])


def acquire(scanner: Scanner, activity_mbq: float, decays: float, seed: int) -> RatePoint:
    """Emulate and sort the calibration cylinder at ``activity_mbq`` for ``decays`` decays."""
    import coincidence
    import emulator
    from recon.calibration.crosscal import NUCLIDE, PHANTOM

    duration = decays / (activity_mbq * 1e6)
    sim = emulator.simulate(scanner, PHANTOM, NUCLIDE, activity_mbq, duration, seed=seed)
    acq = scanner.acquisition
    coinc = coincidence.sort(sim.singles, scanner=scanner, window_ps=acq["coincidence_window_ps"],
                             energy_window_kev=acq["energy_window_kev"], delay_ps=acq["delay_ps"])
    delayed = coinc["delayed"] != 0
    prompts = coinc[~delayed][["t", "crystal_a", "crystal_b"]]
    return RatePoint(activity_mbq, duration, int(sim.singles.size), int((~delayed).sum()),
                     int(delayed.sum()), rate_table(scanner, sim.singles["t"],
                                                    sim.singles["crystal"]),
                     np.ascontiguousarray(prompts))


def fit_tau_ns(points: list[RatePoint], scanner: Scanner) -> float:
    """The singles dead time (ns) that makes the corrected net prompts per MBq s of ``points``
    most alike (golden-section search of the variance of their logarithms)."""
    if len(points) < 2:
        raise UserError("a dead-time fit needs acquisitions at two activities at least")

    def spread(tau: float) -> float:
        return float(np.var(np.log([p.corrected(scanner, tau) for p in points])))

    lo, hi = TAU_RANGE_NS
    g = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = spread(a), spread(b)
    while hi - lo > 0.1:
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = spread(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = spread(b)
    return round((lo + hi) / 2.0, 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m recon.calibration.deadtime",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("scanner", help="PET scanner name or .toml")
    p.add_argument("--activities-mbq", type=float, nargs="+", default=list(ACTIVITIES_MBQ))
    p.add_argument("--decays", type=float, default=DECAYS, help="decays per acquisition")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    if not (args.decays > 0 and all(a > 0 for a in args.activities_mbq)):
        raise UserError("activities and decays must be > 0")
    scanner = load_scanner(args.scanner)
    if scanner.kind != "pet":
        raise UserError(f"{scanner.name} is not a PET scanner")
    points = []
    for k, activity in enumerate(args.activities_mbq):
        point = acquire(scanner, activity, args.decays, args.seed + k)
        points.append(point)
        print(f"{activity:g} MBq: {point.singles / point.duration_s / 1e6:.1f} M singles/s, "
              f"{point.prompts} prompts, {point.delayeds} delayeds: "
              f"{point.net_per_mbq_s:.0f} net prompts per MBq s", flush=True)
    tau = fit_tau_ns(points, scanner)
    for point in points:
        print(f"{point.activity_mbq:g} MBq corrected with {tau} ns: "
              f"{point.corrected(scanner, tau):.0f} net prompts per MBq s")
    activities = " ".join(f"{a:g}" for a in args.activities_mbq)
    print(f"[quantification]\n# Singles dead time of a module (hw.deadtime), fitted by\n"
          f"# `python -m recon.calibration.deadtime {scanner.name} --activities-mbq {activities} "
          f"--decays {args.decays:g} --seed {args.seed}`\n"
          f"singles_dead_time_ns = {tau}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
