"""Token layout (pure numpy): who sends which token where, and the byte matrices.

`RankLayout` is what one rank knows from its own routing: per-pair destination rank and
node, `is_token_in_rank`, tokens per rank / node / expert slot, and the send orders and
gather indices the algorithms precompute outside the timed region. `TrafficCounts` holds
the [src, dst] token counts of all ranks (from every rank's routing, which is seeded and
so known everywhere); `hop_rows` turns them into the rows each algorithm actually moves.
The byte conventions built on them are in `collectives.moe.conventions`.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from collectives import nodemap
from collectives.nodemap import NodeMap


@dataclasses.dataclass(frozen=True, kw_only=True)
class Geometry:
    """Ranks, nodes and expert slots of one job."""

    world: int
    """Number of ranks."""
    local_world: int
    """Ranks per (possibly virtual) node."""
    slots_per_rank: int
    """Expert slots per rank (experts per rank under contiguous placement)."""
    rank_node: tuple[int, ...] = ()
    """Node of each rank as launched (collectives.nodemap numbering); empty: ranks in
    blocks of `local_world`."""

    def __post_init__(self) -> None:
        if self.world < 1 or self.local_world < 1 or self.world % self.local_world:
            raise ValueError(
                f"{self.world} ranks cannot form nodes of {self.local_world}; "
                "pick --gpus-per-node that divides the world size"
            )
        if self.rank_node and (
            len(self.rank_node) != self.world or self.nodes.local_world != self.local_world
        ):
            raise ValueError(
                f"rank -> node map of {len(self.rank_node)} ranks in nodes of "
                f"{self.nodes.local_world} does not fit {self.world} ranks in nodes of "
                f"{self.local_world}"
            )

    @functools.cached_property
    def nodes(self) -> NodeMap:
        if self.rank_node:
            return NodeMap(node=self.rank_node)
        return nodemap.block(self.world, self.local_world)

    @property
    def num_nodes(self) -> int:
        return self.world // self.local_world

    @functools.cached_property
    def node_array(self) -> np.ndarray:
        """[world] node of each rank."""
        return np.asarray(self.nodes.node, dtype=np.int64)

    @functools.cached_property
    def local_array(self) -> np.ndarray:
        """[world] index of each rank among its node's ranks."""
        return np.asarray(self.nodes.local_rank, dtype=np.int64)

    @functools.cached_property
    def rank_grid(self) -> np.ndarray:
        """[num_nodes, local_world] rank at (node, local rank)."""
        grid = np.empty((self.num_nodes, self.local_world), dtype=np.int64)
        grid[self.node_array, self.local_array] = np.arange(self.world)
        return grid

    def node_of(self, rank: int) -> int:
        """Node of `rank`."""
        return int(self.node_array[rank])

    def nodes_of(self, ranks: np.ndarray) -> np.ndarray:
        """Node of each rank in `ranks` (-1 stays -1: an unused pair)."""
        return np.where(ranks >= 0, self.node_array[np.maximum(ranks, 0)], -1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Gather:
    """A send order over destinations plus the index that undoes it (for combine)."""

    send_idx: np.ndarray
    """[num_rows] token index of each sent row, grouped by destination, tokens ascending."""
    counts: np.ndarray
    """[num_destinations] rows sent to each destination."""
    gather_idx: np.ndarray
    """[num_tokens, fanout] row positions holding each token's copies; padding points at
    row `num_rows` (a zero row), so a gather-sum over axis 1 reduces the copies."""


def gather_plan(mask: np.ndarray) -> Gather:
    """Send order for a [num_tokens, num_destinations] membership mask."""
    num_tokens = mask.shape[0]
    dst, token = np.nonzero(mask.T)
    num_rows = token.size
    counts = np.bincount(dst, minlength=mask.shape[1]).astype(np.int64)
    fanout = max(1, int(mask.sum(axis=1).max(initial=0)))
    gather_idx = np.full((num_tokens, fanout), num_rows, dtype=np.int64)
    by_token = np.argsort(token, kind="stable")
    sorted_token = token[by_token]
    column = np.arange(num_rows) - np.searchsorted(sorted_token, sorted_token, side="left")
    gather_idx[sorted_token, column] = by_token
    return Gather(send_idx=token.astype(np.int64), counts=counts, gather_idx=gather_idx)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RankLayout:
    """Layout of one rank's tokens (`topk_slot` from `placement.assign_slots`)."""

    geometry: Geometry
    """Ranks, nodes, slots."""
    topk_slot: np.ndarray
    """[num_tokens, top_k] global slot per pair (-1: unused)."""

    @property
    def num_tokens(self) -> int:
        return int(self.topk_slot.shape[0])

    @property
    def dst_rank(self) -> np.ndarray:
        """[num_tokens, top_k] destination rank of each pair (-1: unused)."""
        slot = self.topk_slot
        return np.where(slot >= 0, slot // self.geometry.slots_per_rank, -1)

    @property
    def is_token_in_rank(self) -> np.ndarray:
        """[num_tokens, world] bool: the token goes to that rank."""
        return _membership(self.dst_rank, self.geometry.world)

    @property
    def is_token_in_node(self) -> np.ndarray:
        """[num_tokens, num_nodes] bool: the token goes to some rank of that node."""
        return _membership(self.geometry.nodes_of(self.dst_rank), self.geometry.num_nodes)

    @property
    def num_tokens_per_rank(self) -> np.ndarray:
        counts: np.ndarray = self.is_token_in_rank.sum(axis=0).astype(np.int64)
        return counts

    @property
    def num_tokens_per_node(self) -> np.ndarray:
        counts: np.ndarray = self.is_token_in_node.sum(axis=0).astype(np.int64)
        return counts

    @property
    def num_pairs_per_slot(self) -> np.ndarray:
        """[world * slots_per_rank] token-expert pairs sent to each slot."""
        geo = self.geometry
        valid = self.topk_slot[self.topk_slot >= 0]
        return np.bincount(valid, minlength=geo.world * geo.slots_per_rank).astype(np.int64)

    def num_tokens_per_expert(self, slot_expert: np.ndarray, num_experts: int) -> np.ndarray:
        """[num_experts] pairs routed to each logical expert (all replicas together)."""
        experts = slot_expert[self.topk_slot[self.topk_slot >= 0]]
        return np.bincount(experts, minlength=num_experts).astype(np.int64)

    def flat_counts_message(self) -> np.ndarray:
        """[world, 1 + slots]: tokens to each rank, then pairs to each of its slots."""
        geo = self.geometry
        pairs = self.num_pairs_per_slot.reshape(geo.world, geo.slots_per_rank)
        return np.concatenate([self.num_tokens_per_rank[:, None], pairs], axis=1)

    def hier_counts_message(self) -> np.ndarray:
        """[nodes, 1 + L + L*slots]: tokens to each node, tokens to each of its ranks, pairs
        to each of its slots (sent to the same-local-index rank there)."""
        geo = self.geometry
        per_rank = self.num_tokens_per_rank[geo.rank_grid]
        pairs = self.num_pairs_per_slot.reshape(geo.world, -1)[geo.rank_grid]
        pairs = pairs.reshape(geo.num_nodes, -1)
        return np.concatenate([self.num_tokens_per_node[:, None], per_rank, pairs], axis=1)


def _membership(dst: np.ndarray, num_destinations: int) -> np.ndarray:
    mask = np.zeros((dst.shape[0], num_destinations + 1), dtype=bool)
    np.put_along_axis(mask, np.where(dst >= 0, dst, num_destinations), True, axis=1)
    return mask[:, :num_destinations]


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrafficCounts:
    """Token counts of the whole job, from every rank's layout."""

    geometry: Geometry
    """Ranks, nodes, slots."""
    tokens: np.ndarray
    """[src, dst] tokens (one per token and destination rank)."""
    node_tokens: np.ndarray
    """[src, node] tokens (one per token and destination node, local node included)."""
    pairs: np.ndarray
    """[src, dst] token-expert pairs (one per token and expert)."""
    num_tokens: np.ndarray
    """[src] tokens each rank routes."""


def traffic_counts(layouts: list[RankLayout]) -> TrafficCounts:
    """Stack the per-rank counts of all ranks (layouts[r] is rank r's)."""
    geo = layouts[0].geometry
    if len(layouts) != geo.world:
        raise ValueError(f"need one layout per rank ({geo.world}), got {len(layouts)}")
    pairs = np.stack([lay.num_pairs_per_slot.reshape(geo.world, -1).sum(axis=1) for lay in layouts])
    return TrafficCounts(
        geometry=geo,
        tokens=np.stack([lay.num_tokens_per_rank for lay in layouts]),
        node_tokens=np.stack([lay.num_tokens_per_node for lay in layouts]),
        pairs=pairs,
        num_tokens=np.array([lay.num_tokens for lay in layouts], dtype=np.int64),
    )


ALGOS = ("flat", "hierarchical")


def hop_rows(counts: TrafficCounts, algo: str) -> np.ndarray:
    """[src, dst] token rows each dispatch hop moves, summed over the algorithm's stages.

    flat: tokens[src, dst]. hierarchical: stage 1 sends one row per token and destination
    node to the same-local-index rank there (the local node's rows go to the sender
    itself); stage 2 forwards each row inside the node once per destination rank.
    Combine moves the transpose.
    """
    geo = counts.geometry
    if algo == "flat":
        return counts.tokens.copy()
    if algo != "hierarchical":
        raise ValueError(f"unknown --algo {algo!r}; choose one of: {', '.join(ALGOS)}")
    local, node = geo.local_array, geo.node_array
    rows = np.zeros((geo.world, geo.world), dtype=np.int64)
    src = np.arange(geo.world)
    for dst_node in range(geo.num_nodes):
        rows[src, geo.rank_grid[dst_node, local]] += counts.node_tokens[:, dst_node]
    for fwd in range(geo.world):
        same_local = local == local[fwd]
        peers = np.flatnonzero(node == node[fwd])
        rows[fwd, peers] += counts.tokens[same_local][:, peers].sum(axis=0)
    return rows
