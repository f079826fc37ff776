"""Figures (seaborn on matplotlib's Agg backend): bandwidth and latency vs size with CI bands,
ratio vs size with CI and margin, ECDFs of per-iteration times, per-rank heatmaps, measured
vs predicted. Each function takes frames from results.stats / results.compare and returns a
matplotlib Figure; it never shows or saves it. Predicted series are dashed and say so.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from results.bounds import Bound

sns.set_theme(style="whitegrid", context="paper")
SERIES_KEYS = ("label", "backend", "dtype", "codec", "mode", "placement", "variant")
ECDF_POINTS = 512
"""Points drawn per ECDF (quantiles of the samples): plots stay light at any row count."""


def _layout(fig: Figure) -> None:
    """Fixed margins: matplotlib's tight_layout costs more than drawing the figure."""
    fig.subplots_adjust(left=0.11, right=0.97, top=0.92, bottom=0.13)


def series_name(row: pd.Series | dict[str, Any], keys: Sequence[str] = SERIES_KEYS) -> str:
    """Legend text of one series: the non-empty key values, `(predicted)` when predicted."""
    parts = [str(row[k]) for k in keys if k in row and str(row[k]) not in ("", "none")]
    name = " ".join(dict.fromkeys(parts))
    return f"{name} (predicted)" if bool(row.get("predicted", False)) else name


def _series(summary: pd.DataFrame) -> pd.DataFrame:
    out = summary.copy()
    out["series"] = [series_name(r) for _, r in out.iterrows()]
    return out.sort_values(["series", "size_bytes"])


def _size_axis(ax: Axes) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xlabel("size (bytes, nccl-tests convention)")


def size_plot(
    summary: pd.DataFrame, *, metric: str = "busbw", bounds: Sequence[Bound] = (), title: str = ""
) -> Figure:
    """Bandwidth (metric algbw or busbw, GB/s) or latency (metric time, µs) vs size, with the
    median's CI as a band and bounds as horizontal lines."""
    if metric not in ("algbw", "busbw", "time"):
        raise ValueError(f"metric {metric!r} must be algbw, busbw or time")
    data = _series(summary)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    palette = dict(
        zip(
            data["series"].unique(),
            sns.color_palette(n_colors=data["series"].nunique()),
            strict=True,
        )
    )
    for name, grp in data.groupby("series", sort=False):
        y, lo, hi = _metric_columns(grp, metric)
        dashed = bool(grp["predicted"].iloc[0]) if "predicted" in grp else False
        sns.lineplot(
            x=grp["size_bytes"],
            y=y,
            ax=ax,
            label=name,
            color=palette[name],
            marker="o",
            markersize=3,
            linestyle="--" if dashed else "-",
        )
        ax.fill_between(grp["size_bytes"], lo, hi, color=palette[name], alpha=0.2, lw=0)
    for bound in bounds if metric != "time" else ():
        ax.axhline(bound.gbps, color="0.3", linestyle=":", lw=1)
        ax.annotate(bound.name, (ax.get_xlim()[0], bound.gbps), fontsize=7, va="bottom")
    _size_axis(ax)
    if metric == "time":
        ax.set_yscale("log")
        ax.set_ylabel("time per op (µs), median and 95% CI")
    else:
        ax.set_ylabel(f"{metric} (GB/s) at the median, 95% CI")
    ax.set_title(title)
    ax.legend(fontsize=7)
    _layout(fig)
    return fig


def _metric_columns(grp: pd.DataFrame, metric: str) -> tuple[pd.Series, pd.Series, pd.Series]:
    if metric == "time":
        return grp["median_s"] * 1e6, grp["ci_lo_s"] * 1e6, grp["ci_hi_s"] * 1e6
    return (grp[f"{metric}_gbps"], grp[f"{metric}_lo_gbps"], grp[f"{metric}_hi_gbps"])


