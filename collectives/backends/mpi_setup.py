"""Setting up the `mpi` backend: options, MPI initialisation, CUDA-awareness, reductions.

`initialize` imports `mpi4py.MPI` with the requested thread level (it must be set through
`mpi4py.rc` before the first import; mpi4py's own default, MPI_THREAD_MULTIPLE, adds
microseconds to every call), picks the buffer kind and host arena, and records all of it for
`facts()`. `decide_cuda` probes whether MPI takes device pointers and confirms it with a real
Allreduce on device buffers before trusting it. `plan_reduction` is the pure rule for how a
(dtype, op) pair is reduced: MPI's own datatype, a numpy user-defined op (bfloat16, float16
where MPI lacks it), or a clear refusal (float8).
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import subprocess
import sys
from typing import Any

import numpy as np

from collectives.backends import buffers as bf
from collectives.backends.base import CommError, LaunchInfo, canonical_dtype

THREAD_LEVELS = ("single", "funneled", "serialized", "multiple")
CUDA_AWARE_MODES = ("auto", "yes", "no")
_NATIVE_TYPES = {
    "float32": "FLOAT",
    "float64": "DOUBLE",
    "int8": "INT8_T",
    "uint8": "UINT8_T",
    "int32": "INT32_T",
    "float16": "FLOAT16_T",
    "bfloat16": "BFLOAT16_T",
}
_OPS = {"sum": "SUM", "prod": "PROD", "max": "MAX", "min": "MIN", "avg": "SUM"}
_UFUNCS = {"SUM": np.add, "PROD": np.multiply, "MAX": np.maximum, "MIN": np.minimum}
_LIBMPI_NAMES = ("libmpi.so.40", "libmpi.so.12", "libmpi.so")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Options:
    """The `mpi` backend's options (LaunchInfo.options), validated."""

    thread_level: str = "single"
    """MPI thread level requested at initialisation: single, funneled, serialized, multiple."""
    buffer: str = "numpy"
    """Array type of buffers: numpy, torch, cupy, numba, or fake-device (tests); `auto` in
    LaunchInfo.options means torch on CUDA, numpy otherwise."""
    alignment_bytes: int = 4096
    """Alignment of host buffers carved from the reused arena; 0 = fresh np.empty each."""
    persistent: bool = False
    """Use MPI-4 persistent collectives (Alltoall_init, ...) where the library has them."""
    cuda_aware: str = "auto"
    """Device buffers straight to MPI: auto (probe + confirm), yes (confirm only), no."""

    def __post_init__(self) -> None:
        checks = (
            ("thread_level", self.thread_level, THREAD_LEVELS),
            ("buffer", self.buffer, bf.BUFFER_KINDS),
            ("cuda_aware", self.cuda_aware, CUDA_AWARE_MODES),
        )
        for name, value, allowed in checks:
            if value not in allowed:
                raise ValueError(
                    f"mpi option {name}={value!r}; choose one of: {', '.join(allowed)}"
                )
        if self.alignment_bytes < 0 or self.alignment_bytes & (self.alignment_bytes - 1):
            raise ValueError(
                f"mpi option alignment_bytes={self.alignment_bytes}; use 0 or a power of two"
            )

    @classmethod
    def from_launch(cls, launch: LaunchInfo) -> Options:
        """Options from `launch.options`; unknown keys are refused."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(launch.options) - known)
        if unknown:
            raise ValueError(f"unknown mpi options {unknown}; known: {', '.join(sorted(known))}")
        values = dict(launch.options)
        if values.get("buffer", "auto") == "auto":
            values["buffer"] = "torch" if launch.device == "cuda" else "numpy"
        if "persistent" in values:
            values["persistent"] = _as_bool(values["persistent"])
        if "alignment_bytes" in values:
            values["alignment_bytes"] = int(values["alignment_bytes"])
        return cls(**values)


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise ValueError(f"mpi option persistent={value!r}; use true or false")
        return value.lower() in ("1", "true", "yes", "on")
    return bool(value)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Reduction:
    """How one (dtype, op) pair is reduced by MPI."""

    datatype: Any
    """MPI datatype of one element."""
    op: Any
    """MPI op (predefined or user-defined)."""
    itemsize: int
    """Bytes per element."""
    host_compute: bool
    """The reduction runs Python code on the buffers: device buffers must be staged."""
    divide_by_world: bool
    """avg: sum, then divide by the number of ranks."""


def plan_reduction(dtype: str, op: str, has_native_type: Any) -> tuple[str, str, bool]:
    """(MPI type name, MPI op name, needs a user-defined op) for reducing `dtype` with `op`.

    `has_native_type(name)` says whether the MPI library defines that datatype. Pure.
    """
    dtype = canonical_dtype(dtype)
    if op not in _OPS:
        raise ValueError(f"unknown reduction op {op!r}; choose one of: {', '.join(_OPS)}")
    if dtype.startswith("float8"):
        raise ValueError(
            f"the mpi backend cannot reduce {dtype} (MPI has no float8 type); "
            "use it with data-movement ops (alltoall, allgather, sendrecv) or pick -d bfloat16"
        )
    if op == "avg" and dtype in bf.INTEGER_DTYPES:
        raise ValueError(f"op avg is defined here for floating types only, not {dtype}")
    name = _NATIVE_TYPES[dtype]
    if has_native_type(name):
        return name, _OPS[op], False
    raw = {1: "UINT8_T", 2: "UINT16_T", 4: "UINT32_T"}[bf.numpy_dtype(dtype).itemsize]
    return raw, _OPS[op], True


class Setup:
    """MPI as initialised for this process, shared by a communicator and its splits."""

    def __init__(self, mpi: Any, options: Options, allocator: bf.Allocator, notes: dict) -> None:
        self.mpi = mpi
        self.options = options
        self.allocator = allocator
        self.persistent = options.persistent and notes["persistent_available"]
        self.cuda_direct = False
        self.cuda_mode = "host buffers"
        self.notes = notes
        self._reductions: dict[tuple[str, str], Reduction] = {}

    def reduction(self, dtype: str, op: str) -> Reduction:
        key = (dtype, op)
        if key not in self._reductions:
            self._reductions[key] = self._make_reduction(dtype, op)
        return self._reductions[key]

    def _make_reduction(self, dtype: str, op: str) -> Reduction:
        mpi = self.mpi
        type_name, op_name, user = plan_reduction(dtype, op, self._has_type)
        mpi_op = getattr(mpi, op_name)
        if user:
            mpi_op = _user_op(mpi, bf.numpy_dtype(dtype), _UFUNCS[op_name])
        return Reduction(
            datatype=getattr(mpi, type_name),
            op=mpi_op,
            itemsize=bf.numpy_dtype(dtype).itemsize,
            host_compute=user or op == "avg",
            divide_by_world=op == "avg",
        )

    def _has_type(self, name: str) -> bool:
        datatype = getattr(self.mpi, name, None)
        return datatype is not None and datatype != self.mpi.DATATYPE_NULL

    def facts(self) -> dict[str, Any]:
        mpi = self.mpi
        return {
            **self.notes,
            "mpi_library": mpi.Get_library_version().strip().splitlines()[0],
            "mpi_standard": "{}.{}".format(*mpi.Get_version()),
            "buffer": self.options.buffer,
            "alignment_bytes": self.options.alignment_bytes,
            "persistent": self.persistent,
            "cuda_aware_option": self.options.cuda_aware,
            "cuda_mode": self.cuda_mode,
            "bfloat16_reduction": "native" if self._has_type("BFLOAT16_T") else "user op",
            "float16_reduction": "native" if self._has_type("FLOAT16_T") else "user op",
        }


def _user_op(mpi: Any, np_dtype: np.dtype, ufunc: Any) -> Any:
    def reduce(inbuf: Any, inoutbuf: Any, datatype: Any) -> None:
        acc = np.frombuffer(inoutbuf, dtype=np_dtype)
        ufunc(np.frombuffer(inbuf, dtype=np_dtype), acc, out=acc)

    return mpi.Op.Create(reduce, commute=True)


def _import_mpi(level: str) -> tuple[Any, dict[str, Any]]:
    import mpi4py

    preloaded = "mpi4py.MPI" in sys.modules
    if not preloaded:
        mpi4py.rc.thread_level = level
    from mpi4py import MPI

    names = {
        MPI.THREAD_SINGLE: "single",
        MPI.THREAD_FUNNELED: "funneled",
        MPI.THREAD_SERIALIZED: "serialized",
        MPI.THREAD_MULTIPLE: "multiple",
    }
    notes = {
        "mpi4py_version": mpi4py.__version__,
        "thread_level_requested": level,
        "thread_level_provided": names.get(MPI.Query_thread(), str(MPI.Query_thread())),
        "mpi_imported_before_backend": preloaded,
        "persistent_available": hasattr(MPI.Comm, "Alltoall_init") and MPI.Get_version() >= (4, 0),
    }
    return MPI, notes


def initialize(launch: LaunchInfo) -> Setup:
    """Import MPI with the requested thread level and build the buffer allocator."""
    options = Options.from_launch(launch)
    try:
        mpi, notes = _import_mpi(options.thread_level)
    except ImportError as exc:
        raise ImportError(f"mpi4py is not importable ({exc}); pip install 'epbench[mpi]'") from exc
    kind = options.buffer
    on_device = kind in ("cupy", "numba") or (kind == "torch" and launch.device == "cuda")
    device_index = _select_device(kind, launch.host_local_rank) if on_device else 0
    alloc = bf.Allocator(
        kind=kind,
        arena=bf.HostArena(options.alignment_bytes),
        device_index=device_index,
        on_device=on_device,
    )
    return Setup(mpi, options, alloc, notes)


def _select_device(kind: str, host_local_rank: int) -> int:
    if kind == "torch":
        import torch

        index = host_local_rank % max(torch.cuda.device_count(), 1)
        torch.cuda.set_device(index)
    elif kind == "cupy":
        import cupy

        index = host_local_rank % max(cupy.cuda.runtime.getDeviceCount(), 1)
        cupy.cuda.Device(index).use()
    else:
        import numba.cuda

        index = host_local_rank % max(len(numba.cuda.gpus), 1)
        numba.cuda.select_device(index)
    return index


# ---- CUDA-awareness ------------------------------------------------------------------------------
def probe_cuda_support(mpi: Any) -> tuple[bool | None, str]:
    """(supported, how we know); None when the library does not say."""
    query = getattr(mpi, "Query_cuda_support", None)
    if query is not None:
        return bool(query()), "mpi4py Query_cuda_support"
    for name in _LIBMPI_NAMES:
        try:
            lib = ctypes.CDLL(name, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
        except OSError:
            continue
        if hasattr(lib, "MPIX_Query_cuda_support"):
            lib.MPIX_Query_cuda_support.restype = ctypes.c_int
            return bool(lib.MPIX_Query_cuda_support()), f"MPIX_Query_cuda_support ({name})"
    if "Open MPI" in mpi.Get_library_version():
        return _ompi_info_cuda()
    return None, "no query available"


def _ompi_info_cuda() -> tuple[bool | None, str]:
    try:
        text = subprocess.run(
            ["ompi_info", "--parsable", "--all"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None, "ompi_info not runnable"
    for line in text.splitlines():
        if "mpi_built_with_cuda_support:value" in line:
            return line.rsplit(":", 1)[-1].strip() == "true", "ompi_info"
    return None, "ompi_info silent on CUDA"


def decide_cuda(setup: Setup, comm: Any) -> None:
    """Choose direct device buffers or host staging for `comm`, the same on every rank."""
    if not bf.is_device(bf.kind_of(comm.empty(1, "float32"))):
        return
    option = setup.options.cuda_aware
    supported, how = (True, "not probed (cuda_aware=yes)") if option == "yes" else (False, "")
    if option == "auto":
        supported, how = probe_cuda_support(setup.mpi)
    confirmed = False
    if option != "no" and supported:
        confirmed = _confirm_direct(setup, comm)
        if option == "yes" and not confirmed:
            raise CommError("cuda_aware=yes but an Allreduce on device buffers gave wrong results")
    setup.cuda_direct = confirmed
    if confirmed:
        setup.cuda_mode = f"direct (probe: {how}; confirmed by a device Allreduce)"
    else:
        reason = "cuda_aware=no" if option == "no" else f"probe: {supported} via {how}"
        setup.cuda_mode = f"host staging ({reason})"


def _confirm_direct(setup: Setup, comm: Any) -> bool:
    setup.cuda_direct = True
    count = 1024
    try:
        inp = comm.from_numpy(np.full(count, comm.rank + 1.0), "float32")
        out = comm.empty(count, "float32")
        comm.all_reduce(out, inp, "sum")
        got = comm.to_numpy(out)
        ok = bool(np.all(got == comm.world * (comm.world + 1) / 2))
    except (CommError, setup.mpi.Exception):
        ok = False
    finally:
        setup.cuda_direct = False
        comm.forget_plans()
    flags = comm.gather_object(ok)
    return all(flags)
