"""The torch-ops implementation behind the common `encode(spec, x)` / `decode(spec, wire,
T, H)` calls (any device)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from collectives.codecs import torch_logfmt, torch_ops
from collectives.codecs.spec import CodecSpec

_ENCODERS: dict[str, Callable[[torch.Tensor, CodecSpec], torch.Tensor]] = {
    "bf16": torch_ops.encode_bf16,
    "fp8": torch_ops.encode_fp8,
    "logfmt": torch_logfmt.encode_logfmt,
    "deepep_logfmt": torch_logfmt.encode_deepep,
}
_DECODERS: dict[str, Callable[[torch.Tensor, CodecSpec, int, int], torch.Tensor]] = {
    "bf16": torch_ops.decode_bf16,
    "fp8": torch_ops.decode_fp8,
    "logfmt": torch_logfmt.decode_logfmt,
    "deepep_logfmt": torch_logfmt.decode_deepep,
}


def encode(spec: CodecSpec, x: torch.Tensor) -> torch.Tensor:
    """float32 or bfloat16 [T, H] -> flat uint8 wire on x's device. BF16 rows go to the
    conversion as they are (no float32 pass); the other codecs compute in float32."""
    x = x if spec.kind == "bf16" else x.float()
    return _ENCODERS[spec.kind](x, spec).contiguous()


def decode(spec: CodecSpec, wire: torch.Tensor, num_tokens: int, hidden: int) -> torch.Tensor:
    """flat uint8 wire -> float32 [T, H] on the wire's device."""
    return _DECODERS[spec.kind](wire, spec, num_tokens, hidden).contiguous()
