"""A patient's rigid pose over time (shared by the emulator, the DAQ and the reconstruction).

A trace is rows of ``t_s, tx_mm, ty_mm, tz_mm, rx_deg, ry_deg, rz_deg``: at time ``t_s`` (s from
the scan's start) a point p of the patient at rest is at ``R p + t``, where R turns about the
scanner's x, then y, then z axis (through the field's centre, the scanner frame's origin) by
``rx_deg``, ``ry_deg``, ``rz_deg`` (``R = Rz Ry Rx``) and t is ``(tx_mm, ty_mm, tz_mm)``. Between
rows the six numbers are interpolated linearly; two rows at one time are a step (the second holds
from that time); before the first row the first pose holds, after the last the last. Scanner
frame: LPS (+x the patient's left, +y posterior, +z superior).

Presets (``still``, ``nod``, ``turn``, ``drift``, ``restless``, ``restless:SEED``) are
patients' head motion of published sizes (docs/motion.md); a nod or a turn pivots about the neck,
below and behind the brain, so it also moves the brain.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infra.errors import UserError

COLUMNS = ("t_s", "tx_mm", "ty_mm", "tz_mm", "rx_deg", "ry_deg", "rz_deg")
PRESETS = ("still", "nod", "turn", "drift", "restless")
#: Where a head pivots when it nods or turns (mm, scanner frame, the brain centred in the field):
#: the upper cervical spine, behind and below the brain's centre.
NECK_PIVOT_MM = (0.0, 40.0, -110.0)


def rotation(rx_deg: float, ry_deg: float, rz_deg: float) -> np.ndarray:
    """The 3 x 3 rotation about x, then y, then z (``Rz @ Ry @ Rx``)."""
    a, b, c = (math.radians(v) for v in (rx_deg, ry_deg, rz_deg))
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class Pose:
    """A rigid pose: a point p at rest is at ``rotation @ p + shift_mm``."""

    rotation: np.ndarray
    shift_mm: np.ndarray

    @classmethod
    def of(cls, params: np.ndarray) -> Pose:
        """The pose of a row's six numbers (tx, ty, tz mm, rx, ry, rz deg)."""
        p = np.asarray(params, dtype=np.float64)
        return cls(rotation(*p[3:6]), p[:3].copy())

    @property
    def matrix(self) -> np.ndarray:
        """The 4 x 4 homogeneous matrix."""
        m = np.eye(4)
        m[:3, :3], m[:3, 3] = self.rotation, self.shift_mm
        return m

    def apply(self, points_mm: np.ndarray) -> np.ndarray:
        """Points (N, 3) at rest, where the pose puts them."""
        return np.asarray(points_mm) @ self.rotation.T + self.shift_mm


@dataclass(frozen=True)
class MotionTrace:
    """Rows of poses in time (``rows``: (n, 7), :data:`COLUMNS`), and where they came from."""

    rows: np.ndarray
    source: str

    def __post_init__(self) -> None:
        rows = np.asarray(self.rows, dtype=np.float64).reshape(-1, len(COLUMNS))
        object.__setattr__(self, "rows", rows)
        if rows.shape[0] == 0:
            raise UserError(f"motion {self.source}: no poses")
        if not np.all(np.isfinite(rows)):
            bad = int(np.flatnonzero(~np.all(np.isfinite(rows), axis=1))[0])
            raise UserError(f"motion {self.source}: row {bad + 1} holds a value that is not a "
                            f"finite number")
        back = np.flatnonzero(np.diff(rows[:, 0]) < 0)
        if back.size:
            k = int(back[0]) + 1
            raise UserError(f"motion {self.source}: time goes back at row {k + 1} "
                            f"({rows[k, 0]:g} s after {rows[k - 1, 0]:g} s)")

    @property
    def still(self) -> bool:
        """Whether the patient never leaves the rest pose."""
        return not np.any(self.rows[:, 1:])

    def params_at(self, t_s: np.ndarray | float) -> np.ndarray:
        """The six numbers (tx, ty, tz mm, rx, ry, rz deg) at times ``t_s``: (..., 6)."""
        t = np.asarray(t_s, dtype=np.float64)
        times, values = self.rows[:, 0], self.rows[:, 1:]
        k = np.clip(np.searchsorted(times, t, side="right") - 1, 0, times.size - 1)
        k1 = np.minimum(k + 1, times.size - 1)
        span = times[k1] - times[k]
        w = np.where(span > 0, np.clip((t - times[k]) / np.where(span > 0, span, 1.0), 0, 1), 0)
        return values[k] + w[..., None] * (values[k1] - values[k])

    def pose_at(self, t_s: float) -> Pose:
        return Pose.of(self.params_at(t_s))

    def to_csv(self) -> str:
        out = io.StringIO()
        out.write(",".join(COLUMNS) + "\n")
        for row in self.rows:
            out.write(",".join(f"{v:.6g}" for v in row) + "\n")
        return out.getvalue()

    def to_json(self) -> dict[str, object]:
        """What a run records of it (its source and every row)."""
        return {"source": self.source, "columns": list(COLUMNS),
                "rows": [[float(v) for v in row] for row in self.rows]}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> MotionTrace:
        return cls(np.asarray(data["rows"], dtype=np.float64), str(data["source"]))


