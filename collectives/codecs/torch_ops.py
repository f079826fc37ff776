"""Every codec in plain torch tensor ops: runs on CPU and CUDA tensors alike.

The same arithmetic as the numpy reference (ref.py, ref_logfmt.py), in the same operation
order, so the bytes match bit for bit; CI proves it on CPU tensors, bench/gpu/codec_gpu.py
on GPUs. Bit packing uses a shift table instead of numpy's packbits. This path is the
portable fallback; triton_kernels.py is the fast one on CUDA.
"""

from __future__ import annotations

import functools

import torch

from collectives.codecs import detmath
from collectives.codecs.detmath import INV_LN2, LN2
from collectives.codecs.spec import (
    BF16_NAN,
    FLT_MAX,
    FLT_MIN_NORMAL,
    FP8_FORMATS,
    FP8_MIN_TILE_AMAX,
    TILE,
    CodecSpec,
    fp8_decode_table,
    meta_row_bytes,
    num_tiles,
    packed_bytes,
    row_bytes,
)

F32, F64, I64 = torch.float32, torch.float64, torch.int64


def log2_det(x: torch.Tensor) -> torch.Tensor:
    mant, exp = torch.frexp(x)
    small = mant < detmath.SQRT_HALF
    mant = torch.where(small, mant * 2.0, mant)
    exp = torch.where(small, exp - 1, exp)
    return exp.to(F64) + detmath.log2_mantissa(mant)


def exp2_det(y: torch.Tensor) -> torch.Tensor:
    k = torch.floor(y + 0.5)
    scale = ((k.to(I64) + 1023) << 52).view(F64)
    return detmath.exp2_fraction(y - k) * scale


def ln_det(x: torch.Tensor) -> torch.Tensor:
    return log2_det(x) * LN2


def exp_det(y: torch.Tensor) -> torch.Tensor:
    return exp2_det(y * INV_LN2)


def flush_subnormals(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x.abs() < FLT_MIN_NORMAL, torch.zeros_like(x), x)


