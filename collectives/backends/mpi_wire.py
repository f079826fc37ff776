"""How one buffer reaches MPI: the memory MPI sees, and the staging copies around a call
(device buffers go through host memory unless the library is CUDA-aware)."""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any

import numpy as np

from collectives.backends import buffers as bf
from collectives.backends.calls import Run


@dataclasses.dataclass
class Wire:
    """How one buffer reaches MPI: the memory MPI sees and copies around the call."""

    memory: Any
    nbytes: int
    stage_in: Run | None = None
    stage_out: Run | None = None
    host: np.ndarray | None = None
    """Host bytes (uint8) of the buffer or its staging copy; None for direct device memory."""


def wire(buf: Any, role: str, host_compute: bool, cuda_direct: bool, alloc: bf.Allocator) -> Wire:
    """Memory MPI uses for `buf`; `role` is in, out or inout; device buffers are staged
    when MPI is not CUDA-aware or the call computes on the host (user ops, avg)."""
    kind = bf.kind_of(buf)
    nbytes = bf.nbytes_of(buf)
    if not bf.is_device(kind):
        return Wire(bf.host_bytes(buf), nbytes, host=bf.host_bytes(buf))
    # plans must not keep `buf` alive (their look-up relies on its weak reference):
    # MPI gets a bare pointer, staging copies reach the buffer through a weak reference
    if cuda_direct and not host_compute:
        memory = bf.DeviceBytes(bf.device_pointer(buf), nbytes)
        sync = None if kind == "fake-device" else (lambda: bf.device_synchronize(kind))
        return Wire(memory, nbytes, stage_in=sync if role != "out" else None)
    host = alloc.host(nbytes, "uint8")
    ref = weakref.ref(buf)
    stage_in = (lambda: bf.copy_to_host(ref(), host)) if role != "out" else None
    stage_out = (lambda: bf.copy_from_host(host, ref())) if role != "in" else None
    return Wire(host, nbytes, stage_in, stage_out, host)
