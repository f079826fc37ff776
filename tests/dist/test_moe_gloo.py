"""MoE dispatch/combine on 4 gloo ranks posing as 2 nodes (--gpus-per-node 2)."""

from __future__ import annotations

import pytest

from tests.dist.moe_cases import run_cases, write_inputs
from tests.dist.moe_gloo_comm import run_gloo

pytestmark = [pytest.mark.dist, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("moe")
    write_inputs(workdir)
    return run_gloo(run_cases, 4, 2, str(workdir))


def _cases(results, prefix):
    names = [name for name in results[0] if name.startswith(prefix)]
    assert names, prefix
    return names


def test_dispatch_batches_and_combine_are_correct(results):
    for name in _cases(results, ""):
        for rank, cases in enumerate(results):
            case = cases[name]
            for key in ("dispatch_wrong", "cached_wrong", "combine_wrong", "wrong"):
                assert case.get(key, 0) == 0, (name, rank, key, case)


def test_node_limit_holds(results):
    for rank_cases in results:
        for name in _cases(results, "flat-fp32-limit1") + _cases(results, "hierarchical-bf16"):
            assert rank_cases[name]["max_nodes_per_token"] == 1, name
        assert rank_cases["flat-zipf"]["max_nodes_per_token"] == 2


def test_identity_experts_return_x_exactly_and_algorithms_agree(results):
    for rank_cases in results:
        for name in _cases(results, "exact-"):
            case = rank_cases[name]
            assert case.get("exact", True) and case.get("equal", True), name


def test_ops_report_bytes_and_overlap(results):
    for rank_cases in results:
        for name in _cases(results, "op-"):
            case = rank_cases[name]
            if not name.startswith("op-combine"):
                assert case["wire_sent"] == case["matrix_row"], name
        for algo in ("flat", "hierarchical"):
            report = rank_cases[f"op-moe-{algo}-overlap"]["overlap"]
            assert report["comm_us"] > 0 and report["compute_us"] > 0
            assert report["together_us"] > 0
            assert report["scheme"] == "threads"  # CPU ranks: two host threads
