"""How was this process started? Rank, local rank, node and rendezvous from the launcher.

Detection order follows DESIGN.md §8: torchrun (and epbench's own `--np` spawner, which
sets the same variables), then MPI launchers (Open MPI, MPICH/Hydra, PMIx), then Slurm
step variables. Which node each rank is on is settled after the communicator exists:
every rank reports its launcher node (Slurm's node, hydra's host, else the hostname), its
hostname and its local rank; `node_layout` derives the rank -> node map from them
(collectives.nodemap: block, cyclic or any placement, virtual nodes for `--gpus-per-node`)
and `place_comm` hands it to the communicator.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import socket
from collections.abc import Mapping, Sequence

from bench.errors import UsageError
from collectives import nodemap
from collectives.backends.base import Comm, LaunchInfo
from collectives.nodemap import NodeMap


@dataclasses.dataclass(frozen=True, kw_only=True)
class Detected:
    """What the launcher's variables say about this process."""

    launcher: str
    """torchrun, spawn, openmpi, mpich, pmix, slurm or single."""
    rank: int
    world: int
    host_local_rank: int
    """Index among the ranks on this host (selects the GPU)."""
    host_local_world: int
    """Ranks on this host."""
    master_addr: str | None
    master_port: int | None
    job_id: str = ""


def _int(env: Mapping[str, str], *names: str) -> int | None:
    for name in names:
        value = env.get(name)
        if value is not None and value.strip().lstrip("-").isdigit():
            return int(value)
    return None


def _port_for(job_id: str) -> int:
    """A rendezvous port every rank of one job derives alike (20000-29999)."""
    digest = hashlib.sha256(job_id.encode()).digest()
    return 20000 + int.from_bytes(digest[:4], "big") % 10000


def expand_hostlist(hostlist: str) -> list[str]:
    """Expand a Slurm hostlist such as `n[1-3,5],gpu[01-02]` into host names."""
    hosts: list[str] = []
    for part in re.findall(r"[^,\[]+(?:\[[^\]]*\])?[^,]*", hostlist):
        match = re.fullmatch(r"([^\[]*)\[([^\]]*)\](.*)", part)
        if not match:
            hosts.append(part)
            continue
        prefix, ranges, suffix = match.groups()
        for item in ranges.split(","):
            lo, _, hi = item.partition("-")
            width = len(lo)
            for num in range(int(lo), int(hi or lo) + 1):
                hosts.append(f"{prefix}{num:0{width}d}{suffix}")
    return hosts


def _torchrun(env: Mapping[str, str]) -> Detected | None:
    rank, world = _int(env, "RANK"), _int(env, "WORLD_SIZE")
    local = _int(env, "LOCAL_RANK")
    if rank is None or world is None or local is None:
        return None
    return Detected(
        launcher="spawn" if env.get("EPBENCH_LAUNCHER") == "spawn" else "torchrun",
        rank=rank,
        world=world,
        host_local_rank=local,
        host_local_world=_int(env, "LOCAL_WORLD_SIZE") or world,
        master_addr=env.get("MASTER_ADDR"),
        master_port=_int(env, "MASTER_PORT"),
        job_id=env.get("TORCHELASTIC_RUN_ID", ""),
    )


