"""Traffic to links: bytes per link, bottlenecks, per-plane loads, and link-class accounting.

`route_matrix` sends a [src, dst] byte matrix over a cluster (ideal adaptive routing unless
told otherwise) and sums bytes per link. `link_class_bytes` splits the bytes into intra-node,
same-plane scale-out and cross-plane (forwarded) classes, and `link_rate_bound_s` is the time
no schedule can beat: the busiest link's bytes over its rate (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import numpy.typing as npt

from topologies.cluster import Cluster
from topologies.maxmin import link_bytes
from topologies.network import KIND_NAMES, Layout, Paths, build_paths, make_layout
from topologies.rankmap import RankMap, validate

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class LinkLoads:
    """Bytes on every link after routing one traffic matrix."""

    layout: Layout
    """Link numbering the loads refer to."""
    bytes_per_link: FloatArray
    """Bytes carried by each link."""
    class_bytes: dict[str, float]
    """Bytes per link class (see link_class_bytes)."""

    @property
    def time_per_link_s(self) -> FloatArray:
        return self.bytes_per_link / self.layout.capacity_bytes_s()

    @property
    def bound_s(self) -> float:
        """Busiest link's bytes over its rate, seconds."""
        t = self.time_per_link_s
        return float(t.max()) if t.size else 0.0

    def bottlenecks(self, top: int = 5) -> list[tuple[str, float, float]]:
        """The `top` busiest links: (name, bytes, seconds at line rate)."""
        t = self.time_per_link_s
        order = np.argsort(-t, kind="stable")[:top]
        return [
            (self.layout.name(int(i)), float(self.bytes_per_link[i]), float(t[i]))
            for i in order
            if t[i] > 0
        ]

    def plane_bytes(self) -> dict[int, float]:
        """Bytes leaving NICs, per plane."""
        kind, plane = self.layout.kind(), self.layout.plane()
        nic_out = kind == KIND_NAMES.index("nic-out")
        return {
            int(p): float(self.bytes_per_link[nic_out & (plane == p)].sum())
            for p in np.unique(plane[nic_out])
        }

    def kind_bytes(self) -> dict[str, float]:
        """Total bytes per link kind (gpu-out, nic-out, leaf-up, ...)."""
        kind = self.layout.kind()
        return {
            name: float(self.bytes_per_link[kind == k].sum()) for k, name in enumerate(KIND_NAMES)
        }


def _check_matrix(rmap: RankMap, matrix: FloatArray) -> FloatArray:
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (rmap.world, rmap.world):
        raise ValueError(f"traffic matrix shape {m.shape} does not match {rmap.world} ranks")
    if not np.isfinite(m).all() or (m < 0).any():
        raise ValueError("traffic matrix must hold finite, non-negative byte counts")
    return m


def route_matrix(
    cluster: Cluster, rmap: RankMap, matrix: FloatArray, routing: str = "adaptive", seed: int = 0
) -> LinkLoads:
    """Route `matrix` ([src, dst] bytes) and sum bytes per link."""
    validate(cluster, rmap)
    m = _check_matrix(rmap, matrix)
    layout = make_layout(cluster, routing)
    src, dst = np.nonzero(m)
    keep = src != dst
    src, dst = src[keep].astype(np.int64), dst[keep].astype(np.int64)
    size = m[src, dst]
    paths = build_paths(layout, rmap, src, dst, seed=seed)
    per_link = link_bytes(paths.fptr, paths.flinks, np.ones(1), size, layout.num_links)
    classes = {**class_bytes(paths, size), "local_copy_bytes": float(np.trace(m))}
    return LinkLoads(layout=layout, bytes_per_link=per_link, class_bytes=classes)


def class_bytes(paths: Paths, size: FloatArray) -> dict[str, float]:
    """Bytes per link class of flows with these paths and sizes (see link_class_bytes)."""
    inter = ~paths.intra_node
    intra = float(size[paths.intra_node].sum())
    forwarded = float(size[paths.forwarded].sum())
    return {
        "intra_node_bytes": intra,
        "scale_out_same_plane_bytes": float(size[inter & ~paths.cross_plane].sum()),
        "scale_out_cross_plane_bytes": float(size[paths.cross_plane].sum()),
        "scale_out_cross_rail_bytes": float(size[paths.cross_rail].sum()),
        "forwarded_bytes": forwarded,
        "scale_up_link_bytes": intra + forwarded,
        "scale_out_link_bytes": float(size[inter].sum()),
    }


def link_class_bytes(cluster: Cluster, rank_map: RankMap, matrix: FloatArray) -> dict[str, float]:
    """Bytes of `matrix` per link class.

    intra_node_bytes: between GPUs of one node (NVLink/PCIe);
    scale_out_same_plane_bytes: between nodes, source and destination NICs on one plane;
    scale_out_cross_plane_bytes: between nodes on different planes (on multi-plane fabrics all
    of it is forwarded inside a node); scale_out_cross_rail_bytes: between nodes, different NIC
    index; forwarded_bytes: relayed by a GPU inside a node (these also cross NVLink once);
    local_copy_bytes: the diagonal; scale_up_link_bytes and scale_out_link_bytes: bytes summed
    over GPU-out and NIC-out links.
    """
    return route_matrix(cluster, rank_map, matrix).class_bytes


def link_rate_bound_s(cluster: Cluster, rank_map: RankMap, matrix: FloatArray) -> float:
    """Lower bound on the time to move `matrix`: the busiest link's bytes over its rate,
    with ideal adaptive routing and the cluster's forwarding, no latency. Seconds."""
    return route_matrix(cluster, rank_map, matrix).bound_s


def link_facts(cluster: Cluster, rank_map: RankMap, matrix: FloatArray) -> dict[str, Any]:
    """What a measured op's record carries beside its time: bytes per link class, the
    link-rate bound (s) and the busiest link, from one routing pass. All scale linearly with
    the matrix, so one call per op at one size serves a whole sweep."""
    loads = route_matrix(cluster, rank_map, matrix)
    top = loads.bottlenecks(1)
    return {
        "link_class_bytes": loads.class_bytes,
        "link_rate_bound_s": loads.bound_s,
        "bottleneck_link": top[0][0] if top else "none",
        "topology": cluster.name,
        "rank_map": rank_map.name,
    }
