"""Correctness checks of dispatch and combine against a single-process reference.

Every rank regenerates all ranks' routing and tokens (seeded), so the expected content of
its expert batches and of its combined output is computed locally, with no communication.
Checks return a count of wrong items (0 = correct), never raise on a mismatch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from collectives.moe.engine import MoEEngine
from collectives.moe.exchange import DispatchResult, weighted_rows

# Per-element error of one encode/decode relative to the token's largest magnitude: half an
# ulp of the format's mantissa (FP8 with per-tile scales; a power-of-two scale costs a bit).
CODEC_REL_BOUND = {
    "fp32": 2**-23,
    "float32": 2**-23,
    "bf16": 2**-8,
    "bfloat16": 2**-8,
    "fp8": 2**-4,
    "fp8_e4m3": 2**-4,
    "fp8_e4m3_pow2": 2**-3,
    "fp8_e5m2": 2**-3,
    "fp8_e5m2_pow2": 2**-2,
}
UNKNOWN_CODEC_BOUND = 2**-2
"""Codecs without a bound here are checked against this loose one."""


def codec_bound(name: str) -> float:
    """Relative error bound of one round trip through codec `name`.

    LogFMT-n: codes step by at most ln(2^32) / (2^(n-1) - 2) in ln|x| (the tile's range is
    clamped to 2^32), and rounding at the linear midpoint errs by at most half a step's
    ratio, (e^step - 1) / 2; DeepEP's LogFMT-10 is held to twice the LogFMT-10 bound.
    """
    key = name.lower()
    if key in CODEC_REL_BOUND:
        return CODEC_REL_BOUND[key]
    bits = key.removeprefix("deepep_").removeprefix("logfmt")
    if key.startswith(("logfmt", "deepep_logfmt")) and bits.isdigit():
        step = math.log(2.0**32) / (2 ** (int(bits) - 1) - 2)
        return (math.exp(step) - 1) / 2 * (2 if key.startswith("deepep") else 1)
    return UNKNOWN_CODEC_BOUND


def expected_pairs(engine: MoEEngine) -> list[np.ndarray]:
    """Per local slot: [n, 3] (src_rank, src_token, weight bits) sorted by (rank, token)."""
    geo = engine.geometry
    rank, slots = engine.comm.rank, geo.slots_per_rank
    found: list[list[np.ndarray]] = [[] for _ in range(slots)]
    for src in range(geo.world):
        routing, layout = engine.source.layout(src)
        slot_of = layout.topk_slot
        token, kth = np.nonzero((slot_of >= 0) & (slot_of // slots == rank))
        local = layout.topk_slot[token, kth] % slots
        bits = routing.topk_weights[token, kth].astype(np.float32).view(np.int32)
        for slot in range(slots):
            sel = local == slot
            found[slot].append(np.stack([np.full(sel.sum(), src), token[sel], bits[sel]], axis=1))
    return [np.concatenate(parts).astype(np.int64) for parts in found]


def check_dispatch(
    engine: MoEEngine, result: DispatchResult, tokens_of: Callable[[int], torch.Tensor]
) -> int:
    """Wrong pairs on this rank: missing/extra pairs, wrong weights or wrong payload bytes.

    `tokens_of(rank)` regenerates a rank's input activations.
    """
    wire = {}
    wrong = 0
    for slot, expect in enumerate(expected_pairs(engine)):
        got = result.batch(slot)
        bits = got["weight"].float().cpu().numpy().view(np.int32).astype(np.int64)
        have = np.stack(
            [got["src_rank"].cpu().numpy(), got["src_token"].cpu().numpy(), bits], axis=1
        )
        order = np.lexsort((have[:, 1], have[:, 0]))
        if have.shape != expect.shape:
            wrong += abs(len(have) - len(expect)) or 1
            continue
        wrong += int(np.any(have[order] != expect, axis=1).sum())
        payload = got["payload"].cpu()[torch.from_numpy(order)]
        for src in np.unique(expect[:, 0]):
            if src not in wire:
                wire[src] = engine.codec_dispatch.encode(tokens_of(int(src)).cpu())
            sel = expect[:, 0] == src
            ref = wire[src][torch.from_numpy(expect[sel, 1])]
            wrong += int((payload[torch.from_numpy(sel)] != ref).any(dim=1).sum())
    return wrong


def expected_combine(engine: MoEEngine, x: torch.Tensor) -> torch.Tensor:
    """x * (sum of the token's weights), float32: combine's output with identity experts."""
    weights = torch.from_numpy(engine.routing.topk_weights.sum(axis=1, dtype=np.float32))
    return x.float().cpu() * weights[:, None]


def combine_tolerance(engine: MoEEngine) -> float:
    """Bound on |combine - x * sum(w)| relative to the row's max |x * sum(w)| for identity
    experts with weights summing to 1: the dispatch codec once, the combine codec once per
    reduction level (the expert rank's partial sum, the forwarder's in hierarchical, the
    final sum), doubled for accumulation."""
    bound = codec_bound
    levels = 3 if engine.setup.algo == "hierarchical" else 2
    setup = engine.setup
    return 2 * (bound(setup.codec_dispatch) + levels * bound(setup.codec_combine))


def check_combine(engine: MoEEngine, out: torch.Tensor, x: torch.Tensor) -> int:
    """Elements of the combined output outside the codecs' bound of x * sum(weights)."""
    expect = expected_combine(engine, x)
    got = out.float().cpu()
    scale = expect.abs().amax(dim=1, keepdim=True).clamp_min(1e-30)
    bad = (got - expect).abs() > combine_tolerance(engine) * scale
    return int(bad.sum()) + int((~torch.isfinite(got)).sum())


def identity_rows(engine: MoEEngine, result: DispatchResult) -> torch.Tensor:
    """Combine input for identity experts: each received row's weighted sum of its
    (decoded) token over this rank's experts, float32 [num_recv, hidden]."""
    return weighted_rows(engine.expert_inputs(result), result)
