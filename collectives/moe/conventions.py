"""MoE byte conventions (pure): the bytes a dispatch or combine moves, counted every way.

Each function returns per-rank byte counts (numpy int64/float64, one entry per rank) so a
bandwidth is `bytes[rank] / time`. The conventions are derived in docs/PERFORMANCE.md
("MoE byte conventions"); DeepEP's follow its tests (tests/legacy/test_intranode.py,
test_internode.py, test_low_latency.py at deepseek-ai/DeepEP):

- logical: BF16-equivalent bytes of the tokens delivered end to end, one copy per token
  and destination rank (the same for every algorithm), counted at the sender.
- wire: bytes the algorithm's transfers carry after the codec, every hop (a hierarchical
  token counts once per stage), counted at the sender; `recv_wire` at the receiver.
- scale_out: the wire bytes of hops between different nodes; scale_up: between different
  ranks of one node; self: a rank's copies to itself.
- deepep_rdma: DeepEP's internode "RDMA GB/s": per sending rank, one token per distinct
  destination node *including its own node*, times the per-token payload bytes (this is why
  DeepEP's RDMA figures can exceed the NIC's line rate).
- deepep_nvl: DeepEP's "NVL GB/s": tokens received by the rank (its own included) times the
  per-token payload bytes; for combine the same tokens, sent back.
- deepep_ll: DeepEP's low-latency convention: token-expert selections (not deduplicated per
  rank) times the per-token bytes, plus 16 B of metadata per selection for dispatch.
"""

from __future__ import annotations

import numpy as np

from collectives.moe.layout import TrafficCounts, hop_rows

LL_META_BYTES = 16
"""Bytes DeepEP's low-latency dispatch counts per selection beside the FP8 payload."""
BF16_BYTES = 2

CONVENTIONS = (
    "logical",
    "wire",
    "recv_wire",
    "scale_out",
    "scale_up",
    "self",
    "deepep_rdma",
    "deepep_nvl",
    "deepep_ll",
)


def per_rank_bytes(
    counts: TrafficCounts, *, algo: str, direction: str, hidden: int, token_bytes: int
) -> dict[str, np.ndarray]:
    """Per-rank bytes of `direction` ('dispatch' or 'combine') under every convention.

    `token_bytes` is the wire size of one token under this direction's codec.
    """
    if direction not in ("dispatch", "combine"):
        raise ValueError(f"direction {direction!r} must be 'dispatch' or 'combine'")
    geo = counts.geometry
    hops = hop_rows(counts, algo)
    delivered = counts.tokens
    if direction == "combine":
        hops, delivered = hops.T, delivered.T
    node = geo.node_array
    cross = node[:, None] != node[None, :]
    same = ~cross & ~np.eye(geo.world, dtype=bool)
    ll_extra = LL_META_BYTES if direction == "dispatch" else 0
    return {
        "logical": delivered.sum(axis=1) * hidden * BF16_BYTES,
        "wire": hops.sum(axis=1) * token_bytes,
        "recv_wire": hops.sum(axis=0) * token_bytes,
        "scale_out": (hops * cross).sum(axis=1) * token_bytes,
        "scale_up": (hops * same).sum(axis=1) * token_bytes,
        "self": np.diag(hops) * token_bytes,
        "deepep_rdma": counts.node_tokens.sum(axis=1) * token_bytes,
        "deepep_nvl": counts.tokens.sum(axis=0) * token_bytes,
        "deepep_ll": counts.pairs.sum(axis=1) * (token_bytes + ll_extra),
    }


def traffic_matrix_bytes(counts: TrafficCounts, *, algo: str, token_bytes: int) -> np.ndarray:
    """[src, dst] wire bytes of one dispatch (transpose it for combine)."""
    return hop_rows(counts, algo) * token_bytes


def summarize(per_rank: dict[str, np.ndarray]) -> dict[str, dict[str, float | list[int]]]:
    """JSON-ready: per convention the per-rank list, the mean and the max over ranks."""
    return {
        name: {
            "per_rank": [int(v) for v in values],
            "mean": float(np.mean(values)),
            "max": float(np.max(values)),
        }
        for name, values in per_rank.items()
    }
