"""Statistics on synthetic data with known answers: median CI coverage and indices,
summaries, stability warnings, stragglers, comparisons (a 10% shift is found; identical
distributions give a CI inside the margin), p-value corrections, and bounds."""

from __future__ import annotations

import pathlib

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from results import bounds, compare, stats
from results.loader import load_all


def _frame(groups: dict[str, list[np.ndarray]], size: int = 1024, **meta: str) -> pd.DataFrame:
    """Rows of runs: {side value: [run samples, ...]} with column meta.fabric = side."""
    parts = []
    for side, runs in groups.items():
        for i, samples in enumerate(runs):
            parts.append(
                pd.DataFrame(
                    {
                        "run_id": f"{side}-{i}",
                        "label": side,
                        "op": "alltoall",
                        "backend": "nccl",
                        "dtype": "bfloat16",
                        "codec": "none",
                        "mode": "per_iter",
                        "placement": "",
                        "variant": "",
                        "size_bytes": size,
                        "predicted": False,
                        "bus_factor": 0.5,
                        "num_ranks": 2,
                        "iteration": np.arange(samples.size),
                        "time_s": samples,
                        "meta.fabric": side,
                        **{f"meta.{k}": v for k, v in meta.items()},
                    }
                )
            )
    return pd.concat(parts, ignore_index=True)


def _runs(rng: np.random.Generator, num_runs: int, n: int, scale: float) -> list[np.ndarray]:
    return [scale * rng.normal(1.0, 0.01) * rng.lognormal(0, 0.05, n) for _ in range(num_runs)]


# ---- median CI ---------------------------------------------------------------------------


def test_median_ci_indices_exact_small_n() -> None:
    lo, hi = stats.median_ci_indices(np.array([5, 6, 10, 100]))
    assert list(lo) == [-1, 0, 1, 39]  # n=5: no 95% CI; n=6: (min, max); n=10: x(2), x(9)
    assert list(hi) == [-1, 5, 8, 60]
    for n, j in ((6, 0), (10, 1), (100, 39)):
        coverage = 1 - 2 * sps.binom.cdf(j, n, 0.5)
        assert coverage >= 0.95


def test_median_ci_coverage_by_simulation() -> None:
    rng = np.random.default_rng(3)
    true_median = np.log(2)  # exponential(1)
    hits = 0
    for _ in range(2000):
        _, lo, hi = stats.median_ci(rng.exponential(1.0, 25))
        hits += lo <= true_median <= hi
    assert 0.94 <= hits / 2000 <= 0.995


def test_median_ci_too_few_samples() -> None:
    med, lo, hi = stats.median_ci([1.0, 2.0, 3.0])
    assert med == 2.0 and np.isnan(lo) and np.isnan(hi)
    with pytest.raises(ValueError, match="confidence"):
        stats.median_ci_indices(np.array([10]), confidence=1.5)


# ---- summaries and warnings ---------------------------------------------------------------


def test_summarize_known_values() -> None:
    frame = _frame({"ib": [np.arange(1, 102, dtype=float) * 1e-6]})
    row = stats.summarize(frame).iloc[0]
    assert row["n"] == 101 and row["num_runs"] == 1
    assert row["median_s"] == pytest.approx(51e-6)
    assert row["p95_s"] == pytest.approx(96e-6) and row["p99_s"] == pytest.approx(100e-6)
    lo, hi = stats.median_ci_indices(np.array([101]))
    assert row["ci_lo_s"] == pytest.approx((lo[0] + 1) * 1e-6)
    assert row["ci_hi_s"] == pytest.approx((hi[0] + 1) * 1e-6)
    x = np.arange(1, 102) * 1e-6
    assert row["cv"] == pytest.approx(x.std(ddof=1) / x.mean())
    assert row["algbw_gbps"] == pytest.approx(1024 / 51e-6 / 1e9)
    assert row["busbw_gbps"] == pytest.approx(0.5 * 1024 / 51e-6 / 1e9)
    assert row["algbw_lo_gbps"] < row["algbw_gbps"] < row["algbw_hi_gbps"]
    assert "CV" in row["warnings"]  # uniform 1..101: CV 58%


def test_summarize_many_groups_matches_pandas() -> None:
    rng = np.random.default_rng(0)
    frame = pd.concat(
        [_frame({"ib": _runs(rng, 3, 50, 1e-5)}, size=s) for s in (1024, 2048, 4096)],
        ignore_index=True,
    )
    summary = stats.summarize(frame)
    expect = frame.groupby("size_bytes")["time_s"].agg(["median", "min", "max", "count"])
    assert np.allclose(summary["median_s"], expect["median"])
    assert np.allclose(summary["min_s"], expect["min"])
    assert list(summary["n"]) == [150] * 3 and list(summary["num_runs"]) == [3] * 3


