"""MoE ops: `dispatch`, `combine` and `moe` (dispatch + stand-in experts + combine).

A sweep point is a token count (`size_unit = "tokens"`): the runner passes tokens per rank
where byte ops get nccl-tests' `size`. `size_bytes` in the record is the rank's BF16 input
activations (tokens x hidden x 2); the bandwidths users compare are in `extra()`, under
every byte convention of docs/PERFORMANCE.md ("MoE byte conventions"), with the inputs of
tokens/s. Inside the timed `run`: dispatch = counts all-to-all + one host read of the counts
+ row gather + payload alltoallv + grouping by expert (normal mode; low-latency mode has no
counts exchange); combine = combine-codec encode + reverse alltoallv + decode + fp32 sum of
each token's copies. Outside: routing, layout, send orders, and the dispatch-codec encode
with metadata packing (as DeepEP's tests cast to FP8 before timing dispatch).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, ClassVar

import numpy as np
import torch

from collectives.backends.base import Comm
from collectives.moe import check as moe_check
from collectives.moe.conventions import summarize, traffic_matrix_bytes
from collectives.moe.engine import MoEEngine, MoESetup, RoutingSource, make_placement, make_tokens
from collectives.moe.layout import Geometry
from collectives.moe.overlap import (
    OverlapReport,
    StandInExpert,
    expert_step,
    overlapped,
)
from collectives.moe.payload import get_codec
from collectives.ops.base import Buffers, Collective, Sizes

SETUP_FIELDS = (
    "hidden",
    "num_experts",
    "top_k",
    "node_limit",
    "routing",
    "routing_file",
    "zipf_s",
    "placement_file",
    "algo",
    "mode",
    "codec_dispatch",
    "codec_combine",
)


class _MoEOp(Collective):
    """Shared byte accounting and setup of the three MoE ops."""

    size_unit: ClassVar[str] = "tokens"
    direction: ClassVar[str] = "dispatch"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.setup(1)  # ValueError now for options wrong at any size or world

    def setup(self, num_tokens: int) -> MoESetup:
        fields = {k: self.options[k] for k in SETUP_FIELDS if self.options.get(k) is not None}
        return MoESetup(num_tokens=num_tokens, seed=self.seed, **fields)

    def _geometry(self, setup: MoESetup, world: int) -> tuple[Geometry, Any]:
        placement = make_placement(setup, world)
        local_world = int(self.options.get("gpus_per_node") or world)
        rank_node = tuple(self.options.get("rank_nodes") or ())
        geo = Geometry(
            world=world,
            local_world=local_world,
            slots_per_rank=placement.slots_per_rank,
            rank_node=rank_node if len(rank_node) == world else (),
        )
        return geo, placement

    def sizes(self, size_bytes: int, dtype: str, world: int) -> Sizes:
        """`size_bytes` is the token count here (size_unit = tokens). ValueError when the
        options cannot work on `world` ranks (placement, node limit, expert count)."""
        setup = self.setup(size_bytes)
        geo, _ = self._geometry(setup, world)
        setup.resolved_node_limit(geo.num_nodes)
        return self._sizes(setup)

    @staticmethod
    def _sizes(setup: MoESetup) -> Sizes:
        elems = setup.num_tokens * setup.hidden
        return Sizes(
            size_bytes=elems * 2, count=setup.num_tokens, send_count=elems, recv_count=elems
        )

    def bus_bw_factor(self, world: int) -> float:
        return 1.0

    def traffic_matrix(self, size_bytes: int, dtype: str, world: int) -> np.ndarray:
        """[src, dst] wire bytes of this op (combine: the transposed dispatch hops)."""
        setup = self.setup(size_bytes)
        geo, placement = self._geometry(setup, world)
        counts = RoutingSource(setup, geo, placement).traffic()
        codec = setup.codec_combine if self.direction == "combine" else setup.codec_dispatch
        token_bytes = get_codec(codec).wire_bytes(1, setup.hidden)
        matrix = traffic_matrix_bytes(counts, algo=setup.algo, token_bytes=token_bytes)
        return matrix.T.copy() if self.direction == "combine" else matrix

    def make_inputs(self, comm: Comm, size_bytes: int, dtype: str) -> Buffers:
        setup = self.setup(size_bytes)
        engine = MoEEngine(comm, setup, rank_node=tuple(self.options.get("rank_nodes") or ()))
        x = make_tokens(setup, comm.rank, engine.device)
        state: dict[str, Any] = {"engine": engine, "x": x, "packed": engine.pack(x)}
        return Buffers(
            sizes=self._sizes(setup),
            dtype="bfloat16",
            send=state["packed"],
            recv=None,
            state=state,
        )

    def extra(self, comm: Comm, bufs: Buffers, num_iters: int) -> dict[str, Any]:
        engine: MoEEngine = bufs.state["engine"]
        setup = engine.setup
        per_rank = engine.bytes_per_rank()
        return {
            "moe": {
                "setup": {
                    "num_tokens": setup.num_tokens,
                    **{k: getattr(setup, k) for k in SETUP_FIELDS},
                },
                "node_limit_in_force": engine.source.node_limit,
                "world": comm.world,
                "gpus_per_node": comm.local_world,
                "tokens_per_rank": setup.num_tokens,
                "tokens_total": setup.num_tokens * comm.world,
                "pairs_per_rank": [int(n) for n in engine.source.traffic().pairs.sum(axis=1)],
                "dispatch_token_bytes": engine.payload_bytes,
                "combine_token_bytes": engine.codec_combine.wire_bytes(1, setup.hidden),
                "meta_bytes_per_row": int(bufs.state["packed"].shape[1]) - engine.payload_bytes,
                "timed_region": TIMED_REGION[self.name],
                "bytes": {d: summarize(v) for d, v in per_rank.items()},
            }
        }


TIMED_REGION = {
    "dispatch": "counts all-to-all + host read of counts + payload alltoallv + expert "
    "grouping; rows are packed in send order before it, flat normal mode, else gathered in it "
    "(low-latency: no counts exchange, no host sync)",
    "combine": "combine encode + reverse alltoallv + decode + fp32 sum of token copies",
    "moe": "dispatch + decode + stand-in expert GEMMs + weighting + combine",
}


class Dispatch(_MoEOp):
    """Dispatch tokens to the ranks holding their experts; result grouped by expert."""

    name = "dispatch"
    direction = "dispatch"

    def run(self, comm: Comm, bufs: Buffers) -> None:
        bufs.state["result"] = bufs.state["engine"].dispatch(bufs.state["packed"])

    def check(self, comm: Comm, bufs: Buffers) -> int:
        engine: MoEEngine = bufs.state["engine"]
        setup = engine.setup
        return moe_check.check_dispatch(
            engine, bufs.state["result"], lambda r: make_tokens(setup, r, "cpu")
        )


class Combine(_MoEOp):
    """Return expert outputs to their tokens' ranks and sum them (weights applied)."""

    name = "combine"
    direction = "combine"

    def make_inputs(self, comm: Comm, size_bytes: int, dtype: str) -> Buffers:
        bufs = super().make_inputs(comm, size_bytes, dtype)
        engine: MoEEngine = bufs.state["engine"]
        result = engine.dispatch(bufs.state["packed"])
        bufs.state["result"] = result
        rows = moe_check.identity_rows(engine, result)
        # The experts' output dtype: BF16 as in DeepEP's combine, FP32 for an fp32 codec.
        wide = engine.setup.codec_combine.lower() in ("fp32", "float32")
        bufs.state["rows"] = rows if wide else rows.to(torch.bfloat16)
        return bufs

    def run(self, comm: Comm, bufs: Buffers) -> None:
        engine: MoEEngine = bufs.state["engine"]
        bufs.state["out"] = engine.combine(bufs.state["result"], bufs.state["rows"])

    def check(self, comm: Comm, bufs: Buffers) -> int:
        return moe_check.check_combine(bufs.state["engine"], bufs.state["out"], bufs.state["x"])


