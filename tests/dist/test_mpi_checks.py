"""Checks of every `Comm` method that hold for any backend, at any number of ranks.

Expectations are computed from rank and world (mpi4py's test style), so the same checks run
under `mpiexec -n 1..N` on the CPU (tests/dist/test_mpi_backend.py) and on GPUs with the
`nccl` backend (bench/gpu/nccl_backend_gpu.py). No pytest import: the GPU script runs them
where pytest may be absent.
"""

from __future__ import annotations

import contextlib
import gc
import re
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np


@contextlib.contextmanager
def raises(kind: type[Exception], match: str) -> Iterator[None]:
    """Like pytest.raises: the block must raise `kind` with a message matching `match`."""
    try:
        yield
    except kind as exc:
        assert re.search(match, str(exc)), f"{kind.__name__} {exc!r} does not match {match!r}"
        return
    raise AssertionError(f"expected {kind.__name__} matching {match!r}")


def values(rank: int, count: int, salt: int = 0) -> np.ndarray:
    """What `rank` sends: distinct small integers, exact in every dtype we move."""
    return ((np.arange(count) * 3 + rank * 5 + salt) % 16).astype(np.float64)


def check_all_to_all(comm: Any, dtype: str, block: int = 5) -> None:
    world, rank = comm.world, comm.rank
    for salt in (0, 1):  # twice: a prepared (persistent) call must see the new contents
        inp = comm.from_numpy(values(rank, block * world, salt), dtype)
        out = comm.empty(block * world, dtype)
        comm.all_to_all(out, inp)
        mine = slice(rank * block, (rank + 1) * block)
        expected = np.concatenate([values(src, block * world, salt)[mine] for src in range(world)])
        np.testing.assert_array_equal(comm.to_numpy(out), expected)


def check_all_to_allv(comm: Any) -> None:
    world, rank = comm.world, comm.rank
    send = [(rank + dst) % 3 + 1 for dst in range(world)]
    recv = [(src + rank) % 3 + 1 for src in range(world)]
    inp = comm.from_numpy(values(rank, sum(send)), "float32")
    out = comm.empty(sum(recv) + 2, "float32")
    comm.all_to_all(out, inp, send, recv)
    parts = []
    for src in range(world):
        theirs = [(src + dst) % 3 + 1 for dst in range(world)]
        start = sum(theirs[:rank])
        parts.append(values(src, sum(theirs))[start : start + theirs[rank]])
    np.testing.assert_array_equal(comm.to_numpy(out)[: sum(recv)], np.concatenate(parts))
    with raises(ValueError, "counts"):
        comm.all_to_all(out, inp, [*send[:-1], 10**6], recv)


def check_all_reduce(comm: Any) -> None:
    world, rank, count = comm.world, comm.rank, 33
    contributions = [((np.arange(count) + r) % 3) - 1.0 for r in range(world)]
    stack = np.stack(contributions)
    cases = {"sum": stack.sum(0), "max": stack.max(0), "min": stack.min(0), "prod": stack.prod(0)}
    for dtype in ("float32", "float16", "bfloat16", "int8", "float64"):
        for op, expected in cases.items():
            inp = comm.from_numpy(contributions[rank], dtype)
            out = comm.empty(count, dtype)
            comm.all_reduce(out, inp, op)
            np.testing.assert_array_equal(comm.to_numpy(out), expected, err_msg=f"{dtype} {op}")
    inp = comm.from_numpy(np.full(count, float(rank)), "float32")
    comm.all_reduce(inp, inp, "avg")  # in place
    np.testing.assert_allclose(comm.to_numpy(inp), (world - 1) / 2)
    check_float8_reduction(comm, contributions[rank], stack.sum(0))


