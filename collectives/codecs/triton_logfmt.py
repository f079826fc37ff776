# mypy: disable-error-code="untyped-decorator"
"""Triton LogFMT-n encode and decode kernels (n = 4..16).

A program walks STEPS blocks of BT tile-rows, each viewed as [BT, 16 groups, 8 codes]: 8
codes of n bits are exactly n bytes of the LSB-first bit stream, so a group is packed in
registers into two 64-bit words and written as n/U pieces of U = 4, 2 or 1 bytes (the
widest that n and the row alignment allow); n = 8 and n = 16 store the codes directly.
The per-tile constants (m, M, step, 1/step, the cut offset phi, m - ln 2) are formed once
per tile-row; every element costs one ln (encode) or one exp (decode) in float64 with the
reference's exact operation sequence (triton_common.py).
"""

from __future__ import annotations

import triton
import triton.language as tl

from collectives.codecs.spec import FLT_MAX
from collectives.codecs.triton_common import (
    I_CLAMP,
    I_LN2,
    I_TWO52_PLUS1,
    ONE_F32_BITS,
    TWO52_BITS,
    coef,
    exp_f64,
    ln_f32_bits,
    ln_f64,
    load_meta,
    store_meta,
    tile_rows,
)

FLT_MAX_C = tl.constexpr(FLT_MAX)


@triton.jit
def _elements(row, tile, valid, H, g0, BT: tl.constexpr, G: tl.constexpr, EVEN: tl.constexpr):  # type: ignore[no-untyped-def]
    """[BT, G, 8] column index and mask of groups g0 .. g0 + G - 1 of the tile-rows."""
    col = (tile[:, None, None] * 128 + (g0 + tl.arange(0, G))[None, :, None] * 8
           + tl.arange(0, 8)[None, None, :])  # fmt: skip
    if EVEN:
        return col, tl.broadcast_to(valid[:, None, None], (BT, G, 8))
    return col, valid[:, None, None] & (col < H)


@triton.jit
def _tile_params(small, big, C, KMAX: tl.constexpr):  # type: ignore[no-untyped-def]
    """ref_logfmt.logfmt_step per tile: (step s, 1/s or 1, cut offset phi, m or 0)."""
    step = (big.to(tl.float64) - small.to(tl.float64)) / (KMAX - 1.0)
    step = tl.where(step == step, step, 0.0)
    safe = tl.where(step > 0, step, 1.0)
    phi = ln_f64((1.0 + exp_f64(safe, C)) * 0.5, C) / safe
    phi = tl.where(step > 0, phi, 0.0)
    m = tl.where(small == small, small, 0.0).to(tl.float64)
    return step, 1.0 / safe, phi, m


@triton.jit
def _tile_meta(top, low, finite, C):  # type: ignore[no-untyped-def]
    """ref_logfmt.logfmt_meta from the int32 bits of the tile's max and min |x|."""
    zero = top == 0
    big = ln_f32_bits(tl.where(zero, ONE_F32_BITS, top), C).to(tl.float32)
    lnlow = ln_f32_bits(tl.where(zero, ONE_F32_BITS, low), C)
    small = tl.maximum(lnlow, big.to(tl.float64) - coef(C, I_CLAMP)).to(tl.float32)
    small = tl.where(finite, tl.where(zero, 0.0, small), float("nan"))
    return small, tl.where(finite, tl.where(zero, 0.0, big), float("nan"))


@triton.jit
def _levels(ab, m, inv, phi, mlow, C, KMAX: tl.constexpr):  # type: ignore[no-untyped-def]
    """ref_logfmt.logfmt_levels (int32) of |x| bits `ab` (zero below FLT_MIN_NORMAL) with
    the per-tile [BT, 1, 1] arguments of _tile_folded."""
    keep = ab >= 0x00800000
    lnx = ln_f32_bits(tl.where(keep, ab, ONE_F32_BITS), C)
    u = (lnx - m) * inv - phi
    # clip(floor(u) + 2, 1, KMAX): the lower clip in float64 (u may be below -2^31 when the
    # step is tiny), the upper one on the int32 (u < 3 KMAX; the conversion saturates anyway)
    u = tl.where(u < -1.0, -1.0, u)
    k = tl.minimum(tl.floor(u).to(tl.int32), KMAX - 2) + 2
    return tl.where(keep & (lnx >= mlow), k, 0)


