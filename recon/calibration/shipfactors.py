"""``python -m recon.calibration.shipfactors [SCANNER ...] [--check]``: the built-in scanners'
model factors (:mod:`recon.calibration.modelfactors`) emulated and written beside their
definitions, or emulated again and compared with the shipped ones.

Run it after a change to a built-in definition's model, to the emulator's physics or to the fit;
``make soak`` runs ``--check`` (a test), which fails on a stale file and names this command.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hw.scanner import Scanner, load_scanner
from infra.errors import UserError
from recon.calibration import normalization, phantomnorm
from recon.calibration.modelfactors import (
    SHIPPED_DIR,
    factor_sets,
    per_class,
    read_shipped,
    symmetry_classes,
)

#: What is shipped for each built-in PET scanner: its blank scan's factors (Lu-176 crystals),
#: and the 20 cm water cylinder's where it fits the ring.
SHIPPED = {"bedside-brain": ("blank", "cylinder"), "small-animal": ("blank",)}
#: The largest relative difference ``--check`` takes as the same factors (the emulation is
#: seeded: a difference is a change of the model, the physics or the fit, not noise).
SAME_RTOL = 1e-9


@dataclass(frozen=True)
class Shipped:
    """One shipped set: its key, how it is emulated, its per-class factors."""

    key: str
    emulate: Callable[[Scanner, int], np.ndarray]
    """(scanner, threads) -> (N,) factors."""


def kinds(name: str) -> list[Shipped]:
    """The sets shipped for the built-in scanner ``name``."""
    if name not in SHIPPED:
        raise UserError(f"no factors are shipped for {name!r} (shipped: {', '.join(SHIPPED)})")
    out = []
    for what in SHIPPED[name]:
        if what == "blank":
            out.append(Shipped(normalization.blank_key(),
                               lambda s, t: normalization.model_blank_fit(s, threads=t)))
        else:
            out.append(Shipped(phantomnorm.phantom_key(what),
                               lambda s, t, p=what: phantomnorm.model_phantom_fit(s, p, threads=t)))
    return out


def path_of(name: str) -> Path:
    """The shipped file of the built-in scanner ``name``."""
    return SHIPPED_DIR / f"{name}.toml"


def write(name: str, threads: int) -> Path:
    """Emulate the factors of ``name`` and write its shipped file."""
    scanner = load_scanner(name)
    classes = symmetry_classes(scanner)
    lines = [f"# The geometric factors of {name}'s model (every crystal alike, no faults), one per",
             "# class of crystals alike by the ring's symmetries (recon.calibration.modelfactors):",
             f"# written by `python -m recon.calibration.shipfactors {name}`; `make soak` emulates",
             "# them again and compares.", f'scanner = "{name}"',
             f'alike_digest = "{scanner.alike_digest}"']
    for kind in kinds(name):
        values = per_class(kind.emulate(scanner, threads), classes)
        lines += ["", "[[factors]]", f'key = "{kind.key}"', "class_factors = ["]
        lines += ["  " + ", ".join(repr(float(v)) for v in values[i:i + 6]) + ","
                  for i in range(0, values.size, 6)]
        lines.append("]")
    path = path_of(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def check(name: str, threads: int) -> list[str]:
    """What differs between the shipped file of ``name`` and a new emulation ([] if nothing):
    one line each."""
    expected = kinds(name)
    scanner = load_scanner(name)
    data = read_shipped(path_of(name))
    stale = f": write them again (python -m recon.calibration.shipfactors {name})"
    if data["alike_digest"] != scanner.alike_digest:
        return [f"{name}: the shipped factors are of another model than its definition's{stale}"]
    shipped = factor_sets(data)
    problems = []
    classes = symmetry_classes(scanner)
    for kind in expected:
        if kind.key not in shipped:
            problems.append(f"{name}: no shipped factors {kind.key!r}{stale}")
            continue
        now = per_class(kind.emulate(scanner, threads), classes)
        worst = float(np.max(np.abs(now / shipped[kind.key] - 1.0))) \
            if now.shape == shipped[kind.key].shape else np.inf
        print(f"{name} {kind.key}: largest relative difference {worst:.2e}")
        if not worst <= SAME_RTOL:
            problems.append(f"{name}: the factors {kind.key!r} emulated now differ from the "
                            f"shipped ones by up to {worst:.2e}{stale}")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m recon.calibration.shipfactors",
                                description=__doc__.splitlines()[0])
    p.add_argument("scanners", nargs="*", default=list(SHIPPED),
                   help=f"built-in scanners (default: {' '.join(SHIPPED)})")
    p.add_argument("--check", action="store_true",
                   help="emulate again and compare with the shipped files; write nothing")
    p.add_argument("--threads", type=int, default=1,
                   help="emulation threads (default 1; make soak checks with 2: the same "
                        "factors)")
    a = p.parse_args(argv)
    try:
        problems = _run(a.scanners, a.check, a.threads)
    except UserError as exc:
        print(f"error: {exc}")
        return 2
    for line in problems:
        print(line)
    return 1 if problems else 0


def _run(names: list[str], check_only: bool, threads: int) -> list[str]:
    problems = []
    for name in names:
        t0 = time.perf_counter()
        if check_only:
            problems += check(name, threads)
        else:
            print(f"wrote {write(name, threads)}")
        print(f"{name}: {time.perf_counter() - t0:.0f} s")
    return problems


if __name__ == "__main__":
    raise SystemExit(main())
