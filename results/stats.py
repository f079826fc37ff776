"""Per-group statistics of the tidy frame: median with a nonparametric CI, percentiles, CV,
stability warnings, and straggler ranks from per-rank samples.

The median's confidence interval is distribution-free: between order statistics x_(j) and
x_(n-j+1), with j the largest index such that a Binomial(n, 1/2) count falls below j with
probability at most (1 - confidence)/2 (Hoefler & Belli, SC'15, §4). With fewer than 6 samples
no 95% interval exists and the bounds are NaN. Everything is vectorised over groups (one sort
of the whole frame), so a million samples summarise in well under a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from results.frame import POINT_KEYS

SUMMARY_KEYS = ("label", "predicted", *POINT_KEYS)
"""Default grouping: one configuration (label) x point, pooling its launches."""
CV_WARN = 0.10
"""Coefficient of variation at or above which a group is called unstable."""
MIN_SAMPLES = 10
"""Fewer samples than this draw a warning."""
FAR_FACTOR = 2.0
"""max >= FAR_FACTOR x median, or min <= median / FAR_FACTOR, draws a warning."""
STRAGGLER_EXCESS = 0.10
"""A rank whose median time exceeds the median over ranks by this fraction is a straggler."""


def median_ci_indices(n: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """0-based indices (lo, hi) of the order statistics bounding the median's CI; -1 if none.

    For sorted samples x_(1..n): P(x_(j) <= median < x_(n-j+1)) >= confidence.
    """
    if not 0.5 < confidence < 1:
        raise ValueError(f"confidence {confidence} must lie in (0.5, 1)")
    n = np.asarray(n, dtype=np.int64)
    alpha = 1.0 - confidence
    j = np.where(n > 0, sps.binom.ppf(alpha / 2, np.maximum(n, 1), 0.5), 0).astype(np.int64)
    ok = j >= 1
    return np.where(ok, j - 1, -1), np.where(ok, n - j, -1)


def median_ci(
    samples: Sequence[float] | np.ndarray, confidence: float = 0.95
) -> tuple[float, float, float]:
    """(median, lo, hi) of one sample set; lo/hi NaN when too few samples for `confidence`."""
    x = np.sort(np.asarray(samples, dtype=np.float64))
    if x.size == 0:
        raise ValueError("median_ci needs at least one sample")
    lo, hi = median_ci_indices(np.array([x.size]), confidence)
    med = float(np.median(x))
    if lo[0] < 0:
        return med, float("nan"), float("nan")
    return med, float(x[lo[0]]), float(x[hi[0]])


def _sorted_groups(
    frame: pd.DataFrame, keys: list[str], value: str
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    codes = frame.groupby(keys, observed=True, sort=True).ngroup().to_numpy()
    x = frame[value].to_numpy(dtype=np.float64)
    order = np.lexsort((x, codes))
    counts = np.bincount(codes, minlength=codes.max() + 1 if codes.size else 0)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    first = frame.iloc[order[starts]].reset_index(drop=True) if codes.size else frame.iloc[:0]
    return first, x[order], counts, starts, codes


def _quantile(xs: np.ndarray, starts: np.ndarray, counts: np.ndarray, q: float) -> np.ndarray:
    pos = (counts - 1) * q
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, counts - 1)
    frac = pos - lo
    out: np.ndarray = xs[starts + lo] * (1 - frac) + xs[starts + hi] * frac
    return out


def summarize(
    frame: pd.DataFrame,
    keys: Sequence[str] = SUMMARY_KEYS,
    *,
    confidence: float = 0.95,
    value: str = "time_s",
) -> pd.DataFrame:
    """One row per group of `keys`: n, launches, median with CI, mean, min, max, p95, p99, CV,
    bandwidths at the median (algbw/busbw, GB/s, with the CI mapped through) and warnings."""
    keys = [k for k in keys if k in frame.columns]
    if frame.empty:
        return pd.DataFrame(columns=[*keys, "n", "median_s"])
    first, xs, counts, starts, codes = _sorted_groups(frame, keys, value)
    out = first[[*keys]].copy()
    for col in ("num_ranks", "bus_factor", "size_convention", "ops_per_sample", "num_wrong"):
        if col in first.columns and col not in keys:
            out[col] = first[col].to_numpy()
    out["n"] = counts
    out["num_runs"] = _runs_per_group(frame, codes, len(counts))
    _order_stats(out, xs, starts, counts, confidence)
    _moments(out, xs, starts, counts)
    _bandwidths(out)
    out["warnings"] = [_warnings(row._asdict()) for row in out.itertuples(index=False)]
    return out


def _runs_per_group(frame: pd.DataFrame, codes: np.ndarray, num_groups: int) -> np.ndarray:
    if "run_id" not in frame.columns:
        return np.ones(num_groups, dtype=np.int64)
    run_codes = pd.Categorical(frame["run_id"]).codes.astype(np.int64)
    pairs = np.unique(codes.astype(np.int64) * (run_codes.max() + 1) + run_codes)
    return np.bincount(pairs // (run_codes.max() + 1), minlength=num_groups)


def _order_stats(
    out: pd.DataFrame, xs: np.ndarray, starts: np.ndarray, counts: np.ndarray, confidence: float
) -> None:
    out["median_s"] = _quantile(xs, starts, counts, 0.5)
    lo, hi = median_ci_indices(counts, confidence)
    out["ci_lo_s"] = np.where(lo >= 0, xs[starts + np.maximum(lo, 0)], np.nan)
    out["ci_hi_s"] = np.where(hi >= 0, xs[starts + np.maximum(hi, 0)], np.nan)
    out["min_s"] = xs[starts]
    out["max_s"] = xs[starts + counts - 1]
    out["p95_s"] = _quantile(xs, starts, counts, 0.95)
    out["p99_s"] = _quantile(xs, starts, counts, 0.99)


def _moments(out: pd.DataFrame, xs: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> None:
    sums = np.add.reduceat(xs, starts) if xs.size else np.zeros(0)
    mean = sums / counts
    dev = xs - np.repeat(mean, counts)
    ss = np.add.reduceat(dev * dev, starts) if xs.size else np.zeros(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        std = np.where(counts > 1, np.sqrt(ss / np.maximum(counts - 1, 1)), np.nan)
        out["mean_s"] = mean
        out["cv"] = np.where(mean > 0, std / mean, np.nan)


def _bandwidths(out: pd.DataFrame) -> None:
    size = out["size_bytes"].to_numpy(dtype=np.float64) if "size_bytes" in out else None
    factor = out["bus_factor"].to_numpy(dtype=np.float64) if "bus_factor" in out else 1.0
    if size is None:
        return
    with np.errstate(divide="ignore", invalid="ignore"):
        for name, col in (
            ("algbw_gbps", "median_s"),
            ("algbw_lo_gbps", "ci_hi_s"),
            ("algbw_hi_gbps", "ci_lo_s"),
        ):
            bw = np.where(size >= 0, size / out[col].to_numpy() / 1e9, np.nan)
            out[name] = bw
            out[name.replace("algbw", "busbw")] = bw * factor


def _warnings(r: dict[str, Any]) -> str:
    notes = []
    n, med = r["n"], r["median_s"]
    if n == 1:
        ops = r.get("ops_per_sample", 0)
        what = f"mean of {ops} ops" if ops > 1 else "a mean reported by the tool"
        notes.append(f"one sample ({what}): spread unknown")
    elif n < 6:
        notes.append(f"only {n} samples: no 95% CI of the median")
    elif n < MIN_SAMPLES:
        notes.append(f"only {n} samples")
    if r["cv"] == r["cv"] and r["cv"] >= CV_WARN:
        notes.append(f"CV {r['cv'] * 100:.0f}% >= {CV_WARN * 100:.0f}%")
    if n > 1 and med > 0 and r["max_s"] >= FAR_FACTOR * med:
        notes.append(f"max {r['max_s'] / med:.1f}x the median")
    if n > 1 and med > 0 and r["min_s"] <= med / FAR_FACTOR:
        notes.append(f"min {r['min_s'] / med:.2f}x the median")
    if r.get("num_wrong", 0) > 0:
        notes.append(f"{r['num_wrong']} wrong elements")
    return "; ".join(notes)


def rank_table(
    ranks: pd.DataFrame,
    keys: Sequence[str] = ("run_id", "label", *POINT_KEYS),
) -> pd.DataFrame:
    """Per (record, rank): median time, its ratio to the median over ranks, and the share of
    iterations in which that rank was the slowest."""
    keys = [k for k in keys if k in ranks.columns]
    if ranks.empty:
        return pd.DataFrame(columns=[*keys, "rank", "median_s", "rel_to_ranks", "slowest_share"])
    first, xs, counts, starts, _ = _sorted_groups(ranks, [*keys, "rank"], "time_s")
    out = first[[*keys, "rank"]].copy()
    out["median_s"] = _quantile(xs, starts, counts, 0.5)
    record = out.groupby(keys, observed=True, sort=False).ngroup().to_numpy()
    out["rel_to_ranks"] = out["median_s"] / out.groupby(record)["median_s"].transform("median")
    out["slowest_share"] = _slowest_share(ranks, keys, out)
    return out


def _slowest_share(ranks: pd.DataFrame, keys: list[str], out: pd.DataFrame) -> np.ndarray:
    """For each row of `out` (record x rank): fraction of iterations that rank was slowest."""
    rec = ranks.groupby(keys, observed=True, sort=True).ngroup().to_numpy()
    it = ranks["iteration"].to_numpy(dtype=np.int64)
    rank = ranks["rank"].to_numpy(dtype=np.int64)
    order = np.lexsort((ranks["time_s"].to_numpy(), it, rec))
    rec_s, it_s = rec[order], it[order]
    last = np.flatnonzero(np.r_[(np.diff(rec_s) != 0) | (np.diff(it_s) != 0), True])
    width = int(rank.max()) + 1
    wins = np.bincount(
        rec_s[last] * width + rank[order][last], minlength=(int(rec.max()) + 1) * width
    )
    iters = np.bincount(rec_s[last], minlength=int(rec.max()) + 1)
    out_rec = out.groupby(keys, observed=True, sort=True).ngroup().to_numpy()
    out_rank = out["rank"].to_numpy(dtype=np.int64)
    share: np.ndarray = wins[out_rec * width + out_rank] / iters[out_rec]
    return share


def stragglers(table: pd.DataFrame, excess: float = STRAGGLER_EXCESS) -> pd.DataFrame:
    """Rows of `rank_table` whose median is at least `excess` above the median over ranks."""
    if table.empty:
        return table
    return table[table["rel_to_ranks"] >= 1.0 + excess].reset_index(drop=True)
