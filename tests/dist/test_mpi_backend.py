"""Every `Comm` method of the `mpi` backend, under `mpiexec -n 1..4`.

Run as a script under mpiexec, this file checks each method with numpy, torch CPU and
fake device buffers (host memory behind `__cuda_array_interface__`, both CUDA-aware and
staged), with and without persistent requests and the aligned arena; expectations are computed
from rank and world, so the same file passes at any number of ranks. Under pytest it launches
itself with mpiexec.
"""

from __future__ import annotations

import gc
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = [
    {"buffer": "numpy"},
    {"buffer": "numpy", "persistent": True},
    {"buffer": "numpy", "alignment_bytes": 0},
    {"buffer": "torch"},
    {"buffer": "torch", "persistent": True},
    {"buffer": "fake-device", "cuda_aware": "yes"},
    {"buffer": "fake-device", "cuda_aware": "no", "persistent": True},
    {"buffer": "fake-device", "cuda_aware": "auto"},
]


# ---- the checks, run on every rank -------------------------------------------------------------
def values(rank: int, count: int, salt: int = 0) -> np.ndarray:
    """What `rank` sends: distinct small integers, exact in every dtype we move."""
    return ((np.arange(count) * 3 + rank * 5 + salt) % 16).astype(np.float64)


def check_all_to_all(comm, dtype: str) -> None:
    world, rank, block = comm.world, comm.rank, 5
    for salt in (0, 1):  # twice: a prepared (persistent) call must see the new contents
        inp = comm.from_numpy(values(rank, block * world, salt), dtype)
        out = comm.empty(block * world, dtype)
        comm.all_to_all(out, inp)
        expected = np.concatenate(
            [
                values(src, block * world, salt)[rank * block : (rank + 1) * block]
                for src in range(world)
            ]
        )
        np.testing.assert_array_equal(comm.to_numpy(out), expected)


def check_all_to_allv(comm) -> None:
    world, rank = comm.world, comm.rank
    send = [(rank + dst) % 3 + 1 for dst in range(world)]
    recv = [(src + rank) % 3 + 1 for src in range(world)]
    inp = comm.from_numpy(values(rank, sum(send)), "float32")
    out = comm.empty(sum(recv) + 2, "float32")
    comm.all_to_all(out, inp, send, recv)
    parts = []
    for src in range(world):
        their = [(src + dst) % 3 + 1 for dst in range(world)]
        start = sum(their[:rank])
        parts.append(values(src, sum(their))[start : start + their[rank]])
    np.testing.assert_array_equal(comm.to_numpy(out)[: sum(recv)], np.concatenate(parts))
    with pytest.raises(ValueError, match="counts"):
        comm.all_to_all(out, inp, [*send[:-1], 10**6], recv)


def check_all_reduce(comm) -> None:
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
    with pytest.raises(ValueError, match="float8"):
        comm.all_reduce(comm.empty(4, "float8_e4m3"), comm.empty(4, "float8_e4m3"))
    with pytest.raises(ValueError, match="avg"):
        comm.all_reduce(comm.empty(4, "int8"), comm.empty(4, "int8"), "avg")


def check_gather_scatter(comm) -> None:
    world, rank, count = comm.world, comm.rank, 7
    inp = comm.from_numpy(values(rank, count), "bfloat16")
    out = comm.empty(count * world, "bfloat16")
    comm.all_gather(out, inp)
    np.testing.assert_array_equal(
        comm.to_numpy(out), np.concatenate([values(r, count) for r in range(world)])
    )
    full = comm.from_numpy(np.arange(count * world) + rank, "float32")
    part = comm.empty(count, "float32")
    comm.reduce_scatter(part, full, "sum")
    block = np.arange(count * world)[rank * count : (rank + 1) * count]
    np.testing.assert_array_equal(comm.to_numpy(part), block * world + world * (world - 1) / 2)


def check_point_to_point(comm) -> None:
    world, rank, count = comm.world, comm.rank, 100
    right, left = (rank + 1) % world, (rank - 1) % world
    sendbuf = comm.from_numpy(values(rank, count), "float8_e4m3")
    recvbuf = comm.empty(count, "float8_e4m3")
    comm.send_recv(sendbuf, right, recvbuf, left)
    np.testing.assert_array_equal(comm.to_numpy(recvbuf), values(left, count))
    if world > 1:
        got = comm.empty(count, "float16")
        mine = comm.from_numpy(values(rank, count, 7), "float16")
        if rank % 2 == 0:
            comm.send(mine, right)
            comm.recv(got, left)
        else:
            comm.recv(got, left)
            comm.send(mine, right)
        np.testing.assert_array_equal(comm.to_numpy(got), values(left, count, 7))
    with pytest.raises(ValueError, match="outside world"):
        comm.send(sendbuf, world)


