"""Lane buffers and branch-free math that LLVM turns into SIMD code.

The photon transport (:mod:`emulator.physics.lanes`) advances a few hundred photons at a time, one
photon per *lane*, in loops over the lanes that LLVM vectorises (AVX2/AVX-512: 4 to 8 lanes per
instruction). Three things stop LLVM from doing that in plain numba code, and this module removes
them:

- a table lookup (a gather) in a loop that also stores: numba tells LLVM nothing about which
  arrays overlap, and LLVM cannot bound a gather's addresses, so it gives up. Here every lane
  access (:func:`get`, :func:`put`) and every table lookup (:func:`tab`) carries scoped-noalias
  metadata: each field of a lane buffer and the tables are separate scopes, so LLVM knows that
  no store can change a table or another field.
- library calls (``math.log``, ``math.exp``, ``math.cos``): :func:`log`, :func:`exp` and
  :func:`sincos_turn` are polynomials on the bits of the float, accurate to a few units in the
  last place.
- branches that LLVM cannot turn into selects: :func:`sel` is a select; and numba's ``min`` and
  ``max``, which stay calls: :func:`vmin`, :func:`vmax` are selects.

A lane buffer is a 2-D array ``(fields, lanes)`` whose lanes are contiguous (a C array or a
view of its first lanes); ``get(buf, FIELD, i)`` reads field FIELD (a constant) of lane i. The
random numbers of a lane are xoshiro256++ (:func:`emulator.rng.draw`) on four state words held
in locals while a loop body runs (:func:`words`, :func:`keep`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import types, uint64
from numba.extending import intrinsic

from emulator.jit import inline, kernel
from emulator.rng import TO_UNIT

_TAGS = {types.float64: "f", types.int64: "i", types.uint64: "u"}
#: The most fields a lane buffer may have.
MAX_FIELDS = 32


def _scopes(builder, own: tuple[str, int]):
    """(alias.scope, noalias) metadata of an access to ``own`` = (buffer tag, field); the
    tables are ("t", 0)."""
    mod = builder.module
    domain = mod.add_metadata(["bpet.lanes"])
    every = {(tag, f): mod.add_metadata([f"bpet.{tag}{f}", domain])
             for tag in _TAGS.values() for f in range(MAX_FIELDS)}
    every["t", 0] = mod.add_metadata(["bpet.tables", domain])
    return (mod.add_metadata([every[own]]),
            mod.add_metadata([v for k, v in every.items() if k != own]))


def _tag(builder, instruction, own: tuple[str, int]) -> None:
    scope, noalias = _scopes(builder, own)
    instruction.set_metadata("alias.scope", scope)
    instruction.set_metadata("noalias", noalias)


def _field_pointer(context, builder, buffer_type, buffer, field_type, lane):
    field = field_type.literal_value
    if buffer_type.dtype not in _TAGS or buffer_type.ndim != 2 or not 0 <= field < MAX_FIELDS:
        raise TypeError(f"lane buffers are 2-D float64, int64 or uint64 arrays of < {MAX_FIELDS} "
                        "fields (rows) whose lanes (columns) are contiguous")
    ary = context.make_array(buffer_type)(context, builder, buffer)
    row = builder.sdiv(builder.extract_value(ary.strides, 0),
                       context.get_constant(types.intp, buffer_type.dtype.bitwidth // 8))
    offset = builder.add(builder.mul(row, context.get_constant(types.intp, field)), lane)
    return builder.gep(ary.data, [offset], inbounds=True), (_TAGS[buffer_type.dtype], field)


@intrinsic
def get(typingctx, buf, field, lane):
    """``buf[field, lane]`` of a lane buffer; ``field`` a constant."""
    if not isinstance(field, types.IntegerLiteral):
        return None
    sig = buf.dtype(buf, field, types.intp)

    def codegen(context, builder, signature, args):
        ptr, own = _field_pointer(context, builder, signature.args[0], args[0],
                                  signature.args[1], args[2])
        value = builder.load(ptr)
        _tag(builder, value, own)
        return value
    return sig, codegen


@intrinsic
def put(typingctx, buf, field, lane, value):
    """``buf[field, lane] = value`` (converted to the buffer's type); ``field`` a constant."""
    if not isinstance(field, types.IntegerLiteral):
        return None
    sig = types.void(buf, field, types.intp, value)

    def codegen(context, builder, signature, args):
        ptr, own = _field_pointer(context, builder, signature.args[0], args[0],
                                  signature.args[1], args[2])
        v = context.cast(builder, args[3], signature.args[3], signature.args[0].dtype)
        _tag(builder, builder.store(v, ptr), own)
        return context.get_dummy_value()
    return sig, codegen


@intrinsic
def tab(typingctx, table, index):
    """``table.flat[index]`` of a C-contiguous array that the loop does not write."""
    sig = table.dtype(table, types.intp)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        value = builder.load(builder.gep(ary.data, [args[1]], inbounds=True))
        _tag(builder, value, ("t", 0))
        return value
    return sig, codegen


@intrinsic
def at(typingctx, table, row, col):
    """``table[row, col]`` of a 2-D array (rows of contiguous values, a view of a wider array
    too) that the loop does not write: a table lookup like :func:`tab`."""
    if table.ndim != 2:
        return None
    sig = table.dtype(table, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        width = builder.sdiv(builder.extract_value(ary.strides, 0),
                             context.get_constant(types.intp, context.get_abi_sizeof(
                                 context.get_data_type(signature.args[0].dtype))))
        offset = builder.add(builder.mul(args[1], width), args[2])
        value = builder.load(builder.gep(ary.data, [offset], inbounds=True))
        _tag(builder, value, ("t", 0))
        return value
    return sig, codegen


@intrinsic
def sel(typingctx, cond, a, b):
    """``a if cond else b`` as one select instruction (both are computed)."""
    out = typingctx.unify_types(a, b)
    if out is None:
        return None
    out = getattr(out, "literal_type", out)
    sig = out(cond, a, b)

    def codegen(context, builder, signature, args):
        c = context.cast(builder, args[0], signature.args[0], types.boolean)
        if c.type.width != 1:
            c = builder.icmp_unsigned("!=", c, c.type(0))
        return builder.select(c, context.cast(builder, args[1], signature.args[1], out),
                              context.cast(builder, args[2], signature.args[2], out))
    return sig, codegen


@inline
def vmin(a, b):
    """The smaller of two numbers (a select; numba's ``min`` is a call LLVM does not vectorise)."""
    return sel(a < b, a, b)


@inline
def vmax(a, b):
    """The larger of two numbers (a select, see :func:`vmin`)."""
    return sel(a > b, a, b)


def _bitcast(source, target, doc: str):
    """An intrinsic reinterpreting the bits of a ``source`` scalar as a ``target`` one."""
    @intrinsic
    def cast(typingctx, x):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], context.get_value_type(target))
        return target(source), codegen
    cast.__doc__ = doc
    return cast


