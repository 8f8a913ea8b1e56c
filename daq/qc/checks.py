"""A QC's figures against the scanner's baseline, within the tolerances of a TOML
(``daq/qc/tolerances.toml`` by default): findings per crystal, module, board and the scanner.

A crystal the baseline already had dead or noisy is listed as known, not flagged again.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from daq.qc.figures import (
    RESOLUTION_REF_KEV,
    Figures,
    gain_ratio,
    resolution_ratio,
    typical,
)
from hw.scanner import Scanner
from infra.errors import UserError

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
DEFAULT_TOLERANCES = Path(__file__).with_name("tolerances.toml")
#: A crystal's tolerance is at least this many standard deviations of its rate ratio's noise
#: (its singles now and in the baseline): a short blank widens it rather than flagging noise.
COUNTS_SIGMAS = 5.5
#: A module's sensitivity from the intrinsic coincidences: its tolerance is at least this many
#: standard deviations of its noise (warn; fail 1.5 times it), the noise being
#: :data:`INTRINSIC_EXCESS` times what the pairs' net counts give (a decay's cascade gives
#: correlated pairs: the modules' coincidences in 5 s emulated blanks of bedside-brain scattered
#: by 1.1 % RMS against 0.63 % from their counts).
INTRINSIC_SIGMAS = 4.0
INTRINSIC_EXCESS = 1.7


@dataclass(frozen=True)
class Finding:
    """One check of one component."""

    component: str
    """``crystal N``, ``module N`` (the ``crystal_module`` sector), ``board N`` or ``scanner``."""
    check: str
    status: str
    value: float
    tolerance: str
    action: str = ""


@dataclass(frozen=True)
class Verdict:
    """A QC's result and what it found (every module and board check, the crystals flagged)."""

    result: str
    findings: tuple[Finding, ...]
    known: tuple[int, ...]
    """Crystals dead or noisy in the baseline already."""

    @property
    def flagged(self) -> list[Finding]:
        return [f for f in self.findings if f.status != PASS]

    def to_json(self) -> dict[str, Any]:
        """The verdict as qc.json has it (a figure that could not be had: null)."""
        findings = [{**asdict(f), "value": f.value if np.isfinite(f.value) else None}
                    for f in self.findings]
        return {"result": self.result, "findings": findings,
                "known_from_baseline": [f"crystal {c}" for c in self.known]}


def load_tolerances(path: str | Path | None = None) -> dict[str, dict[str, float]]:
    """The tolerances' tables (``crystal``, ``module``, ``board``, ``scanner``); one line for a
    missing or malformed file."""
    path = Path(path) if path is not None else DEFAULT_TOLERANCES
    if not path.is_file():
        raise UserError(f"QC tolerances {path}: no such file")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"QC tolerances {path}: not valid TOML ({exc})") from None
    default = tomllib.loads(DEFAULT_TOLERANCES.read_text())
    for table, keys in default.items():
        for key in keys:
            value = data.get(table, {}).get(key, keys[key])
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise UserError(f"QC tolerances {path}: [{table}] {key} must be a number >= 0")
            default[table][key] = float(value)
    return default


def _status(deviation: float, warn: float, fail: float) -> str:
    """FAIL beyond ``fail``, or when the figure could not be had (not finite)."""
    if not np.isfinite(deviation):
        return FAIL
    return FAIL if deviation > fail else WARN if deviation > warn else PASS


def judge(now: Figures, base: Figures, scanner: Scanner,
          tolerances: dict[str, dict[str, float]]) -> Verdict:
    """The findings of ``now`` against the baseline ``base``; FAIL if any check fails, else WARN
    if any warns."""
    known = _known(base, scanner)
    findings = [*_crystals(now, base, known, scanner, tolerances["crystal"]),
                *_modules(now, base, known, scanner, tolerances["module"]),
                *_timing(now, base, scanner, tolerances["board"]),
                _scanner(now, base, tolerances)]
    statuses = {f.status for f in findings}
    result = FAIL if FAIL in statuses else WARN if WARN in statuses else PASS
    return Verdict(result, tuple(findings), tuple(int(c) for c in np.flatnonzero(known)))


def _known(base: Figures, scanner: Scanner) -> np.ndarray:
    """(crystals,) bool: dead or noisy in the baseline (outside :data:`daq.qc.figures.OUTLIER_RATE`
    of its module's median)."""
    return ~typical(base.crystal_cps, scanner)


