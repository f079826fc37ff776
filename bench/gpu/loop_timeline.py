"""Where a loop-mode block's time goes, per phase, on host and device (NCCL backend).

    mpirun -np 2 python3 bench/gpu/loop_timeline.py [--sizes 1K,16K,64K] [--iters 20]

For all-reduce and all-to-all (bf16) it runs blocks exactly as bench/runner.py does
(host barrier -> optional alignment op -> start event -> N ops -> stop event), with an
extra CUDA event after every op and host timestamps between phases. Rank 0 prints, per op,
size and variant (align / no-align), medians over blocks of: the host time of each phase,
and on the device the time from the start event to the end of the first op, the mean gap
between later ops, and the last op to the stop event, each as the max over ranks; then the
block time PointRunner itself reports for the same point, so a fixed per-block cost can be
attributed to a phase. Writes every sample as JSON with --out.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from bench.launch import detect, launch_info
from bench.runner import PointRunner, Timing
from bench.sizes import parse_size
from bench.watchdog import Watchdog
from collectives import ops
from collectives.backends import create
from collectives.backends.nccl_cupy import CudaEventTimer

PHASES = ("barrier", "align", "start", "issue", "sync")


def block(
    comm: Any, run: Any, iters: int, align: bool, fresh: bool, events: list[Any]
) -> dict[str, Any]:
    """One runner-style block with per-op events; host phases (µs) and device gaps (µs).
    fresh: the timer creates its events in start() (the behaviour before the shared pool)."""
    cupy = comm._cupy
    timer = CudaEventTimer(cupy, comm.stream, [], reserve=0) if fresh else comm.timer()
    host = [time.perf_counter_ns()]
    comm.barrier()
    host.append(time.perf_counter_ns())
    if align:
        run()
    host.append(time.perf_counter_ns())
    timer.start()
    host.append(time.perf_counter_ns())
    for i in range(iters):
        run()
        events[i].record(comm.stream)
    timer.stop()
    host.append(time.perf_counter_ns())
    total_s = timer.elapsed_s()[0]
    host.append(time.perf_counter_ns())
    begin = timer.last_pair[0]
    ms = cupy.cuda.get_elapsed_time
    ends = [ms(begin, e) * 1e3 for e in events[:iters]]
    return {
        "host_us": {p: (host[i + 1] - host[i]) / 1e3 for i, p in enumerate(PHASES)},
        "first_op_us": ends[0],
        "later_op_us": (ends[-1] - ends[0]) / max(iters - 1, 1),
        "tail_us": total_s * 1e6 - ends[-1],
        "block_us": total_s * 1e6,
    }


def runner_block_us(comm: Any, op: Any, bufs: Any, iters: int, align: bool) -> float:
    """PointRunner's own loop-mode number (s per op) for the point: median, max over ranks."""
    timing = Timing(num_iters=iters, num_blocks=5, align=align, check=False)
    dog = Watchdog(60, comm.rank)
    try:
        samples = PointRunner(comm, op, timing, dog)._loop(bufs)
    finally:
        dog.close()
    return float(comm.max_over_ranks(np.array([statistics.median(samples)]))[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1K,16K,64K")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--blocks", type=int, default=7)
    p.add_argument("--out", type=pathlib.Path)
    args = p.parse_args()
    comm = create("nccl", launch_info(detect(os.environ), gpus_per_node=None, timeout_s=60))
    events = [comm._cupy.cuda.Event() for _ in range(args.iters)]
    rows = []
    for name in ("allreduce", "alltoall"):
        op = ops.get(name)
        for size in (parse_size(s) for s in args.sizes.split(",")):
            bufs = op.make_inputs(comm, size, "bfloat16")
            for _ in range(5):
                op.run(comm, bufs)
            for align, fresh in ((True, True), (True, False), (False, True), (False, False)):
                run = lambda op=op, bufs=bufs: op.run(comm, bufs)  # noqa: E731
                mine = [
                    block(comm, run, args.iters, align, fresh, events) for _ in range(args.blocks)
                ]
                everyone = comm.gather_object(mine)
                runner_us = runner_block_us(comm, op, bufs, args.iters, align) * 1e6
                rows.append(
                    summarize(name, size, align, everyone, runner_us, args.iters, comm.rank, fresh)
                )
    if comm.rank == 0 and args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    comm.close()


def summarize(name: str, size: int, align: bool, everyone: list[list[dict]], runner_us: float,
              iters: int, rank: int, fresh: bool) -> dict[str, Any]:  # fmt: skip
    """Median over blocks of the max over ranks, printed on rank 0."""

    def med(get: Any) -> float:
        per_block = zip(*[[get(b) for b in blocks] for blocks in everyone], strict=True)
        return statistics.median(max(v) for v in per_block)

    row = {"op": name, "size": size, "align": align, "fresh_events": fresh,
           "runner_us_per_op": runner_us,
           **{f"host_{p}_us": med(lambda b, p=p: b["host_us"][p]) for p in PHASES},
           **{k: med(lambda b, k=k: b[k]) for k in ("first_op_us", "later_op_us", "tail_us",
                                                     "block_us")}}  # fmt: skip
    if rank == 0:
        host = " ".join(f"{p} {row[f'host_{p}_us']:.0f}" for p in PHASES)
        print(f"{name:9s} {size:>6d} {'align' if align else 'noalign':7s} "
              f"{'fresh' if fresh else 'pooled':6s} host[{host}] "
              f"dev[first {row['first_op_us']:.1f} later {row['later_op_us']:.1f}/op "
              f"tail {row['tail_us']:.1f} block {row['block_us']:.0f}] "
              f"runner {runner_us:.1f} us/op (block/{iters} {row['block_us'] / iters:.1f})",
              flush=True)  # fmt: skip
    return row


if __name__ == "__main__":
    main()
