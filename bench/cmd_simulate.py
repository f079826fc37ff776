"""`epbench simulate`: predicted time and bandwidth of alltoall, alltoallv and MoE
dispatch/combine on a modelled cluster, written as results records labelled predicted.

Each (cluster, op) is simulated once per traffic shape; sizes scale it exactly (max-min rates
do not depend on sizes). `--compare` puts a second cluster beside the first; `--seeds K`
repeats ECMP with K hash seeds and records the spread. `demo()` is the `epbench demo` hook.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import pathlib
import re
import statistics
import sys
import time
import uuid
from typing import Any

from bench.cmd_topo import resolve_cluster, resolve_rank_map
from bench.errors import UsageError
from results.schema import Footer, Header, Record
from topologies import Cluster, RankMap, Uniform, simulate
from topologies import traffic as tr
from topologies.rankmap import KINDS

OPS = ("alltoall", "alltoallv", "dispatch", "combine")
TOKEN_OPS = ("dispatch", "combine")


@dataclasses.dataclass(frozen=True, kw_only=True)
class MoeShape:
    """MoE traffic parameters for dispatch/combine."""

    hidden: int = 7168
    """Hidden size (elements per token)."""
    topk: int = 8
    """Experts per token."""
    num_experts: int = 256
    """Routed experts, placed contiguously on ranks."""
    node_limit: int = 0
    """Nodes a token may reach (0: no limit)."""
    dispatch_fp8: bool = True
    """FP8 dispatch (hidden + hidden/128*4 bytes per token) or BF16 (2*hidden)."""

    def dispatch_bytes(self) -> float:
        return self.hidden + self.hidden / 128 * 4 if self.dispatch_fp8 else 2.0 * self.hidden

    def combine_bytes(self) -> float:
        return 2.0 * self.hidden


def parse_size(text: str) -> int:
    """nccl-tests style size: 64, 1K, 16M, 1G (binary multiples)."""
    m = re.fullmatch(r"\s*(\d+)\s*([kKmMgGtT]?)\s*[bB]?\s*", text)
    if not m:
        raise UsageError(f"size {text!r} not understood; use e.g. 1024, 64K, 16M, 1G")
    return int(m.group(1)) << (10 * " KMGT".index(m.group(2).upper() or " "))


def sweep(begin: int, end: int, factor: int) -> list[int]:
    """Sizes begin, begin*factor, ... up to end (inclusive)."""
    if begin < 1 or end < begin or factor < 2:
        raise UsageError(f"-b {begin} -e {end} -f {factor}: need 1 <= b <= e and f >= 2")
    out, s = [], begin
    while s <= end:
        out.append(s)
        s *= factor
    return out


def shape_matrix(op: str, rmap: RankMap, cluster: Cluster, moe: MoeShape, seed: int) -> Any:
    """Traffic of one unit: 1 byte per pair (alltoall), a 1 MiB-per-rank alltoallv, or one
    token per rank (dispatch/combine). Sizes scale it."""
    world = rmap.world
    if op == "alltoall":
        return Uniform(world=world, bytes_per_pair=1.0)
    if op == "alltoallv":
        return tr.alltoallv_matrix(1 << 20, world, seed=seed)
    try:
        d = tr.dispatch_matrix(
            world=world, gpus_per_node=cluster.gpus_per_node, tokens_per_rank=1,
            bytes_per_token=moe.dispatch_bytes(), num_experts=moe.num_experts, topk=moe.topk,
            node_limit=moe.node_limit,
        )  # fmt: skip
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return (
        d if op == "dispatch" else tr.combine_matrix(d, moe.dispatch_bytes(), moe.combine_bytes())
    )


def unit_of(op: str, size: int, world: int) -> float:
    """How many shape units one sweep point is."""
    if op == "alltoall":
        return float(size // world)
    if op == "alltoallv":
        return size / float(1 << 20)
    return float(size)  # tokens per rank


def _records(
    op: str, cluster: Cluster, rmap: RankMap, sizes: list[int], args: argparse.Namespace
) -> list[Record]:
    moe = MoeShape(
        hidden=args.hidden,
        topk=args.topk,
        num_experts=args.experts,
        node_limit=args.node_limit,
        dispatch_fp8=args.dispatch_dtype == "fp8",
    )
    shape = shape_matrix(op, rmap, cluster, moe, args.seed)
    t0 = time.perf_counter()
    ecmp = (args.routing or cluster.resolved_routing) == "ecmp"
    seeds = range(args.seed, args.seed + (max(1, args.seeds) if ecmp else 1))
    try:
        preds = [
            simulate(
                cluster,
                rmap,
                shape,
                routing=args.routing,
                qps=args.qps,
                seed=s,
                rel_tol=args.rel_tol,
                aggregate=args.aggregate,
            )
            for s in seeds
        ]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    wall = time.perf_counter() - t0
    return [_record(op, cluster, rmap, s, preds, moe, wall) for s in sizes]


def _record(
    op: str, cluster: Cluster, rmap: RankMap, size: int, preds: list[Any], moe: MoeShape,
    wall_s: float,
) -> Record:  # fmt: skip
    world = rmap.world
    k = unit_of(op, size, world)
    times = [p.time_at_scale(k) for p in preds]
    t = statistics.median(times)
    first = preds[0]
    if op in TOKEN_OPS:
        per_token = moe.dispatch_bytes() if op == "dispatch" else moe.combine_bytes()
        size_bytes, dtype, factor = (
            int(size * per_token),
            "fp8" if op == "dispatch" and moe.dispatch_fp8 else "bf16",
            1.0,
        )
    else:
        size_bytes, dtype, factor = size, "uint8", (world - 1) / world
    extra: dict[str, Any] = {
        **first.facts,
        "rank_map": rmap.name,
        "predicted_by": "epbench fabric model (flow-level max-min, alpha-beta latency)",
        "transfer_s": first.transfer_s * k,
        "latency_s": first.latency_s,
        "link_bound_s": first.link_bound_s * k,
        "bottleneck": first.bottleneck,
        "method": first.method,
        "num_flows": first.num_flows,
        "num_events": first.num_events,
        "model_wall_s": wall_s,
        "moved_bytes": first.total_bytes * k,
    }
    if len(times) > 1:
        extra["ecmp_seed_times_s"] = times
    extra["link_class_bytes"] = {key: v * k for key, v in first.class_bytes.items()}
    if op in TOKEN_OPS:
        extra.update(tokens_per_rank=size, **dataclasses.asdict(moe))
    return Record(op=op, backend="model", dtype=dtype, mode="per_iter", size_bytes=size_bytes,
                  count=size_bytes, num_ranks=world, times_s=[t], bus_factor=factor,
                  num_wrong=-1, predicted=True, extra=extra)  # fmt: skip


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("simulate", help="predict op times on a modelled cluster")
    p.add_argument("--preset", default="deepseek-mpft", help="preset name or .toml file")
    p.add_argument("--compare", action="append", default=[], help="another preset/file beside it")
    p.add_argument("--nodes", type=int, default=None, help="override the number of nodes")
    p.add_argument("--link", default=None, help="override the scale-out link (ib, roce, ...)")
    p.add_argument("--routing", default="", choices=("", "adaptive", "ecmp", "static"))
    p.add_argument("--forwarding", default=None, choices=("none", "pxn", "receiver"))
    p.add_argument("--rank-map", default="block", help=f"{', '.join(KINDS)}, or a file")
    p.add_argument("--ranks", type=int, default=0, help="ranks (default: every GPU)")
    p.add_argument("--op", action="append", choices=OPS, help="op(s) to predict (default alltoall)")
    p.add_argument("-b", "--minbytes", default=None, help="first size (bytes; tokens for MoE)")
    p.add_argument("-e", "--maxbytes", default=None, help="last size")
    p.add_argument("-f", "--stepfactor", type=int, default=None, help="size multiplier")
    p.add_argument("--qps", type=int, default=1, help="ECMP: queue pairs (hashed) per flow")
    p.add_argument("--seeds", type=int, default=1, help="ECMP: hash seeds to sample")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--rel-tol",
        type=float,
        default=0.01,
        help="merge rates/completions within this fraction (0: exact)",
    )
    p.add_argument(
        "--aggregate", choices=("auto", "flows"), default="auto",
        help="auto: solve symmetric all-to-alls per orbit (exact); flows: one flow per pair",
    )  # fmt: skip
    p.add_argument("--hidden", type=int, default=7168)
    p.add_argument("--topk", type=int, default=8)
    p.add_argument("--experts", type=int, default=256)
    p.add_argument("--node-limit", type=int, default=0)
    p.add_argument("--dispatch-dtype", choices=("fp8", "bf16"), default="fp8")
    p.add_argument("-o", "--output", default=None, help="results file (.jsonl)")
    p.set_defaults(func=run)


def _cluster(arg: str, args: argparse.Namespace) -> Cluster:
    return resolve_cluster(
        arg, num_nodes=args.nodes, scale_out=args.link, forwarding=args.forwarding
    )


def _sizes(op: str, args: argparse.Namespace) -> list[int]:
    token = op in TOKEN_OPS
    b = parse_size(args.minbytes or ("128" if token else "1M"))
    e = parse_size(args.maxbytes or ("4096" if token else "1G"))
    return sweep(b, e, args.stepfactor or (2 if token else 4))


def predict_all(args: argparse.Namespace) -> list[Record]:
    """Records for every (cluster, op, size) the arguments ask for."""
    out = []
    for arg in [args.preset, *args.compare]:
        cluster = _cluster(arg, args)
        rmap = resolve_rank_map(args.rank_map, cluster, args.ranks)
        for op in args.op or ["alltoall"]:
            out += _records(op, cluster, rmap, _sizes(op, args), args)
    return out


def write_results(path: pathlib.Path, records: list[Record], config: dict[str, Any]) -> None:
    """Header, records and footer as JSON Lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = Header(
        run_id=uuid.uuid4().hex,
        created_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(),
        metadata={"argv": sys.argv, "predicted": True, "launcher": "none (model)"},
        config=config,
    )
    lines = [header.to_json(), *(r.to_json() for r in records)]
    lines.append(Footer(status="ok", num_records=len(records)).to_json())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def print_table(records: list[Record], console: Any, title: str = "predicted") -> None:
    """A labelled table: cluster, routing, op, size, time, busbw, bottleneck."""
    from rich.table import Table

    t = Table(title=title)
    for col in ("cluster", "routing", "op", "size", "time us", "busbw GB/s", "bottleneck"):
        t.add_column(col, justify="right" if col in ("size", "time us", "busbw GB/s") else "left")
    for r in records:
        x, sec = r.extra, r.times_s[0]
        size = f"{x['tokens_per_rank']} tok" if "tokens_per_rank" in x else _human(r.size_bytes)
        busbw = r.size_bytes / sec / 1e9 * r.bus_factor if sec else 0.0
        label = f"{x['cluster']} ({r.num_ranks})"
        neck = x["bottleneck"].split(" ")[0]
        t.add_row(label, x["routing"], r.op, size, f"{sec * 1e6:,.1f}", f"{busbw:.2f}", neck)
    console.print(t)