as_float = _bitcast(types.uint64, types.float64, "The float64 whose bits are the uint64 given.")
as_bits = _bitcast(types.float64, types.uint64, "The bits (uint64) of the float64 given.")


# ----------------------------------------------------------------------------- random numbers


@inline
def words(R, i):
    """The four generator words of lane i of the (4, lanes) uint64 buffer ``R``."""
    return get(R, 0, i), get(R, 1, i), get(R, 2, i), get(R, 3, i)


@inline
def keep(R, i, a, b, c, d):
    """Store lane i's generator words back into ``R``."""
    put(R, 0, i, a)
    put(R, 1, i, b)
    put(R, 2, i, c)
    put(R, 3, i, d)


@inline
def unit(r):
    """A uniform in [0, 1) from 64 random bits (their top 53)."""
    return (r >> uint64(11)) * TO_UNIT


@inline
def unit_open(r):
    """A uniform in (0, 1] from 64 random bits: never 0, so its logarithm is finite."""
    return ((r >> uint64(11)) + uint64(1)) * TO_UNIT


@inline
def _mix64(z):
    """SplitMix64's output function (Steele, Lea & Flood 2014): a bijection of uint64."""
    z = (z ^ (z >> uint64(30))) * uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> uint64(27))) * uint64(0x94D049BB133111EB)
    return z ^ (z >> uint64(31))


