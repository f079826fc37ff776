"""MoE CLI options and the op classes' validation (no processes)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from bench.errors import UsageError
from bench.moe_options import add_moe_arguments, check_moe_args, moe_op_kwargs, token_sweep
from collectives.ops.moe import OPS


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_moe_arguments(parser)
    parser.add_argument("--gpus-per-node", type=int, default=None)
    return parser.parse_args(list(argv))


def test_defaults_follow_deepep_tests():
    args = _parse()
    kwargs = moe_op_kwargs(args)
    assert (kwargs["hidden"], kwargs["num_experts"], kwargs["top_k"]) == (7168, 256, 8)
    assert (kwargs["codec_dispatch"], kwargs["codec_combine"]) == ("fp8", "bf16")
    assert token_sweep(args) == [4096]
    assert token_sweep(_parse("--mode", "low-latency")) == [128]
    assert token_sweep(_parse("--num-tokens", "1,8,128")) == [1, 8, 128]
    assert moe_op_kwargs(args, local_world=8)["gpus_per_node"] == 8


@pytest.mark.parametrize(
    ("argv", "world", "message"),
    [
        (["--top-k", "300"], 8, "--top-k 300 must be between 1 and --num-experts"),
        (["--num-experts", "250"], 8, "not divisible by 8 ranks"),
        (["--node-limit", "3", "--gpus-per-node", "4"], 8, "--node-limit 3 exceeds the 2 nodes"),
        (["--mode", "low-latency", "--algo", "hierarchical"], 8, "low-latency runs with --algo"),
        (["--routing", "file"], 8, "--routing file needs --routing-file"),
        (["--routing", "file", "--routing-file", "/nonexistent.txt"], 8, "cannot read"),
    ],
)
def test_bad_options_are_one_line_usage_errors(argv, world, message):
    args = _parse(*argv)
    with pytest.raises(UsageError, match=message):
        check_moe_args(args, world, args.gpus_per_node)


def test_bad_token_list_is_rejected():
    with pytest.raises(SystemExit):
        _parse("--num-tokens", "0")


def test_op_validates_at_construction_and_for_a_world():
    with pytest.raises(ValueError, match="--top-k 9"):
        OPS["dispatch"](num_experts=8, top_k=9)
    op = OPS["dispatch"](
        num_experts=16, top_k=4, hidden=256, codec_dispatch="bf16", node_limit=1, gpus_per_node=2
    )
    assert op.size_unit == "tokens"
    sizes = op.sizes(128, "bfloat16", 4)
    assert (sizes.count, sizes.size_bytes) == (128, 128 * 256 * 2)
    with pytest.raises(ValueError, match="not divisible by 3 ranks"):
        op.sizes(128, "bfloat16", 3)


def test_traffic_matrix_matches_convention_totals():
    options = dict(
        num_experts=16, top_k=4, hidden=256, codec_dispatch="bf16", node_limit=1, gpus_per_node=2
    )
    dispatch = OPS["dispatch"](**options).traffic_matrix(64, "bfloat16", 4)
    combine = OPS["combine"](**options).traffic_matrix(64, "bfloat16", 4)
    np.testing.assert_array_equal(dispatch, combine.T)
    assert dispatch.shape == (4, 4)
    # every token reaches exactly one node (node limit 1): at most 2 ranks, at least 1
    rows = dispatch.sum(axis=1) // (256 * 2)
    assert ((rows >= 64) & (rows <= 128)).all()
