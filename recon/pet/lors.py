"""Lines of response: endpoints, TOF positions and the geometric detection weight of a crystal pair.

LOR endpoints are the *mean depth of interaction* points of the two crystals, not their centres:
a 511 keV photon entering a crystal of depth D along its normal interacts at the mean depth
``1/mu - D exp(-mu D) / (1 - exp(-mu D))`` (7.2 mm in 20 mm of LYSO, against 10 mm for the
centre), which is where the emulator's and a real scanner's photons are absorbed on average.

Detection model of a crystal pair (a, b) (used for quantification and for the sensitivity, see
:mod:`recon.pet.system`): an annihilation at a point of the LOR emits the pair isotropically, so the
probability that the pair lands in (a, b) is Omega / (2 pi), Omega the solid angle of the lines
through the point that hit both faces. Integrated over a plane across the tube of response that is
``G_ab / (2 pi)`` with ``G_ab = A_a cos(theta_a) A_b cos(theta_b) / |p_b - p_a|^2`` (A the
crystal's face, theta its angle to the LOR), independent of the position along the LOR. So
``P(detected in (a, b) | emission in voxel j) = eff_a eff_b G_ab / (2 pi) * L_ij / V_j``, with
``L_ij`` the (TOF-weighted) length of the LOR in voxel j and ``V_j`` the voxel volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from hw.scanner import SPEED_OF_LIGHT_MM_PER_PS, Scanner
from infra.errors import UserError

#: FWHM of a Gaussian in units of its standard deviation.
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def mean_interaction_depth_mm(scanner: Scanner, energy_kev: float = 511.0) -> float:
    """Mean depth (mm from the front face) of the photons that interact in a crystal."""
    depth = scanner.crystal_size_mm[2]
    mu = float(scanner.material.mu(energy_kev))
    absorbed = -np.expm1(-mu * depth)
    return float(1.0 / mu - depth * np.exp(-mu * depth) / absorbed)


def lor_endpoints(scanner: Scanner) -> np.ndarray:
    """(N, 3) float32: each crystal's mean depth-of-interaction point (scanner mm)."""
    half = scanner.crystal_size_mm[2] / 2
    shift = half - mean_interaction_depth_mm(scanner)
    # normals point from the crystal towards the axis: the front face is centre + normal * half
    return (scanner.crystal_centres + scanner.crystal_normals * shift).astype(np.float32)


def crystal_efficiency(scanner: Scanner, energy_kev: float = 511.0) -> float:
    """Probability that a photon hitting a crystal face head-on is detected (interaction in the
    crystal times the electronics' acceptance); the absolute scale of the system model."""
    mu = float(scanner.material.mu(energy_kev))
    return float(scanner.response.crystal_efficiency * -np.expm1(-mu * scanner.crystal_size_mm[2]))


def tof_sigma_mm(scanner: Scanner) -> float:
    """Standard deviation (mm) of the TOF position along the LOR: c * sigma_t / 2, sigma_t the
    standard deviation of dt (the CTR is its FWHM)."""
    return float(SPEED_OF_LIGHT_MM_PER_PS * scanner.response.ctr_ps / FWHM_PER_SIGMA / 2.0)


@dataclass(frozen=True)
class LORs:
    """Events as crystal pairs: ``crystal_a``, ``crystal_b`` (int32) and ``tof_mm`` (float32: the
    annihilation's displacement from the LOR midpoint towards crystal_a, c * dt / 2)."""

    crystal_a: np.ndarray
    crystal_b: np.ndarray
    tof_mm: np.ndarray

    def __post_init__(self) -> None:
        for name in ("crystal_a", "crystal_b", "tof_mm"):
            dtype = np.float32 if name == "tof_mm" else np.int32
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), dtype))
        if not self.crystal_a.shape == self.crystal_b.shape == self.tof_mm.shape:
            raise UserError("LORs: crystal_a, crystal_b and tof_mm must have the same length")

    @classmethod
    def from_coinc(cls, coinc: np.ndarray, where: np.ndarray | None = None) -> LORs:
        """LORs of COINC_DTYPE rows (prompts or delayeds alike; ``dt = t_b - t_a`` ps); only
        the rows where the boolean mask ``where`` is true when given (copying just the fields
        needed, not whole rows)."""
        def field(name: str) -> np.ndarray:
            return coinc[name] if where is None else coinc[name][where]

        tof = field("dt").astype(np.float32) * np.float32(SPEED_OF_LIGHT_MM_PER_PS / 2.0)
        return cls(field("crystal_a"), field("crystal_b"), tof)

    def __len__(self) -> int:
        return int(self.crystal_a.size)

    def take(self, index: np.ndarray | slice) -> LORs:
        """A subset of the events."""
        return LORs(self.crystal_a[index], self.crystal_b[index], self.tof_mm[index])


def check_crystals(lors: LORs, n_crystals: int) -> None:
    """Raise UserError when an event names a crystal the scanner does not have."""
    if len(lors) == 0:
        return
    lo = min(int(lors.crystal_a.min()), int(lors.crystal_b.min()))
    hi = max(int(lors.crystal_a.max()), int(lors.crystal_b.max()))
    if lo < 0 or hi >= n_crystals:
        bad = lo if lo < 0 else hi
        raise UserError(f"coincidences name crystal {bad}, but the scanner has crystals "
                        f"0..{n_crystals - 1}: wrong scanner for this run?")


