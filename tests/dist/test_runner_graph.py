"""The runner's CUDA-graph mode follows nccl-tests' -G: a graph holds -n ops and each sample
launches it -G times, so a sample is block time / (n x G). Checked on a real gloo rank whose
`capture` returns a host stand-in for a graph: each launch sleeps 10 ms, so a runner that
divided by n alone (one launch per sample) would report 3x the time per op."""

from __future__ import annotations

import time
from typing import Any

import pytest

from bench.runner import PointRunner, Timing
from bench.watchdog import Watchdog
from collectives import ops
from tests.dist.moe_gloo_comm import run_gloo

pytestmark = [pytest.mark.dist, pytest.mark.timeout(300)]
LAUNCH_S = 0.010


class HostGraphComm:
    """A gloo comm whose graphs are host closures that count their launches."""

    def __init__(self, comm: Any) -> None:
        self._comm = comm
        self.captured_ops = 0
        self.launches = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._comm, name)

    def capture(self, fn: Any, num_iters: int) -> Any:
        self.captured_ops = num_iters

        def launch() -> None:
            self.launches += 1
            time.sleep(LAUNCH_S)

        return launch


def _measure(comm: Any) -> dict[str, Any]:
    graphs = HostGraphComm(comm)
    timing = Timing(num_iters=4, num_warmup=1, check=False, num_blocks=3, graph_iters=3,
                    modes=("loop",))  # fmt: skip
    dog = Watchdog(60, comm.rank)
    try:
        records = PointRunner(graphs, ops.get("allreduce"), timing, dog).measure(1024, 0, "float32")
    finally:
        dog.close()
    graph = next(r for r in records if r.mode == "graph")
    return {"captured": graphs.captured_ops, "launches": graphs.launches, "times": graph.times_s}


def test_graph_samples_divide_by_ops_times_launches() -> None:
    (got,) = run_gloo(_measure, 1, 1)
    assert got["captured"] == 4  # the graph holds -n ops
    assert got["launches"] == 1 + 3 * 3  # one warm-up launch, then -G launches per block
    per_op = LAUNCH_S * 3 / (4 * 3)  # 3 launches of 10 ms per sample of 4 x 3 ops
    assert len(got["times"]) == 3
    for t in got["times"]:
        assert per_op * 0.95 <= t <= per_op * 1.5, got["times"]
