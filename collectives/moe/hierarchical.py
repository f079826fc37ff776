"""Hierarchical (node-limited, plane-aligned) dispatch/combine.

Stage 1 sends a token once per destination node, to the rank with the sender's local index
there (same plane; a token for the sender's own node goes to the sender itself). Stage 2
forwards each row inside the node once per destination rank. Counts travel first, as in
DeepEP's internode notify: sources tell forwarders their rows and per-rank / per-slot
counts (inter-node all-to-all), forwarders tell final ranks theirs (intra-node), then one
host read sizes every buffer. Combine runs backwards: the final ranks send partial sums to
the forwarder, which adds the rows of each stage-1 token (one partial sum per node), then
one row per node returns to the source, which adds the nodes' partials in fp32.
The forwarder re-encodes its fp32 partial sum with the combine codec (one extra rounding).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from collectives.backends.base import Comm
from collectives.moe.exchange import (
    DispatchResult,
    alltoallv_rows,
    counts_and_first_hop,
    exchange_counts,
    gather_rows,
    grouped,
    index_tensor,
    reverse_reduce,
)
from collectives.moe.layout import RankLayout, gather_plan
from collectives.moe.payload import Codec, unpack_meta


@dataclasses.dataclass
class HierPlan:
    """Send orders and sub-communicators of one rank (built outside the timed region)."""

    rank: int
    local_world: int
    node: int
    rank_node: torch.Tensor
    """[world] node of each rank (the launch's map)."""
    rank_local: torch.Tensor
    """[world] local rank of each rank on its node."""
    slots_per_rank: int
    top_k: int
    inter: Comm
    """Ranks with this rank's local index, one per node (ordered by node)."""
    intra: Comm
    """Ranks of this node (ordered by local index)."""
    send_idx: torch.Tensor
    """[num_send] token index of each stage-1 row, grouped by destination node."""
    send_rows: list[int]
    """Stage-1 rows to each node."""
    gather_idx: torch.Tensor
    """[num_tokens, node fanout] positions of each token's node copies."""
    counts_message: torch.Tensor
    """[nodes, 1 + L + L*slots] int64 (see RankLayout.hier_counts_message)."""


def build_plan(
    layout: RankLayout, *, rank: int, top_k: int, device: Any, inter: Comm, intra: Comm
) -> HierPlan:
    """Precompute stage-1 orders; `inter`/`intra` come from comm.split (made once)."""
    geo = layout.geometry
    gather = gather_plan(layout.is_token_in_node)

    return HierPlan(
        rank=rank,
        local_world=geo.local_world,
        node=geo.node_of(rank),
        rank_node=index_tensor(geo.node_array, device),
        rank_local=index_tensor(geo.local_array, device),
        slots_per_rank=geo.slots_per_rank,
        top_k=top_k,
        inter=inter,
        intra=intra,
        send_idx=index_tensor(gather.send_idx, device),
        send_rows=[int(n) for n in gather.counts],
        gather_idx=index_tensor(gather.gather_idx, device),
        counts_message=index_tensor(layout.hier_counts_message(), device),
    )


@dataclasses.dataclass
class HierHandle:
    """What combine needs from a hierarchical dispatch."""

    recv1_rows: list[int]
    """Stage-1 rows received from each node's same-local-index rank."""
    fwd_rows: list[int]
    """Stage-2 rows this forwarder sent to each local rank."""
    recv2_rows: list[int]
    """Stage-2 rows received from each local forwarder."""
    fwd_gather_idx: torch.Tensor
    """[num_stage1_rows, L] stage-2 positions of each stage-1 row's copies (pad: total)."""
    counts: np.ndarray
    """Both counts exchanges' results (reused by a cached dispatch)."""


def _exchange_all_counts(plan: HierPlan) -> torch.Tensor:
    """Both counts all-to-alls (device): [nodes*(1+L+L*S) + L*(1+S)] counts."""
    lw, slots = plan.local_world, plan.slots_per_rank
    got1 = exchange_counts(plan.inter, plan.counts_message)
    to_local = torch.cat(
        [got1[:, 1 : 1 + lw].sum(dim=0)[:, None], got1[:, 1 + lw :].sum(dim=0).reshape(lw, slots)],
        dim=1,
    )
    got2 = exchange_counts(plan.intra, to_local.contiguous())
    return torch.cat([got1.reshape(-1), got2.reshape(-1)])


def _forward_order(
    recv1: torch.Tensor, plan: HierPlan, payload_bytes: int, total: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage-2 send order: (stage-1 row, local destination) pairs grouped by destination."""
    lw, num_rows = plan.local_world, int(recv1.shape[0])
    slots = unpack_meta(recv1, payload_bytes, plan.top_k)[:, 2 : 2 + plan.top_k].long()
    dst = torch.div(slots, plan.slots_per_rank, rounding_mode="floor").clamp_(min=0)
    here = (slots >= 0) & (plan.rank_node[dst] == plan.node)
    local = torch.where(here, plan.rank_local[dst], lw)
    mask = torch.zeros((num_rows, lw + 1), dtype=torch.bool, device=recv1.device)
    mask.scatter_(1, local, True)
    flat = (~mask[:, :lw]).T.reshape(-1).to(torch.uint8)
    _, order = torch.sort(flat, stable=True)
    order = order[:total]
    return order % max(num_rows, 1), torch.div(order, max(num_rows, 1), rounding_mode="floor")


def _split_counts(plan: HierPlan, counts: np.ndarray) -> dict[str, Any]:
    """Host counts of both stages: rows per peer and pairs per local slot."""
    lw, slots, num_nodes = plan.local_world, plan.slots_per_rank, plan.inter.world
    got1 = counts[: num_nodes * (1 + lw + lw * slots)].reshape(num_nodes, -1)
    got2 = counts[num_nodes * (1 + lw + lw * slots) :].reshape(lw, 1 + slots)
    return {
        "recv1_rows": [int(n) for n in got1[:, 0]],
        "fwd_rows": [int(n) for n in got1[:, 1 : 1 + lw].sum(axis=0)],
        "recv2_rows": [int(n) for n in got2[:, 0]],
        "slot_counts": got2[:, 1:].sum(axis=0),
    }


def dispatch(
    comm: Comm,
    plan: HierPlan,
    packed: torch.Tensor,
    payload_bytes: int,
    cached: DispatchResult | None = None,
) -> DispatchResult:
    """Two-stage dispatch of packed rows; `comm` is the world communicator (unused in the
    transfers, which run on plan.inter and plan.intra). `cached` as in flat.dispatch."""
    del comm
    counts, send1 = counts_and_first_hop(
        cached, lambda: _exchange_all_counts(plan), packed, plan.send_idx
    )
    n = _split_counts(plan, counts)
    device, row_bytes = packed.device, int(packed.shape[1])
    recv1 = torch.empty((sum(n["recv1_rows"]), row_bytes), dtype=torch.uint8, device=device)
    alltoallv_rows(plan.inter, recv1, send1, plan.send_rows, n["recv1_rows"])
    total = sum(n["fwd_rows"])
    fwd_row, fwd_local = _forward_order(recv1, plan, payload_bytes, total)
    recv2 = torch.empty((sum(n["recv2_rows"]), row_bytes), dtype=torch.uint8, device=device)
    send2 = gather_rows(recv1, fwd_row)
    alltoallv_rows(plan.intra, recv2, send2, n["fwd_rows"], n["recv2_rows"])
    fwd_gather = torch.full((int(recv1.shape[0]), plan.local_world), total, device=device)
    fwd_gather[fwd_row, fwd_local] = torch.arange(total, device=device)
    handle = HierHandle(
        recv1_rows=n["recv1_rows"],
        fwd_rows=n["fwd_rows"],
        recv2_rows=n["recv2_rows"],
        fwd_gather_idx=fwd_gather,
        counts=counts,
    )
    return grouped(recv2, plan, payload_bytes, n["slot_counts"], handle)


def combine(
    comm: Comm, plan: HierPlan, result: DispatchResult, rows_out: torch.Tensor, codec: Codec
) -> torch.Tensor:
    """[num_tokens, hidden] sums (dtype as in flat.combine); `rows_out` as there."""
    del comm
    hidden = int(rows_out.shape[1])
    handle: HierHandle = result.handle
    partial = reverse_reduce(
        plan.intra,
        codec.encode(rows_out),
        send_rows=handle.recv2_rows,
        recv_rows=handle.fwd_rows,
        gather_idx=handle.fwd_gather_idx,
        codec=codec,
        hidden=hidden,
    )
    return reverse_reduce(
        plan.inter,
        codec.encode(partial),
        send_rows=handle.recv1_rows,
        recv_rows=plan.send_rows,
        gather_idx=plan.gather_idx,
        codec=codec,
        hidden=hidden,
    )