class MoE(_MoEOp):
    """Dispatch, stand-in expert GEMMs, combine; `overlap=True` runs two micro-batches of
    half the tokens each with one's communication beside the other's experts."""

    name = "moe"
    direction = "dispatch"

    def make_inputs(self, comm: Comm, size_bytes: int, dtype: str) -> Buffers:
        bufs = super().make_inputs(comm, size_bytes, dtype)
        engine: MoEEngine = bufs.state["engine"]
        expert = StandInExpert(
            engine.setup.hidden,
            int(self.options.get("expert_dim") or 256),
            engine.device,
            torch.bfloat16,
        )
        bufs.state["expert"] = expert
        if self.options.get("overlap"):
            halves = [self.setup(max(1, size_bytes // 2)) for _ in range(2)]
            engines = [MoEEngine(comm, _reseed(s, mb)) for mb, s in enumerate(halves)]
            xs = [make_tokens(e.setup, comm.rank, e.device) for e in engines]
            bufs.state["micro"] = (
                engines,
                [e.pack(x) for e, x in zip(engines, xs, strict=True)],
                xs,
            )
        return bufs

    def run(self, comm: Comm, bufs: Buffers) -> None:
        state = bufs.state
        if "micro" in state:
            engines, packed, _ = state["micro"]
            state["outs"] = overlapped(engines, packed, state["expert"])
            return
        engine = state["engine"]
        result = engine.dispatch(state["packed"])
        state["outs"] = [engine.combine(result, expert_step(engine, result, state["expert"]))]

    def check(self, comm: Comm, bufs: Buffers) -> int:
        state = bufs.state
        if "micro" in state:
            engines, _, xs = state["micro"]
            return sum(
                moe_check.check_combine(e, out, x)
                for e, out, x in zip(engines, state["outs"], xs, strict=True)
            )
        return moe_check.check_combine(state["engine"], state["outs"][0], state["x"])

    def extra(self, comm: Comm, bufs: Buffers, num_iters: int) -> dict[str, Any]:
        info = super().extra(comm, bufs, num_iters)
        if "micro" in bufs.state:
            scheme = overlap_scheme(comm, bufs.state)
            report = measure_overlap(comm, bufs.state, max(1, min(num_iters, 20)), scheme)
            info["moe"]["overlap"] = {**report.as_dict(), "scheme": scheme}
        return info


def _reseed(setup: MoESetup, micro_batch: int) -> MoESetup:
    return dataclasses.replace(setup, seed=setup.seed * 2 + micro_batch + 1)


def overlap_scheme(comm: Comm, state: dict[str, Any]) -> str:
    """'graphs' on CUDA with a communicator that has its own stream (the eager schedule
    is host-bound there and hides nothing), 'threads' otherwise."""
    engines = state["micro"][0]
    stream = getattr(comm, "stream", None)
    on_gpu = engines[0].device.type == "cuda" and isinstance(stream, torch.cuda.Stream)
    return "graphs" if on_gpu else "threads"


def measure_overlap(
    comm: Comm, state: dict[str, Any], num_iters: int, scheme: str = "auto"
) -> OverlapReport:
    """Median over iterations (each the max over ranks) of comm alone, compute alone and
    the overlapped schedule, for the two micro-batches in `state['micro']`: replayed from
    CUDA graphs (collectives/moe/overlap_graph.py) or issued by two host threads
    (collectives/moe/overlap.py); `scheme` 'auto' picks with overlap_scheme."""
    engines, packed, _ = state["micro"]
    expert = state["expert"]
    if scheme == "auto":
        scheme = overlap_scheme(comm, state)
    if scheme == "graphs":
        from collectives.moe.overlap_graph import graphed_schedules

        fns = graphed_schedules(comm.stream, engines, packed, expert)  # type: ignore[attr-defined]
    else:
        fns = _threaded_schedules(engines, packed, expert)
    for fn in fns:
        fn()  # warm: first-call and first-launch costs stay out of the samples
        _sync(comm)  # one at a time: comm alone and compute alone share the graphs' buffers
    times = [_time(comm, fn, num_iters) for fn in fns]
    return OverlapReport(comm_s=times[0], compute_s=times[1], together_s=times[2])


def _threaded_schedules(
    engines: list[MoEEngine], packed: list[Any], expert: StandInExpert
) -> tuple[Any, Any, Any]:
    """(comm alone, compute alone, overlapped) issued eagerly, the overlap by two threads."""
    results = [e.dispatch(p) for e, p in zip(engines, packed, strict=True)]
    rows = [expert_step(e, r, expert) for e, r in zip(engines, results, strict=True)]

    def comm_only() -> None:
        for e, p, r in zip(engines, packed, rows, strict=True):
            e.combine(e.dispatch(p), r)

    def compute_only() -> None:
        for e, r in zip(engines, results, strict=True):
            expert_step(e, r, expert)

    def together() -> None:
        overlapped(engines, packed, expert)

    return comm_only, compute_only, together


def _time(comm: Comm, fn: Any, num_iters: int) -> float:
    samples = np.empty(num_iters)
    for i in range(num_iters):
        comm.barrier()
        _sync(comm)
        start = time.perf_counter()
        fn()
        _sync(comm)
        samples[i] = time.perf_counter() - start
    return float(np.median(comm.max_over_ranks(samples)))


def _sync(comm: Comm) -> None:
    comm.synchronize()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


OPS: dict[str, type[Collective]] = {"dispatch": Dispatch, "combine": Combine, "moe": MoE}
