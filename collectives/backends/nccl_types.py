"""NCCL's type and reduction-op codes for the `nccl` backend, and which NCCL versions have
them. Pure: no CuPy, CUDA or NCCL import (the backend passes CuPy's constants in)."""

from __future__ import annotations

from collections.abc import Mapping

from collectives.backends import buffers as bf
from collectives.backends.base import canonical_dtype

# ncclDataType_t and ncclRedOp_t values from nccl.h (stable ABI); CuPy's constants are used
# when it exposes them, these only fill the gaps CuPy leaves (fp8 on older CuPy).
NCCL_TYPES = {
    "int8": 0,
    "uint8": 1,
    "int32": 2,
    "float16": 6,
    "float32": 7,
    "float64": 8,
    "bfloat16": 9,
    "float8_e4m3": 10,
    "float8_e5m2": 11,
}
_CUPY_TYPE_NAMES = {
    "int8": "NCCL_INT8",
    "uint8": "NCCL_UINT8",
    "int32": "NCCL_INT32",
    "float16": "NCCL_FLOAT16",
    "float32": "NCCL_FLOAT32",
    "float64": "NCCL_FLOAT64",
    "bfloat16": "NCCL_BFLOAT16",
    "float8_e4m3": "NCCL_FLOAT8E4M3",
    "float8_e5m2": "NCCL_FLOAT8E5M2",
}
NCCL_OPS = {"sum": 0, "prod": 1, "max": 2, "min": 3, "avg": 4}
_MIN_VERSION = {"bfloat16": 20_900, "float8_e4m3": 22_400, "float8_e5m2": 22_400, "avg": 21_000}


def nccl_type(dtype: str, cupy_constants: Mapping[str, int], nccl_version: int) -> int:
    """NCCL type code for reducing `dtype`; ValueError when this NCCL cannot reduce it. Pure.

    `cupy_constants` is `vars(cupy.cuda.nccl)` (or a test's stand-in); `nccl_version` is
    `nccl.get_version()` (e.g. 22809 for 2.28.9).
    """
    dtype = canonical_dtype(dtype)
    name = _CUPY_TYPE_NAMES[dtype]
    if name in cupy_constants:
        return int(cupy_constants[name])
    if nccl_version < _MIN_VERSION.get(dtype, 0):
        raise ValueError(
            f"NCCL {format_version(nccl_version)} cannot reduce {dtype} (needs "
            f"{format_version(_MIN_VERSION[dtype])}); move it with alltoall/allgather instead"
        )
    return NCCL_TYPES[dtype]


def nccl_op(op: str, nccl_version: int) -> int:
    """NCCL reduction op code; ValueError for unknown ops or avg before NCCL 2.10. Pure."""
    if op not in NCCL_OPS:
        raise ValueError(f"unknown reduction op {op!r}; choose one of: {', '.join(NCCL_OPS)}")
    if nccl_version < _MIN_VERSION.get(op, 0):
        raise ValueError(f"op {op} needs NCCL {format_version(_MIN_VERSION[op])}")
    return NCCL_OPS[op]


def move_type(dtype: str) -> tuple[int, int]:
    """(NCCL type code, bytes per element) for moving `dtype` without reducing it. Pure.

    nccl-tests passes the element type to ncclSend/ncclRecv/ncclAllGather; we do the same,
    except for float8, which moves as uint8 so that NCCL before 2.24 can move it too."""
    dtype = canonical_dtype(dtype)
    if dtype.startswith("float8"):
        return NCCL_TYPES["uint8"], 1
    return NCCL_TYPES[dtype], bf.numpy_dtype(dtype).itemsize


def format_version(code: int) -> str:
    """22809 -> '2.28.9' (NCCL's version code since 2.9)."""
    return f"{code // 10000}.{code // 100 % 100}.{code % 100}"