def print_compare(records: list[Record], console: Any) -> None:
    """Side by side: predicted time of each cluster per (op, size), and its ratio to the first."""
    from rich.table import Table

    clusters = list(dict.fromkeys(r.extra["cluster"] for r in records))
    points: dict[tuple[str, int], dict[str, float]] = {}
    for r in records:
        points.setdefault((r.op, r.size_bytes), {})[r.extra["cluster"]] = r.times_s[0]
    t = Table(title=f"predicted time ratio to {clusters[0]}")
    for col in ("op", "size", *clusters):
        t.add_column(col, justify="left" if col == "op" else "right")
    for (op, size), times in points.items():
        base = times.get(clusters[0], 0.0)
        cells = [f"{times[c] / base:.3f}" if base and c in times else "-" for c in clusters]
        t.add_row(op, _human(size), *cells)
    console.print(t)


def _human(n: int) -> str:
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console()
    records = predict_all(args)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = pathlib.Path(
        args.output or f"epbench-results/simulate-{pathlib.Path(args.preset).stem}-{stamp}.jsonl"
    )
    config = {k: v for k, v in vars(args).items() if k != "func"}
    write_results(out, records, config)
    print_table(records, console, title="predicted (fabric model, not measured)")
    if args.compare:
        print_compare(records, console)
    console.print(f"wrote {len(records)} predicted records to {out}")
    return 0


def demo(out_dir: pathlib.Path, console: Any) -> list[pathlib.Path]:
    """Predict MPFT vs MRFT and InfiniBand vs RoCE all-to-all on the 2048-GPU preset."""
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["simulate", "--preset", "deepseek-mpft", "--compare", "deepseek-mrft",
                              "--compare", "deepseek-mpft-roce", "--compare", "deepseek-mrft-roce",
                              "-b", "16M", "-e", "4G", "-f", "16"])  # fmt: skip
    records = predict_all(args)
    path = pathlib.Path(out_dir) / "predicted-mpft-mrft-ib-roce.jsonl"
    write_results(path, records, {k: v for k, v in vars(args).items() if k != "func"})
    print_table(records, console, title="predicted: 2048-GPU all-to-all, MPFT vs MRFT, IB vs RoCE")
    print_compare(records, console)
    return [path]
