"""Triton kernels for FP8 and LogFMT-n on CUDA: one pass over the input to encode, one pass
over the wire to decode, bit-identical to the numpy reference.

One program handles ROWS tokens x one 1x128 tile. Identity with the reference rests on:
the same float64 polynomials (constants loaded from a float64 tensor, because Triton turns
Python float literals into float32), IEEE division (`div_rn` in float32; float64 `/` is
already correctly rounded), and no fused multiply-add (`enable_fp_fusion=False` at
launch). BF16 and DeepEP's LogFMT-10 use the torch-ops path. bench/gpu/codec_gpu.py checks
identity and speed on the GPU; with TRITON_INTERPRET=1 the kernels also run on CPU tensors.
"""

from __future__ import annotations

import functools

import torch

from collectives.codecs import detmath, torch_impl
from collectives.codecs.spec import (
    FLT_MAX,
    FLT_MIN_NORMAL,
    FP8_MIN_TILE_AMAX,
    LOGFMT_CLAMP_LN,
    TILE,
    CodecSpec,
    meta_row_bytes,
    num_tiles,
    packed_bytes,
    row_bytes,
)
from collectives.codecs.torch_ops import fp8_table

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - CPU-only installs
    triton = None

ROWS = 4
KERNEL_KINDS = ("fp8", "logfmt")
# Float64 constants by index: ATANH_COEFFS, EXP2_COEFFS, LN2, INV_LN2, SQRT_HALF,
# LOGFMT_CLAMP_LN.
CONSTS = (*detmath.ATANH_COEFFS, *detmath.EXP2_COEFFS, detmath.LN2, detmath.INV_LN2,
          detmath.SQRT_HALF, LOGFMT_CLAMP_LN)  # fmt: skip
NUM_ATANH, NUM_EXP2 = len(detmath.ATANH_COEFFS), len(detmath.EXP2_COEFFS)
I_LN2 = NUM_ATANH + NUM_EXP2
I_INV_LN2, I_SQRT_HALF, I_CLAMP = I_LN2 + 1, I_LN2 + 2, I_LN2 + 3


def available() -> bool:
    """Triton is importable and a CUDA device is present."""
    return triton is not None and torch.cuda.is_available()


@functools.lru_cache(maxsize=16)
def _device_consts(device: str) -> torch.Tensor:
    return torch.tensor(CONSTS, dtype=torch.float64, device=device)