def test_stability_warnings() -> None:
    steady = np.full(50, 1e-5) * np.linspace(0.99, 1.01, 50)
    spiky = steady.copy()
    spiky[0] = 5e-5
    few = steady[:4]
    summary = stats.summarize(
        pd.concat(
            [_frame({"steady": [steady]}), _frame({"spiky": [spiky]}), _frame({"few": [few]})]
        ),
        keys=("label", "size_bytes"),
    )
    warn = dict(zip(summary["label"], summary["warnings"], strict=True))
    assert warn["steady"] == ""
    assert "max 5.0x the median" in warn["spiky"] and "CV" in warn["spiky"]
    assert "only 4 samples" in warn["few"]


def test_stragglers_found_from_rank_times() -> None:
    rng = np.random.default_rng(1)
    rows = []
    for rank in range(8):
        slow = 1.3 if rank == 5 else 1.0
        for it in range(40):
            rows.append(
                {
                    "run_id": "r",
                    "label": "x",
                    "op": "alltoall",
                    "size_bytes": 1024,
                    "rank": rank,
                    "iteration": it,
                    "time_s": slow * 1e-5 * rng.lognormal(0, 0.02),
                }
            )
    table = stats.rank_table(pd.DataFrame(rows))
    slow = stats.stragglers(table)
    assert list(slow["rank"]) == [5]
    assert slow["rel_to_ranks"].iloc[0] == pytest.approx(1.3, rel=0.05)
    assert slow["slowest_share"].iloc[0] == 1.0


# ---- comparisons ---------------------------------------------------------------------------


def test_ten_percent_shift_is_found() -> None:
    rng = np.random.default_rng(7)
    frame = _frame(
        {"ib": _runs(rng, 6, 200, 1e-5), "roce": _runs(rng, 6, 200, 1.1e-5)}, topology="mpft"
    )
    result = compare.compare(frame, "fabric")
    row = result.table.iloc[0]
    assert result.by == "meta.fabric" and result.baseline == "ib"
    assert row["verdict"] == "slower" and row["test_unit"] == "launches"
    assert row["ratio_lo"] < 1.10 < row["ratio_hi"] and row["ratio_lo"] > 1.0
    assert row["ratio"] == pytest.approx(1.1, abs=0.03)
    assert result.differing["column"].tolist() == []  # only the compared key differs
    flipped = compare.compare(frame, "fabric", baseline="roce").table.iloc[0]
    assert flipped["verdict"] == "faster"


def test_identical_distributions_are_same_within_margin() -> None:
    rng = np.random.default_rng(11)
    frame = _frame({"mpft": _runs(rng, 8, 500, 1e-5), "mrft": _runs(rng, 8, 500, 1e-5)})
    row = compare.compare(frame, "meta.fabric").table.iloc[0]
    assert row["verdict"] == "same"
    assert 0.95 <= row["ratio_lo"] <= 1.0 <= row["ratio_hi"] <= 1.05


def test_one_launch_of_one_sample_gives_no_interval() -> None:
    frame = _frame({"a": [np.array([1e-5])], "b": [np.array([1.2e-5])]})
    row = compare.compare(frame, "fabric").table.iloc[0]
    assert np.isnan(row["ratio_lo"]) and row["verdict"] == "inconclusive"


def test_differing_metadata_listed() -> None:
    rng = np.random.default_rng(2)
    a = _frame({"ib": _runs(rng, 2, 20, 1e-5)}, nccl="2.28")
    b = _frame({"roce": _runs(rng, 2, 20, 1e-5)}, nccl="2.27")
    result = compare.compare(pd.concat([a, b], ignore_index=True), "fabric")
    diff = result.differing.set_index("column")
    assert diff.loc["meta.nccl", "baseline_values"] == "2.28"
    assert diff.loc["meta.nccl", "other_values"] == "2.27"


def test_compare_rejects_bad_keys_and_settings() -> None:
    frame = _frame({"ib": [np.ones(10)]})
    with pytest.raises(ValueError, match="at least two"):
        compare.compare(frame, "fabric")
    with pytest.raises(ValueError, match="names no single column"):
        compare.compare(frame, "nope")
    with pytest.raises(ValueError, match="margin"):
        compare.CompareSettings(margin=5)


