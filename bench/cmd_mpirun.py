"""`epbench mpirun gen`: host files for mpirun/mpiexec, and the rank layout both launchers use.

A rank map (topologies.make_rank_map) says on which node and on which GPU each rank runs;
with a topology it also gives each rank its NIC environment (topologies.emit.rank_env). From
them this module writes an Open MPI hostfile and rankfile, an MPICH (hydra) machinefile, the
per-rank environment files that the wrapper `slurm/epbench-rank.sh` applies, and a launch
line. `slurm gen` uses the same layout and files (the wrapper and the sbatch template are
package data in bench/templates), so a rank sees the same settings under srun
and under mpiexec. Every GPU of a node stays visible: the rank takes device `local rank`, and
the env file orders CUDA_VISIBLE_DEVICES so that this device is the map's GPU.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import importlib.resources
import pathlib
import shlex

from bench.errors import UsageError
from bench.sweep import RANK_MAPS
from topologies import Cluster, emit, load_cluster, make_cluster, make_rank_map

# Shell templates ship inside the package (package data), so an installed epbench finds them.
TEMPLATES = importlib.resources.files("bench").joinpath("templates")
WRAPPER = TEMPLATES.joinpath("epbench-rank.sh")
SRUN_DISTRIBUTION = {"block": "block", "cyclic": "cyclic", "plane-aligned": "block"}
SRUN_DISTRIBUTION["misaligned"] = "block"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Layout:
    """Where every rank of one launch runs, and the environment it starts with."""

    places: list[tuple[int, int]]
    """(node, local rank) of each rank; srun's distribution and the host files reproduce it."""
    envs: list[dict[str, str]]
    """Environment of each rank: visible-GPU order, and NIC settings when a topology is known."""


def load_topology(name_or_path: str, num_nodes: int, gpus_per_node: int) -> Cluster:
    """A topologies preset by name, or a cluster TOML file, sized to `num_nodes` nodes."""
    path = pathlib.Path(name_or_path)
    text = path.read_text() if path.suffix == ".toml" and path.is_file() else name_or_path
    try:
        cluster = load_cluster(text, num_nodes=num_nodes)
    except ValueError as exc:
        raise UsageError(f"topology {name_or_path!r}: {exc}") from None
    if cluster.gpus_per_node != gpus_per_node:
        raise UsageError(
            f"topology {name_or_path!r} has {cluster.gpus_per_node} GPUs per node but the "
            f"launch runs {gpus_per_node} ranks per node; make them equal"
        )
    return cluster


def layout(
    rank_map: str, num_nodes: int, gpus_per_node: int, cluster: Cluster | None = None
) -> Layout:
    """Placement and per-rank environment of `rank_map` (one of RANK_MAPS).

    Without a cluster, a plain one of the right size places the ranks and the environment
    holds only the GPU order; NIC settings need the real topology.
    """
    known = cluster is not None
    if cluster is None:
        cluster = make_cluster(
            name="launch",
            fabric="fat-tree",
            num_nodes=num_nodes,
            nics_per_node=1,
            gpus_per_node=gpus_per_node,
            switch_radix=max(64, 2 * num_nodes),
        )
    rmap = make_rank_map(cluster, rank_map, num_nodes * gpus_per_node)
    places = list(zip(rmap.node.tolist(), rmap.local_rank.tolist(), strict=True))
    envs = [
        emit.rank_env(cluster, rmap, rank) if known else emit.device_env(rmap, rank, gpus_per_node)
        for rank in range(rmap.world)
    ]
    return Layout(places=places, envs=envs)


def install_wrapper(folder: pathlib.Path) -> pathlib.Path:
    """Copy the per-rank wrapper `epbench-rank.sh` into `folder`, executable."""
    target = folder / "epbench-rank.sh"
    target.write_bytes(WRAPPER.read_bytes())
    target.chmod(0o755)
    return target


def write_env_files(folder: pathlib.Path, envs: list[dict[str, str]]) -> None:
    """One `rank-R.env` per rank (shell-quoted NAME=VALUE lines) for the wrapper to source."""
    folder.mkdir(parents=True, exist_ok=True)
    for rank, env in enumerate(envs):
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
    cluster = None
    if args.topology:
        cluster = load_topology(args.topology, len(hosts), args.gpus_per_node)
    lay = layout(args.rank_map, len(hosts), args.gpus_per_node, cluster)
    out = pathlib.Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in host_files(hosts, lay.places, args.gpus_per_node).items():
        (out / name).write_text(text)
    write_env_files(out / "env", lay.envs)
    install_wrapper(out)
    world = len(lay.places)
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
    p.add_argument("--topology", default="", help="preset or cluster TOML: per-rank NIC env")
    p.add_argument("-o", "--output", required=True, help="folder for the files")
    p.add_argument("command", nargs="*", help="command each rank runs (after --)")
    p.set_defaults(func=gen)
