"""Flow-level fabric simulator: predicted time of one traffic matrix on one cluster.

Each (src, dst) pair with bytes is a flow (ECMP: `qps` sub-flows, each hashed on its own);
flows share links max-min fairly, recomputed as flows finish (topologies.maxmin); each flow
also pays the alpha latency of its path (endpoint + per switch, plus the scale-up latency when
it is forwarded inside a node). The op takes as long as its slowest flow.

For a uniform all-to-all on a cluster whose leaf groups are full, with a rank map that puts
local index i on the same GPU on every node and adaptive routing, flows related by permuting
nodes within and across leaf groups get equal rates, so the simulator solves one flow per
orbit with weighted links (`aggregate`): exact, and independent of cluster size.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import numpy.typing as npt

from topologies.cluster import Cluster
from topologies.loads import class_bytes
from topologies.maxmin import completion_times, link_bytes
from topologies.network import Layout, Paths, build_paths, make_layout
from topologies.rankmap import RankMap, validate
from topologies.traffic import Uniform

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Traffic = FloatArray | Uniform


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Prediction:
    """Predicted time of one traffic matrix (never a measurement)."""

    time_s: float
    """Predicted op time: max over flows of (path latency + completion time), seconds."""
    transfer_s: float
    """Completion time of the last flow without latency, seconds."""
    latency_s: float
    """Largest path latency, seconds."""
    total_bytes: float
    """Bytes moved between distinct ranks."""
    num_flows: int
    """Flows simulated (after aggregation; ECMP sub-flows counted)."""
    num_events: int
    """Rate recomputations."""
    method: str
    """orbits (exact symmetry aggregation) or flows (one flow per pair)."""
    routing: str
    """adaptive, ecmp or static."""
    bottleneck: str
    """Name of the busiest link (bytes / rate)."""
    link_bound_s: float
    """Busiest link's bytes over its rate, seconds."""
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Cluster and routing facts for the results record."""
    class_bytes: dict[str, float] = dataclasses.field(default_factory=dict)
    """Bytes per link class (topologies.loads.link_class_bytes), local copies excluded."""
    finish_s: FloatArray = dataclasses.field(default_factory=lambda: np.zeros(0), repr=False)
    """Completion time of every simulated flow (no latency), seconds."""
    flow_latency_s: FloatArray = dataclasses.field(default_factory=lambda: np.zeros(0), repr=False)
    """Path latency of every simulated flow, seconds."""

    def time_at_scale(self, factor: float) -> float:
        """Predicted time when every flow carries `factor` times its bytes. Exact in this model:
        max-min rates do not depend on sizes, so every completion time scales by `factor`."""
        if not self.finish_s.size:
            return 0.0
        return float((self.flow_latency_s + factor * self.finish_s).max())


def _flow_latency_s(cluster: Cluster, paths: Paths) -> FloatArray:
    out = cluster.scale_out
    lat = (out.endpoint_latency_us + paths.num_switches * out.switch_latency_us) * 1e-6
    lat = np.where(paths.intra_node, cluster.scale_up.endpoint_latency_us * 1e-6, lat)
    return np.where(paths.forwarded, lat + cluster.scale_up.endpoint_latency_us * 1e-6, lat)


def _symmetric(cluster: Cluster, rmap: RankMap) -> bool:
    """True when node permutations within/among full leaf groups preserve cluster and map."""
    g, n = cluster.gpus_per_node, cluster.num_nodes
    if rmap.world != cluster.num_gpus:
        return False
    if not np.array_equal(rmap.node, np.arange(rmap.world) // g):
        return False
    if not (rmap.gpu.reshape(n, g) == rmap.gpu[:g]).all():
        return False
    group = _group_size(cluster)
    return group > 0 and n % group == 0


def _group_size(cluster: Cluster) -> int:
    """Nodes per leaf group (nodes sharing all their leaves); 0 if groups are not whole."""
    if cluster.fabric == "none":
        return 1
    if cluster.rail_aligned:
        return min(cluster.down_ports, cluster.num_nodes)
    per_leaf = cluster.down_ports // cluster.nics_per_node
    if cluster.down_ports % cluster.nics_per_node or per_leaf == 0:
        return 0
    return min(per_leaf, cluster.num_nodes)


def _orbit_flows(cluster: Cluster, rmap: RankMap) -> tuple[IntArray, IntArray, FloatArray]:
    """Representative flows from node 0 (src rank, dst rank, orbit size)."""
    g, n, grp = cluster.gpus_per_node, cluster.num_nodes, _group_size(cluster)
    src, dst, size = [], [], []
    rel = [(0, n)]  # (destination node, number of such (src node, dst node) pairs)
    if grp > 1:
        rel.append((1, n * (grp - 1)))
    if n > grp:
        rel.append((grp, n * (n - grp)))
    for dnode, count in rel:
        for a in range(g):
            for b in range(g):
                if dnode == 0 and a == b:
                    continue
                src.append(a)
                dst.append(dnode * g + b)
                size.append(count)
    return np.asarray(src), np.asarray(dst), np.asarray(size, dtype=np.float64)


def _link_orbits(layout: Layout) -> tuple[IntArray, FloatArray]:
    """Orbit id of every link and the size of each orbit."""
    c, off = layout.cluster, layout.offsets
    key = np.zeros(layout.num_links, dtype=np.int64)
    gpu = np.arange(c.num_gpus) % c.gpus_per_node
    key[off[0] : off[1]] = gpu
    key[off[1] : off[2]] = c.gpus_per_node + gpu
    nic = np.arange(c.num_nodes * c.nics_per_node) % max(c.nics_per_node, 1)
    base = 2 * c.gpus_per_node
    key[off[2] : off[3]] = base + nic
    key[off[3] : off[4]] = base + c.nics_per_node + nic
    base += 2 * c.nics_per_node
    per_leaf = 1 if layout.routing == "adaptive" else c.up_ports
    leaf = np.arange(off[5] - off[4]) // per_leaf
    rail = leaf // c.leaves_per_rail if c.rail_aligned else np.zeros_like(leaf)
    key[off[4] : off[5]] = base + rail
    key[off[5] : off[6]] = base + c.nics_per_node + rail
    _, orbit, counts = np.unique(key, return_inverse=True, return_counts=True)
    return orbit.astype(np.int64), counts.astype(np.float64)


def _solve(
    layout: Layout,
    paths: Paths,
    size: FloatArray,
    weight: FloatArray,
    link_map: IntArray | None,
    orbit_size: FloatArray | None,
    rel_tol: float,
) -> tuple[FloatArray, FloatArray, int]:
    """Finish times and per-link bytes; with link_map, links are merged into orbits."""
    cap = layout.capacity_bytes_s()
    fptr, flinks = paths.fptr, paths.flinks
    if link_map is None or orbit_size is None:
        fw = np.ones(1)  # unweighted: every flow loads each of its links once
    else:
        flinks = link_map[flinks].astype(np.int32)
        cap = np.bincount(link_map, weights=cap, minlength=orbit_size.size) / orbit_size
        fw = np.repeat(weight, np.diff(fptr)) / orbit_size[flinks]
    finish, events = completion_times(fptr, flinks, fw, cap, size, rel_tol)
    return finish, link_bytes(fptr, flinks, fw, size, cap.size) / cap, events


def simulate(
    cluster: Cluster,
    rmap: RankMap,
    traffic: Traffic,
    *,
    routing: str = "",
    qps: int = 1,
    seed: int = 0,
    rel_tol: float = 0.0,
    aggregate: str = "auto",
) -> Prediction:
    """Predict the time to move `traffic` ([src, dst] bytes, or Uniform) on `cluster`.

    routing: adaptive, ecmp or static (default: the cluster's); qps: ECMP sub-flows per flow;
    seed: ECMP hash seed; rel_tol: flows finishing within this fraction of the earliest finish
    together (0 = exact); aggregate: auto (orbits when exact), orbits, or flows.
    """
    validate(cluster, rmap)
    layout = make_layout(cluster, routing)
    if qps < 1:
        raise ValueError(f"qps={qps}; use >= 1")
    uniform = isinstance(traffic, Uniform) or _is_uniform(traffic)
    exact = uniform and layout.routing == "adaptive" and _symmetric(cluster, rmap)
    if aggregate not in ("auto", "orbits", "flows"):
        raise ValueError(f"aggregate={aggregate!r}; use auto, orbits or flows")
    if aggregate == "orbits" and not exact:
        raise ValueError(
            "orbit aggregation needs uniform traffic, adaptive routing, full leaf "
            "groups and the same GPU order on every node"
        )
    if exact and aggregate != "flows":
        per_pair = _pair_bytes(traffic)
        return _simulate_orbits(cluster, rmap, layout, per_pair, rel_tol)
    matrix = traffic.matrix() if isinstance(traffic, Uniform) else np.asarray(traffic, np.float64)
    return _simulate_flows(cluster, rmap, layout, matrix, qps, seed, rel_tol)


def _is_uniform(matrix: FloatArray) -> bool:
    m = np.asarray(matrix)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
        return False
    off = m[~np.eye(m.shape[0], dtype=bool)]
    return bool((off == off[0]).all())


def _pair_bytes(traffic: Traffic) -> float:
    if isinstance(traffic, Uniform):
        return float(traffic.bytes_per_pair)
    return float(np.asarray(traffic)[0, 1])


def _simulate_orbits(
    cluster: Cluster, rmap: RankMap, layout: Layout, per_pair: float, rel_tol: float
) -> Prediction:
    src, dst, count = _orbit_flows(cluster, rmap)
    paths = build_paths(layout, rmap, src, dst)
    link_orbit, orbit_size = _link_orbits(layout)
    size = np.full(src.size, per_pair)
    finish, busy, events = _solve(layout, paths, size, count, link_orbit, orbit_size, rel_tol)
    names = [layout.name(int(np.flatnonzero(link_orbit == o)[0])) for o in range(orbit_size.size)]
    return _prediction(
        cluster,
        layout,
        paths,
        finish,
        busy,
        names,
        "orbits",
        class_bytes(paths, size * count),
        events,
        src.size,
    )


def _simulate_flows(
    cluster: Cluster,
    rmap: RankMap,
    layout: Layout,
    matrix: FloatArray,
    qps: int,
    seed: int,
    rel_tol: float,
) -> Prediction:
    if matrix.shape != (rmap.world, rmap.world) or (matrix < 0).any():
        raise ValueError(f"traffic matrix shape {matrix.shape} does not match {rmap.world} ranks")
    src, dst = np.nonzero(matrix)
    keep = src != dst
    src, dst = src[keep].astype(np.int64), dst[keep].astype(np.int64)
    size = matrix[src, dst]
    nq = qps if layout.routing == "ecmp" else 1
    qp = None
    if nq > 1:
        src, dst = np.repeat(src, nq), np.repeat(dst, nq)
        qp = np.tile(np.arange(nq, dtype=np.int64), size.size)
    paths = build_paths(layout, rmap, src, dst, qp=qp, seed=seed)
    sub = np.repeat(size, nq) / nq
    finish, busy, events = _solve(layout, paths, sub, sub, None, None, rel_tol)
    names = [layout.name(i) for i in range(layout.num_links)] if busy.size < 4096 else None
    return _prediction(
        cluster,
        layout,
        paths,
        finish,
        busy,
        names,
        "flows",
        class_bytes(paths, sub),
        events,
        sub.size,
    )


def _prediction(
    cluster: Cluster,
    layout: Layout,
    paths: Paths,
    finish: FloatArray,
    busy: FloatArray,
    names: list[str] | None,
    method: str,
    classes: dict[str, float],
    events: int,
    num_flows: int,
) -> Prediction:
    lat = _flow_latency_s(cluster, paths)
    top = int(np.argmax(busy)) if busy.size else 0
    name = (names[top] if names else layout.name(top)) if busy.size else "none"
    return Prediction(
        time_s=float((finish + lat).max()) if finish.size else 0.0,
        transfer_s=float(finish.max()) if finish.size else 0.0,
        latency_s=float(lat.max()) if lat.size else 0.0,
        total_bytes=classes["intra_node_bytes"] + classes["scale_out_link_bytes"],
        num_flows=num_flows,
        num_events=events,
        method=method,
        routing=layout.routing,
        bottleneck=name,
        link_bound_s=float(busy.max()) if busy.size else 0.0,
        facts=cluster_facts(cluster, layout.routing),
        class_bytes=classes,
        finish_s=finish,
        flow_latency_s=lat,
    )


def cluster_facts(cluster: Cluster, routing: str = "") -> dict[str, Any]:
    """Facts about a cluster for a results record's `extra`."""
    return {
        "cluster": cluster.name,
        "fabric": cluster.fabric,
        "num_nodes": cluster.num_nodes,
        "gpus_per_node": cluster.gpus_per_node,
        "nics_per_node": cluster.nics_per_node,
        "num_planes": cluster.num_planes,
        "switch_radix": cluster.switch_radix,
        "oversubscription": cluster.oversubscription,
        "scale_out": cluster.scale_out.name if cluster.fabric != "none" else "none",
        "scale_out_gbyte_s": cluster.scale_out.bandwidth_gbyte_s,
        "scale_up": cluster.scale_up.name,
        "scale_up_gbyte_s": cluster.scale_up.bandwidth_gbyte_s,
        "routing": routing or cluster.resolved_routing,
        "forwarding": cluster.resolved_forwarding,
        "num_leaves": cluster.num_leaves,
        "num_spines": cluster.num_spines,
    }
