"""One rank's MoE exchange: configuration, routing, plan, and the dispatch/combine calls.

`MoESetup` is the validated configuration (the CLI's MoE flags). `MoEEngine` binds it to a
communicator: it builds this rank's routing and layout, precomputes the algorithm's plan
(and sub-communicators for `hierarchical`) outside any timed region, and exposes
`dispatch(packed)` and `combine(result, rows_out)` — the calls a benchmark times.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from collectives.backends.base import Comm
from collectives.moe import flat, hierarchical
from collectives.moe import placement as placement_mod
from collectives.moe import routing as routing_mod
from collectives.moe.conventions import per_rank_bytes
from collectives.moe.exchange import DispatchResult, gather_rows
from collectives.moe.layout import ALGOS, Geometry, RankLayout, TrafficCounts, traffic_counts
from collectives.moe.payload import get_codec, pack_rows

MODES = ("normal", "low-latency")


@dataclasses.dataclass(frozen=True, kw_only=True)
class MoESetup:
    """The MoE traffic to generate (defaults: DeepEP's intranode/internode tests)."""

    num_tokens: int = 4096
    """Tokens routed by each rank."""
    hidden: int = 7168
    """Hidden size (elements per token)."""
    num_experts: int = 256
    """Routed experts in the layer."""
    top_k: int = 8
    """Experts per token."""
    node_limit: int | None = None
    """Max nodes per token (DeepSeek-V3's M); None: min(nodes, 4) on several nodes, else off;
    0: off."""
    routing: str = "uniform"
    """uniform, zipf, or file."""
    routing_file: str | None = None
    """Trace for routing=file (.npy [tokens, top_k] or text; docs/MOE.md)."""
    zipf_s: float = 1.0
    """Zipf exponent of expert popularity for routing=zipf."""
    placement_file: str | None = None
    """Expert placement file; None: contiguous."""
    algo: str = "flat"
    """flat or hierarchical."""
    mode: str = "normal"
    """normal (counts exchange + alltoallv) or low-latency (fixed blocks, no host sync)."""
    codec_dispatch: str = "fp8"
    """Dispatch payload codec."""
    codec_combine: str = "bf16"
    """Combine payload codec."""
    seed: int = 0
    """Seed of routing and token data."""

    def __post_init__(self) -> None:
        routing_mod.check_shape(
            num_tokens=self.num_tokens, num_experts=self.num_experts, top_k=self.top_k
        )
        if self.hidden < 1:
            raise ValueError(f"--hidden {self.hidden} must be >= 1")
        if self.routing not in routing_mod.ROUTINGS:
            raise ValueError(
                f"unknown --routing {self.routing!r}; choose one of: "
                f"{', '.join(routing_mod.ROUTINGS)}"
            )
        if (self.routing == "file") != (self.routing_file is not None):
            raise ValueError("--routing file needs --routing-file PATH (and only it takes one)")
        if self.algo not in ALGOS:
            raise ValueError(f"unknown --algo {self.algo!r}; choose one of: {', '.join(ALGOS)}")
        if self.mode not in MODES:
            raise ValueError(f"unknown --mode {self.mode!r}; choose one of: {', '.join(MODES)}")
        if self.mode == "low-latency" and self.algo != "flat":
            raise ValueError("--mode low-latency runs with --algo flat only")
        if self.node_limit is not None and self.node_limit < 0:
            raise ValueError(f"--node-limit {self.node_limit} must be >= 0")

    def resolved_node_limit(self, num_nodes: int) -> int:
        """The node limit in force on `num_nodes` nodes (0: none)."""
        if self.routing == "file":
            if self.node_limit:
                raise ValueError(
                    "--node-limit shapes generated routing; a --routing-file is used as recorded"
                )
            return 0
        if self.node_limit is None:
            return min(num_nodes, 4) if num_nodes > 1 else 0
        if self.node_limit > num_nodes:
            raise ValueError(
                f"--node-limit {self.node_limit} exceeds the {num_nodes} nodes of this job; "
                "lower it or use more nodes (--gpus-per-node)"
            )
        return self.node_limit


def make_placement(setup: MoESetup, world: int) -> placement_mod.Placement:
    if setup.placement_file:
        return placement_mod.load_placement(
            setup.placement_file, num_experts=setup.num_experts, world=world
        )
    return placement_mod.contiguous(setup.num_experts, world)


class RoutingSource:
    """Every rank's routing and layout, regenerated on demand (pure, seeded)."""

    def __init__(self, setup: MoESetup, geometry: Geometry, placement: placement_mod.Placement):
        self.setup = setup
        self.geometry = geometry
        self.placement = placement
        self.node_limit = setup.resolved_node_limit(geometry.num_nodes)
        self._traffic: TrafficCounts | None = None
        self.table = (
            routing_mod.load_routing_file(setup.routing_file) if setup.routing_file else None
        )
        if self.table is not None and self.table.shape[1] != setup.top_k:
            raise ValueError(
                f"routing file lists {self.table.shape[1]} experts per token; "
                f"--top-k is {setup.top_k}"
            )

    def routing(self, rank: int) -> routing_mod.Routing:
        s = self.setup
        if self.table is not None:
            return routing_mod.routing_from_table(
                self.table, num_tokens=s.num_tokens, num_experts=s.num_experts, rank=rank
            )
        return routing_mod.generate(
            s.routing,
            num_tokens=s.num_tokens,
            num_experts=s.num_experts,
            top_k=s.top_k,
            seed=s.seed,
            rank=rank,
            node_limit=self.node_limit,
            zipf_s=s.zipf_s,
            expert_group=self.placement.expert_node(self.geometry.node_array),
        )

    def layout(self, rank: int) -> tuple[routing_mod.Routing, RankLayout]:
        routing = self.routing(rank)
        slots = placement_mod.assign_slots(self.placement, routing.topk_idx, rank)
        return routing, RankLayout(geometry=self.geometry, topk_slot=slots)

    def traffic(self) -> TrafficCounts:
        """Counts of the whole job (every rank's routing regenerated once, then cached)."""
        if self._traffic is None:
            self._traffic = traffic_counts([self.layout(r)[1] for r in range(self.geometry.world)])
        return self._traffic


def make_tokens(setup: MoESetup, rank: int, device: Any) -> torch.Tensor:
    """[num_tokens, hidden] bf16 activations of `rank`: seeded standard normal."""
    gen = torch.Generator().manual_seed(setup.seed * 1_000_003 + rank)
    x = torch.randn((setup.num_tokens, setup.hidden), generator=gen, dtype=torch.float32)
    return x.to(torch.bfloat16).to(device)


class MoEEngine:
    """One rank's dispatch/combine with everything precomputed."""

    def __init__(
        self,
        comm: Comm,
        setup: MoESetup,
        device: Any | None = None,
        rank_node: tuple[int, ...] = (),
    ):
        """`rank_node`: node of every rank as launched (default: ranks in blocks of
        comm.local_world); it must agree with the communicator's own node and local rank."""
        self.comm = comm
        self.setup = setup
        self.device = torch.device(device if device is not None else _torch_device(comm))
        self.geometry = Geometry(
            world=comm.world,
            local_world=comm.local_world,
            slots_per_rank=make_placement(setup, comm.world).slots_per_rank,
            rank_node=tuple(rank_node),
        )
        here = (self.geometry.node_of(comm.rank), int(self.geometry.local_array[comm.rank]))
        if here != (comm.node, comm.local_rank):
            raise ValueError(
                f"rank {comm.rank} is on node {comm.node} as local rank {comm.local_rank} but "
                f"the rank -> node map says node {here[0]}, local rank {here[1]}; pass the "
                "launch's map (rank_node)"
            )
        self.source = RoutingSource(setup, self.geometry, make_placement(setup, comm.world))
        self.routing, self.layout = self.source.layout(comm.rank)
        self.codec_dispatch = get_codec(setup.codec_dispatch)
        self.codec_combine = get_codec(setup.codec_combine)
        self.payload_bytes = self.codec_dispatch.wire_bytes(1, setup.hidden)
        self.plan = self._build_plan()

    def _build_plan(self) -> Any:
        rank, top_k = self.comm.rank, self.setup.top_k
        if self.setup.algo == "flat":
            return flat.build_plan(self.layout, rank=rank, top_k=top_k, device=self.device)
        intra = self.comm.split(self.comm.node, self.comm.local_rank)
        inter = self.comm.split(self.comm.local_rank, self.comm.node)
        return hierarchical.build_plan(
            self.layout, rank=rank, top_k=top_k, device=self.device, inter=inter, intra=intra
        )

    @contextlib.contextmanager
    def on_comm_stream(self) -> Iterator[None]:
        """Run the enclosed GPU work on the communicator's stream (where its collectives
        and timing events live), ordered after the caller's stream and before its next
        work. A no-op on CPU."""
        stream = getattr(self.comm, "stream", None) or getattr(self.comm, "_stream", None)
        if stream is None or self.device.type != "cuda":
            yield
            return
        caller = torch.cuda.current_stream(self.device)
        stream.wait_stream(caller)
        with torch.cuda.stream(stream):
            yield
        caller.wait_stream(stream)

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """Encode tokens with the dispatch codec and append routing metadata (untimed): the
        rows a quantize kernel writes before the dispatch. Flat normal mode gets them in send
        order (one copy per destination rank, grouped by rank), as a quantize kernel fused
        with the layout writes them for a transport that needs each peer's rows contiguous;
        the other modes get token order ([num_tokens + 1] with the pad row) and gather."""
        with self.on_comm_stream():
            wire = self.codec_dispatch.encode(x.to(self.device))
            rows = pack_rows(
                wire, self.layout.topk_slot, self.routing.topk_weights, rank=self.comm.rank
            )
            if self.setup.algo == "flat" and self.setup.mode != "low-latency":
                return gather_rows(rows, self.plan.send_idx)
            return rows

    def dispatch(
        self, packed: torch.Tensor, cached: DispatchResult | None = None
    ) -> DispatchResult:
        """The timed dispatch: counts exchange (normal mode), payload, expert grouping.

        `cached`: an earlier result of the same routing; its counts are reused and the
        counts exchange skipped (DeepEP's cached dispatch). Ignored in low-latency mode.
        """
        args = (self.comm, self.plan, packed, self.payload_bytes)
        with self.on_comm_stream():
            if self.setup.algo == "hierarchical":
                return hierarchical.dispatch(*args, cached)
            if self.setup.mode == "low-latency":
                return flat.dispatch_low_latency(*args)
            return flat.dispatch(*args, cached)

    def combine(self, result: DispatchResult, rows_out: torch.Tensor) -> torch.Tensor:
        """The timed combine: [num_tokens, hidden] weighted sums in the original order
        (bf16 for a bf16 combine codec, else float32)."""
        args = (self.comm, self.plan, result, rows_out, self.codec_combine)
        with self.on_comm_stream():
            if self.setup.algo == "hierarchical":
                return hierarchical.combine(*args)
            return flat.combine(*args)

    def expert_inputs(self, result: DispatchResult) -> torch.Tensor:
        """[num_pairs, hidden] decoded tokens of every pair, slot-major (expert input)."""
        rows = gather_rows(result.rows, result.order.pair_row)[:, : self.payload_bytes]
        return self.codec_dispatch.decode(rows, int(rows.shape[0]), self.setup.hidden)

    def bytes_per_rank(self, counts: TrafficCounts | None = None) -> dict[str, Any]:
        """Per-rank bytes under every convention, for dispatch and for combine."""
        counts = counts if counts is not None else self.source.traffic()
        h = self.setup.hidden
        return {
            "dispatch": per_rank_bytes(
                counts,
                algo=self.setup.algo,
                direction="dispatch",
                hidden=h,
                token_bytes=self.payload_bytes,
            ),
            "combine": per_rank_bytes(
                counts,
                algo=self.setup.algo,
                direction="combine",
                hidden=h,
                token_bytes=self.codec_combine.wire_bytes(1, h),
            ),
        }


def _torch_device(comm: Comm) -> str:
    device = getattr(comm, "device", "cpu") or "cpu"
    return "cpu" if device in ("auto", "host") else str(device)


def slot_expert_table(engine: MoEEngine) -> np.ndarray:
    """[world * slots] expert id of each slot (-1: empty)."""
    return engine.source.placement.slot_expert()
