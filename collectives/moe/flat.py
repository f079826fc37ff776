"""Flat dispatch/combine: one alltoallv straight to the expert ranks.

A token goes once to each destination rank (not once per expert there); the receiving
rank groups rows by its local experts. Normal mode works like DeepEP's normal kernels: a
small equal-block counts all-to-all (rows per peer, pairs per expert slot), one host read
of those counts to size the buffers, then the payload alltoallv. Low-latency mode sends a
fixed [world, num_tokens] block of rows per rank with no counts exchange and no host sync,
padding unused positions, as DeepEP's low-latency kernels size their buffers for the worst
case. Combine reverses the rows along the dispatch order and sums each token's copies in
fp32; it needs no counts exchange (the dispatch handle holds them).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from collectives.backends.base import Comm
from collectives.moe.exchange import (
    DispatchResult,
    all_to_all,
    alltoallv_rows,
    counts_and_first_hop,
    exchange_counts,
    gather_rows,
    gather_sum,
    grouped,
    index_tensor,
    reverse_reduce,
    zero_padded,
)
from collectives.moe.layout import RankLayout, gather_plan
from collectives.moe.payload import Codec


@dataclasses.dataclass
class FlatPlan:
    """Send orders of one rank for the flat algorithm (built outside the timed region)."""

    rank: int
    world: int
    slots_per_rank: int
    top_k: int
    num_tokens: int
    send_idx: torch.Tensor
    """[num_send] packed-row index of each sent row, grouped by destination rank."""
    send_rows: list[int]
    """Rows sent to each rank."""
    gather_idx: torch.Tensor
    """[num_tokens, fanout] positions of each token's copies in the send order."""
    counts_message: torch.Tensor
    """[world, 1 + slots] int64: rows to each rank, pairs to each of its slots."""
    ll_send_idx: torch.Tensor
    """[world * num_tokens] low-latency send order, padded with the pad row."""
    ll_gather_idx: torch.Tensor
    """[num_tokens, fanout] positions in the padded low-latency order."""


def build_plan(layout: RankLayout, *, rank: int, top_k: int, device: Any) -> FlatPlan:
    """Precompute the send orders and gather indices from this rank's layout."""
    geo = layout.geometry
    gather = gather_plan(layout.is_token_in_rank)
    num_tokens = layout.num_tokens
    num_rows = int(gather.send_idx.size)
    dst = np.repeat(np.arange(geo.world), gather.counts)
    position = np.arange(num_rows) - np.repeat(
        np.cumsum(gather.counts) - gather.counts, gather.counts
    )
    ll_send = np.full((geo.world, num_tokens), num_tokens, dtype=np.int64)
    ll_send[dst, position] = gather.send_idx
    ll_position = np.append(dst * num_tokens + position, geo.world * num_tokens)

    return FlatPlan(
        rank=rank,
        world=geo.world,
        slots_per_rank=geo.slots_per_rank,
        top_k=top_k,
        num_tokens=num_tokens,
        send_idx=index_tensor(gather.send_idx, device),
        send_rows=[int(n) for n in gather.counts],
        gather_idx=index_tensor(gather.gather_idx, device),
        counts_message=index_tensor(layout.flat_counts_message(), device),
        ll_send_idx=index_tensor(ll_send.reshape(-1), device),
        ll_gather_idx=index_tensor(ll_position[gather.gather_idx], device),
    )


@dataclasses.dataclass
class FlatHandle:
    """What combine needs from a flat dispatch."""

    recv_rows: list[int] | None
    """Rows received from each rank (None: low-latency, fixed blocks)."""
    counts: np.ndarray | None = None
    """The counts exchange's result, [world, 1 + slots] (reused by a cached dispatch)."""


def dispatch(
    comm: Comm,
    plan: FlatPlan,
    packed: torch.Tensor,
    payload_bytes: int,
    cached: DispatchResult | None = None,
) -> DispatchResult:
    """Normal-mode flat dispatch of rows packed in send order ([num_send, row_bytes] uint8,
    `plan.send_idx` applied by MoEEngine.pack).

    `cached`: an earlier dispatch of the same routing whose counts are reused, skipping
    the counts exchange (DeepEP's cached dispatch with a handle).
    """
    counts, send = counts_and_first_hop(
        cached, lambda: exchange_counts(comm, plan.counts_message), packed, None
    )
    recv_rows = [int(n) for n in counts[:, 0]]
    recv = torch.empty((sum(recv_rows), packed.shape[1]), dtype=torch.uint8, device=packed.device)
    alltoallv_rows(comm, recv, send, plan.send_rows, recv_rows)
    handle = FlatHandle(recv_rows=recv_rows, counts=counts)
    return grouped(recv, plan, payload_bytes, counts[:, 1:].sum(axis=0), handle)


def dispatch_low_latency(
    comm: Comm, plan: FlatPlan, packed: torch.Tensor, payload_bytes: int
) -> DispatchResult:
    """Low-latency flat dispatch: fixed blocks, no counts exchange, no host sync."""
    send = gather_rows(packed, plan.ll_send_idx)
    recv = torch.empty_like(send)
    all_to_all(comm, recv.reshape(-1), send.reshape(-1))
    return grouped(recv, plan, payload_bytes, None, FlatHandle(recv_rows=None))


def combine(
    comm: Comm, plan: FlatPlan, result: DispatchResult, rows_out: torch.Tensor, codec: Codec
) -> torch.Tensor:
    """[num_tokens, hidden] in the combine codec's decoded dtype: each token's per-rank
    partial outputs summed (fp32 accumulation).

    `rows_out` is [num_recv, hidden]: each received row's weighted sum over this rank's
    experts (see exchange.weighted_rows).
    """
    hidden = int(rows_out.shape[1])
    wire = codec.encode(rows_out)
    handle: FlatHandle = result.handle
    if handle.recv_rows is None:
        back = zero_padded(int(wire.shape[0]), int(wire.shape[1]), wire.device)
        all_to_all(comm, back[:-1].reshape(-1), wire.reshape(-1))
        values = codec.decode(back, int(back.shape[0]), hidden)
        return gather_sum(values, plan.ll_gather_idx)
    return reverse_reduce(
        comm,
        wire,
        send_rows=handle.recv_rows,
        recv_rows=plan.send_rows,
        gather_idx=plan.gather_idx,
        codec=codec,
        hidden=hidden,
    )
