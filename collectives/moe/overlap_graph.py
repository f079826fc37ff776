"""Dual micro-batch overlap from CUDA graphs (what `epbench run moe --overlap` times on GPUs).

The eager schedule (collectives/moe/overlap.py) issues every dispatch, expert step and combine
from Python, and on GPUs its communication is host-bound, so the two streams rarely run at
once. Here each piece is captured once in its own CUDA graph — the cached dispatch and the
combine of each micro-batch on the communicator's stream, each expert step on a compute
stream — and one iteration replays them as DeepSeek's dual micro-batch scheme runs:

    comm stream:     D0  D1      C0      C1
    compute stream:      E0(D0)  E1(D1)
                         (C0 waits for E0, C1 for E1)

so D1 runs beside E0 and C0 beside E1. Comm alone (D0 D1 C0 C1) and compute alone (E0 E1)
replay the same graphs; collectives/ops/moe.py times the three schedules.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from collectives.moe.engine import MoEEngine
from collectives.moe.overlap import StandInExpert, expert_step


def _capture(fn: Callable[[], Any], stream: torch.cuda.Stream) -> tuple[torch.cuda.CUDAGraph, Any]:
    """(graph, static output) of fn captured on `stream`, after one eager warm-up call."""
    with torch.cuda.stream(stream):
        fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        out = fn()
    torch.cuda.synchronize()
    return graph, out


def graphed_schedules(
    comm_stream: torch.cuda.Stream, engines: list[MoEEngine], packed: list[torch.Tensor],
    expert: StandInExpert,
) -> tuple[Callable[[], None], Callable[[], None], Callable[[], None]]:  # fmt: skip
    """(comm alone, compute alone, overlapped) replays of the graphs captured here; the
    engines' communicator issues on `comm_stream`."""
    compute = torch.cuda.Stream(device=engines[0].device)
    first = [e.dispatch(p) for e, p in zip(engines, packed, strict=True)]
    d: list[torch.cuda.CUDAGraph] = []
    e_: list[torch.cuda.CUDAGraph] = []
    c: list[torch.cuda.CUDAGraph] = []
    results: list[Any] = []
    rows: list[Any] = []
    for engine, rows_in, handle in zip(engines, packed, first, strict=True):
        graph, result = _capture(partial(engine.dispatch, rows_in, cached=handle), comm_stream)
        d.append(graph)
        results.append(result)
    for engine, result in zip(engines, results, strict=True):
        graph, out = _capture(partial(expert_step, engine, result, expert), compute)
        e_.append(graph)
        rows.append(out)
    for engine, result, out in zip(engines, results, rows, strict=True):
        graph, _ = _capture(partial(engine.combine, result, out), comm_stream)
        c.append(graph)

    def comm_only() -> None:
        _replay(comm_stream, [*d, *c])

    def compute_only() -> None:
        _replay(compute, e_)

    def together() -> None:
        dispatched = _replay(comm_stream, d)
        computed = _replay(compute, e_, after=dispatched)
        _replay(comm_stream, c, after=computed)

    return comm_only, compute_only, together


def _replay(
    stream: torch.cuda.Stream,
    graphs: list[torch.cuda.CUDAGraph],
    after: list[torch.cuda.Event] | None = None,
) -> list[torch.cuda.Event]:
    """Replay `graphs` in order on `stream`, graph i after event `after[i]` if given; an
    event recorded after each replay."""
    done = []
    with torch.cuda.stream(stream):
        for i, graph in enumerate(graphs):
            if after is not None:
                stream.wait_event(after[i])
            graph.replay()
            done.append(torch.cuda.Event())
            done[-1].record()
    return done
