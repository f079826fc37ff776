"""LogFMT-n and DeepEP's LogFMT-10 in plain torch ops (any device), bit-identical to
ref_logfmt.py: same formulas, same float64 (LogFMT decode: float32) operation order (see
that module's docstring)."""

from __future__ import annotations

import torch

from collectives.codecs.detmath import INV_LN2, LN2, exp2_fraction_f32
from collectives.codecs.spec import (
    BF16_NAN,
    DEEPEP_CLAMP_LOG2,
    DEEPEP_KMAX,
    FLT_MAX,
    FLT_MIN_NORMAL,
    LOGFMT_CLAMP_LN,
    CodecSpec,
    packed_bytes,
    tile_lengths,
)
from collectives.codecs.torch_ops import (
    F32,
    F64,
    I64,
    bf16_bits,
    bf16_value,
    dense_copy,
    exp2_det,
    exp_det,
    f32_bytes,
    finite_abs,
    flush_subnormals,
    from_tiles,
    ln_det,
    log2_det,
    pack_codes,
    rows,
    split_rows,
    to_tiles,
    unpack_codes,
    wrap_signed,
)


def logfmt_meta(ax: torch.Tensor, finite: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    amax = ax.amax(dim=-1).to(F64)
    amin = torch.where(ax > 0, ax, float("inf")).amin(dim=-1).to(F64)
    zero = amax == 0
    big = ln_det(torch.where(zero, 1.0, amax)).to(F32)
    lo = ln_det(torch.where(zero, 1.0, amin))
    small = torch.maximum(lo, big.to(F64) - LOGFMT_CLAMP_LN).to(F32)
    big = torch.where(finite, torch.where(zero, 0.0, big), float("nan"))
    small = torch.where(finite, torch.where(zero, 0.0, small), float("nan"))
    return small, big


def logfmt_step(
    small: torch.Tensor, big: torch.Tensor, kmax: int
) -> tuple[torch.Tensor, torch.Tensor]:
    span = big.to(F64) - small.to(F64)
    step = span / torch.full_like(span, kmax - 1)  # a tensor divisor: see torch_ops.fp8_scales
    step = torch.where(torch.isnan(step), 0.0, step)
    safe = torch.where(step > 0, step, 1.0)
    phi = ln_det((1.0 + exp_det(safe)) * 0.5) / safe
    return step, torch.where(step > 0, phi, 0.0)


def logfmt_levels(
    ax: torch.Tensor, small: torch.Tensor, step: torch.Tensor, phi: torch.Tensor, kmax: int
) -> torch.Tensor:
    m = small.to(F64)[..., None]
    s, ph = step[..., None], phi[..., None]
    lnx = ln_det(torch.where(ax > 0, ax, 1.0).to(F64))
    inv = 1.0 / torch.where(s > 0, s, 1.0)
    u = (lnx - torch.where(torch.isnan(m), 0.0, m)) * inv - ph
    k = torch.clamp(torch.floor(u) + 2.0, 1.0, float(kmax))
    k = torch.where(s > 0, k, 1.0)
    k = torch.where(lnx < m - LN2, 0.0, k)
    return torch.where(ax > 0, k, 0.0).to(I64)


def encode_logfmt(x: torch.Tensor, spec: CodecSpec) -> torch.Tensor:
    xt = to_tiles(flush_subnormals(x))
    finite, ax = finite_abs(xt)
    small, big = logfmt_meta(ax, finite)
    step, phi = logfmt_step(small, big, spec.kmax)
    k = logfmt_levels(ax, small, step, phi, spec.kmax)
    k = torch.where(finite[..., None], k, 0)
    codes = k | torch.where((xt < 0) & (k > 0), 1 << (spec.bits - 1), 0)
    meta = f32_bytes(torch.stack([small, big], dim=-1).reshape(x.shape[0], -1))
    return rows(meta, pack_codes(from_tiles(codes, x.shape[1]), spec.bits))


def logfmt_decode_params(
    small: torch.Tensor, big: torch.Tensor, kmax: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ref_logfmt.logfmt_decode_params: per-tile (e0 int64, mf float32, s2 float32)."""
    step, _ = logfmt_step(small, big, kmax)
    m2 = torch.where(torch.isnan(small), 0.0, small).to(F64) * INV_LN2
    e0 = torch.floor(m2)
    return e0.to(I64), (m2 - e0).to(F32), (step * INV_LN2).to(F32)


def exp2_split(e0: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """ref_logfmt.exp2_split: float32 2^(e0 + y)."""
    nf = torch.floor(y + 0.5)
    p = exp2_fraction_f32(y - nf)
    n = e0 + nf.to(I64)
    scale = ((torch.clamp(n, -125, 127) + 127) << 23).to(torch.int32).view(F32)
    value = torch.clamp(p * scale * torch.where(n > 127, 2.0, 1.0), max=FLT_MAX)
    value = torch.where(n < -125, FLT_MIN_NORMAL, value)
    return torch.where(n > 128, FLT_MAX, value)


def decode_logfmt(
    wire: torch.Tensor, spec: CodecSpec, num_tokens: int, hidden: int
) -> torch.Tensor:
    meta, data = split_rows(wire, spec, num_tokens, hidden)
    meta = meta.view(F32).reshape(num_tokens, -1, 2)
    small, big = meta[..., 0], meta[..., 1]
    e0, mf, s2 = logfmt_decode_params(small, big, spec.kmax)
    codes = to_tiles(unpack_codes(data, hidden, spec.bits))
    k = codes & spec.kmax
    y = mf[..., None] + s2[..., None] * (torch.clamp(k, min=1) - 1).to(F32)
    mag = exp2_split(e0[..., None].expand_as(y), y)
    mag = torch.where(k > 0, mag, 0.0)
    mag = torch.where((codes >> (spec.bits - 1)) > 0, -mag, mag)
    mag = torch.where(torch.isnan(small)[..., None], float("nan"), mag)
    return from_tiles(mag, hidden)


# ---- DeepEP LogFMT-10 -----------------------------------------------------------------
def deepep_params(
    amax: torch.Tensor, amin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    amax64, amin64 = amax.to(F64), amin.to(F64)
    pos = amax64 > 0
    lmax = log2_det(torch.where(pos, amax64, 1.0))
    lo = log2_det(torch.where(amin64 > 0, amin64, 1.0))
    lmin = torch.where(
        amin64 > 0, torch.maximum(lo, lmax - DEEPEP_CLAMP_LOG2), lmax - DEEPEP_CLAMP_LOG2
    )
    cast = pos & (amax64 < 1.0) & (lmin < lmax)
    span = lmax - lmin
    step = torch.where(cast, span / torch.full_like(span, DEEPEP_KMAX - 1), 1.0)
    rounding = 2.0 - log2_det(0.5 * (1.0 + exp2_det(step))) / step
    return cast, lmin, step, rounding


def deepep_meta(
    xt: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    finite, ax = finite_abs(xt)
    amax = ax.amax(dim=-1)
    amin = torch.where(valid, ax, float("inf")).amin(dim=-1)
    nan = bf16_value(torch.full((), BF16_NAN, dtype=I64, device=xt.device))
    return torch.where(finite, amax, nan), torch.where(finite, amin, nan), ax


def encode_deepep(x: torch.Tensor, spec: CodecSpec) -> torch.Tensor:
    xb = flush_subnormals(bf16_value(bf16_bits(x)))
    xt, valid = to_tiles(xb), to_tiles(torch.ones_like(xb)) > 0
    amax, amin, ax = deepep_meta(xt, valid)
    cast, lmin, step, rounding = deepep_params(amax, amin)
    lx = log2_det(torch.where(ax > 0, ax, 1.0).to(F64))
    u = (lx - lmin[..., None]) * (1.0 / step)[..., None] + rounding[..., None]
    k = torch.clamp(torch.floor(torch.clamp(u, min=0.0)), max=float(DEEPEP_KMAX))
    k = torch.where(ax > 0, k, 0.0).to(I64)
    codes = k | torch.where((xt < 0) & (k > 0), 1 << 9, 0)
    slots = []
    for t, length in enumerate(tile_lengths(x.shape[1])):
        packed = pack_codes(codes[:, t, :length], 10)
        packed = torch.nn.functional.pad(packed, (0, 2 * length - packed.shape[1]))
        raw = wrap_signed(bf16_bits(xt[:, t, :length]), 16, torch.int16).view(torch.uint8)
        slots.append(torch.where(cast[:, t, None], packed, raw))
    meta = torch.stack([bf16_bits(amax), bf16_bits(amin)], dim=-1).reshape(x.shape[0], -1)
    meta = wrap_signed(meta, 16, torch.int16).view(torch.uint8)
    return rows(meta, torch.cat(slots, dim=1))


def decode_deepep(
    wire: torch.Tensor, spec: CodecSpec, num_tokens: int, hidden: int
) -> torch.Tensor:
    meta, data = split_rows(wire, spec, num_tokens, hidden)
    meta = bf16_value(meta.view(torch.int16).to(I64) & 0xFFFF).reshape(num_tokens, -1, 2)
    cast, lmin, step, _ = deepep_params(meta[..., 0], meta[..., 1])
    out, offset = [], 0
    for t, length in enumerate(tile_lengths(hidden)):
        slot = data[:, offset : offset + 2 * length]
        offset += 2 * length
        raw = bf16_value(dense_copy(slot).view(torch.int16).to(I64) & 0xFFFF)
        codes = unpack_codes(slot[:, : packed_bytes(length, 10)], length, 10)
        k = codes & DEEPEP_KMAX
        y = (k.to(F64) - 1.0) * step[:, t, None] + lmin[:, t, None]
        live = cast[:, t, None] & (k > 0)
        mag = torch.where(live, exp2_det(torch.where(live, y, 0.0)).to(F32), 0.0)
        mag = torch.where(codes >> 9 > 0, -mag, mag)
        out.append(torch.where(cast[:, t, None], mag, raw))
    return torch.cat(out, dim=1)
