"""A vs B comparisons: per size, the ratio of medians with a hierarchical bootstrap CI, a rank
test, a multiple-comparison correction, and a verdict that says "same" only inside a margin.

Launches (runs) are the experimental unit. The statistic on each side is the median over
launches of each launch's median time. The bootstrap resamples launches with replacement, then
iterations within each chosen launch; a launch's resampled median is drawn exactly from the
distribution of the k-th order statistic of a size-n resample (k = ceil(n/2)):
P(X*_(k) <= x_(j)) = P(Binomial(n, j/n) >= k), so no resample is ever materialised and a
million samples cost milliseconds. The rank test (Mann-Whitney U, two-sided) runs on launch
medians when each side has at least `MIN_RUNS_FOR_TEST` launches, else on pooled iterations
(said so in `test_unit`: iterations are not independent launches). p-values are corrected
across sizes (Holm by default, or Benjamini-Hochberg). Verdicts: `same` when the whole CI lies
within 1 +- margin; `faster`/`slower` when the CI excludes 1 and the corrected p < alpha;
otherwise `inconclusive`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from results.frame import POINT_KEYS

COMPARE_KEYS = ("predicted", *POINT_KEYS)
MIN_RUNS_FOR_TEST = 4
"""Launches per side needed to run the rank test on launch medians."""
_VOLATILE = re.compile(
    r"(^|[._])(pid|pids|port|created_utc|start_time|end_time|time_utc|run_id)$", re.I
)
"""Metadata that differs between any two launches and says nothing about them."""
_NOT_METADATA = {
    "run_id",
    "source",
    "dir",
    "label",
    "line",
    "iteration",
    "time_s",
    "algbw_gbps",
    "busbw_gbps",
    "format",
    "msg_bytes",
    "count",
    "num_wrong",
    *COMPARE_KEYS,
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class CompareSettings:
    """How a comparison is made."""

    margin: float = 0.05
    """Equivalence margin: "same" only when the ratio CI lies within 1 +- margin."""
    confidence: float = 0.95
    """Confidence level of the bootstrap CI; alpha = 1 - confidence for the tests."""
    n_boot: int = 2000
    """Bootstrap resamples."""
    seed: int = 0
    """Seed of the bootstrap generator (results are reproducible)."""
    correction: str = "bh"
    """bh (Benjamini-Hochberg, false discovery rate) or holm (family-wise), across the sizes
    of one comparison."""

    def __post_init__(self) -> None:
        if not 0 < self.margin < 1:
            raise ValueError(f"margin {self.margin} must lie in (0, 1), e.g. 0.05 for 5%")
        if not 0.5 < self.confidence < 1:
            raise ValueError(f"confidence {self.confidence} must lie in (0.5, 1)")
        if self.n_boot < 100:
            raise ValueError(f"n_boot {self.n_boot} is too small; use at least 100")
        if self.correction not in ("holm", "bh"):
            raise ValueError(f"correction {self.correction!r} must be holm or bh")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Comparison:
    """The answer to one `compare` call."""

    by: str
    """Column compared."""
    baseline: str
    """Value of `by` every other value is compared against."""
    table: pd.DataFrame
    """One row per (group, other value, size): medians, ratio with CI, p-values, verdict."""
    differing: pd.DataFrame
    """Metadata columns whose values differ between the sides (besides `by`)."""
    settings: CompareSettings
    """How it was computed."""


def str_values(series: pd.Series) -> np.ndarray:
    """The values of a column as an object array of str ('' for missing), fast on categoricals."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        cats = np.array([str(c) for c in series.cat.categories] + [""], dtype=object)
        values: np.ndarray = cats[series.cat.codes.to_numpy()]
        return values
    return np.array(["" if v is None or v != v else str(v) for v in series], dtype=object)


def resolve_key(frame: pd.DataFrame, key: str) -> str:
    """The column `key` names: itself, or meta.KEY / config.KEY / any column ending in .KEY."""
    if key in frame.columns:
        return key
    for prefix in ("meta.", "config."):
        if prefix + key in frame.columns:
            return prefix + key
    ends: list[str] = [c for c in frame.columns if c.endswith("." + key)]
    if len(ends) == 1:
        return ends[0]
    hint = (
        ", ".join(ends)
        if ends
        else ", ".join(c for c in frame.columns if c.startswith(("meta.", "config.")))[:300]
    )
    raise ValueError(f"--by {key!r} names no single column; choose one of: {hint or 'none'}")