def check_float8_reduction(comm: Any, mine: np.ndarray, expected: np.ndarray) -> None:
    """float8 sums either work exactly (small integers) or are refused naming float8."""
    inp = comm.from_numpy(mine, "float8_e4m3")
    out = comm.empty(mine.size, "float8_e4m3")
    try:
        comm.all_reduce(out, inp, "sum")
    except ValueError as exc:
        assert "float8" in str(exc), exc
        return
    np.testing.assert_array_equal(comm.to_numpy(out), expected)


def check_gather_scatter(comm: Any) -> None:
    world, rank, count = comm.world, comm.rank, 7
    inp = comm.from_numpy(values(rank, count), "bfloat16")
    out = comm.empty(count * world, "bfloat16")
    comm.all_gather(out, inp)
    every = np.concatenate([values(r, count) for r in range(world)])
    np.testing.assert_array_equal(comm.to_numpy(out), every)
    full = comm.from_numpy(np.arange(count * world) + rank, "float32")
    part = comm.empty(count, "float32")
    comm.reduce_scatter(part, full, "sum")
    block = np.arange(count * world)[rank * count : (rank + 1) * count]
    np.testing.assert_array_equal(comm.to_numpy(part), block * world + world * (world - 1) / 2)


def check_point_to_point(comm: Any) -> None:
    world, rank, count = comm.world, comm.rank, 100
    right, left = (rank + 1) % world, (rank - 1) % world
    sendbuf = comm.from_numpy(values(rank, count), "float8_e4m3")
    recvbuf = comm.empty(count, "float8_e4m3")
    comm.send_recv(sendbuf, right, recvbuf, left)
    np.testing.assert_array_equal(comm.to_numpy(recvbuf), values(left, count))
    if world > 1:
        got = comm.empty(count, "float16")
        mine = comm.from_numpy(values(rank, count, 7), "float16")
        # even ranks send first: with an odd world the last even rank's partner is rank 0
        if rank % 2 == 0:
            comm.send(mine, right)
            comm.recv(got, left)
        else:
            comm.recv(got, left)
            comm.send(mine, right)
        np.testing.assert_array_equal(comm.to_numpy(got), values(left, count, 7))
    with raises(ValueError, "outside world"):
        comm.send(sendbuf, world)


def check_host_helpers(comm: Any, fact_keys: tuple[str, ...]) -> None:
    world, rank = comm.world, comm.rank
    comm.barrier()
    comm.synchronize()
    timer = comm.timer()
    for _ in range(3):
        timer.start()
        comm.barrier()
        timer.stop()
    assert len(timer.elapsed_s()) == 3 and min(timer.elapsed_s()) >= 0
    assert comm.gather_object({"rank": rank}) == [{"rank": r} for r in range(world)]
    got = comm.max_over_ranks(np.array([rank, -rank, 1.5]))
    np.testing.assert_array_equal(got, [world - 1, 0, 1.5])
    facts = comm.facts()
    missing = [key for key in fact_keys if key not in facts]
    assert not missing, f"facts() lacks {missing}"


def check_capture(comm: Any) -> bool:
    """A captured graph of 3 in-place all_reduce sums multiplies by world**3 per replay."""
    buf = comm.from_numpy(np.ones(16), "float32")
    graph = comm.capture(lambda: comm.all_reduce(buf, buf, "sum"), 3)
    if graph is None:
        return False
    before = comm.to_numpy(buf)
    graph()
    comm.synchronize()
    np.testing.assert_array_equal(comm.to_numpy(buf), before * comm.world**3)
    return True


