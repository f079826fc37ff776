"""The communicator protocol every backend fills, and the launch facts handed to it.

A backend wraps one communication library (torch.distributed, NCCL through CuPy, mpi4py)
behind the small `Comm` interface below. Buffers are backend-native arrays (torch tensors,
CuPy arrays, numpy arrays); ops never look inside them except through `to_numpy` /
`from_numpy`, which are used only outside timed regions. Counts are always in elements,
sizes in bytes. `bench/` detects how the processes were launched and passes a `LaunchInfo`;
the backend creates the communicator from it and never reads the environment itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

# Element types by their nccl-tests names. float8 types exist only where the backend allows.
DTYPES: dict[str, int] = {
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "int8": 1,
    "uint8": 1,
    "int32": 4,
    "float64": 8,
    "float8_e4m3": 1,
    "float8_e5m2": 1,
}
DTYPE_ALIASES = {
    "float": "float32",
    "half": "float16",
    "bf16": "bfloat16",
    "fp32": "float32",
    "fp16": "float16",
    "fp8": "float8_e4m3",
    "fp8_e4m3": "float8_e4m3",
    "fp8_e5m2": "float8_e5m2",
    "char": "int8",
    "int": "int32",
    "double": "float64",
}
REDUCE_OPS = ("sum", "prod", "max", "min", "avg")


class CommError(RuntimeError):
    """A communication failure (peer gone, timeout inside the library, bad setup)."""


class BackendUnavailable(RuntimeError):
    """The backend cannot run here (library missing, no GPU); the message says what to do."""


def canonical_dtype(name: str) -> str:
    """Map a user-facing dtype name to its canonical name; ValueError when unknown."""
    key = DTYPE_ALIASES.get(name.lower(), name.lower())
    if key not in DTYPES:
        known = ", ".join(sorted(DTYPES))
        raise ValueError(f"unknown dtype {name!r}; choose one of: {known}")
    return key


def dtype_size_bytes(name: str) -> int:
    """Bytes per element of a canonical or aliased dtype name."""
    return DTYPES[canonical_dtype(name)]


@dataclasses.dataclass(frozen=True, kw_only=True)
class LaunchInfo:
    """How this process was started, as detected by bench/launch.py.

    `node` and `local_rank` may be virtual (`--gpus-per-node`): ranks of one host then pose
    as several nodes. `host_node` is the physical host index, which backends need for
    device selection and rendezvous.
    """

    rank: int
    """Global rank of this process, 0 <= rank < world."""
    world: int
    """Number of processes in the job."""
    local_rank: int
    """Index of this process among the ranks of its (possibly virtual) node."""
    local_world: int
    """Ranks per (possibly virtual) node."""
    node: int
    """(Possibly virtual) node index of this rank."""
    num_nodes: int
    """Number of (possibly virtual) nodes."""
    host_local_rank: int
    """Index among the processes on the same physical host; selects the GPU."""
    launcher: str
    """Which launcher started us: torchrun, mpi, slurm, spawn or single."""
    master_addr: str = "127.0.0.1"
    """Rendezvous host for backends that need a TCP store."""
    master_port: int = 29500
    """Rendezvous port for backends that need a TCP store."""
    timeout_s: float = 300.0
    """Upper bound on any single collective; backends pass it to their library too."""
    device: str = "auto"
    """`cpu`, `cuda`, or `auto` (the backend's natural device)."""
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Backend-specific options (e.g. MPI thread level, buffer alignment)."""

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world:
            raise ValueError(f"rank {self.rank} outside world of {self.world} ranks")
        if self.local_world <= 0 or self.world % self.local_world:
            raise ValueError(
                f"{self.world} ranks cannot form nodes of {self.local_world}; "
                "pick --gpus-per-node that divides the world size"
            )


class Timer(Protocol):
    """Times device or host work; `start`/`stop` pairs, then `elapsed_s` after a sync."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def elapsed_s(self) -> list[float]: ...


@runtime_checkable
class Comm(Protocol):
    """One communicator. Collective calls are issued on the backend's communication stream
    (GPU backends) and may return before completion; `synchronize` waits for them."""

    backend: str
    rank: int
    world: int
    local_rank: int
    local_world: int
    node: int
    num_nodes: int
    device: str
    capture_records_calls: bool
    """True when `capture` records the backend's calls rather than a CUDA graph (mpi): it
    then fits only ops whose run is nothing but calls on this comm."""

    def facts(self) -> dict[str, Any]:
        """Library versions and settings this communicator runs with (for provenance)."""
        ...

    def supports_dtype(self, dtype: str) -> bool: ...

    def empty(self, count: int, dtype: str) -> Any:
        """A contiguous buffer of `count` elements on the backend's device."""
        ...

    def from_numpy(self, array: np.ndarray, dtype: str) -> Any:
        """Copy host data (already in a numpy type matching `dtype`'s bits) to a buffer."""
        ...

    def to_numpy(self, buf: Any) -> np.ndarray:
        """Copy a buffer back to the host as float64 (or int64 for integer types)."""
        ...

    def all_to_all(
        self,
        out: Any,
        inp: Any,
        send_counts: Sequence[int] | None = None,
        recv_counts: Sequence[int] | None = None,
    ) -> None:
        """Equal blocks when counts are None; otherwise alltoallv with per-peer counts."""
        ...

    def all_reduce(self, out: Any, inp: Any, op: str = "sum") -> None: ...
    def all_gather(self, out: Any, inp: Any) -> None: ...
    def reduce_scatter(self, out: Any, inp: Any, op: str = "sum") -> None: ...
    def send(self, buf: Any, peer: int) -> None: ...
    def recv(self, buf: Any, peer: int) -> None: ...

    def send_recv(self, sendbuf: Any, dst: int, recvbuf: Any, src: int) -> None:
        """Send to `dst` and receive from `src` concurrently (ring step)."""
        ...

    def barrier(self) -> None: ...
    def synchronize(self) -> None: ...

    def timer(self) -> Timer:
        """CUDA events on the communication stream for GPU backends, host clock otherwise."""
        ...

    def capture(self, fn: Callable[[], None], num_iters: int) -> Callable[[], None] | None:
        """Capture `num_iters` calls of `fn` into a replayable graph; None if unsupported."""
        ...

    def repeat(self, fn: Callable[[], None], num_iters: int) -> Callable[[], None] | None:
        """A function issuing `num_iters` calls of `fn` from compiled code (the backend's
        calls recorded once, as nccl-tests' C loop issues them), or None: loops are then
        issued from Python. Only for `fn` that does nothing but call this comm."""
        ...

    def gather_object(self, obj: Any) -> list[Any]:
        """All-gather a small picklable host object (metadata, config hashes, timings)."""
        ...

    def max_over_ranks(self, values: np.ndarray) -> np.ndarray:
        """Elementwise max of a float64 host vector over all ranks."""
        ...

    def split(self, color: int, key: int) -> Comm: ...
    def close(self) -> None: ...


BackendFactory = Callable[[LaunchInfo], Comm]
