"""What a blank run shows of each crystal, module and board: singles rates, the Lu-176
spectrum's place (gain) and blur (energy resolution), and the modules' time offsets from the
intrinsic coincidences.

A module is a ``crystal_module`` sector, all its module rings. Its gain is read from the shape
of its singles' Lu-176 spectrum (the beta continuum under the 88, 202 and 307 keV cascade):
histogrammed in log energy, a gain change is a shift, found by cross-correlation with the
baseline's. The modules' and boards' time offsets come from the blank's coincidences in the Lu-176 window: a
crystal's decay and the gamma it sends to another crystal are as often on either side, so the
centre of the time differences between two modules is the difference of their offsets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw.dtypes import SINGLE_DTYPE
from hw.scanner import Scanner

#: The module spectra: log-energy bins of this width (0.25 % of the energy) from
#: ``SPECTRUM_KEV[0]`` to ``SPECTRUM_KEV[1]``.
SPECTRUM_KEV, LOG_BIN = (150.0, 900.0), 0.0025
#: The part of a module's spectrum whose shape sets its gain (keV): a shift of up to 15 % keeps
#: it inside :data:`SPECTRUM_KEV`.
CORE_KEV = (200.0, 700.0)
#: The half width (ps) of the time differences about a pair of boards' centre that its mean is
#: taken over: the intrinsic pairs' TOF across the ring (under 900 ps) and the time resolution.
CENTRE_HALF_WIDTH_PS = 2000.0
#: The energy (keV) whose resolution a module's spectrum's blur is expressed against: where the
#: Lu-176 spectrum's shape (the 307 keV gamma's edge over the beta continuum) carries it
#: (emulated modules' FWHM scaled by 1.2 and 0.85 read as 1.19 and 0.86 against it).
RESOLUTION_REF_KEV = 280.0
#: A crystal whose singles rate is beyond these multiples of its module's median is left out of
#: the module's spectrum and the boards' offsets (a noisy channel's own triggers have a flat
#: spectrum and pair at random with every board; a dead one gives nothing).
OUTLIER_RATE = (0.3, 3.0)


@dataclass(frozen=True)
class Figures:
    """A blank run's figures (one QC's measurement, or the baseline's)."""

    scanner: str
    scanner_digest: str
    seconds: float
    crystal_cps: np.ndarray
    """(crystals,) singles per second above the trigger threshold."""
    module_spectra: np.ndarray
    """(modules, bins) singles per log-energy bin (:data:`LOG_BIN`)."""
    module_offset_ps: np.ndarray
    """(modules,) each module's time offset (mean 0 over the modules)."""
    intrinsic_cps: float
    """Coincidences per second in the Lu-176 window, delayeds subtracted."""
    from_run: str = ""
    created_utc: str = ""
    module_pair_cps: np.ndarray | None = None
    """(modules, modules) symmetric: the net intrinsic coincidences per second of each pair of
    modules (None: a baseline taken before this figure was measured)."""

    def arrays(self) -> dict[str, object]:
        """The figures as the fields of an ``.npz``."""
        return {"scanner": self.scanner, "scanner_digest": self.scanner_digest,
                "seconds": self.seconds, "crystal_cps": self.crystal_cps,
                "module_spectra": self.module_spectra, "module_offset_ps": self.module_offset_ps,
                "intrinsic_cps": self.intrinsic_cps, "from_run": self.from_run,
                "created_utc": self.created_utc,
                **({} if self.module_pair_cps is None
                   else {"module_pair_cps": self.module_pair_cps})}


def measure(singles: np.ndarray, scanner: Scanner, seconds: float, threads: int = 1,
            from_run: str = "", created_utc: str = "") -> Figures:
    """The figures of a blank run's singles (hw.SINGLE_DTYPE, keV, time order) over
    ``seconds``."""
    assert singles.dtype == SINGLE_DTYPE
    tally = SinglesTally(scanner)
    tally.add(singles)
    return tally.figures(_intrinsic(singles, scanner, threads), seconds, from_run, created_utc)