@kernel
def seed_lanes(rs, out):
    """Fill the (4, lanes) uint64 ``out`` with one generator state per lane, drawn from the
    generator ``rs``: lane i's state is four SplitMix64 outputs from a seed that mixes ``rs``
    with i (mixed, not added: seeds one step of SplitMix64 apart would give lanes the same
    words, shifted)."""
    gamma = uint64(0x9E3779B97F4A7C15)
    for i in range(out.shape[1]):
        x = _mix64(_mix64(rs[0] + uint64(i + 1) * gamma) ^ rs[1])
        for w in range(4):
            x += gamma
            out[w, i] = _mix64(x)
    # move the parent on, so the next call gives other lanes
    rs[0] = _mix64(rs[0] + gamma)


# ----------------------------------------------------------------------------- math

_LN2 = math.log(2.0)
_SQRT2 = math.sqrt(2.0)


@inline
def log(x):
    """Natural logarithm of a positive, normal float64 (absolute error < 2e-15 x max(1, |log x|)):
    the exponent, and log of the mantissa m in [1/sqrt 2, sqrt 2) by the series of
    2 atanh((m - 1) / (m + 1)) to the ninth odd power."""
    bits = as_bits(x)
    e = np.int64(bits >> uint64(52)) - 1023
    m = as_float((bits & uint64(0x000FFFFFFFFFFFFF)) | uint64(0x3FF0000000000000))
    big = m > _SQRT2
    m = sel(big, m * 0.5, m)
    e = sel(big, e + 1, e)
    f = (m - 1.0) / (m + 1.0)
    f2 = f * f
    series = 1.0 + f2 * (1 / 3 + f2 * (1 / 5 + f2 * (1 / 7 + f2 * (1 / 9 + f2 * (
        1 / 11 + f2 * (1 / 13 + f2 * (1 / 15 + f2 * (1 / 17 + f2 / 19))))))))
    return e * _LN2 + 2.0 * f * series


_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10


@inline
def exp(x):
    """e^x for x in [-700, 700] (relative error < 2e-15 for |x| < 40, 3e-14 beyond): 2^n x e^r
    with |r| <= ln 2 / 2 and the Taylor polynomial of e^r to the 13th power."""
    n = math.floor(x * (1.0 / _LN2) + 0.5)
    r = (x - n * _LN2_HI) - n * _LN2_LO
    p = 1.0 + r * (1.0 + r * (1 / 2 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120 + r * (
        1 / 720 + r * (1 / 5040 + r * (1 / 40320 + r * (1 / 362880 + r * (
            1 / 3628800 + r * (1 / 39916800 + r * (1 / 479001600 + r / 6227020800))))))))))))
    return p * as_float(uint64(np.int64(n) + 1023) << uint64(52))


_C8, _S8 = math.cos(math.pi / 8), math.sin(math.pi / 8)


@inline
def sincos_turn(v):
    """(cos, sin) of the angle 2 pi v, v in [0, 1): Taylor polynomials on the octant's
    +-pi/8 about its centre (error < 2e-15), rotated to the octant."""
    w = 8.0 * v
    q = np.int64(math.floor(w))
    a = (w - q - 0.5) * (0.25 * math.pi)
    a2 = a * a
    s = a * (1.0 + a2 * (-1 / 6 + a2 * (1 / 120 + a2 * (-1 / 5040 + a2 * (
        1 / 362880 + a2 * (-1 / 39916800))))))
    c = 1.0 + a2 * (-0.5 + a2 * (1 / 24 + a2 * (-1 / 720 + a2 * (1 / 40320 + a2 * (
        -1 / 3628800 + a2 / 479001600)))))
    # the octant centre (2q + 1) pi / 8: its cosine and sine are +-cos(pi/8) or +-sin(pi/8)
    near = (q == 0) | (q == 3) | (q == 4) | (q == 7)
    cc = sel(near, _C8, _S8)
    sc = sel(near, _S8, _C8)
    cc = sel((q >= 2) & (q <= 5), -cc, cc)
    sc = sel(q >= 4, -sc, sc)
    return cc * c - sc * s, sc * c + cc * s