@triton.jit
def _tile_folded(step, inv, phi, m, finite, C):  # type: ignore[no-untyped-def]
    """Per-tile (m, 1/s, phi, cut-off) with the reference's special cases folded in: s = 0
    gives u = -1 (level 1) through 1/s := 0, phi := 1; a NaN/Inf tile gives level 0 through
    cut-off := +Inf. The reference's cut-off is m - ln 2."""
    inv = tl.where(step > 0, inv, 0.0)
    phi = tl.where(step > 0, phi, 1.0)
    mlow = tl.where(finite, m - coef(C, I_LN2), float("inf"))
    return m[:, None, None], inv[:, None, None], phi[:, None, None], mlow[:, None, None]


@triton.jit
def _pack_store(code, wire_ptr, base, mask, valid, lim, g0, N: tl.constexpr, UNIT: tl.constexpr,  # type: ignore[no-untyped-def]
                EVEN: tl.constexpr):  # fmt: skip
    """Write [BT, G, 8] n-bit codes of groups g0.. at byte `base` [BT] of each tile's code
    bytes; `lim` [BT] is the number of code bytes left in the row from `base` (a multiple
    of UNIT; ignored when EVEN, as every tile then has all its 16n bytes)."""
    grp = (g0 + tl.arange(0, code.shape[1]))[None, :]
    p = tl.arange(0, 8)[None, None, :]
    if N == 8:
        tl.store(wire_ptr + base[:, None, None] + grp[:, :, None] * 8 + p, code.to(tl.uint8),
                 mask=mask)  # fmt: skip
    elif N == 16:
        ptr = wire_ptr.to(tl.pointer_type(tl.uint16)) + (base >> 1)[:, None, None]
        tl.store(ptr + grp[:, :, None] * 8 + p, code.to(tl.uint16), mask=mask)
    else:
        # pairs, quads, then the 8-code group (8n bits: lo, and hi above bit 64), each step
        # an OR of two halves that one thread holds
        BT: tl.constexpr = code.shape[0]
        G: tl.constexpr = code.shape[1]
        a, b = tl.split(tl.reshape(code.to(tl.uint32), (BT, G, 4, 2)))
        a, b = tl.split(tl.reshape(a | (b << N), (BT, G, 2, 2)))
        a, b = tl.split(a.to(tl.uint64) | (b.to(tl.uint64) << (2 * N)))
        lo = a | (b << (4 * N))
        if 8 * N > 64:
            hi = b >> (64 - 4 * N)
        ptype: tl.constexpr = tl.uint32 if UNIT == 4 else (tl.uint16 if UNIT == 2 else tl.uint8)
        ptr = (
            wire_ptr.to(tl.pointer_type(ptype)) + (base >> (UNIT // 2))[:, None] + grp * (N // UNIT)
        )
        for q in tl.static_range(N // UNIT):
            if 8 * UNIT * q < 64:  # noqa: SIM108 (constexpr branch)
                piece = lo >> (8 * UNIT * q)
            else:
                piece = hi >> (8 * UNIT * q - 64)
            if EVEN:
                inside = tl.broadcast_to(valid[:, None], (BT, G))
            else:
                inside = valid[:, None] & (grp * N + q * UNIT < lim[:, None])
            tl.store(ptr + q, (piece & ((1 << (8 * UNIT)) - 1)).to(ptype), mask=inside)


@triton.jit
def _encode_groups(x_ptr, wire_ptr, C, row, tile, valid, H, ROW, MB, CODE_BYTES, g0, tp,  # type: ignore[no-untyped-def]
                   N: tl.constexpr, UNIT: tl.constexpr, BT: tl.constexpr, G: tl.constexpr,
                   EVEN: tl.constexpr):  # fmt: skip
    """Codes of groups g0 .. g0 + G - 1 of the tile-rows, given the per-tile parameters
    tp from _tile_folded; written to the wire."""
    KMAX: tl.constexpr = (1 << (N - 1)) - 1
    col, mask = _elements(row, tile, valid, H, g0, BT, G, EVEN)
    xb = tl.load(x_ptr + row[:, None, None] * H + col, mask=mask, other=0.0).to(tl.float32)
    xb = xb.to(tl.int32, bitcast=True)
    m, inv, phi, mlow = tp
    k = _levels(xb & 0x7FFFFFFF, m, inv, phi, mlow, C, KMAX)
    code = tl.where((xb < 0) & (k > 0), k | (1 << (N - 1)), k)
    base = row * ROW + MB + tile * (16 * N)
    _pack_store(code, wire_ptr, base, mask, valid, CODE_BYTES - tile * (16 * N), g0, N, UNIT,
                EVEN)  # fmt: skip


@triton.jit
def logfmt_encode_kernel(x_ptr, wire_ptr, C, H, NT, ROW, MB, CODE_BYTES, TOTAL,  # type: ignore[no-untyped-def]
                         N: tl.constexpr, UNIT: tl.constexpr, BT: tl.constexpr,
                         STEPS: tl.constexpr, G: tl.constexpr, EVEN: tl.constexpr,
                         ALIGNED: tl.constexpr, WIDE: tl.constexpr):  # fmt: skip
    """Per block: the tile statistics over whole tile-rows, then the codes in 16/G chunks of
    G groups (a loop kept rolled, so registers hold only a chunk's elements while the
    per-tile float64 work is shared by all 128 elements of a tile-row)."""
    KMAX: tl.constexpr = (1 << (N - 1)) - 1
    for step_i in range(STEPS):
        row, tile, valid = tile_rows(tl.program_id(0) * STEPS + step_i, NT, TOTAL, BT, WIDE)
        col, mask = _elements(row, tile, valid, H, 0, BT, 16, EVEN)
        x = tl.load(x_ptr + row[:, None, None] * H + col, mask=mask, other=0.0).to(tl.float32)
        ab = x.to(tl.int32, bitcast=True) & 0x7FFFFFFF
        top = tl.max(tl.max(ab, axis=2), axis=1)
        finite = top < 0x7F800000
        ab = tl.where(ab >= 0x00800000, ab, 0)
        low = tl.min(tl.min(tl.where(ab > 0, ab, 0x7F800000), axis=2), axis=1)
        small, big = _tile_meta(tl.where(top >= 0x00800000, top, 0), low, finite, C)
        step, inv, phi, m = _tile_params(small, big, C, KMAX)
        meta = row * ROW + tile * 8
        store_meta(wire_ptr, meta, small, valid, ALIGNED)
        store_meta(wire_ptr, meta + 4, big, valid, ALIGNED)
        tp = _tile_folded(step, inv, phi, m, finite, C)
        for chunk in tl.range(0, 16 // G, loop_unroll_factor=1):
            _encode_groups(x_ptr, wire_ptr, C, row, tile, valid, H, ROW, MB, CODE_BYTES,
                           chunk * G, tp, N, UNIT, BT, G, EVEN)  # fmt: skip


@triton.jit
def _load_unpack(wire_ptr, base, mask, valid, lim, N: tl.constexpr, UNIT: tl.constexpr,  # type: ignore[no-untyped-def]
                 EVEN: tl.constexpr):  # fmt: skip
    """Inverse of _pack_store: [BT, 16, 8] int32 codes."""
    grp = tl.arange(0, 16)[None, :]
    p = tl.arange(0, 8)[None, None, :]
    if N == 8:
        ptr = wire_ptr + base[:, None, None] + grp[:, :, None] * 8 + p
        return tl.load(ptr, mask=mask, other=0).to(tl.int32)
    if N == 16:
        ptr = wire_ptr.to(tl.pointer_type(tl.uint16)) + (base >> 1)[:, None, None]
        return tl.load(ptr + grp[:, :, None] * 8 + p, mask=mask, other=0).to(tl.int32)
    ptype: tl.constexpr = tl.uint32 if UNIT == 4 else (tl.uint16 if UNIT == 2 else tl.uint8)
    ptr = wire_ptr.to(tl.pointer_type(ptype)) + (base >> (UNIT // 2))[:, None] + grp * (N // UNIT)
    lo = tl.zeros((base.shape[0], 16), tl.uint64)
    hi = tl.zeros((base.shape[0], 16), tl.uint64)
    for q in tl.static_range(N // UNIT):
        if EVEN:
            inside = tl.broadcast_to(valid[:, None], (base.shape[0], 16))
        else:
            inside = valid[:, None] & (grp * N + q * UNIT < lim[:, None])
        piece = tl.load(ptr + q, mask=inside, other=0).to(tl.uint64)
        if 8 * UNIT * q < 64:
            lo = lo | (piece << (8 * UNIT * q))
        else:
            hi = hi | (piece << (8 * UNIT * q - 64))
    pos = (p * N).to(tl.uint64)
    lo3, hi3 = lo[:, :, None], hi[:, :, None]
    code = lo3 >> tl.where(pos < 64, pos, 0)
    if 8 * N > 64:
        spill = tl.where((pos < 64) & (pos + N > 64), hi3 << tl.where(pos < 64, 64 - pos, 0), 0)
        code = tl.where(pos >= 64, hi3 >> tl.where(pos >= 64, pos - 64, 0), code | spill)
    return (code & ((1 << N) - 1)).to(tl.int32)


@triton.jit
def logfmt_decode_kernel(wire_ptr, out_ptr, C, H, NT, ROW, MB, CODE_BYTES, TOTAL,  # type: ignore[no-untyped-def]
                         N: tl.constexpr, UNIT: tl.constexpr, BT: tl.constexpr,
                         STEPS: tl.constexpr, EVEN: tl.constexpr, ALIGNED: tl.constexpr,
                         WIDE: tl.constexpr):  # fmt: skip
    KMAX: tl.constexpr = (1 << (N - 1)) - 1
    for step_i in range(STEPS):
        row, tile, valid = tile_rows(tl.program_id(0) * STEPS + step_i, NT, TOTAL, BT, WIDE)
        col, mask = _elements(row, tile, valid, H, 0, BT, 16, EVEN)
        meta = row * ROW + tile * 8
        small = load_meta(wire_ptr, meta, valid, ALIGNED)
        big = load_meta(wire_ptr, meta + 4, valid, ALIGNED)
        step = (big.to(tl.float64) - small.to(tl.float64)) / (KMAX - 1.0)
        step = tl.where(step == step, step, 0.0)[:, None, None]
        m = tl.where(small == small, small, 0.0).to(tl.float64)[:, None, None]
        base = row * ROW + MB + tile * (16 * N)
        code = _load_unpack(wire_ptr, base, mask, valid, CODE_BYTES - tile * (16 * N), N, UNIT,
                            EVEN)  # fmt: skip
        k = code & KMAX
        # float64(k) - 1.0 via the bits of 2^52 + k, exactly
        km1 = (k.to(tl.int64) | TWO52_BITS).to(tl.float64, bitcast=True) - coef(C, I_TWO52_PLUS1)
        mag = exp_f64(tl.where(k > 0, m + step * km1, 0.0), C)
        mag = tl.where(mag > FLT_MAX_C, FLT_MAX_C, mag).to(tl.float32)
        mag = tl.where(k > 0, mag, 0.0)
        mag = tl.where((code >> (N - 1)) > 0, -mag, mag)
        mag = tl.where((small == small)[:, None, None], mag, float("nan"))
        tl.store(out_ptr + row[:, None, None] * H + col, mag, mask=mask)
