"""Array-type adapters shared by the MPI and CuPy-NCCL backends.

A buffer is one contiguous 1-D array of some library: numpy (bf16 and fp8 through
`ml_dtypes`), torch (CPU or CUDA), CuPy, Numba device arrays, or `FakeDeviceArray` (host
memory exposed through `__cuda_array_interface__`, which lets CPU tests reach the code paths
of device buffers, as mpi4py's own tests do). This module knows how to allocate each kind,
find its bytes (a host numpy view or a device pointer), copy it to and from the host, and
convert it to float64 for checks. Host memory comes from `HostArena`: page-aligned slices of
large blocks that are reused after release, because freshly allocated, unaligned host
buffers make MPI timings measure the allocator (docs/BENCHMARKS.md section 2).

Device libraries (torch.cuda, CuPy, Numba) are imported only when a buffer of theirs is used.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable
from typing import Any

import ml_dtypes
import numpy as np

from collectives.backends.base import canonical_dtype

BUFFER_KINDS = ("numpy", "torch", "cupy", "numba", "fake-device")
"""Values of the `buffer` backend option."""

NUMPY_DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "int8": np.dtype(np.int8),
    "uint8": np.dtype(np.uint8),
    "int32": np.dtype(np.int32),
    "float64": np.dtype(np.float64),
    "float8_e4m3": np.dtype(ml_dtypes.float8_e4m3fn),
    "float8_e5m2": np.dtype(ml_dtypes.float8_e5m2),
}
_RAW_BY_SIZE = {1: np.dtype(np.uint8), 2: np.dtype(np.uint16), 4: np.dtype(np.uint32)}
_TORCH_NAMES = {
    "float32": "float32",
    "float16": "float16",
    "bfloat16": "bfloat16",
    "int8": "int8",
    "uint8": "uint8",
    "int32": "int32",
    "float64": "float64",
    "float8_e4m3": "float8_e4m3fn",
    "float8_e5m2": "float8_e5m2",
}
INTEGER_DTYPES = frozenset({"int8", "uint8", "int32"})


def numpy_dtype(dtype: str) -> np.dtype:
    """The host numpy dtype holding elements of `dtype` (ml_dtypes for bf16 and fp8)."""
    return NUMPY_DTYPES[canonical_dtype(dtype)]


def raw_dtype(dtype: str) -> np.dtype:
    """The dtype device libraries store `dtype` as: itself, or an unsigned integer of the same
    width for bf16 and fp8 (which CuPy, Numba and torch.from_numpy do not know)."""
    np_dtype = numpy_dtype(dtype)
    return _RAW_BY_SIZE[np_dtype.itemsize] if np_dtype.type.__module__ == "ml_dtypes" else np_dtype


# ---- host memory --------------------------------------------------------------------------
class FreeList:
    """First-fit allocator of byte ranges inside one block (pure bookkeeping, no memory)."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self.free: list[tuple[int, int]] = [(0, capacity_bytes)]
        """Sorted, non-adjacent (offset, size) ranges that are free."""

    def take(self, size_bytes: int, alignment_bytes: int) -> int | None:
        """Offset of a free range of `size_bytes` aligned to `alignment_bytes`, or None."""
        for i, (offset, size) in enumerate(self.free):
            start = -(-offset // alignment_bytes) * alignment_bytes
            if start + size_bytes > offset + size:
                continue
            rest = []
            if start > offset:
                rest.append((offset, start - offset))
            if start + size_bytes < offset + size:
                rest.append((start + size_bytes, offset + size - start - size_bytes))
            self.free[i : i + 1] = rest
            return start
        return None

    def give(self, offset: int, size_bytes: int) -> None:
        """Return a range; merges it with free neighbours."""
        self.free.append((offset, size_bytes))
        self.free.sort()
        merged: list[tuple[int, int]] = []
        for off, size in self.free:
            if merged and merged[-1][0] + merged[-1][1] == off:
                merged[-1] = (merged[-1][0], merged[-1][1] + size)
            else:
                merged.append((off, size))
        self.free = merged


class HostArena:
    """Aligned host buffers carved out of large blocks that are kept and reused.

    `alignment_bytes=0` turns the arena off: each buffer is a fresh `np.empty` (what a naive
    harness does; kept for comparison runs).
    """

    def __init__(self, alignment_bytes: int = 4096, block_bytes: int = 64 << 20) -> None:
        if alignment_bytes < 0 or (alignment_bytes & (alignment_bytes - 1)):
            raise ValueError(f"alignment_bytes={alignment_bytes} must be 0 (off) or a power of two")
        self.alignment_bytes = alignment_bytes
        self.block_bytes = block_bytes
        self._blocks: list[tuple[np.ndarray, FreeList]] = []

    def take(self, size_bytes: int) -> np.ndarray:
        """An aligned uint8 array of `size_bytes`. It stays reserved until `own` ties it to the
        object that will hold it (numpy collapses chains of views, so the object handed to
        the user, not this view, must carry the release)."""
        if self.alignment_bytes == 0:
            return np.empty(size_bytes, np.uint8)
        for block, free in self._blocks:
            offset = free.take(max(size_bytes, 1), self.alignment_bytes)
            if offset is not None:
                return block[offset : offset + size_bytes]
        block, free = self._new_block(max(self.block_bytes, 2 * size_bytes))
        offset = free.take(max(size_bytes, 1), self.alignment_bytes)
        assert offset is not None
        return block[offset : offset + size_bytes]

    def own(self, owner: Any, view: np.ndarray) -> None:
        """Release `view`'s range when `owner` (the array handed out) is garbage collected."""
        if self.alignment_bytes == 0:
            return
        address = view.ctypes.data
        for block, free in self._blocks:
            offset = address - block.ctypes.data
            if 0 <= offset < block.nbytes:
                weakref.finalize(owner, free.give, offset, max(view.nbytes, 1))
                return
        raise AssertionError("view is not from this arena")

    def _new_block(self, size_bytes: int) -> tuple[np.ndarray, FreeList]:
        raw = np.empty(size_bytes + self.alignment_bytes, np.uint8)
        skip = -raw.ctypes.data % self.alignment_bytes
        block = raw[skip : skip + size_bytes]
        self._blocks.append((block, FreeList(size_bytes)))
        return self._blocks[-1]

    @property
    def reserved_bytes(self) -> int:
        return sum(block.nbytes for block, _ in self._blocks)


class FakeDeviceArray:
    """Host memory that presents itself as a CUDA array (`__cuda_array_interface__`).

    MPI libraries read the pointer and, on host memory, simply work, so tests without a GPU
    exercise the device-buffer paths (CUDA-aware direct calls and host staging).
    """

    def __init__(self, host: np.ndarray) -> None:
        self.host = host
        self.dtype = host.dtype
        self.size = host.size
        raw = host.view(_RAW_BY_SIZE.get(host.dtype.itemsize, host.dtype))
        self.__cuda_array_interface__ = {
            "shape": (host.size,),
            "typestr": raw.dtype.str,
            "data": (host.ctypes.data, False),
            "strides": None,
            "version": 3,
        }


class DeviceBytes:
    """A bare (address, size) view of device memory, as MPI needs it; it holds no reference to
    the array that owns the memory."""

    def __init__(self, address: int, nbytes: int) -> None:
        self.__cuda_array_interface__ = {
            "shape": (nbytes,),
            "typestr": "|u1",
            "data": (address, False),
            "strides": None,
            "version": 3,
        }


# ---- what kind of buffer is this ----------------------------------------------------------
def kind_of(buf: Any) -> str:
    """numpy, torch-cpu, torch-cuda, cupy, numba, fake-device; ValueError otherwise."""
    if isinstance(buf, np.ndarray):
        return "numpy"
    if isinstance(buf, FakeDeviceArray):
        return "fake-device"
    module = type(buf).__module__.split(".")[0]
    if module == "torch":
        return "torch-cuda" if buf.is_cuda else "torch-cpu"
    if module == "cupy":
        return "cupy"
    if module == "numba":
        return "numba"
    raise ValueError(f"unsupported buffer type {type(buf).__name__}; use the backend's empty()")


def is_device(kind: str) -> bool:
    """Whether buffers of `kind` live (or pretend to live) in GPU memory."""
    return kind in ("torch-cuda", "cupy", "numba", "fake-device")


def nbytes_of(buf: Any) -> int:
    if kind_of(buf).startswith("torch"):
        return int(buf.numel() * buf.element_size())
    return int(buf.size * buf.dtype.itemsize)


def host_bytes(buf: Any) -> np.ndarray:
    """A uint8 numpy view of a host buffer's memory (no copy)."""
    kind = kind_of(buf)
    if kind == "numpy":
        return buf.view(np.uint8)
    if kind == "torch-cpu":
        import torch

        return buf.view(torch.uint8).numpy()
    if kind == "fake-device":
        return buf.host.view(np.uint8)
    raise ValueError(f"{kind} buffers have no host view; stage them with copy_to_host")


def device_pointer(buf: Any) -> int:
    """Address of a device buffer's first byte."""
    kind = kind_of(buf)
    if kind.startswith("torch"):
        return int(buf.data_ptr())
    if kind == "cupy":  # not __cuda_array_interface__, which may synchronize the stream
        return int(buf.data.ptr)
    return int(buf.__cuda_array_interface__["data"][0])


# ---- allocation -----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, kw_only=True)
class Allocator:
    """Makes buffers of one kind; host kinds take memory from `arena`."""

    kind: str
    """One of BUFFER_KINDS."""
    arena: HostArena
    """Where host memory (and staging memory) comes from."""
    device_index: int = 0
    """CUDA device for torch/CuPy/Numba buffers."""
    on_device: bool = False
    """torch buffers on CUDA (True) or CPU (False)."""

    def __post_init__(self) -> None:
        if self.kind not in BUFFER_KINDS:
            raise ValueError(f"buffer={self.kind!r}; choose one of: {', '.join(BUFFER_KINDS)}")

    def host(self, count: int, dtype: str) -> np.ndarray:
        """Aligned host numpy array of `count` elements (typed with ml_dtypes where needed)."""
        raw = self.arena.take(count * numpy_dtype(dtype).itemsize)
        array = raw.view(numpy_dtype(dtype))
        self.arena.own(array, raw)
        return array

    def empty(self, count: int, dtype: str) -> Any:
        if self.kind == "numpy":
            return self.host(count, dtype)
        if self.kind == "fake-device":
            return FakeDeviceArray(self.host(count, dtype))
        if self.kind == "torch":
            return _torch_empty(self, count, dtype)
        if self.kind == "cupy":
            import cupy

            with cupy.cuda.Device(self.device_index):
                return cupy.empty(count, raw_dtype(dtype))
        import numba.cuda

        with numba.cuda.gpus[self.device_index]:
            return numba.cuda.device_array(count, raw_dtype(dtype))


def _torch_empty(alloc: Allocator, count: int, dtype: str) -> Any:
    import torch

    torch_dtype = getattr(torch, _TORCH_NAMES[canonical_dtype(dtype)])
    if alloc.on_device:
        return torch.empty(count, dtype=torch_dtype, device=f"cuda:{alloc.device_index}")
    raw = alloc.arena.take(count * numpy_dtype(dtype).itemsize)
    tensor = torch.from_numpy(raw.view(raw_dtype(dtype))).view(torch_dtype)
    alloc.arena.own(tensor, raw)
    return tensor


# ---- copies and conversions -------------------------------------------------------------------
def copy_to_host(buf: Any, host: np.ndarray) -> None:
    """Copy a buffer's bytes into the host array `host` (same byte size)."""
    kind = kind_of(buf)
    dst = host.view(np.uint8)
    if kind == "torch-cuda":
        import torch

        torch.from_numpy(dst).copy_(buf.view(torch.uint8))
    elif kind == "cupy":
        buf.view(np.uint8).get(out=dst)
    elif kind == "numba":
        buf.copy_to_host(dst.view(buf.dtype))
    else:
        np.copyto(dst, host_bytes(buf))


def copy_from_host(host: np.ndarray, buf: Any) -> None:
    """Copy the bytes of the host array `host` into a buffer (same byte size)."""
    kind = kind_of(buf)
    src = host.view(np.uint8)
    if kind == "torch-cuda":
        import torch

        buf.view(torch.uint8).copy_(torch.from_numpy(src))
    elif kind == "cupy":
        buf.view(np.uint8).set(src)
    elif kind == "numba":
        buf.copy_to_device(src.view(buf.dtype))
    else:
        np.copyto(host_bytes(buf), src)


def device_synchronize(kind: str) -> None:
    """Wait for all work on the current device of the library behind `kind`."""
    if kind == "torch-cuda":
        import torch

        torch.cuda.synchronize()
    elif kind == "cupy":
        import cupy

        cupy.cuda.Device().synchronize()
    elif kind == "numba":
        import numba.cuda

        numba.cuda.synchronize()


def to_float64(buf: Any, dtype: str, staging: Callable[[int, str], np.ndarray]) -> np.ndarray:
    """Host copy of a buffer as float64 (int64 for integer dtypes), for checks."""
    count = nbytes_of(buf) // numpy_dtype(dtype).itemsize
    host = staging(count, dtype)
    copy_to_host(buf, host)
    target = np.int64 if canonical_dtype(dtype) in INTEGER_DTYPES else np.float64
    return host.astype(target)


def fill_from_numpy(buf: Any, array: np.ndarray, dtype: str, host: np.ndarray) -> None:
    """Write `array` (values, or bits already in `dtype`'s numpy type) into `buf`.

    `host` is a staging array of `dtype`'s numpy type and the buffer's length.
    """
    np_dtype = numpy_dtype(dtype)
    flat = np.ascontiguousarray(array).reshape(-1)
    if flat.size != host.size:
        raise ValueError(f"array of {flat.size} elements does not fit a buffer of {host.size}")
    if flat.dtype in (np_dtype, raw_dtype(dtype)):
        host.view(np.uint8)[:] = flat.view(np.uint8)
    else:
        host[:] = flat.astype(np_dtype)
    copy_from_host(host, buf)


def dtype_of_native(buf: Any) -> str | None:
    """The canonical dtype a buffer's own element type names, or None when ambiguous (raw)."""
    kind = kind_of(buf)
    if kind.startswith("torch"):
        name = str(buf.dtype).removeprefix("torch.")
        reverse = {v: k for k, v in _TORCH_NAMES.items()}
        return reverse.get(name)
    for name, np_dtype in NUMPY_DTYPES.items():
        if np.dtype(buf.dtype) == np_dtype:
            return name
    return None


def registered_dtype(registry: dict[int, Any], buf: Any) -> str:
    """The dtype `comm.empty()` recorded for `buf` (registry: id -> (weakref, dtype)), else
    the one its native type says; ValueError when neither tells."""
    entry = registry.get(id(buf))
    if entry is not None and entry[0]() is buf:
        return str(entry[1])
    native = dtype_of_native(buf)
    if native is None:
        raise ValueError(f"cannot tell the dtype of a {type(buf).__name__}; use comm.empty()")
    return native
