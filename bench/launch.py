"""How was this process started? Rank, local rank, node and rendezvous from the launcher.

Detection order follows DESIGN.md §8: torchrun (and epbench's own `--np` spawner, which
sets the same variables), then MPI launchers (Open MPI, MPICH/Hydra, PMIx), then Slurm
step variables. The result is confirmed after the communicator exists: bench gathers
hostnames and checks the launcher's view of nodes against them (`confirm_nodes`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import socket
from collections.abc import Mapping, Sequence

from bench.errors import UsageError
from collectives.backends.base import LaunchInfo


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
) -> LaunchInfo:
    """Turn detected facts plus `--gpus-per-node` into the LaunchInfo a backend needs."""
    per_node = gpus_per_node or found.host_local_world
    if per_node <= 0 or found.world % per_node:
        raise UsageError(
            f"--gpus-per-node {per_node} does not divide the {found.world} ranks; "
            "choose a divisor of the world size"
        )
    addr = found.master_addr
    if addr is None:
        if found.host_local_world != found.world:
            raise UsageError(
                f"ranks span several hosts under {found.launcher} but MASTER_ADDR is not set; "
                "export MASTER_ADDR (and MASTER_PORT) to the first host"
            )
        addr = "127.0.0.1"
    port = found.master_port or (_port_for(found.job_id) if found.job_id else default_port)
    return LaunchInfo(
        rank=found.rank,
        world=found.world,
        local_rank=found.rank % per_node if gpus_per_node else found.host_local_rank,
        local_world=per_node,
        node=found.rank // per_node,
        num_nodes=found.world // per_node,
        host_local_rank=found.host_local_rank,
        launcher=found.launcher,
        master_addr=addr,
        master_port=port,
        timeout_s=timeout_s,
        device=device,
        options=dict(options or {}),
    )


def confirm_nodes(
    hostnames: Sequence[str], launch: LaunchInfo, virtual: bool
) -> dict[str, list[int]]:
    """Check the node layout against the hostnames every rank reported after init.

    Physical nodes are hostnames in order of their lowest rank. Without virtual nodes each
    launcher node must be exactly one host; with them, a virtual node must not span hosts.
    Returns {hostname: [ranks]}.
    """
    by_host: dict[str, list[int]] = {}
    for rank, host in enumerate(hostnames):
        by_host.setdefault(host, []).append(rank)
    per_node = launch.local_world
    for node in range(launch.num_nodes):
        members = range(node * per_node, (node + 1) * per_node)
        hosts = {hostnames[r] for r in members}
        if len(hosts) > 1:
            kind = "virtual node" if virtual else "node"
            raise UsageError(
                f"{kind} {node} (ranks {members.start}-{members.stop - 1}) spans hosts "
                f"{sorted(hosts)}; place ranks in blocks per host or change --gpus-per-node"
            )
    if not virtual and len(by_host) != launch.num_nodes:
        raise UsageError(
            f"launcher reports {launch.num_nodes} nodes of {per_node} ranks but ranks run "
            f"on {len(by_host)} hosts; pass --gpus-per-node to set the layout explicitly"
        )
    return by_host


def this_host() -> str:
    return socket.gethostname()
