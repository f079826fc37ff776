"""Emitters: a rank map written as per-rank environment, an Open MPI rankfile, or Slurm flags,
and parsers that read each form back (so every emitter round-trips in tests).

Environment per rank: `CUDA_VISIBLE_DEVICES` (every GPU of the node, ordered so that device
`local rank` is the map's GPU; unset when that is the natural order: docs/LAUNCHING.md,
"GPU selection"), `NCCL_IB_HCA` in NCCL's exact
`=hca:port:rail:plane` form (NCCL_IB_HCA in NCCL's env.rst: `<hca>[:<port>[:<rail>[:<plane>]]]`;
NCCL never connects NICs of different planes), `NCCL_CROSS_NIC`, `UCX_NET_DEVICES` (the rank's
own NIC), and `NVSHMEM_HCA_PE_MAPPING` (`hca:port:count` for the PEs of the node in local-rank
order, with `NVSHMEM_ENABLE_NIC_PE_MAPPING=1`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from topologies.cluster import Cluster
from topologies.rankmap import RankMap, validate

IB_PORT = 1


def nccl_ib_hca(cluster: Cluster) -> str:
    """NCCL_IB_HCA listing every NIC of a node with its rail (NIC index) and plane."""
    if cluster.fabric == "none":
        return ""
    planes = cluster.nic_plane(np.arange(cluster.nics_per_node))
    return "=" + ",".join(
        f"{cluster.nic_name(i)}:{IB_PORT}:{i}:{int(planes[i])}"
        for i in range(cluster.nics_per_node)
    )


def nccl_cross_nic(cluster: Cluster) -> str:
    """0 where rails must not be crossed (multi-plane), 2 on rail-optimized trees (NCCL's
    default: prefer the same NIC), 1 on a single-plane fat-tree."""
    return {"multi-plane": "0", "multi-rail": "2", "fat-tree": "1"}.get(cluster.fabric, "0")


def _node_pe_mapping(cluster: Cluster, rmap: RankMap, node: int) -> str:
    mine = np.flatnonzero(rmap.node == node)
    mine = mine[np.argsort(rmap.local_rank[mine], kind="stable")]
    nics = rmap.nic(cluster)[mine]
    parts: list[str] = []
    start = 0
    for i in range(1, nics.size + 1):
        if i == nics.size or nics[i] != nics[start]:
            parts.append(f"{cluster.nic_name(int(nics[start]))}:{IB_PORT}:{i - start}")
            start = i
    return ",".join(parts)


def visible_devices(rmap: RankMap, node: int, gpus_per_node: int) -> list[int]:
    """The CUDA_VISIBLE_DEVICES order of `node`: the map's GPU of each of the node's ranks in
    local-rank order, then the node's other GPUs. A rank opens device `local rank` (its index
    among the node's ranks, which the launcher gives), so it lands on the map's GPU."""
    mine = np.flatnonzero(rmap.node == node)
    mine = mine[np.argsort(rmap.local_rank[mine], kind="stable")]
    order = [int(g) for g in rmap.gpu[mine]]
    return order + [g for g in range(gpus_per_node) if g not in order]


def device_env(rmap: RankMap, rank: int, gpus_per_node: int) -> dict[str, str]:
    """The GPU part of a rank's environment: every GPU of the node stays visible, reordered
    by `visible_devices`; nothing when that order is the natural one (so a scheduler's own
    CUDA_VISIBLE_DEVICES stays)."""
    order = visible_devices(rmap, int(rmap.node[rank]), gpus_per_node)
    if order == list(range(gpus_per_node)):
        return {}
    return {"CUDA_VISIBLE_DEVICES": ",".join(map(str, order))}


def opened_gpu(env: Mapping[str, str], local_rank: int) -> int:
    """The physical GPU that the rank with `local_rank` opens under `env`: device
    `local_rank` of CUDA_VISIBLE_DEVICES, or GPU `local_rank` when it is unset."""
    visible = env.get("CUDA_VISIBLE_DEVICES", "").strip()
    if not visible:
        return local_rank
    order = visible.split(",")
    if local_rank >= len(order):
        raise ValueError(f"local rank {local_rank} but CUDA_VISIBLE_DEVICES={visible!r}")
    return int(order[local_rank])


def rank_env(cluster: Cluster, rmap: RankMap, rank: int) -> dict[str, str]:
    """Environment for one rank (strings): `device_env`, plus the NIC settings."""
    validate(cluster, rmap)
    if not 0 <= rank < rmap.world:
        raise ValueError(f"rank {rank} outside 0..{rmap.world - 1}")
    node = int(rmap.node[rank])
    env = device_env(rmap, rank, cluster.gpus_per_node)
    if cluster.fabric != "none":
        nic = cluster.nic_name(int(rmap.nic(cluster)[rank]))
        env.update(
            NCCL_IB_HCA=nccl_ib_hca(cluster),
            NCCL_CROSS_NIC=nccl_cross_nic(cluster),
            UCX_NET_DEVICES=f"{nic}:{IB_PORT}",
            NVSHMEM_ENABLE_NIC_PE_MAPPING="1",
            NVSHMEM_HCA_PE_MAPPING=_node_pe_mapping(cluster, rmap, node),
        )
    return env


def all_rank_env(cluster: Cluster, rmap: RankMap) -> list[dict[str, str]]:
    """rank_env for every rank."""
    return [rank_env(cluster, rmap, r) for r in range(rmap.world)]


def placement_from_env(
    cluster: Cluster, envs: list[dict[str, str]], local_ranks: Sequence[int]
) -> list[tuple[int, int]]:
    """(gpu, nic) of each rank read back from its environment and its local rank."""
    prefix = re.escape(cluster.nic_prefix)
    out = []
    for env, local_rank in zip(envs, local_ranks, strict=True):
        gpu = opened_gpu(env, int(local_rank))
        m = re.fullmatch(prefix + r"(\d+):\d+", env.get("UCX_NET_DEVICES", ""))
        nic = int(m.group(1)) if m else -1
        out.append((gpu, nic))
    return out


def host_name(node: int, hosts: list[str] | None = None) -> str:
    """Host name of a node: hosts[node], or node000, node001, ..."""
    if hosts is not None:
        if node >= len(hosts):
            raise ValueError(f"{len(hosts)} host names given; node {node} needs more")
        return hosts[node]
    return f"node{node:03d}"


def openmpi_rankfile(rmap: RankMap, hosts: list[str] | None = None, cores_per_rank: int = 1) -> str:
    """Open MPI rankfile: `rank R=HOST slot=C0-C1`, the cores of GPU g being
    g*cores_per_rank .. (g+1)*cores_per_rank-1 (the GPU itself is chosen by
    CUDA_VISIBLE_DEVICES or the local rank)."""
    if cores_per_rank < 1:
        raise ValueError(f"cores_per_rank={cores_per_rank}; use >= 1")
    lines = []
    for r in range(rmap.world):
        g = int(rmap.gpu[r])
        lo, hi = g * cores_per_rank, (g + 1) * cores_per_rank - 1
        slot = str(lo) if lo == hi else f"{lo}-{hi}"
        lines.append(f"rank {r}={host_name(int(rmap.node[r]), hosts)} slot={slot}")
    return "\n".join(lines) + "\n"


def parse_openmpi_rankfile(
    text: str, hosts: list[str] | None = None, cores_per_rank: int = 1
) -> RankMap:
    """Read back a rankfile written by `openmpi_rankfile`."""
    rows = {}
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        m = re.fullmatch(r"\s*rank\s+(\d+)\s*=\s*(\S+)\s+slot=(\d+)(?:-\d+)?\s*", raw)
        if not m:
            raise ValueError(f"rankfile line {raw!r}; want `rank R=HOST slot=C`")
        host = m.group(2)
        node = hosts.index(host) if hosts else int(re.sub(r"\D", "", host))
        rows[int(m.group(1))] = (node, int(m.group(3)) // cores_per_rank)
    arr = np.asarray([rows[r] for r in range(len(rows))], dtype=np.int64)
    return RankMap(name="rankfile", node=arr[:, 0], gpu=arr[:, 1])


def slurm_flags(cluster: Cluster, rmap: RankMap) -> list[str]:
    """srun flags that reproduce the map, or the `arbitrary` form plus per-rank env.

    Block and cyclic maps with one GPU order on every node come out as
    `--distribution=block|cyclic` and `--gpu-bind=map_gpu:...`; anything else as
    `--distribution=arbitrary` (SLURM_HOSTFILE from `slurm_hostfile`) with GPUs bound per
    rank through CUDA_VISIBLE_DEVICES.
    """
    validate(cluster, rmap)
    nodes = np.unique(rmap.node)
    per_node = np.bincount(rmap.node)[nodes]
    local = rmap.local_rank
    order = np.full((int(nodes.max()) + 1, int(per_node.max())), -1, dtype=np.int64)
    order[rmap.node, local] = rmap.gpu
    same_order = bool((order[nodes] == order[nodes[0]]).all())
    flags = [f"--nodes={nodes.size}", f"--ntasks={rmap.world}"]
    ranks = np.arange(rmap.world)
    block = np.array_equal(rmap.node, nodes[ranks // per_node[0]]) and bool(
        (per_node == per_node[0]).all()
    )
    cyclic = np.array_equal(rmap.node, nodes[ranks % nodes.size])
    if same_order and nodes[0] == 0 and np.array_equal(nodes, np.arange(nodes.size)):
        dist = "block:block" if block else ("cyclic:block" if cyclic else "")
        if dist:
            gpus = ",".join(str(int(g)) for g in order[0] if g >= 0)
            return [
                *flags,
                f"--ntasks-per-node={int(per_node.max())}",
                f"--distribution={dist}",
                f"--gpu-bind=map_gpu:{gpus}",
            ]
    return [*flags, "--distribution=arbitrary"]


def slurm_hostfile(rmap: RankMap, hosts: list[str] | None = None) -> str:
    """SLURM_HOSTFILE for `--distribution=arbitrary`: the host of each rank, in rank order."""
    return "\n".join(host_name(int(n), hosts) for n in rmap.node) + "\n"


def parse_slurm_flags(
    flags: list[str], hostfile: str = "", gpus: list[int] | None = None
) -> RankMap:
    """Read back the layout `slurm_flags` describes (arbitrary: hostfile plus per-rank GPUs)."""
    opts = dict(f.lstrip("-").split("=", 1) for f in flags)
    world, num_nodes = int(opts["ntasks"]), int(opts["nodes"])
    ranks = np.arange(world)
    dist = opts.get("distribution", "block")
    if dist == "arbitrary":
        hosts = hostfile.split()
        node = np.asarray([int(re.sub(r"\D", "", h)) for h in hosts], dtype=np.int64)
        if gpus is None or len(gpus) != world or node.size != world:
            raise ValueError("arbitrary distribution needs a hostfile and a GPU per rank")
        return RankMap(name="slurm", node=node, gpu=np.asarray(gpus, dtype=np.int64))
    per_node = int(opts["ntasks-per-node"])
    if dist.startswith("block"):
        node, local = ranks // per_node, ranks % per_node
    else:
        node, local = ranks % num_nodes, ranks // num_nodes
    gmap = np.asarray([int(g) for g in opts["gpu-bind"].split(":", 1)[1].split(",")])
    return RankMap(name="slurm", node=node.astype(np.int64), gpu=gmap[local].astype(np.int64))
