"""The geometric factors of a scanner's model, one per class of crystals alike by symmetry:
shipped beside a built-in scanner's definition, else emulated once and cached.

A fan-sum fit of a blank scan (or of a uniform phantom's run) sees, besides each crystal's
efficiency, what the analytic solid angles leave out: the material a gamma crosses leaving its
module, the axial ends, the phantom's chords. The same fit of a run the emulator makes of the
scanner's model, every crystal alike, gives that part; the crystals the ring's symmetries make
alike share its mean. Emulating it takes tens of CPU seconds (a 60 s blank), so the factors of
each built-in scanner are shipped in ``hw/scanners/factors/<scanner>.toml``, written by
``python -m recon.calibration.shipfactors``, and used for every definition with the same model
(:attr:`hw.scanner.Scanner.alike_digest`); ``make soak`` emulates them again and compares.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from hw.crystals import CrystalSpread
from hw.faults import Faults
from hw.scanner import BUILTIN_DIR, Scanner
from infra.errors import UserError
from recon.cache import cached_array

#: The shipped factors: ``<scanner>.toml`` per built-in scanner, each with its model's
#: ``alike_digest`` and a ``[[factors]]`` table per key (``key``, ``class_factors``).
SHIPPED_DIR = BUILTIN_DIR / "factors"


def alike_model(scanner: Scanner) -> Scanner:
    """The scanner's model: every crystal alike and accepting every interaction, no faults. A
    uniform acceptance scales every pair's rate alike, so a fan-sum fit's factors do not depend
    on it (only their noise does)."""
    return replace(scanner, crystals=CrystalSpread(), faults=Faults(),
                   response=replace(scanner.response, crystal_efficiency=1.0))


def symmetry_classes(scanner: Scanner) -> np.ndarray:
    """(N,) int: crystals alike under the ring's symmetries (a turn by a module, the mirror of a
    module across its middle, the mirror of the axial field across z = 0) share a class; the
    classes are numbered 0, 1, ... without a gap."""
    ct = scanner.crystals_per_ring // scanner.n_modules
    local = (np.arange(scanner.n_crystals) % scanner.crystals_per_ring) % ct
    local = np.minimum(local, ct - 1 - local)
    ring = np.minimum(scanner.crystal_ring, scanner.n_rings - 1 - scanner.crystal_ring)
    return ring * ((ct + 1) // 2) + local


def class_means(values: np.ndarray, classes: np.ndarray, where: np.ndarray) -> np.ndarray:
    """(N,) each crystal's class mean of ``values`` over the crystals ``where`` is true (1 in a
    class without any)."""
    n = classes.max() + 1
    total = np.bincount(classes[where], weights=values[where], minlength=n)
    count = np.bincount(classes[where], minlength=n)
    return np.divide(total, count, out=np.ones(n), where=count > 0)[classes]


def per_class(values: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """(classes,) the value of each class of ``values`` that :func:`class_means` made (1 for a
    class no crystal is in)."""
    out = np.ones(classes.max() + 1)
    out[classes] = values
    return out


def model_factors(scanner: Scanner, key: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """(N,) the factors ``key`` names (what was emulated of the model, and for how long) of
    ``scanner``'s model: the shipped ones where a built-in definition has the same model, else
    ``compute()``'s (:func:`class_means` of a fit of :func:`alike_model`), cached on disk."""
    classes = symmetry_classes(scanner)
    shipped = shipped_factors(scanner.alike_digest).get(key)
    if shipped is not None and shipped.size == classes.max() + 1:
        return shipped[classes]
    return cached_array("|".join([key, scanner.alike_digest]), compute, "normgeometry")


@functools.cache
def shipped_factors(alike_digest: str) -> dict[str, np.ndarray]:
    """{key: (classes,) factors} shipped for the model ``alike_digest`` ({} if none)."""
    for path in sorted(SHIPPED_DIR.glob("*.toml")):
        data = read_shipped(path)
        if alike_digest and data["alike_digest"] == alike_digest:
            return factor_sets(data)
    return {}


def factor_sets(data: dict) -> dict[str, np.ndarray]:
    """{key: (classes,) factors} of a shipped file's tables (:func:`read_shipped`)."""
    return {f["key"]: np.asarray(f["class_factors"], np.float64) for f in data["factors"]}


def read_shipped(path: Path) -> dict:
    """A shipped factors file's tables, with a one-line error where it is not one."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        factors = data["factors"]
        if not isinstance(data["alike_digest"], str) or not all(
                isinstance(f["key"], str) and isinstance(f["class_factors"], list)
                for f in factors):
            raise TypeError("wrong types")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"shipped geometric factors {path}: not readable ({exc}); write them "
                        "again with python -m recon.calibration.shipfactors") from None
    return data
