"""Rank maps: which node and GPU each rank runs on, and through it which NIC, plane and leaf.

Kinds: `block` (ranks fill a node before the next), `cyclic` (round-robin over nodes),
`plane-aligned` (block, with local index i on the GPU whose NIC is on plane i, so the ranks
with one local index share a plane), `misaligned` (block, with the GPU order rotated by the node
index: deliberately breaks plane alignment), and explicit maps parsed from text
(`rank node gpu` per line). Validation: a map is a permutation of (node, gpu) slots;
`problems` also reports a GPU->NIC order that differs between nodes.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

from topologies.cluster import Cluster

IntArray = npt.NDArray[np.int64]
KINDS = ("block", "cyclic", "plane-aligned", "misaligned")


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class RankMap:
    """Placement of `world` ranks on a cluster's GPUs."""

    name: str
    """block, cyclic, plane-aligned, misaligned, or explicit."""
    node: IntArray
    """Node index of each rank."""
    gpu: IntArray
    """Physical GPU index on its node of each rank."""

    @property
    def world(self) -> int:
        return int(self.node.size)

    @property
    def local_rank(self) -> IntArray:
        """Index of each rank among the ranks of its node, in rank order."""
        order = np.lexsort((np.arange(self.world), self.node))
        local = np.empty(self.world, dtype=np.int64)
        sorted_nodes = self.node[order]
        starts = np.searchsorted(sorted_nodes, sorted_nodes, side="left")
        local[order] = np.arange(self.world) - starts
        return local

    def nic(self, cluster: Cluster) -> IntArray:
        return np.asarray(cluster.nic_of_gpu, dtype=np.int64)[self.gpu]

    def plane(self, cluster: Cluster) -> IntArray:
        return cluster.nic_plane(self.nic(cluster))

    def leaf(self, cluster: Cluster) -> IntArray:
        if cluster.fabric == "none":
            return np.full(self.world, -1, dtype=np.int64)
        return cluster.leaf_of(self.node, self.nic(cluster))

    def rank_of(self, node: int, gpu: int) -> int:
        """Inverse lookup: the rank on (node, gpu); ValueError if none."""
        hits = np.flatnonzero((self.node == node) & (self.gpu == gpu))
        if hits.size == 0:
            raise ValueError(f"no rank on node {node} gpu {gpu}")
        return int(hits[0])

    def table(self, cluster: Cluster) -> dict[str, IntArray]:
        """Columns rank, node, local, gpu, nic, plane, leaf."""
        return {
            "rank": np.arange(self.world, dtype=np.int64),
            "node": self.node,
            "local": self.local_rank,
            "gpu": self.gpu,
            "nic": self.nic(cluster),
            "plane": self.plane(cluster),
            "leaf": self.leaf(cluster),
        }


def _check_world(cluster: Cluster, world: int) -> int:
    world = cluster.num_gpus if world <= 0 else world
    if world > cluster.num_gpus:
        raise ValueError(f"{world} ranks do not fit {cluster.num_gpus} GPUs of {cluster.name!r}")
    return world


def plane_order(cluster: Cluster) -> IntArray:
    """Local GPUs sorted by (plane, NIC, GPU): local index i goes to plane i mod num_planes."""
    gpus = np.arange(cluster.gpus_per_node, dtype=np.int64)
    nics = np.asarray(cluster.nic_of_gpu, dtype=np.int64)
    planes = cluster.nic_plane(nics)
    order = np.lexsort((gpus, nics, planes))
    # interleave planes so that local i sits on plane i mod P
    per_plane = [order[planes[order] == p] for p in range(int(planes.max()) + 1)]
    out = [g for group in zip(*per_plane, strict=False) for g in group]
    used = set(out)
    out += [int(g) for g in order if int(g) not in used]
    return np.asarray(out, dtype=np.int64)


