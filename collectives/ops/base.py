"""The interface every collective op fills, and the helpers they share.

An op is a small object with pure byte accounting (`sizes`, `bus_bw_factor`,
`traffic_matrix`) and three calls on a communicator: `make_inputs` (seeded, checkable data),
`check` (returns the number of wrong elements; never timed) and `run` (the only timed call).
Sizes follow nccl-tests: `size_bytes` is the buffer that defines algbw for that op
(docs/PERFORMANCE.md derives each convention and bus factor once).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar

import numpy as np

from collectives.backends.base import Comm, dtype_size_bytes

# Values for checkable inputs: small integers, exact in every dtype incl. fp8 and int8
# after a sum over up to 127 ranks (sums may reach 127*... so we keep values in [-1, 1]
# for reductions and in [0, 15] for pure data movement).
_MOVE_LEVELS = 16


@dataclasses.dataclass(frozen=True, kw_only=True)
class Sizes:
    """Element counts one rank needs for one op at one nccl-tests `size`."""

    size_bytes: int
    """nccl-tests' size actually used (rounded down to what the op can split evenly)."""
    count: int
    """nccl-tests' `count` column: elements of `size_bytes`."""
    send_count: int
    """Elements in this rank's send (input) buffer."""
    recv_count: int
    """Elements in this rank's receive (output) buffer."""


@dataclasses.dataclass
class Buffers:
    """Buffers of one (op, size) point on one rank, plus what `check` needs."""

    sizes: Sizes
    dtype: str
    send: Any
    recv: Any
    expected: np.ndarray | None = None
    """Expected content of `recv` (host, float64), computed from rank and world."""
    state: dict[str, Any] = dataclasses.field(default_factory=dict)


def pattern(rank: int, num_elems: int, seed: int, offset: int = 0) -> np.ndarray:
    """Deterministic data a rank sends: a function of (seed, rank, element index).

    Values are small non-negative integers, exactly representable in every dtype we
    send (fp8 e4m3 holds integers up to 16 exactly), so checks compare exactly.
    """
    idx = np.arange(offset, offset + num_elems, dtype=np.int64)
    return ((idx * 7 + rank * 13 + seed * 5) % _MOVE_LEVELS).astype(np.float64)


def reduce_pattern(rank: int, num_elems: int, seed: int) -> np.ndarray:
    """Inputs for reductions: values in {-1, 0, 1}, so sums over up to 127 ranks stay exact
    in int8 and every float type, and prod/max/min are exact too."""
    idx = np.arange(num_elems, dtype=np.int64)
    return (((idx * 3 + rank * 5 + seed) % 3) - 1).astype(np.float64)


def count_wrong(got: np.ndarray, expected: np.ndarray, rel_tol: float = 0.0) -> int:
    """Elements that differ by more than `rel_tol` relative (NaN counts as wrong)."""
    if got.shape != expected.shape:
        return int(max(got.size, expected.size))
    if rel_tol == 0.0:
        return int(np.count_nonzero(~(got == expected)))
    ok = np.abs(got - expected) <= rel_tol * np.maximum(1.0, np.abs(expected))
    return int(np.count_nonzero(~ok))


_REDUCERS = {"sum": np.sum, "prod": np.prod, "max": np.max, "min": np.min, "avg": np.mean}


def reduce_expected(redop: str, world: int, count: int, seed: int, dtype: str) -> np.ndarray:
    """Host reference of `redop` over every rank's `reduce_pattern` (float64)."""
    if redop not in _REDUCERS:
        raise ValueError(f"unknown reduction {redop!r}; choose one of {sorted(_REDUCERS)}")
    stack = np.stack([reduce_pattern(r, count, seed) for r in range(world)])
    result: np.ndarray = _REDUCERS[redop](stack, axis=0)
    return result


def check_tolerance(redop: str, dtype: str) -> float:
    """Relative tolerance of a check: zero (exact) except for avg, which divides."""
    if redop != "avg":
        return 0.0
    return {"bfloat16": 1e-2, "float16": 1e-3}.get(dtype, 1e-6)


def ring_matrix(world: int, bytes_per_rank: float) -> np.ndarray:
    """[src, dst] bytes of a ring: each rank sends `bytes_per_rank` to its successor."""
    matrix = np.zeros((world, world), dtype=np.float64)
    if world > 1:
        matrix[np.arange(world), (np.arange(world) + 1) % world] = bytes_per_rank
    return matrix