def check_host_helpers(comm) -> None:
    world, rank = comm.world, comm.rank
    comm.barrier()
    comm.synchronize()
    timer = comm.timer()
    for _ in range(3):
        timer.start()
        comm.barrier()
        timer.stop()
    assert len(timer.elapsed_s()) == 3 and min(timer.elapsed_s()) >= 0
    assert comm.capture(lambda: None, 5) is None
    assert comm.gather_object({"rank": rank}) == [{"rank": r} for r in range(world)]
    got = comm.max_over_ranks(np.array([rank, -rank, 1.5]))
    np.testing.assert_array_equal(got, [world - 1, 0, 1.5])
    facts = comm.facts()
    for key in (
        "mpi_library",
        "mpi4py_version",
        "thread_level_provided",
        "buffer",
        "alignment_bytes",
        "persistent",
        "cuda_mode",
    ):
        assert key in facts, key


def check_split(comm) -> None:
    world, rank = comm.world, comm.rank
    sub = comm.split(rank % 2, -rank)
    members = [r for r in range(world) if r % 2 == rank % 2]
    assert sub.world == len(members)
    assert sub.rank == sorted(members, reverse=True).index(rank)
    assert sub.gather_object(rank) == sorted(members, reverse=True)
    nodes = comm.gather_object(comm.node)
    assert sum(1 for r in members if nodes[r] == comm.node) == sub.local_world
    inp = sub.from_numpy(np.ones(3), "float32")
    out = sub.empty(3, "float32")
    sub.all_reduce(out, inp)
    np.testing.assert_array_equal(sub.to_numpy(out), [len(members)] * 3)
    sub.close()


def check_buffer_reuse(comm) -> None:
    """Buffers freed and reallocated (same addresses, maybe same ids) must not reuse stale plans."""
    for salt in range(4):
        inp = comm.from_numpy(values(comm.rank, 8, salt), "float32")
        out = comm.empty(8, "float32")
        comm.all_reduce(out, inp)
        expected = sum(values(r, 8, salt) for r in range(comm.world))
        np.testing.assert_array_equal(comm.to_numpy(out), expected)
        del inp, out
        gc.collect()


def run_config(launch_kwargs: dict, options: dict) -> str:
    from collectives.backends import mpi
    from collectives.backends.base import LaunchInfo

    comm = mpi.create(LaunchInfo(**launch_kwargs, options=options))
    assert (comm.rank, comm.world) == (launch_kwargs["rank"], launch_kwargs["world"])
    for dtype in ("float32", "bfloat16", "float8_e4m3", "int8"):
        check_all_to_all(comm, dtype)
    for check in (
        check_all_to_allv,
        check_all_reduce,
        check_gather_scatter,
        check_point_to_point,
        check_host_helpers,
        check_split,
        check_buffer_reuse,
    ):
        check(comm)
    mode = comm.facts()["cuda_mode"]
    comm.close()
    return mode


def main() -> None:
    rank = int(os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0")))
    world = int(os.environ.get("PMI_SIZE", os.environ.get("OMPI_COMM_WORLD_SIZE", "1")))
    per_node = 2 if world % 2 == 0 else 1
    launch = {
        "rank": rank,
        "world": world,
        "local_rank": rank % per_node,
        "local_world": per_node,
        "node": rank // per_node,
        "num_nodes": world // per_node,
        "host_local_rank": rank,
        "launcher": "mpi",
    }
    level = sys.argv[1] if len(sys.argv) > 1 else "single"
    for options in CONFIGS:
        mode = run_config(launch, {**options, "thread_level": level})
        if rank == 0:
            print(f"ok {options} cuda_mode={mode}", flush=True)
    from mpi4py import MPI

    assert (
        MPI.Query_thread() == {"single": MPI.THREAD_SINGLE, "multiple": MPI.THREAD_MULTIPLE}[level]
    )
    if rank == 0:
        print(f"all checks passed at world {world}", flush=True)


# ---- the pytest side ---------------------------------------------------------------------------
def _mpiexec() -> str:
    found = shutil.which("mpiexec") or shutil.which(
        "mpiexec", path=str(pathlib.Path(sys.executable).parent)
    )
    if found is None:
        pytest.skip("mpiexec not found")
    return found


def _launch(num_ranks: int, *args: str, timeout_s: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [_mpiexec(), "-n", str(num_ranks), sys.executable, __file__, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


@pytest.mark.mpi
@pytest.mark.timeout(300)
@pytest.mark.parametrize("num_ranks", [1, 2, 3, 4])
def test_every_method_at_world(num_ranks: int) -> None:
    proc = _launch(num_ranks)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"all checks passed at world {num_ranks}" in proc.stdout
    assert "cuda_mode=direct" in proc.stdout and "cuda_mode=host staging" in proc.stdout


@pytest.mark.mpi
@pytest.mark.timeout(300)
def test_thread_multiple_is_honoured() -> None:
    proc = _launch(2, "multiple")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "all checks passed at world 2" in proc.stdout


if __name__ == "__main__":
    main()
