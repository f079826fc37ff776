"""What the mpi and nccl backends share besides buffers: byte layouts of all-to-all calls,
the cache of prepared calls keyed by buffer identity, and rank placement after a split.

All pure: no MPI, CUDA or NCCL here.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

Run = Callable[[], None]
"""A prepared call: all arguments bound, nothing left to parse."""


# ---- layouts (element counts -> byte counts and displacements) ------------------------------
@dataclasses.dataclass(frozen=True, kw_only=True)
class Layout:
    """Per-peer byte counts and displacements of one side of an all-to-all."""

    counts_bytes: tuple[int, ...]
    """Bytes exchanged with each peer, in rank order."""
    displs_bytes: tuple[int, ...]
    """Byte offset of each peer's block in the buffer (blocks packed in rank order)."""


def all_to_all_layout(
    counts: Any, world: int, capacity_bytes: int, itemsize: int, side: str
) -> Layout:
    """Layout for alltoallv counts (elements per peer) or equal blocks when `counts` is None.

    Equal blocks split the buffer into `world` blocks of `capacity // world` elements, as
    nccl-tests does; ValueError when counts are the wrong length, negative or overflow.
    """
    if counts is None:
        block = capacity_bytes // itemsize // world * itemsize
        return Layout(
            counts_bytes=(block,) * world, displs_bytes=tuple(i * block for i in range(world))
        )
    counts = tuple(int(c) for c in counts)
    if len(counts) != world or min(counts) < 0:
        raise ValueError(f"{side} counts {list(counts)} must be {world} non-negative integers")
    if sum(counts) * itemsize > capacity_bytes:
        raise ValueError(
            f"{side} counts sum to {sum(counts)} elements but the buffer holds "
            f"{capacity_bytes // itemsize}"
        )
    displs = [0]
    for count in counts[:-1]:
        displs.append(displs[-1] + count * itemsize)
    return Layout(counts_bytes=tuple(c * itemsize for c in counts), displs_bytes=tuple(displs))


def check_multiple(small_bytes: int, large_bytes: int, world: int, what: str) -> None:
    """ValueError unless `large_bytes` holds `world` blocks of `small_bytes` (gather/scatter)."""
    if small_bytes * world > large_bytes:
        raise ValueError(
            f"{what}: {world} blocks of {small_bytes} B need {small_bytes * world} B, "
            f"buffer has {large_bytes} B"
        )


# ---- prepared calls and placement ----------------------------------------------------------------
def no_buffer() -> None:
    return None


def _dead(ref: Any) -> bool:
    return ref is not no_buffer and ref() is None


class Plans:
    """Prepared calls keyed by op and the identity of the (one or two) buffers they use.

    Entries hold weak references, so a buffer that dies invalidates its plans (and a later
    buffer at the same `id` cannot pick up a stale one); `cleanup` frees MPI requests.
    Entries are (ref to a, ref to b, run, cleanup), read directly by `MpiComm._call`.
    """

    def __init__(self) -> None:
        self.entries: dict[tuple[Any, ...], tuple[Any, Any, Run, Run | None]] = {}

    def put(self, key: tuple[Any, ...], a: Any, b: Any, run: Run, cleanup: Run | None) -> Run:
        self._drop(key)
        dead = [k for k, (ra, rb, _, _) in self.entries.items() if _dead(ra) or _dead(rb)]
        for old in dead:
            self._drop(old)
        ref_b = no_buffer if b is None else weakref.ref(b)
        self.entries[key] = (weakref.ref(a), ref_b, run, cleanup)
        return run

    def _drop(self, key: tuple[Any, ...]) -> None:
        entry = self.entries.pop(key, None)
        if entry is not None and entry[3] is not None:
            entry[3]()

    def clear(self) -> None:
        for key in list(self.entries):
            self._drop(key)


def placement(nodes: list[int], rank: int) -> dict[str, int]:
    """local_rank/local_world/node/num_nodes of `rank` given every member's node. Pure."""
    distinct = sorted(set(nodes))
    members = [i for i, node in enumerate(nodes) if node == nodes[rank]]
    return {
        "local_rank": members.index(rank),
        "local_world": len(members),
        "node": distinct.index(nodes[rank]),
        "num_nodes": len(distinct),
    }


# ---- host timing and call composition ----------------------------------------------------
class HostTimer:
    """Host-clock timer (perf_counter) for CPU backends, whose calls block, so host time is
    the op time. `start`/`stop` are bound lambdas: the cheapest call Python offers."""

    def __init__(self) -> None:
        self._starts: list[float] = []
        self._stops: list[float] = []
        self.start = lambda: self._starts.append(time.perf_counter())
        self.stop = lambda: self._stops.append(time.perf_counter())

    def elapsed_s(self) -> list[float]:
        return [b - a for a, b in zip(self._starts, self._stops, strict=True)]


def start_wait(mpi: Any, reqs: list[Any]) -> Run:
    """Start and wait for persistent MPI requests (`mpi` is the mpi4py.MPI module)."""
    if len(reqs) == 1:
        req = reqs[0]

        def one() -> None:
            req.Start()
            req.Wait()

        return one
    return lambda: (mpi.Prequest.Startall(reqs), mpi.Request.Waitall(reqs))  # type: ignore


def compose(pre: list[Run], call: Run, post: list[Run]) -> Run:
    """One call running `pre`, `call`, then `post` (just `call` when both are empty)."""
    if not pre and not post:
        return call

    def run() -> None:
        for step in pre:
            step()
        call()
        for step in post:
            step()

    return run


def divider(typed: np.ndarray, world: int) -> Run:
    """Divides `typed` in place by `world` (MPI has no average reduction)."""

    def divide() -> None:
        typed[...] = (typed.astype(np.float64) / world).astype(typed.dtype)

    return divide


def loaded_library(prefix: str, maps: str | None = None) -> str | None:
    """Path of the first shared library named `prefix`.so* mapped into this process."""
    if maps is None:
        try:
            maps = pathlib.Path("/proc/self/maps").read_text()
        except OSError:
            return None
    for line in maps.splitlines():
        fields = line.split()
        if fields and pathlib.PurePath(fields[-1]).name.startswith(f"{prefix}.so"):
            return fields[-1]
    return None
