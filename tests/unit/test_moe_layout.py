"""Layout counts, send orders, hop matrices and byte conventions on hand-worked cases."""

from __future__ import annotations

import numpy as np

from collectives.moe.conventions import per_rank_bytes
from collectives.moe.decode_bound import decode_bound
from collectives.moe.layout import Geometry, RankLayout, gather_plan, hop_rows, traffic_counts

# 4 ranks as 2 nodes of 2, 2 experts (slots) per rank: expert e lives on rank e // 2.
GEO = Geometry(world=4, local_world=2, slots_per_rank=2)
# Rank 0 routes 3 tokens, top-2: t0 -> experts 0,1 (rank 0 twice); t1 -> 1,6 (ranks 0, 3);
# t2 -> 4,5 (rank 2 twice). Ranks 1-3 route nothing.
RANK0 = RankLayout(geometry=GEO, topk_slot=np.array([[0, 1], [1, 6], [4, 5]]))
EMPTY = RankLayout(geometry=GEO, topk_slot=np.zeros((0, 2), dtype=np.int64))


def test_rank_counts():
    assert RANK0.is_token_in_rank.astype(int).tolist() == [
        [1, 0, 0, 0],
        [1, 0, 0, 1],
        [0, 0, 1, 0],
    ]
    assert RANK0.num_tokens_per_rank.tolist() == [2, 0, 1, 1]
    assert RANK0.num_tokens_per_node.tolist() == [2, 2]
    assert RANK0.num_pairs_per_slot.tolist() == [1, 2, 0, 0, 1, 1, 1, 0]
    assert RANK0.flat_counts_message().tolist() == [[2, 1, 2], [0, 0, 0], [1, 1, 1], [1, 1, 0]]
    # per node: tokens, tokens per local rank, pairs per slot of the node
    assert RANK0.hier_counts_message().tolist() == [[2, 2, 0, 1, 2, 0, 0], [2, 1, 1, 1, 1, 1, 0]]


def test_gather_plan_orders_by_destination_and_inverts():
    plan = gather_plan(RANK0.is_token_in_rank)
    assert plan.send_idx.tolist() == [0, 1, 2, 1]  # rank 0: t0 t1; rank 2: t2; rank 3: t1
    assert plan.counts.tolist() == [2, 0, 1, 1]
    assert plan.gather_idx.tolist() == [[0, 4], [1, 3], [2, 4]]  # 4 = the zero pad row
    values = np.array([10.0, 20.0, 30.0, 40.0, 0.0])
    assert values[plan.gather_idx].sum(axis=1).tolist() == [10.0, 60.0, 30.0]


def test_hop_rows_flat_and_hierarchical():
    counts = traffic_counts([RANK0, EMPTY, EMPTY, EMPTY])
    assert hop_rows(counts, "flat")[0].tolist() == [2, 0, 1, 1]
    hier = hop_rows(counts, "hierarchical")
    # stage 1: rank 0 -> itself (node 0: t0, t1) and -> rank 2 (node 1: t1, t2);
    # stage 2: rank 0 forwards t0, t1 to itself; rank 2 forwards t2 to itself, t1 to rank 3.
    assert hier.tolist() == [[4, 0, 2, 0], [0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0]]


def test_byte_conventions_hand_case():
    counts = traffic_counts([RANK0, EMPTY, EMPTY, EMPTY])
    hidden, tok = 128, 100
    flat = per_rank_bytes(counts, algo="flat", direction="dispatch", hidden=hidden, token_bytes=tok)
    assert flat["logical"].tolist() == [4 * hidden * 2, 0, 0, 0]
    assert flat["wire"].tolist() == [400, 0, 0, 0]
    assert flat["recv_wire"].tolist() == [200, 0, 100, 100]
    assert flat["scale_out"].tolist() == [200, 0, 0, 0]
    assert flat["scale_up"].tolist() == [0, 0, 0, 0]
    assert flat["self"].tolist() == [200, 0, 0, 0]
    assert flat["deepep_rdma"].tolist() == [400, 0, 0, 0]  # 2 + 2 node copies, local included
    assert flat["deepep_nvl"].tolist() == [200, 0, 100, 100]
    assert flat["deepep_ll"].tolist() == [6 * (tok + 16), 0, 0, 0]
    hier = per_rank_bytes(
        counts, algo="hierarchical", direction="dispatch", hidden=hidden, token_bytes=tok
    )
    assert hier["logical"].tolist() == flat["logical"].tolist()
    assert hier["wire"].tolist() == [600, 0, 200, 0]
    assert hier["scale_out"].tolist() == [200, 0, 0, 0]
    assert hier["scale_up"].tolist() == [0, 0, 100, 0]
    comb = per_rank_bytes(counts, algo="flat", direction="combine", hidden=hidden, token_bytes=tok)
    assert comb["wire"].tolist() == [200, 0, 100, 100]
    assert comb["logical"].tolist() == [512, 0, 256, 256]
    assert comb["deepep_ll"].tolist() == [600, 0, 0, 0]


def test_decode_bound_reproduces_paper():
    bound = decode_bound()
    assert round(bound.comm_us, 2) == 120.96
    assert round(bound.token_ms, 2) == 14.76
    assert int(bound.tokens_per_s) == 67
    nvl72 = decode_bound(bandwidth_gbps=900)
    assert round(nvl72.comm_us, 2) == 6.72
    assert round(nvl72.token_ms, 2) == 0.82
    assert 1200 <= nvl72.tokens_per_s <= 1230
