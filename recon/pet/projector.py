"""List-mode PET projector: Joseph's method with an optional TOF kernel, in numba.

Why Joseph and not Siddon: Joseph's method steps plane by plane along the LOR's main axis and
interpolates bilinearly in the other two, so every step costs the same fixed work (4 voxels, no
branches, no sorting of crossing parameters) and consecutive steps touch neighbouring memory; it
is smooth (no aliasing with the voxel grid as LORs move by a fraction of a voxel, which matters for
list-mode data where every event has its own continuous LOR) and it is the reference projector of
the field (parallelproj). Siddon's exact intersection lengths need a variable number of steps and
a merge of three crossing sequences per LOR, which is slower for the same accuracy at 2 mm voxels.

Conventions:

- images are ``[x, y, z]`` float32 on a :class:`recon.grid.Grid`; the kernels work on a copy with
  one voxel of zero padding on every side (``pad``/``unpad``), which makes the bilinear
  interpolation at the grid's edges branch-free; the padding is never part of a result;
- the forward projection of an event is the line integral (mm x image units) of the image along
  the segment between the two LOR endpoints (crystal points of :func:`recon.pet.lors.lor_endpoints`);
  with TOF it is weighted by a Gaussian of ``sigma_mm`` (1/mm, normalised over its truncation at
  ``nsigma``) centred ``tof_mm`` from the LOR midpoint towards crystal_a;
- :meth:`Projector.back` is the exact adjoint (the same weights, scattered).

The TOF Gaussian along the arithmetic sequence of steps is evaluated by a two-term multiplicative
recurrence (no ``exp`` per step). Forward projection runs one event per iteration of a ``prange``;
back projection gives each thread its own padded image buffer, summed at the end, so there are no
write races. Set the number of threads with :func:`recon.threads.set_threads`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

import numba
import numpy as np

from hw.scanner import Scanner
from infra.errors import UserError
from recon.grid import Grid, default_grid
from recon.pet.lors import LORs, check_crystals, lor_endpoints, tof_sigma_mm
from recon.threads import apply_threads, get_threads, parallel_blocks

#: TOF kernel truncation, in standard deviations.
TOF_NSIGMA = 3.0
#: Events per block of the block-parallel EM kernel (:meth:`Projector.em_back_padded`): the unit
#: of work a thread takes; and per sub-block inside it (forward, then back, while in cache).
EM_BLOCK = 32768
#: Image buffers the blocks are summed into (block b into buffer b mod lanes, in block order),
#: then added in buffer order: a fixed order of every sum, so the image is the same for any
#: number of threads (at most this many work at once).
EM_LANES = 16
_SUB = 4096
#: Keeps the bilinear interpolation one rounding error away from the padding's far edge.
_EDGE = 1e-4
_ONE = np.float32(1.0)


def lanes_of(n_events: int) -> int:
    """Image buffers for a projection of ``n_events``: one per :data:`EM_BLOCK` events, at most
    :data:`EM_LANES` (set by the events, never by the threads)."""
    return max(1, min(EM_LANES, -(-n_events // EM_BLOCK)))


def pad(array: np.ndarray) -> np.ndarray:
    """[x, y, z] -> a C-contiguous float32 copy with one zero voxel on every side (whatever the
    input's order: a NIfTI file's array is in Fortran order)."""
    return np.pad(np.ascontiguousarray(array, np.float32), 1)


def unpad(padded: np.ndarray) -> np.ndarray:
    """The inverse of :func:`pad` (a view)."""
    return padded[1:-1, 1:-1, 1:-1]


class Projector:
    """Forward and back projection of list-mode events of ``scanner`` on ``grid`` (default:
    :func:`recon.grid.default_grid`), TOF from the scanner's CTR when ``tof``.

    Events are :class:`recon.pet.lors.LORs` or COINC_DTYPE rows. LOR endpoints are the crystals'
    mean depth-of-interaction points (:func:`recon.pet.lors.lor_endpoints`).
    """

    def __init__(self, scanner: Scanner, grid: Grid | None = None, tof: bool = True,
                 nsigma: float = TOF_NSIGMA) -> None:
        if nsigma <= 0:
            raise UserError(f"TOF truncation nsigma must be > 0, got {nsigma}")
        self.scanner = scanner
        self.grid = grid if grid is not None else default_grid(scanner)
        self.endpoints = lor_endpoints(scanner)
        self.sigma_mm = tof_sigma_mm(scanner) if tof else 0.0
        self.nsigma = float(nsigma)
        self._shape = np.array(self.grid.shape, np.int64)
        self._origin = np.array(self.grid.origin_mm, np.float64)
        self._voxel = np.array(self.grid.voxel_mm, np.float64)
        self._norm = float(_tof_norm(self.sigma_mm, self.nsigma))
        self._buffers = np.zeros((0, 0), np.float32)
        self._buffers_lock = threading.Lock()

    @classmethod
    def over_poses(cls, seen: Sequence[Scanner], grid: Grid, tof: bool = True) -> Projector:
        """One projector over the crystals of one scanner seen from several poses (``seen``:
        its copies with the crystals moved, :func:`recon.motion.correct.seen_from`): crystal c
        of ``seen[k]`` is crystal ``k * n_crystals + c`` here, so that one projection takes
        the events of every pose."""
        projector = cls(seen[0], grid, tof)
        projector.endpoints = np.concatenate([lor_endpoints(s) for s in seen])
        return projector

    @property
    def tof(self) -> bool:
        return self.sigma_mm > 0

    def _check(self, padded: np.ndarray) -> None:
        want = tuple(n + 2 for n in self.grid.shape)
        if padded.shape != want or padded.dtype != np.float32 or not padded.flags.c_contiguous:
            raise UserError(f"padded image must be C-contiguous float32 {want}, "
                            f"got {padded.dtype} {padded.shape}")

    def _lors(self, events: LORs | np.ndarray) -> LORs:
        if isinstance(events, LORs):
            return events
        lors = LORs.from_coinc(np.asarray(events))
        check_crystals(lors, self.scanner.n_crystals)
        return lors

    def forward_padded(self, padded: np.ndarray, lors: LORs | np.ndarray) -> np.ndarray:
        """(n,) float32 projections of a padded image (see :func:`pad`)."""
        self._check(padded)
        lors = self._lors(lors)
        out = np.empty(len(lors), np.float32)
        apply_threads()
        _forward(padded.reshape(-1), self._shape, self._origin, self._voxel, self.endpoints,
                 lors.crystal_a, lors.crystal_b, lors.tof_mm, self.sigma_mm, self.nsigma, out)
        return out

    def back_padded(self, values: np.ndarray, lors: LORs | np.ndarray,
                    out: np.ndarray | None = None) -> np.ndarray:
        """Add the back projection of ``values`` (n,) into a padded image (new when None)."""
        lors = self._lors(lors)
        if out is None:
            out = np.zeros(tuple(n + 2 for n in self.grid.shape), np.float32)
        self._check(out)
        values = np.ascontiguousarray(values, np.float32)
        if values.shape != (len(lors),):
            raise UserError(f"back projection needs one value per event ({len(lors)}), "
                            f"got {values.shape}")
        apply_threads()
        _back(values, self._shape, self._origin, self._voxel, self.endpoints, lors.crystal_a,
              lors.crystal_b, lors.tof_mm, self.sigma_mm, self.nsigma, lanes_of(len(lors)),
              out.reshape(-1))
        return out

    def em_back_padded(self, padded: np.ndarray, lors: LORs, weights: np.ndarray,
                       additive: np.ndarray | None = None,
                       crystal_randoms: np.ndarray | None = None,
                       order: np.ndarray | None = None, out: np.ndarray | None = None
                       ) -> np.ndarray:
        """The list-mode EM back projection ``A^T (w / (w A x + r))`` of a padded image ``x``,
        added into ``out`` (a new padded image when None), which is returned: the forward
        projection, the ratio and the back projection of :meth:`forward_padded` and
        :meth:`back_padded` (same weights) in one kernel, without any per-event array.

        ``weights`` w (n,); the additive term r of event i is ``additive[i]`` (n,) plus
        ``crystal_randoms[a] * crystal_randoms[b]`` (one factor per crystal), either may be None.
        ``order``: indices of the events to use, in this order (default: all, as given).

        Work: blocks of :data:`EM_BLOCK` events, block b into buffer b mod :func:`lanes_of` in
        block order; the buffers are taken in turn by :func:`recon.threads.get_threads` threads
        (:func:`recon.threads.parallel_blocks`) and summed in their order at the end, so the
        result is the same for any number of threads. Inside a block, sub-blocks of 4096 events are gathered
        (``order``), forward projected keeping each ray's set-up, and back projected while the
        voxels they touched are still in cache.
        """
        self._check(padded)
        n = len(lors)
        weights = _events_array(weights, n, "weights")
        additive = (np.zeros(0, np.float32) if additive is None
                    else _events_array(additive, n, "additive"))
        factors = (np.zeros(0, np.float32) if crystal_randoms is None
                   else np.ascontiguousarray(crystal_randoms, np.float32))
        if factors.size not in (0, len(self.endpoints)):
            raise UserError(f"crystal_randoms needs one factor per crystal "
                            f"({len(self.endpoints)}), got {factors.size}")
        index = (np.zeros(0, np.int64) if order is None
                 else np.ascontiguousarray(order, np.int64))
        if index.size and not (int(index.min()) >= 0 and int(index.max()) < n):
            raise UserError(f"order must index the {n} events, got {index.min()}..{index.max()}")
        if out is None:
            out = np.zeros(tuple(k + 2 for k in self.grid.shape), np.float32)
        self._check(out)
        count = n if order is None else index.size
        n_blocks = max(1, -(-count // EM_BLOCK))
        lanes = lanes_of(count)
        with self._buffers_lock:
            if self._buffers.shape[0] < lanes:
                self._buffers = np.zeros((lanes, out.size), np.float32)
            buffers = self._buffers

            def work(_worker: int, lane: int) -> None:
                first = lane * n_blocks // lanes
                for block in range(first, (lane + 1) * n_blocks // lanes):
                    _em_block(padded.reshape(-1), buffers[lane], block == first, index,
                              block * EM_BLOCK, min(count, (block + 1) * EM_BLOCK),
                              lors.crystal_a, lors.crystal_b, lors.tof_mm, weights, additive,
                              factors, self._shape, self._origin, self._voxel, self.endpoints,
                              self.sigma_mm, self.nsigma, self._norm)

            parallel_blocks(lanes, work, min(get_threads(), lanes))
            apply_threads()
            _add_rows(buffers, np.arange(lanes), out.reshape(-1))
        return out

    def forward(self, image: np.ndarray, lors: LORs | np.ndarray) -> np.ndarray:
        """(n,) float32 line integrals (mm x image units) of ``image`` [x, y, z]."""
        if tuple(image.shape) != self.grid.shape:
            raise UserError(f"image shape {image.shape} is not the grid's {self.grid.shape}")
        return self.forward_padded(pad(image), lors)

    def back(self, values: np.ndarray, lors: LORs | np.ndarray) -> np.ndarray:
        """[x, y, z] float32: the adjoint of :meth:`forward` applied to ``values``."""
        return np.ascontiguousarray(unpad(self.back_padded(values, lors)))


# ------------------------------------------------------------------------------------ kernels


@numba.njit(nogil=True, cache=True, fastmath=True)
def _clip(lo, hi, a, b, tm_lo, tm_hi):
    """Intersect [lo, hi] with the plane indices m where tm_lo <= a + b m <= tm_hi."""
    if b == 0.0:
        if a < tm_lo or a > tm_hi:
            return 1.0, 0.0
        return lo, hi
    ma = (tm_lo - a) / b
    mb = (tm_hi - a) / b
    if ma > mb:
        ma, mb = mb, ma
    return max(lo, ma), min(hi, mb)


@numba.njit(nogil=True, cache=True, fastmath=True)
def _ray(ends, a, b, tof, shape, origin, voxel, sigma, nsigma, norm):
    """Joseph set-up of one LOR.

    Returns (m_lo, m_hi, k, i1, i2, A1, B1, A2, B2, g, r, q, step): plane indices m_lo..m_hi along
    the main axis k; the padded continuous indices along the other axes i1, i2 are A + B m; the
    TOF weight at m_lo is g, multiplied by r (itself multiplied by q) at each step; ``step`` is the
    path length (mm) per plane. m_lo > m_hi when the LOR misses the grid.
    """
    p0 = (np.float64(ends[a, 0]), np.float64(ends[a, 1]), np.float64(ends[a, 2]))
    d = (ends[b, 0] - p0[0], ends[b, 1] - p0[1], ends[b, 2] - p0[2])
    length = math.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
    r0 = abs(d[0]) / voxel[0]
    r1 = abs(d[1]) / voxel[1]
    r2 = abs(d[2]) / voxel[2]
    if r0 >= r1 and r0 >= r2:
        k, i1, i2 = 0, 1, 2
    elif r1 >= r2:
        k, i1, i2 = 1, 0, 2
    else:
        k, i1, i2 = 2, 0, 1
    if length == 0.0:
        return 1, 0, k, i1, i2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    # plane m (voxel centre origin[k] + m voxel[k]) is at LOR parameter t = t0 + tm m
    t0 = (origin[k] - p0[k]) / d[k]
    tm = voxel[k] / d[k]
    lo, hi = _clip(0.0, shape[k] - 1.0, t0, tm, 0.0, 1.0)
    A1 = (p0[i1] + t0 * d[i1] - origin[i1]) / voxel[i1] + 1.0
    B1 = tm * d[i1] / voxel[i1]
    lo, hi = _clip(lo, hi, A1, B1, 0.0, shape[i1] + 1.0 - _EDGE)
    A2 = (p0[i2] + t0 * d[i2] - origin[i2]) / voxel[i2] + 1.0
    B2 = tm * d[i2] / voxel[i2]
    lo, hi = _clip(lo, hi, A2, B2, 0.0, shape[i2] + 1.0 - _EDGE)
    g, r, q = 1.0, 1.0, 1.0
    if sigma > 0.0:
        # position towards crystal a: s = (0.5 - t) length; keep |s - tof| <= nsigma sigma
        half = nsigma * sigma / length
        lo, hi = _clip(lo, hi, t0, tm, 0.5 - tof / length - half, 0.5 - tof / length + half)
    m_lo = math.ceil(lo)
    m_hi = math.floor(hi)
    if sigma > 0.0 and m_lo <= m_hi:
        inv = 0.5 / (sigma * sigma)
        u = (0.5 - t0 - tm * m_lo) * length - tof
        du = -tm * length
        g = norm * math.exp(-u * u * inv)
        r = math.exp(-(2.0 * u * du + du * du) * inv)
        q = math.exp(-2.0 * du * du * inv)
    return m_lo, m_hi, k, i1, i2, A1, B1, A2, B2, g, r, q, abs(tm) * length


@numba.njit(nogil=True, cache=True, fastmath=True, inline="always")
def _ray32(ends, a, b, tof, shape, strides, origin, voxel, sigma, nsigma, norm):
    """:func:`_ray` as the projection loops use it: (m_lo, m_hi, k, sk, s1, s2, a1, b1, a2, b2,
    g, r, q, step) with the padded image's strides of the main and in-plane axes and float32
    coefficients. Float32 and unsigned indices in the inner loops are a third faster than
    float64 with numba's negative-index wrap-around; forward and back use the same weights
    (exact adjoint)."""
    m_lo, m_hi, k, i1, i2, A1, B1, A2, B2, g, r, q, step = _ray(
        ends, a, b, tof, shape, origin, voxel, sigma, nsigma, norm)
    return (m_lo, m_hi, k, strides[k], strides[i1], strides[i2], np.float32(A1),
            np.float32(B1), np.float32(A2), np.float32(B2), np.float32(g), np.float32(r),
            np.float32(q), step)


@numba.njit(nogil=True, cache=True, fastmath=True, inline="always")
def _plane_cell(m, sk, s1, s2, a1, b1, a2, b2):
    """Where a ray crosses plane m: the padded image's index of the lower corner of the 2 x 2
    in-plane cell, and the bilinear weights (w1, w2) of its upper neighbours."""
    f1 = a1 + b1 * np.float32(m)
    f2 = a2 + b2 * np.float32(m)
    j1 = np.uint64(f1)
    j2 = np.uint64(f2)
    return np.uint64(m + 1) * sk + j1 * s1 + j2 * s2, f1 - np.float32(j1), f2 - np.float32(j2)


@numba.njit(nogil=True, cache=True, fastmath=True, inline="always")
def _ray_sum(img, m_lo, m_hi, sk, s1, s2, a1, b1, a2, b2, g, r, q):
    """The forward projection's inner loop along one ray (float32): over planes m_lo..m_hi of
    the ray's main axis (stride ``sk``), the bilinear sample at in-plane coordinates
    ``a + b m`` (strides ``s1``, ``s2``) of the padded ``img``, weighted by the TOF factor
    ``g`` that steps as ``g *= r; r *= q`` (a Gaussian by recurrence; 1 without TOF)."""
    acc = np.float32(0.0)
    for m in range(m_lo, m_hi + 1):
        base, w1, w2 = _plane_cell(m, sk, s1, s2, a1, b1, a2, b2)
        v = ((_ONE - w1) * ((_ONE - w2) * img[base] + w2 * img[base + s2])
             + w1 * ((_ONE - w2) * img[base + s1] + w2 * img[base + s1 + s2]))
        acc += g * v
        g *= r
        r *= q
    return acc


@numba.njit(nogil=True, cache=True, fastmath=True, inline="always")
def _ray_add(buf, m_lo, m_hi, sk, s1, s2, a1, b1, a2, b2, g, r, q):
    """The adjoint of :func:`_ray_sum`: add ``g`` (the value to back project times the TOF
    factor, stepping the same way) to the padded ``buf`` with the same bilinear weights."""
    for m in range(m_lo, m_hi + 1):
        base, w1, w2 = _plane_cell(m, sk, s1, s2, a1, b1, a2, b2)
        c1 = g * (_ONE - w1)
        c2 = g * w1
        buf[base] += c1 * (_ONE - w2)
        buf[base + s2] += c1 * w2
        buf[base + s1] += c2 * (_ONE - w2)
        buf[base + s1 + s2] += c2 * w2
        g *= r
        r *= q


@numba.njit(nogil=True, cache=True, fastmath=True, parallel=True)
def _forward(img, shape, origin, voxel, ends, ca, cb, tof, sigma, nsigma, out):
    strides = _strides(shape)
    norm = _tof_norm(sigma, nsigma)
    for i in numba.prange(ca.size):
        m_lo, m_hi, _, sk, s1, s2, a1, b1, a2, b2, g32, r32, q32, step = _ray32(
            ends, ca[i], cb[i], tof[i], shape, strides, origin, voxel, sigma, nsigma, norm)
        out[i] = _ray_sum(img, m_lo, m_hi, sk, s1, s2, a1, b1, a2, b2, g32, r32, q32) \
            * np.float32(step)


@numba.njit(nogil=True, cache=True, fastmath=True, parallel=True)
def _back(values, shape, origin, voxel, ends, ca, cb, tof, sigma, nsigma, lanes, out):
    strides = _strides(shape)
    norm = _tof_norm(sigma, nsigma)
    n = ca.size
    # one padded buffer per chunk of events (:func:`lanes_of`), summed in chunk order: no write
    # races, no thread ids, the same sums for any number of threads
    n_chunks = max(1, min(n, lanes))
    buffers = np.zeros((n_chunks, out.size), np.float32)
    for c in numba.prange(n_chunks):
        buf = buffers[c]
        for i in range(c * n // n_chunks, (c + 1) * n // n_chunks):
            if values[i] == 0.0:
                continue
            m_lo, m_hi, _, sk, s1, s2, a1, b1, a2, b2, g32, r32, q32, step = _ray32(
                ends, ca[i], cb[i], tof[i], shape, strides, origin, voxel, sigma, nsigma, norm)
            _ray_add(buf, m_lo, m_hi, sk, s1, s2, a1, b1, a2, b2,
                     values[i] * np.float32(step) * g32, r32, q32)
    for j in numba.prange(out.size):
        acc = out[j]
        for c in range(n_chunks):
            acc += buffers[c, j]
        out[j] = acc


@numba.njit(nogil=True, cache=True, fastmath=True)
def _em_block(img, buf, clear, index, lo, hi, ca, cb, tof, weights, additive, factors, shape,
              origin, voxel, ends, sigma, nsigma, norm):
    """Events lo..hi-1 (positions in ``index``, or event numbers when it is empty) into ``buf``:
    A^T (w / (w A img + r)), in sub-blocks of _SUB events: gather the sub-block's events into
    local arrays (a tight loop whose cache misses overlap, where the projection loops would wait
    for each), forward project them keeping each ray's set-up, then back project the ratios with
    the same set-up and the weights of _forward / _back."""
    if clear:
        buf[:] = 0.0
    strides = _strides(shape)
    sub = _SUB
    ga = np.empty(sub, np.int32)
    gb = np.empty(sub, np.int32)
    gt = np.empty(sub, np.float32)
    gw = np.empty(sub, np.float32)
    gr = np.empty(sub, np.float32)
    m_lo_ = np.empty(sub, np.int32)
    m_hi_ = np.empty(sub, np.int32)
    axis = np.empty(sub, np.int32)
    ray = np.empty((sub, 7), np.float32)
    ratio = np.empty(sub, np.float32)
    for s0 in range(lo, hi, sub):
        n = min(sub, hi - s0)
        for t in range(n):
            i = index[s0 + t] if index.size > 0 else s0 + t
            ga[t] = ca[i]
            gb[t] = cb[i]
            gt[t] = tof[i]
            gw[t] = weights[i]
            gr[t] = additive[i] if additive.size > 0 else np.float32(0.0)
        if factors.size > 0:
            for t in range(n):
                gr[t] += factors[ga[t]] * factors[gb[t]]
        # forward projections and ratios w / (w Ax + r) * step (the back projection's weight)
        for t in range(n):
            ratio[t] = 0.0
            m_hi_[t] = -1
            m_lo_[t] = 0
            w = gw[t]
            if not w > 0.0:
                continue
            m_lo, m_hi, k, sk, s1, s2, a1, b1, a2, b2, g32, r32, q32, step = _ray32(
                ends, ga[t], gb[t], gt[t], shape, strides, origin, voxel, sigma, nsigma, norm)
            m_lo_[t] = m_lo
            m_hi_[t] = m_hi
            axis[t] = k
            ray[t, 0] = a1
            ray[t, 1] = b1
            ray[t, 2] = a2
            ray[t, 3] = b2
            ray[t, 4] = g32
            ray[t, 5] = r32
            ray[t, 6] = q32
            acc = _ray_sum(img, m_lo, m_hi, sk, s1, s2, a1, b1, a2, b2, g32, r32, q32)
            step32 = np.float32(step)
            ybar = w * acc * step32 + gr[t]
            if ybar > 0.0:
                ratio[t] = w / ybar * step32
        # back projections of the ratios along the same rays
        for t in range(n):
            val = ratio[t]
            if val == 0.0:
                continue
            k = axis[t]
            if k == 0:
                sk, s1, s2 = strides[0], strides[1], strides[2]
            elif k == 1:
                sk, s1, s2 = strides[1], strides[0], strides[2]
            else:
                sk, s1, s2 = strides[2], strides[0], strides[1]
            _ray_add(buf, m_lo_[t], m_hi_[t], sk, s1, s2, ray[t, 0], ray[t, 1], ray[t, 2],
                     ray[t, 3], ray[t, 4] * val, ray[t, 5], ray[t, 6])


@numba.njit(nogil=True, cache=True, parallel=True)
def _add_rows(buffers, rows, out):
    for j in numba.prange(out.size):
        acc = out[j]
        for r in rows:
            acc += buffers[r, j]
        out[j] = acc


def _events_array(values: np.ndarray, n: int, name: str) -> np.ndarray:
    values = np.ascontiguousarray(values, np.float32)
    if values.shape != (n,):
        raise UserError(f"{name} needs one value per event ({n}), got shape {values.shape}")
    return values


@numba.njit(nogil=True, cache=True)
def _tof_norm(sigma, nsigma):
    """1 / the integral of the Gaussian truncated at nsigma (1 without TOF)."""
    if sigma <= 0.0:
        return 1.0
    return 1.0 / (math.sqrt(2.0 * math.pi) * sigma * math.erf(nsigma / math.sqrt(2.0)))


@numba.njit(nogil=True, cache=True)
def _strides(shape):
    """Strides (in voxels, unsigned) of the padded [x, y, z] image."""
    p1 = np.uint64(shape[1] + 2)
    p2 = np.uint64(shape[2] + 2)
    return (p1 * p2, p2, np.uint64(1))
