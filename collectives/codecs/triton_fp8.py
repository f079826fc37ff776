# mypy: disable-error-code="untyped-decorator"
"""Triton FP8 (E4M3/E5M2, optionally power-of-two scales) encode and decode kernels.

A program walks STEPS blocks of BT tile-rows ([BT, 128] elements each); the tile's amax is
an int32 max over |x| bits (which also flags NaN/Inf), the scale a correctly rounded
float32 division as in the reference, and every element one `div_rn` plus integer
rounding to the FP8 grid. Decode forms each FP8 value from its bits (no table gather).
See triton_kernels.py for the launch side and the cost analysis.
"""

from __future__ import annotations

import triton
import triton.language as tl

from collectives.codecs.spec import FLT_MAX, FP8_MIN_TILE_AMAX
from collectives.codecs.triton_common import load_meta, store_meta, tile_rows

FLT_MAX_C = tl.constexpr(FLT_MAX)
FP8_MIN_TILE_AMAX_C = tl.constexpr(FP8_MIN_TILE_AMAX)
MIN_NORMAL_BITS = tl.constexpr(0x00800000)  # spec.FLT_MIN_NORMAL as float32 bits


@triton.jit
def _elements(row, tile, valid, H, BT: tl.constexpr, EVEN: tl.constexpr):  # type: ignore[no-untyped-def]
    """[BT, 128] column index and mask of the tile-rows' elements."""
    col = tile[:, None] * 128 + tl.arange(0, 128)[None, :]
    if EVEN:
        return col, tl.broadcast_to(valid[:, None], (BT, 128))
    return col, valid[:, None] & (col < H)


@triton.jit
def _fp8_codes(y, MAN: tl.constexpr, BIAS: tl.constexpr, MAXCODE: tl.constexpr):  # type: ignore[no-untyped-def]
    """ref.fp8_codes of float32 values already scaled into range."""
    mag = tl.abs(y)
    b = mag.to(tl.int32, bitcast=True)
    S: tl.constexpr = 23 - MAN
    normal = ((b + ((1 << (S - 1)) - 1) + ((b >> S) & 1)) >> S) - ((127 - BIAS) << MAN)
    # mag + 2^(24-BIAS-MAN) rounds mag to the subnormal quantum (nearest even), exactly.
    C: tl.constexpr = 2.0 ** (24 - BIAS - MAN)
    C_BITS: tl.constexpr = (127 + 24 - BIAS - MAN) << 23
    sub = (mag + C).to(tl.int32, bitcast=True) - C_BITS
    code = tl.minimum(tl.where(mag < 2.0 ** (1 - BIAS), sub, normal), MAXCODE)
    return tl.where(y < 0, code | 0x80, code)


@triton.jit
def _fma(a, b, c, EMULATE: tl.constexpr):  # type: ignore[no-untyped-def]
    """a * b + c rounded once (float32). The interpreter's fma rounds twice, so there it is
    emulated: the exact float64 product plus c with the sum's rounding error kept
    (TwoSum), rounded to odd, then to float32; rounding to odd in 53 >= 24 + 2 bits and then
    to nearest in 24 equals one rounding to nearest (Boldo and Melquiond, 2008)."""
    if EMULATE:
        p = a.to(tl.float64) * b.to(tl.float64)
        c64 = c.to(tl.float64)
        s = p + c64
        bb = s - p
        err = (p - (s - bb)) + (c64 - bb)
        bits = s.to(tl.int64, bitcast=True)
        to_odd = tl.where((err > 0) == (s > 0), bits + 1, bits - 1)
        s = tl.where((err != 0) & ((bits & 1) == 0), to_odd.to(tl.float64, bitcast=True), s)
        return s.to(tl.float32)
    return tl.fma(a, b, c)


@triton.jit
def _quotients(xs, nb, y, EMULATE: tl.constexpr):  # type: ignore[no-untyped-def]
    """RN(xs / b) from nb = -b and y = RN(1 / b), without a division (nb, y: [BT, 1]).

    Why this is exact, all values normal (the caller scales the tile so that they are):
    q0 = RN(xs * y) is within 1.5 ulp of Q = xs / b (|xs*y - Q| <= |Q| 2^-24 < 1 ulp, plus
    half an ulp of rounding). q0 + RN(xs - b q0) * y is then within 2^-22 ulp of Q (the
    remainder's and y's relative errors are 2^-24 each, on a term under 1.5 ulp), so its
    rounding q1 is faithful (one of the two floats around Q). With q1 faithful and y within
    relative 2^-24 of 1/b, Markstein's theorem (Muller et al., Handbook of Floating-Point
    Arithmetic, Thm. 4.10 in 2nd ed.) gives: r = xs - b q1 is exact and RN(q1 + r y) =
    RN(Q). One correction alone is not enough: q0 need not be faithful."""
    q = xs * y
    q = _fma(_fma(q, nb, xs, EMULATE), y, q, EMULATE)
    return _fma(_fma(q, nb, xs, EMULATE), y, q, EMULATE)


