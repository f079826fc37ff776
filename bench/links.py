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
from typing import Any

from bench.errors import UsageError
from collectives.ops.base import Collective
from results.schema import Record


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("topology (declared, recorded, and used for link bounds)")
    g.add_argument("--topology", default=None, help="cluster preset name or TOML file")
    g.add_argument(
        "--rank-map", default="block", help="block, cyclic, plane-aligned, misaligned, or a file"
    )
    g.add_argument("--fabric", default=None, help="fabric label recorded in the run (e.g. ib)")
    g.add_argument("--label", default=None, help="free label recorded in the run")


class LinkModel:
    """The declared cluster and rank map of a run."""

    def __init__(self, topology: str, rank_map: str, world: int) -> None:
        # imported here: the topology model pulls in numba, which most runs never need
        from bench.cmd_topo import resolve_cluster, resolve_rank_map

        self.cluster = resolve_cluster(topology)
        if world > self.cluster.num_gpus:
            raise UsageError(
                f"--topology {topology} has {self.cluster.num_gpus} GPUs but the run has "
                f"{world} ranks; pick a larger preset"
            )
        self.rank_map = resolve_rank_map(rank_map, self.cluster, world)
        self.topology, self.rank_map_name = topology, rank_map

    def annotate(
        self, op: Collective, size: int, dtype: str, world: int, records: list[Record]
    ) -> list[Record]:
        """Records of one point with link-class bytes and the link-rate bound added."""
        from topologies.loads import link_class_bytes, link_rate_bound_s

        try:
            matrix = op.traffic_matrix(size, dtype, world)
        except (NotImplementedError, ValueError):
            return records
        links = link_class_bytes(self.cluster, self.rank_map, matrix)
        bound_s = link_rate_bound_s(self.cluster, self.rank_map, matrix)
        extra = {"links": links, "link_bound_s": bound_s, "topology": self.topology}
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
