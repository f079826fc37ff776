"""Which node each rank runs on: the one place that turns a launch into a rank -> node map.

Launchers place ranks in blocks (ranks 0..k-1 on the first node), cyclically (`srun
--distribution=cyclic`, `mpirun --map-by node`) or arbitrarily (a rankfile, a hostfile),
so nothing here assumes `node = rank // ranks_per_node`. A `NodeMap` is built from one key
per rank (what the launcher says identifies the rank's node: Slurm's node, hydra's host,
else the hostname) with `from_keys`; `virtual` splits each node into nodes of K ranks
(`--gpus-per-node K`); `block` is the map of ranks placed in blocks. Nodes are numbered in
order of their lowest rank and ranks within a node in rank order, so every rank derives the
same map from the same keys. Pure: no environment, no processes.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Hashable, Sequence


@dataclasses.dataclass(frozen=True, kw_only=True)
class NodeMap:
    """Placement of `world` ranks on nodes of equal size (rank -> node, local rank)."""

    node: tuple[int, ...]
    """Node index of each rank; nodes are numbered in order of their lowest rank."""
    virtual: bool = False
    """True when the nodes are `--gpus-per-node` slices of hosts rather than hosts."""

    def __post_init__(self) -> None:
        if not self.node:
            raise ValueError("a node map needs at least one rank")
        sizes: list[int] = []
        for rank, node in enumerate(self.node):
            if not 0 <= node <= len(sizes):
                raise ValueError(
                    f"rank {rank} on node {node}: number nodes 0, 1, ... by their lowest rank"
                )
            if node == len(sizes):
                sizes.append(0)
            sizes[node] += 1
        if len(set(sizes)) > 1:
            raise ValueError(
                f"nodes hold different numbers of ranks ({_sizes_text(sizes)}); "
                "launch the same number of ranks on every node"
            )

    @property
    def world(self) -> int:
        return len(self.node)

    @property
    def num_nodes(self) -> int:
        return max(self.node) + 1

    @property
    def local_world(self) -> int:
        """Ranks per node."""
        return self.world // self.num_nodes

    @functools.cached_property
    def local_rank(self) -> tuple[int, ...]:
        """Index of each rank among its node's ranks, in rank order."""
        seen = [0] * self.num_nodes
        out = []
        for node in self.node:
            out.append(seen[node])
            seen[node] += 1
        return tuple(out)

    def ranks_on(self, node: int) -> tuple[int, ...]:
        """Ranks of `node`, in local-rank order."""
        return tuple(r for r, n in enumerate(self.node) if n == node)

    def rank_at(self, node: int, local_rank: int) -> int:
        """The rank with `local_rank` on `node`."""
        return self.ranks_on(node)[local_rank]

    @property
    def kind(self) -> str:
        """block, cyclic (round-robin over nodes), or other."""
        if self.node == block(self.world, self.local_world).node:
            return "block"
        if self.node == tuple(r % self.num_nodes for r in range(self.world)):
            return "cyclic"
        return "other"

    def records(self) -> list[dict[str, int]]:
        """[{rank, node, local_rank}] for the results header."""
        return [
            {"rank": r, "node": n, "local_rank": lr}
            for r, (n, lr) in enumerate(zip(self.node, self.local_rank, strict=True))
        ]


def _sizes_text(sizes: list[int]) -> str:
    return ", ".join(f"node {n}: {s}" for n, s in enumerate(sizes))


def from_keys(keys: Sequence[Hashable]) -> NodeMap:
    """Ranks with equal keys share a node (keys[r] identifies rank r's node)."""
    index: dict[Hashable, int] = {}
    return NodeMap(node=tuple(index.setdefault(k, len(index)) for k in keys))


def block(world: int, ranks_per_node: int) -> NodeMap:
    """Ranks placed in blocks: ranks 0..K-1 on node 0, K..2K-1 on node 1, ..."""
    if ranks_per_node < 1 or world < 1 or world % ranks_per_node:
        raise ValueError(
            f"{world} ranks cannot form nodes of {ranks_per_node}; "
            "pick --gpus-per-node that divides the world size"
        )
    return NodeMap(node=tuple(r // ranks_per_node for r in range(world)))


def virtual(hosts: NodeMap, ranks_per_node: int) -> NodeMap:
    """Split every node of `hosts` into virtual nodes of `ranks_per_node` ranks.

    A host's ranks (in rank order) fill its virtual nodes one after another, so one host
    running ranks 0..N-1 becomes `block(N, ranks_per_node)`. ValueError when a host's ranks
    do not divide evenly (a virtual node would span hosts).
    """
    if ranks_per_node < 1 or hosts.local_world % ranks_per_node:
        raise ValueError(
            f"--gpus-per-node {ranks_per_node} does not divide the {hosts.local_world} ranks "
            "of each host (a virtual node cannot span hosts); choose a divisor"
        )
    keys = [(n, lr // ranks_per_node) for n, lr in zip(hosts.node, hosts.local_rank, strict=True)]
    return dataclasses.replace(from_keys(keys), virtual=True)
