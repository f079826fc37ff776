"""Routing generators, node-limited top-k, routing/placement files, replica choice."""

from __future__ import annotations

import numpy as np
import pytest

from collectives.moe import placement as pl
from collectives.moe import routing as rt
from collectives.moe.engine import MoESetup


def _gen(**kw):
    args = dict(num_tokens=512, num_experts=64, top_k=8, seed=1, rank=0)
    args.update(kw)
    kind = args.pop("kind", "uniform")
    return rt.generate(kind, **args)


def test_uniform_topk_is_distinct_seeded_and_normalized():
    a = _gen()
    assert a.topk_idx.shape == (512, 8)
    assert all(len(set(row)) == 8 for row in a.topk_idx.tolist())
    assert ((a.topk_idx >= 0) & (a.topk_idx < 64)).all()
    np.testing.assert_allclose(a.topk_weights.sum(axis=1), 1.0, rtol=1e-6)
    assert (np.diff(a.topk_weights, axis=1) <= 0).all()  # largest score first
    np.testing.assert_array_equal(a.topk_idx, _gen().topk_idx)
    assert not np.array_equal(a.topk_idx, _gen(rank=1).topk_idx)


def test_uniform_top8_of_256_touches_about_529_of_8_nodes():
    # [P] §4.3: unconstrained top-8 of 256 experts over 8 nodes reaches 5.29 nodes on average.
    r = _gen(num_tokens=20000, num_experts=256)
    nodes = r.topk_idx // 32
    distinct = np.array([len(set(row)) for row in nodes.tolist()])
    assert distinct.mean() == pytest.approx(5.29, abs=0.03)


@pytest.mark.parametrize("limit", [1, 2, 4])
def test_node_limit_bounds_nodes_per_token(limit):
    group = np.arange(256) // 32
    r = _gen(num_tokens=2000, num_experts=256, node_limit=limit, expert_group=group)
    nodes = r.topk_idx // 32
    assert max(len(set(row)) for row in nodes.tolist()) <= limit
    assert all(len(set(row)) == 8 for row in r.topk_idx.tolist())


def test_group_limited_topk_hand_case():
    # 2 groups of 3 experts, top-2 with M=1: group score = best single score... k//M = 2,
    # so groups are scored by the sum of their top 2: g0 = 5+1 = 6, g1 = 4+3 = 7 -> group 1,
    # even though the single best expert (5) is in group 0.
    scores = np.array([[5.0, 1.0, 0.0, 4.0, 3.0, 2.0]])
    group = np.array([0, 0, 0, 1, 1, 1])
    idx = rt.group_limited_topk(scores, group, top_k=2, node_limit=1)
    assert idx.tolist() == [[3, 4]]
    assert rt.group_limited_topk(scores, group, top_k=2, node_limit=2).tolist() == [[0, 3]]


def test_zipf_skews_load():
    r = _gen(kind="zipf", num_tokens=4000, zipf_s=1.2)
    load = np.bincount(r.topk_idx.reshape(-1), minlength=64)
    assert load.max() > 5 * load.min()
    hot_other_rank = np.bincount(
        _gen(kind="zipf", rank=3, num_tokens=4000, zipf_s=1.2).topk_idx.reshape(-1), minlength=64
    )
    assert np.argmax(load) == np.argmax(hot_other_rank)  # hot experts are global


def test_bad_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match="--top-k 9 must be between 1 and --num-experts"):
        rt.check_shape(num_tokens=4, num_experts=8, top_k=9)
    with pytest.raises(ValueError, match="not divisible by 3 ranks"):
        pl.contiguous(8, 3)
    with pytest.raises(ValueError, match="--node-limit 3 exceeds the 2 nodes"):
        MoESetup(node_limit=3).resolved_node_limit(2)
    with pytest.raises(ValueError, match="node limit 3 must be between 1"):
        rt.group_limited_topk(np.zeros((1, 4)), np.array([0, 0, 1, 1]), top_k=2, node_limit=3)
    with pytest.raises(ValueError, match="node 0 hosts 2 experts, fewer than top_k // node_lim"):
        rt.group_limited_topk(np.zeros((1, 4)), np.array([0, 0, 1, 1]), top_k=4, node_limit=1)
    scores = np.array([[0.0, 0.0, 5.0, 5.0]])
    with pytest.raises(ValueError, match="top-k 3 exceeds the 2 experts on the 2 chosen"):
        rt.group_limited_topk(scores, np.array([0, 0, 1, 2]), top_k=3, node_limit=2)
    with pytest.raises(ValueError, match="--mode low-latency runs with --algo flat"):
        MoESetup(mode="low-latency", algo="hierarchical")


def test_routing_files_npy_and_text(tmp_path):
    table = np.array([[0, 1], [2, 3], [1, -1]])
    np.save(tmp_path / "r.npy", table)
    (tmp_path / "r.csv").write_text("# trace\n0, 1\n2 3\n\n1,-1\n")
    for name in ("r.npy", "r.csv"):
        loaded = rt.load_routing_file(tmp_path / name)
        np.testing.assert_array_equal(loaded, table)
    r = rt.routing_from_table(table, num_tokens=2, num_experts=4, rank=1)
    assert r.topk_idx.tolist() == [[1, -1], [0, 1]]  # rows 2, 3 mod 3
    assert r.topk_weights.tolist() == [[1.0, 0.0], [0.5, 0.5]]


def test_routing_file_errors(tmp_path):
    (tmp_path / "ragged.txt").write_text("0 1\n2\n")
    with pytest.raises(ValueError, match="same number of experts"):
        rt.load_routing_file(tmp_path / "ragged.txt")
    (tmp_path / "word.txt").write_text("0 x\n")
    with pytest.raises(ValueError, match=r"word\.txt:1: expert ids must be integers"):
        rt.load_routing_file(tmp_path / "word.txt")
    with pytest.raises(ValueError, match="names expert 9"):
        rt.routing_from_table(np.array([[9, 1]]), num_tokens=1, num_experts=4, rank=0)
    with pytest.raises(ValueError, match="repeats an expert"):
        rt.routing_from_table(np.array([[1, 1]]), num_tokens=1, num_experts=4, rank=0)


def test_placement_file_with_replicas_balances(tmp_path):
    path = tmp_path / "place.txt"
    path.write_text("0 1\n2 3 0\n")  # expert 0 on both ranks
    placement = pl.load_placement(path, num_experts=4, world=2)
    assert placement.slots_per_rank == 3
    assert placement.slot_expert().tolist() == [0, 1, -1, 2, 3, 0]
    idx = np.array([[0, 1]] * 10)
    slots = pl.assign_slots(placement, idx, rank=0)
    assert sorted(np.bincount(slots[:, 0], minlength=6)[[0, 5]].tolist()) == [5, 5]
    assert (slots[:, 1] == 1).all()
    np.testing.assert_array_equal(slots, pl.assign_slots(placement, idx, rank=0))


def test_placement_errors(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("0 1\n")
    with pytest.raises(ValueError, match="1 rank lines; the job has 2 ranks"):
        pl.load_placement(path, num_experts=2, world=2)
    path.write_text("0\n0\n")
    with pytest.raises(ValueError, match="no replica of expert 1"):
        pl.load_placement(path, num_experts=2, world=2)
