"""What a dispatched row carries: the codec's payload bytes, then routing metadata.

A row is `payload_bytes` of encoded token (the codec's wire format) followed by
`meta_bytes` of int32 metadata: source rank, source token index, the token's top-k
destination slots and its top-k weights (float32 bits). The receiver needs the slots and
weights to group rows by expert; the source indices make every row checkable. The rows are
packed before the timed region, where a real system's quantize kernel would write them.

Codecs: `get_codec(name)` returns the built-in raw `bf16` / `fp32` codecs (views, no work)
or, for any other name, `collectives.codecs.get(name)`; every codec has `encode(x) -> uint8
[tokens, wire_bytes]`, `decode(wire, num_tokens, hidden)` and `wire_bytes(tokens, hidden)`.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

if TYPE_CHECKING:
    from collectives import codecs


class Codec(Protocol):
    """What dispatch and combine need of a payload codec."""

    @property
    def name(self) -> str: ...

    def encode(self, x: torch.Tensor) -> torch.Tensor: ...
    def decode(self, wire: torch.Tensor, num_tokens: int, hidden: int) -> torch.Tensor: ...
    def wire_bytes(self, num_tokens: int, hidden: int) -> int: ...


@dataclasses.dataclass(frozen=True)
class RawCodec:
    """A token sent as raw floats of one dtype (bf16 or fp32): encode/decode are views."""

    name: str
    dtype: torch.dtype

    @property
    def itemsize(self) -> int:
        return torch.tensor([], dtype=self.dtype).element_size()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.to(self.dtype).contiguous()
        return rows.view(torch.uint8).reshape(rows.shape[0], -1)

    def decode(self, wire: torch.Tensor, num_tokens: int, hidden: int) -> torch.Tensor:
        return wire.contiguous().view(self.dtype).reshape(num_tokens, hidden)

    def wire_bytes(self, num_tokens: int, hidden: int) -> int:
        return num_tokens * hidden * self.itemsize


_RAW = {
    "bf16": RawCodec("bf16", torch.bfloat16),
    "bfloat16": RawCodec("bf16", torch.bfloat16),
    "fp32": RawCodec("fp32", torch.float32),
    "float32": RawCodec("fp32", torch.float32),
}


ALIASES = {"fp8": "fp8_e4m3", "e4m3": "fp8_e4m3", "e5m2": "fp8_e5m2"}


class RowCodec:
    """A `collectives.codecs` codec seen row by row: encode gives [tokens, row_bytes]."""

    def __init__(self, codec: codecs.Codec) -> None:
        self.codec = codec
        self.name = str(codec.name)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.codec.encode(x).reshape(x.shape[0], -1)

    def decode(self, wire: torch.Tensor, num_tokens: int, hidden: int) -> torch.Tensor:
        return self.codec.decode(wire.contiguous().reshape(-1), num_tokens, hidden)

    def wire_bytes(self, num_tokens: int, hidden: int) -> int:
        return int(self.codec.wire_bytes(num_tokens, hidden))


def get_codec(name: str) -> Codec:
    """The codec called `name`; ValueError naming the choices when unknown."""
    key = ALIASES.get(name.lower(), name.lower())
    if key in _RAW:
        return _RAW[key]
    package = importlib.import_module("collectives.codecs")
    getter = getattr(package, "get", None)
    if getter is None:
        raise ValueError(f"codec {name!r} is not available in this build; use bf16 or fp32")
    return RowCodec(getter(key))


def meta_words(top_k: int) -> int:
    """int32 words of metadata per row."""
    return 2 + 2 * top_k


def pack_rows(
    wire: torch.Tensor, slots: np.ndarray, weights: np.ndarray, *, rank: int
) -> torch.Tensor:
    """[num_tokens + 1, payload + meta] uint8 rows; the last row is an empty pad row
    (zero payload, slots -1) that low-latency mode sends in unused positions."""
    num_tokens, top_k = slots.shape
    meta = np.zeros((num_tokens + 1, meta_words(top_k)), dtype=np.int32)
    meta[:num_tokens, 0] = rank
    meta[:num_tokens, 1] = np.arange(num_tokens)
    meta[num_tokens] = -1
    meta[:num_tokens, 2 : 2 + top_k] = slots
    meta[:num_tokens, 2 + top_k :] = weights.astype(np.float32).view(np.int32)
    meta[num_tokens, 2 + top_k :] = 0
    rows = torch.zeros(
        (num_tokens + 1, wire.shape[1] + meta.nbytes // (num_tokens + 1)),
        dtype=torch.uint8,
        device=wire.device,
    )
    rows[:num_tokens, : wire.shape[1]] = wire
    meta_bytes = torch.from_numpy(meta.view(np.uint8)).to(wire.device)
    rows[:, wire.shape[1] :] = meta_bytes.reshape(num_tokens + 1, -1)
    return rows


def unpack_meta(rows: torch.Tensor, payload_bytes: int, top_k: int) -> torch.Tensor:
    """[num_rows, 2 + 2*top_k] int32 metadata of received rows."""
    return rows[:, payload_bytes:].contiguous().view(torch.int32).reshape(-1, meta_words(top_k))


def meta_weights(meta: torch.Tensor, top_k: int) -> torch.Tensor:
    """[num_rows, top_k] float32 weights from metadata."""
    return meta[:, 2 + top_k :].contiguous().view(torch.float32)
