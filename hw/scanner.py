"""The scanner model: geometry, detector response and digitizer, loaded from a TOML definition.

Coordinates are scanner coordinates in mm: z along the bore axis, x/y transaxial, origin at the
centre of the field of view. A PET scanner is a ring of flat modules ("sectors") of crystal
arrays; a SPECT scanner is a set of pixelated gamma-camera heads with parallel-hole collimators.

Crystal numbering (PET): ``crystal = ring * crystals_per_ring + tangential``, where ``ring`` is the
axial crystal row (0 at most negative z) and ``tangential`` counts counter-clockwise around the ring
starting at module 0 (module 0 is centred on the +x axis). SPECT: ``crystal = head * pixels + row *
columns + column`` with ``row`` along z.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from hw import crystals as _crystals_mod
from hw.crystals import CrystalSpread
from hw.faults import Faults
from infra.errors import ScannerError

SPEED_OF_LIGHT_MM_PER_PS = 0.299792458


@dataclass(frozen=True)
class Material:
    """Detector material: attenuation (1/mm) and photo-fraction tabulated against energy (keV)."""

    name: str
    density_g_cm3: float
    energies_kev: np.ndarray
    mu_per_mm: np.ndarray
    photofraction: np.ndarray
    lu176_bq_per_cm3: float

    def mu(self, energy_kev: np.ndarray | float) -> np.ndarray:
        """Linear attenuation coefficient (1/mm), log-log interpolated."""
        return np.exp(np.interp(np.log(energy_kev), np.log(self.energies_kev), np.log(self.mu_per_mm)))

    def photo_fraction(self, energy_kev: np.ndarray | float) -> np.ndarray:
        """Probability that the first interaction is photo-electric, linear in log energy."""
        return np.interp(np.log(energy_kev), np.log(self.energies_kev), self.photofraction)


@dataclass(frozen=True)
class DetectorResponse:
    """Energy and time response of one detector channel and its module."""

    energy_resolution: float
    """FWHM / E at ``energy_ref_kev``; scales as 1/sqrt(E)."""
    energy_ref_kev: float
    ctr_ps: float
    """Coincidence time resolution, FWHM ps (a single's time jitter is ctr / sqrt(2))."""
    dead_time_ns: float
    dead_time_kind: str
    """``paralysable`` or ``nonparalysable``; applied per module."""
    integration_time_ns: float
    """Two photons in one crystal within this time pile up into one single (energies summed)."""
    crystal_efficiency: float
    """Fraction of crystals' interactions that the electronics accept (light collection, trigger)."""

    def fwhm_kev(self, energy_kev: np.ndarray | float) -> np.ndarray:
        """Energy resolution FWHM in keV at ``energy_kev``."""
        e = np.asarray(energy_kev, dtype=np.float64)
        return self.energy_resolution * np.sqrt(self.energy_ref_kev * np.maximum(e, 1e-3))


@dataclass(frozen=True)
class Digitizer:
    """The digitizer boards: clock, TDC, coarse counter, ADC and the channel gain spread."""

    n_boards: int
    clock_mhz: float
    tdc_bits: int
    counter_bits: int
    adc_bits: int
    kev_per_adc_code: float
    """Nominal gain: keV per ADC code for a crystal of relative gain 1."""
    gain_spread: float
    """Standard deviation of the relative per-crystal gain (fraction)."""
    gain_seed: int

    @property
    def clock_period_ps(self) -> int:
        """Coarse clock period in integer ps."""
        return round(1e6 / self.clock_mhz)

    @property
    def tdc_lsb_ps(self) -> float:
        """Time quantum (ps): the coarse period divided by 2**tdc_bits."""
        return self.clock_period_ps / (1 << self.tdc_bits)


@dataclass(frozen=True)
class Collimator:
    """Parallel-hole collimator (SPECT), lengths in mm."""

    hole_diameter_mm: float
    hole_length_mm: float
    septa_mm: float
    mu_lead_per_mm: float
    """Lead attenuation at the design energy, used for the effective hole length."""

    @property
    def effective_length_mm(self) -> float:
        """l_eff = l - 2/mu (DOMAIN.md)."""
        return self.hole_length_mm - 2.0 / self.mu_lead_per_mm

    def geometric_resolution_mm(self, distance_mm: np.ndarray | float) -> np.ndarray:
        """R_g = d (l_eff + b) / l_eff, FWHM mm at ``distance_mm`` from the collimator face."""
        leff = self.effective_length_mm
        return self.hole_diameter_mm * (leff + np.asarray(distance_mm, dtype=np.float64)) / leff

    @property
    def efficiency(self) -> float:
        """Geometric efficiency of a hexagonal-hole collimator (Cherry, Sorenson & Phelps 14-6)."""
        d, t, leff = self.hole_diameter_mm, self.septa_mm, self.effective_length_mm
        k = 0.26
        return (k * d / leff) ** 2 * (d / (d + t)) ** 2


@dataclass(frozen=True)
class SpectGeometry:
    """Gamma-camera heads rotating about z; angles in degrees, counter-clockwise from +x."""

    n_heads: int
    columns: int
    rows: int
    pixel_mm: float
    radius_of_rotation_mm: float
    """Distance from the axis to the collimator face."""
    head_start_deg: tuple[float, ...]
    views_per_head: int
    arc_deg: float
    collimator: Collimator

    def view_angles_deg(self, head: int) -> np.ndarray:
        """Gantry angle (deg) of ``head`` at each view (step-and-shoot)."""
        step = self.arc_deg / self.views_per_head
        return self.head_start_deg[head] + step * np.arange(self.views_per_head)


@dataclass(frozen=True, eq=False)
class Scanner:
    """A scanner model. Arrays are indexed by global crystal index; lengths in mm."""

    name: str
    description: str
    kind: str
    """``pet`` or ``spect``."""
    crystal_centres: np.ndarray
    """(N, 3) float64, mm: the centre of each crystal (SPECT: at gantry angle 0)."""
    crystal_normals: np.ndarray
    """(N, 3) float64 unit vectors pointing from the crystal towards the axis."""
    crystal_tangents: np.ndarray
    """(N, 3) float64 unit vectors along the crystal's transaxial face direction."""
    crystal_size_mm: tuple[float, float, float]
    """(transaxial, axial, depth) of one crystal."""
    crystal_module: np.ndarray
    """(N,) int32: module (sector) around the ring; SPECT: head."""
    crystal_module_ring: np.ndarray
    """(N,) int32: axial module ring."""
    crystal_ring: np.ndarray
    """(N,) int32: axial crystal row."""
    crystal_board: np.ndarray
    """(N,) int32: the digitizer board reading the crystal."""
    crystal_channel: np.ndarray
    """(N,) int32: the channel of the crystal on its board."""
    n_modules: int
    """Modules (sectors) around the ring; SPECT: heads."""
    n_module_rings: int
    n_rings: int
    crystals_per_ring: int
    ring_radius_mm: float
    """PET: axis to the crystals' front face. SPECT: axis to the collimator face."""
    axial_fov_mm: float
    transaxial_fov_mm: float
    """Diameter of the imaged field of view (mm); the default reconstruction grid covers it."""
    material: Material
    response: DetectorResponse
    digitizer: Digitizer
    acquisition: dict[str, Any]
    """Default acquisition settings: energy window (keV), coincidence window and delay (ps),
    minimum sector difference (the last three PET only)."""
    spect: SpectGeometry | None = None
    source: str = ""
    """Where the definition came from (file path)."""
    digest: str = ""
    """SHA-256 of the definition file: identifies the model for caches and energy calibrations.
    The ``[quantification]`` table is left out: it is a calibration result, not part of the
    model, and measuring it again must not orphan the stored gain tables or cached images; so is
    the ``[reconstruction]`` table, a preference of the images, not of the model."""
    alike_digest: str = ""
    """SHA-256 of the model with every crystal alike and accepting every interaction: the
    definition as read (comments and layout do not count) less its name, description,
    ``[crystals]``, ``[response] crystal_efficiency``, ``[quantification]`` and
    ``[reconstruction]`` (:func:`alike_digest`). A lab's copy of a built-in definition, renamed
    and with its own crystals, has the built-in's: what is emulated of the model (the
    normalization's geometric factors) is the same for both."""
    channel_map: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int32))
    """(n_boards, max_channel + 1) int32: global crystal of (board, channel), -1 where none."""
    readout_map: Path | None = None
    """``[readout] map``: the ``board,channel,crystal`` CSV (:mod:`hw.channelmap`) through which
    other digitizers' channels (a lab's CAEN boards, PETsys ASICs) reach these crystals, when
    ``--map`` is not given; ``channel_map`` above is our own boards' wiring. None: none named."""
    counts_per_annihilation: float = 1.0
    """PET cross-calibration, ``[quantification] counts_per_annihilation``: reconstructed counts
    per true annihilation, which :func:`recon.quant.activity_concentration` divides out to give
    Bq/mL (measured by ``python -m recon.calibration.crosscal``; 1.0, the system model as is, when the file
    has none)."""
    scatter_corrected_counts_per_annihilation: float | None = None
    """The PET cross-calibration with scatter correction (``python -m recon.calibration.crosscal
    --scatter``), which scatter-corrected images are quantified with; None when not measured."""
    singles_dead_time_ns: float | None = None
    """PET: a module's effective dead time per measured single (ns), ``[quantification]
    singles_dead_time_ns`` (:mod:`hw.deadtime`, fitted by ``python -m recon.deadtime``); None:
    no dead-time correction."""
    calibration_dead_time_factor: float = 1.0
    """The dead-time correction factor of the cross-calibration's acquisitions, which its counts
    per annihilation include (:mod:`hw.deadtime`): an image is corrected by its own factor over
    this one."""
    default_voxel_mm: float = 2.0
    """PET: the voxel (mm) of a run's image by default (``petdaq recon``, ``petdaq run``'s
    final image), ``[reconstruction] voxel_mm``; 2.0 when the file has none. SPECT images use the
    detector pixel."""
    crystals: CrystalSpread = field(default_factory=CrystalSpread)
    """The crystals' non-uniformity, ``[crystals]`` (:mod:`hw.crystals`): the unit's truth, drawn
    once from its seed; every crystal alike when the file has no such table."""
    faults: Faults = field(default_factory=Faults)
    """Faults injected into an emulated unit (:mod:`hw.faults`, ``--faults``): part of its truth,
    not of its definition (the digest is the healthy unit's)."""
    spect_cps_per_mbq: dict[str, float] = field(default_factory=dict)
    """SPECT planar sensitivity per head (counts per second per MBq in a photopeak window, TEW
    scatter removed), ``[quantification.spect_cps_per_mbq]``, keyed by
    :func:`sensitivity_key` (e.g. ``"Lu-177 208 keV"``); measured by ``petdaq sensitivity``."""

    @property
    def n_crystals(self) -> int:
        """Number of crystals (SPECT: detector pixels of all heads)."""
        return int(self.crystal_centres.shape[0])

    @property
    def n_boards(self) -> int:
        return self.digitizer.n_boards

    def crystal_gains(self) -> np.ndarray:
        """The true relative gain of every channel (mean 1), fixed by the digitizer's gain seed.

        This is the unit's physical non-uniformity that energy calibration must measure.
        """
        rng = np.random.default_rng(self.digitizer.gain_seed)
        g = 1.0 + self.digitizer.gain_spread * rng.standard_normal(self.n_crystals)
        g = np.clip(g, 0.5, 1.5)
        for module, factor in self.faults.gain:
            g[self.crystal_module == module] *= factor
        return g

    def crystal_acceptance(self) -> np.ndarray:
        """Probability that each crystal's electronics accept an interaction (0: dead channel):
        ``[response] crystal_efficiency`` spread by ``[crystals]``; what the emulator detects
        with."""
        n = self.n_crystals
        if self.kind != "pet":
            profile = np.ones(n)
        else:
            ct = self.crystals_per_ring // self.n_modules
            ca = self.n_rings // self.n_module_rings
            index = np.arange(n)
            profile = _crystals_mod.block_profile(
                self.crystals, (index % self.crystals_per_ring) % ct, self.crystal_ring % ca,
                (ct, ca))
        p = _crystals_mod.acceptance(self.crystals, profile, self.response.crystal_efficiency)
        for module, factor in self.faults.efficiency:
            p[self.crystal_module == module] *= factor
        p[list(self.faults.dead)] = 0.0
        return p

    def noisy_channels(self) -> tuple[tuple[int, float], ...]:
        """(crystal, noise triggers per second) of the channels that trigger on their own:
        ``[crystals] noisy`` and the injected faults'."""
        return self.crystals.noisy + self.faults.noisy

    def crystal_time_offset_ps(self) -> np.ndarray:
        """(N,) int64 ps each crystal's singles are late by (an injected board or module skew; 0
        on a healthy unit)."""
        offset = np.zeros(self.n_crystals, np.int64)
        for board, ps in self.faults.skew:
            offset[self.crystal_board == board] += round(ps)
        for module, ps in self.faults.module_skew:
            offset[self.crystal_module == module] += round(ps)
        return offset

    def fault_counts(self) -> dict[str, int]:
        """How many crystals, modules and boards a fault file may name."""
        return {"crystal": self.n_crystals, "module": int(self.crystal_module.max()) + 1,
                "board": self.n_boards}

    def crystal_fwhm_scale(self) -> np.ndarray:
        """Each crystal's energy resolution over the scanner's (``[crystals]``, and an injected
        fault's)."""
        scale = _crystals_mod.fwhm_scale(self.crystals, self.n_crystals)
        for module, factor in self.faults.resolution:
            scale[self.crystal_module == module] *= factor
        return scale

    def crystal_jitter_scale(self) -> np.ndarray:
        """Each crystal's time jitter over the scanner's (``[crystals]``)."""
        return _crystals_mod.jitter_scale(self.crystals, self.n_crystals)

    def crystal_efficiencies(self) -> np.ndarray:
        """The true relative efficiency of each crystal: its whole detection efficiency for
        511 keV photons inside the energy window (what its energy resolution moves out of the
        window included), mean 1 over the live crystals, 0 for a dead one.

        Like :meth:`crystal_gains`, the truth that a normalization is compared with, never read
        by the reconstruction."""
        fwhm = self.response.fwhm_kev(511.0) * self.crystal_fwhm_scale()
        window = self.acquisition["energy_window_kev"]
        return _crystals_mod.relative_efficiencies(
            self.crystal_acceptance(), _crystals_mod.window_fraction(fwhm, window))

    def sector_difference(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Circular module difference between crystals ``a`` and ``b`` (0..n_modules//2)."""
        d = np.abs(self.crystal_module[a] - self.crystal_module[b])
        return np.minimum(d, self.n_modules - d)

    def _spread_line(self) -> str:
        """How the crystals differ (``[crystals]``), in one line."""
        c = self.crystals
        if c.uniform:
            return "no: every crystal alike"
        return (f"efficiency {100 * c.efficiency_spread:g} % log-normal, edges "
                f"{c.edge_efficiency:g}, corners {c.corner_efficiency:g}; energy and time "
                f"resolution {100 * c.energy_resolution_spread:g} % and "
                f"{100 * c.time_resolution_spread:g} %; {len(c.dead)} dead, "
                f"{len(c.noisy)} noisy")

    def summary(self) -> str:
        """A few human-readable lines: geometry, crystal count and detector figures."""
        r, d = self.response, self.digitizer
        lines = [
            f"{self.name}: {self.description}",
            f"  kind               {self.kind.upper()}",
            f"  crystals           {self.n_crystals} {self.material.name} "
            f"{self.crystal_size_mm[0]:g} x {self.crystal_size_mm[1]:g} x "
            f"{self.crystal_size_mm[2]:g} mm",
        ]
        if self.kind == "pet":
            lines += [
                f"  ring               {2 * self.ring_radius_mm:.1f} mm diameter, "
                f"{self.axial_fov_mm:.1f} mm axial, {self.n_rings} crystal rings x "
                f"{self.crystals_per_ring} crystals",
                f"  modules            {self.n_modules} sectors x {self.n_module_rings} rings",
                f"  CTR                {r.ctr_ps:g} ps FWHM",
                f"  Lu-176             {self.material.lu176_bq_per_cm3:g} Bq/cm3",
                f"  crystals differ    {self._spread_line()}",
            ]
        else:
            s = self.spect
            assert s is not None
            lines += [
                f"  heads              {s.n_heads} x {s.columns} x {s.rows} pixels of "
                f"{s.pixel_mm:g} mm, radius of rotation {s.radius_of_rotation_mm:g} mm",
                f"  collimator         hole {s.collimator.hole_diameter_mm:g} mm, length "
                f"{s.collimator.hole_length_mm:g} mm, R_g at 100 mm "
                f"{float(s.collimator.geometric_resolution_mm(100.0)):.1f} mm",
                f"  views              {s.views_per_head} per head over {s.arc_deg:g} deg",
            ]
        lines += [
            f"  energy resolution  {100 * r.energy_resolution:.1f} % FWHM at {r.energy_ref_kev:g} keV",
            f"  dead time          {r.dead_time_ns:g} ns {r.dead_time_kind} per module; "
            f"integration {r.integration_time_ns:g} ns",
            f"  digitizer          {d.n_boards} boards, {d.clock_mhz:g} MHz clock, "
            f"{d.tdc_bits}-bit TDC ({d.tdc_lsb_ps:.2f} ps), {d.counter_bits}-bit counter, "
            f"{d.adc_bits}-bit ADC",
        ]
        return "\n".join(lines)


# --------------------------------------------------------------------------- loading


#: The folder of the built-in scanner definitions.
BUILTIN_DIR = Path(str(resources.files("hw") / "scanners"))


def builtin_scanners() -> list[str]:
    """Names of the scanner definitions shipped under ``hw/scanners``."""
    folder = resources.files("hw") / "scanners"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_scanner(name_or_path: str | Path = "bedside-brain") -> Scanner:
    """Load a built-in scanner by name, or a scanner definition from a TOML file path.

    Raises :class:`infra.errors.ScannerError` with a one-line message naming the unknown name or the
    offending key.
    """
    text, source = _read_definition(str(name_or_path))
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScannerError(f"scanner file {source}: not valid TOML ({exc})") from None
    return _build(data, source, definition_digest(text))


#: The ``[quantification]`` and ``[reconstruction]`` tables, each with the blank lines before
#: it, up to the next table.
_NOT_MODEL = re.compile(r"(?:^[ \t]*\n)*^\[(?:quantification|reconstruction)(?:\.[^\]\n]*)?\]"
                        r"[^\n]*(?:\n|$)(?:(?![ \t]*\[)[^\n]*(?:\n|$))*", re.MULTILINE)


def definition_digest(text: str) -> str:
    """:attr:`Scanner.digest` of a definition's text: SHA-256 of it without its
    ``[quantification]`` and ``[reconstruction]`` tables and sub-tables."""
    return hashlib.sha256(_NOT_MODEL.sub("", text).encode()).hexdigest()


#: The top-level keys and tables :func:`alike_digest` leaves out: what names or calibrates a
#: unit, and what makes its crystals differ.
NOT_ALIKE = ("name", "description", "crystals", "quantification", "reconstruction")


def alike_digest(data: dict[str, Any]) -> str:
    """:attr:`Scanner.alike_digest` of a definition as read (its TOML tables): SHA-256 of their
    canonical JSON less :data:`NOT_ALIKE` and ``[response] crystal_efficiency``."""
    model = {key: value for key, value in data.items() if key not in NOT_ALIKE}
    if isinstance(model.get("response"), dict):
        model["response"] = {key: value for key, value in model["response"].items()
                             if key != "crystal_efficiency"}
    text = json.dumps(model, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _read_definition(name: str) -> tuple[str, str]:
    looks_like_path = name.endswith(".toml") or "/" in name or "\\" in name
    if looks_like_path:
        path = Path(name)
        if not path.is_file():
            raise ScannerError(f"scanner file {name} does not exist")
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except UnicodeDecodeError:
            raise ScannerError(f"scanner file {name} is not text (a TOML definition is "
                               "UTF-8 text)") from None
        except OSError as exc:
            raise ScannerError(f"cannot read scanner file {name}: {exc.strerror}") from None
    known = builtin_scanners()
    if name not in known:
        raise ScannerError(
            f"unknown scanner '{name}': built-in scanners are {', '.join(known)} "
            "(or give the path of a .toml definition)"
        )
    res = resources.files("hw") / "scanners" / f"{name}.toml"
    return res.read_text(), str(res)


class _Keys:
    """Typed access to a TOML table that names the key in every error."""

    def __init__(self, data: dict[str, Any], source: str, prefix: str = "") -> None:
        self.data, self.source, self.prefix = data, source, prefix

    def _fail(self, key: str, problem: str) -> ScannerError:
        return ScannerError(f"scanner file {self.source}: key '{self.prefix}{key}' {problem}")

    def table(self, key: str) -> _Keys:
        value = self.data.get(key)
        if not isinstance(value, dict):
            raise self._fail(key, "is missing" if value is None else "must be a table")
        return _Keys(value, self.source, f"{self.prefix}{key}.")

    def has(self, key: str) -> bool:
        return key in self.data

    def number(self, key: str, *, positive: bool = True, default: float | None = None) -> float:
        value = self.data.get(key, default)
        if value is None:
            raise self._fail(key, "is missing")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(key, f"must be a number, got {value!r}")
        if positive and not value > 0:
            raise self._fail(key, f"must be > 0, got {value!r}")
        if not positive and value < 0:
            raise self._fail(key, f"must be >= 0, got {value!r}")
        return float(value)

    def integer(self, key: str, *, low: int = 1, high: int | None = None,
                default: int | None = None) -> int:
        value = self.data.get(key, default)
        if value is None:
            raise self._fail(key, "is missing")
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, f"must be an integer, got {value!r}")
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f">= {low}"
            raise self._fail(key, f"must be {bound}, got {value}")
        return value

    def text(self, key: str, choices: tuple[str, ...] | None = None, default: str | None = None
             ) -> str:
        value = self.data.get(key, default)
        if not isinstance(value, str):
            raise self._fail(key, "is missing" if value is None else f"must be a string, got {value!r}")
        if choices is not None and value not in choices:
            raise self._fail(key, f"must be one of {', '.join(choices)}, got '{value}'")
        return value

    def numbers(self, key: str, length: int | None = None) -> list[float]:
        value = self.data.get(key)
        if value is None:
            raise self._fail(key, "is missing")
        ok = isinstance(value, list) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value
        )
        if not ok or (length is not None and len(value) != length):
            shape = f"{length} numbers" if length is not None else "a list of numbers"
            raise self._fail(key, f"must be {shape}, got {value!r}")
        return [float(v) for v in value]


def _build(data: dict[str, Any], source: str, digest: str) -> Scanner:
    top = _Keys(data, source)
    kind = top.text("kind", ("pet", "spect"))
    mat = _material(top.table("material"))
    resp = top.table("response")
    response = DetectorResponse(
        energy_resolution=resp.number("energy_resolution"),
        energy_ref_kev=resp.number("energy_ref_kev"),
        ctr_ps=resp.number("ctr_ps"),
        dead_time_ns=resp.number("dead_time_ns", positive=False),
        dead_time_kind=resp.text("dead_time_kind", ("paralysable", "nonparalysable")),
        integration_time_ns=resp.number("integration_time_ns", positive=False),
        crystal_efficiency=resp.number("crystal_efficiency"),
    )
    dig = top.table("digitizer")
    digitizer = Digitizer(
        n_boards=dig.integer("boards", high=64),
        clock_mhz=dig.number("clock_mhz"),
        tdc_bits=dig.integer("tdc_bits", low=0, high=8),
        counter_bits=dig.integer("counter_bits", low=16, high=32),
        adc_bits=dig.integer("adc_bits", low=8, high=12),
        kev_per_adc_code=dig.number("kev_per_adc_code"),
        gain_spread=dig.number("gain_spread", positive=False),
        gain_seed=dig.integer("gain_seed", low=0),
    )
    acq = top.table("acquisition")
    acquisition: dict[str, Any] = {"energy_window_kev": tuple(acq.numbers("energy_window_kev", 2))}
    if kind == "pet":
        acquisition |= {
            "coincidence_window_ps": int(acq.number("coincidence_window_ps")),
            "delay_ps": int(acq.number("delay_ps")),
            "min_sector_difference": acq.integer("min_sector_difference", low=0),
        }
    lo, hi = acquisition["energy_window_kev"]
    if not lo < hi:
        raise acq._fail("energy_window_kev", f"must be [low, high] with low < high, got {[lo, hi]}")
    geo = top.table("geometry")
    common = dict(
        name=top.text("name"), description=top.text("description", default=""), kind=kind,
        material=mat, response=response, digitizer=digitizer, acquisition=acquisition,
        source=source, digest=digest, alike_digest=alike_digest(data),
        readout_map=_readout_map(top), **_quantification(top), **_reconstruction(top, kind),
        crystals=_crystal_spread(top),
    )
    if kind == "pet":
        scanner = _ring(geo, digitizer, common)
    else:
        scanner = _heads(geo, top.table("collimator"), digitizer, common)
    max_ch = 1 << 12
    if scanner.crystal_channel.max() >= max_ch:
        raise dig._fail("boards", f"gives {scanner.crystal_channel.max() + 1} channels per board; "
                        f"the wire format carries at most {max_ch}: use more boards")
    if kind != "pet" and not scanner.crystals.uniform:
        raise ScannerError(f"scanner file {source}: [crystals] is for PET rings (a camera head's "
                           "pixels are not crystals of their own)")
    listed = [*scanner.crystals.dead, *(c for c, _ in scanner.crystals.noisy)]
    if listed and max(listed) >= scanner.n_crystals:
        raise ScannerError(f"scanner file {source}: [crystals] names crystal {max(listed)}; the "
                           f"scanner has {scanner.n_crystals} (0 to {scanner.n_crystals - 1})")
    return scanner


def _readout_map(top: _Keys) -> Path | None:
    """The optional ``[readout] map``, a path relative to the definition's folder."""
    if not top.has("readout"):
        return None
    readout = top.table("readout")
    name = Path(readout.text("map"))
    path = name if name.is_absolute() else Path(top.source).parent / name
    if not path.is_file():
        raise readout._fail("map", f"names {path}, which does not exist")
    return path


def _material(m: _Keys) -> Material:
    energies = m.numbers("energies_kev")
    mu = m.numbers("mu_per_mm", len(energies))
    pf = m.numbers("photofraction", len(energies))
    if sorted(energies) != energies or any(v <= 0 for v in mu + energies):
        raise m._fail("energies_kev", "must be increasing and positive, with positive mu_per_mm")
    return Material(
        name=m.text("name"), density_g_cm3=m.number("density_g_cm3"),
        energies_kev=np.array(energies), mu_per_mm=np.array(mu), photofraction=np.array(pf),
        lu176_bq_per_cm3=m.number("lu176_bq_per_cm3", positive=False, default=0.0),
    )


def _channel_map(board: np.ndarray, channel: np.ndarray, n_boards: int) -> np.ndarray:
    cmap = np.full((n_boards, int(channel.max()) + 1), -1, np.int32)
    cmap[board, channel] = np.arange(board.size, dtype=np.int32)
    return cmap


def sensitivity_key(nuclide: str, photopeak_kev: float) -> str:
    """The key of a SPECT sensitivity: ``"Lu-177 208 keV"``."""
    return f"{nuclide} {photopeak_kev:.0f} keV"


def _quantification(top: _Keys) -> dict[str, Any]:
    """The optional ``[quantification]`` table: ``counts_per_annihilation`` (default 1.0),
    ``scatter_corrected_counts_per_annihilation``, ``singles_dead_time_ns``,
    ``calibration_dead_time_factor`` and the sub-table ``spect_cps_per_mbq``."""
    if not top.has("quantification"):
        return {}
    q = top.table("quantification")
    found: dict[str, Any] = {}
    for key in ("counts_per_annihilation", "scatter_corrected_counts_per_annihilation"):
        if q.has(key):
            found[key] = _finite(q, key, "reconstructed counts per true annihilation")
    if q.has("singles_dead_time_ns"):
        found["singles_dead_time_ns"] = _finite(q, "singles_dead_time_ns", "ns")
    if q.has("calibration_dead_time_factor"):
        found["calibration_dead_time_factor"] = _finite(q, "calibration_dead_time_factor",
                                                        "a factor")
    if q.has("spect_cps_per_mbq"):
        table = q.table("spect_cps_per_mbq")
        found["spect_cps_per_mbq"] = {str(k): _finite(table, k, "cps/MBq") for k in table.data}
    return found


def _crystal_spread(top: _Keys) -> CrystalSpread:
    """The optional ``[crystals]`` table (:class:`hw.crystals.CrystalSpread`)."""
    if not top.has("crystals"):
        return CrystalSpread()
    t = top.table("crystals")
    known = {"efficiency_spread", "edge_efficiency", "corner_efficiency",
             "energy_resolution_spread", "time_resolution_spread", "dead", "noisy", "seed"}
    for key in t.data:
        if key not in known:
            raise t._fail(key, f"is not a [crystals] key (known: {', '.join(sorted(known))})")
    spread = {k: t.number(k, positive=False, default=0.0) for k in (
        "efficiency_spread", "energy_resolution_spread", "time_resolution_spread")}
    for k in ("edge_efficiency", "corner_efficiency"):
        spread[k] = t.number(k, default=1.0)
        if spread[k] > 1:
            raise t._fail(k, f"must be between 0 and 1 (relative to a module's inner crystals), "
                          f"got {spread[k]!r}")
    dead = t.data.get("dead", [])
    if not isinstance(dead, list) or not all(isinstance(c, int) and not isinstance(c, bool)
                                             and c >= 0 for c in dead):
        raise t._fail("dead", f"must be a list of crystal numbers, got {dead!r}")
    noisy = t.data.get("noisy", [])
    pairs = []
    for entry in noisy if isinstance(noisy, list) else [None]:
        ok = isinstance(entry, dict) and set(entry) == {"crystal", "rate_cps"}
        c, r = (entry.get("crystal"), entry.get("rate_cps")) if ok else (None, None)
        if not (isinstance(c, int) and c >= 0 and isinstance(r, int | float) and r > 0):
            raise t._fail("noisy", "must be a list of {crystal = N, rate_cps = R > 0}, got "
                          f"{noisy!r}")
        pairs.append((c, float(r)))
    return CrystalSpread(**spread, dead=tuple(dead), noisy=tuple(pairs),
                         seed=t.integer("seed", low=0, default=0))


def _reconstruction(top: _Keys, kind: str) -> dict[str, Any]:
    """The optional ``[reconstruction]`` table: ``voxel_mm``, a PET run's image voxel."""
    if not top.has("reconstruction"):
        return {}
    r = top.table("reconstruction")
    if not r.has("voxel_mm"):
        return {}
    if kind != "pet":
        raise r._fail("voxel_mm", "is for PET scanners (SPECT images use the detector pixel)")
    return {"default_voxel_mm": _finite(r, "voxel_mm", "mm")}


def _finite(table: _Keys, key: str, unit: str) -> float:
    value = table.number(key)
    if not math.isfinite(value):
        raise table._fail(key, f"must be a finite number > 0 ({unit}), got {value!r}")
    return value


def _ring(geo: _Keys, digitizer: Digitizer, common: dict[str, Any]) -> Scanner:
    n_mod = geo.integer("modules_per_ring", low=3)
    n_mod_rings = geo.integer("module_rings")
    ct, ca = (int(v) for v in geo.numbers("crystals_per_module", 2))
    pitch_t, pitch_a = geo.numbers("crystal_pitch_mm", 2)
    size = tuple(geo.numbers("crystal_size_mm", 3))
    radius = geo.number("ring_radius_mm")
    gap = geo.number("module_ring_gap_mm", positive=False, default=0.0)
    if ct < 1 or ca < 1:
        raise geo._fail("crystals_per_module", "must be two positive integers")
    half_face = ct * pitch_t / 2
    if half_face > radius * np.tan(np.pi / n_mod) + 1e-6:
        raise geo._fail("ring_radius_mm", f"is too small for {n_mod} modules of "
                        f"{2 * half_face:.1f} mm: they would overlap")
    if n_mod % digitizer.n_boards:
        raise ScannerError(f"scanner file {common['source']}: key 'digitizer.boards' must divide "
                           f"geometry.modules_per_ring ({n_mod}), got {digitizer.n_boards}")
    n_rings = n_mod_rings * ca
    per_ring = n_mod * ct
    ring = np.repeat(np.arange(n_rings), per_ring)
    tang = np.tile(np.arange(per_ring), n_rings)
    module = tang // ct
    local = tang % ct
    phi = 2 * np.pi * module / n_mod
    radial = np.stack([np.cos(phi), np.sin(phi), np.zeros_like(phi)], axis=1)
    tangent = np.stack([-np.sin(phi), np.cos(phi), np.zeros_like(phi)], axis=1)
    offset_t = (local - (ct - 1) / 2) * pitch_t
    module_ring = ring // ca
    axial_len = n_mod_rings * ca * pitch_a + (n_mod_rings - 1) * gap
    z = -axial_len / 2 + module_ring * (ca * pitch_a + gap) + (ring % ca + 0.5) * pitch_a
    depth_centre = radius + size[2] / 2
    centres = radial * depth_centre + tangent * offset_t[:, None]
    centres[:, 2] = z
    mods_per_board = n_mod // digitizer.n_boards
    board = module // mods_per_board
    board_tang = tang - board * mods_per_board * ct
    channel = ring * (mods_per_board * ct) + board_tang
    return Scanner(
        crystal_centres=centres, crystal_normals=-radial, crystal_tangents=tangent,
        crystal_size_mm=size, crystal_module=module.astype(np.int32),
        crystal_module_ring=module_ring.astype(np.int32), crystal_ring=ring.astype(np.int32),
        crystal_board=board.astype(np.int32), crystal_channel=channel.astype(np.int32),
        n_modules=n_mod, n_module_rings=n_mod_rings, n_rings=n_rings, crystals_per_ring=per_ring,
        ring_radius_mm=radius, axial_fov_mm=axial_len,
        transaxial_fov_mm=geo.number("transaxial_fov_mm", default=2 * radius * 0.9),
        channel_map=_channel_map(board, channel, digitizer.n_boards), **common,
    )


def _heads(geo: _Keys, col: _Keys, digitizer: Digitizer, common: dict[str, Any]) -> Scanner:
    n_heads = geo.integer("heads", high=4)
    columns, rows = (int(v) for v in geo.numbers("head_pixels", 2))
    pixel = geo.number("pixel_mm")
    thickness = geo.number("crystal_thickness_mm")
    ror = geo.number("radius_of_rotation_mm")
    starts = tuple(geo.numbers("head_start_deg", n_heads))
    collimator = Collimator(
        hole_diameter_mm=col.number("hole_diameter_mm"), hole_length_mm=col.number("hole_length_mm"),
        septa_mm=col.number("septa_mm"), mu_lead_per_mm=col.number("mu_lead_per_mm"),
    )
    spect = SpectGeometry(
        n_heads=n_heads, columns=columns, rows=rows, pixel_mm=pixel, radius_of_rotation_mm=ror,
        head_start_deg=starts, views_per_head=geo.integer("views_per_head"),
        arc_deg=geo.number("arc_deg"), collimator=collimator,
    )
    if digitizer.n_boards != n_heads:
        raise ScannerError(f"scanner file {common['source']}: key 'digitizer.boards' must equal "
                           f"geometry.heads ({n_heads}) for SPECT, got {digitizer.n_boards}")
    n_pix = columns * rows
    idx = np.arange(n_heads * n_pix)
    head = idx // n_pix
    row = (idx % n_pix) // columns
    column = idx % columns
    phi = np.deg2rad(np.asarray(starts))[head]
    radial = np.stack([np.cos(phi), np.sin(phi), np.zeros_like(phi)], axis=1)
    tangent = np.stack([-np.sin(phi), np.cos(phi), np.zeros_like(phi)], axis=1)
    depth_centre = ror + collimator.hole_length_mm + thickness / 2
    centres = radial * depth_centre + tangent * ((column - (columns - 1) / 2) * pixel)[:, None]
    centres[:, 2] = (row - (rows - 1) / 2) * pixel
    return Scanner(
        crystal_centres=centres, crystal_normals=-radial, crystal_tangents=tangent,
        crystal_size_mm=(pixel, pixel, thickness), crystal_module=head.astype(np.int32),
        crystal_module_ring=np.zeros(idx.size, np.int32), crystal_ring=row.astype(np.int32),
        crystal_board=head.astype(np.int32), crystal_channel=(idx % n_pix).astype(np.int32),
        n_modules=n_heads, n_module_rings=1, n_rings=rows, crystals_per_ring=columns * n_heads,
        ring_radius_mm=ror, axial_fov_mm=rows * pixel, transaxial_fov_mm=columns * pixel,
        spect=spect,
        channel_map=_channel_map(head, idx % n_pix, n_heads), **common,
    )
