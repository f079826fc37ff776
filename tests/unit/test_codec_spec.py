"""Codec names and wire sizes (pure arithmetic)."""

from __future__ import annotations

import pytest
import torch

from collectives import codecs
from collectives.codecs import spec


def test_names_cover_every_format() -> None:
    names = codecs.names()
    assert names[0] == "bf16" and "fp8_e5m2_pow2" in names and "deepep_logfmt10" in names
    assert [n for n in names if n.startswith("logfmt")] == [f"logfmt{n}" for n in range(4, 17)]
    assert all(codecs.parse(n).name == n for n in names)


@pytest.mark.parametrize(
    ("name", "row_bytes"),
    [
        ("bf16", 2 * 7168),
        ("fp8_e4m3", 7168 + 7168 // 128 * 4),
        ("fp8_e5m2_pow2", 7168 + 7168 // 128 * 4),
        ("logfmt8", 7168 + 56 * 8),
        ("logfmt10", 7168 * 10 // 8 + 56 * 8),
        ("deepep_logfmt10", 2 * 7168 + 56 * 4),
    ],
)
def test_wire_bytes_per_token_at_hidden_7168(name: str, row_bytes: int) -> None:
    assert codecs.get(name).wire_bytes(3, 7168) == 3 * row_bytes


def test_short_last_tile_and_odd_bit_counts() -> None:
    assert spec.num_tiles(129) == 2 and spec.tile_lengths(129) == [128, 1]
    assert codecs.get("fp8_e4m3").wire_bytes(1, 129) == 129 + 8
    assert codecs.get("logfmt5").wire_bytes(2, 3) == 2 * (8 + 2)  # 15 bits -> 2 bytes


@pytest.mark.parametrize("name", codecs.names())
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (2, 129), (4, 1000)])
def test_encode_length_equals_wire_bytes(name: str, shape: tuple[int, int]) -> None:
    codec = codecs.get(name)
    wire = codec.encode(torch.randn(*shape))
    assert wire.dtype == torch.uint8 and wire.numel() == codec.wire_bytes(*shape)
    assert codec.decode(wire, *shape).shape == shape
