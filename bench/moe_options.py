"""Command-line options of the MoE ops (`epbench run dispatch|combine|moe`).

`add_moe_arguments(parser)` adds the flags; `moe_op_kwargs(args)` turns them into the
keyword options of collectives.ops.moe's op classes; `token_sweep(args)` gives the
token counts to sweep; `check_moe_args(args, world, gpus_per_node)` validates everything
that can be known before launch and raises UsageError naming the bad value. Defaults follow
DeepEP's tests: 4096 tokens (128 in low-latency mode), hidden 7168, 256 experts, top-8,
FP8 dispatch, BF16 combine.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from bench.errors import UsageError
from collectives.moe.engine import MODES, MoESetup, make_placement
from collectives.moe.layout import ALGOS
from collectives.moe.routing import ROUTINGS, load_routing_file

DEFAULT_TOKENS = {"normal": 4096, "low-latency": 128}


def add_moe_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the MoE flags to `epbench run`'s parser (one argument group)."""
    group = parser.add_argument_group("MoE ops (dispatch, combine, moe)")
    add = group.add_argument
    add(
        "--num-tokens",
        type=_token_list,
        default=None,
        metavar="N[,N...]",
        help="tokens per rank; a comma list sweeps (default 4096; 128 in low-latency mode)",
    )
    add("--hidden", type=int, default=7168, help="hidden size (default 7168)")
    add("--num-experts", type=int, default=256, help="routed experts (default 256)")
    add("--top-k", type=int, default=8, help="experts per token (default 8)")
    add(
        "--node-limit",
        type=int,
        default=None,
        metavar="M",
        help="max nodes per token, DeepSeek-V3 group-limited routing (default min(nodes, 4) "
        "on several nodes, off on one; 0 turns it off)",
    )
    add(
        "--routing",
        choices=ROUTINGS,
        default="uniform",
        help="expert choice: uniform, zipf (skewed load), file (a recorded trace)",
    )
    add(
        "--routing-file",
        default=None,
        metavar="PATH",
        help="trace for --routing file: .npy [tokens, top_k] ints or text, one token per line",
    )
    add("--zipf-s", type=float, default=1.0, help="Zipf exponent for --routing zipf")
    add(
        "--placement",
        dest="placement_file",
        default=None,
        metavar="PATH",
        help="expert placement file, one line of expert ids per rank (default contiguous)",
    )
    add(
        "--algo",
        choices=ALGOS,
        default="flat",
        help="flat: one alltoallv; hierarchical: once per node, then forwarded inside it",
    )
    add(
        "--mode",
        choices=MODES,
        default="normal",
        help="normal: counts exchange + alltoallv; low-latency: fixed blocks, no host sync",
    )
    add("--codec-dispatch", default="fp8", help="dispatch payload codec (default fp8)")
    add("--codec-combine", default="bf16", help="combine payload codec (default bf16)")
    add(
        "--overlap",
        action="store_true",
        help="moe op: two micro-batches, communication beside the other's expert GEMMs",
    )
    add(
        "--expert-dim",
        type=int,
        default=256,
        help="inner size of the moe op's stand-in expert MLP (default 256)",
    )


def _token_list(text: str) -> list[int]:
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--num-tokens {text!r}: give integers like 128,4096"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"--num-tokens {text!r}: every count must be >= 1")
    return values


def token_sweep(args: argparse.Namespace) -> list[int]:
    """Token counts per rank to sweep (the sizes of ops with size_unit == 'tokens')."""
    return list(args.num_tokens or [DEFAULT_TOKENS[args.mode]])


def moe_op_kwargs(args: argparse.Namespace, local_world: int | None = None) -> dict[str, Any]:
    """Keyword options for Dispatch/Combine/MoE(seed=..., **kwargs); `local_world` (ranks
    per node as launched) stands in when --gpus-per-node is not given."""
    return {
        "hidden": args.hidden,
        "num_experts": args.num_experts,
        "top_k": args.top_k,
        "node_limit": args.node_limit,
        "routing": args.routing,
        "routing_file": args.routing_file,
        "zipf_s": args.zipf_s,
        "placement_file": args.placement_file,
        "algo": args.algo,
        "mode": args.mode,
        "codec_dispatch": args.codec_dispatch,
        "codec_combine": args.codec_combine,
        "overlap": args.overlap,
        "expert_dim": args.expert_dim,
        "gpus_per_node": getattr(args, "gpus_per_node", None) or local_world,
    }


def check_moe_args(args: argparse.Namespace, world: int, gpus_per_node: int | None) -> None:
    """UsageError for MoE flags that cannot work on `world` ranks of `gpus_per_node`."""
    kwargs = moe_op_kwargs(args)
    fields = {f.name for f in dataclasses.fields(MoESetup)}
    try:
        for tokens in token_sweep(args):
            setup = MoESetup(
                num_tokens=tokens,
                **{k: v for k, v in kwargs.items() if k in fields and v is not None},
            )
        local = gpus_per_node or world
        if world % local:
            raise ValueError(f"--gpus-per-node {local} does not divide the {world} ranks")
        setup.resolved_node_limit(world // local)
        make_placement(setup, world)
        if setup.routing_file:
            load_routing_file(setup.routing_file)
        if args.expert_dim < 1:
            raise ValueError(f"--expert-dim {args.expert_dim} must be >= 1")
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None