def _crystals(now: Figures, base: Figures, known: np.ndarray, scanner: Scanner,
              tol: dict[str, float]) -> list[Finding]:
    """Dead and noisy crystals; a live one whose rate moved apart from its module's (a whole
    module's change is the module's finding) by more than its tolerance, widened to what the
    counts allow (:data:`COUNTS_SIGMAS` of a short blank's noise)."""
    ratio = now.crystal_cps / np.maximum(base.crystal_cps, 1e-9)
    modules = _module_ratio(ratio, known, scanner)[scanner.crystal_module]
    apart = np.divide(ratio, modules, out=np.ones_like(ratio), where=modules > 0)
    known = known | (modules < tol["dead_below"])     # a dead module is the module's finding
    floor = COUNTS_SIGMAS * np.sqrt(1 / np.maximum(now.crystal_cps * now.seconds, 1)
                                    + 1 / np.maximum(base.crystal_cps * base.seconds, 1))
    warn = np.maximum(tol["rate_warn"], floor)
    fail = np.maximum(tol["rate_fail"], 2 * floor)
    out = []
    for c in np.flatnonzero(~known & ((np.abs(apart - 1) > warn) | (ratio < tol["dead_below"]))):
        if ratio[c] < tol["dead_below"]:
            out.append(Finding(f"crystal {c}", "dead", FAIL, float(ratio[c]),
                               f"singles rate < {tol['dead_below']:g} of baseline",
                               "its channel gives nothing: check its SiPM, bias and cable; "
                               "normalize again (a dead crystal's lines are missing data)"))
        elif apart[c] > 1 + fail[c]:
            out.append(Finding(f"crystal {c}", "noisy", FAIL, float(apart[c]),
                               f"singles rate <= {1 + fail[c]:.3g} of its module's",
                               "it triggers on its own: raise its threshold or mask it"))
        else:
            out.append(Finding(f"crystal {c}", "singles rate, over its module's",
                               _status(abs(float(apart[c]) - 1), warn[c], fail[c]),
                               float(apart[c]), f"+/-{warn[c]:.3g} warn, +/-{fail[c]:.3g} fail",
                               "its efficiency moved: normalize again"))
    return out


def _module_ratio(ratio: np.ndarray, known: np.ndarray, scanner: Scanner) -> np.ndarray:
    """(modules,) the median of each module's crystals' rate ratios (known ones left out)."""
    module = scanner.crystal_module
    return np.array([np.median(ratio[(module == m) & ~known])
                     for m in range(int(module.max()) + 1)])


def _modules(now: Figures, base: Figures, known: np.ndarray, scanner: Scanner,
             tol: dict[str, float]) -> list[Finding]:
    ratio = _module_ratio(now.crystal_cps / np.maximum(base.crystal_cps, 1e-9), known, scanner)
    sigma_log = float(scanner.response.fwhm_kev(RESOLUTION_REF_KEV)) / RESOLUTION_REF_KEV / 2.3548
    sensitivity = (module_sensitivity(now, base) if base.module_pair_cps is not None
                   and now.module_pair_cps is not None else None)
    out = []
    for m in range(now.module_spectra.shape[0]):
        rate = float(ratio[m])
        gain = gain_ratio(now.module_spectra[m], base.module_spectra[m])
        if not np.isfinite(gain):      # no spectrum to read: the rate's finding says why
            out += [Finding(f"module {m}", check, FAIL, float("nan"), "-",
                            "no singles in its spectrum, now or in the baseline")
                    for check in ("gain", "energy resolution")]
            out.insert(len(out) - 2, Finding(
                f"module {m}", "singles rate",
                _status(abs(rate - 1), tol["rate_warn"], tol["rate_fail"]), rate,
                f"+/-{tol['rate_warn']:g} warn, +/-{tol['rate_fail']:g} fail",
                "no singles: check its power, bias and cable"))
            continue
        out.append(Finding(f"module {m}", "singles rate",
                           _status(abs(rate - 1), tol["rate_warn"], tol["rate_fail"]), rate,
                           f"+/-{tol['rate_warn']:g} warn, +/-{tol['rate_fail']:g} fail",
                           "its efficiency moved: check its bias voltage and temperature, "
                           "then normalize again"))
        out.append(Finding(f"module {m}", "gain",
                           _status(abs(gain - 1), tol["gain_warn"], tol["gain_fail"]), gain,
                           f"+/-{tol['gain_warn']:g} warn, +/-{tol['gain_fail']:g} fail",
                           "its gain moved: petdaq calibrate BLANK_RUN --method lu176"))
        if sensitivity is not None:
            out.append(_module_intrinsic(m, *sensitivity, tol))
        res = resolution_ratio(now.module_spectra[m], base.module_spectra[m], gain, sigma_log)
        out.append(Finding(f"module {m}", "energy resolution",
                           _status(abs(res - 1), tol["resolution_warn"],
                                   tol["resolution_fail"]), res,
                           f"+/-{tol['resolution_warn']:g} warn, "
                           f"+/-{tol['resolution_fail']:g} fail",
                           "its resolution moved: check its SiPMs' bias and temperature"))
    return out