class SinglesTally:
    """A blank run's singles counted a batch at a time, in any order: each crystal's singles
    and log-energy spectrum, and the time span. Memory: the crystals' spectra, not the
    singles."""

    def __init__(self, scanner: Scanner) -> None:
        self.scanner = scanner
        self.counts = np.zeros(scanner.n_crystals, np.int64)
        self.spectra = np.zeros((scanner.n_crystals, n_bins()), np.int64)
        self.t_first_ps: int | None = None
        self.t_last_ps: int | None = None

    def add(self, singles: np.ndarray) -> None:
        """Count a batch of singles (hw.SINGLE_DTYPE, keV)."""
        if singles.size == 0:
            return
        n, nb = self.scanner.n_crystals, n_bins()
        self.counts += np.bincount(singles["crystal"], minlength=n)
        c, b = _log_bins(singles)
        self.spectra += np.bincount(c * nb + b, minlength=n * nb).reshape(n, nb)
        t = singles["t"]
        lo, hi = int(t.min()), int(t.max())
        self.t_first_ps = lo if self.t_first_ps is None else min(lo, self.t_first_ps)
        self.t_last_ps = hi if self.t_last_ps is None else max(hi, self.t_last_ps)

    @property
    def singles(self) -> int:
        return int(self.counts.sum())

    @property
    def seconds(self) -> float:
        """From the first single to the last."""
        if self.t_first_ps is None:
            return 0.0
        return float(self.t_last_ps - self.t_first_ps) * 1e-12

    def figures(self, coinc: np.ndarray, seconds: float, from_run: str = "",
                created_utc: str = "") -> Figures:
        """The figures, with the blank's coincidences in the Lu-176 window (COINC_DTYPE:
        :func:`_intrinsic`, or the journal sorted with the same settings)."""
        scanner = self.scanner
        prompts = int(np.count_nonzero(coinc["delayed"] == 0))
        net = prompts - int(np.count_nonzero(coinc["delayed"]))
        keep = typical(self.counts, scanner)
        module = scanner.crystal_module
        spectra = np.stack([self.spectra[(module == m) & keep].sum(axis=0)
                            for m in range(int(module.max()) + 1)])
        typical_pairs = coinc[keep[coinc["crystal_a"]] & keep[coinc["crystal_b"]]]
        return Figures(scanner.name, scanner.digest, float(seconds), self.counts / seconds,
                       spectra, module_offsets(typical_pairs, scanner), net / seconds, from_run,
                       created_utc, module_pairs(typical_pairs, scanner) / seconds)


def _intrinsic(singles: np.ndarray, scanner: Scanner, threads: int) -> np.ndarray:
    """The blank's coincidences (COINC_DTYPE) in the normalization's Lu-176 window."""
    from coincidence.sorter import sort
    from recon.calibration.normalization import BLANK_SECTOR_DIFFERENCE, LU176_WINDOW_KEV

    return sort(singles, scanner=scanner, energy_window_kev=LU176_WINDOW_KEV,
                delay_ps=scanner.acquisition["delay_ps"],
                min_sector_difference=BLANK_SECTOR_DIFFERENCE, threads=threads)


def n_bins() -> int:
    return int(np.ceil(np.log(SPECTRUM_KEV[1] / SPECTRUM_KEV[0]) / LOG_BIN))


def typical(counts: np.ndarray, scanner: Scanner) -> np.ndarray:
    """(crystals,) bool: the crystals whose singles lie within :data:`OUTLIER_RATE` of their
    module's median (not dead, not noisy)."""
    module = scanner.crystal_module
    median = np.array([np.median(counts[module == m]) for m in range(int(module.max()) + 1)])
    rel = counts / np.maximum(median[module], 1.0)
    return (rel >= OUTLIER_RATE[0]) & (rel <= OUTLIER_RATE[1])


