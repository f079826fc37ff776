"""Byte accounting and argument checks of the Compressed op (no process group)."""

from __future__ import annotations

import numpy as np
import pytest

from collectives import ops
from collectives.ops.compressed import Compressed, payload_tokens


def test_alltoall_sizes_hold_whole_tokens_per_peer() -> None:
    op = Compressed(ops.get("alltoall"), "logfmt8", hidden=300)
    s = op.sizes(4 * 3 * 300 * 2 + 100, "bfloat16", 4)  # 3 tokens per peer, plus slack
    assert (s.send_count, s.recv_count, s.size_bytes) == (12 * 300, 12 * 300, 12 * 300 * 2)
    assert op.tokens(s.size_bytes, "bfloat16", 4) == (12, 12)
    wire_row = 3 * 8 + 300  # 3 tiles of (min, max) + 300 one-byte codes
    assert op.wire_ratio("bfloat16") == wire_row / 600
    matrix = op.traffic_matrix(s.size_bytes, "bfloat16", 4)
    assert np.allclose(matrix, 3 * wire_row)


def test_allgather_counts_the_gathered_buffer() -> None:
    op = Compressed(ops.get("allgather"), "fp8_e4m3", hidden=256)
    s = op.sizes(4 * 2 * 256 * 4, "float32", 4)
    assert (s.send_count, s.recv_count, s.count) == (2 * 256, 8 * 256, 8 * 256)


@pytest.mark.parametrize(
    ("base", "codec", "dtype", "size", "message"),
    [
        ("allreduce", "logfmt8", "float32", 1 << 20, "works with alltoall and allgather"),
        ("alltoall", "logfmt3", "float32", 1 << 20, "unknown codec 'logfmt3'"),
        ("alltoall", "fp8_e4m3", "int8", 1 << 20, "-d bfloat16 or float32"),
        ("alltoall", "bf16", "float32", 4 * 7168 * 4 - 1, "smallest size is 114688 B"),
        ("alltoall", "fp8_e4m3", "bfloat16", 1024, "smallest size is 57344 B"),
    ],
)
def test_mistakes_name_the_value(
    base: str, codec: str, dtype: str, size: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Compressed(ops.get(base), codec, hidden=7168).sizes(size, dtype, 4)


def test_payload_is_a_function_of_seed_and_rank() -> None:
    a, b = payload_tokens(1, 0, 4, 64), payload_tokens(1, 0, 4, 64)
    assert np.array_equal(a, b) and not np.array_equal(a, payload_tokens(1, 1, 4, 64))