def parse_csv(text: str, source: str) -> MotionTrace:
    """A trace from CSV text with a header naming :data:`COLUMNS` (in any order; other columns
    are ignored, lines starting with ``#`` are comments). One-line errors."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise UserError(f"motion {source}: empty (a header {','.join(COLUMNS)} and rows)")
    header = [h.strip() for h in next(csv.reader([lines[0]]))]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise UserError(f"motion {source}: no column {missing[0]!r} (the columns: "
                        f"{','.join(COLUMNS)})")
    where = [header.index(c) for c in COLUMNS]
    rows = []
    for n, cells in enumerate(csv.reader(lines[1:]), start=2):
        if len(cells) < len(header):
            raise UserError(f"motion {source}: line {n} has {len(cells)} values, the header "
                            f"{len(header)}")
        try:
            rows.append([float(cells[k]) for k in where])
        except ValueError:
            raise UserError(f"motion {source}: line {n} holds a value that is not a number: "
                            f"{','.join(cells)}") from None
    return MotionTrace(np.array(rows).reshape(-1, len(COLUMNS)), source)


def load_trace(spec: str | Path) -> MotionTrace:
    """A trace from a CSV file or a preset name (:data:`PRESETS`, ``restless:SEED``)."""
    name = str(spec).strip()
    preset_name, _, seed = name.partition(":")
    if preset_name.lower() in PRESETS and not Path(name).is_file():
        if seed and not (preset_name.lower() == "restless" and seed.isdigit()):
            raise UserError(f"motion {name}: only restless takes a seed (restless:SEED)")
        return preset(preset_name.lower(), int(seed) if seed else 0)
    path = Path(name)
    if not path.is_file():
        raise UserError(f"motion {name}: no such file, and not a preset ({', '.join(PRESETS)})")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"motion {name}: cannot be read ({exc})") from None
    return parse_csv(text, str(path))


def save(trace: MotionTrace, path: str | Path) -> None:
    Path(path).write_text(trace.to_csv())


# ---------------------------------------------------------------------- presets


def pivoted(angles: tuple[float, float, float], pivot_mm: tuple[float, float, float] =
            NECK_PIVOT_MM) -> list[float]:
    """The six numbers of a turn by ``angles`` (deg about x, y, z) about ``pivot_mm``."""
    c = np.asarray(pivot_mm, dtype=np.float64)
    shift = c - rotation(*angles) @ c
    return [*shift, *angles]


def _rows(steps: list[tuple[float, float, list[float]]]) -> np.ndarray:
    """Rows of moves: (start s, length s, the six numbers reached), each holding until the
    next; the first pose is the rest pose."""
    rows, held = [[0.0, *[0.0] * 6]], [0.0] * 6
    for start, length, reached in steps:
        rows += [[start, *held], [start + length, *reached]]
        held = list(reached)
    return np.array(rows)


def preset(name: str, seed: int = 0) -> MotionTrace:
    """A preset trace (:data:`PRESETS`); ``seed`` draws another restless patient."""
    if name == "still":
        return MotionTrace(np.zeros((1, 7)), "still")
    if name == "nod":       # chin to chest and back, about the neck
        return MotionTrace(_rows([(60.0, 1.0, pivoted((4.0, 0, 0))), (240.0, 1.0,
                                  pivoted((-2.0, 0, 0))), (420.0, 1.0, pivoted((3.0, 0, 0)))]),
                           "nod")
    if name == "turn":      # the face turned to one side and back, about the neck
        return MotionTrace(_rows([(60.0, 1.0, pivoted((0, 0, 6.0))), (300.0, 1.0,
                                  pivoted((0, 0, -3.0))), (480.0, 1.0, pivoted((0, 0, 2.0)))]),
                           "turn")
    if name == "drift":     # sinking into the pillow and sliding down the bed
        return MotionTrace(np.array([[0.0, *[0.0] * 6], [600.0, 0.0, 3.0, -4.0, 0, 0, 0]]),
                           "drift")
    if name == "restless":
        return MotionTrace(_restless(seed), "restless" if seed == 0 else f"restless:{seed}")
    raise UserError(f"unknown motion preset {name!r}: choose {', '.join(PRESETS)}")


#: Restless: steps of 5-15 mm and 3-10 deg every 60-120 s, each within 0.5-1 s (the steps' poses
#: within 15 mm and 10 deg of the rest pose), over a drift of 5 mm in the first 600 s.
RESTLESS_SHIFT_MM, RESTLESS_TURN_DEG = (5.0, 15.0), (3.0, 10.0)
RESTLESS_DRIFT_MM, RESTLESS_DRIFT_S, RESTLESS_SPAN_S = 5.0, 600.0, 1800.0
_RESTLESS_MAX_MM, _RESTLESS_MAX_DEG = 15.0, 10.0


def _restless(seed: int) -> np.ndarray:
    """Rows of :data:`RESTLESS_SHIFT_MM` / :data:`RESTLESS_TURN_DEG` steps at random times over
    :data:`RESTLESS_SPAN_S`, plus the drift."""
    rng = np.random.default_rng([0x4D4F, seed])
    towards = rng.normal(size=3)
    towards /= np.linalg.norm(towards)
    t, pose = 0.0, np.zeros(6)
    knots = [[0.0, *pose]]
    while (t_step := t + rng.uniform(60.0, 120.0)) < RESTLESS_SPAN_S:
        t = t_step + rng.uniform(0.5, 1.0)
        knots.append([t_step, *pose])
        pose = _stepped(rng, pose)
        knots.append([t, *pose])
    knots.append([RESTLESS_SPAN_S, *pose])
    times = np.union1d([k[0] for k in knots], [RESTLESS_DRIFT_S])
    values = MotionTrace(np.array(knots), "steps").params_at(times)
    values[:, :3] += np.outer(np.minimum(times / RESTLESS_DRIFT_S, 1.0),
                              towards * RESTLESS_DRIFT_MM)
    return np.column_stack([times, values])


def _stepped(rng: np.random.Generator, pose: np.ndarray) -> np.ndarray:
    """``pose`` moved by a step of random direction and size, kept within the limits of the rest
    pose (a step that would leave them is drawn again, then turned back towards rest)."""
    out = pose.copy()
    for part, (lo, hi), limit in ((slice(0, 3), RESTLESS_SHIFT_MM, _RESTLESS_MAX_MM),
                                  (slice(3, 6), RESTLESS_TURN_DEG, _RESTLESS_MAX_DEG)):
        size = rng.uniform(lo, hi)
        for _ in range(16):
            d = rng.normal(size=3)
            d *= size / np.linalg.norm(d)
            if np.linalg.norm(out[part] + d) <= limit:
                break
        else:
            d = -out[part] * size / np.linalg.norm(out[part])
        out[part] += d
    return out
