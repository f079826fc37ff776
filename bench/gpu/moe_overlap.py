"""Dual micro-batch overlap from CUDA graphs (bench/gpu/moe_gpu.py's `overlap` section).

The eager schedule (collectives/moe/overlap.py) issues every dispatch, expert step and combine
from Python, and on GPUs its communication is host-bound, so the two streams rarely run at
once. Here each piece is captured once in its own CUDA graph — the cached dispatch and the
combine of each micro-batch on the communicator's stream, each expert step on a compute
stream — and one iteration replays them as DeepSeek's dual micro-batch scheme runs:

    comm stream:     D0  D1      C0      C1
    compute stream:      E0(D0)  E1(D1)
                         (C0 waits for E0, C1 for E1)

so D1 runs beside E0 and C0 beside E1. Comm alone (D0 D1 C0 C1) and compute alone (E0 E1)
replay the same graphs. Times are host-measured per iteration (barrier, synchronize, replay,
synchronize; graph launches cost a few µs), median over iterations of the max over ranks.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from collectives.moe.overlap import OverlapReport, StandInExpert, expert_step


def _capture(fn: Any, stream: torch.cuda.Stream) -> tuple[torch.cuda.CUDAGraph, Any]:
    """(graph, static output) of fn captured on `stream`, after one eager warm-up call."""
    with torch.cuda.stream(stream):
        fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        out = fn()
    torch.cuda.synchronize()
    return graph, out


def graphed_overlap(
    comm: Any, engines: list[Any], packed: list[torch.Tensor], expert: StandInExpert,
    num_iters: int,
) -> OverlapReport:  # fmt: skip
    """Comm alone, compute alone and the overlapped schedule, all from CUDA graphs."""
    comm_stream: torch.cuda.Stream = comm.stream
    compute = torch.cuda.Stream(device=engines[0].device)
    first = [e.dispatch(p) for e, p in zip(engines, packed, strict=True)]
    d, e_, c, results, rows = [], [], [], [], []
    for mb, engine in enumerate(engines):
        graph, result = _capture(
            lambda mb=mb, engine=engine: engine.dispatch(packed[mb], cached=first[mb]),
            comm_stream,
        )
        d.append(graph)
        results.append(result)
    for engine, result in zip(engines, results, strict=True):
        graph, out = _capture(lambda e=engine, r=result: expert_step(e, r, expert), compute)
        e_.append(graph)
        rows.append(out)
    for engine, result, out in zip(engines, results, rows, strict=True):
        graph, _ = _capture(lambda e=engine, r=result, o=out: e.combine(r, o), comm_stream)
        c.append(graph)

    def comm_only() -> None:
        with torch.cuda.stream(comm_stream):
            for graph in (*d, *c):
                graph.replay()

    def compute_only() -> None:
        with torch.cuda.stream(compute):
            for graph in e_:
                graph.replay()

    def together() -> None:
        done_d, done_e = [], []
        with torch.cuda.stream(comm_stream):
            for graph in d:
                graph.replay()
                done_d.append(torch.cuda.Event())
                done_d[-1].record()
        with torch.cuda.stream(compute):
            for graph, ev in zip(e_, done_d, strict=True):
                compute.wait_event(ev)
                graph.replay()
                done_e.append(torch.cuda.Event())
                done_e[-1].record()
        with torch.cuda.stream(comm_stream):
            for graph, ev in zip(c, done_e, strict=True):
                comm_stream.wait_event(ev)
                graph.replay()

    times = [_time(comm, fn, num_iters) for fn in (comm_only, compute_only, together)]
    return OverlapReport(comm_s=times[0], compute_s=times[1], together_s=times[2])


def _time(comm: Any, fn: Any, num_iters: int) -> float:
    fn()  # warm
    samples = np.empty(num_iters)
    for i in range(num_iters):
        comm.barrier()
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        samples[i] = time.perf_counter() - start
    return float(np.median(comm.max_over_ranks(samples)))
