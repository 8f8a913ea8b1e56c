"""Monitor and control messages between the DAQ and its clients (the console, scripts).

This module imports nothing heavy (msgpack and numpy only) so that the console can use it on a
machine without the DAQ. Messages are msgpack maps; numpy arrays travel as ``{"dtype", "shape",
"data"}`` maps of raw little-endian bytes. Never pickle.

Sockets (ZeroMQ), defaults on the DAQ host (127.0.0.1; beyond it only with CURVE keys,
:mod:`infra.keys`, and a client must present an authorised key):

- monitor: PUB on ``tcp://HOST:5556``; multipart ``[topic, payload]``. Topic ``monitor`` at >= 5 Hz
  (rates, counters, losses, histograms, see :func:`monitor_message`); topic ``image`` each time the
  live reconstruction publishes an image (see :func:`image_message`); topic ``curves`` each time
  a dynamic scan's live frame is finished (the curves so far, see :func:`curves_message`); topic
  ``motion`` after each interval of a PET scan's motion signal (see :func:`motion_message`).
- control: REP on ``tcp://HOST:5557``; request ``{"cmd": "start" | "stop" | "status", "settings":
  {...}}``, reply ``{"ok": bool, "error": str | None, "state": str, "run": str | None}``; the
  reply to ``status`` also carries ``offer`` (:func:`offer_message`): what a start may ask for.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

SCHEMA_VERSION = 1
MONITOR_TOPIC = b"monitor"
IMAGE_TOPIC = b"image"
CURVES_TOPIC = b"curves"
POLAR_TOPIC = b"polar"
MOTION_TOPIC = b"motion"
DEFAULT_MONITOR_PORT = 5556
DEFAULT_CONTROL_PORT = 5557

#: The emulated scan a start request runs when its settings leave something out (also the
#: defaults of ``petdaq run`` and of the console's scan panel): the one place they are set.
DEFAULT_SCAN = {"scanner": "bedside-brain", "phantom": "nema-iq", "nuclide": "F-18",
                "activity_mbq": 4.0, "duration_s": 10.0, "kinetic_time_scale": 1.0,
                "firmware": "numba"}
#: The boards' packers an emulated scan may use (``petdaq emulate --firmware``): hw.wire's
#: encoder, the firmware's C packer, the whole firmware in QEMU (one emulated Cortex-M a board).
FIRMWARES = {"numba": "hw.wire encoder", "c": "firmware C packer", "qemu": "firmware in QEMU"}
#: The emulated patient's motion presets (``hw.motion.PRESETS``, named here for the console).
MOTION_PRESETS = ("still", "nod", "turn", "drift", "restless")
#: Free bytes on the run's disk below which the monitor's message warns (DAQ and console).
LOW_DISK_BYTES = 1 << 30

#: Run states reported in ``state``.
STATES = ("idle", "starting", "running", "stopping", "stopped", "failed")


def pack(message: dict[str, Any]) -> bytes:
    """Serialise a message (msgpack, binary-safe)."""
    return msgpack.packb(message, use_bin_type=True)


def unpack(payload: bytes) -> dict[str, Any]:
    """Parse a message; raises ``ValueError`` on bytes that are not a msgpack map."""
    try:
        message = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated exception types
        raise ValueError(f"not a monitor/control message: {exc}") from None
    if not isinstance(message, dict):
        raise ValueError("not a monitor/control message: expected a map")
    return message


def encode_array(array: np.ndarray) -> dict[str, Any]:
    """A numpy array as a msgpack-friendly map."""
    a = np.ascontiguousarray(array)
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.tobytes()}


def decode_array(obj: dict[str, Any]) -> np.ndarray:
    """The inverse of :func:`encode_array` (a read-only view of the message's bytes)."""
    return np.frombuffer(obj["data"], dtype=np.dtype(obj["dtype"])).reshape(obj["shape"])


def offer_message(scanners: dict[str, dict[str, Any]], phantoms: list[str], nuclides: list[str]
                  ) -> dict[str, Any]:
    """What the DAQ can emulate, for the console's scan form: ``scanners`` {name: {``kind``
    ("pet" | "spect"), ``energy_window_kev`` [lo, hi] (its default), ``module_grid`` [module
    rings, modules per ring]}}, ``phantoms`` and ``nuclides`` (names), ``defaults`` (the scan a
    start runs when its settings leave something out, :data:`DEFAULT_SCAN`)."""
    return {"scanners": scanners, "phantoms": list(phantoms), "nuclides": list(nuclides),
            "defaults": dict(DEFAULT_SCAN)}


def monitor_message(**fields: Any) -> dict[str, Any]:
    """A monitor document. Fields the DAQ fills (rates in counts/s, sizes in bytes, times in s):

    ``run`` (run directory or None), ``state``, ``elapsed_s``, ``duration_s``, ``scanner``,
    ``rates`` {singles, prompts, delayeds, necr} cps, ``boards`` [{board, singles_cps, frames_ok,
    frames_bad, seq_gaps, bytes_skipped, watermark_s}; an ABCD link's board also
    ``digitizer_cps`` (the digitizer's own rate from ABCD's latest status, summed over its
    channels) and ``status_age_s`` (how old that status is), once a status came], ``totals``
    {singles, prompts, delayeds, frames, events_journaled}, ``losses`` {name: count} (every loss
    anywhere, zero when none), ``queues`` {name: fill 0..1}, ``disk`` {journal_bytes,
    free_bytes}, ``energy_window_kev``, ``energy_hist`` {edges_kev: [lo, hi], counts: array},
    ``dt_hist`` {range_ps: [lo, hi], counts: array}, ``hitmap`` array (rings x crystals per
    ring), ``sinogram`` array, ``message`` (a plain warning for the operator, or "").
    """
    return {"type": "monitor", "v": SCHEMA_VERSION, **fields}


def image_message(image: np.ndarray, *, voxel_mm: tuple[float, float, float],
                  origin_mm: tuple[float, float, float], events: int, iteration: int
                  ) -> dict[str, Any]:
    """A reconstructed image ([x, y, z] float32) with its geometry and the events it used."""
    return {
        "type": "image", "v": SCHEMA_VERSION, "image": encode_array(image.astype(np.float32)),
        "voxel_mm": list(voxel_mm), "origin_mm": list(origin_mm), "events": int(events),
        "iteration": int(iteration),
    }


def curves_message(*, start_min: list[float], duration_min: list[float],
                   mean_bq_ml: dict[str, list[float]], sd_bq_ml: dict[str, list[float]],
                   frames_done: int, frames_total: int) -> dict[str, Any]:
    """A dynamic scan's time-activity curves so far: per reconstructed frame its start and
    duration (kinetic clock, min) and per region its mean and SD (Bq/mL, decay-corrected to the
    scan's start); ``frames_done`` of ``frames_total`` finished (a frame that lost events to a
    full queue is finished without a point)."""
    return {"type": "curves", "v": SCHEMA_VERSION, "start_min": list(start_min),
            "duration_min": list(duration_min),
            "mean_bq_ml": {k: list(v) for k, v in mean_bq_ml.items()},
            "sd_bq_ml": {k: list(v) for k, v in sd_bq_ml.items()},
            "frames_done": int(frames_done), "frames_total": int(frames_total)}


def motion_message(*, interval_s: float, displacement_mm: np.ndarray, moving: bool,
                   episodes: list[dict[str, Any]], data_s: float, elapsed_s: float
                   ) -> dict[str, Any]:
    """A PET scan's motion signal so far: each interval's (``interval_s`` long, from the scan's
    start) distance of the prompts' centroid from its settled place (mm, NaN: too few prompts),
    whether the head is moving now (``alert`` "motion" then, else ""), the episodes ended so far
    (``start_s``, ``end_s``, ``size_mm``, ``shift_mm``), how far the prompts taken reach
    (``data_s``, s from the scan's start) and the DAQ's ``elapsed_s`` when sent."""
    return {"type": "motion", "v": SCHEMA_VERSION, "interval_s": float(interval_s),
            "displacement_mm": encode_array(np.asarray(displacement_mm, np.float32)),
            "moving": bool(moving), "alert": "motion" if moving else "",
            "episodes": list(episodes), "data_s": float(data_s), "elapsed_s": float(elapsed_s)}


def qc_message(*, scanner: str, result: str, created_utc: str, flagged: list[str],
               picture: np.ndarray | None, trend: dict[str, list[Any]],
               fail_bands: dict[str, float] | None = None) -> dict[str, Any]:
    """A scanner's latest daily QC for the console's QC tab: its result, time and flagged
    findings, the crystals' map ([row, column, RGB] uint8: rings down, around the ring across,
    blue low, red high; None when its run is gone) and the trend of every QC so far (lists of
    ``created_utc``, ``result``, ``module_rate_min``/``max``, ``gain_min``/``max``,
    ``board_worst_ps``) with the half widths of their FAIL bands about 1 (``fail_bands``:
    ``module_rate``, ``gain``)."""
    return {"type": "qc", "v": SCHEMA_VERSION, "scanner": scanner, "result": result,
            "created_utc": created_utc, "flagged": list(flagged),
            "picture": None if picture is None else encode_array(np.asarray(picture, np.uint8)),
            "trend": {k: list(v) for k, v in trend.items()},
            "fail_bands": dict(fail_bands or {})}


def polar_map_message(*, percent: list[float], picture: np.ndarray, abnormal_segments: list[int],
                      summary: str, apex_mm: list[float], base_mm: list[float]) -> dict[str, Any]:
    """A cardiac SPECT scan's 17-segment polar map at the stop: each segment's percent of the
    maximum (AHA order), the bull's-eye picture ([row, column, RGB] uint8, anterior at the top,
    septal on the left), the segments its scores call abnormal, the reading in one line (the
    correction, the limits, SSS, TPD and territories, or why there are no scores), and the left
    ventricle's axis it was sampled on (scanner mm)."""
    return {"type": "polar", "v": SCHEMA_VERSION, "percent": list(percent),
            "picture": encode_array(np.asarray(picture, np.uint8)),
            "abnormal_segments": [int(s) for s in abnormal_segments], "summary": str(summary),
            "apex_mm": list(apex_mm), "base_mm": list(base_mm)}
