# mypy: disable-error-code="untyped-decorator"
"""Shared @triton.jit pieces of the codec kernels (imported only where Triton is).

Tile-row indexing (a program walks BT consecutive (token, tile) pairs of the flattened
[num_tokens, num_tiles] grid), metadata words (one aligned float32 store/load when the wire
row is a multiple of 4 bytes, four byte stores otherwise), and detmath's float64 log/exp.
The float64 helpers perform exactly the reference's +, -, *, / sequence (detmath.py,
ref.log2_det/exp2_det); what differs is only how exact values are formed: float64
constants travel as their bit patterns (Triton would round a Python float literal to
float32), and frexp of a float32 is done with integer ops on its fields. The kernels are
bound by instruction issue, not by the FP64 pipe, so exact conversions (int -> float64,
floor, float64 -> int) stay single instructions: the conversion pipe (a quarter of the
FP64 rate) has room for about one instruction in eight.
"""

from __future__ import annotations

import struct

import triton
import triton.language as tl

from collectives.codecs import detmath
from collectives.codecs.spec import LOGFMT_CLAMP_LN


def f64_bits(value: float) -> int:
    """The IEEE binary64 bit pattern of `value` as a signed int."""
    return int(struct.unpack("<q", struct.pack("<d", value))[0])


def _frac_threshold() -> int:
    """Smallest 23-bit fraction f with 0.5 * (1 + f / 2^23) >= SQRT_HALF (frexp's test)."""
    f = int(detmath.SQRT_HALF * 2.0**24) - (1 << 23) - 2
    while 0.5 * (1 + f / 2.0**23) < detmath.SQRT_HALF:
        f += 1
    return f


# Float64 constants travel as one kernel argument, a tuple of their bit patterns: they then
# sit in uniform registers instead of being rebuilt per use as 64-bit immediates.
COEF_VALUES = (*detmath.ATANH_COEFFS, *detmath.EXP2_COEFFS, detmath.LN2, detmath.INV_LN2,
               detmath.SQRT_HALF, LOGFMT_CLAMP_LN, 2.0**52 + 1.0)  # fmt: skip
COEF = tuple(f64_bits(v) for v in COEF_VALUES)
NUM_ATANH = tl.constexpr(len(detmath.ATANH_COEFFS))
NUM_EXP2 = tl.constexpr(len(detmath.EXP2_COEFFS))
I_EXP2 = tl.constexpr(len(detmath.ATANH_COEFFS))
I_LN2 = tl.constexpr(I_EXP2 + len(detmath.EXP2_COEFFS))
I_INV_LN2, I_SQRT_HALF = tl.constexpr(I_LN2 + 1), tl.constexpr(I_LN2 + 2)
I_CLAMP, I_TWO52_PLUS1 = tl.constexpr(I_LN2 + 3), tl.constexpr(I_LN2 + 4)
# OR-ing a small int k into the bits of 2^52 gives 2^52 + k; minus 2^52 + 1: k - 1, exactly.
TWO52_BITS = tl.constexpr(f64_bits(2.0**52))
FRAC_SQRT_HALF = tl.constexpr(_frac_threshold())
ONE_F32_BITS = tl.constexpr(0x3F800000)


@triton.jit
def coef(C, i: tl.constexpr):  # type: ignore[no-untyped-def]
    """Float64 constant number `i` of the COEF tuple `C`."""
    return C[i].to(tl.float64, bitcast=True)


@triton.jit
def tile_rows(block, NT, TOTAL, BT: tl.constexpr, WIDE: tl.constexpr):  # type: ignore[no-untyped-def]
    """(token row, tile index, in range) of the BT tile-rows of `block`, int32 unless WIDE."""
    if WIDE:  # noqa: SIM108 (constexpr branch)
        g = block.to(tl.int64) * BT + tl.arange(0, BT)
    else:
        g = block * BT + tl.arange(0, BT)
    row = g // NT
    return row, g - row * NT, g < TOTAL