@triton.jit
def _tile_scales(top, MAXF: tl.constexpr, POW2: tl.constexpr):  # type: ignore[no-untyped-def]
    """ref.fp8_scales from the int32 bits of each tile-row's amax (NaN/Inf flagged above
    0x7F800000): the scale, 0 (near-zero tile) or NaN (poisoned)."""
    amax = tl.where(top >= MIN_NORMAL_BITS, top, 0).to(tl.float32, bitcast=True)
    scale = tl.math.div_rn(amax, tl.full(amax.shape, MAXF, tl.float32))
    if POW2:
        bits = tl.where(scale > 0, scale, 1.0).to(tl.int32, bitcast=True)
        up = tl.where((bits & 0x7FFFFF) != 0, (bits & 0x7F800000) + 0x800000, bits)
        scale = up.to(tl.float32, bitcast=True)
    scale = tl.where(amax < FP8_MIN_TILE_AMAX_C, 0.0, scale)
    return tl.where(top < 0x7F800000, scale, float("nan"))


@triton.jit
def _tile_divisor(top, scale):  # type: ignore[no-untyped-def]
    """Per tile-row (f, -b, y, tiny, live) for _quotients. f = 2^(4 - E), E the exponent of
    amax, scales the tile so that amax * f is in [16, 32): b = scale * f and xs = x * f are
    exact and xs / b = x / scale, and every value _quotients forms is normal for elements
    with |x| >= 2^(E - 60) (|x f| >= 2^-56); y = RN(1 / b). Smaller elements ("tiny", bits
    below `tiny`, subnormals included) have |x / scale| < 2^-51, FP8 magnitude 0: their code
    is 0x80 when x < 0 and RN(x / scale) != 0, i.e. |x| > scale 2^-150 (bits above `live`;
    the tie rounds to +-0, code 0), else 0. An unusable tile (scale 0 or NaN) makes every
    element tiny and none live: all codes 0."""
    usable = scale > 0
    e_bits = top & 0x7F800000
    f = tl.where(usable, ((258 - (top >> 23)) << 23).to(tl.float32, bitcast=True), 1.0)
    b = tl.where(usable, scale * f, 1.0)
    y = tl.math.div_rn(tl.full(b.shape, 1.0, tl.float32), b)
    tiny = tl.where(usable, tl.maximum(e_bits - (60 << 23), MIN_NORMAL_BITS), 0x7FFFFFFF)
    s_bits = scale.to(tl.int32, bitcast=True)
    live = tl.where(usable, tl.maximum(s_bits - (150 << 23), MIN_NORMAL_BITS - 1), 0x7FFFFFFF)
    return f[:, None], -b[:, None], y[:, None], tiny[:, None], live[:, None]


@triton.jit
def _fast_codes(x, ab, scale, top, MAN: tl.constexpr, BIAS: tl.constexpr,  # type: ignore[no-untyped-def]
                MAXCODE: tl.constexpr, EMULATE: tl.constexpr):  # fmt: skip
    """ref.encode_fp8's codes of one block without a per-element division (see
    _tile_divisor and _quotients); on the GPU the FP8 rounding is the hardware's
    cvt.rn.satfinite (equal to ref.fp8_codes except that it keeps the sign of -0, which
    never reaches it: zeros come out of _quotients as +0)."""
    f, nb, y, tiny, live = _tile_divisor(top, scale)
    neg_live = (x < 0) & (ab > live)
    xs = tl.where(ab < tiny, tl.where(neg_live, -(2.0**-80), 0.0), x * f)
    q = _quotients(xs, nb, y, EMULATE)
    if EMULATE:  # the interpreter's float8 casts do not round to nearest even
        return _fp8_codes(q, MAN, BIAS, MAXCODE)
    if MAN == 3:
        return q.to(tl.float8e4nv).to(tl.uint8, bitcast=True)
    return q.to(tl.float8e5).to(tl.uint8, bitcast=True)