if triton is not None:
    # Triton kernels may read module globals only as constexpr.
    FLT_MIN_NORMAL_C = tl.constexpr(FLT_MIN_NORMAL)
    FLT_MAX_C = tl.constexpr(FLT_MAX)
    FP8_MIN_TILE_AMAX_C = tl.constexpr(FP8_MIN_TILE_AMAX)
    I_LN2_C, I_INV_LN2_C = tl.constexpr(I_LN2), tl.constexpr(I_INV_LN2)
    I_SQRT_HALF_C, I_CLAMP_C = tl.constexpr(I_SQRT_HALF), tl.constexpr(I_CLAMP)
    NA_C, NE_C = tl.constexpr(NUM_ATANH), tl.constexpr(NUM_EXP2)

    @triton.jit
    def _log2_det(v, C):  # type: ignore[no-untyped-def]
        """log2 of positive float64 v: frexp by bits, then detmath.log2_mantissa."""
        bits = v.to(tl.int64, bitcast=True)
        e = ((bits >> 52) & 0x7FF) - 1022
        mant = ((bits & 0x000FFFFFFFFFFFFF) | 0x3FE0000000000000).to(tl.float64, bitcast=True)
        small = mant < tl.load(C + I_SQRT_HALF_C)
        mant = tl.where(small, mant * 2.0, mant)
        e = tl.where(small, e - 1, e)
        u = (mant - 1.0) / (mant + 1.0)
        u2 = u * u
        p = tl.load(C + NA_C - 1)
        for j in tl.static_range(NA_C - 1):
            p = p * u2 + tl.load(C + NA_C - 2 - j)
        return e.to(tl.float64) + (2.0 * u * p) * tl.load(C + I_INV_LN2_C)

    @triton.jit
    def _exp2_det(y, C):  # type: ignore[no-untyped-def]
        k = tl.floor(y + 0.5)
        r = y - k
        p = tl.load(C + NA_C + NE_C - 1)
        for j in tl.static_range(NE_C - 1):
            p = p * r + tl.load(C + NA_C + NE_C - 2 - j)
        scale = ((k.to(tl.int64) + 1023) << 52).to(tl.float64, bitcast=True)
        return p * scale

    @triton.jit
    def _ln_det(v, C):  # type: ignore[no-untyped-def]
        return _log2_det(v, C) * tl.load(C + I_LN2_C)

    @triton.jit
    def _exp_det(y, C):  # type: ignore[no-untyped-def]
        return _exp2_det(y * tl.load(C + I_INV_LN2_C), C)

    @triton.jit
    def _load_tile(x_ptr, T, H, ROWS: tl.constexpr):  # type: ignore[no-untyped-def]
        """(x float32 [ROWS, 128], flushed |x|, element mask, tile-finite [ROWS], rows [ROWS])."""
        rows1 = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
        rows = rows1[:, None]
        col = tl.program_id(1) * 128 + tl.arange(0, 128)[None, :]
        mask = (rows < T) & (col < H)
        x = tl.load(x_ptr + rows * H + col, mask=mask, other=0.0).to(tl.float32)
        ax = tl.abs(x)
        finite = ax < float("inf")
        ax = tl.where(finite & (ax >= FLT_MIN_NORMAL_C), ax, 0.0)
        x = tl.where(ax > 0, x, 0.0)
        tile_finite = tl.min(tl.where(mask, finite, True).to(tl.int32), axis=1) > 0
        return x, ax, mask, tile_finite, rows1

    @triton.jit
    def _store_f32(ptr, value, mask):  # type: ignore[no-untyped-def]
        """Little-endian bytes of float32 `value` at byte pointers `ptr` (unaligned)."""
        bits = value.to(tl.uint32, bitcast=True)
        for i in tl.static_range(4):
            tl.store(ptr + i, ((bits >> (8 * i)) & 0xFF).to(tl.uint8), mask=mask)

    @triton.jit
    def _load_f32(ptr, mask):  # type: ignore[no-untyped-def]
        bits = tl.zeros(ptr.shape, tl.uint32)
        for i in tl.static_range(4):
            byte = tl.load(ptr + i, mask=mask, other=0).to(tl.uint32)
            bits = bits | (byte << (8 * i))
        return bits.to(tl.float32, bitcast=True)

    @triton.jit
    def _fp8_encode(x_ptr, wire_ptr, T, H, ROW, MB,  # type: ignore[no-untyped-def]
                    MAN: tl.constexpr, BIAS: tl.constexpr, MAXCODE: tl.constexpr,
                    MAXF: tl.constexpr, POW2: tl.constexpr, ROWS: tl.constexpr):  # fmt: skip
        x, ax, mask, tile_finite, rows1 = _load_tile(x_ptr, T, H, ROWS)
        rows = rows1[:, None]
        amax = tl.max(ax, axis=1)
        scale = tl.math.div_rn(amax, tl.full(amax.shape, MAXF, tl.float32))
        if POW2:
            bits = tl.where(scale > 0, scale, 1.0).to(tl.int32, bitcast=True)
            up = tl.where((bits & 0x7FFFFF) != 0, (bits & 0x7F800000) + 0x800000, bits)
            scale = up.to(tl.float32, bitcast=True)
        scale = tl.where(amax < FP8_MIN_TILE_AMAX_C, 0.0, scale)
        scale = tl.where(tile_finite, scale, float("nan"))
        usable = (scale > 0)[:, None]
        y = tl.math.div_rn(x, tl.where(usable, scale[:, None], 1.0))
        mag = tl.abs(y)
        b = mag.to(tl.int32, bitcast=True)
        S: tl.constexpr = 23 - MAN
        normal = ((b + ((1 << (S - 1)) - 1) + ((b >> S) & 1)) >> S) - ((127 - BIAS) << MAN)
        v = mag * (2.0 ** (BIAS - 1 + MAN))
        sub = ((v + 8388608.0) - 8388608.0).to(tl.int32)
        code = tl.minimum(tl.where(mag < 2.0 ** (1 - BIAS), sub, normal), MAXCODE)
        code = tl.where(y < 0, code | 0x80, code)
        code = tl.where(usable, code, 0)
        col = tl.program_id(1) * 128 + tl.arange(0, 128)[None, :]
        tl.store(wire_ptr + rows * ROW + MB + col, code.to(tl.uint8), mask=mask)
        meta = wire_ptr + rows1 * ROW + tl.program_id(1) * 4
        _store_f32(meta, scale, rows1 < T)

    @triton.jit
    def _fp8_decode(wire_ptr, table_ptr, out_ptr, T, H, ROW, MB, ROWS: tl.constexpr):  # type: ignore[no-untyped-def]
        rows1 = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
        rows = rows1[:, None]
        col = tl.program_id(1) * 128 + tl.arange(0, 128)[None, :]
        mask = (rows < T) & (col < H)
        code = tl.load(wire_ptr + rows * ROW + MB + col, mask=mask, other=0).to(tl.int32)
        scale = _load_f32(wire_ptr + rows1 * ROW + tl.program_id(1) * 4, rows1 < T)
        value = tl.load(table_ptr + code) * scale[:, None]
        value = tl.where(
            value > FLT_MAX_C, FLT_MAX_C, tl.where(value < -FLT_MAX_C, -FLT_MAX_C, value)
        )
        value = tl.where((scale == scale)[:, None], value, float("nan"))
        tl.store(out_ptr + rows * H + col, value, mask=mask)

    @triton.jit
    def _logfmt_encode(x_ptr, wire_ptr, C, T, H, ROW, MB, CODE_BYTES,  # type: ignore[no-untyped-def]
                       N: tl.constexpr, ROWS: tl.constexpr):  # fmt: skip
        KMAX: tl.constexpr = (1 << (N - 1)) - 1
        x, ax, _, tile_finite, rows1 = _load_tile(x_ptr, T, H, ROWS)
        rows = rows1[:, None]
        amax = tl.max(ax, axis=1).to(tl.float64)
        amin = tl.min(tl.where(ax > 0, ax, float("inf")), axis=1).to(tl.float64)
        zero = amax == 0
        big = _ln_det(tl.where(zero, 1.0, amax), C).to(tl.float32)
        low = _ln_det(tl.where(zero, 1.0, amin), C)
        small = tl.maximum(low, big.to(tl.float64) - tl.load(C + I_CLAMP_C)).to(tl.float32)
        big = tl.where(tile_finite, tl.where(zero, 0.0, big), float("nan"))
        small = tl.where(tile_finite, tl.where(zero, 0.0, small), float("nan"))
        step = (big.to(tl.float64) - small.to(tl.float64)) / (KMAX - 1.0)
        step = tl.where(step == step, step, 0.0)
        safe = tl.where(step > 0, step, 1.0)
        phi = _ln_det((1.0 + _exp_det(safe, C)) * 0.5, C) / safe
        phi = tl.where(step > 0, phi, 0.0)
        m = tl.where(small == small, small, 0.0).to(tl.float64)[:, None]
        lnx = _ln_det(tl.where(ax > 0, ax, 1.0).to(tl.float64), C)
        u = (lnx - m) * (1.0 / safe)[:, None] - phi[:, None]
        k = tl.minimum(tl.maximum(tl.floor(u) + 2.0, 1.0), KMAX * 1.0)
        k = tl.where(step[:, None] > 0, k, 1.0)
        k = tl.where(lnx < m - tl.load(C + I_LN2_C), 0.0, k)
        k = tl.where((ax > 0) & tile_finite[:, None], k, 0.0).to(tl.int64)
        code = tl.where((x < 0) & (k > 0), k | (1 << (N - 1)), k).to(tl.uint64)
        meta = wire_ptr + rows1.to(tl.int64) * ROW + tl.program_id(1) * 8
        _store_f32(meta, small, rows1 < T)
        _store_f32(meta + 4, big, rows1 < T)
        _pack(code, wire_ptr, rows, T, ROW, MB, CODE_BYTES, N, ROWS)

    @triton.jit
    def _pack(code, wire_ptr, rows, T, ROW, MB, CODE_BYTES, N: tl.constexpr, ROWS: tl.constexpr):  # type: ignore[no-untyped-def]
        """Groups of 8 codes -> N bytes (LSB-first bit stream) via two 64-bit words."""
        groups = tl.reshape(code, (ROWS, 16, 8))
        pos = (tl.arange(0, 8) * N).to(tl.uint64)[None, None, :]
        lo_part = tl.where(pos < 64, groups << tl.where(pos < 64, pos, 0), 0)
        hi_shift_left = tl.where(pos >= 64, pos - 64, 0)
        hi_shift_right = tl.where(pos < 64, 64 - pos, 1)
        hi_part = tl.where(pos >= 64, groups << hi_shift_left,
                           tl.where(pos + N > 64, groups >> hi_shift_right, 0))  # fmt: skip
        lo = tl.sum(lo_part, axis=2)[:, :, None]
        hi = tl.sum(hi_part, axis=2)[:, :, None]
        # byte b of each group: bits 8b.. of lo (b < 8) or of hi; one masked [ROWS, 16, 16]
        # store writes the N bytes of all 16 groups contiguously
        b = tl.arange(0, 16)[None, None, :]
        byte = tl.where(b < 8, lo >> (tl.where(b < 8, b, 0) * 8).to(tl.uint64),
                        hi >> (tl.where(b >= 8, b - 8, 0) * 8).to(tl.uint64)) & 0xFF  # fmt: skip
        pos = tl.program_id(1) * 16 * N + tl.arange(0, 16)[None, :, None] * N + b
        inside = (rows[:, :, None] < T) & (b < N) & (pos < CODE_BYTES)
        row_base = rows[:, :, None].to(tl.int64) * ROW + MB
        tl.store(wire_ptr + row_base + pos, byte.to(tl.uint8), mask=inside)

    @triton.jit
    def _unpack(wire_ptr, rows, T, ROW, MB, CODE_BYTES, N: tl.constexpr, ROWS: tl.constexpr):  # type: ignore[no-untyped-def]
        b = tl.arange(0, 16)[None, None, :]
        pos = tl.program_id(1) * 16 * N + tl.arange(0, 16)[None, :, None] * N + b
        inside = (rows[:, :, None] < T) & (b < N) & (pos < CODE_BYTES)
        row_base = rows[:, :, None].to(tl.int64) * ROW + MB
        byte = tl.load(wire_ptr + row_base + pos, mask=inside, other=0).to(tl.uint64)
        lo = tl.sum(tl.where(b < 8, byte << (tl.where(b < 8, b, 0) * 8).to(tl.uint64), 0), axis=2)
        hi = tl.sum(tl.where(b >= 8, byte << (tl.where(b >= 8, b - 8, 0) * 8).to(tl.uint64), 0),
                    axis=2)  # fmt: skip
        pos = (tl.arange(0, 8) * N).to(tl.uint64)[None, None, :]
        lo3, hi3 = lo[:, :, None], hi[:, :, None]
        from_lo = lo3 >> tl.where(pos < 64, pos, 0)
        spill = tl.where(pos + N > 64, hi3 << tl.where(pos < 64, 64 - pos, 0), 0)
        code = tl.where(pos >= 64, hi3 >> tl.where(pos >= 64, pos - 64, 0), from_lo | spill)
        code = tl.reshape(code & ((1 << N) - 1), (ROWS, 128))
        return code.to(tl.int64)

    @triton.jit
    def _logfmt_decode(wire_ptr, out_ptr, C, T, H, ROW, MB, CODE_BYTES,  # type: ignore[no-untyped-def]
                       N: tl.constexpr, ROWS: tl.constexpr):  # fmt: skip
        KMAX: tl.constexpr = (1 << (N - 1)) - 1
        rows1 = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
        rows = rows1[:, None]
        col = tl.program_id(1) * 128 + tl.arange(0, 128)[None, :]
        meta = wire_ptr + rows1.to(tl.int64) * ROW + tl.program_id(1) * 8
        small = _load_f32(meta, rows1 < T)
        big = _load_f32(meta + 4, rows1 < T)
        step = (big.to(tl.float64) - small.to(tl.float64)) / (KMAX - 1.0)
        step = tl.where(step == step, step, 0.0)
        code = _unpack(wire_ptr, rows, T, ROW, MB, CODE_BYTES, N, ROWS)
        k = code & KMAX
        m = tl.where(small == small, small, 0.0).to(tl.float64)[:, None]
        y = m + step[:, None] * (k.to(tl.float64) - 1.0)
        mag = _exp_det(tl.where(k > 0, y, 0.0), C)
        mag = tl.where(mag > FLT_MAX_C, FLT_MAX_C, mag).to(tl.float32)
        mag = tl.where(k > 0, mag, 0.0)
        mag = tl.where((code >> (N - 1)) > 0, -mag, mag)
        mag = tl.where((small == small)[:, None], mag, float("nan"))
        tl.store(out_ptr + rows.to(tl.int64) * H + col, mag, mask=(rows < T) & (col < H))


