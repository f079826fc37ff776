"""NCCL entry points that CuPy does not bind, called through ctypes on the same library.

CuPy's `cupy.cuda.nccl` binds the classic collectives and send/recv. NCCL 2.28 added
`ncclAlltoAll`, which nccl-tests' alltoall_perf calls when the library has it: one host
call and one kernel launch instead of a group of 2 x world send/recv calls, which is what a
Python loop of small all-to-alls pays for. The library is the one already mapped into this
process (the one CuPy linked), found through /proc/self/maps, so no second copy is loaded.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

from collectives.backends.calls import loaded_library

ALLTOALL_MIN_VERSION = 22800


def alltoall_function(version: int) -> Callable[..., int] | None:
    """ctypes `ncclAlltoAll(send, recv, count, type, comm, stream)`, or None when the
    loaded NCCL is older than 2.28 or lacks the symbol."""
    path = loaded_library("libnccl")
    if version < ALLTOALL_MIN_VERSION or path is None:
        return None
    try:
        fn: Any = ctypes.CDLL(path).ncclAlltoAll
    except (OSError, AttributeError):
        return None
    ptr, size = ctypes.c_void_p, ctypes.c_size_t
    fn.argtypes = [ptr, ptr, size, ctypes.c_int, ptr, ptr]
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]
