"""GPU self-check and timing of the `nccl` backend (CuPy's NCCL bindings), one process per GPU.

    mpiexec -n 2 python bench/gpu/nccl_backend_gpu.py --out nccl_backend.json
    torchrun --nproc-per-node 2 bench/gpu/nccl_backend_gpu.py --out nccl_backend.json

1. Runs every `Comm` method's check (tests/dist/test_mpi_checks.py: all_to_all in four dtypes,
   alltoallv, all_reduce in five dtypes and four ops plus avg and fp8, all_gather,
   reduce_scatter, send/recv, send_recv, barrier, timer, capture, gather_object,
   max_over_ranks, split, buffer reuse).
2. Times bf16 all_reduce and all_to_all, 1 KiB..1 GiB (nccl-tests' size: the per-rank
   buffer), three ways: `loop` (CUDA events around N back-to-back calls, nccl-tests' default
   timing), `iter` (one event pair per call, median), `graph` (N calls captured in one CUDA
   graph and replayed, nccl-tests -G). Each size is checked before it is timed (#wrong).
   Times are the max over ranks. busbw uses nccl-tests' factors.
3. With --with-mpi (under mpiexec with mpi4py): the `mpi` backend with CuPy and torch CUDA
   buffers runs the same checks and reports whether MPI took device memory directly
   (CUDA-aware, confirmed) or staged it through the host.

Prints a compact table on rank 0; --out writes everything as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys
import time
from typing import Any

import ml_dtypes
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from collectives.backends import nccl_cupy  # noqa: E402
from collectives.backends.base import LaunchInfo  # noqa: E402
from tests.dist import test_mpi_checks as checks  # noqa: E402

NCCL_FACTS = ("nccl_version", "cupy_version", "gpu", "stream", "fp8_reductions")
MPI_FACTS = ("mpi_library", "cuda_mode", "buffer", "thread_level_provided")
_LAUNCHERS = (
    ("RANK", "WORLD_SIZE", "LOCAL_RANK", "torchrun"),
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "mpi"),
    ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "mpi"),
)


def launch_from_env(options: dict[str, Any] | None = None) -> LaunchInfo:
    """One node; rank/world/local rank from torchrun, Open MPI or MPICH variables."""
    env = os.environ
    found = [k for k in _LAUNCHERS if k[0] in env and k[1] in env]
    rank, world, local, launcher = 0, 1, 0, "single"
    if found:
        rank_key, world_key, local_key, launcher = found[0]
        rank, world = int(env[rank_key]), int(env[world_key])
        local = int(env.get(local_key, rank))
    port = int(env.get("MASTER_PORT", "29500")) + 11  # torchrun's own store holds MASTER_PORT
    return LaunchInfo(
        rank=rank, world=world, local_rank=local, local_world=world, node=0, num_nodes=1,
        host_local_rank=local, launcher=launcher, master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
        master_port=port, device="cuda", options=options or {},
    )  # fmt: skip


def sizes_bytes(begin: int, end: int) -> list[int]:
    out, size = [], begin
    while size <= end:
        out.append(size)
        size *= 2
    return out


def iterations(size_bytes: int, base: int) -> int:
    return base if size_bytes <= 64 << 20 else max(base // 5, 5)


def make_op(comm: Any, op: str, size_bytes: int) -> tuple[Any, Any, Any, np.ndarray]:
    """Buffers for one point (bf16), the call, and the expected output as bf16 bits.

    Host arrays are built in bf16 (not float64), so 1 GiB points need 1 GiB of host memory."""
    count, bf16 = size_bytes // 2, ml_dtypes.bfloat16
    if op == "all_reduce":
        inp = comm.from_numpy(np.ones(count, bf16), "bfloat16")
        out = comm.empty(count, "bfloat16")
        expected = np.full(count, comm.world, bf16)
        return inp, out, lambda: comm.all_reduce(out, inp, "sum"), expected.view(np.uint16)
    block = count // comm.world
    peers = np.arange(comm.world)
    mine = np.repeat(((peers + comm.rank * comm.world) % 64).astype(bf16), block)
    inp = comm.from_numpy(mine, "bfloat16")
    out = comm.empty(block * comm.world, "bfloat16")
    expected = np.repeat(((peers * comm.world + comm.rank) % 64).astype(bf16), block)
    return inp, out, lambda: comm.all_to_all(out, inp), expected.view(np.uint16)


def host_bits(buf: Any) -> np.ndarray:
    """The raw 16-bit words of a bf16 buffer, on the host (CuPy stores bf16 as uint16)."""
    if isinstance(buf, np.ndarray):
        return buf.view(np.uint16)
    return np.asarray(buf.get()).view(np.uint16)


def time_point(comm: Any, op: str, size_bytes: int, base_iters: int) -> dict[str, Any]:
    """Check once, then time loop / per-iteration / graph modes; times are max over ranks."""
    num_iters = iterations(size_bytes, base_iters)
    inp, out, call, expected = make_op(comm, op, size_bytes)
    call()
    comm.synchronize()
    num_wrong = int(np.count_nonzero(host_bits(out) != expected))
    for _ in range(5):
        call()
    comm.barrier()
    loop = comm.timer()
    loop.start()
    for _ in range(num_iters):
        call()
    loop.stop()
    loop_s = loop.elapsed_s()[0] / num_iters
    per_iter = comm.timer()
    for _ in range(num_iters):
        per_iter.start()
        call()
        per_iter.stop()
    iter_s = per_iter.elapsed_s()
    graph_s = time_graph(comm, call, num_iters)
    times = comm.max_over_ranks(np.array([loop_s, float(np.median(iter_s)), graph_s]))
    factor = (
        2 * (comm.world - 1) / comm.world if op == "all_reduce" else (comm.world - 1) / comm.world
    )
    wrong = int(comm.max_over_ranks(np.array([float(num_wrong)]))[0])
    del inp, out
    return {
        "op": op, "size_bytes": size_bytes, "num_iters": num_iters, "num_wrong": wrong,
        "loop_us": times[0] * 1e6, "iter_p50_us": times[1] * 1e6, "graph_us": times[2] * 1e6,
        "busbw_loop_gbps": size_bytes / times[0] / 1e9 * factor,
        "busbw_graph_gbps": size_bytes / times[2] / 1e9 * factor,
        "iter_us": [t * 1e6 for t in iter_s],
    }  # fmt: skip


def time_graph(comm: Any, call: Any, num_iters: int) -> float:
    """Seconds per call when `num_iters` calls replay as one CUDA graph (NaN: no graphs)."""
    graph = comm.capture(call, num_iters)
    if graph is None:
        return float("nan")
    graph()
    comm.synchronize()
    comm.barrier()
    replay = comm.timer()
    replay.start()
    graph()
    replay.stop()
    return replay.elapsed_s()[0] / num_iters


def print_table(rows: list[dict[str, Any]]) -> None:
    head = f"{'op':>10} {'size':>11} {'loop us':>9} {'iter p50':>9} {'graph us':>9}"
    print(head + f" {'busbw loop':>10} {'busbw graph':>11} {'#wrong':>6}")
    for r in rows:
        print(
            f"{r['op']:>10} {r['size_bytes']:>11} {r['loop_us']:9.1f} {r['iter_p50_us']:9.1f} "
            f"{r['graph_us']:9.1f} {r['busbw_loop_gbps']:10.2f} {r['busbw_graph_gbps']:11.2f} "
            f"{r['num_wrong']:>6}"
        )


def run_timed(args: argparse.Namespace) -> dict[str, Any]:
    if args.backend == "nccl":
        comm, fact_keys = nccl_cupy.create(launch_from_env()), NCCL_FACTS
    else:  # the same sweep through the mpi backend on host buffers (runs without a GPU)
        from collectives.backends import mpi

        launch = dataclasses.replace(launch_from_env(), device="cpu")
        comm, fact_keys = mpi.create(launch), MPI_FACTS
    t0 = time.perf_counter()
    captured = checks.check_every_method(comm, fact_keys)
    report: dict[str, Any] = {"facts": comm.facts(), "world": comm.world}
    report["checks"] = {"passed": True, "capture": captured, "seconds": time.perf_counter() - t0}
    if comm.rank == 0:
        print(f"{args.backend} backend: every Comm check passed ({report['facts']})", flush=True)
    rows = []
    for op in ("all_reduce", "all_to_all"):
        for size in sizes_bytes(args.begin, args.end):
            rows.append(time_point(comm, op, size, args.iters))
            if comm.rank == 0 and args.progress:
                print(f"  {op} {size} done", flush=True)
            if args.backend == "nccl":
                import cupy

                cupy.get_default_memory_pool().free_all_blocks()
    report["rows"] = rows
    if comm.rank == 0:
        print_table(rows)
    comm.close()
    return report


def run_mpi() -> dict[str, Any]:
    from collectives.backends import mpi

    results = {}
    for buffer in ("cupy", "torch"):
        comm = mpi.create(launch_from_env({"buffer": buffer}))
        checks.check_every_method(comm, MPI_FACTS)
        results[buffer] = comm.facts()
        if comm.rank == 0:
            print(f"mpi backend, {buffer} buffers: checks passed; {results[buffer]['cuda_mode']}")
        comm.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--begin", type=int, default=1 << 10, help="smallest size, bytes")
    parser.add_argument("--end", type=int, default=1 << 30, help="largest size, bytes")
    parser.add_argument("--iters", type=int, default=100, help="calls per timed block")
    parser.add_argument("--backend", choices=("nccl", "mpi"), default="nccl")
    parser.add_argument("--with-mpi", action="store_true", help="also check mpi on GPU buffers")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--out", type=pathlib.Path, help="write results as JSON")
    args = parser.parse_args()
    report = {args.backend: run_timed(args)}
    if args.with_mpi:
        report["mpi"] = run_mpi()
    if args.out is not None and launch_from_env().rank == 0:
        args.out.write_text(json.dumps(report, indent=1, default=str))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
