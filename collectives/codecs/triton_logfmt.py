# mypy: disable-error-code="untyped-decorator"
"""Triton LogFMT-n encode and decode kernels (n = 4..16).

A program walks STEPS blocks of BT tile-rows, each viewed as [BT, 16 groups, 8 codes]: 8
codes of n bits are exactly n bytes of the LSB-first bit stream, so a group is packed in
registers into two 64-bit words and written as n/U pieces of U = 4, 2 or 1 bytes (the
widest that n and the row alignment allow), either each piece from its own thread or, staged,
all of them moved to consecutive lanes first (_pack_store); n = 8 and n = 16 store the
codes directly.
The per-tile constants (m, M, step, 1/step, the cut offset phi, m - ln 2) are formed once
per tile-row; every element costs one ln in float64 with the reference's exact operation
sequence (encode; triton_common.py) or a float32 exp2 polynomial (decode).
"""

from __future__ import annotations

import triton
import triton.language as tl

from collectives.codecs import detmath
from collectives.codecs.spec import FLT_MAX, FLT_MIN_NORMAL
from collectives.codecs.triton_common import (
    I_CLAMP,
    I_INV_LN2,
    I_LN2,
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
FLT_MIN_C = tl.constexpr(FLT_MIN_NORMAL)
# detmath.EXP2_F32_COEFFS (float32 values; Triton keeps a float literal as float32)
EXP2_F32_1, EXP2_F32_2, EXP2_F32_3, EXP2_F32_4, EXP2_F32_5, EXP2_F32_6 = (
    tl.constexpr(c) for c in detmath.EXP2_F32_COEFFS[1:]
)
# Bound on |lg2.approx.ftz.f32(f) - log2(f)| for f in [1, 2) that the encoder's fast path
# assumes (_levels_fast). Over all 2^23 such f an H200 errs by at most 1.598e-7 (2^-22.58,
# the PTX manual's 2^-22.6); bench/gpu/codec_gpu.py re-checks it exhaustively on each run.
LG2_ERR = tl.constexpr(2.0**-22)
# u + 1.5 * 2^52 rounds u to an integer n, which the low 32 bits then hold (|n| < 2^31).
ROUND_MAGIC = tl.constexpr(1.5 * 2.0**52)
# the fast path's bound holds for |u| < 2^31: tiles with ln 2 / s above this go exact
FAST_MAX_SLOPE = tl.constexpr(65536.0)


@triton.jit
def _elements(row, tile, valid, H, g0, BT: tl.constexpr, G: tl.constexpr, EVEN: tl.constexpr):  # type: ignore[no-untyped-def]
    """[BT, G, 8] column index and mask of groups g0 .. g0 + G - 1 of the tile-rows."""
    col = (tile[:, None, None] * 128 + (g0 + tl.arange(0, G))[None, :, None] * 8
           + tl.arange(0, 8)[None, None, :])  # fmt: skip
    if EVEN:
        return col, tl.broadcast_to(valid[:, None, None], (BT, G, 8))
    return col, valid[:, None, None] & (col < H)


@triton.jit
def _tile_stats(x_ptr, row, tile, valid, H, BT: tl.constexpr, EVEN: tl.constexpr):  # type: ignore[no-untyped-def]
    """[BT] int32 bits of each tile-row's max |x| (NaN/Inf included) and of its min non-zero
    |x| after subnormals are flushed (0x7F800000 when there is none)."""
    col, mask = _elements(row, tile, valid, H, 0, BT, 16, EVEN)
    x = tl.load(x_ptr + row[:, None, None] * H + col, mask=mask, other=0.0).to(tl.float32)
    ab = x.to(tl.int32, bitcast=True) & 0x7FFFFFFF
    top = tl.max(tl.max(ab, axis=2), axis=1)
    ab = tl.where(ab >= 0x00800000, ab, 0)
    return top, tl.min(tl.min(tl.where(ab > 0, ab, 0x7F800000), axis=2), axis=1)


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
def _tile_chain(wire_ptr, C, top, low, row, tile, valid, ROW, KMAX: tl.constexpr,  # type: ignore[no-untyped-def]
                ALIGNED: tl.constexpr):  # fmt: skip
    """The per-tile float64 chain from _tile_stats' bits: m and M stored on the wire, and
    (m as float32, s, 1/s or 1, phi, m or 0, finite)."""
    finite = top < 0x7F800000
    small, big = _tile_meta(tl.where(top >= 0x00800000, top, 0), low, finite, C)
    step, inv, phi, m = _tile_params(small, big, C, KMAX)
    meta = row * ROW + tile * 8
    store_meta(wire_ptr, meta, small, valid, ALIGNED)
    store_meta(wire_ptr, meta + 4, big, valid, ALIGNED)
    return small, step, inv, phi, m, finite


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
def _log2_mantissa(mant, EMULATE: tl.constexpr):  # type: ignore[no-untyped-def]
    """log2 of float32 mant in [1, 2) within LG2_ERR, as float64: the hardware's
    lg2.approx (one MUFU instruction; no subnormal inputs, so .ftz) on the GPU. Under the
    interpreter numpy's log2 (within 2^-24) pushed 0.9 LG2_ERR up or down by the mantissa's
    last bit, so that the CPU tests see errors of the size the tolerances must absorb."""
    if EMULATE:
        push = tl.where((mant.to(tl.int32, bitcast=True) & 1) == 0, 0.9, -0.9) * LG2_ERR
        return tl.log2(mant).to(tl.float64) + push.to(tl.float64)
    lg2 = tl.inline_asm_elementwise("lg2.approx.ftz.f32 $0, $1;", "=f,f", [mant],
                                    dtype=tl.float32, is_pure=True, pack=1)  # fmt: skip
    return lg2.to(tl.float64)


@triton.jit
def _fast_params(m, inv, phi, mlow, C):  # type: ignore[no-untyped-def]
    """Per-tile constants of _levels_fast from _tile_folded's (all [BT, 1, 1] float64).

    With lx = log2|x| = e + l (l the log2 of the mantissa in [1, 2)), the reference's
    u = (ln|x| - m) / s - phi is lx * a - b, a = ln2 / s, b = m / s + phi. lo and hi are
    -(b +- tau) - 1/2 so that lx * a + lo rounds to floor(u - tau) (hi: u + tau), tau
    bounding |u' - u| for the fast path's u' (see _levels_fast); the zero cut
    (ln|x| < m - ln 2) is at lx = z, decided outside z +- zt."""
    a = coef(C, I_LN2) * inv
    b = m * inv + phi
    tau = inv * (coef(C, I_LN2) * LG2_ERR + 1e-12) + 1e-9
    z = mlow * coef(C, I_INV_LN2)
    zt = LG2_ERR + 1e-12 * (2.0 + 2.0 * tl.abs(m))
    # a tile that must go exact: no element is sure of the zero cut, every non-zero one is
    # near it (so _levels_fast marks it), which spares a per-element test of the flag
    exact = a > FAST_MAX_SLOPE
    zsure = tl.where(exact, float("-inf"), z - zt)
    zmaybe = tl.where(exact, float("inf"), z + zt)
    return a, -(b + tau) - 0.5, -(b - tau) - 0.5, zsure, zmaybe


@triton.jit
def _levels_fast(ab, fp, KMAX: tl.constexpr, EMULATE: tl.constexpr):  # type: ignore[no-untyped-def]
    """(k, near): _levels from a float32 log2 of the mantissa, and which elements it cannot
    decide (to be redone exactly): k equals _levels' wherever near is False.

    Error budget, in units of u (a level is one unit): lx' = e + l' with |l' - l| <=
    LG2_ERR (e exact; the sum exact in float64), so |lx' a - lx a| <= LG2_ERR ln2 / s.
    The float64 steps here and the reference's own (its ln is a 7-term polynomial, within
    1e-13 of ln; the subtractions and products round at 2^-53 of values below 2^8 / s) stay
    under 1e-12 / s + 1e-9: tau covers both. Rounding u -+ tau - 1/2 to integers n_lo, n_hi
    gives floor(u -+ tau) (a tie only where u -+ tau is an integer, which puts that end on
    the other side of the cut it touches); n_lo == n_hi, or a cut n_hi outside the
    reference's clip range [0, KMAX - 2], fixes k = clip(n_lo + 2, 1, KMAX). lx' below
    z - zt (above z + zt) fixes the zero cut. Tiles whose slope a exceeds FAST_MAX_SLOPE
    (|u| could pass 2^31; there 2 tau < 0.04 keeps n_hi - n_lo <= 1) go exact (through
    _fast_params' zt)."""
    a, lo, hi, zsure, zmaybe = fp
    keep = ab >= 0x00800000
    mant = ((ab & 0x7FFFFF) | ONE_F32_BITS).to(tl.float32, bitcast=True)
    # float64(e) through the bits of 2^52 + 2^29 + e, exactly
    ed = (((ab >> 23) + ((1 << 29) - 127)).to(tl.int64) | TWO52_BITS).to(tl.float64, bitcast=True)
    lx = (ed - (2.0**52 + 2.0**29)) + _log2_mantissa(mant, EMULATE)
    n_lo = (tl.fma(lx, a, lo) + ROUND_MAGIC).to(tl.int64, bitcast=True).to(tl.int32)
    n_hi = (tl.fma(lx, a, hi) + ROUND_MAGIC).to(tl.int64, bitcast=True).to(tl.int32)
    zero = (lx < zsure) | ~keep
    cut = (n_lo != n_hi) & (n_hi.to(tl.uint32, bitcast=True) <= KMAX - 2)
    near = keep & (cut | ((lx < zmaybe) & ~zero))
    return tl.where(zero, 0, tl.minimum(tl.maximum(n_lo + 2, 1), KMAX)), near


@triton.jit
def _pack_store(code, wire_ptr, base, mask, valid, lim, g0, N: tl.constexpr, UNIT: tl.constexpr,  # type: ignore[no-untyped-def]
                EVEN: tl.constexpr, STAGED: tl.constexpr = False):  # fmt: skip
    """Write [BT, G, 8] n-bit codes of groups g0.. at byte `base` [BT] of each tile's code
    bytes; `lim` [BT] is the number of code bytes left in the row from `base` (a multiple
    of UNIT; ignored when EVEN, as every tile then has all its 16n bytes). Widths other
    than 8 and 16 write each group as N / UNIT pieces: one store per piece from the thread
    that packed the group (each lane of a warp then hits its own sector), or with STAGED
    all pieces as one [BT, G, P] tensor (P the next power of two, the padding masked off)
    whose addresses run along the pieces, so that the compiler moves them (through shared
    memory) to consecutive lanes and a warp writes whole runs of a tile's bytes."""
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
        PIECES: tl.constexpr = N // UNIT
        wire = wire_ptr.to(tl.pointer_type(ptype))
        if STAGED:
            P: tl.constexpr = 1 if PIECES == 1 else (2 if PIECES == 2 else (
                4 if PIECES <= 4 else (8 if PIECES <= 8 else 16)))  # fmt: skip
            q = tl.arange(0, P)[None, None, :]
            shift = (q * (8 * UNIT)).to(tl.uint64)
            piece = lo[:, :, None] >> tl.where(shift < 64, shift, 0)
            if 8 * N > 64:
                high = hi[:, :, None] >> tl.where(shift >= 64, shift - 64, 0)
                piece = tl.where(shift < 64, piece, high)
            ptr = wire + (base >> (UNIT // 2))[:, None, None] + grp[:, :, None] * PIECES + q
            inside = valid[:, None, None] & (q < PIECES)
            if EVEN:
                inside = tl.broadcast_to(inside, (BT, G, P))
            else:
                inside = inside & (grp[:, :, None] * N + q * UNIT < lim[:, None, None])
            tl.store(ptr, (piece & ((1 << (8 * UNIT)) - 1)).to(ptype), mask=inside)
        else:
            ptr = wire + (base >> (UNIT // 2))[:, None] + grp * PIECES
            for q in tl.static_range(PIECES):
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
def _load_bits(x_ptr, row, tile, valid, H, g0, BT: tl.constexpr, G: tl.constexpr,  # type: ignore[no-untyped-def]
               EVEN: tl.constexpr, live):  # fmt: skip
    """int32 bits of the [BT, G, 8] elements of groups g0.. (zeros where not `live`)."""
    col, mask = _elements(row, tile, valid, H, g0, BT, G, EVEN)
    xb = tl.load(x_ptr + row[:, None, None] * H + col, mask=mask & live, other=0.0)
    return xb.to(tl.float32).to(tl.int32, bitcast=True)


@triton.jit
def _encode_groups(xb, wire_ptr, fix_ptr, C, row, tile, valid, H, NT, ROW, MB, CODE_BYTES,  # type: ignore[no-untyped-def]
                   TOTAL, g0, tp, fp, N: tl.constexpr, UNIT: tl.constexpr, BT: tl.constexpr,
                   G: tl.constexpr, EVEN: tl.constexpr, FAST: tl.constexpr,
                   DEFER: tl.constexpr, EMULATE: tl.constexpr, STAGED: tl.constexpr):  # fmt: skip
    """Codes of groups g0 .. g0 + G - 1 of the tile-rows, given the per-tile parameters
    tp from _tile_folded (fp from _fast_params); written to the wire. FAST: levels from
    _levels_fast; an element near a cut gets its chunk redone exactly here (a block-wide
    vote and branch), or with DEFER its 8-code group is listed in fix_ptr (count at [0], group
    ids (tile-row * 16 + group) from [2]) for logfmt_fixup_kernel, and coded fast meanwhile."""
    KMAX: tl.constexpr = (1 << (N - 1)) - 1
    _, mask = _elements(row, tile, valid, H, g0, BT, G, EVEN)
    m, inv, phi, mlow = tp
    if FAST:
        k, near = _levels_fast(xb & 0x7FFFFFFF, fp, KMAX, EMULATE)
        if DEFER:
            near_g = tl.max(near.to(tl.int32), axis=2) > 0  # [BT, G], within a thread
            gid = (row * NT + tile)[:, None] * 16 + (g0 + tl.arange(0, G))[None, :]
            slot = tl.atomic_add(fix_ptr + tl.zeros_like(gid), 1, mask=near_g, sem="relaxed")
            # (a slot past the list's end could only come from a count that a failed launch
            # of the fixup kernel left behind)
            tl.store(fix_ptr + 2 + slot, gid.to(tl.int32), mask=near_g & (slot < TOTAL * 16))
        elif tl.max(near.to(tl.int32)) > 0:
            k = _levels(xb & 0x7FFFFFFF, m, inv, phi, mlow, C, KMAX)
    else:
        k = _levels(xb & 0x7FFFFFFF, m, inv, phi, mlow, C, KMAX)
    code = tl.where((xb < 0) & (k > 0), k | (1 << (N - 1)), k)
    base = row * ROW + MB + tile * (16 * N)
    _pack_store(code, wire_ptr, base, mask, valid, CODE_BYTES - tile * (16 * N), g0, N, UNIT,
                EVEN, STAGED)  # fmt: skip


@triton.jit
def logfmt_encode_kernel(x_ptr, wire_ptr, fix_ptr, C, H, NT, ROW, MB, CODE_BYTES, TOTAL,  # type: ignore[no-untyped-def]
                         N: tl.constexpr, UNIT: tl.constexpr, BT: tl.constexpr,
                         STEPS: tl.constexpr, G: tl.constexpr, EVEN: tl.constexpr,
                         ALIGNED: tl.constexpr, WIDE: tl.constexpr, FAST: tl.constexpr = True,
                         DEFER: tl.constexpr = False, EMULATE: tl.constexpr = False,
                         STAGED: tl.constexpr = False):  # fmt: skip
    """Per block: the tile statistics over whole tile-rows, then the codes in 16/G chunks of
    G groups (a loop kept rolled, so registers hold only a chunk's elements while the
    per-tile float64 work is shared by all 128 elements of a tile-row). Each chunk's load
    is issued before the previous chunk is coded (on an H200 LogFMT-8 went from 76 to 73 us
    at 4096 x 7168, LogFMT-10 from 324 to 302 us at 16384 x 7168; Triton's own pipelining of
    the loop, num_stages=2, was slower)."""
    KMAX: tl.constexpr = (1 << (N - 1)) - 1
    for step_i in range(STEPS):
        row, tile, valid = tile_rows(tl.program_id(0) * STEPS + step_i, NT, TOTAL, BT, WIDE)
        top, low = _tile_stats(x_ptr, row, tile, valid, H, BT, EVEN)
        _, step, inv, phi, m, finite = _tile_chain(wire_ptr, C, top, low, row, tile, valid, ROW,
                                                   KMAX, ALIGNED)  # fmt: skip
        tp = _tile_folded(step, inv, phi, m, finite, C)
        fp = _fast_params(*tp, C)
        xb = _load_bits(x_ptr, row, tile, valid, H, 0, BT, G, EVEN, True)
        for chunk in tl.range(0, 16 // G, loop_unroll_factor=1):
            # the next chunk's load goes out before this chunk's work (none after the last)
            nxt = _load_bits(x_ptr, row, tile, valid, H, (chunk + 1) * G, BT, G, EVEN,
                             chunk + 1 < 16 // G)  # fmt: skip
            _encode_groups(xb, wire_ptr, fix_ptr, C, row, tile, valid, H, NT, ROW, MB,
                           CODE_BYTES, TOTAL, chunk * G, tp, fp, N, UNIT, BT, G, EVEN, FAST, DEFER,
                           EMULATE, STAGED)  # fmt: skip
            xb = nxt


@triton.jit
def logfmt_fixup_kernel(x_ptr, wire_ptr, fix_ptr, C, H, NT, ROW, MB, CODE_BYTES, TOTAL, PROGRAMS,  # type: ignore[no-untyped-def]
                        N: tl.constexpr, UNIT: tl.constexpr, E: tl.constexpr,
                        EVEN: tl.constexpr, ALIGNED: tl.constexpr, WIDE: tl.constexpr):  # fmt: skip
    """Recode exactly the 8-code groups that logfmt_encode_kernel (DEFER) listed in fix_ptr:
    E groups per step, programs striding over the list. Each group's tile parameters come
    from the m and M already on the wire (the encoder formed them from the same float32
    values), its levels from _levels, its n bytes overwrite the fast codes. The program
    that finishes last (fix_ptr[1] counts them) empties the list for the next encode, so
    that no separate kernel has to: every program has read the count by then."""
    KMAX: tl.constexpr = (1 << (N - 1)) - 1
    count = tl.sum(tl.load(fix_ptr + tl.arange(0, 1)), axis=0)  # a 0-d scalar (interpreter too)
    count = tl.minimum(count, TOTAL * 16)
    start = tl.program_id(0) * E
    while start < count:
        idx = start + tl.arange(0, E)
        start += PROGRAMS * E
        live = idx < count
        gid = tl.load(fix_ptr + 2 + idx, mask=live, other=0)
        if WIDE:
            gid = gid.to(tl.int64)
        tr = gid // 16
        g = gid - tr * 16
        row = tr // NT
        tile = tr - row * NT
        meta = row * ROW + tile * 8
        small = load_meta(wire_ptr, meta, live, ALIGNED)
        big = load_meta(wire_ptr, meta + 4, live, ALIGNED)
        step, inv, phi, m = _tile_params(small, big, C, KMAX)
        m3, inv3, phi3, mlow3 = _tile_folded(step, inv, phi, m, small == small, C)
        col = (tile * 128 + g * 8)[:, None, None] + tl.arange(0, 8)[None, None, :]
        if EVEN:
            mask = tl.broadcast_to(live[:, None, None], (E, 1, 8))
        else:
            mask = live[:, None, None] & (col < H)
        xb = tl.load(x_ptr + row[:, None, None] * H + col, mask=mask, other=0.0).to(tl.float32)
        xb = xb.to(tl.int32, bitcast=True)
        k = _levels(xb & 0x7FFFFFFF, m3, inv3, phi3, mlow3, C, KMAX)
        code = tl.where((xb < 0) & (k > 0), k | (1 << (N - 1)), k)
        base = row * ROW + MB + tile * (16 * N) + g * N
        _pack_store(code, wire_ptr, base, mask, live, CODE_BYTES - tile * (16 * N) - g * N, 0,
                    N, UNIT, EVEN)  # fmt: skip
    done = tl.atomic_add(fix_ptr + 1, 1, sem="acq_rel")  # after this program's read of the count
    tl.store(fix_ptr + tl.arange(0, 2), tl.zeros((2,), tl.int32), mask=done == PROGRAMS - 1)


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
def _exp2_poly(r):  # type: ignore[no-untyped-def]
    """detmath.exp2_fraction_f32: 2^r for float32 r in [-1/2, 1/2] (float32 Horner)."""
    p = r * EXP2_F32_6 + EXP2_F32_5
    p = p * r + EXP2_F32_4
    p = p * r + EXP2_F32_3
    p = p * r + EXP2_F32_2
    p = p * r + EXP2_F32_1
    return p * r + 1.0


@triton.jit
def _exp2_split(e0, y):  # type: ignore[no-untyped-def]
    """ref_logfmt.exp2_split: float32 2^(e0 + y) for int32 e0 and float32 y >= 0 (float32
    Horner with detmath's float32 coefficients, as float32 literals; no fma at launch)."""
    nf = tl.floor(y + 0.5)
    p = _exp2_poly(y - nf)
    n = e0 + nf.to(tl.int32)
    scale = ((tl.minimum(tl.maximum(n, -125), 127) + 127) << 23).to(tl.float32, bitcast=True)
    value = tl.minimum(p * scale * tl.where(n > 127, 2.0, 1.0), FLT_MAX_C)
    value = tl.where(n < -125, FLT_MIN_C, value)
    return tl.where(n > 128, FLT_MAX_C, value)


@triton.jit
def logfmt_decode_kernel(wire_ptr, out_ptr, C, H, NT, ROW, MB, CODE_BYTES, TOTAL,  # type: ignore[no-untyped-def]
                         N: tl.constexpr, UNIT: tl.constexpr, BT: tl.constexpr,
                         STEPS: tl.constexpr, EVEN: tl.constexpr, ALIGNED: tl.constexpr,
                         WIDE: tl.constexpr):  # fmt: skip
    """Per tile-row the float64 step and the float32 decode constants (e0, mf, s2 of
    ref_logfmt.logfmt_decode_params), then per element float32 work only."""
    KMAX: tl.constexpr = (1 << (N - 1)) - 1
    for step_i in range(STEPS):
        row, tile, valid = tile_rows(tl.program_id(0) * STEPS + step_i, NT, TOTAL, BT, WIDE)
        col, mask = _elements(row, tile, valid, H, 0, BT, 16, EVEN)
        meta = row * ROW + tile * 8
        small = load_meta(wire_ptr, meta, valid, ALIGNED)
        big = load_meta(wire_ptr, meta + 4, valid, ALIGNED)
        step = (big.to(tl.float64) - small.to(tl.float64)) / (KMAX - 1.0)
        step = tl.where(step == step, step, 0.0)
        m2 = tl.where(small == small, small, 0.0).to(tl.float64) * coef(C, I_INV_LN2)
        e0d = tl.floor(m2)
        mf = (m2 - e0d).to(tl.float32)[:, None, None]
        s2 = (step * coef(C, I_INV_LN2)).to(tl.float32)[:, None, None]
        e0 = e0d.to(tl.int32)[:, None, None]
        base = row * ROW + MB + tile * (16 * N)
        code = _load_unpack(wire_ptr, base, mask, valid, CODE_BYTES - tile * (16 * N), N, UNIT,
                            EVEN)  # fmt: skip
        k = code & KMAX
        # A block whose tiles are all finite with e0 in [-125, 94] has every level's 2^(e0+n)
        # (n in [0, 33]) a normal float32 scale and every p * 2^(e0+n) finite: exp2_split's
        # clamps cannot fire there, so the block skips them (a block-uniform branch). Only
        # for LogFMT-8, where an H200 measured it faster (55.4 against 62.4 us at 4096 x 7168);
        # LogFMT-10 went from 72.3 to 91.1 us with it, the other widths are unmeasured.
        safe = (small == small) & (e0d >= -125.0) & (e0d <= 94.0)
        if N == 8 and tl.min(safe.to(tl.int32)) > 0:
            y = mf + s2 * (k - 1).to(tl.float32)  # k = 0: any value, selected away below
            nf = tl.floor(y + 0.5)
            scale = ((e0 + 127 + nf.to(tl.int32)) << 23).to(tl.float32, bitcast=True)
            mag = tl.where(k > 0, _exp2_poly(y - nf) * scale, 0.0)
            mag = tl.where((code >> (N - 1)) > 0, -mag, mag)
        else:
            y = mf + s2 * (tl.maximum(k, 1) - 1).to(tl.float32)
            mag = tl.where(k > 0, _exp2_split(e0, y), 0.0)
            mag = tl.where((code >> (N - 1)) > 0, -mag, mag)
            mag = tl.where((small == small)[:, None, None], mag, float("nan"))
        tl.store(out_ptr + row[:, None, None] * H + col, mag, mask=mask)
