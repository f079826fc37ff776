# mypy: disable-error-code="untyped-decorator"
"""Exhaustive GPU checks of the two hardware behaviours the fast encoders rely on.

- FP8 encode rounds with the conversion instruction (cvt.rn.satfinite.e4m3x2/e5m2x2.f32):
  it must equal ref.fp8_codes (the integer rounding the interpreter runs) for every float32
  except NaN and -0 (which the encoder never converts). All 2^32 bit patterns are tried.
- LogFMT encode takes log2 of the mantissa from lg2.approx.ftz.f32 and assumes an error of
  at most triton_logfmt.LG2_ERR on [1, 2): the largest error over all 2^23 mantissas,
  against float64 log2, must stay below it.
bench/gpu/codec_gpu.py runs them on the device; nothing here runs under the interpreter.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from collectives.codecs.triton_fp8 import _fp8_codes
from collectives.codecs.triton_logfmt import LG2_ERR, _log2_mantissa

CHUNK = 1 << 28


@triton.jit
def _fp8_cvt_mismatches(out_ptr, start, MAN: tl.constexpr, BIAS: tl.constexpr,  # type: ignore[no-untyped-def]
                        MAXCODE: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    bits = start + tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    y = bits.to(tl.uint32).to(tl.float32, bitcast=True)
    if MAN == 3:
        hw = y.to(tl.float8e4nv).to(tl.uint8, bitcast=True).to(tl.int32)
    else:
        hw = y.to(tl.float8e5).to(tl.uint8, bitcast=True).to(tl.int32)
    skip = (y != y) | (bits == 0x80000000)
    bad = (hw != _fp8_codes(y, MAN, BIAS, MAXCODE)) & ~skip
    tl.atomic_add(out_ptr, tl.sum(bad.to(tl.int32)))


@triton.jit
def _lg2_error(out_ptr, BLOCK: tl.constexpr):  # type: ignore[no-untyped-def]
    frac = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mant = (frac | 0x3F800000).to(tl.float32, bitcast=True)
    tl.store(out_ptr + frac, _log2_mantissa(mant, False))


def fp8_cvt_mismatches(man_bits: int, bias: int, max_code: int) -> int:
    """Float32 values (all 2^32 patterns, NaN and -0 skipped) whose hardware FP8 code
    differs from ref.fp8_codes'."""
    count = torch.zeros(1, dtype=torch.int32, device="cuda")
    block = 1024
    for start in range(0, 1 << 32, CHUNK):
        _fp8_cvt_mismatches[(CHUNK // block,)](count, start, MAN=man_bits, BIAS=bias,
                                               MAXCODE=max_code, BLOCK=block)  # fmt: skip
    return int(count.item())


def lg2_max_error() -> float:
    """Largest |lg2.approx.ftz(m) - log2(m)| over every float32 m in [1, 2)."""
    got = torch.empty(1 << 23, dtype=torch.float64, device="cuda")
    block = 1024
    _lg2_error[((1 << 23) // block,)](got, BLOCK=block)
    frac = torch.arange(1 << 23, dtype=torch.int32, device="cuda")
    mant = (frac | 0x3F800000).view(torch.float32).double()
    return float((got - torch.log2(mant)).abs().max().item())


def run() -> dict[str, float]:
    """All checks: mismatch counts (want 0) and the lg2 error against its bound."""
    return {"fp8_e4m3_cvt_mismatches": fp8_cvt_mismatches(3, 7, 0x7E),
            "fp8_e5m2_cvt_mismatches": fp8_cvt_mismatches(2, 15, 0x7B),
            "lg2_max_error": lg2_max_error(), "lg2_error_bound": float(LG2_ERR.value)}  # fmt: skip