def compare(
    frame: pd.DataFrame,
    by: str,
    *,
    baseline: str | None = None,
    settings: CompareSettings | None = None,
    keys: Sequence[str] = COMPARE_KEYS,
) -> Comparison:
    """Compare the rows of each value of column `by` against those of `baseline`."""
    settings = settings or CompareSettings()
    col = resolve_key(frame, by)
    all_sides = str_values(frame[col])
    keep = all_sides != ""
    data, side_values = frame[keep], all_sides[keep]
    values = sorted(set(np.unique(side_values).tolist()))
    if len(values) < 2:
        raise ValueError(
            f"--by {by!r} has {len(values)} value(s) {values} in these runs; "
            "a comparison needs at least two"
        )
    baseline = values[0] if baseline is None else str(baseline)
    if baseline not in values:
        raise ValueError(f"baseline {baseline!r} is not a value of {col}: {values}")
    side = pd.Series(side_values, index=data.index)
    group_keys = [k for k in keys if k in data.columns and k != col]
    rng = np.random.default_rng(settings.seed)
    rows: list[dict[str, Any]] = []
    diffs = []
    needed = list(dict.fromkeys([*group_keys, "run_id", "time_s", col]))
    records = data[data["iteration"] == 0] if "iteration" in data.columns else data
    for other in (v for v in values if v != baseline):
        pair = data.loc[side.isin([baseline, other]), needed]
        rows.extend(_compare_pair(pair, col, baseline, other, group_keys, settings, rng))
        rec_side = pd.Series(str_values(records[col]), index=records.index)
        diffs.append(
            differing_metadata(records[rec_side.isin([baseline, other])], col, baseline, other)
        )
    table = _correct(pd.DataFrame(rows), group_keys, settings)
    differing = pd.concat(diffs, ignore_index=True) if diffs else pd.DataFrame()
    return Comparison(
        by=col, baseline=baseline, table=table, differing=differing, settings=settings
    )


def _compare_pair(
    pair: pd.DataFrame,
    col: str,
    baseline: str,
    other: str,
    group_keys: list[str],
    settings: CompareSettings,
    rng: np.random.Generator,
) -> list[dict[str, Any]]:
    """One row per group present on both sides; runs are sliced from one global sort."""
    is_b = (str_values(pair[col]) == other).astype(np.int64)
    groups = pair.groupby(group_keys, observed=True, sort=True)
    gcodes = groups.ngroup().to_numpy()
    rcodes = pd.Categorical(str_values(pair["run_id"])).codes.astype(np.int64)
    times = pair["time_s"].to_numpy(dtype=np.float64)
    order = np.lexsort((times, rcodes, is_b, gcodes))
    g, b, r, t = gcodes[order], is_b[order], rcodes[order], times[order]
    cuts = np.flatnonzero((np.diff(g) != 0) | (np.diff(b) != 0) | (np.diff(r) != 0)) + 1
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts, [t.size]])
    sides: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    for start, end in zip(starts, ends, strict=True):
        entry = sides.setdefault(int(g[start]), ([], []))
        entry[int(b[start])].append(t[start:end])
    keys = list(groups.groups.keys())
    rows = []
    for code, (runs_a, runs_b) in sorted(sides.items()):
        if not runs_a or not runs_b:
            continue
        key = keys[code] if isinstance(keys[code], tuple) else (keys[code],)
        cell = compare_cell(runs_a, runs_b, settings, rng)
        rows.append(
            {
                **dict(zip(group_keys, key, strict=True)),
                "by": col,
                "baseline": baseline,
                "other": other,
                **cell,
            }
        )
    return rows


