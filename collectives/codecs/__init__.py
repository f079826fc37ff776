"""Payload codecs (BF16, FP8, LogFMT-nBit, DeepEP's LogFMT-10): encode a [num_tokens, hidden]
tensor to wire bytes, decode, and count wire sizes.

`get(name)` returns a `Codec`. Every codec has one numpy reference (`ref`, `ref_logfmt`),
a parallel numba path for CPU tensors (`cpu_numba`), a torch-ops path that runs on any
device (`torch_ops`) and, where Triton is importable, Triton kernels for CUDA tensors
(`triton_kernels`); all of them write the same bytes. docs/CODECS.md defines the formats.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from collectives.codecs import spec as _spec
from collectives.codecs.spec import CodecSpec, names, parse

IMPLS = ("auto", "numpy", "numba", "torch", "triton")
"""`auto`: numba for CPU tensors, Triton (else torch ops) for CUDA tensors."""


def _check_input(x: Any) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError(f"codec input must be a 2-D torch tensor [tokens, hidden], got {x!r:.80}")
    if x.dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"codec input dtype {x.dtype} not supported; use float32 or bfloat16")
    return x.contiguous()


class _Impl(Protocol):
    """What each implementation module (ref_api, cpu_numba, torch_impl, triton_kernels)
    offers."""

    def encode(self, spec: CodecSpec, x: torch.Tensor) -> torch.Tensor: ...

    def decode(
        self, spec: CodecSpec, wire: torch.Tensor, num_tokens: int, hidden: int
    ) -> torch.Tensor: ...


def _impl_module(impl: str) -> _Impl:
    if impl == "numpy":
        from collectives.codecs import ref_api

        return ref_api
    if impl == "numba":
        from collectives.codecs import cpu_numba

        return cpu_numba
    if impl == "torch":
        from collectives.codecs import torch_impl

        return torch_impl
    from collectives.codecs import triton_kernels

    if triton_kernels.triton is None:
        raise ValueError("codec implementation 'triton' needs the triton package")
    return triton_kernels


class Codec:
    """One payload format with a chosen implementation."""

    def __init__(self, spec: CodecSpec, impl: str = "auto") -> None:
        if impl not in IMPLS:
            raise ValueError(f"unknown codec implementation {impl!r}; choose one of {IMPLS}")
        self.spec = spec
        self.name = spec.name
        self.impl = impl

    def __repr__(self) -> str:
        return f"Codec({self.name!r}, impl={self.impl!r})"

    def wire_bytes(self, num_tokens: int, hidden: int) -> int:
        """Exact length in bytes of `encode` of a [num_tokens, hidden] tensor."""
        return _spec.wire_bytes(self.spec, num_tokens, hidden)

    def nominal_bytes(self, num_tokens: int, hidden: int) -> float:
        """Bytes under the published convention (DeepEP's LogFMT-10 count; else wire)."""
        return num_tokens * _spec.nominal_row_bytes(self.spec, hidden)

    def resolve(self, device: torch.device) -> str:
        """The implementation that runs for tensors on `device`."""
        if self.impl != "auto":
            return self.impl
        if device.type == "cuda":
            from collectives.codecs import triton_kernels

            return "triton" if triton_kernels.available() else "torch"
        return "numba"

    def _module(self, device: torch.device) -> _Impl:
        impl = self.resolve(device)
        if impl in ("numpy", "numba") and device.type != "cpu":
            raise ValueError(f"codec implementation {impl!r} runs on CPU tensors only")
        return _impl_module(impl)

    def encode(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """[num_tokens, hidden] float32/bfloat16 -> flat uint8 wire tensor, same device.
        `out`: a contiguous uint8 tensor of exactly `wire_bytes` elements on x's device (a
        peer's mapped buffer, say) to write the wire into; the Triton kernels store there
        directly, the other implementations copy their result in. Returns `out` then."""
        x = _check_input(x)
        if out is not None:
            expected = self.wire_bytes(x.shape[0], x.shape[1])
            if (out.dtype != torch.uint8 or out.numel() != expected
                    or not out.is_contiguous() or out.device != x.device):  # fmt: skip
                raise ValueError(
                    f"{self.name} encode out= must be a contiguous uint8 tensor of {expected} "
                    f"bytes on {x.device}, got {out.numel()} of {out.dtype} on {out.device}"
                )
        module = self._module(x.device)
        # each implementation widens what it must (Triton and BF16 read bfloat16 as it is)
        if out is not None and self.resolve(x.device) == "triton":
            return module.encode(self.spec, x, out=out.view(-1))  # type: ignore[call-arg]
        wire = module.encode(self.spec, x)
        if out is None:
            return wire
        return out.view(-1).copy_(wire)

    def decode(self, wire: torch.Tensor, num_tokens: int, hidden: int) -> torch.Tensor:
        """Wire bytes -> [num_tokens, hidden] float32 on the wire's device."""
        expected = self.wire_bytes(num_tokens, hidden)
        if wire.dtype != torch.uint8 or wire.numel() != expected:
            raise ValueError(
                f"{self.name} wire for [{num_tokens}, {hidden}] must be {expected} uint8 bytes, "
                f"got {wire.numel()} of {wire.dtype}"
            )
        module = self._module(wire.device)
        return module.decode(self.spec, wire.reshape(-1), num_tokens, hidden)

    def sent_bytes(self, wire: torch.Tensor, num_tokens: int, hidden: int) -> int:
        """Bytes a variable-size transfer would move: for DeepEP's LogFMT-10 the metadata
        plus each tile as sent (10-bit codes or BF16); for the others `wire_bytes`."""
        if self.spec.kind != "deepep_logfmt":
            return self.wire_bytes(num_tokens, hidden)
        from collectives.codecs.ref_logfmt import deepep_sent_bytes

        return deepep_sent_bytes(wire.cpu().numpy(), num_tokens, hidden)


def get(name: str, impl: str = "auto") -> Codec:
    """The codec called `name` (see `names()`); ValueError naming the choices if unknown."""
    return Codec(parse(name), impl)


def reference_encode(name: str, x: np.ndarray) -> np.ndarray:
    """Encode a float32 numpy array [T, H] with the numpy reference (tests, accuracy)."""
    from collectives.codecs import ref_api

    return ref_api.encode_np(parse(name), np.ascontiguousarray(x, dtype=np.float32))


__all__ = ["IMPLS", "Codec", "CodecSpec", "get", "names", "parse", "reference_encode"]
