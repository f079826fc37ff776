"""Names and byte conventions shared by the importers: op names, dtype names, bus factors.

Other tools name things their own way (nccl-tests `all_reduce_perf` and `float`, OSU
"All-to-All Personalized Exchange"); these tables map them onto epbench's names so that
runs of different tools land in the same columns. Bus-bandwidth factors follow nccl-tests
(docs/PERFORMANCE.md derives each).
"""

from __future__ import annotations

import math

OP_ALIASES = {
    "all_reduce": "allreduce",
    "all_gather": "allgather",
    "reduce_scatter": "reducescatter",
    "alltoall": "alltoall",
    "alltoallv": "alltoallv",
    "sendrecv": "sendrecv",
    "broadcast": "broadcast",
    "bcast": "broadcast",
    "reduce": "reduce",
    "gather": "gather",
    "scatter": "scatter",
    "hypercube": "hypercube",
    "latency": "pingpong",
}

DTYPE_ALIASES = {
    "float": "float32",
    "half": "float16",
    "double": "float64",
    "bfloat16": "bfloat16",
    "int8": "int8",
    "uint8": "uint8",
    "int32": "int32",
    "uint32": "uint32",
    "int64": "int64",
    "uint64": "uint64",
    "f8e4m3": "float8_e4m3fn",
    "f8e5m2": "float8_e5m2",
    "MPI_CHAR": "char",
    "MPI_INT": "int32",
    "MPI_FLOAT": "float32",
}


def canonical_op(name: str) -> str:
    """epbench's name for a tool's op name (`all_reduce_perf` -> `allreduce`)."""
    base = name.strip().lower()
    base = base.rsplit("/", 1)[-1]
    base = base.removesuffix("_perf").removesuffix("_mpi")
    return OP_ALIASES.get(base, base)


def canonical_dtype(name: str) -> str:
    """epbench's name for a tool's dtype name (`float` -> `float32`)."""
    return DTYPE_ALIASES.get(name.strip().rstrip("."), name.strip().rstrip("."))


def bus_factor(op: str, num_ranks: int) -> float:
    """busbw / algbw for `op` on `num_ranks` ranks (nccl-tests); NaN when unknown."""
    if num_ranks < 1:
        return math.nan
    n = num_ranks
    if op == "allreduce":
        return 2.0 * (n - 1) / n
    if op in ("allgather", "reducescatter", "alltoall", "alltoallv", "gather", "scatter"):
        return (n - 1) / n
    if op in ("broadcast", "reduce", "sendrecv", "pingpong"):
        return 1.0
    return math.nan


def nccl_size_bytes(op: str, msg_bytes: int, num_ranks: int) -> int:
    """nccl-tests' `size` from an OSU-style per-peer message size; -1 when unknown."""
    if op in ("alltoall", "allgather", "gather", "scatter"):
        return msg_bytes * num_ranks if num_ranks > 0 else -1
    return msg_bytes
