"""numba kernels: one parallel loop over tokens, one pass over each tile, scalar math.

They follow the definitions of ref.py / ref_logfmt.py but reach the same bytes by other
means (loops with a running bit accumulator instead of packbits, one pass per tile), so
agreement with the reference checks the layout independently. No fastmath: numba then emits no
fused multiply-adds and keeps every float32 operation in float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import numba
import numpy as np

from collectives.codecs import detmath
from collectives.codecs.detmath import INV_LN2, LN2, SQRT_HALF
from collectives.codecs.spec import (
    BF16_NAN,
    DEEPEP_CLAMP_LOG2,
    DEEPEP_KMAX,
    FLT_MAX,
    FLT_MIN_NORMAL,
    LOGFMT_CLAMP_LN,
    TILE,
)

F32_MIN_NORMAL = np.float32(FLT_MIN_NORMAL)
F32_MAX = np.float32(FLT_MAX)
MAGIC_F32 = np.float32(2.0**23)

jit = numba.njit(cache=True, nogil=True)
pjit = numba.njit(cache=True, nogil=True, parallel=True)
# The Horner helpers take arrays, tensors or scalars; compiled here for float64 scalars.
_Scalar = Callable[[float], float]
_log2_mantissa = numba.njit(inline="always")(cast(_Scalar, detmath.log2_mantissa))
_exp2_fraction = numba.njit(inline="always")(cast(_Scalar, detmath.exp2_fraction))


@numba.njit(inline="always")
def log2_det(x):  # type: ignore[no-untyped-def]
    """log2 of a positive float64: frexp by exponent bits (libm's frexp is a slow call)."""
    bits = np.float64(x).view(np.int64)
    exp = ((bits >> 52) & 0x7FF) - 1022
    mant = np.int64((bits & 0x000FFFFFFFFFFFFF) | 0x3FE0000000000000).view(np.float64)
    if mant < SQRT_HALF:
        mant *= 2.0
        exp -= 1
    return float(exp) + _log2_mantissa(mant)


@numba.njit(inline="always")
def exp2_det(y):  # type: ignore[no-untyped-def]
    k = math.floor(y + 0.5)
    scale = np.int64((np.int64(k) + 1023) << 52).view(np.float64)
    return _exp2_fraction(y - k) * scale


@numba.njit(inline="always")
def ln_det(x):  # type: ignore[no-untyped-def]
    return log2_det(x) * LN2


@numba.njit(inline="always")
def exp_det(y):  # type: ignore[no-untyped-def]
    return exp2_det(y * INV_LN2)


@numba.njit(inline="always")
def tile_scan(x, t, lo, hi):  # type: ignore[no-untyped-def]
    """(all finite?, max |x|, min non-zero |x|) of x[t, lo:hi], subnormals read as zero."""
    finite, amax, amin = True, np.float32(0.0), np.float32(np.inf)
    for j in range(lo, hi):
        v = x[t, j]
        if not math.isfinite(v):
            finite = False
            continue
        a = abs(v)
        if a < F32_MIN_NORMAL:
            continue
        amax = max(amax, a)
        amin = min(amin, a)
    return finite, amax, amin


@numba.njit(inline="always")
def put_bits(out, t, pos, acc, nacc, code, bits):  # type: ignore[no-untyped-def]
    """Append `code` to the LSB-first bit stream of row t; returns (pos, acc, nacc)."""
    acc |= code << nacc
    nacc += bits
    while nacc >= 8:
        out[t, pos] = acc & 0xFF
        acc >>= 8
        nacc -= 8
        pos += 1
    return pos, acc, nacc


@numba.njit(inline="always")
def get_bits(data, t, pos, acc, nacc, bits):  # type: ignore[no-untyped-def]
    """Take the next `bits`-bit code of row t; returns (code, pos, acc, nacc)."""
    while nacc < bits:
        acc |= np.int64(data[t, pos]) << nacc
        pos += 1
        nacc += 8
    code = acc & ((1 << bits) - 1)
    return code, pos, acc >> bits, nacc - bits


# ---- BF16 -------------------------------------------------------------------------------
@pjit
def bf16_encode(bits32, out16):  # type: ignore[no-untyped-def]
    """float32 bit patterns -> bf16 bit patterns (round to nearest even, NaN -> 0x7FC0)."""
    flat_in, flat_out = bits32.reshape(-1), out16.reshape(-1)
    for i in numba.prange(flat_in.size):
        b = np.int64(flat_in[i])
        if (b & 0x7FFFFFFF) > 0x7F800000:
            flat_out[i] = BF16_NAN
        else:
            flat_out[i] = (b + 0x7FFF + ((b >> 16) & 1)) >> 16


@pjit
def bf16_decode(bits16, out32):  # type: ignore[no-untyped-def]
    flat_in, flat_out = bits16.reshape(-1), out32.reshape(-1)
    for i in numba.prange(flat_in.size):
        flat_out[i] = np.uint32(flat_in[i]) << 16


# ---- FP8 --------------------------------------------------------------------------------
@numba.njit(inline="always")
def fp8_code(y, man_bits, bias, max_code, sub_scale, min_normal):  # type: ignore[no-untyped-def]
    """Round-to-nearest-even FP8 code of float32 y (already scaled into range)."""
    mag = abs(y)
    if mag < min_normal:
        # adding and removing 2^23 rounds a float32 below 2^22 to an integer, ties to even
        code = int((mag * sub_scale + MAGIC_F32) - MAGIC_F32)
    else:
        bits = np.int64(np.float32(mag).view(np.int32))
        shift = 23 - man_bits
        code = (bits + ((1 << (shift - 1)) - 1) + ((bits >> shift) & 1)) >> shift
        code -= (127 - bias) << man_bits
    code = min(code, max_code)
    return code | 0x80 if y < 0 else code


@numba.njit(inline="always")
def fp8_scale(finite, amax, max_finite, pow2, min_amax):  # type: ignore[no-untyped-def]
    if not finite:
        return np.float32(np.nan)
    if amax < min_amax:
        return np.float32(0.0)
    scale = amax / max_finite
    if pow2:
        mant, exp = math.frexp(scale)
        if mant != 0.5:
            scale = np.float32(math.ldexp(1.0, exp))
    return scale


@pjit
def fp8_encode(x, out, scales, fmt, pow2, min_amax, offset):  # type: ignore[no-untyped-def]
    """x [T, H] float32 -> codes in out[:, offset:], scales [T, tiles] float32.
    fmt = (man_bits, bias, max_code, max_finite, subnormal_scale, min_normal)."""
    man_bits, bias, max_code = int(fmt[0]), int(fmt[1]), int(fmt[2])
    max_finite, sub_scale, min_normal = np.float32(fmt[3]), np.float32(fmt[4]), np.float32(fmt[5])
    num_tokens, hidden = x.shape
    for t in numba.prange(num_tokens):
        for tile in range(scales.shape[1]):
            lo, hi = tile * TILE, min(hidden, tile * TILE + TILE)
            finite, amax, _ = tile_scan(x, t, lo, hi)
            scale = fp8_scale(finite, amax, max_finite, pow2, np.float32(min_amax))
            scales[t, tile] = scale
            for j in range(lo, hi):
                code = 0
                if scale > 0:
                    v = x[t, j]
                    v = v if abs(v) >= F32_MIN_NORMAL else np.float32(0.0)
                    code = fp8_code(v / scale, man_bits, bias, max_code, sub_scale, min_normal)
                out[t, offset + j] = code


@pjit
def fp8_decode(codes, scales, table, out):  # type: ignore[no-untyped-def]
    num_tokens, hidden = out.shape
    for t in numba.prange(num_tokens):
        for j in range(hidden):
            scale = scales[t, j // TILE]
            value = table[codes[t, j]] * scale
            if scale != scale:  # poisoned tile: the one canonical NaN, as every path writes
                value = np.float32(np.nan)
            elif value > F32_MAX:
                value = F32_MAX
            elif value < -F32_MAX:
                value = -F32_MAX
            out[t, j] = value


# ---- LogFMT-n -----------------------------------------------------------------------------
@numba.njit(inline="always")
def logfmt_tile_meta(finite, amax, amin):  # type: ignore[no-untyped-def]
    """(m, M) as float32: NaN for poisoned tiles, 0 for all-zero tiles."""
    if not finite:
        return np.float32(np.nan), np.float32(np.nan)
    if amax == 0:
        return np.float32(0.0), np.float32(0.0)
    big = np.float32(ln_det(np.float64(amax)))
    small = np.float32(max(ln_det(np.float64(amin)), np.float64(big) - LOGFMT_CLAMP_LN))
    return small, big


@numba.njit(inline="always")
def logfmt_step(small, big, kmax):  # type: ignore[no-untyped-def]
    step = (np.float64(big) - np.float64(small)) / float(kmax - 1)
    if not step > 0:
        return 0.0, 0.0
    return step, ln_det((1.0 + exp_det(step)) * 0.5) / step


@numba.njit(inline="always")
def logfmt_level(a, m, step, phi, kmax):  # type: ignore[no-untyped-def]
    if a == 0:
        return 0
    lnx = ln_det(np.float64(a))
    k = 1.0
    if step > 0:
        k = min(max(math.floor((lnx - m) * (1.0 / step) - phi) + 2.0, 1.0), float(kmax))
    if lnx < m - LN2:
        return 0
    return int(k)


@pjit
def logfmt_encode(x, out, meta, bits, offset):  # type: ignore[no-untyped-def]
    """x [T, H] -> packed codes in out[:, offset:], meta [T, tiles, 2] float32 (m, M)."""
    kmax = (1 << (bits - 1)) - 1
    num_tokens, hidden = x.shape
    for t in numba.prange(num_tokens):
        pos, acc, nacc = offset, 0, 0
        for tile in range(meta.shape[1]):
            lo, hi = tile * TILE, min(hidden, tile * TILE + TILE)
            finite, amax, amin = tile_scan(x, t, lo, hi)
            small, big = logfmt_tile_meta(finite, amax, amin)
            meta[t, tile, 0], meta[t, tile, 1] = small, big
            step, phi = logfmt_step(small, big, kmax)
            for j in range(lo, hi):
                v, code = x[t, j], 0
                if finite and amax > 0:
                    a = abs(v) if abs(v) >= F32_MIN_NORMAL else np.float32(0.0)
                    code = logfmt_level(a, np.float64(small), step, phi, kmax)
                    if v < 0 and code > 0:
                        code |= 1 << (bits - 1)
                pos, acc, nacc = put_bits(out, t, pos, acc, nacc, code, bits)
        if nacc > 0:
            out[t, pos] = acc & 0xFF


EXP2_F32 = tuple(np.float32(c) for c in detmath.EXP2_F32_COEFFS)
F32_HALF = np.float32(0.5)


@numba.njit(inline="always")
def exp2_split(e0, y):  # type: ignore[no-untyped-def]
    """ref_logfmt.exp2_split for one element: float32 2^(e0 + y)."""
    nf = np.float32(math.floor(y + F32_HALF))
    r = y - nf
    p = EXP2_F32[6]
    p = p * r + EXP2_F32[5]
    p = p * r + EXP2_F32[4]
    p = p * r + EXP2_F32[3]
    p = p * r + EXP2_F32[2]
    p = p * r + EXP2_F32[1]
    p = p * r + EXP2_F32[0]
    n = e0 + np.int64(nf)
    if n < -125:
        return F32_MIN_NORMAL
    if n > 128:
        return F32_MAX
    value = p * np.int32((min(n, 127) + 127) << 23).view(np.float32)
    if n > 127:
        value = value * np.float32(2.0)
    return min(value, F32_MAX)


@pjit
def logfmt_decode(data, meta, bits, out):  # type: ignore[no-untyped-def]
    kmax = (1 << (bits - 1)) - 1
    num_tokens, hidden = out.shape
    for t in numba.prange(num_tokens):
        pos, acc, nacc = 0, 0, 0
        for tile in range(meta.shape[1]):
            small, big = meta[t, tile, 0], meta[t, tile, 1]
            step, _ = logfmt_step(small, big, kmax)
            m2 = (np.float64(small) if small == small else 0.0) * INV_LN2
            e0 = math.floor(m2)
            mf, s2 = np.float32(m2 - e0), np.float32(step * INV_LN2)
            for j in range(tile * TILE, min(hidden, tile * TILE + TILE)):
                code, pos, acc, nacc = get_bits(data, t, pos, acc, nacc, bits)
                k = code & kmax
                value = np.float32(0.0)
                if k > 0:
                    y = mf + s2 * np.float32(k - 1)
                    value = exp2_split(np.int64(e0), y)
                    if code >> (bits - 1):
                        value = -value
                out[t, j] = value if small == small else np.float32(np.nan)


# ---- DeepEP LogFMT-10 ---------------------------------------------------------------------
@numba.njit(inline="always")
def deepep_params(amax, amin):  # type: ignore[no-untyped-def]
    """(cast?, log2 min, step, rounding) from the tile's bf16 amax / amin (as float32)."""
    amax64, amin64 = np.float64(amax), np.float64(amin)
    if not amax64 > 0:
        return False, 0.0, 1.0, 0.0
    lmax = log2_det(amax64)
    lmin = lmax - DEEPEP_CLAMP_LOG2
    if amin64 > 0:
        lmin = max(log2_det(amin64), lmin)
    if not (amax64 < 1.0 and lmin < lmax):
        return False, lmin, 1.0, 0.0
    step = (lmax - lmin) / float(DEEPEP_KMAX - 1)
    return True, lmin, step, 2.0 - log2_det(0.5 * (1.0 + exp2_det(step))) / step
