"""Display-ready views of monitor and image messages, built off the GUI thread.

The console's subscriber thread turns every received message into one of these plain objects:
arrays decoded, histogram edges laid out, display levels and the maximum-intensity projection
computed. The GUI thread only hands them to pyqtgraph. Parsing is tolerant: a missing or
ill-typed field becomes ``None`` (shown as "-") and is listed in ``problems``; nothing here
raises on a bad message.

Units: rates in counts/s, times in s, sizes in bytes, energies in keV, time differences in ps,
image geometry in mm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from daq.messages import decode_array

RATE_NAMES = ("singles", "prompts", "delayeds", "necr")


def number(value: Any) -> float | None:
    """``value`` as a finite float, or None when it is not a real number (bools are not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _numbers(value: Any) -> dict[str, float]:
    """The numeric entries of a map (others dropped); {} when ``value`` is not a map."""
    if not isinstance(value, dict):
        return {}
    out = {}
    for key, v in value.items():
        x = number(v)
        if x is not None:
            out[str(key)] = x
    return out


def _pair(value: Any) -> tuple[float, float] | None:
    """A (lo, hi) pair of finite numbers with lo < hi, or None."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        return None
    lo, hi = number(value[0]), number(value[1])
    if lo is None or hi is None or not lo < hi:
        return None
    return lo, hi


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def display_levels(a: np.ndarray, upper_percentile: float = 99.9) -> tuple[float, float]:
    """Colour levels (lo, hi) for an image of counts or activity: min (or 0) to a high
    percentile, so that one hot pixel does not blacken the rest."""
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        return 0.0, 1.0
    lo = min(0.0, float(finite.min()))
    k = min(finite.size - 1, int(finite.size * upper_percentile / 100.0))
    hi = float(np.partition(finite.ravel(), k)[k])
    if hi <= lo:
        hi = float(finite.max())
    return lo, hi if hi > lo else lo + 1.0


@dataclass
class Histogram:
    """A 1-D histogram ready to draw: ``edges`` (n + 1) and ``counts`` (n), float64."""

    edges: np.ndarray
    counts: np.ndarray


@dataclass
class ProjectionsView:
    """A SPECT scan's projections now (:func:`daq.control.monitor.projection_fields`): each
    head's current view side by side, the central row's sinogram over gantry angle, the counts
    per angle, and the view the heads are at of ``views``."""

    heads_now: np.ndarray
    sinogram: np.ndarray
    counts_per_angle: np.ndarray
    view: int
    views: int


@dataclass
class MonitorView:
    """One monitor message, parsed. ``None`` marks a field that was missing or unusable."""

    received_at: float
    """time.time() when the subscriber received it (s since the epoch)."""
    run: str | None = None
    state: str | None = None
    scanner: str | None = None
    message: str | None = None
    elapsed_s: float | None = None
    duration_s: float | None = None
    rates: dict[str, float] = field(default_factory=dict)
    totals: dict[str, float] = field(default_factory=dict)
    losses: dict[str, float] = field(default_factory=dict)
    queues: dict[str, float] = field(default_factory=dict)
    boards: list[dict[str, float]] = field(default_factory=list)
    journal_bytes: float | None = None
    free_bytes: float | None = None
    energy_window_kev: tuple[float, float] | None = None
    energy: Histogram | None = None
    dt: Histogram | None = None
    hitmap: np.ndarray | None = None
    hitmap_levels: tuple[float, float] = (0.0, 1.0)
    sinogram: np.ndarray | None = None
    sinogram_levels: tuple[float, float] = (0.0, 1.0)
    projections: ProjectionsView | None = None
    """SPECT only."""
    problems: list[str] = field(default_factory=list)
    """Fields present but unusable (wrong type, undecodable array)."""

    @property
    def lost(self) -> dict[str, float]:
        """The non-zero entries of ``losses``."""
        return {k: v for k, v in self.losses.items() if v != 0}


@dataclass
class ImageView:
    """One reconstructed image: the [x, y, z] volume and what is needed to show it."""

    received_at: float
    volume: np.ndarray
    """float32 [x, y, z]."""
    mip: np.ndarray
    """Maximum-intensity projection along y (anterior view): [x, z]."""
    levels: tuple[float, float]
    """Display levels of the slices."""
    mip_levels: tuple[float, float]
    """Display levels of the MIP (brighter than any slice)."""
    voxel_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    """Centre of voxel [0, 0, 0] (mm)."""
    events: float | None = None
    iteration: float | None = None
    filter_fwhm_mm: float = 0.0
    """FWHM of the Gaussian display filter applied to ``volume`` (0: none)."""
    problems: list[str] = field(default_factory=list)

    def corner_mm(self) -> np.ndarray:
        """The outer corner of voxel [0, 0, 0] (mm)."""
        return np.asarray(self.origin_mm) - 0.5 * np.asarray(self.voxel_mm)

    def extent_mm(self) -> np.ndarray:
        """Size of the volume along x, y, z (mm)."""
        return np.asarray(self.volume.shape) * np.asarray(self.voxel_mm)


def _array(message: dict[str, Any], key: str, ndim: int, problems: list[str]) -> np.ndarray | None:
    """Decode ``message[key]`` as a finite float array of ``ndim`` dimensions, else None."""
    obj = message.get(key)
    if obj is None:
        return None
    try:
        a = decode_array(obj)
    except Exception:  # any malformed encoding: the view must survive it
        problems.append(key)
        return None
    if a.ndim != ndim or a.size == 0 or a.dtype.kind not in "iuf":
        problems.append(key)
        return None
    return np.nan_to_num(a.astype(np.float64 if ndim == 1 else np.float32), nan=0.0)


def _histogram(message: dict[str, Any], key: str, range_key: str,
               problems: list[str]) -> Histogram | None:
    obj = message.get(key)
    if obj is None:
        return None
    if not isinstance(obj, dict):
        problems.append(key)
        return None
    span = _pair(obj.get(range_key))
    counts = _array(obj, "counts", 1, problems)
    if span is None or counts is None:
        if span is None:
            problems.append(f"{key}.{range_key}")
        return None
    return Histogram(np.linspace(span[0], span[1], counts.size + 1), counts)


def _image2d(message: dict[str, Any], key: str, problems: list[str]
             ) -> tuple[np.ndarray | None, tuple[float, float]]:
    a = _array(message, key, 2, problems)
    return (a, display_levels(a)) if a is not None else (None, (0.0, 1.0))


def _projections(message: dict[str, Any], problems: list[str]) -> ProjectionsView | None:
    """A SPECT monitor message's ``projections``; None when absent or unusable."""
    obj = message.get("projections")
    if obj is None:
        return None
    if not isinstance(obj, dict):
        problems.append("projections")
        return None
    heads = _array(obj, "heads_now", 2, problems)
    sino = _array(obj, "sinogram", 2, problems)
    per_angle = _array(obj, "counts_per_angle", 1, problems)
    view, views = number(obj.get("view")), number(obj.get("views"))
    if heads is None or sino is None or per_angle is None or view is None or not views:
        problems.append("projections")
        return None
    return ProjectionsView(heads, sino, per_angle, int(view), int(views))


def monitor_view(message: dict[str, Any], received_at: float) -> MonitorView:
    """Parse a monitor message (see :func:`daq.messages.monitor_message`)."""
    problems: list[str] = []
    disk = message.get("disk") if isinstance(message.get("disk"), dict) else {}
    boards = message.get("boards")
    hitmap, hitmap_levels = _image2d(message, "hitmap", problems)
    sinogram, sinogram_levels = _image2d(message, "sinogram", problems)
    view = MonitorView(
        received_at=received_at,
        run=_text(message.get("run")),
        state=_text(message.get("state")),
        scanner=_text(message.get("scanner")),
        message=_text(message.get("message")),
        elapsed_s=number(message.get("elapsed_s")),
        duration_s=number(message.get("duration_s")),
        rates=_numbers(message.get("rates")),
        totals=_numbers(message.get("totals")),
        losses=_numbers(message.get("losses")),
        queues=_numbers(message.get("queues")),
        boards=[_numbers(b) for b in boards if isinstance(b, dict)]
        if isinstance(boards, list) else [],
        journal_bytes=number(disk.get("journal_bytes")),
        free_bytes=number(disk.get("free_bytes")),
        energy_window_kev=_pair(message.get("energy_window_kev")),
        energy=_histogram(message, "energy_hist", "edges_kev", problems),
        dt=_histogram(message, "dt_hist", "range_ps", problems),
        hitmap=hitmap, hitmap_levels=hitmap_levels,
        sinogram=sinogram, sinogram_levels=sinogram_levels,
        projections=_projections(message, problems),
        problems=problems,
    )
    for key in ("rates", "totals", "losses", "queues", "disk"):
        if key in message and not isinstance(message[key], dict):
            problems.append(key)
    return view


def rate_sample(message: dict[str, Any]) -> tuple[float, float, float, float]:
    """(singles, prompts, delayeds, necr) in counts/s from a monitor message; NaN where absent."""
    rates = _numbers(message.get("rates"))
    return tuple(rates.get(name, math.nan) for name in RATE_NAMES)  # type: ignore[return-value]


def _triple(value: Any, default: float) -> tuple[float, float, float] | None:
    if value is None:
        return (default,) * 3
    if not isinstance(value, list | tuple) or len(value) != 3:
        return None
    xs = tuple(number(v) for v in value)
    return None if None in xs else xs  # type: ignore[return-value]


def gaussian_filter(volume: np.ndarray, fwhm_mm: float,
                    voxel_mm: tuple[float, float, float]) -> np.ndarray:
    """``volume`` convolved with an isotropic 3-D Gaussian of ``fwhm_mm`` (separable; zero
    outside the volume, where a PET image has no activity). A copy, float32."""
    out = np.array(volume, dtype=np.float32)
    for axis, size in enumerate(voxel_mm):
        sigma = fwhm_mm / (2.0 * math.sqrt(2.0 * math.log(2.0))) / size
        if sigma < 0.2:  # narrower than a voxel: nothing to smooth along this axis
            continue
        r = math.ceil(3.0 * sigma)
        kernel = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
        kernel /= kernel.sum()
        padded = np.pad(out, [(r, r) if a == axis else (0, 0) for a in range(3)])
        acc = np.zeros_like(out)
        n = out.shape[axis]
        window = [slice(None)] * 3
        for i, w in enumerate(kernel):
            window[axis] = slice(i, i + n)
            acc += np.float32(w) * padded[tuple(window)]
        out = acc
    return out


def image_view(message: dict[str, Any], received_at: float,
               filter_fwhm_mm: float = 0.0) -> ImageView | None:
    """Parse an image message (see :func:`daq.messages.image_message`), smoothed for display
    by a Gaussian of ``filter_fwhm_mm`` (0: as reconstructed); None if unusable."""
    problems: list[str] = []
    volume = _array(message, "image", 3, problems)
    voxel = _triple(message.get("voxel_mm"), 1.0)
    origin = _triple(message.get("origin_mm"), 0.0)
    if volume is None or voxel is None or origin is None or min(voxel) <= 0:
        return None
    if filter_fwhm_mm > 0:
        volume = gaussian_filter(volume, filter_fwhm_mm, voxel)
    mip = volume.max(axis=1)
    return ImageView(
        received_at=received_at, volume=volume, mip=mip, levels=display_levels(volume, 99.95),
        mip_levels=display_levels(mip, 99.5), voxel_mm=voxel, origin_mm=origin,
        events=number(message.get("events")), iteration=number(message.get("iteration")),
        filter_fwhm_mm=filter_fwhm_mm, problems=problems,
    )


@dataclass(frozen=True)
class CurvesView:
    """A dynamic scan's time-activity curves so far (:func:`daq.messages.curves_message`):
    frame mid-times (kinetic clock, min) and each region's means (Bq/mL)."""

    received_at: float
    mid_min: np.ndarray
    mean_bq_ml: dict[str, np.ndarray]
    frames_done: int
    frames_total: int


def curves_view(message: dict[str, Any], received_at: float) -> CurvesView | None:
    """Parse a curves message; None if unusable (lengths that disagree, non-numbers)."""
    try:
        start = np.asarray(message["start_min"], np.float64)
        duration = np.asarray(message["duration_min"], np.float64)
        means = {str(k): np.asarray(v, np.float64) for k, v in message["mean_bq_ml"].items()}
        done, total = int(message["frames_done"]), int(message["frames_total"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if start.ndim != 1 or duration.shape != start.shape or any(
            m.shape != start.shape for m in means.values()):
        return None
    return CurvesView(received_at, start + duration / 2, means, done, total)


@dataclass(frozen=True)
class MotionView:
    """A PET scan's motion signal (:func:`daq.messages.motion_message`): each interval's
    distance of the prompts' centroid from its settled place (mm), whether the head is moving
    now, and the episodes ended so far ((start s, end s, size mm))."""

    received_at: float
    t_s: np.ndarray
    displacement_mm: np.ndarray
    moving: bool
    episodes: tuple[tuple[float, float, float], ...]

    @property
    def alert(self) -> str:
        """The operator's line: "MOTION" while the head moves, else the episodes so far."""
        if self.moving:
            return "MOTION: the patient is moving"
        return f"{len(self.episodes)} motion episode(s)" if self.episodes else ""


def motion_view(message: dict[str, Any], received_at: float) -> MotionView | None:
    """Parse a motion message; None if unusable (no interval, no array, bad episodes)."""
    try:
        interval = float(message["interval_s"])
        shown = np.asarray(decode_array(message["displacement_mm"]), np.float64).reshape(-1)
        episodes = tuple((float(e["start_s"]), float(e["end_s"]), float(e["size_mm"]))
                         for e in message["episodes"])
        moving = bool(message["moving"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if not (np.isfinite(interval) and interval > 0):
        return None
    return MotionView(received_at, (np.arange(shown.size) + 0.5) * interval, shown, moving,
                      episodes)


@dataclass(frozen=True)
class PolarView:
    """A cardiac SPECT scan's bull's-eye (:func:`daq.messages.polar_map_message`): the 17
    segments' percent of the maximum (AHA order), the DAQ's picture of it, the segments its
    scores call abnormal and the reading in one line."""

    received_at: float
    percent: np.ndarray
    picture: np.ndarray
    abnormal_segments: tuple[int, ...]
    summary: str


def polar_view(message: dict[str, Any], received_at: float) -> PolarView | None:
    """Parse a polar map message; None if unusable (not 17 finite numbers, not an RGB
    picture)."""
    try:
        percent = np.asarray(message["percent"], np.float64)
        picture = decode_array(message["picture"])
        abnormal = tuple(int(x) for x in message["abnormal_segments"])
        summary = str(message["summary"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if (percent.shape != (17,) or not np.all(np.isfinite(percent)) or picture.ndim != 3
            or picture.shape[2] != 3 or picture.dtype != np.uint8):
        return None
    return PolarView(received_at, percent, picture, abnormal, summary)


@dataclass(frozen=True)
class ScannerChoice:
    """A scanner the DAQ offers: its default energy window (keV) and module grid (module rings,
    modules per ring), which lays out the console's hit map."""

    energy_window_kev: tuple[float, float] | None
    module_grid: tuple[int, int] | None


@dataclass(frozen=True)
class ScanOffer:
    """What the DAQ can emulate (the ``offer`` of its status reply,
    :func:`daq.messages.offer_message`): the console's form offers these names."""

    scanners: dict[str, ScannerChoice] = field(default_factory=dict)
    phantoms: tuple[str, ...] = ()
    nuclides: tuple[str, ...] = ()


def offer_view(reply: dict[str, Any] | None) -> ScanOffer | None:
    """The offer of a status reply, or None when it has none (an older DAQ) or it is unusable."""
    offer = (reply or {}).get("offer")
    if not isinstance(offer, dict) or not isinstance(offer.get("scanners"), dict):
        return None
    scanners = {}
    for name, about in offer["scanners"].items():
        about = about if isinstance(about, dict) else {}
        grid = about.get("module_grid")
        ok_grid = (isinstance(grid, list | tuple) and len(grid) == 2
                   and all(isinstance(v, int) and v > 0 for v in grid))
        scanners[str(name)] = ScannerChoice(_pair(about.get("energy_window_kev")),
                                            (int(grid[0]), int(grid[1])) if ok_grid else None)
    return ScanOffer(scanners, _names(offer.get("phantoms")), _names(offer.get("nuclides")))


def _names(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def qc_line(reply: dict[str, Any] | None, scanner: str) -> tuple[str, str]:
    """(text, status) of ``scanner``'s latest daily QC in a status reply: ``("FAIL 2026-11-26
    06:00 UTC, 3 flagged", "FAIL")``; ``("none yet", "")`` without one; ``("-", "")`` when the
    DAQ says nothing of it."""
    qcs = (reply or {}).get("qc")
    if not isinstance(qcs, dict) or scanner not in qcs:
        return "-", ""
    last = qcs[scanner]
    if not isinstance(last, dict):
        return "none yet", ""
    result = str(last.get("result") or "?")
    when = str(last.get("created_utc") or "")[:16].replace("T", " ")
    flagged = last.get("flagged")
    more = f", {flagged} flagged" if isinstance(flagged, int) and flagged else ""
    return f"{result} {when} UTC{more}", result


@dataclass(frozen=True)
class QcView:
    """A scanner's latest daily QC and its trend (:func:`daq.messages.qc_message`)."""

    scanner: str
    result: str
    created_utc: str
    flagged: tuple[str, ...]
    picture: np.ndarray | None
    trend: dict[str, np.ndarray]
    """``module_rate_min``/``max``, ``gain_min``/``max``, ``board_worst_ps``: one value per QC,
    oldest first (NaN where a QC lacks it)."""
    results: tuple[str, ...]
    fail_bands: dict[str, float]
    """Half widths of the FAIL bands about 1: ``module_rate``, ``gain``."""


def qc_view(message: Any) -> QcView | None:
    """Parse a QC message; None if unusable."""
    try:
        picture = message["picture"]
        picture = None if picture is None else decode_array(picture)
        trend = message["trend"]
        series = {k: np.array([np.nan if v is None else float(v) for v in trend[k]])
                  for k in ("module_rate_min", "module_rate_max", "gain_min", "gain_max",
                            "board_worst_ps")}
        bands = {str(k): float(v) for k, v in (message.get("fail_bands") or {}).items()}
        view = QcView(str(message["scanner"]), str(message["result"]),
                      str(message["created_utc"]), tuple(map(str, message["flagged"])),
                      picture, series, tuple(map(str, trend["result"])), bands)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if picture is not None and (picture.ndim != 3 or picture.shape[2] != 3
                                or picture.dtype != np.uint8):
        return None
    if len({len(v) for v in view.trend.values()} | {len(view.results)}) != 1:
        return None
    return view


#: The study fields a worklist procedure gives the scan form.
WORKLIST_FIELDS = ("patient_id", "patient_name", "birth_date", "sex", "weight_kg",
                   "accession_number", "requested_procedure", "study_instance_uid")


@dataclass(frozen=True)
class Procedure:
    """A scheduled procedure of the worklist (the service's ``worklist`` reply)."""

    accession_number: str
    patient_id: str
    patient_name: str
    requested_procedure: str
    time: str
    study: dict[str, Any]
    """The study a scan started from it records (:data:`WORKLIST_FIELDS` that it gives)."""

    @property
    def label(self) -> str:
        when = f"{self.time[:2]}:{self.time[2:4]} " if len(self.time) >= 4 else ""
        return (f"{when}{self.accession_number}  {self.patient_name or self.patient_id}  "
                f"{self.requested_procedure}").strip()


def worklist_view(reply: dict[str, Any] | None) -> tuple[Procedure, ...]:
    """The procedures of a ``worklist`` reply (unusable entries left out)."""
    out = []
    for p in (reply or {}).get("procedures") or []:
        if not isinstance(p, dict) or not _text(p.get("accession_number")):
            continue
        study = {k: p[k] for k in WORKLIST_FIELDS if p.get(k) not in (None, "")}
        out.append(Procedure(str(p["accession_number"]), str(p.get("patient_id") or ""),
                             str(p.get("patient_name") or ""),
                             str(p.get("requested_procedure") or ""), str(p.get("time") or ""),
                             study))
    return tuple(out)


def outbox_line(reply: dict[str, Any] | None) -> tuple[str, bool]:
    """(text, waiting) of the PACS outbox in a status reply: ``("3 queued: connection refused",
    True)``, ``("2 awaiting commitment", True)``, ``("all sent (42)", False)``; ``("-",
    False)`` when the DAQ says nothing."""
    box = (reply or {}).get("outbox")
    if not isinstance(box, dict):
        return "-", False
    queued, sent, failed, awaiting, committed = (
        int(number(box.get(k)) or 0)
        for k in ("queued", "sent", "failed", "awaiting", "committed"))
    why = _text(box.get("why"))
    if queued or awaiting:
        said = f"{queued} queued" if queued else f"{awaiting} awaiting commitment"
        return said + (f": {why}" if why else ""), True
    more = (f", {committed} committed" if committed else "") + (
        f", {failed} failed" if failed else "")
    return f"all sent ({sent}){more}", bool(failed)


def gain_calibration_line(reply: dict[str, Any] | None) -> tuple[str, str]:
    """(state, message) of the DAQ's Lu-176 gain calibration in a status reply (``running``,
    ``done`` or ``failed``); ``("", "")`` when it has run none."""
    cal = (reply or {}).get("gain_calibration")
    if not isinstance(cal, dict):
        return "", ""
    return _text(cal.get("state")), _text(cal.get("message"))
