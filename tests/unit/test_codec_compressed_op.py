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


def test_chunks_cut_every_peer_block_and_come_back_in_sender_order() -> None:
    import torch

    from collectives.ops import compressed_pipeline as pipe

    assert pipe.chunk_bounds(7, 3) == [(0, 3), (3, 5), (5, 7)]
    world, per_block, hidden = 3, 7, 4
    x = torch.arange(world * per_block * hidden, dtype=torch.float32).view(-1, hidden)
    chunks = pipe.chunk_major(x, world, pipe.chunk_bounds(per_block, 3))
    assert [c.shape[0] for c in chunks] == [9, 6, 6] and all(c.is_contiguous() for c in chunks)
    # chunk 1 is rows 3..4 of each peer's block, peer after peer
    assert chunks[1][:, 0].tolist() == [r * hidden for r in (3, 4, 10, 11, 17, 18)]
    assert torch.equal(pipe.natural_order(chunks, world), x)


@pytest.mark.parametrize(
    ("base", "chunks", "size", "message"),
    [
        ("alltoall", 5, 4 * 3 * 256 * 2, "need 1 to 3 chunks"),  # 3 tokens per peer
        ("alltoall", 0, 4 * 3 * 256 * 2, "must be >= 1"),
        ("allgather", 2, 4 * 3 * 256 * 2, "only for alltoall"),
    ],
)
def test_chunk_mistakes_name_the_value(base: str, chunks: int, size: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Compressed(ops.get(base), "fp8_e4m3", hidden=256, chunks=chunks).sizes(size, "bfloat16", 4)