def test_bootstrap_medians_match_brute_force() -> None:
    rng = np.random.default_rng(5)
    runs = [np.sort(rng.lognormal(0, 0.3, n)) for n in (31, 40, 25)]
    fast = compare.bootstrap_medians(runs, 20000, np.random.default_rng(1))
    brute = []
    for _ in range(4000):
        picks = rng.integers(0, 3, 3)
        meds = [
            np.sort(rng.choice(runs[p], runs[p].size))[(runs[p].size + 1) // 2 - 1] for p in picks
        ]
        brute.append(np.median(meds))
    for q in (0.05, 0.5, 0.95):
        assert np.quantile(fast, q) == pytest.approx(np.quantile(brute, q), rel=0.03)


def test_pvalue_adjustments() -> None:
    p = np.array([0.01, 0.04, 0.03, np.nan, 0.5])
    holm = compare.adjust_pvalues(p, "holm")
    assert holm[0] == pytest.approx(0.04) and holm[2] == pytest.approx(0.09)
    assert holm[1] == pytest.approx(0.09) and holm[4] == pytest.approx(0.5)
    assert np.isnan(holm[3])
    bh = compare.adjust_pvalues(p, "bh")
    ok = ~np.isnan(p)
    assert np.allclose(bh[ok], sps.false_discovery_control(p[ok]))


# ---- bounds --------------------------------------------------------------------------------


def test_decode_bound_reproduces_paper() -> None:
    ib = bounds.decode_bound(bandwidth_gbps=50)
    assert ib.layer_us == pytest.approx(120.96)
    assert ib.layer_overlapped_us == pytest.approx(241.92)
    assert round(ib.token_ms, 2) == 14.76
    assert 67 <= ib.tokens_per_s < 68
    nvl72 = bounds.decode_bound(bandwidth_gbps=900)
    assert nvl72.layer_us == pytest.approx(6.72)
    assert round(nvl72.token_ms, 2) == 0.82
    assert 1200 <= nvl72.tokens_per_s < 1250
    with pytest.raises(ValueError, match="bandwidth_gbps"):
        bounds.decode_bound(bandwidth_gbps=0)


def test_alltoall_bound() -> None:
    # 16 ranks on 2 nodes of 8: half of each rank's bytes leave through its 50 GB/s NIC.
    assert bounds.alltoall_busbw_bound(num_ranks=16, gpus_per_node=8, nic_gbps=50) == pytest.approx(
        15 / 16 * 100
    )
    # inside one node only NVLink counts
    assert bounds.alltoall_busbw_bound(
        num_ranks=8, gpus_per_node=8, nic_gbps=50, nvlink_gbps=160
    ) == pytest.approx(160.0)
    with pytest.raises(ValueError, match="multiple"):
        bounds.alltoall_busbw_bound(num_ranks=12, gpus_per_node=8, nic_gbps=50)
    assert bounds.nic_bound(400).gbps == 50.0


def test_volatile_metadata_not_listed() -> None:
    rng = np.random.default_rng(4)
    a = _frame({"ib": _runs(rng, 2, 20, 1e-5)}, ranks='[{"host": "n1", "pid": 11}]', port="5001")
    b = _frame({"roce": _runs(rng, 2, 20, 1e-5)}, ranks='[{"host": "n1", "pid": 99}]', port="6002")
    b["meta.environment.MASTER_PORT"] = "7"
    diff = compare.compare(pd.concat([a, b], ignore_index=True), "fabric").differing
    assert diff.empty, diff
    b["meta.ranks"] = '[{"host": "n2", "pid": 99}]'
    diff = compare.compare(pd.concat([a, b], ignore_index=True), "fabric").differing
    assert diff["column"].tolist() == ["meta.ranks"]


def test_compare_by_folder_of_any_tool(tmp_path: pathlib.Path) -> None:
    fixture = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "osu"
    for side, scale in (("ib", 1.0), ("roce", 1.25)):
        (tmp_path / side).mkdir()
        lines = (fixture / "osu_alltoall_full_tail.txt").read_text().splitlines()
        out = [
            " ".join(
                f"{float(t) * scale:.2f}" if i in (1, 2, 3) else t
                for i, t in enumerate(line.split())
            )
            if line[:1].isdigit()
            else line
            for line in lines
        ]
        (tmp_path / side / "a2a.txt").write_text("\n".join(out) + "\n")
    result = compare.compare(load_all([tmp_path / "ib", tmp_path / "roce"]).frame, "dir")
    assert result.by == "dir" and len(result.table) == 21
    assert np.allclose(result.table["ratio"], 1.25, atol=0.01)