def to_tiles(x: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    num_tokens, hidden = x.shape
    pad = num_tiles(hidden) * TILE - hidden
    return torch.nn.functional.pad(x, (0, pad), value=fill).reshape(num_tokens, -1, TILE)


def from_tiles(xt: torch.Tensor, hidden: int) -> torch.Tensor:
    return xt.reshape(xt.shape[0], -1)[:, :hidden]


def bf16_bits(x: torch.Tensor) -> torch.Tensor:
    bits = x.contiguous().view(torch.int32).to(I64) & 0xFFFFFFFF
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return torch.where(torch.isnan(x), torch.full_like(rounded, BF16_NAN), rounded)


def wrap_signed(v: torch.Tensor, bits: int, dtype: torch.dtype) -> torch.Tensor:
    """Unsigned `bits`-bit values (int64) -> the signed integer dtype with the same bits."""
    return torch.where(v >= 1 << (bits - 1), v - (1 << bits), v).to(dtype)


def bf16_value(bits: torch.Tensor) -> torch.Tensor:
    return wrap_signed(bits.to(I64) << 16, 32, torch.int32).view(F32)


def _shift_table(bits: int, device: torch.device) -> torch.Tensor:
    """d[j, b] = bits*j - 8*b: where code j of a group of 8 meets byte b of its `bits` bytes."""
    j = torch.arange(8, device=device)[:, None]
    b = torch.arange(bits, device=device)[None, :]
    return bits * j - 8 * b


def _shift(v: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """v << d where d >= 0, v >> -d where d < 0 (shift counts clamped into 0..63)."""
    return torch.where(d >= 0, v << d.clamp(0, 63), v >> (-d).clamp(0, 63))


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """[T, n] codes -> [T, ceil(n*bits/8)] uint8, the LSB-first bit stream of ref.pack_codes."""
    num_tokens, num = codes.shape
    groups = -(-num // 8)
    c = torch.nn.functional.pad(codes, (0, groups * 8 - num)).reshape(num_tokens, groups, 8, 1)
    parts = _shift(c, _shift_table(bits, codes.device)) & 0xFF
    out = parts.sum(dim=2).to(torch.uint8).reshape(num_tokens, -1)
    return out[:, : packed_bytes(num, bits)]


def unpack_codes(data: torch.Tensor, num: int, bits: int) -> torch.Tensor:
    num_tokens, nbytes = data.shape
    groups = -(-num // 8)
    d = torch.nn.functional.pad(data.to(I64), (0, groups * bits - nbytes))
    d = d.reshape(num_tokens, groups, 1, bits)
    parts = _shift(d, -_shift_table(bits, data.device)) & ((1 << bits) - 1)
    return parts.sum(dim=3).reshape(num_tokens, -1)[:, :num]


def finite_abs(xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    finite = torch.isfinite(xt)
    return finite.all(dim=-1), torch.where(finite, xt.abs(), torch.zeros_like(xt))


def f32_bytes(meta: torch.Tensor) -> torch.Tensor:
    """[T, k] float32 -> [T, 4k] uint8 (little endian)."""
    return meta.to(F32).contiguous().view(torch.uint8).reshape(meta.shape[0], -1)


def rows(meta_bytes: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    return torch.cat([meta_bytes, codes.to(torch.uint8)], dim=1).reshape(-1)


def split_rows(
    wire: torch.Tensor, spec: CodecSpec, num_tokens: int, hidden: int
) -> tuple[torch.Tensor, torch.Tensor]:
    w = wire.reshape(num_tokens, row_bytes(spec, hidden))
    mb = meta_row_bytes(spec, hidden)
    return dense_copy(w[:, :mb]), w[:, mb:]


def dense_copy(part: torch.Tensor) -> torch.Tensor:
    """A row-major copy of a 2-D slice, safe to `.view` as a wider dtype."""
    out = torch.empty(part.shape, dtype=part.dtype, device=part.device)
    return out.copy_(part)


# ---- BF16 -------------------------------------------------------------------------------
def encode_bf16(x: torch.Tensor, spec: CodecSpec) -> torch.Tensor:
    """Round to nearest even via torch's own conversion (one pass, memory speed); NaN is
    rewritten to 0x7FC0 because the conversions differ there (CUDA 0x7FFF, AVX-512 0xFFFF)."""
    b = x if x.dtype == torch.bfloat16 else x.float().to(torch.bfloat16)
    bits = torch.where(torch.isnan(b), BF16_NAN, b.contiguous().view(torch.int16))
    return bits.view(torch.uint8).reshape(-1)


def decode_bf16(wire: torch.Tensor, spec: CodecSpec, num_tokens: int, hidden: int) -> torch.Tensor:
    return wire.reshape(-1).view(torch.bfloat16).float().reshape(num_tokens, hidden)


# ---- FP8 --------------------------------------------------------------------------------
def fp8_codes(y: torch.Tensor, spec: CodecSpec) -> torch.Tensor:
    fmt = spec.fp8
    assert fmt is not None
    mag = y.abs()
    bits = mag.view(torch.int32).to(I64)
    shift = 23 - fmt.man_bits
    normal = (bits + ((1 << (shift - 1)) - 1) + ((bits >> shift) & 1)) >> shift
    normal = normal - ((127 - fmt.bias) << fmt.man_bits)
    sub = torch.round(mag * fmt.subnormal_scale).to(I64)
    code = torch.where(mag < fmt.min_normal, sub, normal).clamp(max=fmt.max_code)
    return code | torch.where(y < 0, 0x80, 0)


def fp8_scales(amax: torch.Tensor, finite: torch.Tensor, spec: CodecSpec) -> torch.Tensor:
    assert spec.fp8 is not None
    # A tensor divisor, not a Python scalar: CUDA torch turns `t / scalar` into
    # `t * (1 / scalar)`, which is not the correctly rounded quotient the other paths use.
    scale = amax / torch.full_like(amax, spec.fp8.max_finite)
    if spec.pow2_scale:
        bits = torch.where(scale > 0, scale, 1.0).view(torch.int32).to(I64)
        up = torch.where((bits & 0x7FFFFF) != 0, (bits & 0x7F800000) + 0x800000, bits)
        scale = up.to(torch.int32).view(F32)
    scale = torch.where(amax < FP8_MIN_TILE_AMAX, 0.0, scale)
    return torch.where(finite, scale, float("nan"))


def encode_fp8(x: torch.Tensor, spec: CodecSpec) -> torch.Tensor:
    xt = to_tiles(flush_subnormals(x))
    finite, ax = finite_abs(xt)
    scale = fp8_scales(ax.amax(dim=-1), finite, spec)
    usable = (scale > 0)[..., None]
    y = torch.where(usable, xt / torch.where(usable, scale[..., None], 1.0), 0.0)
    codes = torch.where(usable, fp8_codes(y, spec), 0)
    return rows(f32_bytes(scale), from_tiles(codes, x.shape[1]))


@functools.lru_cache(maxsize=16)
def fp8_table(fmt_name: str, device: str) -> torch.Tensor:
    """The 256-entry decode table of an FP8 format, kept on `device`."""
    return torch.from_numpy(fp8_decode_table(FP8_FORMATS[fmt_name])).to(device)


def decode_fp8(wire: torch.Tensor, spec: CodecSpec, num_tokens: int, hidden: int) -> torch.Tensor:
    assert spec.fp8 is not None
    meta, codes = split_rows(wire, spec, num_tokens, hidden)
    scale = meta.view(F32)
    table = fp8_table(spec.fp8.name, str(wire.device))
    values = to_tiles(table[codes.to(I64)])
    values = torch.clamp(values * scale[..., None], -FLT_MAX, FLT_MAX)
    values = torch.where(torch.isnan(scale)[..., None], float("nan"), values)
    return from_tiles(values, hidden)
