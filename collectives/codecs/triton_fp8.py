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
def fp8_encode_kernel(x_ptr, wire_ptr, H, NT, ROW, MB, TOTAL,  # type: ignore[no-untyped-def]
                      MAN: tl.constexpr, BIAS: tl.constexpr, MAXCODE: tl.constexpr,
                      MAXF: tl.constexpr, POW2: tl.constexpr, BT: tl.constexpr,
                      STEPS: tl.constexpr, EVEN: tl.constexpr, ALIGNED: tl.constexpr,
                      WIDE: tl.constexpr):  # fmt: skip
    for step in range(STEPS):
        row, tile, valid = tile_rows(tl.program_id(0) * STEPS + step, NT, TOTAL, BT, WIDE)
        col, mask = _elements(row, tile, valid, H, BT, EVEN)
        x = tl.load(x_ptr + row[:, None] * H + col, mask=mask, other=0.0).to(tl.float32)
        ab = x.to(tl.int32, bitcast=True) & 0x7FFFFFFF
        top = tl.max(ab, axis=1)
        amax = tl.where(top >= MIN_NORMAL_BITS, top, 0).to(tl.float32, bitcast=True)
        scale = tl.math.div_rn(amax, tl.full(amax.shape, MAXF, tl.float32))
        if POW2:
            bits = tl.where(scale > 0, scale, 1.0).to(tl.int32, bitcast=True)
            up = tl.where((bits & 0x7FFFFF) != 0, (bits & 0x7F800000) + 0x800000, bits)
            scale = up.to(tl.float32, bitcast=True)
        scale = tl.where(amax < FP8_MIN_TILE_AMAX_C, 0.0, scale)
        scale = tl.where(top < 0x7F800000, scale, float("nan"))
        usable = scale > 0
        xf = tl.where(ab >= MIN_NORMAL_BITS, x, 0.0)
        y = tl.math.div_rn(xf, tl.where(usable, scale, 1.0)[:, None])
        code = tl.where(usable[:, None], _fp8_codes(y, MAN, BIAS, MAXCODE), 0)
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
