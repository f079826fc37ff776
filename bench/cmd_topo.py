"""`epbench topo show|map|env|discover`: print a cluster, a rank map, per-rank environment, or
what this machine exposes (sysfs InfiniBand devices, NVML GPUs).

Also the helpers every command uses to turn `--topology/--preset PRESET_OR_FILE` and
`--rank-map NAME_OR_FILE` into model objects: `resolve_cluster` and `resolve_rank_map` (they
read the file, since topologies/ touches none).
"""

from __future__ import annotations

import argparse
import pathlib
from typing import Any

from bench.errors import UsageError
from topologies import (
    Cluster,
    RankMap,
    emit,
    load_cluster,
    make_rank_map,
    preset_names,
    problems,
    rank_map_from_text,
)
from topologies.rankmap import KINDS


def resolve_cluster(arg: str, **overrides: Any) -> Cluster:
    """A preset name or a TOML file path -> Cluster; UsageError naming the value otherwise."""
    path = pathlib.Path(arg)
    try:
        if arg.endswith(".toml") or (path.exists() and path.is_file()):
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise UsageError(f"cannot read cluster file {arg!r}: {exc.strerror}") from None
            return load_cluster(text, **overrides)
        if arg not in preset_names():
            raise UsageError(
                f"unknown topology {arg!r}; use a preset ({', '.join(preset_names())}) "
                "or a .toml file"
            )
        return load_cluster(arg, **overrides)
    except ValueError as exc:
        raise UsageError(f"topology {arg!r}: {exc}") from None


def resolve_rank_map(arg: str, cluster: Cluster, world: int = 0) -> RankMap:
    """A rank map kind (block, cyclic, plane-aligned, misaligned) or a `rank node gpu` file."""
    try:
        if arg in KINDS:
            return make_rank_map(cluster, arg, world)
        path = pathlib.Path(arg)
        if not path.is_file():
            raise UsageError(f"unknown rank map {arg!r}; use one of {', '.join(KINDS)} or a file")
        rmap = rank_map_from_text(cluster, path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UsageError(f"rank map {arg!r}: {exc}") from None
    if world and rmap.world != world:
        raise UsageError(f"rank map {arg!r} has {rmap.world} ranks, the run has {world}")
    return rmap


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("topo", help="show a cluster, a rank map, per-rank env, or discover")
    p.add_argument("action", choices=("show", "map", "env", "discover", "presets"))
    p.add_argument("preset", nargs="?", default="deepseek-mpft", help="preset name or .toml file")
    p.add_argument("--nodes", type=int, default=None, help="override the number of nodes")
    p.add_argument("--rank-map", default="block", help=f"{', '.join(KINDS)}, or a file")
    p.add_argument("--ranks", type=int, default=0, help="number of ranks (default: every GPU)")
    p.add_argument("--rank", type=int, default=None, help="env: only this rank")
    p.add_argument(
        "--format", choices=("table", "rankfile", "slurm", "text"), default="table",
        help="map: a table, an Open MPI rankfile, srun flags, or the rank-map file form",
    )  # fmt: skip
    p.add_argument("--limit", type=int, default=64, help="rows to print at most")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console()
    if args.action == "presets":
        for name in preset_names():
            console.print(f"{name:22s} {load_cluster(name).description}")
        return 0
    if args.action == "discover":
        from bench.discover import discover, print_discovery

        print_discovery(discover(), console)
        return 0
    cluster = resolve_cluster(args.preset, num_nodes=args.nodes)
    if args.action == "show":
        show_cluster(cluster, console)
        return 0
    rmap = resolve_rank_map(args.rank_map, cluster, args.ranks)
    if args.action == "map":
        return _print_map(cluster, rmap, args, console)
    ranks = [args.rank] if args.rank is not None else list(range(min(rmap.world, args.limit)))
    _print_env(cluster, rmap, ranks, console)
    return 0


def show_cluster(cluster: Cluster, console: Any) -> None:
    """Rich table of a cluster's description and derived geometry."""
    from rich.table import Table

    t = Table(title=f"cluster {cluster.name}", show_header=False)
    rows = [
        ("description", cluster.description),
        ("fabric", cluster.fabric),
        ("nodes x GPUs", f"{cluster.num_nodes} x {cluster.gpus_per_node} = {cluster.num_gpus}"),
        ("GPU model", cluster.gpu_model or "-"),
        ("NICs per node", str(cluster.nics_per_node)),
        ("planes", str(cluster.num_planes)),
        ("GPU -> NIC", " ".join(map(str, cluster.nic_of_gpu))),
        ("radix (down/up)", f"{cluster.switch_radix} ({cluster.down_ports}/{cluster.up_ports})"),
        ("leaves / spines", f"{cluster.num_leaves} / {cluster.num_spines}"),
        ("routing / forwarding", f"{cluster.resolved_routing} / {cluster.resolved_forwarding}"),
        ("bisection (one way)", f"{cluster.bisection_bytes_s() / 1e12:.2f} TB/s"),
    ]  # fmt: skip
    for link in (cluster.scale_out, cluster.scale_up):
        if cluster.fabric == "none" and link is cluster.scale_out:
            continue
        rows.append(
            (
                f"{link.kind} link",
                f"{link.name}: {link.bandwidth_gbyte_s:g} GB/s per direction "
                f"(nominal {link.nominal_gbyte_s:g}), {link.endpoint_latency_us:g} us + "
                f"{link.switch_latency_us:g} us/switch",
            )
        )
    for key, value in rows:
        t.add_row(key, value)
    console.print(t)


def _print_map(cluster: Cluster, rmap: RankMap, args: argparse.Namespace, console: Any) -> int:
    from rich.table import Table

    if args.format == "rankfile":
        console.print(emit.openmpi_rankfile(rmap), end="", markup=False)
    elif args.format == "slurm":
        console.print(" ".join(emit.slurm_flags(cluster, rmap)), markup=False)
    elif args.format == "text":
        from topologies import rank_map_to_text

        console.print(rank_map_to_text(rmap), end="", markup=False)
    else:
        cols = rmap.table(cluster)
        t = Table(title=f"rank map {rmap.name} on {cluster.name} ({rmap.world} ranks)")
        for name in cols:
            t.add_column(name, justify="right")
        for r in range(min(rmap.world, args.limit)):
            t.add_row(*(str(int(cols[name][r])) for name in cols))
        console.print(t)
        if rmap.world > args.limit:
            console.print(f"... {rmap.world - args.limit} more ranks (--limit)")
    for problem in problems(cluster, rmap):
        console.print(f"[yellow]note:[/yellow] {problem}")
    return 0


def _print_env(cluster: Cluster, rmap: RankMap, ranks: list[int], console: Any) -> None:
    from rich.table import Table

    t = Table(title=f"per-rank environment, {rmap.name} map on {cluster.name}")
    t.add_column("rank", justify="right")
    t.add_column("variable")
    t.add_column("value", overflow="fold")
    for r in ranks:
        if not 0 <= r < rmap.world:
            raise UsageError(f"--rank {r} outside 0..{rmap.world - 1}")
        for i, (key, value) in enumerate(emit.rank_env(cluster, rmap, r).items()):
            t.add_row(str(r) if i == 0 else "", key, value)
    console.print(t)