def compare_cell(
    runs_a: list[np.ndarray],
    runs_b: list[np.ndarray],
    settings: CompareSettings,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Ratio (B/A, time) of medians of launch medians, its bootstrap CI, and a rank test."""
    med_a = np.array([np.median(r) for r in runs_a])
    med_b = np.array([np.median(r) for r in runs_b])
    point_a, point_b = float(np.median(med_a)), float(np.median(med_b))
    boot = bootstrap_medians(runs_b, settings.n_boot, rng) / bootstrap_medians(
        runs_a, settings.n_boot, rng
    )
    alpha = 1 - settings.confidence
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    if not (_enough(runs_a) and _enough(runs_b)):
        lo = hi = math.nan  # one launch of a few reported means: no honest interval
    if min(len(runs_a), len(runs_b)) >= MIN_RUNS_FOR_TEST:
        xa, xb, unit = med_a, med_b, "launches"
    else:
        xa, xb, unit = np.concatenate(runs_a), np.concatenate(runs_b), "iterations"
    p = (
        float(sps.mannwhitneyu(xb, xa, alternative="two-sided").pvalue)
        if (len(xa) > 0 and len(xb) > 0)
        else math.nan
    )
    return {
        "runs_a": len(runs_a),
        "runs_b": len(runs_b),
        "n_a": int(sum(r.size for r in runs_a)),
        "n_b": int(sum(r.size for r in runs_b)),
        "median_a_s": point_a,
        "median_b_s": point_b,
        "ratio": point_b / point_a if point_a > 0 else math.nan,
        "ratio_lo": float(lo),
        "ratio_hi": float(hi),
        "p_value": p,
        "test_unit": unit,
    }


def _enough(runs: list[np.ndarray]) -> bool:
    """At least two launches, or one launch with enough samples for a median CI."""
    return len(runs) >= 2 or (len(runs) == 1 and runs[0].size >= 6)


def bootstrap_medians(runs: list[np.ndarray], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """`n_boot` draws of the median over resampled launches of each launch's resampled median.

    Each run must be sorted ascending.
    """
    if not runs:
        raise ValueError("bootstrap_medians needs at least one run")
    num_runs = len(runs)
    pick = rng.integers(0, num_runs, size=(n_boot, num_runs))
    u = rng.random(size=(n_boot, num_runs))
    draws = np.empty((n_boot, num_runs))
    for r, x in enumerate(runs):
        mask = pick == r
        if mask.any():
            draws[mask] = x[np.searchsorted(_median_index_cdf(x.size), u[mask])]
    return np.median(draws, axis=1)


def _median_index_cdf(n: int) -> np.ndarray:
    """P(resampled median <= x_(j)) for j = 1..n, for a size-n resample with replacement."""
    k = (n + 1) // 2
    cdf = sps.binom.sf(k - 1, n, np.arange(1, n + 1) / n)
    cdf[-1] = 1.0
    return np.maximum.accumulate(cdf)


def adjust_pvalues(p: np.ndarray, method: str) -> np.ndarray:
    """Holm (step-down, family-wise) or Benjamini-Hochberg (false discovery rate)."""
    p = np.asarray(p, dtype=np.float64)
    ok = ~np.isnan(p)
    out = np.full_like(p, np.nan)
    if not ok.any():
        return out
    if method == "bh":
        out[ok] = sps.false_discovery_control(p[ok], method="bh")
        return out
    vals = p[ok]
    order = np.argsort(vals)
    m = vals.size
    stepped = np.maximum.accumulate((m - np.arange(m)) * vals[order])
    adj = np.empty(m)
    adj[order] = np.minimum(stepped, 1.0)
    out[ok] = adj
    return out


def _correct(table: pd.DataFrame, group_keys: list[str], settings: CompareSettings) -> pd.DataFrame:
    if table.empty:
        return table
    family = [k for k in group_keys if k != "size_bytes"] + ["other"]
    table["p_adj"] = np.nan
    for _, idx in table.groupby(family, observed=True, sort=False).groups.items():
        table.loc[idx, "p_adj"] = adjust_pvalues(
            table.loc[idx, "p_value"].to_numpy(), settings.correction
        )
    table["verdict"] = [
        verdict(r.ratio_lo, r.ratio_hi, r.p_adj, settings) for r in table.itertuples()
    ]
    if "predicted" in table.columns:
        pred = table["predicted"].astype(bool)
        table.loc[pred, ["ratio_lo", "ratio_hi", "p_value", "p_adj"]] = np.nan
        table.loc[pred, "test_unit"] = "model"
        table.loc[pred, "verdict"] = [
            "predicted " + verdict(r, r, 0.0, settings) for r in table.loc[pred, "ratio"]
        ]
    return table


def verdict(lo: float, hi: float, p_adj: float, settings: CompareSettings) -> str:
    """same / faster / slower (B against A, by time) / inconclusive.

    Predicted rows (the model is deterministic) get `predicted same/faster/slower` from the
    ratio alone, with no interval or test.
    """
    if 1 - settings.margin <= lo and hi <= 1 + settings.margin:
        return "same"
    significant = p_adj == p_adj and p_adj < 1 - settings.confidence
    if significant and lo > 1:
        return "slower"
    if significant and hi < 1:
        return "faster"
    return "inconclusive"


def differing_metadata(frame: pd.DataFrame, col: str, baseline: str, other: str) -> pd.DataFrame:
    """Columns (besides `col`) whose run-level values differ between the two sides."""
    side = pd.Series(str_values(frame[col]), index=frame.index)
    rows = []
    for name in frame.columns:
        if (
            name == col
            or name in _NOT_METADATA
            or name.startswith("extra.")
            or _VOLATILE.search(name)
        ):
            continue
        a = _values(frame.loc[side == baseline, name])
        b = _values(frame.loc[side == other, name])
        if a != b:
            rows.append(
                {
                    "column": name,
                    "baseline": baseline,
                    "other": other,
                    "baseline_values": ", ".join(sorted(a))[:200],
                    "other_values": ", ".join(sorted(b))[:200],
                }
            )
    return pd.DataFrame(
        rows, columns=["column", "baseline", "other", "baseline_values", "other_values"]
    )


def _values(series: pd.Series) -> set[str]:
    uniq = series.unique()
    return {_stable(v) for v in uniq}


def _stable(value: Any) -> str:
    """A value as text, with volatile keys (pids, ports, times) dropped from JSON lists."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    text = str(value)
    if text[:1] in "[{":
        try:
            return json.dumps(_drop_volatile(json.loads(text)), sort_keys=True)
        except ValueError:
            return text
    return text


def _drop_volatile(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _drop_volatile(v) for k, v in obj.items() if not _VOLATILE.search(str(k))}
    if isinstance(obj, list):
        return [_drop_volatile(v) for v in obj]
    return obj
