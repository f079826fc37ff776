"""`epbench mpirun gen`: host files for mpirun/mpiexec, and the rank placement both launchers use.

A rank map says on which node, and at which local index (GPU, plane), each rank runs.
From it this module writes an Open MPI hostfile and rankfile, an MPICH (hydra) machinefile,
the per-rank environment files the wrapper `slurm/epbench-rank.sh` applies (NIC of the
rank's plane), and a launch line. `slurm gen` uses the same placement and environment files,
so a rank sees the same settings under srun and under mpiexec.
"""

from __future__ import annotations

import argparse
import csv
import pathlib
import shlex
import shutil

from bench.errors import UsageError
from bench.sweep import RANK_MAPS

WRAPPER = pathlib.Path(__file__).resolve().parents[1] / "slurm" / "epbench-rank.sh"
SRUN_DISTRIBUTION = {"block": "block", "cyclic": "cyclic", "plane-aligned": "block"}
SRUN_DISTRIBUTION["misaligned"] = "block"


def placement(rank_map: str, num_nodes: int, gpus_per_node: int) -> list[tuple[int, int]]:
    """(node, local index) of every rank. block, plane-aligned and misaligned fill node by
    node (local index = GPU = plane); cyclic deals ranks round-robin over the nodes."""
    if rank_map not in RANK_MAPS:
        raise ValueError(f"rank map {rank_map!r} unknown; choose from {', '.join(RANK_MAPS)}")
    world = num_nodes * gpus_per_node
    if rank_map == "cyclic":
        return [(rank % num_nodes, rank // num_nodes) for rank in range(world)]
    return [(rank // gpus_per_node, rank % gpus_per_node) for rank in range(world)]


def rank_env(
    rank_map: str, node: int, local: int, nics: tuple[str, ...], gpus_per_node: int
) -> dict[str, str]:
    """Environment of one rank: which physical GPU its local index means, and its NIC.

    Every GPU of the node stays visible and the rank takes device `local`. Aligned maps keep
    the natural order, so local index i is GPU i on plane i (`nics[i]`). `misaligned` rotates
    the visible order by the node index: local index i is GPU (i + node) mod G with that GPU's
    NIC, so ranks with the same local index sit on different planes.
    """
    env: dict[str, str] = {}
    gpu = local
    if rank_map == "misaligned":
        gpu = (local + node) % gpus_per_node
        order = [(i + node) % gpus_per_node for i in range(gpus_per_node)]
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, order))
    if nics:
        nic = nics[gpu % len(nics)]
        env.update(NCCL_IB_HCA=f"={nic}", UCX_NET_DEVICES=f"{nic}:1")
    return env


def write_env_files(
    folder: pathlib.Path, places: list[tuple[int, int]], rank_map: str, nics: tuple[str, ...]
) -> None:
    """One `rank-R.env` per rank (shell-quoted NAME=VALUE lines) for the wrapper to source."""
    folder.mkdir(parents=True, exist_ok=True)
    gpus_per_node = 1 + max(local for _, local in places)
    for rank, (node, local) in enumerate(places):
        env = rank_env(rank_map, node, local, nics, gpus_per_node)
        lines = [f"{key}={shlex.quote(value)}\n" for key, value in sorted(env.items())]
        (folder / f"rank-{rank}.env").write_text("".join(lines))


def host_files(
    hosts: list[str], places: list[tuple[int, int]], gpus_per_node: int
) -> dict[str, str]:
    """Open MPI hostfile and rankfile and MPICH machinefile for `places` on `hosts`."""
    hostfile = "".join(f"{host} slots={gpus_per_node}\n" for host in hosts)
    rankfile = "".join(
        f"rank {rank}={hosts[node]} slot={local}\n" for rank, (node, local) in enumerate(places)
    )
    machinefile = "".join(f"{hosts[node]}:{count}\n" for node, count in machine_runs(places))
    return {"hostfile": hostfile, "rankfile": rankfile, "machinefile": machinefile}


def machine_runs(places: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(node, count) lines of an MPICH machinefile that reproduce `places`.

    Hydra deals ranks to the lines in order and wraps around, and it starts one proxy per
    line, so local ranks are numbered per line: the shortest repeating pattern with each
    node on one line keeps them right (block: `a:G b:G`; cyclic: `a:1 b:1`).
    """
    runs: list[tuple[int, int]] = []
    for node, _ in places:
        if runs and runs[-1][0] == node:
            runs[-1] = (node, runs[-1][1] + 1)
        else:
            runs.append((node, 1))
    for period in range(1, len(runs) + 1):
        head = runs[:period]
        repeats, rest = divmod(len(runs), period)
        if not rest and head * repeats == runs and len({n for n, _ in head}) == period:
            return head
    raise ValueError("this placement has no MPICH machinefile; use the Open MPI rankfile")


def read_tsv(path: pathlib.Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def rank_rows(step_dir: pathlib.Path) -> list[dict[str, str]]:
    """The wrapper's placement rows of one step, by rank."""
    rows = [row for p in step_dir.glob("rank-*.tsv") for row in read_tsv(p)]
    return sorted(rows, key=lambda r: int(r["rank"]))


def check_table(rows: list[dict[str, str]], num_ranks: int) -> str:
    """'' if ranks 0..num_ranks-1 each appear once with distinct (node, local rank); else why."""
    ranks = [int(r["rank"]) for r in rows]
    if sorted(ranks) != list(range(num_ranks)):
        missing = sorted(set(range(num_ranks)) - set(ranks))
        return f"expected ranks 0..{num_ranks - 1}, got {len(rows)} (missing {missing})"
    places = {(r["node_name"], r["local_rank"]) for r in rows}
    if len(places) != len(rows):
        return "two ranks share one (node, local rank); check --ntasks-per-node and srun"
    return ""


def gen(args: argparse.Namespace) -> int:
    hosts = [h for h in args.hosts.split(",") if h]
    if not hosts or len(set(hosts)) != len(hosts):
        raise UsageError(f"--hosts {args.hosts!r}: give distinct host names, comma-separated")
    if args.gpus_per_node < 1:
        raise UsageError(f"--gpus-per-node {args.gpus_per_node}: must be >= 1")
    nics = tuple(n for n in args.nics.split(",") if n)
    places = placement(args.rank_map, len(hosts), args.gpus_per_node)
    out = pathlib.Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in host_files(hosts, places, args.gpus_per_node).items():
        (out / name).write_text(text)
    write_env_files(out / "env", places, args.rank_map, nics)
    shutil.copy(WRAPPER, out / "epbench-rank.sh")
    world = len(places)
    base = out.resolve()
    wrap = " ".join(shlex.quote(str(base / p)) for p in ("epbench-rank.sh", "env", "ranks"))
    wrap += " --"
    cmd = " ".join(shlex.quote(c) for c in args.command) or "python -m bench run alltoall"
    lines = {
        "mpich": f"mpiexec -f {out}/machinefile -n {world} {wrap} {cmd}",
        "openmpi": f"mpirun --rankfile {out}/rankfile -n {world} {wrap} {cmd}",
    }
    (out / "launch.txt").write_text("".join(f"{k}: {v}\n" for k, v in lines.items()))
    print(f"wrote hostfile, rankfile, machinefile, env/ and epbench-rank.sh to {out}")
    for flavor, line in lines.items():
        print(f"  {flavor}: {line}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("mpirun", help="write mpirun/mpiexec host files for a rank map")
    sub = parser.add_subparsers(dest="mpirun_command", metavar="ACTION", required=True)
    p = sub.add_parser("gen", help="hostfile, rankfile, machinefile and per-rank env files")
    p.add_argument("--hosts", required=True, help="comma-separated host names, one per node")
    p.add_argument("--gpus-per-node", type=int, required=True, help="ranks (GPUs) per node")
    p.add_argument("--rank-map", default="block", choices=RANK_MAPS)
    p.add_argument("--nics", default="", help="comma-separated NIC of each local GPU index")
    p.add_argument("-o", "--output", required=True, help="folder for the files")
    p.add_argument("command", nargs="*", help="command each rank runs (after --)")
    p.set_defaults(func=gen)
