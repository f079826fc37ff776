"""alltoallv: uneven all-to-all from an N x N traffic matrix (file or generator).

The matrix gives relative weights [src, dst]; at sweep point `size` it is scaled so the
mean per-rank send buffer is `size` bytes (counts rounded down to whole elements).
Generators: uniform, zipf (destination popularity follows Zipf(s)), distance (weight
decays with ring distance |src - dst|, e.g. traffic that stays near). algbw uses the mean
per-rank send size; the record also carries every rank's send/recv bytes and the busiest
rank's bandwidth, which is what bounds the op. busbw factor (n-1)/n as for alltoall.

Matrix files follow nccl-tests' alltoallv (NCCL_TESTS_ALLTOALLV_MATRIX_FILE): a square
matrix of non-negative numbers separated by whitespace (commas and `#` comments are also
accepted), cell [i][j] = bytes rank i sends to rank j, times an optional scale; a larger
matrix than the job uses its first N rows and columns. In that mode the counts come from
the file, so the sweep has one point.
"""

from __future__ import annotations

import numpy as np

from collectives.backends.base import Comm
from collectives.ops.base import Buffers, Collective, Sizes, elem_bytes, pattern, too_small

GENERATORS = ("uniform", "zipf", "distance")


def parse_matrix(text: str, source: str = "matrix") -> np.ndarray:
    """Parse an N x N weight matrix; ValueError naming the line on any defect."""
    rows = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].replace(",", " ").strip()
        if not line:
            continue
        try:
            rows.append([float(tok) for tok in line.split()])
        except ValueError:
            raise ValueError(f"{source}:{lineno}: not a row of numbers: {raw.strip()!r}") from None
    if not rows:
        raise ValueError(f"{source}: no matrix rows found")
    width = {len(r) for r in rows}
    if width != {len(rows)}:
        raise ValueError(f"{source}: matrix must be N x N; got {len(rows)} rows of {sorted(width)}")
    matrix = np.asarray(rows, dtype=np.float64)
    if not np.all(np.isfinite(matrix)) or np.any(matrix < 0):
        raise ValueError(f"{source}: entries must be finite and non-negative")
    if matrix.sum() == 0:
        raise ValueError(f"{source}: matrix is all zeros")
    return matrix


def generate_matrix(kind: str, world: int, seed: int = 0, skew: float = 1.1) -> np.ndarray:
    """Weight matrix [src, dst] of a named generator (rows need not sum to 1)."""
    if kind == "uniform":
        return np.ones((world, world))
    if kind == "zipf":
        rng = np.random.default_rng(seed)
        popularity = 1.0 / np.arange(1, world + 1) ** skew
        return np.tile(rng.permutation(popularity), (world, 1))
    if kind == "distance":
        idx = np.arange(world)
        dist = np.abs(idx[:, None] - idx[None, :])
        ring = np.minimum(dist, world - dist)
        return 1.0 / (1.0 + ring) ** skew
    raise ValueError(f"unknown alltoallv generator {kind!r}; choose one of {GENERATORS}")


class AllToAllV(Collective):
    name = "alltoallv"
    communication_only = True

    def weights(self, world: int) -> np.ndarray:
        matrix = self.options.get("matrix")
        if matrix is None:
            kind = self.options.get("generator", "uniform")
            return generate_matrix(kind, world, self.seed, self.options.get("skew", 1.1))
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.shape[0] < world:
            raise ValueError(
                f"alltoallv matrix is {matrix.shape[0]} x {matrix.shape[1]} but the job has "
                f"{world} ranks; give an N x N matrix with N >= {world}"
            )
        return matrix[:world, :world]

    def fixed_bytes(self) -> bool:
        """True when a matrix file gives exact bytes (the sweep size is then ignored)."""
        return self.options.get("matrix") is not None

    def counts(self, size_bytes: int, dtype: str, world: int) -> np.ndarray:
        """[src, dst] element counts at sweep point `size_bytes` (or from the file)."""
        weights = self.weights(world)
        elem = elem_bytes(dtype)
        if self.fixed_bytes():
            scaled = weights * float(self.options.get("matrix_scale", 1.0))
            return np.floor(scaled / elem).astype(np.int64)
        scale = size_bytes * world / weights.sum() / elem
        return np.floor(weights * scale).astype(np.int64)

    def sizes(self, size_bytes: int, dtype: str, world: int) -> Sizes:
        counts = self.counts(size_bytes, dtype, world)
        if counts.sum() == 0:
            raise too_small(self.name, size_bytes, dtype, world, elem_bytes(dtype) * world)
        elem = elem_bytes(dtype)
        mean_send = int(counts.sum() // world)
        return Sizes(
            size_bytes=mean_send * elem,
            count=mean_send,
            send_count=int(counts.sum(axis=1).max()),
            recv_count=int(counts.sum(axis=0).max()),
        )

    def bus_bw_factor(self, world: int) -> float:
        return (world - 1) / world

    def traffic_matrix(self, size_bytes: int, dtype: str, world: int) -> np.ndarray:
        result: np.ndarray = self.counts(size_bytes, dtype, world) * float(elem_bytes(dtype))
        return result

    def make_inputs(self, comm: Comm, size_bytes: int, dtype: str) -> Buffers:
        s = self.sizes(size_bytes, dtype, comm.world)
        counts = self.counts(size_bytes, dtype, comm.world)
        send_counts = counts[comm.rank]
        recv_counts = counts[:, comm.rank]
        displs = np.concatenate(
            [np.zeros((comm.world, 1), np.int64), np.cumsum(counts, axis=1)[:, :-1]], axis=1
        )
        send = comm.from_numpy(pattern(comm.rank, int(send_counts.sum()), self.seed), dtype)
        expected = np.concatenate(
            [
                pattern(
                    src, int(counts[src, comm.rank]), self.seed, offset=int(displs[src, comm.rank])
                )
                for src in range(comm.world)
            ]
        )
        recv = comm.empty(int(recv_counts.sum()), dtype)
        bufs = Buffers(sizes=s, dtype=dtype, send=send, recv=recv, expected=expected)
        bufs.state["send_counts"] = [int(c) for c in send_counts]
        bufs.state["recv_counts"] = [int(c) for c in recv_counts]
        bufs.state["counts"] = counts
        return bufs

    def run(self, comm: Comm, bufs: Buffers) -> None:
        comm.all_to_all(bufs.recv, bufs.send, bufs.state["send_counts"], bufs.state["recv_counts"])

    def extra(self, comm: Comm, bufs: Buffers, num_iters: int) -> dict[str, object]:
        counts = bufs.state["counts"] * elem_bytes(bufs.dtype)
        return {
            "send_bytes_per_rank": [int(v) for v in counts.sum(axis=1)],
            "recv_bytes_per_rank": [int(v) for v in counts.sum(axis=0)],
            "busiest_rank_bytes": int(max(counts.sum(axis=1).max(), counts.sum(axis=0).max())),
            "matrix_source": self.options.get("matrix_source")
            or self.options.get("generator", "uniform"),
        }
