"""Pure parts of the backends' buffer layer: arena, layouts, dtypes, prepared-call cache."""

from __future__ import annotations

import gc

import ml_dtypes
import numpy as np
import pytest
import torch

from collectives.backends import buffers as bf
from collectives.backends import calls


def test_free_list_first_fit_alignment_and_merge() -> None:
    free = bf.FreeList(1 << 16)
    a = free.take(100, 4096)
    b = free.take(100, 4096)
    assert (a, b) == (0, 4096)
    free.give(a, 100)
    assert free.take(5000, 4096) == 8192  # the hole at 0 is too small once aligned
    free.give(b, 100)
    free.give(8192, 5000)
    assert free.free == [(0, 1 << 16)]  # everything merged back into one range
    assert free.take(1 << 17, 64) is None


def test_arena_buffers_are_aligned_and_reused() -> None:
    arena = bf.HostArena(alignment_bytes=4096, block_bytes=1 << 20)
    alloc = bf.Allocator(kind="numpy", arena=arena)
    first = alloc.host(1000, "float32")
    address = first.ctypes.data
    assert address % 4096 == 0
    second = alloc.host(10, "bfloat16")
    assert second.ctypes.data % 4096 == 0 and second.ctypes.data != address
    del first
    gc.collect()
    again = alloc.host(1000, "float32")
    assert again.ctypes.data == address  # released memory is handed out again
    assert arena.reserved_bytes == 1 << 20


def test_arena_keeps_memory_while_a_derived_tensor_lives() -> None:
    arena = bf.HostArena(alignment_bytes=64, block_bytes=1 << 16)
    alloc = bf.Allocator(kind="torch", arena=arena)
    tensor = alloc.empty(16, "bfloat16")
    assert tensor.dtype == torch.bfloat16
    view = tensor[4:]  # keeps the storage alive after `tensor` is gone
    address = tensor.data_ptr()
    del tensor
    gc.collect()
    other = alloc.empty(16, "bfloat16")
    assert other.data_ptr() != address and view.numel() == 12


def test_arena_off_and_bad_alignment() -> None:
    assert bf.HostArena(alignment_bytes=0).take(10).size == 10
    with pytest.raises(ValueError, match="alignment_bytes=3000"):
        bf.HostArena(alignment_bytes=3000)
    with pytest.raises(ValueError, match="buffer='jax'"):
        bf.Allocator(kind="jax", arena=bf.HostArena())


@pytest.mark.parametrize("dtype", sorted(bf.NUMPY_DTYPES))
@pytest.mark.parametrize("kind", ["numpy", "torch", "fake-device"])
def test_round_trip_through_every_host_kind(kind: str, dtype: str) -> None:
    alloc = bf.Allocator(kind=kind, arena=bf.HostArena())
    values = np.arange(-3, 9, dtype=np.float64)  # exact even in float8_e5m2
    if dtype == "uint8":
        values = np.abs(values)
    buf = alloc.empty(values.size, dtype)
    bf.fill_from_numpy(buf, values, dtype, alloc.host(values.size, dtype))
    got = bf.to_float64(buf, dtype, alloc.host)
    np.testing.assert_array_equal(got, values)
    assert bf.nbytes_of(buf) == values.size * bf.numpy_dtype(dtype).itemsize


def test_fill_accepts_raw_bits() -> None:
    alloc = bf.Allocator(kind="numpy", arena=bf.HostArena())
    bits = np.array([1.5, -2.0], dtype=ml_dtypes.bfloat16).view(np.uint16)
    buf = alloc.empty(2, "bfloat16")
    bf.fill_from_numpy(buf, bits, "bfloat16", alloc.host(2, "bfloat16"))
    np.testing.assert_array_equal(buf.astype(np.float64), [1.5, -2.0])
    with pytest.raises(ValueError, match="3 elements"):
        bf.fill_from_numpy(buf, np.zeros(3), "bfloat16", alloc.host(2, "bfloat16"))


def test_fake_device_array_looks_like_cuda_memory() -> None:
    host = bf.Allocator(kind="numpy", arena=bf.HostArena()).host(8, "bfloat16")
    fake = bf.FakeDeviceArray(host)
    face = fake.__cuda_array_interface__
    assert face["data"][0] == host.ctypes.data and face["typestr"] == "<u2"
    assert bf.kind_of(fake) == "fake-device" and bf.is_device("fake-device")
    assert bf.device_pointer(fake) == host.ctypes.data
    assert bf.kind_of(torch.zeros(1)) == "torch-cpu" and not bf.is_device("torch-cpu")
    with pytest.raises(ValueError, match="unsupported buffer type list"):
        bf.kind_of([1, 2])


def test_raw_dtypes_and_native_names() -> None:
    assert bf.raw_dtype("bf16") == np.uint16 and bf.raw_dtype("fp8") == np.uint8
    assert bf.raw_dtype("float32") == np.float32
    assert bf.dtype_of_native(np.zeros(2, ml_dtypes.float8_e5m2)) == "float8_e5m2"
    assert bf.dtype_of_native(torch.zeros(2, dtype=torch.float8_e4m3fn)) == "float8_e4m3"
    assert bf.dtype_of_native(np.zeros(2, np.uint16)) is None  # raw: ambiguous


def test_equal_block_layout_rounds_down_like_nccl_tests() -> None:
    lay = calls.all_to_all_layout(None, 3, 100 * 4, 4, "send")
    assert lay.counts_bytes == (132, 132, 132) and lay.displs_bytes == (0, 132, 264)


def test_alltoallv_layout_and_errors() -> None:
    lay = calls.all_to_all_layout([2, 0, 5], 3, 7 * 2, 2, "send")
    assert lay.counts_bytes == (4, 0, 10) and lay.displs_bytes == (0, 4, 4)
    with pytest.raises(ValueError, match="must be 3 non-negative"):
        calls.all_to_all_layout([1, 2], 3, 100, 1, "send")
    with pytest.raises(ValueError, match="must be 2 non-negative"):
        calls.all_to_all_layout([1, -2], 2, 100, 1, "receive")
    with pytest.raises(ValueError, match="sum to 9 elements but the buffer holds 8"):
        calls.all_to_all_layout([4, 5], 2, 32, 4, "send")
    with pytest.raises(ValueError, match="all_gather: 4 blocks of 8 B"):
        calls.check_multiple(8, 31, 4, "all_gather")


def test_plans_forget_dead_buffers() -> None:
    plans = calls.Plans()
    freed: list[str] = []
    a, b = np.zeros(2), np.zeros(2)
    plans.put(("op", id(a), id(b)), a, b, lambda: None, lambda: freed.append("ab"))
    entry = plans.entries[("op", id(a), id(b))]
    assert entry[0]() is a and entry[1]() is b
    del a
    gc.collect()
    c = np.zeros(1)
    plans.put(("send", id(c)), c, None, lambda: None, None)
    plans.put(("recv", id(c)), c, None, lambda: None, None)
    assert freed == ["ab"] and len(plans.entries) == 2  # the dead entry's request was freed
    plans.clear()
    assert not plans.entries


def test_placement_of_a_split() -> None:
    nodes = [0, 0, 3, 3, 3]
    assert calls.placement(nodes, 3) == {
        "local_rank": 1,
        "local_world": 3,
        "node": 1,
        "num_nodes": 2,
    }
