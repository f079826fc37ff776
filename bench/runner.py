"""The measurement loop for one (op, size) point, following DESIGN.md §3.

Order per point: allocate and fill (seeded) -> one checked run (never timed) -> warmup ->
per-iteration samples -> back-to-back loop blocks -> CUDA-graph blocks (when asked and the
backend can capture) -> gather every rank's samples and aggregate (max by default) ->
op-specific extras. Every phase that communicates runs under the watchdog.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.watchdog import Watchdog
from collectives.backends.base import Comm
from collectives.ops.base import Buffers, Collective
from results.schema import Record

AGGREGATIONS = ("max", "avg", "min", "rank0")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Timing:
    """How to time each point (the flags -n -w -c -G -z -a and --blocks)."""

    num_iters: int = 20
    """Per-iteration samples, and ops per loop/graph block (-n)."""
    num_warmup: int = 5
    """Untimed runs before timing (-w)."""
    check: bool = True
    """Check correctness once before timing (-c)."""
    num_blocks: int = 5
    """Loop / graph blocks per point; each block gives one sample."""
    graph_iters: int = 0
    """Graph launches per block (-G): the graph holds num_iters ops, as in nccl-tests;
    0 disables graph mode."""
    align: bool = True
    """On GPUs, one untimed op right before each loop/graph block lines the ranks' streams
    up (--no-align skips it, as nccl-tests does)."""
    blocking: bool = False
    """Synchronize after every op in per-iteration mode (-z)."""
    aggregation: str = "max"
    """How ranks combine per sample (-a): max, avg, min or rank0."""
    compiled_loop: bool = True
    """Loop blocks issue the op's recorded calls from compiled code where the backend can
    (`nccl`), as nccl-tests' C loop does; False (--python-loop) issues them from Python."""
    modes: tuple[str, ...] = ("per_iter", "loop")
    """Timing modes to run; graph is added when graph_iters > 0."""

    def __post_init__(self) -> None:
        if self.num_iters < 1 or self.num_warmup < 0 or self.num_blocks < 1:
            raise ValueError(
                f"-n {self.num_iters} must be >= 1, -w {self.num_warmup} >= 0, "
                f"--blocks {self.num_blocks} >= 1"
            )
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"-a {self.aggregation!r}: choose one of {AGGREGATIONS}")


@dataclasses.dataclass
class Fault:
    """Test hook (`--inject-fault`): misbehave on purpose at one point."""

    kind: str  # skip | hang | kill | exit
    rank: int
    size_index: int = 0


def _aggregate(rank_times: np.ndarray, how: str) -> np.ndarray:
    if how == "max":
        return rank_times.max(axis=0)
    if how == "min":
        return rank_times.min(axis=0)
    if how == "avg":
        return rank_times.mean(axis=0)
    return rank_times[0]