def check_repeat(comm: Any) -> bool:
    """A backend's compiled loop (`repeat`, where it has one) makes exactly the recorded calls:
    in-place sums multiply by world per call (one recording run + 2 x 3 issued), and a
    repeated alltoallv, allgather and ring send_recv leave the right output."""
    repeat = getattr(comm, "repeat", None)
    if repeat is None:
        return False
    world, rank = comm.world, comm.rank
    buf = comm.from_numpy(np.ones(16), "float64")
    issue = repeat(lambda: comm.all_reduce(buf, buf, "sum"), 3)
    if issue is None:
        return False
    issue()
    issue()
    comm.synchronize()
    np.testing.assert_array_equal(comm.to_numpy(buf), np.full(16, float(world) ** 7))
    left, right = (rank - 1) % world, (rank + 1) % world
    sendbuf, recvbuf = comm.from_numpy(values(rank, 9), "bfloat16"), comm.empty(9, "bfloat16")
    inp, out = comm.from_numpy(values(rank, 4), "float32"), comm.empty(4 * world, "float32")
    for fn in (
        lambda: comm.all_gather(out, inp),
        lambda: comm.send_recv(sendbuf, right, recvbuf, left),
    ):
        step = repeat(fn, 2)
        assert step is not None, "repeat declined a plain call"
        step()
    every = np.concatenate([values(r, 4) for r in range(world)])
    np.testing.assert_array_equal(comm.to_numpy(out), every)
    np.testing.assert_array_equal(comm.to_numpy(recvbuf), values(left, 9))
    counts = [[(src + dst) % 3 + 1 for dst in range(world)] for src in range(world)]
    recv = [counts[src][rank] for src in range(world)]
    inp = comm.from_numpy(values(rank, sum(counts[rank])), "float32")
    out = comm.empty(sum(recv), "float32")
    step = repeat(lambda: comm.all_to_all(out, inp, counts[rank], recv), 2)
    assert step is not None, "repeat declined alltoallv"
    comm.synchronize()
    out[...] = 0  # locally (totals differ between ranks); CuPy, torch or numpy alike
    assert not comm.to_numpy(out).any()  # (and the zeroing has finished)
    step()
    starts = [sum(counts[src][:rank]) for src in range(world)]
    parts = [values(src, sum(counts[src]))[starts[src] : starts[src] + recv[src]]
             for src in range(world)]  # fmt: skip
    np.testing.assert_array_equal(comm.to_numpy(out), np.concatenate(parts))
    return True


def check_split(comm: Any) -> None:
    world, rank = comm.world, comm.rank
    sub = comm.split(rank % 2, -rank)
    members = [r for r in range(world) if r % 2 == rank % 2]
    order = sorted(members, reverse=True)
    assert (sub.world, sub.rank) == (len(members), order.index(rank))
    assert sub.gather_object(rank) == order
    nodes = comm.gather_object(comm.node)
    assert sum(1 for r in members if nodes[r] == comm.node) == sub.local_world
    inp = sub.from_numpy(np.ones(3), "float32")
    out = sub.empty(3, "float32")
    sub.all_reduce(out, inp)
    np.testing.assert_array_equal(sub.to_numpy(out), [len(members)] * 3)
    sub.close()


def check_buffer_reuse(comm: Any) -> None:
    """Buffers freed and reallocated (same addresses, maybe same ids) must not reuse stale plans."""
    for salt in range(4):
        inp = comm.from_numpy(values(comm.rank, 8, salt), "float32")
        out = comm.empty(8, "float32")
        comm.all_reduce(out, inp)
        expected = sum(values(r, 8, salt) for r in range(comm.world))
        np.testing.assert_array_equal(comm.to_numpy(out), expected)
        refs = [weakref.ref(inp), weakref.ref(out)]
        del inp, out
        gc.collect()
        assert all(ref() is None for ref in refs), "a prepared call keeps its buffers alive"


def check_every_method(comm: Any, fact_keys: tuple[str, ...]) -> bool:
    """All checks above; returns whether `capture` gave a graph."""
    for dtype in ("float32", "bfloat16", "float8_e4m3", "int8"):
        check_all_to_all(comm, dtype)
    check_all_to_allv(comm)
    check_all_reduce(comm)
    check_gather_scatter(comm)
    check_point_to_point(comm)
    check_host_helpers(comm, fact_keys)
    captured = check_capture(comm)
    check_repeat(comm)
    check_split(comm)
    check_buffer_reuse(comm)
    return captured
