"""Pieces both dispatch algorithms share: row all-to-alls, the expert-major grouping of
received rows, the gather-sum that undoes a send order, and the dispatch result.

All arrays are torch tensors on the communicator's device; the Comm sees flat uint8 views
with counts in bytes, so every backend (gloo, NCCL, MPI) moves the rows unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import torch

from collectives.backends.base import Comm
from collectives.moe import kernels
from collectives.moe.payload import Codec, meta_weights, unpack_meta


def all_to_all(
    comm: Comm,
    out: torch.Tensor,
    inp: torch.Tensor,
    send_counts: Sequence[int] | None = None,
    recv_counts: Sequence[int] | None = None,
) -> None:
    """comm.all_to_all, ordered with the caller's CUDA stream both ways.

    A communicator may issue its collectives on its own stream (torch-nccl does, and each
    sub-communicator has its own); that stream must wait for the kernels that filled
    `inp`, and the caller's stream for the transfer before it reads `out`.
    """
    stream = getattr(comm, "stream", None) or getattr(comm, "_stream", None)
    if stream is None or not inp.is_cuda:
        comm.all_to_all(out, inp, send_counts, recv_counts)
        return
    caller = torch.cuda.current_stream(inp.device)
    stream.wait_stream(caller)
    comm.all_to_all(out, inp, send_counts, recv_counts)
    caller.wait_stream(stream)


def alltoallv_rows(
    comm: Comm,
    out: torch.Tensor,
    inp: torch.Tensor,
    send_rows: Sequence[int],
    recv_rows: Sequence[int],
) -> None:
    """All-to-all of [rows, row_bytes] uint8 buffers with per-peer row counts."""
    row_bytes = int(inp.shape[1]) if inp.dim() == 2 else int(out.shape[1])
    all_to_all(
        comm,
        out.reshape(-1),
        inp.reshape(-1),
        [int(n) * row_bytes for n in send_rows],
        [int(n) * row_bytes for n in recv_rows],
    )


def index_tensor(array: np.ndarray, device: Any) -> torch.Tensor:
    """An int64 index tensor on `device` from a host array (plans are built once)."""
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64)).to(device)


def counts_and_first_hop(
    cached: DispatchResult | None,
    exchange: Callable[[], torch.Tensor],
    packed: torch.Tensor,
    send_idx: torch.Tensor | None,
) -> tuple[np.ndarray, torch.Tensor]:
    """(host int64 counts, first-hop send rows) of a normal-mode dispatch.

    The counts are `cached`'s when given, else `exchange()`'s; the gather of the send rows
    (none when `send_idx` is None: `packed` is already in send order) is queued before the
    host waits for the counts (the dispatch's one host sync).
    """

    def first_hop() -> torch.Tensor:
        return packed if send_idx is None else gather_rows(packed, send_idx)

    if cached is not None:
        return cached.handle.counts, first_hop()
    got = exchange()
    send = first_hop()
    return got.cpu().numpy().astype(np.int64), send


def exchange_counts(comm: Comm, message: torch.Tensor) -> torch.Tensor:
    """Equal-block all-to-all of a [peers, width] counts message, sent as int32 (a type
    every backend moves)."""
    message = message.to(torch.int32).contiguous()
    out = torch.zeros_like(message)  # zeros: a dry run's no-op transfer reads as no traffic
    all_to_all(comm, out.reshape(-1), message.reshape(-1))
    return out


@dataclasses.dataclass
class ExpertOrder:
    """Token-expert pairs of received rows, grouped by local expert slot."""

    pair_row: torch.Tensor
    """[num_pairs] received row of each pair, slot-major, rows ascending within a slot."""
    pair_weight: torch.Tensor
    """[num_pairs] float32 routing weight (0 for padding pairs in low-latency mode)."""
    slot_counts: Any
    """Pairs per local slot: numpy [slots] (normal mode) or a device tensor (low-latency)."""


def expert_order(
    rows: torch.Tensor,
    *,
    payload_bytes: int,
    top_k: int,
    rank: int,
    slots_per_rank: int,
    slot_counts: np.ndarray | None,
) -> ExpertOrder:
    """Group received rows by this rank's slots (stable sort; no host sync).

    `slot_counts` (host, from the counts exchange) trims the result to the real pairs;
    None (low-latency mode) keeps every (row, k) position, zeroes the weights of those
    not bound for this rank and counts the pairs per slot on the device.
    """
    meta = unpack_meta(rows, payload_bytes, top_k)
    slots = meta[:, 2 : 2 + top_k].long()
    mine = (slots >= 0) & (torch.div(slots, slots_per_rank, rounding_mode="floor") == rank)
    key = torch.where(mine, slots % slots_per_rank, slots_per_rank).reshape(-1)
    # a 2-byte sort key: 2 radix passes instead of 8
    sort_key = key.to(torch.int16) if slots_per_rank < 2**15 else key
    _, order = torch.sort(sort_key, stable=True)
    weights = meta_weights(meta, top_k).reshape(-1)
    counts: Any = slot_counts
    if slot_counts is not None:
        order = order[: int(slot_counts.sum())]
        pair_weight = weights.index_select(0, order)
    else:
        pair_weight = torch.where(mine.reshape(-1), weights, 0.0).index_select(0, order)
        # scatter_add into a fixed size: bincount would read the max back to the host
        counts = torch.zeros(slots_per_rank + 1, dtype=torch.long, device=key.device)
        counts = counts.scatter_add_(0, key, torch.ones_like(key))[:slots_per_rank]
    pair_row = torch.div(order, top_k, rounding_mode="floor")
    return ExpertOrder(pair_row=pair_row, pair_weight=pair_weight, slot_counts=counts)


class SlotOwner(Protocol):
    """What grouping received rows needs to know of a plan (flat or hierarchical)."""

    rank: int
    top_k: int
    slots_per_rank: int


def grouped(
    rows: torch.Tensor,
    plan: SlotOwner,
    payload_bytes: int,
    slot_counts: np.ndarray | None,
    handle: Any,
) -> DispatchResult:
    """The dispatch result of received `rows`: grouped by `plan.rank`'s slots
    (expert_order), with the algorithm's `handle` for combine."""
    order = expert_order(
        rows,
        payload_bytes=payload_bytes,
        top_k=plan.top_k,
        rank=plan.rank,
        slots_per_rank=plan.slots_per_rank,
        slot_counts=slot_counts,
    )
    return DispatchResult(
        rows=rows, payload_bytes=payload_bytes, top_k=plan.top_k, order=order, handle=handle
    )


def gather_rows(rows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """rows[index] for a 2-D tensor, copied as the widest integer words that tile a row
    (a uint8 or bf16 row gathered byte by byte would be several times slower on GPUs)."""
    row_bytes = rows.shape[1] * rows.element_size()
    if not rows.is_contiguous() or rows.shape[0] == 0:
        return rows.index_select(0, index)
    for word in (torch.int64, torch.int32, torch.int16):
        size = torch.tensor([], dtype=word).element_size()
        if row_bytes % size == 0 and rows.element_size() <= size:
            wide = rows.view(word).index_select(0, index)
            return wide.view(rows.dtype).reshape(index.shape[0], rows.shape[1])
    return rows.index_select(0, index)


def gather_sum(values: torch.Tensor, gather_idx: torch.Tensor) -> torch.Tensor:
    """[num_out, hidden] in values' dtype: row i sums values[gather_idx[i, :]] in one pass
    (no [num_out, fanout, hidden] intermediate), accumulating bf16 in fp32 and rounding
    once, as DeepEP's combine does. On GPUs a Triton kernel (moe/kernels.py), elsewhere
    embedding_bag.

    `values` must end with a zero row; padding entries of gather_idx point at it.
    """
    if gather_idx.shape[1] == 1 and not kernels.use_kernel(values):
        return gather_rows(values, gather_idx[:, 0])
    return kernels.gather_sum(values, gather_idx)


def zero_padded(num_rows: int, row_bytes: int, device: torch.device) -> torch.Tensor:
    """[num_rows + 1, row_bytes] uint8 receive buffer whose last row is zero."""
    buf = torch.empty((num_rows + 1, row_bytes), dtype=torch.uint8, device=device)
    buf[num_rows].zero_()
    return buf


def reverse_reduce(
    comm: Comm,
    wire: torch.Tensor,
    *,
    send_rows: Sequence[int],
    recv_rows: Sequence[int],
    gather_idx: torch.Tensor,
    codec: Codec,
    hidden: int,
) -> torch.Tensor:
    """Send encoded rows back along a dispatch hop and sum the copies of each token.

    Returns [gather_idx.shape[0], hidden] in the decoded dtype.
    """
    num_back = int(sum(recv_rows))
    back = zero_padded(num_back, int(wire.shape[1]), wire.device)
    alltoallv_rows(comm, back[:num_back], wire, send_rows, recv_rows)
    values = codec.decode(back, num_back + 1, hidden)
    return gather_sum(values, gather_idx)


@dataclasses.dataclass
class DispatchResult:
    """What dispatch hands to the experts: the received rows grouped by local expert.

    Batches are an expert-major index into `rows` (the layout a grouped GEMM reads), not
    copies; `batch(slot)` materializes one for checks.
    """

    rows: torch.Tensor
    """[num_recv, payload + meta] uint8 received rows."""
    payload_bytes: int
    """Leading bytes of each row that hold the encoded token."""
    top_k: int
    """Top-k of the routing (sizes the metadata)."""
    order: ExpertOrder
    """Pairs grouped by local slot."""
    handle: Any
    """Algorithm state that combine needs (send orders, counts)."""

    @property
    def num_recv(self) -> int:
        return int(self.rows.shape[0])

    def slot_counts(self) -> np.ndarray:
        """Pairs per local slot (host; syncs in low-latency mode)."""
        counts = self.order.slot_counts
        return counts.cpu().numpy() if isinstance(counts, torch.Tensor) else np.asarray(counts)

    def batch(self, slot: int) -> dict[str, torch.Tensor]:
        """Slot `slot`'s pairs: payload rows, source rank, source token, weight."""
        counts = self.slot_counts()
        start = int(counts[:slot].sum())
        rows = self.order.pair_row[start : start + int(counts[slot])]
        meta = unpack_meta(self.rows, self.payload_bytes, self.top_k).index_select(0, rows)
        return {
            "payload": gather_rows(self.rows, rows)[:, : self.payload_bytes],
            "src_rank": meta[:, 0].long(),
            "src_token": meta[:, 1].long(),
            "weight": self.order.pair_weight[start : start + int(counts[slot])],
        }


def weighted_rows(expert_out: torch.Tensor, result: DispatchResult) -> torch.Tensor:
    """[num_recv, hidden] float32: each received row's weighted sum of its local experts'
    outputs (`expert_out` is [num_pairs, hidden], slot-major like result.order)."""
    order = result.order
    num_pairs = order.pair_row.shape[0]
    out = torch.zeros(
        (result.num_recv, expert_out.shape[1]), dtype=torch.float32, device=expert_out.device
    )
    scaled = expert_out[:num_pairs].float() * order.pair_weight[:, None]
    out.index_add_(0, order.pair_row, scaled)
    return out