def _grid(num_tokens: int, hidden: int) -> tuple[int, int]:
    return (triton.cdiv(num_tokens, ROWS), num_tiles(hidden))


def encode(spec: CodecSpec, x: torch.Tensor) -> torch.Tensor:
    """[T, H] float32 or bfloat16 -> flat uint8 wire; BF16 / DeepEP via torch ops."""
    if spec.kind not in KERNEL_KINDS or x.shape[0] == 0:
        return torch_impl.encode(spec, x.float())
    x = x.contiguous()
    num_tokens, hidden = x.shape
    row, mb = row_bytes(spec, hidden), meta_row_bytes(spec, hidden)
    wire = torch.empty(num_tokens * row, dtype=torch.uint8, device=x.device)
    grid = _grid(num_tokens, hidden)
    if spec.kind == "fp8":
        f = spec.fp8
        assert f is not None
        _fp8_encode[grid](x, wire, num_tokens, hidden, row, mb, MAN=f.man_bits, BIAS=f.bias,
                          MAXCODE=f.max_code, MAXF=f.max_finite, POW2=spec.pow2_scale,
                          ROWS=ROWS, enable_fp_fusion=False)  # fmt: skip
    else:
        code_bytes = packed_bytes(hidden, spec.bits)
        _logfmt_encode[grid](
            x,
            wire,
            _device_consts(str(x.device)),
            num_tokens,
            hidden,
            row,
            mb,
            code_bytes,
            N=spec.bits,
            ROWS=ROWS,
            enable_fp_fusion=False,
        )
    return wire


def decode(spec: CodecSpec, wire: torch.Tensor, num_tokens: int, hidden: int) -> torch.Tensor:
    if spec.kind not in KERNEL_KINDS or num_tokens == 0:
        return torch_impl.decode(spec, wire, num_tokens, hidden)
    row, mb = row_bytes(spec, hidden), meta_row_bytes(spec, hidden)
    out = torch.empty((num_tokens, hidden), dtype=torch.float32, device=wire.device)
    grid = _grid(num_tokens, hidden)
    if spec.kind == "fp8":
        assert spec.fp8 is not None
        table = fp8_table(spec.fp8.name, str(wire.device))
        _fp8_decode[grid](wire, table, out, num_tokens, hidden, row, mb, ROWS=ROWS,
                          enable_fp_fusion=False)  # fmt: skip
    else:
        code_bytes = packed_bytes(hidden, spec.bits)
        _logfmt_decode[grid](
            wire,
            out,
            _device_consts(str(wire.device)),
            num_tokens,
            hidden,
            row,
            mb,
            code_bytes,
            N=spec.bits,
            ROWS=ROWS,
            enable_fp_fusion=False,
        )
    return out


__all__ = ["TILE", "available", "decode", "encode"]
