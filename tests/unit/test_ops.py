"""Pure byte accounting of the core ops: nccl-tests' size conventions and bus factors."""

from __future__ import annotations

import numpy as np
import pytest

from collectives import ops
from collectives.ops.alltoallv import generate_matrix, parse_matrix

WORLDS = (1, 2, 3, 4, 8, 64)

# nccl-tests' busbw factors (doc/PERFORMANCE.md), written out independently per op.
NCCL_TESTS_FACTOR = {
    "allreduce": lambda n: 2 * (n - 1) / n,
    "allgather": lambda n: (n - 1) / n,
    "reducescatter": lambda n: (n - 1) / n,
    "alltoall": lambda n: (n - 1) / n,
    "alltoallv": lambda n: (n - 1) / n,
    "sendrecv": lambda n: 1.0,
    "pingpong": lambda n: 1.0,
}


@pytest.mark.parametrize("name", ops.CORE_OPS)
@pytest.mark.parametrize("world", WORLDS)
def test_bus_factor_matches_nccl_tests(name: str, world: int) -> None:
    assert ops.get(name).bus_bw_factor(world) == pytest.approx(NCCL_TESTS_FACTOR[name](world))


def test_alltoall_size_is_whole_send_buffer_with_16_byte_blocks() -> None:
    op = ops.get("alltoall")
    s = op.sizes(1 << 20, "float32", 8)
    assert s.size_bytes == 1 << 20 and s.send_count == s.recv_count == (1 << 20) // 4
    # 1000 B over 3 ranks of bf16: 166 elements per peer, rounded down to 8 (16 B)
    s = op.sizes(1000, "bfloat16", 3)
    assert s.send_count == 3 * 160 and s.size_bytes == 3 * 160 * 2


@pytest.mark.parametrize(
    ("name", "send", "recv"),
    [("allgather", 2, 8), ("reducescatter", 8, 2), ("allreduce", 8, 8), ("sendrecv", 8, 8)],
)
def test_size_conventions(name: str, send: int, recv: int) -> None:
    s = ops.get(name).sizes(32, "float32", 4)
    assert (s.send_count, s.recv_count, s.size_bytes) == (send, recv, 32)


@pytest.mark.parametrize("name", ["alltoall", "allgather", "reducescatter", "allreduce"])
def test_too_small_sizes_name_the_minimum(name: str) -> None:
    with pytest.raises(ValueError, match="too small .* smallest size is"):
        ops.get(name).sizes(1, "float32", 4)


def test_traffic_matrices() -> None:
    n, size = 4, 4096
    a2a = ops.get("alltoall").traffic_matrix(size, "float32", n)
    assert a2a.shape == (n, n) and np.allclose(a2a.sum(axis=1), size)
    ring = ops.get("allreduce").traffic_matrix(size, "float32", n)
    assert ring[0, 1] == pytest.approx(2 * 3 / 4 * size) and ring[0, 2] == 0
    assert np.count_nonzero(ring) == n
    pp = ops.get("pingpong", pair=(1, 3)).traffic_matrix(size, "float32", n)
    assert pp[1, 3] == pp[3, 1] == size and pp.sum() == 2 * size


def test_alltoallv_scales_matrix_to_mean_send_size() -> None:
    op = ops.get("alltoallv", generator="zipf", seed=3)
    m = op.traffic_matrix(1 << 20, "float32", 8)
    assert m.sum() / 8 == pytest.approx(1 << 20, rel=1e-3)
    assert m.max() > 2 * m.min()  # skewed
    s = op.sizes(1 << 20, "float32", 8)
    assert s.send_count * 4 == pytest.approx(m.sum(axis=1).max(), rel=1e-6)


def test_alltoallv_generators_and_matrix_file() -> None:
    uni = generate_matrix("uniform", 4)
    assert np.all(uni == 1)
    dist = generate_matrix("distance", 6, skew=1.0)
    assert dist[0, 0] > dist[0, 1] > dist[0, 3] and dist[0, 1] == dist[0, 5]
    text = "# comment\n1 2\n3, 4\n"
    assert parse_matrix(text).tolist() == [[1, 2], [3, 4]]
    with pytest.raises(ValueError, match="m.txt:2: not a row"):
        parse_matrix("1 2\n1 x\n", "m.txt")
    with pytest.raises(ValueError, match="N x N"):
        parse_matrix("1 2 3\n1 2 3\n")
    with pytest.raises(ValueError, match="non-negative"):
        parse_matrix("1 -2\n1 2\n")
    with pytest.raises(ValueError, match="4 ranks"):
        ops.get("alltoallv", matrix=np.ones((3, 3))).sizes(1024, "float32", 4)
    # nccl-tests semantics: exact bytes, first N rows/cols of a larger matrix, scale
    m = parse_matrix("100 200 150\n50 100 75\n300 150 200\n")
    op = ops.get("alltoallv", matrix=m, matrix_scale=4.0)
    assert op.traffic_matrix(1, "float32", 2).tolist() == [[400, 800], [200, 400]]


def test_unknown_op_and_generator() -> None:
    with pytest.raises(ValueError, match="unknown op"):
        ops.get("broadcastx")
    with pytest.raises(ValueError, match="generator"):
        generate_matrix("gaussian", 4)
