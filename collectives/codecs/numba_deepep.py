"""numba kernels for DeepEP's LogFMT-10 (see ref_logfmt.py for the definition)."""

from __future__ import annotations

import math

import numba
import numpy as np

from collectives.codecs.numba_kernels import (
    deepep_params,
    exp2_det,
    get_bits,
    log2_det,
    pjit,
    put_bits,
)
from collectives.codecs.spec import BF16_NAN, DEEPEP_KMAX, TILE


@numba.njit(inline="always")
def deepep_scan(xb, bits16, t, lo, hi):  # type: ignore[no-untyped-def]
    """(finite?, amax, amin, bf16 bits of amax, of amin) over all elements of the tile."""
    finite, amax, amin = True, np.float32(0.0), np.float32(np.inf)
    amax_bits, amin_bits = 0, 0
    for j in range(lo, hi):
        v = xb[t, j]
        if not math.isfinite(v):
            finite = False
            continue
        a = abs(v)
        if a > amax:
            amax, amax_bits = a, bits16[t, j] & 0x7FFF
        if a < amin:
            amin, amin_bits = a, bits16[t, j] & 0x7FFF
    if not finite:
        return False, np.float32(np.nan), np.float32(np.nan), BF16_NAN, BF16_NAN
    return True, amax, amin, amax_bits, amin_bits


@pjit
def deepep_encode(xb, bits16, out, meta, offset):  # type: ignore[no-untyped-def]
    """xb [T, H]: bf16-rounded, flushed values; bits16 their bf16 bits; out [T, row] zeroed;
    meta [T, tiles, 2] receives the bf16 bits of (amax, amin)."""
    num_tokens, hidden = xb.shape
    for t in numba.prange(num_tokens):
        for tile in range(meta.shape[1]):
            lo, hi = tile * TILE, min(hidden, tile * TILE + TILE)
            _, amax, amin, amax_bits, amin_bits = deepep_scan(xb, bits16, t, lo, hi)
            meta[t, tile, 0], meta[t, tile, 1] = amax_bits, amin_bits
            cast, lmin, step, rounding = deepep_params(amax, amin)
            pos, acc, nacc = offset + 2 * lo, 0, 0
            for j in range(lo, hi):
                if not cast:
                    out[t, pos], out[t, pos + 1] = bits16[t, j] & 0xFF, bits16[t, j] >> 8
                    pos += 2
                    continue
                a, code = abs(xb[t, j]), 0
                if a > 0:
                    u = (log2_det(np.float64(a)) - lmin) * (1.0 / step) + rounding
                    code = int(min(math.floor(max(u, 0.0)), float(DEEPEP_KMAX)))
                    if xb[t, j] < 0 and code > 0:
                        code |= 1 << 9
                pos, acc, nacc = put_bits(out, t, pos, acc, nacc, code, 10)
            if nacc > 0:
                out[t, pos] = acc & 0xFF


@pjit
def deepep_decode(data, meta, offset, out, out_bits):  # type: ignore[no-untyped-def]
    """meta [T, tiles, 2] float32 (amax, amin); out and out_bits view the same memory."""
    num_tokens, hidden = out.shape
    for t in numba.prange(num_tokens):
        for tile in range(meta.shape[1]):
            lo, hi = tile * TILE, min(hidden, tile * TILE + TILE)
            cast, lmin, step, _ = deepep_params(meta[t, tile, 0], meta[t, tile, 1])
            pos, acc, nacc = offset + 2 * lo, 0, 0
            for j in range(lo, hi):
                if not cast:
                    raw = np.uint32(data[t, pos]) | (np.uint32(data[t, pos + 1]) << 8)
                    out_bits[t, j] = raw << 16
                    pos += 2
                    continue
                code, pos, acc, nacc = get_bits(data, t, pos, acc, nacc, 10)
                k, value = code & DEEPEP_KMAX, np.float32(0.0)
                if k > 0:
                    value = np.float32(exp2_det((float(k) - 1.0) * step + lmin))
                out[t, j] = -value if code >> 9 else value
