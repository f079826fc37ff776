"""Cluster descriptions: nodes, GPUs, NICs, planes, and a two-layer fat-tree of switches.

A `Cluster` is a frozen description; its geometry (which leaf a NIC hangs off, how many
uplinks and spines there are) is derived here and nowhere else. Fabrics:

- `multi-plane` (MPFT, [P] §5): NIC i of every node sits on plane i mod num_planes; every plane
  is its own two-layer fat-tree, so planes never exchange traffic through switches.
- `multi-rail` (MRFT, rail-optimized): NIC i of every node goes to the rail-i leaf of its group
  of nodes, and one spine layer joins all rails, so cross-rail traffic can go through spines.
- `fat-tree`: one plane; a node's NICs go to leaves in node order (not rail-aligned).
- `none`: a single node, no scale-out network.

Functions named after the hardware build the presets; `make_cluster` builds any size.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import numpy.typing as npt

from topologies.links import (
    IB_NDR_400G,
    NVLINK_H100,
    NVLINK_H800,
    PCIE_GEN4,
    ROUTINGS,
    LinkProfile,
    link_profile,
)

FABRICS = ("multi-plane", "multi-rail", "fat-tree", "none")
FORWARDINGS = ("none", "pxn", "receiver")
"""How traffic between two NICs that share no switch path is carried: `pxn` moves it inside
the sending node to the GPU on the destination's plane (NCCL's PXN); `receiver` sends it on the
sender's plane and forwards it inside the receiving node (DeepEP's scheme)."""

IntArray = npt.NDArray[np.int64]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Cluster:
    """A GPU cluster: identical nodes joined by a two-layer fat-tree (or by nothing)."""

    name: str
    """Preset or user name."""
    fabric: str
    """One of FABRICS."""
    num_nodes: int
    """Number of nodes (hosts)."""
    gpus_per_node: int
    """GPUs per node."""
    nics_per_node: int
    """Scale-out NICs (ports) per node; 0 only with fabric `none`."""
    num_planes: int = 1
    """Independent network planes; multi-plane only (NIC i is on plane i mod num_planes)."""
    switch_radix: int = 64
    """Ports per switch."""
    oversubscription: float = 1.0
    """Leaf down:up port ratio (1.0 = non-blocking)."""
    scale_out: LinkProfile = IB_NDR_400G
    """NIC-to-switch and switch-to-switch link."""
    scale_up: LinkProfile = NVLINK_H800
    """GPU-to-GPU link inside a node (NVLink or PCIe), per GPU and direction."""
    routing: str = ""
    """Scale-out routing (one of ROUTINGS); empty means the scale-out profile's default."""
    forwarding: str = ""
    """Cross-plane forwarding (one of FORWARDINGS); empty: pxn on multi-plane, else none."""
    gpu_nic: tuple[int, ...] = ()
    """NIC index of each GPU on a node; empty means GPU g uses NIC g*nics//gpus."""
    gpu_model: str = ""
    """GPU model, for display."""
    nic_prefix: str = "mlx5_"
    """RDMA device name prefix; NIC i is named prefix + str(i)."""
    description: str = ""
    """One line about the cluster and its source."""

    def __post_init__(self) -> None:
        _check_cluster(self)

    # ---- resolved settings --------------------------------------------------------
    @property
    def resolved_routing(self) -> str:
        """Routing actually used on the scale-out fabric."""
        return self.routing or self.scale_out.routing

    @property
    def resolved_forwarding(self) -> str:
        """Forwarding actually used for traffic between planes."""
        if self.forwarding:
            return self.forwarding
        return "pxn" if self.fabric == "multi-plane" else "none"

    @property
    def num_gpus(self) -> int:
        return self.num_nodes * self.gpus_per_node

    @property
    def nic_of_gpu(self) -> tuple[int, ...]:
        """NIC index of each local GPU."""
        if self.gpu_nic:
            return self.gpu_nic
        nics = max(self.nics_per_node, 1)
        return tuple(g * nics // self.gpus_per_node for g in range(self.gpus_per_node))

    def nic_name(self, nic: int) -> str:
        return f"{self.nic_prefix}{nic}"

    # ---- switch geometry ----------------------------------------------------------
    @property
    def down_ports(self) -> int:
        """Leaf ports facing NICs."""
        r = self.oversubscription
        return max(1, min(self.switch_radix - 1, round(self.switch_radix * r / (1 + r))))

    @property
    def up_ports(self) -> int:
        """Leaf ports facing spines (= spines per spine domain)."""
        return self.switch_radix - self.down_ports

    @property
    def rail_aligned(self) -> bool:
        return self.fabric in ("multi-plane", "multi-rail")

    @property
    def leaves_per_rail(self) -> int:
        return math.ceil(self.num_nodes / self.down_ports)

    @property
    def num_leaves(self) -> int:
        if self.fabric == "none":
            return 0
        if self.rail_aligned:
            return self.nics_per_node * self.leaves_per_rail
        return math.ceil(self.num_nodes * self.nics_per_node / self.down_ports)

    @property
    def num_domains(self) -> int:
        """Spine domains: one per plane on multi-plane, else one."""
        return self.num_planes if self.fabric == "multi-plane" else 1

    @property
    def leaves_per_domain(self) -> int:
        return self.num_leaves // self.num_domains if self.num_leaves else 0

    @property
    def num_spines(self) -> int:
        """Spine switches (one link from each leaf of a domain to each of its spines)."""
        if self.leaves_per_domain <= 1:
            return 0
        return self.num_domains * self.up_ports

    def nic_plane(self, nic: IntArray) -> IntArray:
        """Plane of local NIC index `nic` (vectorized)."""
        if self.fabric == "multi-plane":
            return np.asarray(nic, dtype=np.int64) % self.num_planes
        return np.zeros_like(np.asarray(nic, dtype=np.int64))

    def leaf_of(self, node: IntArray, nic: IntArray) -> IntArray:
        """Global leaf index of (node, local NIC), vectorized; leaves numbered per domain."""
        node = np.asarray(node, dtype=np.int64)
        nic = np.asarray(nic, dtype=np.int64)
        if self.rail_aligned:
            rail_leaf = nic * self.leaves_per_rail + node // self.down_ports
            if self.fabric == "multi-plane":
                # number leaves domain by domain: plane p holds rails p, p+P, ...
                p = nic % self.num_planes
                k = nic // self.num_planes
                rails_per_plane = self.nics_per_node // self.num_planes
                idx = (p * rails_per_plane + k) * self.leaves_per_rail + node // self.down_ports
                return idx
            return rail_leaf
        return (node * self.nics_per_node + nic) // self.down_ports

    def domain_of_leaf(self, leaf: IntArray) -> IntArray:
        return np.asarray(leaf, dtype=np.int64) // max(self.leaves_per_domain, 1)

    def bisection_bytes_s(self) -> float:
        """Bisection bandwidth of the scale-out fabric, one direction, bytes/s."""
        if self.fabric == "none":
            return 0.0
        half_nics = self.num_nodes * self.nics_per_node / 2
        nic_bw = half_nics * self.scale_out.bandwidth_bytes_s
        if self.num_spines == 0:
            return nic_bw
        up_bw = self.num_leaves / 2 * self.up_ports * self.scale_out.bandwidth_bytes_s
        return min(nic_bw, up_bw)


def _check_cluster(c: Cluster) -> None:
    if c.fabric not in FABRICS:
        raise ValueError(f"cluster {c.name!r}: fabric {c.fabric!r} not one of {FABRICS}")
    if c.num_nodes < 1 or c.gpus_per_node < 1:
        raise ValueError(
            f"cluster {c.name!r}: num_nodes={c.num_nodes} gpus_per_node={c.gpus_per_node}; use >= 1"
        )
    if c.fabric == "none":
        if c.num_nodes != 1:
            raise ValueError(
                f"cluster {c.name!r}: fabric none needs num_nodes=1, not {c.num_nodes}"
            )
    elif c.nics_per_node < 1:
        raise ValueError(f"cluster {c.name!r}: nics_per_node={c.nics_per_node}; use >= 1")
    if c.num_planes < 1 or (c.fabric != "multi-plane" and c.num_planes != 1):
        raise ValueError(
            f"cluster {c.name!r}: num_planes={c.num_planes}; only multi-plane has more than 1"
        )
    if c.fabric == "multi-plane" and c.nics_per_node % c.num_planes:
        raise ValueError(
            f"cluster {c.name!r}: nics_per_node={c.nics_per_node} not a multiple of "
            f"num_planes={c.num_planes}"
        )
    _check_network(c)


def _check_network(c: Cluster) -> None:
    if c.switch_radix < 2 or not c.oversubscription > 0:
        raise ValueError(
            f"cluster {c.name!r}: switch_radix={c.switch_radix} oversubscription="
            f"{c.oversubscription}; use radix >= 2 and oversubscription > 0"
        )
    if c.routing and c.routing not in ROUTINGS:
        raise ValueError(f"cluster {c.name!r}: routing {c.routing!r} not one of {ROUTINGS}")
    if c.forwarding and c.forwarding not in FORWARDINGS:
        raise ValueError(
            f"cluster {c.name!r}: forwarding {c.forwarding!r} not one of {FORWARDINGS}"
        )
    if c.fabric == "multi-plane" and c.num_planes > 1 and c.resolved_forwarding == "none":
        raise ValueError(
            f"cluster {c.name!r}: planes cannot reach each other through switches; "
            "use forwarding pxn or receiver"
        )
    nics = max(c.nics_per_node, 1)
    if c.gpu_nic and (
        len(c.gpu_nic) != c.gpus_per_node or any(not 0 <= n < nics for n in c.gpu_nic)
    ):
        raise ValueError(
            f"cluster {c.name!r}: gpu_nic={list(c.gpu_nic)} needs {c.gpus_per_node} entries "
            f"in [0, {nics})"
        )
    if c.leaves_per_domain > c.switch_radix:
        raise ValueError(
            f"cluster {c.name!r}: {c.leaves_per_domain} leaves per spine domain exceed radix "
            f"{c.switch_radix}; a two-layer fat-tree cannot hold {c.num_nodes} nodes (fewer nodes, "
            "more planes, or a larger radix)"
        )


def make_cluster(**fields: object) -> Cluster:
    """A cluster of any size from Cluster fields; link fields may be profile names."""
    for key in ("scale_out", "scale_up"):
        value = fields.get(key)
        if isinstance(value, (str, dict)):
            fields[key] = link_profile(value)
    try:
        return Cluster(**fields)  # type: ignore[arg-type]
    except TypeError as exc:
        raise ValueError(f"bad cluster fields: {exc}") from None


def deepseek_mpft(num_nodes: int = 256, scale_out: str = "ib-ndr-400g") -> Cluster:
    """DeepSeek's H800 cluster as a multi-plane fat-tree ([P] §5.1): 8 GPUs and 8 x 400G
    NICs per node, each GPU-NIC pair its own plane, each plane two layers of 64-port switches."""
    return make_cluster(
        name="deepseek-mpft",
        fabric="multi-plane",
        num_nodes=num_nodes,
        gpus_per_node=8,
        nics_per_node=8,
        num_planes=8,
        scale_out=scale_out,
        scale_up=NVLINK_H800,
        gpu_model="H800",
        description="DeepSeek H800 MPFT, [P] §4-5",
    )


def deepseek_mrft(num_nodes: int = 256, scale_out: str = "ib-ndr-400g") -> Cluster:
    """The same nodes and NICs with the eight rails in one two-layer fat-tree (MRFT)."""
    return dataclasses.replace(
        deepseek_mpft(num_nodes, scale_out),
        name="deepseek-mrft",
        fabric="multi-rail",
        num_planes=1,
        description="DeepSeek H800 nodes, multi-rail fat-tree, [P] §5",
    )


def dgx_rail_optimized(num_nodes: int = 128) -> Cluster:
    """DGX H100-style rail-optimized cluster: 8 GPUs, 8 x NDR 400G IB, 32-node scalable units."""
    return make_cluster(
        name="dgx-h100-rail",
        fabric="multi-rail",
        num_nodes=num_nodes,
        gpus_per_node=8,
        nics_per_node=8,
        scale_out=IB_NDR_400G,
        scale_up=NVLINK_H100,
        gpu_model="H100",
        description="DGX H100-style rail-optimized fat-tree (32 nodes per leaf group)",
    )


def single_plane_fat_tree(num_nodes: int = 64, gpus_per_node: int = 8) -> Cluster:
    """A single-plane two-layer fat-tree; a node's NICs share leaves in node order."""
    return make_cluster(
        name="fat-tree",
        fabric="fat-tree",
        num_nodes=num_nodes,
        gpus_per_node=gpus_per_node,
        nics_per_node=gpus_per_node,
        scale_out=IB_NDR_400G,
        scale_up=NVLINK_H100,
        gpu_model="H100",
        description="single-plane two-layer fat-tree, not rail-aligned",
    )


def workstation(num_gpus: int = 2, scale_up: LinkProfile = PCIE_GEN4) -> Cluster:
    """One host with `num_gpus` GPUs joined by PCIe (or NVLink), no scale-out network."""
    return make_cluster(
        name="workstation",
        fabric="none",
        num_nodes=1,
        gpus_per_node=num_gpus,
        nics_per_node=0,
        scale_up=scale_up,
        description="single workstation, GPUs over PCIe",
    )