def make_rank_map(cluster: Cluster, kind: str = "block", world: int = 0) -> RankMap:
    """A rank map of `kind` (one of KINDS) for `world` ranks (0: every GPU)."""
    world = _check_world(cluster, world)
    g = cluster.gpus_per_node
    ranks = np.arange(world, dtype=np.int64)
    if kind == "cyclic":
        num_nodes = min(cluster.num_nodes, world)
        return RankMap(name=kind, node=ranks % num_nodes, gpu=ranks // num_nodes)
    if kind not in KINDS:
        raise ValueError(f"unknown rank map {kind!r}; use one of {KINDS} or a map file")
    node, local = ranks // g, ranks % g
    if kind == "block":
        gpu = local
    elif kind == "plane-aligned":
        gpu = plane_order(cluster)[local]
    else:  # misaligned: rotate the GPU order by the node index
        gpu = (local + node) % g
    return RankMap(name=kind, node=node, gpu=gpu)


def rank_map_from_text(cluster: Cluster, text: str) -> RankMap:
    """An explicit map: one `rank node gpu` per line (commas or spaces; # comments)."""
    rows: dict[int, tuple[int, int]] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].replace(",", " ").strip()
        if not line:
            continue
        parts = line.split()
        try:
            rank, node, gpu = (int(p) for p in parts[:3])
        except ValueError:
            raise ValueError(f"rank map line {lineno}: {raw!r}; want `rank node gpu`") from None
        if len(parts) != 3 or rank in rows:
            raise ValueError(f"rank map line {lineno}: {raw!r}; want one `rank node gpu` per rank")
        rows[rank] = (node, gpu)
    if sorted(rows) != list(range(len(rows))) or not rows:
        raise ValueError(f"rank map ranks must be 0..N-1 with none missing; got {len(rows)} rows")
    arr = np.asarray([rows[r] for r in range(len(rows))], dtype=np.int64)
    rmap = RankMap(name="explicit", node=arr[:, 0], gpu=arr[:, 1])
    validate(cluster, rmap)
    return rmap


def rank_map_to_text(rmap: RankMap) -> str:
    """Text form accepted by `rank_map_from_text`."""
    lines = ["# rank node gpu"]
    lines += [
        f"{r} {n} {g}"
        for r, (n, g) in enumerate(zip(rmap.node.tolist(), rmap.gpu.tolist(), strict=True))
    ]
    return "\n".join(lines) + "\n"


def validate(cluster: Cluster, rmap: RankMap) -> None:
    """ValueError unless every rank has its own (node, gpu) slot on the cluster."""
    bad = np.flatnonzero(
        (rmap.node < 0)
        | (rmap.node >= cluster.num_nodes)
        | (rmap.gpu < 0)
        | (rmap.gpu >= cluster.gpus_per_node)
    )
    if bad.size:
        r = int(bad[0])
        raise ValueError(
            f"rank {r} on node {int(rmap.node[r])} gpu {int(rmap.gpu[r])} is outside "
            f"{cluster.name!r} ({cluster.num_nodes} nodes x {cluster.gpus_per_node} GPUs)"
        )
    slots = rmap.node * cluster.gpus_per_node + rmap.gpu
    uniq, counts = np.unique(slots, return_counts=True)
    if (counts > 1).any():
        s = int(uniq[counts > 1][0])
        raise ValueError(
            f"rank map is not a permutation: node {s // cluster.gpus_per_node} gpu "
            f"{s % cluster.gpus_per_node} holds {int(counts[counts > 1][0])} ranks"
        )


def problems(cluster: Cluster, rmap: RankMap) -> list[str]:
    """Everything wrong or unusual about a map: not a permutation, or a local-rank -> NIC
    order that differs between nodes (ranks with one local index on different planes)."""
    try:
        validate(cluster, rmap)
    except ValueError as exc:
        return [str(exc)]
    out: list[str] = []
    local, nic = rmap.local_rank, rmap.nic(cluster)
    width = int(local.max()) + 1
    table = np.full((cluster.num_nodes, width), -1, dtype=np.int64)
    table[rmap.node, local] = nic
    used = table[np.unique(rmap.node)]
    ref = used[0]
    differ = np.flatnonzero(((used != ref) & (used >= 0) & (ref >= 0)).any(axis=1))
    if differ.size:
        node = int(np.unique(rmap.node)[differ[0]])
        out.append(
            f"local rank -> NIC order differs between nodes (node {node}: "
            f"{used[differ[0]].tolist()} vs {ref.tolist()}): ranks with one local index sit on "
            "different planes/rails"
        )
    return out
