"""The numba implementation behind `encode(spec, x)` / `decode(spec, wire, T, H)`: CPU
tensors in and out, parallel over tokens (numba's thread count: NUMBA_NUM_THREADS)."""

from __future__ import annotations

import numpy as np
import torch

from collectives.codecs import numba_deepep as nd
from collectives.codecs import numba_kernels as nk
from collectives.codecs.ref import bf16_bits, bf16_value, flush_subnormals
from collectives.codecs.spec import (
    FP8_MIN_TILE_AMAX,
    CodecSpec,
    fp8_decode_table,
    meta_row_bytes,
    num_tiles,
    row_bytes,
)


def _fp8_fmt(spec: CodecSpec) -> np.ndarray:
    f = spec.fp8
    assert f is not None
    return np.array(
        [f.man_bits, f.bias, f.max_code, f.max_finite, f.subnormal_scale, f.min_normal],
        dtype=np.float64,
    )


def _encode_np(spec: CodecSpec, x: np.ndarray) -> np.ndarray:
    num_tokens, hidden = x.shape
    mb, tiles = meta_row_bytes(spec, hidden), num_tiles(hidden)
    # every byte is written except DeepEP's unused slot tails, which must be zero
    alloc = np.zeros if spec.kind == "deepep_logfmt" else np.empty
    out = alloc((num_tokens, row_bytes(spec, hidden)), dtype=np.uint8)
    if spec.kind == "bf16":
        bits = np.empty((num_tokens, hidden), dtype="<u2")
        nk.bf16_encode(x.view(np.uint32), bits)
        return bits.view(np.uint8).reshape(-1)
    if spec.kind == "fp8":
        meta = np.empty((num_tokens, tiles), dtype="<f4")
        nk.fp8_encode(x, out, meta, _fp8_fmt(spec), spec.pow2_scale, FP8_MIN_TILE_AMAX, mb)
    elif spec.kind == "logfmt":
        meta = np.empty((num_tokens, tiles, 2), dtype="<f4")
        nk.logfmt_encode(x, out, meta, spec.bits, mb)
    else:
        xb = flush_subnormals(bf16_value(bf16_bits(x)))
        meta = np.empty((num_tokens, tiles, 2), dtype="<u2")
        nd.deepep_encode(xb, bf16_bits(xb).astype(np.uint16), out, meta, mb)
    out[:, :mb] = meta.view(np.uint8).reshape(num_tokens, mb)
    return out.reshape(-1)


def _decode_np(spec: CodecSpec, wire: np.ndarray, num_tokens: int, hidden: int) -> np.ndarray:
    w = wire.reshape(num_tokens, row_bytes(spec, hidden))
    mb, tiles = meta_row_bytes(spec, hidden), num_tiles(hidden)
    meta = np.ascontiguousarray(w[:, :mb])
    out = np.empty((num_tokens, hidden), dtype=np.float32)
    if spec.kind == "bf16":
        bits = np.ascontiguousarray(w).view("<u2").reshape(num_tokens, hidden)
        nk.bf16_decode(bits, out.view(np.uint32))
    elif spec.kind == "fp8":
        assert spec.fp8 is not None
        scales = meta.view("<f4").reshape(num_tokens, tiles)
        nk.fp8_decode(w[:, mb:], scales, fp8_decode_table(spec.fp8), out)
    elif spec.kind == "logfmt":
        nk.logfmt_decode(w[:, mb:], meta.view("<f4").reshape(num_tokens, tiles, 2), spec.bits, out)
    else:
        amaxmin = bf16_value(meta.view("<u2").reshape(num_tokens, tiles, 2))
        nd.deepep_decode(w, np.ascontiguousarray(amaxmin), mb, out, out.view(np.uint32))
    return out


def encode(spec: CodecSpec, x: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(_encode_np(spec, np.ascontiguousarray(x.float().numpy())))


def decode(spec: CodecSpec, wire: torch.Tensor, num_tokens: int, hidden: int) -> torch.Tensor:
    return torch.from_numpy(_decode_np(spec, wire.numpy(), num_tokens, hidden))
