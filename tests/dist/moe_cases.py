"""MoE dispatch/combine cases run on every rank of a 4-rank job posing as 2 nodes.

`run_cases(comm, workdir)` returns {case: {check: value}} for this rank; the gloo and MPI
tests run the same cases and assert on what every rank returns. Expectations are computed
from (seed, rank), so the same cases pass on any backend.
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np
import torch

from collectives.moe import check
from collectives.moe.engine import MoEEngine, MoESetup, make_tokens
from collectives.ops.moe import OPS

SMALL = dict(num_tokens=96, hidden=256, num_experts=16, top_k=4, seed=5)


def _roundtrip(comm: Any, setup: MoESetup, make: Any = None) -> dict[str, Any]:
    make = make or (lambda s, r: make_tokens(s, r, "cpu"))
    engine = MoEEngine(comm, setup)
    x = make(setup, comm.rank)
    packed = engine.pack(x)
    first = engine.dispatch(packed)
    result = engine.dispatch(packed, cached=first)  # no counts exchange
    out = engine.combine(result, check.identity_rows(engine, result))
    return {
        "dispatch_wrong": check.check_dispatch(engine, first, lambda r: make(setup, r)),
        "cached_wrong": check.check_dispatch(engine, result, lambda r: make(setup, r)),
        "combine_wrong": check.check_combine(engine, out, x),
        "out": out,
        "x": x,
        "pairs": int(result.order.pair_row.shape[0]),
        "max_nodes_per_token": int(engine.layout.is_token_in_node.sum(axis=1).max()),
    }


def _integer_tokens(setup: MoESetup, rank: int) -> torch.Tensor:
    """Small integers: exact in bf16, and x * (4 x 0.25) is exact in every step."""
    gen = torch.Generator().manual_seed(rank + 11)
    x = torch.randint(-8, 9, (setup.num_tokens, setup.hidden), generator=gen)
    return x.to(torch.bfloat16)


def _summary(res: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in res.items() if k not in ("out", "x")}


def _generated_cases(comm: Any, workdir: pathlib.Path) -> dict[str, Any]:
    cases: dict[str, Any] = {}
    for algo in ("flat", "hierarchical"):
        for codec in ("fp32", "bf16"):
            setup = MoESetup(
                **SMALL, node_limit=1, algo=algo, codec_dispatch=codec, codec_combine=codec
            )
            cases[f"{algo}-{codec}-limit1"] = _summary(_roundtrip(comm, setup))
        setup = MoESetup(
            **SMALL,
            routing="zipf",
            zipf_s=1.5,
            node_limit=0,
            algo=algo,
            codec_dispatch="bf16",
            codec_combine="bf16",
        )
        cases[f"{algo}-zipf"] = _summary(_roundtrip(comm, setup))
        placement = workdir / "placement.txt"
        setup = MoESetup(
            **{**SMALL, "num_experts": 6},
            placement_file=str(placement),
            node_limit=0,
            algo=algo,
            codec_dispatch="fp32",
            codec_combine="fp32",
        )
        cases[f"{algo}-replicas"] = _summary(_roundtrip(comm, setup))
    for algo, pair in (("flat", ("fp8", "bf16")), ("hierarchical", ("logfmt8", "logfmt10"))):
        setup = MoESetup(
            **SMALL, node_limit=1, algo=algo, codec_dispatch=pair[0], codec_combine=pair[1]
        )
        cases[f"{algo}-{pair[0]}-{pair[1]}"] = _summary(_roundtrip(comm, setup))
    setup = MoESetup(
        **SMALL, mode="low-latency", node_limit=2, codec_dispatch="bf16", codec_combine="bf16"
    )
    cases["flat-low-latency"] = _summary(_roundtrip(comm, setup))
    return cases


def _exact_cases(comm: Any, workdir: pathlib.Path) -> dict[str, Any]:
    """Routing file with 4 experts per token (weights 0.25) and integer tokens: every
    algorithm and codec must return x exactly, and flat == hierarchical bit for bit."""
    cases: dict[str, Any] = {}
    for codec in ("fp32", "bf16"):
        outs = {}
        for algo in ("flat", "hierarchical"):
            setup = MoESetup(
                **SMALL,
                routing="file",
                routing_file=str(workdir / "trace.npy"),
                node_limit=0,
                algo=algo,
                codec_dispatch=codec,
                codec_combine=codec,
            )
            res = _roundtrip(comm, setup, _integer_tokens)
            outs[algo] = res["out"]
            cases[f"exact-{algo}-{codec}"] = {
                **_summary(res),
                "exact": bool(torch.equal(res["out"].float(), res["x"].float())),
            }
        cases[f"exact-{codec}-flat-equals-hier"] = {
            "equal": bool(torch.equal(outs["flat"], outs["hierarchical"]))
        }
    return cases


def _op_cases(comm: Any) -> dict[str, Any]:
    cases: dict[str, Any] = {}
    options = dict(
        hidden=256,
        num_experts=16,
        top_k=4,
        node_limit=1,
        codec_dispatch="fp8",
        codec_combine="bf16",
        gpus_per_node=comm.local_world,
        expert_dim=32,
    )
    for name, overlap in (("dispatch", False), ("combine", False), ("moe", False), ("moe", True)):
        for algo in ("flat", "hierarchical"):
            op = OPS[name](seed=3, algo=algo, overlap=overlap, **options)
            bufs = op.make_inputs(comm, 128, "bfloat16")
            op.run(comm, bufs)
            wrong = op.check(comm, bufs)
            extra = op.extra(comm, bufs, 2)
            matrix = op.traffic_matrix(128, "bfloat16", comm.world)
            cases[f"op-{name}-{algo}-{'overlap' if overlap else 'plain'}"] = {
                "wrong": wrong,
                "wire_sent": extra["moe"]["bytes"][op.direction]["wire"]["per_rank"][comm.rank],
                "matrix_row": int(matrix[comm.rank].sum()),
                "overlap": extra["moe"].get("overlap"),
            }
    return cases


def write_inputs(workdir: pathlib.Path) -> None:
    """Files the cases read: a routing trace and a placement with a replicated expert."""
    rng = np.random.default_rng(0)
    table = np.stack([rng.choice(16, size=4, replace=False) for _ in range(4 * 96)])
    np.save(workdir / "trace.npy", table)
    (workdir / "placement.txt").write_text("0 1\n2 3 0\n4 5\n1 3\n")


def run_cases(comm: Any, workdir: str) -> dict[str, Any]:
    path = pathlib.Path(workdir)
    torch.manual_seed(0)
    return {**_generated_cases(comm, path), **_exact_cases(comm, path), **_op_cases(comm)}
