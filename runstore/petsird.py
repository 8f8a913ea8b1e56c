"""PETSIRD export of a run's list-mode coincidences (``petdaq export RUN --petsird FILE``).

PETSIRD is the ETSI standard for PET raw data (PyPI ``petsird``, written for version 0.12). The file
holds a header (scanner geometry, energy and TOF binning, resolutions, policies, exam) and a stream
of event time blocks with prompt and delayed coincidences as detection-bin pairs and a TOF bin.

**Crystal mapping.** One module type. A module is one sector of one module ring; its detecting
elements are its crystals. For a global crystal ``c = ring * crystals_per_ring + tang``
(:mod:`hw.scanner` numbering), with ``ct = crystals_per_ring // n_modules`` and
``ca = n_rings // n_module_rings`` crystals per module transaxially and axially::

    sector        = tang // ct                              (scanner.crystal_module)
    module_ring   = ring // ca                              (scanner.crystal_module_ring)
    module_index  = module_ring * n_modules + sector
    element_index = (ring - module_ring * ca) * ct + (tang - sector * ct)
    detection_bin = energy_index + (element_index + module_index * ct * ca) * n_energy_bins

**Geometry (mm).** Module frame: x radial outward (crystal depth), y along the crystal's tangent,
z axial; its origin is on the scanner axis at the module's axial centre. A module's transform is
the rotation with columns (radial, tangent, z) and the translation (0, 0, z_module); an element's
transform translates to its crystal centre in that frame; the detecting box is one crystal
(depth x transaxial x axial) centred on the element's origin. Module transform @ element
transform @ box centre reproduces ``scanner.crystal_centres`` (checked on every export).

**TOF sign.** PETSIRD stores, for an event listed as (bin1, bin2), (t1 - t2) c/2 in mm (negative:
the first-listed detector was hit first) and requires bin1 >= bin2. Our ``dt = t_b - t_a >= 0``
(``crystal_a`` the earlier single), so an event is written as (bin_a, bin_b) with -dt c/2 when
bin_a >= bin_b, else as (bin_b, bin_a) with +dt c/2. Delayeds use their ``dt`` after the delay is
subtracted, encoded the same way. TOF bins: equal width (default CTR/5 rounded to even ps), an odd
number of them so that 0 is a bin centre, covering the coincidence window on both sides.

**Time.** Event time blocks of ``block_ms`` (default 1 ms, the only time information PETSIRD
keeps for coincidences), every block from 0 to the last event's, empty ones included, each
coincidence in the block of its ``t`` (the earlier single, as PETSIRD suggests).

**Encoding.** The header is written by petsird's ``BinaryPETSIRDWriter``. Detection bins, TOF
bins and the time blocks are computed and encoded by numba kernels over whole arrays, in yardl's
compact binary encoding (https://microsoft.github.io/yardl/reference/binary.html: LEB128 varints,
length-prefixed vectors, a one-byte union tag, a stream as batches of (count, items) ended by a
zero count), because the petsird API serialises one Python object per event (about 1e5 events/s
here, against about 1e7 for the kernels). The tests check that the kernels' bytes are identical to
what the writer produces from the same ``petsird`` objects. Memory: the whole list-mode file is
read (29 bytes per coincidence) plus about 28 bytes per coincidence of work arrays.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numba
import numpy as np
import petsird

from hw.scanner import SPEED_OF_LIGHT_MM_PER_PS, Scanner
from infra.atomic import replacing
from infra.errors import ScannerError, UserError
from runstore.listmode import read_listmode
from runstore.rundir import RunDir

PS_PER_MS = 1_000_000_000
UINT32_MAX = 2**32 - 1
#: Geometry check tolerance: written crystal centres vs the scanner model (mm).
GEOMETRY_TOLERANCE_MM = 1e-3
#: Bound on the events encoded per stream batch (keeps the byte buffer small).
BATCH_EVENTS = 1 << 22
BATCH_BLOCKS = 1 << 16

#: Our sorter policies (GATE names) as PETSIRD coincidence policies.
_POLICIES = {
    "takeAllGoods": petsird.CoincidencePolicy.MULTIPLES_AS_ALL_COINCIDENCES,
    "killAll": petsird.CoincidencePolicy.REJECT_HIGHER_MULTIPLES,
}


def export_petsird(run: RunDir, scanner: Scanner, path: Path, *, block_ms: int = 1,
                   tof_bin_ps: int | None = None, energy_bins: int = 1) -> int:
    """Write ``run``'s list-mode coincidences to ``path`` as PETSIRD binary; returns the prompts.

    ``block_ms``: event time block length (ms). ``tof_bin_ps``: TOF bin width (ps; default the
    scanner's CTR / 5 rounded to an even number). ``energy_bins``: equal-width energy bins across
    the run's energy window (keV). The file is written to a temporary name and renamed, so a
    failed export leaves no partial file.
    """
    if scanner.kind != "pet":
        raise UserError(f"PETSIRD export is for PET runs; scanner {scanner.name} is "
                        f"{scanner.kind.upper()}")
    if block_ms < 1 or energy_bins < 1 or (tof_bin_ps is not None and tof_bin_ps < 1):
        raise UserError(f"block_ms, energy_bins and tof_bin_ps must be >= 1, got {block_ms}, "
                        f"{energy_bins}, {tof_bin_ps}")
    coinc, header = read_listmode(run.listmode)
    if header.get("scanner", scanner.name) != scanner.name:
        raise UserError(f"{run.listmode} was written for scanner {header['scanner']}, "
                        f"not {scanner.name}")
    window_ps = int(_header_value(header, "window_ps", run))
    lo, hi = (float(v) for v in _header_value(header, "energy_window_kev", run))
    delay_ps = int(header.get("delay_ps", -1))
    bins = Binning(scanner, window_ps, (lo, hi), energy_bins,
                   tof_bin_ps or _default_tof_bin_ps(scanner))
    with_delayed = delay_ps >= 0 or bool(np.any(coinc["delayed"]))
    policy = _POLICIES.get(str(header.get("policy", "")), petsird.CoincidencePolicy.OTHER)
    info = scanner_information(scanner, bins, int(header.get("min_sector_difference", 0)),
                               policy, with_delayed)
    events = encode_events(coinc, scanner, bins, block_ms)
    prefix = _header_bytes(petsird.Header(scanner=info, exam=_exam(run)))
    path = Path(path)
    try:
        with replacing(path) as tmp, open(tmp, "wb") as fh:
            fh.write(prefix)
            for batch in _encoded_batches(events, block_ms, with_delayed):
                fh.write(batch)
            fh.write(b"\x00")  # end of the time-block stream
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    return int(np.count_nonzero(coinc["delayed"] == 0))


def _header_value(header: dict[str, Any], key: str, run: RunDir) -> Any:
    if key not in header:
        raise UserError(f"{run.listmode} has no '{key}' in its header: cannot export it")
    return header[key]


def _default_tof_bin_ps(scanner: Scanner) -> int:
    return max(2, 2 * round(scanner.response.ctr_ps / 10))


class Binning:
    """Energy bins (keV) and TOF bins (ps and mm) of the export."""

    def __init__(self, scanner: Scanner, window_ps: int, energy_window_kev: tuple[float, float],
                 energy_bins: int, tof_bin_ps: int) -> None:
        self.energy_edges_kev = np.linspace(*energy_window_kev, energy_bins + 1)
        self.tof_bin_ps = int(tof_bin_ps)
        half = max(0, int(np.ceil((window_ps - tof_bin_ps / 2) / tof_bin_ps)))
        self.n_tof = 2 * half + 1
        self.tof_edges_mm = ((np.arange(self.n_tof + 1) - self.n_tof / 2) * tof_bin_ps
                             * SPEED_OF_LIGHT_MM_PER_PS / 2)
        self.window_ps = window_ps
        self.ctr_mm = scanner.response.ctr_ps * SPEED_OF_LIGHT_MM_PER_PS / 2

    @property
    def n_energy(self) -> int:
        return self.energy_edges_kev.size - 1


# --------------------------------------------------------------------------- geometry


def crystal_module_element(scanner: Scanner) -> tuple[np.ndarray, np.ndarray]:
    """(module_index, element_index) of every global crystal (see the module docstring)."""
    ct = scanner.crystals_per_ring // scanner.n_modules
    ca = scanner.n_rings // scanner.n_module_rings
    tang = np.arange(scanner.n_crystals) % scanner.crystals_per_ring
    sector = scanner.crystal_module.astype(np.int64)
    module_ring = scanner.crystal_module_ring.astype(np.int64)
    module = module_ring * scanner.n_modules + sector
    element = (scanner.crystal_ring - module_ring * ca) * ct + (tang - sector * ct)
    return module, element.astype(np.int64)


def scanner_geometry(scanner: Scanner) -> petsird.ScannerGeometry:
    """One replicated module type whose crystal centres reproduce ``scanner.crystal_centres``."""
    module, element = crystal_module_element(scanner)
    n_mod = scanner.n_modules * scanner.n_module_rings
    n_el = scanner.n_crystals // n_mod
    slots = np.bincount(module * n_el + element, minlength=n_mod * n_el)
    if slots.size != n_mod * n_el or np.any(slots != 1):
        raise ScannerError(f"scanner {scanner.name}: crystals do not map one to one onto "
                           f"{n_mod} modules of {n_el} elements")
    first = np.unique(module, return_index=True)[1]  # a crystal of each module
    rot = np.stack([-scanner.crystal_normals[first], scanner.crystal_tangents[first],
                    np.broadcast_to([0.0, 0.0, 1.0], (n_mod, 3))], axis=2)  # columns x, y, z
    z_mod = np.zeros((n_mod, 3))
    z_mod[:, 2] = np.bincount(module, weights=scanner.crystal_centres[:, 2]) / n_el
    local = np.einsum("nji,nj->ni", rot[module], scanner.crystal_centres - z_mod[module])
    el_pos = np.zeros((n_el, 3))
    el_pos[element[module == 0]] = local[module == 0]
    rebuilt = np.einsum("nij,nj->ni", rot[module], el_pos[element]) + z_mod[module]
    err = float(np.abs(rebuilt - scanner.crystal_centres).max())
    if err > GEOMETRY_TOLERANCE_MM:
        raise ScannerError(f"scanner {scanner.name}: modules are not identical up to a rigid "
                           f"transform ({err:.3g} mm off), PETSIRD export needs one module type")
    elements = petsird.ReplicatedBoxSolidVolume(object=_crystal_box(scanner), transforms=[
        _transform(np.eye(3), p) for p in el_pos])
    det_module = petsird.DetectorModule(detecting_elements=elements)
    return petsird.ScannerGeometry(replicated_modules=[petsird.ReplicatedDetectorModule(
        object=det_module, transforms=[_transform(r, z) for r, z in zip(rot, z_mod, strict=True)])])


def _transform(rotation: np.ndarray, translation: np.ndarray) -> petsird.RigidTransformation:
    return petsird.RigidTransformation(
        matrix=np.hstack([rotation, np.asarray(translation)[:, None]]).astype(np.float32))


def _crystal_box(scanner: Scanner) -> petsird.BoxSolidVolume:
    """One crystal centred on the origin: x depth, y transaxial, z axial (mm)."""
    transaxial, axial, depth = scanner.crystal_size_mm
    h = np.array([depth, transaxial, axial]) / 2
    signs = [(-1, -1, -1), (-1, -1, 1), (-1, 1, 1), (-1, 1, -1),
             (1, -1, -1), (1, -1, 1), (1, 1, 1), (1, 1, -1)]
    corners = [petsird.Coordinate(c=(np.array(s) * h).astype(np.float32)) for s in signs]
    return petsird.BoxSolidVolume(shape=petsird.BoxShape(corners=corners), material_id=0)


# --------------------------------------------------------------------------- header


def scanner_information(scanner: Scanner, bins: Binning, min_sector_difference: int,
                        policy: petsird.CoincidencePolicy, with_delayed: bool
                        ) -> petsird.ScannerInformation:
    """Geometry, binning, resolutions, policies and the modules that can be in coincidence."""
    geometry = scanner_geometry(scanner)
    r = scanner.response
    return petsird.ScannerInformation(
        model_name=scanner.name,
        scanner_geometry=geometry,
        bulk_materials=[petsird.BulkMaterial(id=0, name=scanner.material.name,
                                             density=scanner.material.density_g_cm3)],
        collimator_type="NONE",
        tof_bin_edges=[[petsird.BinEdges(edges=bins.tof_edges_mm.astype(np.float32))]],
        tof_resolution=[[float(bins.ctr_mm)]],
        event_energy_bin_edges=[petsird.BinEdges(edges=bins.energy_edges_kev.astype(np.float32))],
        energy_resolution_at_511=[float(r.fwhm_kev(511.0)) / 511.0],
        single_event_policy=petsird.SingleEventPolicy.NONE,
        prompt_event_policy=policy,
        delayed_event_policy=policy if with_delayed else petsird.CoincidencePolicy.NONE,
        detection_efficiencies=_efficiencies(scanner, bins, min_sector_difference),
    )


def _efficiencies(scanner: Scanner, bins: Binning, min_sd: int) -> petsird.DetectionEfficiencies:
    """Uniform (unmeasured) efficiencies; module pairs the sorter cannot record get SGID -1."""
    n_mod = scanner.n_modules * scanner.n_module_rings
    per_module = scanner.n_crystals // n_mod * bins.n_energy
    sector = np.arange(n_mod) % scanner.n_modules
    d = np.abs(sector[:, None] - sector[None, :])
    sgid = np.where(np.minimum(d, scanner.n_modules - d) >= min_sd, 0, -1)
    lut = [sgid[m, : m + 1].tolist() for m in range(n_mod)]
    ones = [1.0] * per_module
    return petsird.DetectionEfficiencies(
        method_description=(
            "not measured: uniform detection-bin and module-pair efficiencies of 1, no absolute "
            f"calibration; module pairs less than {min_sd} sectors apart are not in coincidence "
            "(the sorter's minimum sector difference)"),
        calibration_factor=1.0,
        detection_bin_efficiencies=[[1.0] * (n_mod * per_module)],
        module_pair_sgidlut=[[lut]],
        module_pair_efficiencies_vectors=[[[petsird.ModulePairEfficiencies(
            values=[ones] * per_module, sgid=0)]]],
    )


def _exam(run: RunDir) -> petsird.ExamInformation:
    """What the run records: modality, start time, UIDs derived from the run's uid."""
    start = run.start
    exam = petsird.ExamInformation(modality="PT")
    if start is not None and start.uid:
        base = uuid.UUID(hex=start.uid)
        uid = {part: f"2.25.{uuid.uuid5(base, part).int}"
               for part in ("study", "series", "petsird", "frame-of-reference")}
        exam.study_instance_uid, exam.series_instance_uid = uid["study"], uid["series"]
        exam.sop_instance_uid = uid["petsird"]
        exam.frame_of_reference_uid = uid["frame-of-reference"]
    if start is not None and start.time_utc:
        when = datetime.fromisoformat(start.time_utc)
        ns = (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000
        exam.start_of_study = petsird.DateTime(ns)
        exam.start_of_acquisition = petsird.DateTime(ns)
    return exam


def _header_bytes(header: petsird.Header) -> bytes:
    """The writer's bytes for the header and an open time-block stream (no end marker)."""
    buf = io.BytesIO()
    with petsird.BinaryPETSIRDWriter(buf) as writer:
        writer.write_header(header)
        writer.write_time_blocks([])
    data = buf.getvalue()
    if not data.endswith(b"\x00"):
        raise RuntimeError("petsird writer did not end the time-block stream with a zero count")
    return data[:-1]


# --------------------------------------------------------------------------- events


class EncodedEvents:
    """Coincidences as PETSIRD fields (in the run's order) and their time-block order."""

    def __init__(self, bin1: np.ndarray, bin2: np.ndarray, tof: np.ndarray, delayed: np.ndarray,
                 order: np.ndarray, starts: np.ndarray) -> None:
        self.bin1, self.bin2, self.tof, self.delayed = bin1, bin2, tof, delayed
        self.order = order
        """Event indices sorted by time block, stable (the run's order within a block)."""
        self.starts = starts
        """(n_blocks + 1,) offsets into ``order`` where each time block starts."""

    @property
    def n_blocks(self) -> int:
        return self.starts.size - 1


def encode_events(coinc: np.ndarray, scanner: Scanner, bins: Binning, block_ms: int
                  ) -> EncodedEvents:
    """Detection bins, TOF bins and time blocks of every coincidence."""
    module, element = crystal_module_element(scanner)
    n_el = scanner.n_crystals // (scanner.n_modules * scanner.n_module_rings)
    crystal_bin = element + module * n_el
    n = coinc.size
    bin1, bin2, tof = (np.empty(n, np.uint32) for _ in range(3))
    bad_crystal, bad_energy, bad_tof = _detection_fields(
        coinc["crystal_a"], coinc["crystal_b"], coinc["energy_a"], coinc["energy_b"], coinc["dt"],
        crystal_bin, bins.energy_edges_kev, bins.tof_bin_ps, bins.n_tof, bin1, bin2, tof)
    if bad_crystal:
        raise UserError(f"{bad_crystal} coincidences have crystal ids outside "
                        f"0..{scanner.n_crystals - 1} of scanner {scanner.name}")
    if bad_energy:
        lo, hi = bins.energy_edges_kev[[0, -1]]
        raise UserError(f"{bad_energy} coincidences have energies outside the header's "
                        f"energy window [{lo:g}, {hi:g}) keV")
    if bad_tof:
        raise UserError(f"{bad_tof} coincidences have |dt| beyond the TOF range of the "
                        f"{bins.window_ps} ps coincidence window")
    block = coinc["t"] // (block_ms * PS_PER_MS)
    if n and (block.min() < 0 or (int(block.max()) + 1) * block_ms > UINT32_MAX):
        raise UserError("coincidence times must lie between 0 and 2^32 ms after the run start")
    starts = np.zeros(int(block.max()) + 2 if n else 1, np.int64)
    np.cumsum(np.bincount(block), out=starts[1:])
    return EncodedEvents(bin1, bin2, tof, coinc["delayed"], np.argsort(block, kind="stable"),
                         starts)


@numba.njit(nogil=True, cache=True)
def _detection_fields(crystal_a, crystal_b, energy_a, energy_b, dt, crystal_bin, energy_edges,
                      tof_bin_ps, n_tof, bin1, bin2, tof):
    """Fill ``bin1 >= bin2`` (detection bins) and ``tof`` (TOF bin of (t1 - t2)) per event.

    ``crystal_bin[c]`` = element + module * elements_per_module. The TOF bin is
    floor((t1 - t2) / w + n_tof / 2), exactly, in integer ps. Events that do not fit (a crystal
    outside the scanner, an energy outside the bins, a dt outside the TOF bins) are counted and
    left unset; returns the three counts.
    """
    n_crystals = crystal_bin.size
    n_energy = energy_edges.size - 1
    bad_crystal = bad_energy = bad_tof = 0
    for i in range(crystal_a.size):
        a, b = crystal_a[i], crystal_b[i]
        if a < 0 or a >= n_crystals or b < 0 or b >= n_crystals:
            bad_crystal += 1
            continue
        ea = _energy_bin(energy_a[i], energy_edges)
        eb = _energy_bin(energy_b[i], energy_edges)
        if ea < 0 or eb < 0:
            bad_energy += 1
            continue
        bin_a = ea + crystal_bin[a] * n_energy
        bin_b = eb + crystal_bin[b] * n_energy
        signed = np.int64(dt[i])
        if bin_a >= bin_b:
            first, second, signed = bin_a, bin_b, -signed
        else:
            first, second = bin_b, bin_a
        k = (2 * signed + n_tof * tof_bin_ps) // (2 * tof_bin_ps)
        if k < 0 or k >= n_tof:
            bad_tof += 1
            continue
        bin1[i], bin2[i], tof[i] = first, second, k
    return bad_crystal, bad_energy, bad_tof


@numba.njit(nogil=True, cache=True, inline="always")
def _energy_bin(energy, edges):
    """Index of the bin [edges[j], edges[j + 1]) holding ``energy``; -1 outside."""
    if not edges[0] <= energy < edges[-1]:
        return -1
    j = 0
    while energy >= edges[j + 1]:
        j += 1
    return j


def _encoded_batches(ev: EncodedEvents, block_ms: int, with_delayed: bool) -> Iterator[bytes]:
    """Yield the time-block stream as byte batches of whole blocks (yardl stream batches)."""
    starts = ev.starts
    k0 = 0
    while k0 < ev.n_blocks:
        k1 = int(np.searchsorted(starts, starts[k0] + BATCH_EVENTS, side="right")) - 1
        k1 = min(max(k1, k0 + 1), k0 + BATCH_BLOCKS, ev.n_blocks)
        lo, hi = starts[k0], starts[k1]
        buf = np.empty(16 + 40 * (k1 - k0) + 15 * (hi - lo), np.uint8)
        used = _encode_blocks(k0, block_ms, starts[k0: k1 + 1] - lo, ev.order[lo:hi], ev.bin1,
                              ev.bin2, ev.tof, ev.delayed, with_delayed, buf)
        yield buf[:used].tobytes()
        k0 = k1


@numba.njit(nogil=True, cache=True)
def _varint(buf, pos, value):
    """LEB128 unsigned varint of ``value`` at ``buf[pos:]``; returns the next position."""
    value = np.uint64(value)
    while value >= 0x80:
        buf[pos] = (value & 0x7F) | 0x80
        value >>= np.uint64(7)
        pos += 1
    buf[pos] = value
    return pos + 1


@numba.njit(nogil=True, cache=True)
def _encode_blocks(first_block, block_ms, starts, order, bin1, bin2, tof, delayed, with_delayed,
                   buf):
    """Encode one stream batch: blocks ``first_block ..``, events ``order[starts[k]:starts[k+1]]``.

    Each item is a TimeBlock union (tag 0, EventTimeBlock): time interval (ms), no singles, the
    1 x 1 lower-triangular prompt list, the delayed list (1 x 1, or empty when not recorded), no
    triples, no quadruples. Returns the number of bytes written.
    """
    n_blocks = starts.size - 1
    pos = _varint(buf, 0, n_blocks)
    for k in range(n_blocks):
        lo, hi = starts[k], starts[k + 1]
        buf[pos] = 0
        pos += 1
        start_ms = (first_block + k) * block_ms
        pos = _varint(buf, pos, start_ms)
        pos = _varint(buf, pos, start_ms + block_ms)
        pos = _varint(buf, pos, 0)
        for flag in range(2):
            if flag == 1 and not with_delayed:
                pos = _varint(buf, pos, 0)
                continue
            count = 0
            for j in range(lo, hi):
                if delayed[order[j]] == flag:
                    count += 1
            pos = _varint(buf, pos, 1)
            pos = _varint(buf, pos, 1)
            pos = _varint(buf, pos, count)
            for j in range(lo, hi):
                i = order[j]
                if delayed[i] == flag:
                    pos = _varint(buf, pos, bin1[i])
                    pos = _varint(buf, pos, bin2[i])
                    pos = _varint(buf, pos, tof[i])
        pos = _varint(buf, pos, 0)
        pos = _varint(buf, pos, 0)
    return pos
