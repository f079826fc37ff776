"""The numpy reference behind the common `encode(spec, x)` / `decode(spec, wire, T, H)` calls
that every implementation module offers (torch tensors in and out, CPU only)."""

from __future__ import annotations

import numpy as np
import torch

from collectives.codecs import ref, ref_logfmt
from collectives.codecs.spec import CodecSpec

_ENCODERS = {
    "bf16": lambda x, spec: ref.encode_bf16(x),
    "fp8": ref.encode_fp8,
    "logfmt": ref_logfmt.encode_logfmt,
    "deepep_logfmt": ref_logfmt.encode_deepep,
}
_DECODERS = {
    "bf16": lambda w, spec, t, h: ref.decode_bf16(w, t, h),
    "fp8": ref.decode_fp8,
    "logfmt": ref_logfmt.decode_logfmt,
    "deepep_logfmt": ref_logfmt.decode_deepep,
}


def encode_np(spec: CodecSpec, x: np.ndarray) -> np.ndarray:
    """float32 [T, H] -> flat uint8 wire."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        return np.ascontiguousarray(_ENCODERS[spec.kind](x, spec), dtype=np.uint8)


def decode_np(spec: CodecSpec, wire: np.ndarray, num_tokens: int, hidden: int) -> np.ndarray:
    """flat uint8 wire -> float32 [T, H]."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        out = _DECODERS[spec.kind](wire, spec, num_tokens, hidden)
    return np.ascontiguousarray(out, dtype=np.float32)


def encode(spec: CodecSpec, x: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(encode_np(spec, x.float().numpy()))


def decode(spec: CodecSpec, wire: torch.Tensor, num_tokens: int, hidden: int) -> torch.Tensor:
    return torch.from_numpy(decode_np(spec, wire.numpy(), num_tokens, hidden))
