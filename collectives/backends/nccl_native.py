"""NCCL called through ctypes on the library CuPy loaded: entry points CuPy does not bind, and
loops of recorded calls issued from compiled code.

CuPy's `cupy.cuda.nccl` binds the classic collectives and send/recv. NCCL 2.28 added
`ncclAlltoAll`, which nccl-tests' alltoall_perf calls when the library has it: one host
call and one kernel launch instead of a group of 2 x world send/recv calls.

A small NCCL op takes ~6-8 µs of GPU time, and issuing it from Python costs about as much
host time (interpreter, CuPy's argument handling), so a Python loop of small ops measures the
host, where nccl-tests' C loop measures the library. `Library` binds the NCCL functions the
`nccl` backend uses; the backend records the calls an op makes as `NativeCall`s (a kind and
its integer arguments) and `repeater` issues them N times from a numba-compiled loop with
the GIL released, exactly as the op would issue them, group calls included. The library is
the one already mapped into this process (found through /proc/self/maps), so no second copy
is loaded.

Addresses, counts and handles travel as 64-bit integers and enums as 32-bit ints (the ABI
of `void*`, `size_t`, `ncclComm_t`, `cudaStream_t` and `int`/enum arguments on x86-64 and
aarch64).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from collectives.backends.base import CommError
from collectives.backends.calls import loaded_library

ALLTOALL_MIN_VERSION = 22800

_P, _I = ctypes.c_uint64, ctypes.c_int32
# (send, recv, count, type, op, comm, stream), (send, recv, count, type, comm, stream) and
# (buf, count, type, peer, comm, stream)
_REDUCE = ctypes.CFUNCTYPE(_I, _P, _P, _P, _I, _I, _P, _P)
_MOVE = ctypes.CFUNCTYPE(_I, _P, _P, _P, _I, _P, _P)
_P2P = ctypes.CFUNCTYPE(_I, _P, _P, _I, _I, _P, _P)
_GROUP = ctypes.CFUNCTYPE(_I)

# Kinds of recorded calls: index into FUNCTIONS, and the code the compiled loop branches on.
FUNCTIONS = (
    ("ncclAllReduce", _REDUCE),
    ("ncclReduceScatter", _REDUCE),
    ("ncclAllGather", _MOVE),
    ("ncclAlltoAll", _MOVE),
    ("ncclSend", _P2P),
    ("ncclRecv", _P2P),
    ("ncclGroupStart", _GROUP),
    ("ncclGroupEnd", _GROUP),
)
ALL_REDUCE, REDUCE_SCATTER, ALL_GATHER, ALL_TO_ALL, SEND, RECV, GROUP_START, GROUP_END = range(8)
MAX_ARGS = 7


class NativeCall(NamedTuple):
    """One NCCL call, ready to be made from compiled code."""

    kind: int
    """Which function (an index into FUNCTIONS)."""
    args: tuple[int, ...] = ()
    """Its arguments as integers, in the C order."""


class Library:
    """The NCCL functions above, bound from `symbol(name) -> address or None` (a function
    the library lacks is None; calls of it are never recorded)."""

    def __init__(self, symbol: Callable[[str], int | None]) -> None:
        self.functions: list[Any] = []
        for name, proto in FUNCTIONS:
            address = symbol(name)
            self.functions.append(None if not address else proto(address))
        self._loop: Any = None

    def has(self, kind: int) -> bool:
        return self.functions[kind] is not None

    def call(self, native: NativeCall) -> int:
        """Make one call from Python (the backend's all-to-all on ncclAlltoAll)."""
        return int(self.functions[native.kind](*native.args))

    def loop(self) -> Any:
        """The compiled loop over recorded calls (compiled on its first call)."""
        if self._loop is None:
            self._loop = _compile(self.functions)
        return self._loop


def _absent(*_args: Any) -> int:
    return 5  # ncclInvalidUsage; never reached: calls of absent functions are not recorded


def _compile(functions: list[Any]) -> Any:
    """A numba loop closing over the bound functions: per iteration every recorded call in
    order; on the first non-zero status it closes any open group and returns the status."""
    import numba

    f = [
        fn if fn is not None else proto(_absent)
        for fn, (_, proto) in zip(functions, FUNCTIONS, strict=True)
    ]
    all_reduce, reduce_scatter, all_gather, all_to_all, send, recv, start, end = f

    @numba.njit(nogil=True, cache=False)  # type: ignore[misc]
    def loop(kinds: Any, args: Any, num_iters: int) -> int:
        depth = 0
        for _ in range(num_iters):
            for i in range(kinds.size):
                k, a = kinds[i], args[i]
                if k == ALL_REDUCE:
                    rc = all_reduce(a[0], a[1], a[2], np.int32(a[3]), np.int32(a[4]), a[5], a[6])
                elif k == REDUCE_SCATTER:
                    op = np.int32(a[4])
                    rc = reduce_scatter(a[0], a[1], a[2], np.int32(a[3]), op, a[5], a[6])
                elif k == ALL_GATHER:
                    rc = all_gather(a[0], a[1], a[2], np.int32(a[3]), a[4], a[5])
                elif k == ALL_TO_ALL:
                    rc = all_to_all(a[0], a[1], a[2], np.int32(a[3]), a[4], a[5])
                elif k == SEND:
                    rc = send(a[0], a[1], np.int32(a[2]), np.int32(a[3]), a[4], a[5])
                elif k == RECV:
                    rc = recv(a[0], a[1], np.int32(a[2]), np.int32(a[3]), a[4], a[5])
                elif k == GROUP_START:
                    rc = start()
                    depth += 1
                else:
                    rc = end()
                    depth -= 1
                if rc != 0:
                    while depth > 0:
                        end()
                        depth -= 1
                    return rc  # type: ignore[no-any-return]
        return 0

    return loop


def pack(recorded: Sequence[NativeCall]) -> tuple[np.ndarray, np.ndarray]:
    """Recorded calls as the compiled loop's arrays: kinds (int32) and arguments (uint64,
    one row of MAX_ARGS per call). ValueError on a negative or oversized argument."""
    kinds = np.asarray([c.kind for c in recorded], dtype=np.int32)
    args = np.zeros((len(recorded), MAX_ARGS), dtype=np.uint64)
    for row, call in enumerate(recorded):
        if len(call.args) > MAX_ARGS or any(not 0 <= v < 2**64 for v in call.args):
            raise ValueError(f"NCCL call {FUNCTIONS[call.kind][0]} has bad arguments {call.args}")
        args[row, : len(call.args)] = call.args
    return kinds, args


def repeater(
    lib: Library, recorded: Sequence[NativeCall], num_iters: int, rank: int
) -> Callable[[], None]:
    """A function issuing the recorded calls `num_iters` times from compiled code (compiled
    on its first call, which the runner makes untimed); CommError on a non-zero status."""
    if not recorded or num_iters < 1:
        raise ValueError(f"{len(recorded)} recorded calls x {num_iters}: need at least one each")
    kinds, args = pack(recorded)
    loop = lib.loop()

    def issue() -> None:
        status = int(loop(kinds, args, num_iters))
        if status:
            raise CommError(f"NCCL call loop failed on rank {rank}: ncclResult_t {status}")

    return issue


def load(version: int) -> Library | None:
    """Bindings on the NCCL library mapped into this process (None when none is);
    ncclAlltoAll only from NCCL 2.28 on."""
    path = loaded_library("libnccl")
    if path is None:
        return None
    try:
        cdll = ctypes.CDLL(path)
    except OSError:
        return None

    def symbol(name: str) -> int | None:
        if name == "ncclAlltoAll" and version < ALLTOALL_MIN_VERSION:
            return None
        try:
            return ctypes.cast(getattr(cdll, name), ctypes.c_void_p).value
        except AttributeError:
            return None

    return Library(symbol)
