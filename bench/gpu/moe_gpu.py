"""GPU check and timing of MoE dispatch/combine on the torch-nccl backend, DeepEP's shape.

    torchrun --nproc-per-node 2 bench/gpu/moe_gpu.py --out moe.json
    python bench/gpu/moe_gpu.py --gpus 2 --out moe.json          (spawns one process per GPU)

1. Normal mode, DeepEP's intranode test shape (4096 tokens per rank, hidden 7168, 256 experts,
   top-8, uniform top-k): FP8 and BF16 dispatch, BF16 combine, each checked first (#wrong),
   then timed per iteration with CUDA events after an L2 flush (DeepEP's `bench`), beside a
   raw `all_to_all` moving exactly the same bytes with the same per-peer counts in the same
   run. Dispatch is timed with its counts exchange and cached (counts reused, DeepEP's
   handle). Bandwidth uses DeepEP's "NVL GB/s" convention (tokens received x token bytes).
2. Low-latency mode, 1..128 tokens: FP8 dispatch and BF16 combine (fixed blocks, no host
   sync) beside a raw equal-block all_to_all of the same size.
3. Overlap: two micro-batches of half the tokens, one's dispatch/combine beside the other's
   stand-in expert GEMMs; communication hidden = alone - together.
Times are medians over iterations of the max over ranks. Rank 0 prints a table; --out writes
JSON with every sample.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import pathlib
import sys
from typing import Any

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from moe_timing import Bench, say, stats  # noqa: E402  (beside this script)

from bench.launch import detect, launch_info, place_comm  # noqa: E402
from collectives.backends import create  # noqa: E402
from collectives.moe import check  # noqa: E402
from collectives.moe.engine import MoEEngine, MoESetup, make_tokens  # noqa: E402
from collectives.moe.overlap import StandInExpert  # noqa: E402
from collectives.ops.moe import measure_overlap, overlap_scheme  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpus", type=int, default=None, help="spawn this many ranks (no launcher)")
    p.add_argument("--num-tokens", type=int, default=4096)
    p.add_argument("--hidden", type=int, default=7168)
    p.add_argument("--num-experts", type=int, default=256)
    p.add_argument("--top-k", type=int, default=8)
    p.add_argument("--algos", default="flat", help="comma list: flat, hierarchical")
    p.add_argument("--gpus-per-node", type=int, default=None, help="virtual node size")
    p.add_argument("--dispatch-codecs", default="fp8_e4m3,bf16")
    p.add_argument("--ll-tokens", default="1,2,4,8,16,32,64,128")
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--no-flush", action="store_true", help="skip the L2 flush per iteration")
    p.add_argument("--no-graph", action="store_true", help="skip the CUDA-graph timings")
    p.add_argument(
        "--profile",
        action="store_true",
        help="print a torch.profiler table of cached dispatch + combine (rank 0)",
    )
    p.add_argument("--expert-dim", type=int, default=512, help="overlap stand-in MLP size")
    p.add_argument("--skip", default="", help="comma list of sections to skip: normal,ll,overlap")
    p.add_argument("--out", default=None, help="write JSON here (rank 0)")
    p.add_argument("--backend", default="torch-nccl", help="torch-nccl, or gloo (CPU rehearsal)")
    p.add_argument(
        "--stack-dump-s",
        type=float,
        default=0.0,
        help="every this many seconds, dump every rank's Python stacks to stderr",
    )
    return p.parse_args(argv)


def make_engine(comm: Any, args: argparse.Namespace, setup: MoESetup) -> MoEEngine:
    """An engine on the launch's real rank -> node map (`args.rank_node`, set by `worker`
    from bench.launch.place_comm once the ranks are up)."""
    return MoEEngine(comm, setup, rank_node=args.rank_node)


def raw_alltoall(comm: Any, send_rows: list[int], recv_rows: list[int], row_bytes: int):
    """A plain all_to_all of uint8 rows with the given per-peer counts (same bytes)."""
    device = comm.device
    send = torch.zeros(sum(send_rows) * row_bytes, dtype=torch.uint8, device=device)
    recv = torch.empty(sum(recv_rows) * row_bytes, dtype=torch.uint8, device=device)
    sc = [n * row_bytes for n in send_rows]
    rc = [n * row_bytes for n in recv_rows]
    return lambda: comm.all_to_all(recv, send, sc, rc)


def make_setup(args: argparse.Namespace, **overrides: Any) -> MoESetup:
    base = dict(
        num_tokens=args.num_tokens, hidden=args.hidden, num_experts=args.num_experts,
        top_k=args.top_k, node_limit=0, codec_combine="bf16",
    )  # fmt: skip
    return MoESetup(**{**base, **overrides})


def first_codec(args: argparse.Namespace) -> str:
    """The dispatch codec of the low-latency and overlap sections (FP8 by default)."""
    return str(args.dispatch_codecs.split(",")[0])


def normal_mode(comm: Any, args: argparse.Namespace, bench: Bench) -> list[dict[str, Any]]:
    rows = []
    for algo in args.algos.split(","):
        for codec in args.dispatch_codecs.split(","):
            setup = make_setup(args, algo=algo, codec_dispatch=codec)
            engine = make_engine(comm, args, setup)
            x = make_tokens(setup, comm.rank, engine.device)
            packed = engine.pack(x)
            first = engine.dispatch(packed)
            wrong = check.check_dispatch(engine, first, lambda r: make_tokens(setup, r, "cpu"))  # noqa: B023
            nvl = engine.bytes_per_rank()
            label = f"{algo} dispatch {codec}"
            say(comm, f"{label}: checked, #wrong {wrong}; timing")
            rows += _dispatch_rows(comm, engine, packed, first, bench, label, wrong, nvl)
            if codec == args.dispatch_codecs.split(",")[-1]:
                rows.append(_combine_row(comm, engine, first, x, bench, algo, nvl))
            say(comm, f"{label}: done")
    return rows


def _dispatch_rows(comm, engine, packed, first, bench, label, wrong, nvl) -> list[dict[str, Any]]:
    handle = first.handle
    row_bytes = int(packed.shape[1])
    raw = None
    if engine.setup.algo == "flat":
        raw = bench.both(raw_alltoall(comm, engine.plan.send_rows, handle.recv_rows, row_bytes))
    full = bench.both(lambda: engine.dispatch(packed), graph=False)  # reads counts on the host
    cached = bench.both(lambda: engine.dispatch(packed, cached=first))
    nvl_bytes = int(nvl["dispatch"]["deepep_nvl"][comm.rank])
    out = []
    for name, timed in ((label, full), (f"{label} cached", cached)):
        out.append(_row(name, timed, raw, nvl_bytes, wrong, row_bytes))
    if raw is not None:
        out.append(_row(f"raw all_to_all ({label} bytes)", raw, raw, nvl_bytes, 0, row_bytes))
    return out


def _combine_row(comm, engine, first, x, bench, algo, nvl) -> dict[str, Any]:
    rows_in = check.identity_rows(engine, first).to(torch.bfloat16)
    out = engine.combine(first, rows_in)
    wrong = check.check_combine(engine, out, x)
    row_bytes = engine.codec_combine.wire_bytes(1, engine.setup.hidden)
    raw = None
    if algo == "flat":
        raw = bench.both(
            raw_alltoall(comm, first.handle.recv_rows, engine.plan.send_rows, row_bytes)
        )
    samples = bench.both(lambda: engine.combine(first, rows_in))
    nvl_bytes = int(nvl["combine"]["deepep_nvl"][comm.rank])
    return _row(f"{algo} combine bf16", samples, raw, nvl_bytes, wrong, row_bytes)


def _row(name, timed, raw, nvl_bytes, wrong, row_bytes) -> dict[str, Any]:
    samples, b2b_s, graph_s = timed
    st = stats(samples)
    row = {"case": name, **st, "nvl_bytes": nvl_bytes, "row_bytes": row_bytes,
           "nvl_gbps": nvl_bytes / (st["p50_us"] * 1e3), "num_wrong": int(wrong),
           "b2b_mean_us": b2b_s * 1e6, "b2b_nvl_gbps": nvl_bytes / (b2b_s * 1e9),
           "graph_us": graph_s * 1e6,
           "samples_s": samples.tolist()}  # fmt: skip
    if raw is not None:
        row["raw_p50_us"] = float(np.median(raw[0]) * 1e6)
        row["vs_raw"] = st["p50_us"] / row["raw_p50_us"]
        row["raw_b2b_mean_us"] = raw[1] * 1e6
        row["b2b_vs_raw"] = b2b_s / raw[1]
        row["graph_vs_raw"] = graph_s / raw[2]
        row["raw_samples_s"] = raw[0].tolist()
    return row


def profile(comm: Any, args: argparse.Namespace) -> None:
    """Where a cached FP8 dispatch and a BF16 combine spend host and device time."""
    setup = make_setup(args, codec_dispatch=first_codec(args))
    engine = make_engine(comm, args, setup)
    packed = engine.pack(make_tokens(setup, comm.rank, engine.device))
    first = engine.dispatch(packed)
    rows_in = check.identity_rows(engine, first).to(torch.bfloat16)
    for _ in range(3):
        engine.dispatch(packed, cached=first)
        engine.combine(first, rows_in)
    torch.cuda.synchronize()
    acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=acts) as prof:
        for _ in range(5):
            engine.dispatch(packed, cached=first)
            engine.combine(first, rows_in)
        torch.cuda.synchronize()
    if comm.rank == 0:
        table = prof.key_averages()
        print(table.table(sort_by="self_cuda_time_total", row_limit=18, max_name_column_width=48))
        print(table.table(sort_by="self_cpu_time_total", row_limit=18, max_name_column_width=48))


def low_latency(comm: Any, args: argparse.Namespace, bench: Bench) -> list[dict[str, Any]]:
    rows = []
    for tokens in (int(t) for t in args.ll_tokens.split(",")):
        setup = make_setup(
            args, num_tokens=tokens, mode="low-latency", codec_dispatch=first_codec(args)
        )
        engine = make_engine(comm, args, setup)
        x = make_tokens(setup, comm.rank, engine.device)
        packed = engine.pack(x)
        result = engine.dispatch(packed)
        wrong = check.check_dispatch(engine, result, lambda r: make_tokens(setup, r, "cpu"))  # noqa: B023
        rows_in = check.identity_rows(engine, result).to(torch.bfloat16)
        wrong += check.check_combine(engine, engine.combine(result, rows_in), x)
        block = comm.world * tokens
        d = bench(lambda: engine.dispatch(packed))  # noqa: B023
        c = bench(lambda: engine.combine(result, rows_in))  # noqa: B023
        graphs = {"dispatch_graph_us": bench.graph(lambda: engine.dispatch(packed)) * 1e6,  # noqa: B023
                  "combine_graph_us": bench.graph(lambda: engine.combine(result, rows_in)) * 1e6}  # noqa: B023  # fmt: skip
        raw_d = bench(raw_alltoall(comm, [tokens] * comm.world, [tokens] * comm.world,
                                   int(packed.shape[1])))  # fmt: skip
        raw_c = bench(raw_alltoall(comm, [tokens] * comm.world, [tokens] * comm.world,
                                   setup.hidden * 2))  # fmt: skip
        say(comm, f"low-latency {tokens} tokens: dispatch {np.median(d) * 1e6:.1f} us")
        rows.append({
            "tokens": tokens, "rows_per_rank": block, "num_wrong": int(wrong),
            "dispatch": stats(d), "combine": stats(c),
            "raw_dispatch_bytes": stats(raw_d), "raw_combine_bytes": stats(raw_c), **graphs,
        })  # fmt: skip
    return rows


def overlap(comm: Any, args: argparse.Namespace) -> dict[str, Any]:
    half = max(1, args.num_tokens // 2)
    setups = [
        make_setup(args, num_tokens=half, codec_dispatch=first_codec(args), seed=mb + 1)
        for mb in range(2)
    ]
    engines = [make_engine(comm, args, setup) for setup in setups]
    xs = [make_tokens(e.setup, comm.rank, e.device) for e in engines]
    packed = [e.pack(x) for e, x in zip(engines, xs, strict=True)]
    expert = StandInExpert(args.hidden, args.expert_dim, engines[0].device, torch.bfloat16)
    state = {"micro": (engines, packed, xs), "expert": expert}
    report = measure_overlap(comm, state, args.iters, scheme="threads")
    out = {"tokens_per_micro_batch": half, "expert_dim": args.expert_dim, **report.as_dict()}
    if overlap_scheme(comm, state) == "graphs":
        say(comm, "overlap from CUDA graphs")
        out["graphed"] = measure_overlap(comm, state, args.iters, scheme="graphs").as_dict()
    return out


def print_table(results: dict[str, Any]) -> None:
    print(f"{'case':<44}{'p50 us':>9}{'NVL GB/s':>9}{'raw us':>9}{'x raw':>7}"
          f"{'b2b us':>9}{'b2b GB/s':>9}{'x raw':>7}{'graph us':>9}{'x raw':>7}"
          f"{'#wrong':>7}")  # fmt: skip
    nan = float("nan")
    for row in results.get("normal", []):
        print(f"{row['case']:<44}{row['p50_us']:>9.1f}{row['nvl_gbps']:>9.1f}"
              f"{row.get('raw_p50_us', nan):>9.1f}{row.get('vs_raw', nan):>7.2f}"
              f"{row['b2b_mean_us']:>9.1f}{row['b2b_nvl_gbps']:>9.1f}"
              f"{row.get('b2b_vs_raw', nan):>7.2f}{row['graph_us']:>9.1f}"
              f"{row.get('graph_vs_raw', nan):>7.2f}{row['num_wrong']:>7}")  # fmt: skip
    if results.get("low_latency"):
        print(f"\n{'LL tokens':<10}{'dispatch us':>12}{'raw':>8}{'graph':>8}{'combine us':>12}"
              f"{'raw':>8}{'graph':>8}{'#wrong':>8}")  # fmt: skip
        for row in results["low_latency"]:
            print(f"{row['tokens']:<10}{row['dispatch']['p50_us']:>12.1f}"
                  f"{row['raw_dispatch_bytes']['p50_us']:>8.1f}{row['dispatch_graph_us']:>8.1f}"
                  f"{row['combine']['p50_us']:>12.1f}{row['raw_combine_bytes']['p50_us']:>8.1f}"
                  f"{row['combine_graph_us']:>8.1f}{row['num_wrong']:>8}")  # fmt: skip
    if results.get("overlap"):
        ov = results["overlap"]
        print(
            f"\noverlap: comm {ov['comm_us']:.1f} us, compute {ov['compute_us']:.1f} us, "
            f"together {ov['together_us']:.1f} us, hidden {ov['hidden_us']:.1f} us "
            f"({ov['hidden_fraction_of_comm']:.0%} of comm, efficiency {ov['efficiency']:.0%})"
        )
        if "graphed" in ov:
            g = ov["graphed"]
            print(f"overlap (CUDA graphs): comm {g['comm_us']:.1f} us, compute "
                  f"{g['compute_us']:.1f} us, together {g['together_us']:.1f} us, hidden "
                  f"{g['hidden_us']:.1f} us ({g['hidden_fraction_of_comm']:.0%} of comm, "
                  f"efficiency {g['efficiency']:.0%})")  # fmt: skip


def worker(args: argparse.Namespace) -> None:
    if args.stack_dump_s > 0:
        faulthandler.dump_traceback_later(args.stack_dump_s, repeat=True)
    found = detect(os.environ)
    device = "cpu" if args.backend == "gloo" else "cuda"
    if device == "cpu":
        torch.set_num_threads(1)  # one core per rank; oversubscribed ranks time themselves
    launch = launch_info(found, gpus_per_node=args.gpus_per_node, timeout_s=600, device=device)
    comm = create(args.backend, launch)
    # the rank -> node map as launched (any placement), for routing and hierarchical hops
    args.rank_node = tuple(place_comm(comm, os.environ, found, args.gpus_per_node).node)
    say(comm, f"{comm.world} ranks up on {args.backend}, nodes {sorted(set(args.rank_node))}")
    bench = Bench(comm, args.iters, args.warmup, not args.no_flush,
                  use_graph=device == "cuda" and not args.no_graph)  # fmt: skip
    skip = set(args.skip.split(","))
    results: dict[str, Any] = {"world": comm.world, "facts": comm.facts(),
                               "gpu": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                               "args": vars(args)}  # fmt: skip
    if "normal" not in skip:
        results["normal"] = normal_mode(comm, args, bench)
    if args.profile:
        profile(comm, args)
    if "ll" not in skip:
        results["low_latency"] = low_latency(comm, args, bench)
    if "overlap" not in skip:
        say(comm, "overlap")
        results["overlap"] = overlap(comm, args)
    if comm.rank == 0:
        print_table(results)
        if args.out:
            pathlib.Path(args.out).write_text(json.dumps(results, indent=1))
    comm.close()


def _spawned(index: int, args: argparse.Namespace, port: int) -> None:
    os.environ.update(RANK=str(index), LOCAL_RANK=str(index), WORLD_SIZE=str(args.gpus),
                      LOCAL_WORLD_SIZE=str(args.gpus), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))  # fmt: skip
    worker(args)


def main() -> None:
    args = parse_args()
    if "RANK" in os.environ or "OMPI_COMM_WORLD_RANK" in os.environ or not args.gpus:
        worker(args)
        return
    from bench.spawn import free_port

    torch.multiprocessing.spawn(_spawned, args=(args, free_port()), nprocs=args.gpus)


if __name__ == "__main__":
    main()
