"""Where experts live: expert -> rank placement, replicas, and per-pair replica choice.

Each rank hosts up to `slots_per_rank` experts; a *slot* is a (rank, local index) pair with
global id `rank * slots_per_rank + local`. Contiguous placement (the default, as in DeepEP)
puts experts [r*E/W, (r+1)*E/W) on rank r, so slot id == expert id. A placement file may
list any experts per rank, replicas included; a token-expert pair then goes to one replica,
chosen round-robin over the expert's occurrences on the sending rank (offset by the rank),
which is deterministic and balances replicas to within one pair per sending rank.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from collectives.moe.routing import read_id_lines


@dataclasses.dataclass(frozen=True, kw_only=True)
class Placement:
    """Experts on ranks."""

    rank_experts: tuple[tuple[int, ...], ...]
    """rank_experts[r]: the experts rank r hosts, in local slot order."""
    num_experts: int
    """Number of distinct (logical) experts."""

    def __post_init__(self) -> None:
        seen: set[int] = set()
        for rank, experts in enumerate(self.rank_experts):
            if len(set(experts)) != len(experts):
                raise ValueError(f"placement lists an expert twice on rank {rank}: {experts}")
            bad = [e for e in experts if not 0 <= e < self.num_experts]
            if bad:
                raise ValueError(
                    f"placement puts expert {bad[0]} on rank {rank}; ids must be in "
                    f"[0, {self.num_experts})"
                )
            seen.update(experts)
        missing = sorted(set(range(self.num_experts)) - seen)
        if missing:
            raise ValueError(f"placement hosts no replica of expert {missing[0]} (and maybe more)")

    @property
    def world(self) -> int:
        return len(self.rank_experts)

    @property
    def slots_per_rank(self) -> int:
        return max(len(experts) for experts in self.rank_experts)

    def slot_expert(self) -> np.ndarray:
        """[world * slots_per_rank] expert id of each slot (-1: empty slot)."""
        table = np.full((self.world, self.slots_per_rank), -1, dtype=np.int64)
        for rank, experts in enumerate(self.rank_experts):
            table[rank, : len(experts)] = experts
        return table.reshape(-1)

    def replicas(self) -> list[np.ndarray]:
        """replicas()[e]: slot ids hosting expert e, ascending."""
        slot_expert = self.slot_expert()
        order = np.argsort(slot_expert, kind="stable")
        bounds = np.searchsorted(slot_expert[order], np.arange(self.num_experts + 1))
        return [order[bounds[e] : bounds[e + 1]] for e in range(self.num_experts)]

    def expert_node(self, rank_node: np.ndarray) -> np.ndarray:
        """[num_experts] node of each expert's first replica (groups for node-limited top-k);
        `rank_node[r]` is the node of rank r as launched."""
        first = np.array([slots[0] for slots in self.replicas()], dtype=np.int64)
        return np.asarray(rank_node, dtype=np.int64)[first // self.slots_per_rank]


def contiguous(num_experts: int, world: int) -> Placement:
    """Experts [r*E/W, (r+1)*E/W) on rank r; needs E divisible by the world size."""
    if world < 1:
        raise ValueError(f"world size {world} must be >= 1")
    if num_experts % world:
        raise ValueError(
            f"--num-experts {num_experts} is not divisible by {world} ranks; pick a multiple "
            "of the world size or give a --placement file"
        )
    per_rank = num_experts // world
    rows = tuple(tuple(range(r * per_rank, (r + 1) * per_rank)) for r in range(world))
    return Placement(rank_experts=rows, num_experts=num_experts)


def load_placement(path: str | pathlib.Path, *, num_experts: int, world: int) -> Placement:
    """Read a placement file: one line per rank (in rank order) listing its expert ids,
    separated by commas or whitespace; `#` starts a comment; blank lines are skipped."""
    path = pathlib.Path(path)
    rows = [tuple(ids) for ids in read_id_lines(path)]
    if len(rows) != world:
        raise ValueError(f"{path}: placement has {len(rows)} rank lines; the job has {world} ranks")
    return Placement(rank_experts=tuple(rows), num_experts=num_experts)


def assign_slots(placement: Placement, topk_idx: np.ndarray, rank: int) -> np.ndarray:
    """[num_tokens, top_k] slot id for each token-expert pair sent by `rank` (-1 stays -1).

    With one replica per expert this is a table lookup. With several, the n-th occurrence
    (in token order) of expert e on this rank goes to replica (n + rank) mod num_replicas.
    """
    replicas = placement.replicas()
    counts = np.array([len(r) for r in replicas], dtype=np.int64)
    first = np.array([r[0] for r in replicas], dtype=np.int64)
    flat = topk_idx.reshape(-1)
    valid = flat >= 0
    slots = np.full(flat.shape, -1, dtype=np.int64)
    if np.all(counts == 1):
        slots[valid] = first[flat[valid]]
        return slots.reshape(topk_idx.shape)
    ids = flat[valid]
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.searchsorted(sorted_ids, sorted_ids, side="left")
    occurrence = np.empty_like(ids)
    occurrence[order] = np.arange(ids.size) - starts
    choice = (occurrence + rank) % counts[ids]
    table = np.full((placement.num_experts, int(counts.max())), -1, dtype=np.int64)
    for expert, slots_e in enumerate(replicas):
        table[expert, : len(slots_e)] = slots_e
    slots[valid] = table[ids, choice]
    return slots.reshape(topk_idx.shape)
