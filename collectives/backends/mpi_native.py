"""Replaying MPI calls from compiled code: the MPI backend's answer to a CUDA graph.

A small MPI call costs 2-3 µs in C but ~1 µs more from Python (interpreter, mpi4py's argument
handling, the GIL), so a Python loop measures the harness as much as the library. The
backend's `capture` records the MPI calls an op makes (as `NativeCall`s: a C function of the
MPI library mpi4py loaded, bound with ctypes, and its integer arguments) and `replay` runs
that sequence N times from a numba-compiled loop, which calls the C functions directly with
the GIL released (so the watchdog can still fire on a hung peer). Only out-of-place calls
on host memory without staging copies, host-side reduction or persistent requests are
recorded; anything else makes `capture` decline and the runner skips graph mode.

Handles (communicator, datatype, op) are passed by value: `int` in MPICH, pointers in Open
MPI, sized from mpi4py's `_sizeof`. Buffer addresses and handles are passed as 64-bit
integers (the ABI of a pointer argument on x86-64 and aarch64).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from collectives.backends.base import CommError
from collectives.backends.calls import loaded_library

INT_MAX = 2**31 - 1


class NativeCall(NamedTuple):
    """One MPI call, ready to be made from compiled code."""

    fn: Any
    """ctypes function of the MPI library (argtypes and restype set)."""
    args: tuple[int, ...]
    """Its arguments: addresses, counts, tags, ranks and handles, as integers."""
    keep: tuple[Any, ...] = ()
    """Arrays whose addresses are in `args` (alltoallv's counts and displacements)."""


class Native:
    """ctypes bindings of the MPI calls the backend can replay, on mpi4py's library."""

    def __init__(self, mpi: Any, lib: ctypes.CDLL) -> None:
        self._mpi = mpi
        sizes = {mpi._sizeof(t) for t in (mpi.Comm, mpi.Datatype, mpi.Op)}
        if sizes not in ({4}, {8}):
            raise ValueError(f"MPI handle sizes {sizes}: expected all 4 or all 8 bytes")
        h = ctypes.c_int32 if sizes == {4} else ctypes.c_uint64
        p, i = ctypes.c_uint64, ctypes.c_int32
        self._status = ctypes.create_string_buffer(max(mpi._sizeof(mpi.Status), 64))

        def bind(name: str, argtypes: list[Any]) -> Any:
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = argtypes, ctypes.c_int32
            return fn

        self.alltoall = bind("MPI_Alltoall", [p, i, h, p, i, h, h])
        self.alltoallv = bind("MPI_Alltoallv", [p, p, p, h, p, p, p, h, h])
        self.allgather = bind("MPI_Allgather", [p, i, h, p, i, h, h])
        self.allreduce = bind("MPI_Allreduce", [p, p, i, h, h, h])
        self.reduce_scatter_block = bind("MPI_Reduce_scatter_block", [p, p, i, h, h, h])
        self.send = bind("MPI_Send", [p, i, h, i, i, h])
        self.recv = bind("MPI_Recv", [p, i, h, i, i, h, p])
        self.sendrecv = bind("MPI_Sendrecv", [p, i, h, i, i, p, i, h, i, i, h, p])

    @property
    def status_address(self) -> int:
        return ctypes.addressof(self._status)

    def handle(self, obj: Any) -> int:
        """The C handle of an mpi4py object, as an integer."""
        return int(self._mpi._handleof(obj))

    def call(self, name: str, args: tuple[Any, ...]) -> NativeCall | None:
        """`name`(*args) with numpy arrays turned into their addresses, tuples of counts or
        displacements into C int arrays, and mpi4py objects into handles; None when a count
        does not fit a C int (mpi4py then uses the large-count calls)."""
        out: list[int] = []
        keep: list[Any] = []
        for arg in args:
            if isinstance(arg, tuple):
                if any(abs(v) > INT_MAX for v in arg):
                    return None
                arg = np.ascontiguousarray(arg, dtype=np.int32)
                keep.append(arg)
            if isinstance(arg, int):
                if abs(arg) > INT_MAX:
                    return None
                out.append(arg)
            elif hasattr(arg, "ctypes"):
                out.append(int(arg.ctypes.data))
            else:
                out.append(self.handle(arg))
        if name in ("recv", "sendrecv"):
            out.append(self.status_address)
        return NativeCall(getattr(self, name), tuple(out), tuple(keep))


def load(mpi: Any) -> Native | None:
    """Bindings on the library mpi4py loaded, or None (library not found, odd handles)."""
    path = loaded_library("libmpi")
    if path is None:
        return None
    try:
        return Native(mpi, ctypes.CDLL(path))
    except (OSError, AttributeError, ValueError):
        return None


_LOOP: list[Any] = []


def _loop() -> Any:
    """The compiled loop: per iteration the first `k` of three calls (1 <= k <= 3), stopping
    at the first non-zero MPI return code."""
    if _LOOP:
        return _LOOP[0]
    import numba

    @numba.njit(nogil=True, cache=False)  # type: ignore[misc]
    def loop(f1: Any, a1: Any, f2: Any, a2: Any, f3: Any, a3: Any, k: int, n: int) -> int:
        for _ in range(n):
            rc = f1(*a1)
            if rc == 0 and k > 1:
                rc = f2(*a2)
            if rc == 0 and k > 2:
                rc = f3(*a3)
            if rc != 0:
                return rc  # type: ignore[no-any-return]
        return 0

    _LOOP.append(loop)
    return loop


def keep(
    lib: Native | None, native: tuple[str, tuple[Any, ...]] | None, wires: Any, plain: bool
) -> NativeCall | None:
    """The call a plan may be replayed by: `native` (C function name, arguments) bound on
    `lib`, only for a plain call (no persistent request, nothing computed after it) on host
    memory without staging copies (`wires`: the backend's Wire records)."""
    if lib is None or native is None or not plain:
        return None
    if any(w.host is None or w.stage_in is not None or w.stage_out is not None for w in wires):
        return None
    return lib.call(*native)


def replayer(recorded: list[NativeCall], num_iters: int, rank: int) -> Callable[[], None]:
    """A function running the recorded calls `num_iters` times from compiled code (compiled on
    its first call, which the runner makes untimed); CommError on the first MPI error code."""
    if not 1 <= len(recorded) <= 3:
        raise ValueError(f"{len(recorded)} recorded MPI calls: replay handles 1 to 3 per op")
    loop = _loop()
    padded = [*recorded, *[recorded[0]] * (3 - len(recorded))]  # the extra ones are skipped
    flat = [x for call in padded for x in (call.fn, tuple(call.args))]

    def replay() -> None:
        code = int(loop(*flat, len(recorded), num_iters))
        if code:
            raise CommError(f"MPI call replay failed on rank {rank}: MPI error code {code}")

    return replay