def ratio_plot(table: pd.DataFrame, *, margin: float, title: str = "") -> Figure:
    """Time ratio (other / baseline) vs size with its bootstrap CI and the margin band."""
    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    ax.axhspan(1 - margin, 1 + margin, color="0.85", label=f"margin ±{margin * 100:g}%")
    ax.axhline(1.0, color="0.4", lw=0.8)
    data = table.copy()
    data["series"] = [
        f"{r['other']} / {r['baseline']} {r['op']} {r.get('backend', '')}"
        f"{' (predicted)' if r.get('predicted') else ''}"
        for _, r in data.iterrows()
    ]
    colors = sns.color_palette(n_colors=max(data["series"].nunique(), 1))
    for color, (name, grp) in zip(colors, data.groupby("series", sort=True), strict=False):
        grp = grp.sort_values("size_bytes")
        err = np.vstack([grp["ratio"] - grp["ratio_lo"], grp["ratio_hi"] - grp["ratio"]])
        ax.errorbar(
            grp["size_bytes"],
            grp["ratio"],
            yerr=np.clip(err, 0, None),
            fmt="o-",
            color=color,
            ms=3,
            capsize=2,
            label=name,
        )
    _size_axis(ax)
    ax.set_ylabel("time ratio (>1: slower than baseline), 95% CI")
    ax.set_title(title)
    ax.legend(fontsize=7)
    _layout(fig)
    return fig


def ecdf_plot(frame: pd.DataFrame, size_bytes: int, title: str = "") -> Figure:
    """ECDF of per-iteration times at one size, one curve per series."""
    data = frame[frame["size_bytes"] == size_bytes]
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    keys = [k for k in (*SERIES_KEYS, "predicted") if k in data.columns]
    for key, grp in data.groupby(keys, observed=True, sort=True):
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        x = np.sort(grp["time_s"].to_numpy()) * 1e6
        q = np.linspace(0, 1, min(ECDF_POINTS, x.size))
        ax.step(np.quantile(x, q), q, where="post", label=f"{series_name(row)} (n={x.size})")
    ax.set_xscale("log")
    ax.set_xlabel("time per iteration (µs)")
    ax.set_ylabel("fraction of iterations")
    ax.set_title(title or f"ECDF of per-iteration times at {size_bytes} B")
    ax.legend(fontsize=7)
    _layout(fig)
    return fig


def rank_heatmap(table: pd.DataFrame, title: str = "") -> Figure:
    """Per-rank median time relative to the median over ranks, ranks x sizes."""
    pivot = table.pivot_table(
        index="rank", columns="size_bytes", values="rel_to_ranks", aggfunc="median", observed=True
    )
    height = 1.5 + 0.25 * len(pivot.index)
    fig, ax = plt.subplots(figsize=(7.5, min(height, 12)))
    with warnings.catch_warnings():  # seaborn 0.13 calls a colormap method matplotlib deprecates
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        sns.heatmap(
            pivot,
            ax=ax,
            cmap="RdBu_r",
            center=1.0,
            annot=pivot.shape[1] <= 12,
            fmt=".2f",
            cbar_kws={"label": "rank median / median over ranks"},
        )
    ax.set_xlabel("size (bytes)")
    ax.set_title(title)
    _layout(fig)
    return fig


def measured_vs_predicted(
    summary: pd.DataFrame, match: Sequence[str] = (), title: str = ""
) -> Figure:
    """Measured median time vs the model's prediction at the same op, size and `match` keys
    (e.g. meta.fabric), log-log with the diagonal."""
    meas = summary[~summary["predicted"]]
    pred = summary[summary["predicted"]]
    on = ["op", "size_bytes", *match]
    pairs = meas.merge(pred[[*on, "median_s", "label"]], on=on, suffixes=("", "_pred"))
    fig, ax = plt.subplots(figsize=(6.0, 5.0))
    if not pairs.empty:
        pairs["series"] = [
            f"{r['label']} vs {r['label_pred']} ({r['op']})" for _, r in pairs.iterrows()
        ]
        sns.scatterplot(
            x=pairs["median_s_pred"] * 1e6,
            y=pairs["median_s"] * 1e6,
            hue=pairs["series"],
            ax=ax,
            s=18,
        )
        lo = float(min(pairs["median_s_pred"].min(), pairs["median_s"].min()) * 1e6)
        hi = float(max(pairs["median_s_pred"].max(), pairs["median_s"].max()) * 1e6)
        ax.plot(
            [lo, hi], [lo, hi], color="0.4", lw=0.8, linestyle="--", label="measured = predicted"
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    ax.set_xlabel("predicted time (µs)")
    ax.set_ylabel("measured median time (µs)")
    ax.set_title(title or "measured vs predicted")
    _layout(fig)
    return fig
