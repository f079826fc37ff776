"""Loop blocks take the backend's compiled loop (`repeat`) when it offers one and the op only
communicates, and say how they were issued; ops that also compute, and --python-loop, keep
the Python loop; a backend whose capture records calls gets no graph mode for such ops.
Checked on a real gloo rank whose `repeat` hands back a counting host loop."""

from __future__ import annotations

from typing import Any

import pytest

from bench.runner import PointRunner, Timing
from bench.watchdog import Watchdog
from collectives import ops
from collectives.ops.compressed import Compressed
from tests.dist.moe_gloo_comm import run_gloo

pytestmark = [pytest.mark.dist, pytest.mark.timeout(300)]


class RepeatComm:
    """A gloo comm offering `repeat`: a host loop counting what it issues; `records` makes
    its capture a recording one (as the mpi backend's)."""

    def __init__(self, comm: Any, records: bool = False) -> None:
        self._comm = comm
        self.repeats: list[int] = []
        self.issued = 0
        self.captures = 0
        self.capture_records_calls = records

    def __getattr__(self, name: str) -> Any:
        return getattr(self._comm, name)

    def repeat(self, fn: Any, num_iters: int) -> Any:
        fn()  # records by running once, as the nccl backend does
        self.repeats.append(num_iters)

        def issue() -> None:
            for _ in range(num_iters):
                fn()
                self.issued += 1

        return issue

    def capture(self, fn: Any, num_iters: int) -> Any:
        self.captures += 1
        return None


def _measure(comm: Any, op_name: str, compiled: bool, codec: str) -> dict[str, Any]:
    wrapped = RepeatComm(comm, records=True)
    timing = Timing(num_iters=4, num_warmup=1, check=True, num_blocks=3, graph_iters=2,
                    compiled_loop=compiled)  # fmt: skip
    op = ops.get(op_name)
    if codec != "none":
        op = Compressed(op, codec, hidden=128)
    dog = Watchdog(60, comm.rank)
    try:
        records = PointRunner(wrapped, op, timing, dog).measure(4096, 0, "float32")
    finally:
        dog.close()
    loop = next(r for r in records if r.mode == "loop")
    return {
        "repeats": wrapped.repeats,
        "issued": wrapped.issued,
        "captures": wrapped.captures,
        "issue": loop.extra.get("loop_issue"),
        "others": [r.extra.get("loop_issue") for r in records if r.mode != "loop"],
        "wrong": loop.num_wrong,
    }


def test_loop_blocks_use_the_compiled_loop_of_a_communication_only_op() -> None:
    for got in run_gloo(_measure, 2, 2, "alltoall", True, "none"):
        assert got["repeats"] == [4]  # one recording per point, -n ops per block
        assert got["issued"] == 4 * (1 + 3)  # one warm block, then 3 timed blocks
        assert got["issue"] == "compiled" and got["others"] == [None]
        assert got["captures"] == 1 and got["wrong"] == 0


def test_python_loop_flag_and_computing_ops_keep_the_python_loop() -> None:
    for got in run_gloo(_measure, 2, 2, "alltoall", False, "none"):
        assert got["repeats"] == [] and got["issue"] == "python"
    for got in run_gloo(_measure, 2, 2, "alltoall", True, "fp8_e4m3"):
        assert got["repeats"] == [] and got["issue"] == "python"
        assert got["captures"] == 0  # a recording capture would replay the transfer alone