def too_small(op: str, size_bytes: int, dtype: str, world: int, min_bytes: int) -> ValueError:
    """The error for a size that leaves an op nothing to send."""
    return ValueError(
        f"size {size_bytes} B is too small for {op} with {dtype} at {world} ranks; "
        f"the smallest size is {min_bytes} B (raise -b)"
    )


class Collective(abc.ABC):
    """One collective op. Subclasses set `name` and fill the abstract methods."""

    name: ClassVar[str]
    has_redop: ClassVar[bool] = False
    has_root: ClassVar[bool] = False
    min_ranks: ClassVar[int] = 1
    self_synchronizing: ClassVar[bool] = False
    """True when one run already lines the ranks up (pingpong), so per-iteration samples
    need no barrier between them (osu_latency has none)."""
    communication_only: ClassVar[bool] = False
    """`run` only calls the communicator (no kernels, copies or host work), so a backend may
    record those calls and reissue them from compiled code (nccl loop, mpi replay)."""
    time_divisor: ClassVar[float] = 1.0
    """Timed samples are divided by this (pingpong: 2, a round trip -> one way)."""
    size_unit: ClassVar[str] = "bytes"
    """What a sweep point means: `bytes` (nccl-tests size) or `tokens` (MoE ops)."""

    def __init__(self, *, redop: str = "sum", seed: int = 0, **options: Any) -> None:
        self.redop = redop if self.has_redop else "none"
        self.seed = seed
        self.options = options

    # ---- pure byte accounting -------------------------------------------------------
    @abc.abstractmethod
    def sizes(self, size_bytes: int, dtype: str, world: int) -> Sizes:
        """Element counts for nccl-tests `size` (bytes); rounds down like nccl-tests."""

    @abc.abstractmethod
    def bus_bw_factor(self, world: int) -> float:
        """busbw / algbw for this op at `world` ranks (docs/PERFORMANCE.md)."""

    @abc.abstractmethod
    def traffic_matrix(self, size_bytes: int, dtype: str, world: int) -> np.ndarray:
        """[src, dst] bytes the op moves between distinct ranks (diagonal: local copy)."""

    def root(self) -> int:
        return -1

    # ---- calls on a communicator ----------------------------------------------------
    @abc.abstractmethod
    def make_inputs(self, comm: Comm, size_bytes: int, dtype: str) -> Buffers:
        """Allocate and fill this rank's buffers; compute the expected output."""

    @abc.abstractmethod
    def run(self, comm: Comm, bufs: Buffers) -> None:
        """Issue the op once. The only call inside the timed region."""

    def check(self, comm: Comm, bufs: Buffers) -> int:
        """Number of wrong elements on this rank after one `run`."""
        comm.synchronize()
        if bufs.expected is None:
            return 0
        tol = check_tolerance(self.redop, bufs.dtype)
        return count_wrong(comm.to_numpy(bufs.recv), bufs.expected, tol)

    def reset(self, comm: Comm, bufs: Buffers) -> None:  # noqa: B027 - optional hook
        """Restore buffers an in-place op overwrote (called before `check` runs)."""

    def extra(self, comm: Comm, bufs: Buffers, num_iters: int) -> dict[str, Any]:
        """Op-specific facts for the record, after timing: bytes under each convention,
        per-rank send/recv bytes, separately measured phase times (untimed by the runner).
        Collective over ranks when it measures; the same dict must come back on rank 0."""
        return {}


class BlockCollective(Collective):
    """Ops whose full buffer is `world` equal blocks, one per rank (allgather: the output,
    reducescatter: the input). busbw factor (n-1)/n; traffic is the ring algorithm's."""

    gathers: ClassVar[bool] = True
    """True when the full buffer is the output (allgather), False when it is the input."""

    def sizes(self, size_bytes: int, dtype: str, world: int) -> Sizes:
        elem = elem_bytes(dtype)
        per_rank = size_bytes // elem // world
        if per_rank == 0:
            raise too_small(self.name, size_bytes, dtype, world, elem * world)
        count = per_rank * world
        send, recv = (per_rank, count) if self.gathers else (count, per_rank)
        return Sizes(size_bytes=count * elem, count=count, send_count=send, recv_count=recv)

    def bus_bw_factor(self, world: int) -> float:
        return (world - 1) / world

    def traffic_matrix(self, size_bytes: int, dtype: str, world: int) -> np.ndarray:
        s = self.sizes(size_bytes, dtype, world)
        return ring_matrix(world, s.size_bytes * (world - 1) / world)


def elem_bytes(dtype: str) -> int:
    return dtype_size_bytes(dtype)