class PointRunner:
    """Measures one op at a sequence of sizes on one communicator."""

    def __init__(
        self,
        comm: Comm,
        op: Collective,
        timing: Timing,
        dog: Watchdog,
        fault: Fault | None = None,
        label: Callable[[int], str] | None = None,
    ) -> None:
        self.comm = comm
        self.op = op
        self.timing = timing
        self.dog = dog
        self.fault = fault
        self._label = label or (lambda size: f"{op.name} size {size} B")
        self._fake = getattr(comm, "backend", "") == "fake"
        self.loop_issue = "python"
        """How the last loop blocks were issued: `compiled` or `python`."""

    def _faulty(self, size_index: int) -> str | None:
        f = self.fault
        if f and f.rank == self.comm.rank and f.size_index == size_index:
            return f.kind
        return None

    def _checked_run(self, bufs: Buffers, size_index: int, what: str) -> int:
        fault = self._faulty(size_index)
        with self.dog.guard(f"{what} (check)"):
            if fault is not None:
                _misbehave(fault)
            if fault != "skip":
                self.op.run(self.comm, bufs)
            self.comm.synchronize()
            wrong = -1 if self._fake else self.op.check(self.comm, bufs)
            total = self.comm.gather_object(wrong)
        return -1 if any(w < 0 for w in total) else int(sum(total))

    def _per_iter(self, bufs: Buffers) -> list[float]:
        comm, op, n = self.comm, self.op, self.timing.num_iters
        timer = comm.timer()
        # OSU-style barrier before every host-clock sample, unless the op lines ranks up itself
        host_clock = comm.device == "cpu" and not op.self_synchronizing
        comm.barrier()
        for _ in range(n):
            if host_clock:
                comm.barrier()
            timer.start()
            op.run(comm, bufs)
            timer.stop()
            if self.timing.blocking:
                comm.synchronize()
        comm.synchronize()
        return timer.elapsed_s()

    def _blocks(
        self, issue: Callable[[], None], ops_per_block: int, align: Callable[[], None]
    ) -> list[float]:
        comm = self.comm
        samples = []
        for _ in range(self.timing.num_blocks):
            timer = comm.timer()
            comm.barrier()
            if comm.device != "cpu" and self.timing.align:
                # A host barrier leaves the ranks' streams tens of microseconds apart; one
                # untimed op just before the start event lines them up on the device, so
                # a late rank's arrival is not charged to the block.
                align()
            timer.start()
            issue()
            timer.stop()
            comm.synchronize()
            samples.extend(t / ops_per_block for t in timer.elapsed_s())
        return samples

    def _loop(self, bufs: Buffers) -> list[float]:
        n = self.timing.num_iters
        issue = self._compiled_loop(bufs, n)
        self.loop_issue = "compiled" if issue is not None else "python"
        if issue is None:

            def issue() -> None:
                for _ in range(n):
                    self.op.run(self.comm, bufs)

        return self._blocks(issue, n, lambda: self.op.run(self.comm, bufs))

    def _compiled_loop(self, bufs: Buffers, n: int) -> Callable[[], None] | None:
        """The backend's compiled loop of the op's recorded calls (warmed: compiled and run
        once), or None: not asked for, not offered, or the op does more than communicate."""
        if not (self.timing.compiled_loop and self.op.communication_only):
            return None
        issue = self.comm.repeat(lambda: self.op.run(self.comm, bufs), n)
        if issue is not None:
            issue()
            self.comm.synchronize()
        return issue

    def _graph(self, bufs: Buffers) -> list[float] | None:
        # As nccl-tests' -G: the graph holds -n ops and each block launches it -G times
        # back to back, so a launch's fixed cost is shared by n x G ops, not charged to n.
        n, launches = self.timing.num_iters, self.timing.graph_iters
        if self.comm.capture_records_calls and not self.op.communication_only:
            return None  # a recording replays the op's calls, not the other work it does
        replay = self.comm.capture(lambda: self.op.run(self.comm, bufs), n)
        if replay is None:
            return None
        replay()  # warm the graph
        self.comm.synchronize()

        def issue() -> None:
            for _ in range(launches):
                replay()

        return self._blocks(issue, n * launches, lambda: self.op.run(self.comm, bufs))

    def measure(self, size: int, size_index: int, dtype: str) -> list[Record]:
        """All records of one point (one per timing mode that ran)."""
        what = self._label(size)
        with self.dog.guard(f"{what} (setup)"):
            bufs = self.op.make_inputs(self.comm, size, dtype)
        num_wrong = self._checked_run(bufs, size_index, what) if self.timing.check else -1
        with self.dog.guard(f"{what} (warmup)"):
            for _ in range(self.timing.num_warmup):
                self.op.run(self.comm, bufs)
            self.comm.synchronize()
        samples: dict[str, list[float]] = {}
        for mode in self.timing.modes:
            with self.dog.guard(f"{what} (timed, {mode})"):
                samples[mode] = self._per_iter(bufs) if mode == "per_iter" else self._loop(bufs)
            if mode == "loop" and self.loop_issue == "compiled" and self.timing.check:
                with self.dog.guard(f"{what} (check after the compiled loop)"):
                    num_wrong = max(num_wrong, self._recheck(bufs))
        if self.timing.graph_iters > 0:
            with self.dog.guard(f"{what} (timed, graph)"):
                graph = self._graph(bufs)
                if graph is not None:
                    samples["graph"] = graph
                    if self.timing.check and not self._fake:
                        num_wrong = max(num_wrong, self._recheck(bufs))
        with self.dog.guard(f"{what} (gather)"):
            gathered = self.comm.gather_object(samples)
        with self.dog.guard(f"{what} (extra)"):
            extra = self.op.extra(self.comm, bufs, self.timing.num_iters)
        return [self._record(bufs, mode, gathered, num_wrong, extra) for mode in samples]

    def _recheck(self, bufs: Buffers) -> int:
        """Check the output replays (graph, compiled loop) left behind (ops are idempotent)."""
        wrong = self.op.check(self.comm, bufs)
        return int(sum(self.comm.gather_object(wrong)))

    def _record(
        self,
        bufs: Buffers,
        mode: str,
        gathered: list[dict[str, list[float]]],
        num_wrong: int,
        extra: dict[str, Any],
    ) -> Record:
        divisor = self.op.time_divisor
        rank_times = np.asarray([g[mode] for g in gathered], dtype=np.float64) / divisor
        times = _aggregate(rank_times, self.timing.aggregation)
        return Record(
            op=self.op.name,
            backend=self.comm.backend,
            dtype=bufs.dtype,
            mode=mode,
            size_bytes=bufs.sizes.size_bytes,
            count=bufs.sizes.count,
            num_ranks=self.comm.world,
            times_s=[float(t) for t in times],
            rank_times_s=rank_times.tolist(),
            bus_factor=self.op.bus_bw_factor(self.comm.world),
            num_wrong=num_wrong,
            redop=self.op.redop,
            root=self.op.root(),
            codec=str(getattr(self.op, "codec_name", "none")),
            num_warmup=self.timing.num_warmup,
            aggregation=self.timing.aggregation,
            extra={**extra, "loop_issue": self.loop_issue} if mode == "loop" else extra,
        )


def _misbehave(kind: str) -> None:
    import os
    import signal
    import time

    if kind == "hang":
        time.sleep(1e6)
    elif kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif kind == "exit":
        os._exit(1)
