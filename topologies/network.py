"""Links of a cluster and the path each (src rank, dst rank) flow takes over them.

Every link is one direction of one cable (or of one GPU's NVLink/PCIe port), numbered in
blocks: GPU scale-up out, GPU scale-up in, NIC out (to leaf), NIC in (from leaf), leaf up,
spine down. Under ECMP and static routing each leaf-spine cable is its own link; under
adaptive routing (ideal spraying, every flow split evenly over all spines) a leaf's uplinks
are one aggregate link of U times the capacity, which is exact for even splitting.

A path is at most `PATH_WIDTH` links, in order [scale-up out, scale-up in, NIC out, leaf up,
spine down, NIC in, scale-up out, scale-up in]: the first pair is used inside a node and by
sender-side forwarding (PXN), the last pair by receiver-side forwarding. Paths of a batch of
flows are returned in CSR form (row pointers + link ids), built by one compiled loop.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import numpy.typing as npt

from topologies.cluster import Cluster
from topologies.maxmin import _jit
from topologies.rankmap import RankMap

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
PATH_WIDTH = 8
KIND_NAMES = ("gpu-out", "gpu-in", "nic-out", "nic-in", "leaf-up", "spine-down")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Layout:
    """Link numbering of one cluster under one routing."""

    cluster: Cluster
    """The cluster."""
    routing: str
    """adaptive, ecmp or static."""
    offsets: tuple[int, ...]
    """Start of each block of KIND_NAMES, plus the total at the end."""

    @property
    def num_links(self) -> int:
        return self.offsets[-1]

    def kind(self) -> IntArray:
        """Kind index (into KIND_NAMES) of every link."""
        sizes = np.diff(np.asarray(self.offsets))
        return np.repeat(np.arange(len(KIND_NAMES)), sizes)

    def capacity_bytes_s(self) -> FloatArray:
        c = self.cluster
        per_kind = [c.scale_up.bandwidth_bytes_s] * 2 + [c.scale_out.bandwidth_bytes_s] * 4
        cap = np.asarray(per_kind)[self.kind()]
        if self.routing == "adaptive":
            cap[self.offsets[4] : self.offsets[6]] *= c.up_ports
        return cap

    def plane(self) -> IntArray:
        """Plane of every scale-out link (-1 for scale-up links)."""
        c = self.cluster
        out = np.full(self.num_links, -1, dtype=np.int64)
        nics = np.arange(c.num_nodes * c.nics_per_node) % max(c.nics_per_node, 1)
        for k in (2, 3):
            out[self.offsets[k] : self.offsets[k + 1]] = c.nic_plane(nics)
        per_leaf = 1 if self.routing == "adaptive" else c.up_ports
        leaves = np.arange(self.offsets[5] - self.offsets[4]) // per_leaf
        dom = c.domain_of_leaf(leaves) if c.fabric == "multi-plane" else np.zeros_like(leaves)
        for k in (4, 5):
            out[self.offsets[k] : self.offsets[k + 1]] = dom
        return out

    def name(self, link: int) -> str:
        """Human-readable name of one link."""
        c = self.cluster
        k = int(np.searchsorted(np.asarray(self.offsets), link, side="right") - 1)
        i = link - self.offsets[k]
        if k < 2:
            return f"{KIND_NAMES[k]} node{i // c.gpus_per_node}/gpu{i % c.gpus_per_node}"
        if k < 4:
            return f"{KIND_NAMES[k]} node{i // c.nics_per_node}/{c.nic_name(i % c.nics_per_node)}"
        if self.routing == "adaptive":
            return f"{KIND_NAMES[k]} leaf{i} (all {c.up_ports} uplinks)"
        return f"{KIND_NAMES[k]} leaf{i // c.up_ports}/spine{i % c.up_ports}"


def make_layout(cluster: Cluster, routing: str = "") -> Layout:
    """Link numbering for `cluster` under `routing` (default: the cluster's)."""
    routing = routing or cluster.resolved_routing
    if routing not in ("adaptive", "ecmp", "static"):
        raise ValueError(f"routing {routing!r}; use adaptive, ecmp or static")
    gpus = cluster.num_gpus
    nics = cluster.num_nodes * cluster.nics_per_node
    fabric = cluster.num_leaves * (1 if routing == "adaptive" else cluster.up_ports)
    if cluster.num_spines == 0:
        fabric = 0
    sizes = [gpus, gpus, nics, nics, fabric, fabric]
    return Layout(
        cluster=cluster, routing=routing, offsets=tuple(np.concatenate([[0], np.cumsum(sizes)]))
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Paths:
    """Routes of a batch of flows."""

    fptr: IntArray
    """CSR row pointers: flow f uses flinks[fptr[f]:fptr[f + 1]]."""
    flinks: npt.NDArray[np.int32]
    """Link ids of all flows, concatenated."""
    num_switches: IntArray
    """Switches each flow crosses (0 inside a node, 1 same leaf, 3 across spines)."""
    intra_node: BoolArray
    """Flow stays inside one node."""
    forwarded: BoolArray
    """Flow is relayed by a GPU inside a node (PXN or receiver-side)."""
    cross_plane: BoolArray
    """Inter-node flow whose source and destination GPUs' NICs differ in plane."""
    cross_rail: BoolArray
    """Inter-node flow whose source and destination GPUs' NICs differ in index (rail)."""


def _relay_gpu(cluster: Cluster) -> IntArray:
    """For each local NIC, the first local GPU attached to it (the forwarding GPU)."""
    nic_of_gpu = np.asarray(cluster.nic_of_gpu, dtype=np.int64)
    relay = np.full(max(cluster.nics_per_node, 1), -1, dtype=np.int64)
    for g in range(cluster.gpus_per_node - 1, -1, -1):
        relay[nic_of_gpu[g]] = g
    if (relay < 0).any():
        raise ValueError(f"cluster {cluster.name!r}: NIC {int(np.argmin(relay))} has no GPU")
    return relay


def _tables(layout: Layout) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """Per-cluster lookup tables: NIC of GPU, plane of NIC, relay GPU of NIC, and
    [leaf, port-on-leaf] of every (node, NIC)."""
    c = layout.cluster
    npn = max(c.nics_per_node, 1)
    nic_of_gpu = np.asarray(c.nic_of_gpu, dtype=np.int64)
    plane = c.nic_plane(np.arange(npn))
    node, nic = np.divmod(np.arange(c.num_nodes * npn, dtype=np.int64), npn)
    leaf = np.zeros((node.size, 2), dtype=np.int64)
    if c.fabric != "none":
        leaf[:, 0] = c.leaf_of(node, nic)
        leaf[:, 1] = node % c.down_ports if c.rail_aligned else (node * npn + nic) % c.down_ports
    return nic_of_gpu, plane, _relay_gpu(c), leaf


def build_paths(
    layout: Layout,
    rmap: RankMap,
    src: IntArray,
    dst: IntArray,
    qp: IntArray | None = None,
    seed: int = 0,
) -> Paths:
    """Route flows src[i] -> dst[i] (ranks) over the cluster."""
    c = layout.cluster
    nic_of_gpu, plane, relay, leaf = _tables(layout)
    fwd_mode = FORWARD_CODES[c.resolved_forwarding]
    route = ROUTE_CODES[layout.routing] if c.num_spines else -1
    n = src.size
    fptr = np.zeros(n + 1, dtype=np.int64)
    flinks = np.empty(n * PATH_WIDTH, dtype=np.int32)
    switches = np.zeros(n, dtype=np.int64)
    flags = np.zeros((n, 4), dtype=np.bool_)
    q = np.zeros(n, dtype=np.int64) if qp is None else np.asarray(qp, dtype=np.int64)
    _route_kernel(
        np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64), q,
        rmap.node, rmap.gpu, nic_of_gpu, plane, relay, leaf,
        np.asarray(layout.offsets, dtype=np.int64), c.gpus_per_node, max(c.nics_per_node, 1),
        c.up_ports, fwd_mode, route, np.uint64(seed), fptr, flinks, switches, flags,
    )  # fmt: skip
    return Paths(
        fptr=fptr,
        flinks=flinks[: fptr[-1]].copy(),
        num_switches=switches,
        intra_node=flags[:, 0],
        forwarded=flags[:, 1],
        cross_plane=flags[:, 2],
        cross_rail=flags[:, 3],
    )


FORWARD_CODES = {"none": 0, "pxn": 1, "receiver": 2}
ROUTE_CODES = {"adaptive": 0, "ecmp": 1, "static": 2}


@_jit
def _ecmp_hash(src: int, dst: int, qp: int, seed: Any) -> Any:
    """splitmix64 of the flow key: ECMP's per-flow (per-QP) hash."""
    x = (
        np.uint64(src) * np.uint64(0x9E3779B97F4A7C15)
        + np.uint64(dst) * np.uint64(0xC2B2AE3D27D4EB4F)
        + np.uint64(qp) * np.uint64(0x165667B19E3779F9)
        + seed * np.uint64(0x27D4EB2F165667C5)
    )
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@_jit
def _route_one(
    i: int, s: int, d: int, q: int, node: Any, gpu: Any, nic_of_gpu: Any, plane: Any,
    relay: Any, leaf: Any, off: Any, gpn: int, npn: int, up: int, fwd_mode: int, route: int,
    seed: Any, row: Any, flags: Any,
) -> int:  # fmt: skip
    """Fill `row` (PATH_WIDTH link ids, -1 unused) for one flow; return switches crossed."""
    sn, dn, sg, dg = node[s], node[d], gpu[s], gpu[d]
    if sn == dn:
        row[0] = off[0] + sn * gpn + sg
        row[1] = off[1] + dn * gpn + dg
        flags[i, 0] = True
        return 0
    snic, dnic = nic_of_gpu[sg], nic_of_gpu[dg]
    tx, rx = snic, dnic
    flags[i, 2] = plane[snic] != plane[dnic]
    flags[i, 3] = snic != dnic
    if snic != dnic and fwd_mode == 1:
        tx = dnic
        row[0] = off[0] + sn * gpn + sg
        row[1] = off[1] + sn * gpn + relay[dnic]
        flags[i, 1] = True
    elif snic != dnic and fwd_mode == 2:
        rx = snic
        row[6] = off[0] + dn * gpn + relay[snic]
        row[7] = off[1] + dn * gpn + dg
        flags[i, 1] = True
    row[2] = off[2] + sn * npn + tx
    row[5] = off[3] + dn * npn + rx
    la, lb = leaf[sn * npn + tx, 0], leaf[dn * npn + rx, 0]
    if route < 0 or la == lb:
        return 1
    if route == 0:
        row[3] = off[4] + la
        row[4] = off[5] + lb
        return 3
    if route == 1:
        k = np.int64(_ecmp_hash(s, d, q, seed) % np.uint64(up))
    else:
        k = leaf[dn * npn + rx, 1] % up
    row[3] = off[4] + la * up + k
    row[4] = off[5] + lb * up + k
    return 3


@_jit
def _route_kernel(
    src: Any, dst: Any, qp: Any, node: Any, gpu: Any, nic_of_gpu: Any, plane: Any, relay: Any,
    leaf: Any, off: Any, gpn: int, npn: int, up: int, fwd_mode: int, route: int, seed: Any,
    fptr: Any, flinks: Any, switches: Any, flags: Any,
) -> None:  # fmt: skip
    row = np.empty(8, dtype=np.int64)
    pos = 0
    for i in range(src.size):
        row[:] = -1
        switches[i] = _route_one(
            i, src[i], dst[i], qp[i], node, gpu, nic_of_gpu, plane, relay, leaf, off, gpn,
            npn, up, fwd_mode, route, seed, row, flags,
        )  # fmt: skip
        for k in range(8):
            if row[k] >= 0:
                flinks[pos] = row[k]
                pos += 1
        fptr[i + 1] = pos
