"""The readers on real nccl-tests 2.19.6 outputs (2x H200, tests/fixtures/nccl)."""

from __future__ import annotations

import pathlib

import pytest

import results

NCCL = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "nccl"


def test_text_output_both_placements() -> None:
    df = results.load([NCCL / "all_reduce_perf.txt"])
    assert set(df["placement"]) == {"out_of_place", "in_place"}
    assert sorted(df["size_bytes"].unique()) == [1024 * 8**k for k in range(6)]
    first = df[(df["size_bytes"] == 1024) & (df["placement"] == "out_of_place")]
    assert first["time_s"].iloc[0] == pytest.approx(12.31e-6)
    assert (df["num_ranks"] == 2).all() and (df["num_wrong"] == 0).all()


def test_graph_json_per_iteration_and_info_lines() -> None:
    assert set(results.load([NCCL / "all_reduce_perf_graph.txt"])["mode"]) == {"graph"}
    text = results.load([NCCL / "alltoall_perf.txt"])
    as_json = results.load([NCCL / "alltoall_perf.json"])
    assert len(text) == len(as_json) and set(as_json["op"]) == {"alltoall"}
    per_iter = results.load([NCCL / "alltoall_perf_per_iter.json"])
    assert set(per_iter["mode"]) == {"per_iter"} and len(per_iter) >= 50 * 4
    with_info = results.load([NCCL / "alltoall_perf_info.txt"])  # NCCL INFO lines interleaved
    assert len(with_info) == 8 and "NCCL INFO" in (NCCL / "alltoall_perf_info.txt").read_text()