@triton.jit
def fp8_encode_kernel(x_ptr, wire_ptr, H, NT, ROW, MB, TOTAL,  # type: ignore[no-untyped-def]
                      MAN: tl.constexpr, BIAS: tl.constexpr, MAXCODE: tl.constexpr,
                      MAXF: tl.constexpr, POW2: tl.constexpr, BT: tl.constexpr,
                      STEPS: tl.constexpr, EVEN: tl.constexpr, ALIGNED: tl.constexpr,
                      WIDE: tl.constexpr, DIVIDE: tl.constexpr = False,
                      EMULATE: tl.constexpr = False):  # fmt: skip
    """DIVIDE: the previous per-element div_rn path (kept for A/B timing); EMULATE: running
    under the interpreter (exact fma emulated, FP8 rounding by integer ops)."""
    for step in range(STEPS):
        row, tile, valid = tile_rows(tl.program_id(0) * STEPS + step, NT, TOTAL, BT, WIDE)
        col, mask = _elements(row, tile, valid, H, BT, EVEN)
        x = tl.load(x_ptr + row[:, None] * H + col, mask=mask, other=0.0).to(tl.float32)
        ab = x.to(tl.int32, bitcast=True) & 0x7FFFFFFF
        top = tl.max(ab, axis=1)
        scale = _tile_scales(top, MAXF, POW2)
        if DIVIDE:
            usable = scale > 0
            xf = tl.where(ab >= MIN_NORMAL_BITS, x, 0.0)
            y = tl.math.div_rn(xf, tl.where(usable, scale, 1.0)[:, None])
            code = tl.where(usable[:, None], _fp8_codes(y, MAN, BIAS, MAXCODE), 0)
        else:
            code = _fast_codes(x, ab, scale, top, MAN, BIAS, MAXCODE, EMULATE)
        tl.store(wire_ptr + (row * ROW + MB)[:, None] + col, code.to(tl.uint8), mask=mask)
        store_meta(wire_ptr, row * ROW + tile * 4, scale, valid, ALIGNED)


@triton.jit
def _fp8_values(code, MAN: tl.constexpr, BIAS: tl.constexpr, MAXCODE: tl.constexpr,  # type: ignore[no-untyped-def]
                INF_CODE: tl.constexpr):  # fmt: skip
    """spec.fp8_decode_table[code] (float32) from the code's bits."""
    c7 = code & 0x7F
    normal = (c7 << (23 - MAN)) + ((127 - BIAS) << 23)
    # exponent field 0: 2^(1-BIAS) * (1 + man/2^MAN) - 2^(1-BIAS) = man * 2^(1-BIAS-MAN), exact
    sub = (normal + (1 << 23)).to(tl.float32, bitcast=True) - 2.0 ** (1 - BIAS)
    value = tl.where(c7 < (1 << MAN), sub, normal.to(tl.float32, bitcast=True))
    if INF_CODE > 0:
        special = tl.where(c7 == INF_CODE, float("inf"), float("nan"))
    else:
        special = tl.full(c7.shape, float("nan"), tl.float32)
    value = tl.where(c7 > MAXCODE, special, value)
    return (value.to(tl.int32, bitcast=True) | ((code & 0x80) << 24)).to(tl.float32, bitcast=True)


@triton.jit
def fp8_decode_kernel(wire_ptr, out_ptr, H, NT, ROW, MB, TOTAL,  # type: ignore[no-untyped-def]
                      MAN: tl.constexpr, BIAS: tl.constexpr, MAXCODE: tl.constexpr,
                      INF_CODE: tl.constexpr, BT: tl.constexpr, STEPS: tl.constexpr,
                      EVEN: tl.constexpr, ALIGNED: tl.constexpr, WIDE: tl.constexpr):  # fmt: skip
    for step in range(STEPS):
        row, tile, valid = tile_rows(tl.program_id(0) * STEPS + step, NT, TOTAL, BT, WIDE)
        col, mask = _elements(row, tile, valid, H, BT, EVEN)
        code = tl.load(wire_ptr + (row * ROW + MB)[:, None] + col, mask=mask, other=0)
        scale = load_meta(wire_ptr, row * ROW + tile * 4, valid, ALIGNED)
        value = _fp8_values(code.to(tl.int32), MAN, BIAS, MAXCODE, INF_CODE) * scale[:, None]
        value = tl.where(
            value > FLT_MAX_C, FLT_MAX_C, tl.where(value < -FLT_MAX_C, -FLT_MAX_C, value)
        )
        # a poisoned tile decodes to the canonical quiet NaN 0x7FC00000
        value = tl.where((scale == scale)[:, None], value, float("nan"))
        tl.store(out_ptr + row[:, None] * H + col, value, mask=mask)