def pair_weights(scanner: Scanner, lors: LORs, voxel_volume_mm3: float) -> np.ndarray:
    """(n,) float32: ``eff^2 G_ab / (2 pi V)`` per event (see the module docstring), so that the
    expected counts of an LOR are this weight times the line integral (mm) of the image
    (expected emissions per voxel)."""
    ends = lor_endpoints(scanner)
    normals = scanner.crystal_normals.astype(np.float32)
    area = scanner.crystal_size_mm[0] * scanner.crystal_size_mm[1]
    scale = crystal_efficiency(scanner) ** 2 * area * area / (2.0 * np.pi * voxel_volume_mm3)
    out = np.empty(len(lors), np.float32)
    _pair_weights(lors.crystal_a, lors.crystal_b, ends, normals, np.float32(scale), out)
    return out


@numba.njit(nogil=True, cache=True, parallel=True)
def _pair_weights(ca, cb, ends, normals, scale, out):
    for i in numba.prange(ca.size):
        a, b = ca[i], cb[i]
        dx = ends[b, 0] - ends[a, 0]
        dy = ends[b, 1] - ends[a, 1]
        dz = ends[b, 2] - ends[a, 2]
        d2 = dx * dx + dy * dy + dz * dz
        if d2 <= 0.0:
            out[i] = 0.0
            continue
        cos_a = abs(dx * normals[a, 0] + dy * normals[a, 1] + dz * normals[a, 2])
        cos_b = abs(dx * normals[b, 0] + dy * normals[b, 1] + dz * normals[b, 2])
        # cos_a cos_b / d^2 with unnormalised direction: divide by |d|^2 once more
        out[i] = scale * cos_a * cos_b / (d2 * d2)


#: Cells of :func:`lor_order`: transaxial angle bins over 180 degrees, and the size (mm) of the
#: radial-offset and axial-position bins.
ORDER_ANGLES = 64
ORDER_BIN_MM = 8.0


def lor_order(lors: LORs, endpoints: np.ndarray) -> np.ndarray:
    """(n,) int64 permutation that puts events in LOR-space order (transaxial angle, radial
    offset, axial position of the midpoint), stable within a cell.

    A projector walks an image along each LOR; consecutive events that are nearly the same line
    touch the same cache lines, so on events in this order the projector runs about twice as fast
    as on events in acquisition order (whose consecutive LORs are unrelated). The EM update is a
    sum over events, so the order changes nothing but rounding. Counting sort: O(n).
    """
    return order_by_cell(lor_cells(lors, endpoints), n_lor_cells(endpoints))


def _reach(endpoints: np.ndarray) -> float:
    return float(np.abs(endpoints).max()) + ORDER_BIN_MM


def n_lor_cells(endpoints: np.ndarray) -> int:
    """Number of cells of :func:`lor_cells`."""
    n_off = int(2 * _reach(endpoints) / ORDER_BIN_MM) + 1
    return ORDER_ANGLES * n_off * n_off


def lor_cells(lors: LORs, endpoints: np.ndarray) -> np.ndarray:
    """(n,) int32: each event's cell of LOR space (:func:`lor_order`), 0..n_lor_cells - 1."""
    out = np.empty(len(lors), np.int32)
    _lor_cells(endpoints, lors.crystal_a, lors.crystal_b, ORDER_ANGLES, ORDER_BIN_MM,
               _reach(endpoints), out)
    return out


def order_by_cell(cells: np.ndarray, n_cells: int, start: int = 0, step: int = 1) -> np.ndarray:
    """(m,) int64 indices ``start, start + step, ...`` into ``cells``, sorted by cell (stable)."""
    if step < 1 or start < 0:
        raise UserError(f"order_by_cell needs start >= 0 and step >= 1, got {start}, {step}")
    return _order_by_cell(np.ascontiguousarray(cells, np.int32), n_cells, start, step)


@numba.njit(nogil=True, cache=True, parallel=True)
def _lor_cells(ends, ca, cb, n_angles, bin_mm, reach, key):
    n_off = int(2 * reach / bin_mm) + 1
    for i in numba.prange(ca.size):
        a, b = ca[i], cb[i]
        dx = ends[b, 0] - ends[a, 0]
        dy = ends[b, 1] - ends[a, 1]
        if dy < 0.0 or (dy == 0.0 and dx < 0.0):     # fold the direction into [0, pi)
            dx, dy = -dx, -dy
        phi = np.arctan2(dy, dx)
        mx = 0.5 * (ends[a, 0] + ends[b, 0])
        my = 0.5 * (ends[a, 1] + ends[b, 1])
        mz = 0.5 * (ends[a, 2] + ends[b, 2])
        offset = (mx * dy - my * dx) / max(np.sqrt(dx * dx + dy * dy), 1e-12)
        k_phi = min(int(phi / np.pi * n_angles), n_angles - 1)
        k_off = min(max(int((offset + reach) / bin_mm), 0), n_off - 1)
        k_z = min(max(int((mz + reach) / bin_mm), 0), n_off - 1)
        key[i] = (k_phi * n_off + k_off) * n_off + k_z


@numba.njit(nogil=True, cache=True)
def _order_by_cell(key, n_cells, start, step):
    m = max(0, (key.size - start + step - 1) // step)
    counts = np.zeros(n_cells + 1, np.int64)
    for t in range(m):
        counts[key[start + t * step] + 1] += 1
    for j in range(1, counts.size):
        counts[j] += counts[j - 1]
    order = np.empty(m, np.int64)
    for t in range(m):
        i = start + t * step
        order[counts[key[i]]] = i
        counts[key[i]] += 1
    return order