def _module_intrinsic(m: int, ratio: np.ndarray, sd: np.ndarray, tol: dict[str, float]
                      ) -> Finding:
    """Module m's sensitivity from the intrinsic coincidences (:func:`module_sensitivity`)
    against the baseline's; its tolerance widened to what the counts allow."""
    warn = max(tol["intrinsic_warn"], INTRINSIC_SIGMAS * float(sd[m]))
    fail = max(tol["intrinsic_fail"], 1.5 * INTRINSIC_SIGMAS * float(sd[m]))
    return Finding(f"module {m}", "sensitivity (intrinsic coincidences)",
                   _status(abs(float(ratio[m]) - 1), warn, fail), float(ratio[m]),
                   f"+/-{warn:.3g} warn, +/-{fail:.3g} fail",
                   "its sensitivity moved: check its bias voltage and temperature, then "
                   "normalize again")


def module_sensitivity(now: Figures, base: Figures, least: float = 100.0
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(modules,) each module's sensitivity over the baseline's, and its noise (standard
    deviation), from the intrinsic coincidences of each pair of modules: a pair's rate over
    the baseline's is the product of its modules' (``log r_mn = x_m + x_n``), fitted by
    weighted least squares over the pairs with ``least`` net coincidences or more, now and in
    the baseline. A module's own change is told from its partners' (a module's drop lowers its
    neighbours' coincidences with it, not their sensitivity). The noise is
    :data:`INTRINSIC_EXCESS` times what the counts give. A module in no such pair: NaN (a
    FAIL)."""
    a, b = now.module_pair_cps * now.seconds, base.module_pair_cps * base.seconds
    n = a.shape[0]
    i, j = np.triu_indices(n, 1)
    ok = (a[i, j] >= least) & (b[i, j] >= least)
    i, j = i[ok], j[ok]
    y = np.log(a[i, j] / b[i, j])
    w = 1.0 / (1.0 / a[i, j] + 1.0 / b[i, j])
    design = np.zeros((i.size, n))
    design[np.arange(i.size), i] = 1.0
    design[np.arange(i.size), j] = 1.0
    normal = design.T @ (w[:, None] * design)
    cov = np.linalg.pinv(normal)
    x = cov @ (design.T @ (w * y))
    sd = INTRINSIC_EXCESS * np.sqrt(np.maximum(np.diag(cov), 0.0))
    seen = np.bincount(np.concatenate([i, j]), minlength=n) > 0
    return np.where(seen, np.exp(x), np.nan), np.where(seen, sd, np.nan)


def _timing(now: Figures, base: Figures, scanner: Scanner, tol: dict[str, float]
            ) -> list[Finding]:
    """Each board's time offset change (its modules' median: one board off, the others stay
    put), and each module's apart from its board's (one module off, its board stays put)."""
    shift = now.module_offset_ps - base.module_offset_ps
    shift = shift - np.median(shift)
    module = scanner.crystal_module
    board_of = np.array([scanner.crystal_board[module == m][0] for m in range(shift.size)])
    boards = np.array([np.median(shift[board_of == b]) for b in range(scanner.n_boards)])
    bands = f"+/-{tol['offset_warn_ps']:g} ps warn, +/-{tol['offset_fail_ps']:g} ps fail"

    def status(ps: float) -> str:
        return _status(abs(ps), tol["offset_warn_ps"], tol["offset_fail_ps"])

    out = [Finding(f"board {b}", "time offset (ps)", status(float(s)), float(s), bands,
                   "its clock or cable delay moved: petdaq calibrate RUN --method timing")
           for b, s in enumerate(boards)]
    apart = shift - boards[board_of]
    out += [Finding(f"module {m}", "time offset within its board (ps)", status(float(s)),
                    float(s), bands, "its cable or trigger delay moved: petdaq calibrate RUN "
                    "--method timing") for m, s in enumerate(apart)]
    return out


def _scanner(now: Figures, base: Figures, tolerances: dict[str, dict[str, float]]) -> Finding:
    tol = tolerances["scanner"]
    r = now.intrinsic_cps / max(base.intrinsic_cps, 1e-9)
    return Finding("scanner", "intrinsic coincidence rate",
                   _status(abs(r - 1), tol["intrinsic_warn"], tol["intrinsic_fail"]), r,
                   f"+/-{tol['intrinsic_warn']:g} warn, +/-{tol['intrinsic_fail']:g} fail",
                   "the whole ring's sensitivity moved: check the cooling and bias supply")
