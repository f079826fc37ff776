"""Where does a small NCCL op's time go? Host issue cost vs device time, per layer.

Kept with the GPU test tier because it calls CuPy's NCCL binding directly, beside the
backend, to measure what the backend adds.

    mpirun -np 2 python3 tests/gpu/probe_overhead.py

For 1 KiB and 64 KiB bf16 all_reduce and all_to_all, rank 0 prints: host time per call
when issuing 200 calls without synchronizing (what bounds a back-to-back loop), through
(a) CuPy's NcclCommunicator directly, (b) epbench's `nccl` Comm and (c) its compiled loop
of the recorded NCCL calls (`repeat`); and the device time
per call from events around the same 200 calls.
"""

from __future__ import annotations

# ruff: noqa: B023 - each lambda is called before its loop variables change
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.launch import detect, launch_info  # noqa: E402
from collectives import ops  # noqa: E402
from collectives.backends import create  # noqa: E402

N = 200


def timed(comm, issue, calls: int = N) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(host µs, device µs) per call of `issue`, `calls` calls issued without a sync."""
    comm.synchronize()
    comm.barrier()
    timer = comm.timer()
    t0 = time.perf_counter()
    timer.start()
    for _ in range(calls):
        issue()
    timer.stop()
    host = (time.perf_counter() - t0) / calls
    comm.synchronize()
    return host * 1e6, timer.elapsed_s()[0] / calls * 1e6


def main() -> None:
    launch = launch_info(detect(os.environ), gpus_per_node=None, timeout_s=60)
    comm = create("nccl", launch)
    for name in ("allreduce", "alltoall"):
        for size in (1024, 65536):
            op = ops.get(name)
            bufs = op.make_inputs(comm, size, "bfloat16")
            op.run(comm, bufs)
            rows = {"epbench": timed(comm, lambda: op.run(comm, bufs))}
            issue = comm.repeat(lambda: op.run(comm, bufs), N)
            if issue is not None:
                issue()  # compile
                host, dev = timed(comm, issue, calls=1)
                rows["epbench compiled"] = (host / N, dev / N)
            if name == "allreduce":
                raw = comm._comm  # CuPy's NcclCommunicator
                sp, rp = bufs.send.data.ptr, bufs.recv.data.ptr
                count, stream = bufs.sizes.count, comm.stream.ptr
                nccl = comm._nccl  # cupy.cuda.nccl, as the backend loaded it
                rows["cupy"] = timed(
                    comm,
                    lambda: raw.allReduce(sp, rp, count, nccl.NCCL_BFLOAT16, nccl.NCCL_SUM, stream),
                )
                replay = comm.capture(
                    lambda: raw.allReduce(sp, rp, count, nccl.NCCL_BFLOAT16, nccl.NCCL_SUM, stream),
                    20,
                )
                rows["cupy graph x20"] = timed(comm, replay)
                rows["cupy graph x20"] = tuple(v / 20 for v in rows["cupy graph x20"])
            if comm.rank == 0:
                for layer, (host, dev) in rows.items():
                    print(
                        f"{name:10} {size:>7} {layer:14} host {host:6.1f} us/call  "
                        f"device {dev:6.1f} us/call",
                        flush=True,
                    )
    comm.close()


if __name__ == "__main__":
    main()