def _mpi(env: Mapping[str, str]) -> Detected | None:
    flavours = (
        (
            "openmpi",
            "OMPI_COMM_WORLD_RANK",
            "OMPI_COMM_WORLD_SIZE",
            "OMPI_COMM_WORLD_LOCAL_RANK",
            "OMPI_COMM_WORLD_LOCAL_SIZE",
        ),
        ("mpich", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
        ("pmix", "PMIX_RANK", "PMIX_SIZE", "PMIX_LOCAL_RANK", "PMIX_LOCAL_SIZE"),
    )
    for name, rank_var, size_var, local_var, local_size_var in flavours:
        rank, world = _int(env, rank_var), _int(env, size_var)
        if rank is None or world is None:
            continue
        local = _int(env, local_var, "SLURM_LOCALID")
        local_world = _int(env, local_size_var)
        job = (
            env.get("OMPI_MCA_ess_base_jobid")
            or env.get("PMI_JOBID")
            or env.get("SLURM_JOB_ID", "")
        )
        return Detected(
            launcher=name,
            rank=rank,
            world=world,
            host_local_rank=local if local is not None else rank,
            host_local_world=local_world if local_world is not None else world,
            master_addr=env.get("MASTER_ADDR"),
            master_port=_int(env, "MASTER_PORT"),
            job_id=job,
        )
    return None


def _slurm(env: Mapping[str, str]) -> Detected | None:
    rank, world = _int(env, "SLURM_PROCID"), _int(env, "SLURM_NTASKS", "SLURM_NPROCS")
    if rank is None or world is None or "SLURM_STEP_ID" not in env:
        return None
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or ""
    hosts = expand_hostlist(nodelist) if nodelist else []
    job = f"{env.get('SLURM_JOB_ID', '')}.{env.get('SLURM_STEP_ID', '')}"
    tasks = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE") or ""
    per_node = re.match(r"(\d+)", tasks)
    return Detected(
        launcher="slurm",
        rank=rank,
        world=world,
        host_local_rank=_int(env, "SLURM_LOCALID") or 0,
        host_local_world=int(per_node.group(1)) if per_node else world,
        master_addr=env.get("MASTER_ADDR") or (hosts[0] if hosts else None),
        master_port=_int(env, "MASTER_PORT") or _port_for(job),
        job_id=job,
    )


def detect(env: Mapping[str, str]) -> Detected:
    """The launcher's view of this process; a single process when nothing launched us."""
    for probe in (_torchrun, _mpi, _slurm):
        found = probe(env)
        if found is not None:
            if not 0 <= found.rank < found.world:
                raise UsageError(
                    f"{found.launcher} says rank {found.rank} of {found.world}; "
                    "check the launcher's environment"
                )
            return found
    return Detected(
        launcher="single",
        rank=0,
        world=1,
        host_local_rank=0,
        host_local_world=1,
        master_addr="127.0.0.1",
        master_port=None,
    )


def launch_info(
    found: Detected,
    *,
    gpus_per_node: int | None,
    timeout_s: float,
    device: str = "auto",
    options: Mapping[str, object] | None = None,
    default_port: int = 29500,
    rendezvous: bool = True,
) -> LaunchInfo:
    """Turn detected facts plus `--gpus-per-node` into the LaunchInfo a backend needs.
    `rendezvous`: the backend meets at MASTER_ADDR (all but `mpi`), so ranks on several
    hosts need it set.

    Its node fields assume ranks in blocks of `gpus_per_node` (or of the launcher's ranks
    per host); `place_comm` replaces them with the real layout once the communicator exists.
    """
    per_node = gpus_per_node or found.host_local_world
    try:
        provisional = nodemap.block(found.world, per_node)
    except ValueError:
        raise UsageError(
            f"--gpus-per-node {per_node} does not divide the {found.world} ranks; "
            "choose a divisor of the world size"
        ) from None
    addr = found.master_addr
    if addr is None:
        if rendezvous and found.host_local_world != found.world:
            raise UsageError(
                f"ranks span several hosts under {found.launcher} but MASTER_ADDR is not set; "
                "export MASTER_ADDR (and MASTER_PORT) to the first host"
            )
        addr = "127.0.0.1"
    port = found.master_port or (_port_for(found.job_id) if found.job_id else default_port)
    return LaunchInfo(
        rank=found.rank,
        world=found.world,
        local_rank=provisional.local_rank[found.rank],
        local_world=provisional.local_world,
        node=provisional.node[found.rank],
        num_nodes=provisional.num_nodes,
        host_local_rank=found.host_local_rank,
        launcher=found.launcher,
        master_addr=addr,
        master_port=port,
        timeout_s=timeout_s,
        device=device,
        options=dict(options or {}),
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Whereabouts:
    """What one rank reports about its node after init (all-gathered)."""

    node_key: str
    """The launcher's name for this rank's node (see `node_key`)."""
    hostname: str
    host_local_rank: int
    """The launcher's local rank (selects the GPU)."""


def node_key(env: Mapping[str, str], hostname: str) -> str:
    """What identifies this rank's node: Slurm's node (under a Slurm step), hydra's host
    name (PMI_HOSTNAME), else the host name. Ranks with equal keys share a node."""
    if "SLURM_STEP_ID" in env:
        slurm_node = env.get("SLURMD_NODENAME") or env.get("SLURM_NODEID")
        if slurm_node:
            return f"slurm:{slurm_node}"
    if env.get("PMI_HOSTNAME"):
        return f"hydra:{env['PMI_HOSTNAME']}"
    return f"host:{hostname}"


def whereabouts(env: Mapping[str, str], found: Detected) -> Whereabouts:
    host = this_host()
    return Whereabouts(
        node_key=node_key(env, host), hostname=host, host_local_rank=found.host_local_rank
    )


def node_layout(reports: Sequence[Whereabouts], gpus_per_node: int | None) -> NodeMap:
    """The rank -> node map from every rank's report, split into `--gpus-per-node` virtual
    nodes when given. A UsageError names the rank and node when the launcher's view cannot
    be right: a node on two hosts, two ranks of a node with one local rank (one GPU), or
    nodes of different sizes."""
    by_key: dict[str, Whereabouts] = {}
    for rank, rep in enumerate(reports):
        first = by_key.setdefault(rep.node_key, rep)
        if rep.hostname != first.hostname:
            raise UsageError(
                f"launcher node {rep.node_key} holds ranks on hosts {first.hostname} and "
                f"{rep.hostname} (rank {rank}); check the launcher's host list"
            )
    seen: dict[tuple[str, int], int] = {}
    for rank, rep in enumerate(reports):
        other = seen.setdefault((rep.node_key, rep.host_local_rank), rank)
        if other != rank:
            raise UsageError(
                f"ranks {other} and {rank} on {rep.node_key} both have local rank "
                f"{rep.host_local_rank} (they would share a GPU); check the launcher's options"
            )
    try:
        hosts = nodemap.from_keys([rep.node_key for rep in reports])
        return nodemap.virtual(hosts, gpus_per_node) if gpus_per_node else hosts
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def place_comm(
    comm: Comm, env: Mapping[str, str], found: Detected, gpus_per_node: int | None
) -> NodeMap:
    """Gather every rank's whereabouts over `comm`, derive the node layout, and give `comm`
    its real node, local rank and node sizes. Returns the map (the same on every rank)."""
    nodes = node_layout(comm.gather_object(whereabouts(env, found)), gpus_per_node)
    place(comm, nodes)
    return nodes


def place(comm: Comm, nodes: NodeMap) -> None:
    """Set the placement attributes of `comm` (world communicator) from `nodes`."""
    comm.node = nodes.node[comm.rank]
    comm.local_rank = nodes.local_rank[comm.rank]
    comm.local_world = nodes.local_world
    comm.num_nodes = nodes.num_nodes


def this_host() -> str:
    return socket.gethostname()