def _log_bins(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(crystal, log-energy bin) of the singles ``s`` inside :data:`SPECTRUM_KEV`."""
    e = s["energy"].astype(np.float64)
    inside = (e > SPECTRUM_KEV[0]) & (e < SPECTRUM_KEV[1])
    b = np.floor(np.log(e[inside] / SPECTRUM_KEV[0]) / LOG_BIN).astype(np.int64)
    return s["crystal"][inside].astype(np.int64), b


def module_pairs(coinc: np.ndarray, scanner: Scanner) -> np.ndarray:
    """(modules, modules) symmetric: each pair of modules' net coincidences (prompts less
    delayeds)."""
    module = scanner.crystal_module
    n = int(module.max()) + 1
    a, b = module[coinc["crystal_a"]].astype(np.int64), module[coinc["crystal_b"]].astype(np.int64)
    sign = np.where(coinc["delayed"] == 0, 1.0, -1.0)
    pairs = np.bincount(a * n + b, sign, minlength=n * n).reshape(n, n)
    return pairs + pairs.T


def module_offsets(coinc: np.ndarray, scanner: Scanner) -> np.ndarray:
    """(modules,) ps: the offsets (mean 0) that best explain the time difference of each pair
    of modules' prompts (:func:`centre`): least squares over the pairs, each weighted by its
    net coincidences over the square root of its prompts. A board's offset is its modules'
    median (:mod:`daq.qc.checks`)."""
    module = scanner.crystal_module
    ba, bb = module[coinc["crystal_a"]], module[coinc["crystal_b"]]
    prompt = coinc["delayed"] == 0
    dt = coinc["dt"].astype(np.float64)        # a prompt's t_b - t_a >= 0
    n = int(module.max()) + 1
    rows, rhs = [], []
    for i in range(n):
        for j in range(i + 1, n):
            forward, backward = (ba == i) & (bb == j), (ba == j) & (bb == i)
            pair = forward | backward
            prompts = int(np.count_nonzero(pair & prompt))
            net = prompts - int(np.count_nonzero(pair & ~prompt))
            if prompts < 100 or net <= 0:
                continue
            s = np.concatenate([dt[forward & prompt], -dt[backward & prompt]])  # t_j - t_i
            w = net / np.sqrt(prompts)
            row = np.zeros(n)
            row[j], row[i] = w, -w
            rows.append(row)
            rhs.append(w * centre(s))
    if not rows:
        return np.zeros(n)
    scale = max(abs(r).max() for r in rows)
    rows.append(np.full(n, scale))             # mean 0
    rhs.append(0.0)
    offsets, *_ = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)
    return offsets


def centre(s: np.ndarray, half_width_ps: float = CENTRE_HALF_WIDTH_PS, rounds: int = 5
           ) -> float:
    """The centre of symmetry of time differences ``s`` (ps): from their median, the mean of
    those within ``half_width_ps`` of the last centre, again. Two boards' intrinsic pairs are
    two peaks at +-TOF (a decay on either side) with a gap between them where a median wanders;
    randoms, spread evenly, only slow the rounds down."""
    c = float(np.median(s))
    for _ in range(rounds):
        near = s[np.abs(s - c) < half_width_ps]
        if near.size == 0:
            break
        c = float(near.mean())
    return c


def gain_ratio(spectrum: np.ndarray, baseline: np.ndarray, most: float = 0.15) -> float:
    """The gain of a module's spectrum over its baseline's (1: unchanged): the shift in log
    energy (within ``most``, to a fraction of a bin) that makes the spectrum's shape over
    :data:`CORE_KEV` closest to the baseline's (least squares, each normalized to its sum)."""
    lo, hi = (round(float(np.log(e / SPECTRUM_KEV[0])) / LOG_BIN) for e in CORE_KEV)
    if spectrum[lo:hi].sum() == 0 or baseline[lo:hi].sum() == 0:
        return float("nan")                    # nothing to align
    ref = baseline[lo:hi] / baseline[lo:hi].sum()
    lags = np.arange(-int(most / LOG_BIN), int(most / LOG_BIN) + 1)
    lags = lags[(lo + lags >= 0) & (hi + lags <= spectrum.size)]
    cost = np.empty(lags.size)
    for n, k in enumerate(lags):
        part = spectrum[lo + k:hi + k]
        cost[n] = np.sum((part / max(part.sum(), 1) - ref) ** 2)
    i = int(np.argmin(cost))
    frac = 0.0
    if 0 < i < lags.size - 1:
        y0, y1, y2 = cost[i - 1], cost[i], cost[i + 1]
        denom = y0 - 2 * y1 + y2
        frac = 0.5 * (y0 - y2) / denom if denom > 0 else 0.0
    return float(np.exp((lags[i] + frac) * LOG_BIN))


def resolution_ratio(spectrum: np.ndarray, baseline: np.ndarray, gain: float,
                     sigma_log: float, most: float = 2.0) -> float:
    """A module's energy resolution over its baseline's (1: unchanged), from how much its
    spectrum's shape over :data:`CORE_KEV`, aligned by ``gain``, is blurred (or sharpened) from
    the baseline's: the Gaussian (in log energy, to a quarter of a bin) that brings the
    sharper of the two closest to the other, against ``sigma_log``, the scanner's own
    resolution there (sigma of log energy); up to ``most`` times (NaN without a gain)."""
    if not np.isfinite(gain):
        return float("nan")
    lo, hi = (round(float(np.log(e / SPECTRUM_KEV[0])) / LOG_BIN) for e in CORE_KEV)
    x = np.arange(spectrum.size, dtype=np.float64)
    shift = np.log(gain) / LOG_BIN
    aligned = np.interp(x + shift, x, spectrum.astype(np.float64))

    def core(h: np.ndarray) -> np.ndarray:
        part = h[lo:hi]
        return part / max(part.sum(), 1e-12)

    now, base = aligned, baseline.astype(np.float64)
    steps = np.arange(0.0, sigma_log * np.sqrt(most ** 2 - 1) / LOG_BIN, 0.25)
    cost = np.array([[np.sum((core(_blurred(b, s)) - core(a)) ** 2) for s in steps]
                     for a, b in ((now, base), (base, now))])    # now blurrier; now sharper
    side, i = np.unravel_index(int(np.argmin(cost)), cost.shape)
    s_log = _refined(cost[side], i) * 0.25 * LOG_BIN
    sign = 1.0 if side == 0 else -1.0
    return float(np.sqrt(max(sigma_log ** 2 + sign * s_log ** 2, 0.0)) / sigma_log)


def _blurred(h: np.ndarray, sigma_bins: float) -> np.ndarray:
    if sigma_bins <= 0:
        return h
    half = int(np.ceil(4 * sigma_bins))
    k = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma_bins) ** 2)
    return np.convolve(h, k / k.sum(), mode="same")


def _refined(cost: np.ndarray, i: int) -> float:
    """The minimum's index of ``cost`` at ``i``, to a fraction (a parabola through it)."""
    if 0 < i < cost.size - 1:
        y0, y1, y2 = cost[i - 1], cost[i], cost[i + 1]
        denom = y0 - 2 * y1 + y2
        if denom > 0:
            return i + 0.5 * (y0 - y2) / denom
    return float(i)