@triton.jit
def store_meta(wire_ptr, offset, value, mask, ALIGNED: tl.constexpr):  # type: ignore[no-untyped-def]
    """float32 `value` at byte `offset` of the wire (little-endian): one float32 store when
    every offset is a multiple of 4 (ALIGNED), four byte stores otherwise."""
    if ALIGNED:
        tl.store(wire_ptr.to(tl.pointer_type(tl.float32)) + (offset >> 2), value, mask=mask)
    else:
        bits = value.to(tl.uint32, bitcast=True)
        for i in tl.static_range(4):
            tl.store(wire_ptr + offset + i, ((bits >> (8 * i)) & 0xFF).to(tl.uint8), mask=mask)


@triton.jit
def load_meta(wire_ptr, offset, mask, ALIGNED: tl.constexpr):  # type: ignore[no-untyped-def]
    """The float32 at byte `offset` of the wire (see store_meta)."""
    if ALIGNED:
        return tl.load(wire_ptr.to(tl.pointer_type(tl.float32)) + (offset >> 2), mask=mask)
    bits = tl.zeros(offset.shape, tl.uint32)
    for i in tl.static_range(4):
        byte = tl.load(wire_ptr + offset + i, mask=mask, other=0).to(tl.uint32)
        bits = bits | (byte << (8 * i))
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def log2_mantissa(mant, C):  # type: ignore[no-untyped-def]
    """detmath.log2_mantissa for float64 mant in [sqrt(1/2), sqrt(2))."""
    u = (mant - 1.0) / (mant + 1.0)
    u2 = u * u
    p = coef(C, NUM_ATANH - 1)
    for j in tl.static_range(NUM_ATANH - 1):
        p = p * u2 + coef(C, NUM_ATANH - 2 - j)
    return (2.0 * u * p) * coef(C, I_INV_LN2)


@triton.jit
def ln_f32_bits(ab, C):  # type: ignore[no-untyped-def]
    """ref.ln_det of positive normal float32 values given as int32 bits: frexp by integer
    ops on the float32 fields (the float64 of a float32 has the same fraction)."""
    frac = ab & 0x7FFFFF
    small = frac < FRAC_SQRT_HALF
    e = (ab >> 23) - tl.where(small, 127, 126)
    top = tl.where(small, 0x3FF0000000000000, 0x3FE0000000000000)
    mant = ((frac.to(tl.int64) << 29) | top).to(tl.float64, bitcast=True)
    return (e.to(tl.float64) + log2_mantissa(mant, C)) * coef(C, I_LN2)


@triton.jit
def ln_f64(v, C):  # type: ignore[no-untyped-def]
    """ref.ln_det of positive normal float64 `v` (per-tile use)."""
    bits = v.to(tl.int64, bitcast=True)
    e = ((bits >> 52) & 0x7FF).to(tl.int32) - 1022
    mant = ((bits & 0x000FFFFFFFFFFFFF) | 0x3FE0000000000000).to(tl.float64, bitcast=True)
    small = mant < coef(C, I_SQRT_HALF)
    mant = tl.where(small, mant * 2.0, mant)
    e = tl.where(small, e - 1, e)
    return (e.to(tl.float64) + log2_mantissa(mant, C)) * coef(C, I_LN2)


@triton.jit
def exp_f64(y, C):  # type: ignore[no-untyped-def]
    """ref.exp_det(y) = exp2_det(y / ln 2) for finite y with a normal float64 result."""
    z = y * coef(C, I_INV_LN2)
    kd = tl.floor(z + 0.5)
    ki = kd.to(tl.int32)
    r = z - kd
    p = coef(C, I_EXP2 + NUM_EXP2 - 1)
    for j in tl.static_range(NUM_EXP2 - 1):
        p = p * r + coef(C, I_EXP2 + NUM_EXP2 - 2 - j)
    return p * ((ki + 1023).to(tl.int64) << 52).to(tl.float64, bitcast=True)
