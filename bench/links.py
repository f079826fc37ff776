"""`--topology/--rank-map` for `epbench run`: bytes per link class and the link-rate bound.

The run declares the cluster it runs on (a preset or TOML file) and how ranks map onto it;
for every measured point the op's [src, dst] traffic matrix is routed over that cluster
(topologies.loads) and the record gains the bytes per link class (intra-node, same-plane
scale-out, cross-plane forwarded) and the time the busiest link's rate allows, which the
table prints beside the measured time.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.errors import UsageError
from collectives.nodemap import NodeMap, from_keys
from collectives.ops.base import Collective
from results.schema import Record

if TYPE_CHECKING:
    from topologies.rankmap import RankMap


LAUNCH = "launch"


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("topology (declared, recorded, and used for link bounds)")
    g.add_argument("--topology", default=None, help="cluster preset name or TOML file")
    g.add_argument(
        "--rank-map",
        default=LAUNCH,
        help="launch (each rank on the node the launcher put it, GPU = its local rank), "
        "block, cyclic, plane-aligned, misaligned, or a file (checked against the launch)",
    )
    g.add_argument("--fabric", default=None, help="fabric label recorded in the run (e.g. ib)")
    g.add_argument("--label", default=None, help="free label recorded in the run")


class LinkModel:
    """The declared cluster and the rank map of a run, on the nodes the launch really used."""

    def __init__(self, topology: str, rank_map: str, nodes: NodeMap) -> None:
        # imported here: the topology model pulls in numba, which most runs never need
        from bench.cmd_topo import resolve_cluster

        self.cluster = resolve_cluster(topology)
        if nodes.world > self.cluster.num_gpus:
            raise UsageError(
                f"--topology {topology} has {self.cluster.num_gpus} GPUs but the run has "
                f"{nodes.world} ranks; pick a larger preset"
            )
        if nodes.num_nodes > self.cluster.num_nodes or (
            nodes.local_world > self.cluster.gpus_per_node
        ):
            raise UsageError(
                f"--topology {topology} has {self.cluster.num_nodes} nodes of "
                f"{self.cluster.gpus_per_node} GPUs but the run has {nodes.num_nodes} nodes of "
                f"{nodes.local_world} ranks; pick a larger preset or change --gpus-per-node"
            )
        self.rank_map = run_rank_map(topology, rank_map, nodes)
        self.topology, self.rank_map_name = topology, rank_map

    def annotate(
        self, op: Collective, size: int, dtype: str, world: int, records: list[Record]
    ) -> list[Record]:
        """Records of one point with link-class bytes and the link-rate bound added."""
        from topologies.loads import link_facts

        try:
            matrix = op.traffic_matrix(size, dtype, world)
        except (NotImplementedError, ValueError):
            return records
        facts = link_facts(self.cluster, self.rank_map, matrix)  # one routing pass
        extra = {
            "links": facts["link_class_bytes"],
            "link_bound_s": facts["link_rate_bound_s"],
            "bottleneck_link": facts["bottleneck_link"],
            "topology": self.topology,
        }
        return [dataclasses.replace(r, extra={**r.extra, **extra}) for r in records]


def run_labels(args: argparse.Namespace, model: LinkModel | None) -> dict[str, Any]:
    """Flat metadata keys the analyzer compares by (`--by fabric|topology|rank_map|label`)."""
    labels: dict[str, Any] = {
        "fabric": args.fabric,
        "label": args.label,
        "topology": args.topology,
        "rank_map_name": args.rank_map,
    }
    if model is not None and args.fabric is None:
        labels["fabric"] = getattr(model.cluster.scale_out, "name", None)
    return labels


def run_rank_map(topology: str, rank_map: str, nodes: NodeMap) -> RankMap:
    """The rank map of a run: `launch` takes each rank's node from the launch and its GPU
    from its local rank; a declared map (kind or file) must put the same ranks together on
    a node as the launch did, or a UsageError says where they differ."""
    from bench.cmd_topo import resolve_cluster, resolve_rank_map
    from topologies.rankmap import RankMap

    if rank_map == LAUNCH:
        return RankMap(
            name=LAUNCH,
            node=np.asarray(nodes.node, dtype=np.int64),
            gpu=np.asarray(nodes.local_rank, dtype=np.int64),
        )
    # kinds are laid over as many nodes as the run has (cyclic wraps there)
    sized = resolve_cluster(topology, num_nodes=nodes.num_nodes)
    declared = resolve_rank_map(rank_map, sized, nodes.world)
    as_declared = from_keys(declared.node.tolist())
    for rank, (mine, real) in enumerate(zip(as_declared.node, nodes.node, strict=True)):
        if mine != real:
            raise UsageError(
                f"--rank-map {rank_map} puts rank {rank} on a node with ranks "
                f"{_ranks_text(as_declared.ranks_on(mine))} but the launch put it with ranks "
                f"{_ranks_text(nodes.ranks_on(real))} ({nodes.kind} layout); pass "
                f"--rank-map {LAUNCH} or the map the launcher used"
            )
    return declared


def _ranks_text(ranks: tuple[int, ...]) -> str:
    shown = ",".join(map(str, ranks[:6]))
    return shown + (",..." if len(ranks) > 6 else "")
