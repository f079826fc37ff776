"""Reports: a self-contained HTML file (figures embedded as base64 PNG, no scripts, no
external resources) and a Markdown twin with its figures beside it (rendering in
results/render.py, which escapes everything taken from input files). The report holds the
summary table, comparisons with their verdicts and the metadata that differs between sides,
figures, bounds, every warning (file problems, unstable groups, stragglers), and each run's
provenance.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Sequence

import pandas as pd

from results import bounds as bounds_mod
from results import plots, stats
from results.compare import CompareSettings, Comparison, compare, resolve_key
from results.loader import Loaded
from results.render import (
    Content,
    FigureItem,
    ReportPaths,
    Table,
    make_table,
    md_escape,
    png_bytes,
    write_report,
)

__all__ = ["ReportPaths", "build_report", "md_escape"]

MAX_RANK_HEATMAPS = 4


SUMMARY_COLUMNS = {
    "series": "configuration",
    "op": "op",
    "size_bytes": "size (B)",
    "n": "n",
    "num_runs": "launches",
    "median_us": "median (µs)",
    "ci_us": "95% CI (µs)",
    "p95_us": "p95 (µs)",
    "p99_us": "p99 (µs)",
    "cv_pct": "CV %",
    "algbw_gbps": "algbw (GB/s)",
    "busbw_gbps": "busbw (GB/s)",
    "warnings": "warnings",
}
COMPARE_COLUMNS = {
    "op": "op",
    "backend": "backend",
    "mode": "mode",
    "size_bytes": "size (B)",
    "other": "B",
    "baseline": "A",
    "runs_a": "launches A",
    "runs_b": "launches B",
    "median_a_us": "median A (µs)",
    "median_b_us": "median B (µs)",
    "ratio": "B/A time",
    "ratio_ci": "95% CI",
    "p_adj": "p (corrected)",
    "test_unit": "test on",
    "verdict": "verdict",
}


def _summary_view(summary: pd.DataFrame) -> pd.DataFrame:
    view = summary.copy()
    view["series"] = [plots.series_name(r) for _, r in view.iterrows()]
    view["median_us"] = view["median_s"] * 1e6
    view["ci_us"] = [
        f"{a * 1e6:.4g} – {b * 1e6:.4g}" if a == a else "–"
        for a, b in zip(view["ci_lo_s"], view["ci_hi_s"], strict=True)
    ]
    view["p95_us"] = view["p95_s"] * 1e6
    view["p99_us"] = view["p99_s"] * 1e6
    view["cv_pct"] = view["cv"] * 100
    return view.sort_values(["series", "op", "size_bytes"])


def _compare_view(table: pd.DataFrame) -> pd.DataFrame:
    view = table.copy()
    view["median_a_us"] = view["median_a_s"] * 1e6
    view["median_b_us"] = view["median_b_s"] * 1e6
    view["ratio_ci"] = [
        f"{a:.3f} – {b:.3f}" for a, b in zip(view["ratio_lo"], view["ratio_hi"], strict=True)
    ]
    return view


def build_report(
    loaded: Loaded,
    out_dir: pathlib.Path,
    *,
    by: Sequence[str] = (),
    baseline: str | None = None,
    settings: CompareSettings | None = None,
    extra_bounds: list[bounds_mod.Bound] | None = None,
    title: str = "epbench report",
    generated_utc: str = "",
) -> ReportPaths:
    """Write report.html and report.md (plus figures/) into `out_dir`.

    `by`: keys to compare on (each a column or metadata key); `baseline`: the side A value.
    """
    settings = settings or CompareSettings()
    frame = loaded.frame
    if frame.empty:
        raise ValueError("no measurements loaded: nothing to report (see the problems listed)")
    content = Content(warnings=[str(p) for p in loaded.problems])
    summary = stats.summarize(frame)
    _summary_section(summary, content)
    all_bounds = [*bounds_mod.bounds_from_frame(frame), *(extra_bounds or [])]
    _size_figures(summary, all_bounds, content)
    for key in by:
        _compare_section(compare(frame, key, baseline=baseline, settings=settings), content)
    _ecdf_figures(frame, content)
    _rank_section(loaded.ranks, content)
    _predicted_section(frame, summary, [resolve_key(frame, k) for k in by], content)
    _bounds_section(summary, all_bounds, content)
    return write_report(out_dir, loaded.frame, loaded.runs, content, title, generated_utc)


def _summary_section(summary: pd.DataFrame, content: Content) -> None:
    view = _summary_view(summary)
    content.tables.append(make_table("Summary: per configuration and size", view, SUMMARY_COLUMNS))
    flagged = view[view["warnings"] != ""]
    for (series, op), grp in flagged.groupby(["series", "op"], observed=True, sort=True):
        kinds: dict[str, list[tuple[int, str]]] = {}
        for size, text in zip(grp["size_bytes"], grp["warnings"], strict=True):
            for part in text.split("; "):
                kinds.setdefault(re.sub(r"[\d.]+", "#", part), []).append((int(size), part))
        for items in kinds.values():
            sizes = sorted(s for s, _ in items)
            where = (
                f"{sizes[0]} B"
                if len(sizes) == 1
                else f"{len(sizes)} sizes from {sizes[0]} to {sizes[-1]} B"
            )
            texts = dict.fromkeys(t for _, t in items)
            more = f" (and {len(texts) - 1} similar, see the table)" if len(texts) > 1 else ""
            content.warnings.append(f"{series} {op}, {where}: {items[0][1]}{more}")


def _size_figures(
    summary: pd.DataFrame, all_bounds: list[bounds_mod.Bound], content: Content
) -> None:
    for op, grp in summary.groupby("op", observed=True, sort=True):
        has_bw = grp["busbw_gbps"].notna().any()
        if has_bw:
            content.figures.append(
                FigureItem(
                    title=f"{op}: bus bandwidth vs size",
                    name=f"{op}_busbw",
                    png=png_bytes(
                        plots.size_plot(
                            grp, metric="busbw", bounds=all_bounds, title=f"{op}: busbw"
                        )
                    ),
                )
            )
        content.figures.append(
            FigureItem(
                title=f"{op}: time per op vs size",
                name=f"{op}_time",
                png=png_bytes(plots.size_plot(grp, metric="time", title=f"{op}: time")),
            )
        )


def _compare_section(comparison: Comparison, content: Content) -> None:
    table = comparison.table
    margin = comparison.settings.margin
    content.notes.append(
        f"Comparison by {comparison.by}: B = each other value, A = {comparison.baseline}. "
        f"Ratio = median over launches of each launch's median time, B/A; 95% CI from a "
        f"hierarchical bootstrap (launches, then iterations; {comparison.settings.n_boot} "
        f"resamples); Mann-Whitney U with {comparison.settings.correction} correction across "
        f"sizes; 'same' only when the CI lies within ±{margin * 100:g}%."
    )
    if table.empty:
        content.warnings.append(f"comparison by {comparison.by}: no op/size measured on both sides")
        return
    content.tables.append(
        make_table(f"Comparison by {comparison.by}", _compare_view(table), COMPARE_COLUMNS)
    )
    if not comparison.differing.empty:
        content.tables.append(
            make_table(
                "Metadata that differs between the sides (besides the compared key)",
                comparison.differing,
                {c: c for c in comparison.differing.columns},
            )
        )
    few = table[(table["runs_a"] < 2) | (table["runs_b"] < 2)]
    if not few.empty:
        content.warnings.append(
            "comparison: some sides have a single launch; their CI "
            "reflects iteration noise only, not launch-to-launch variation"
        )
    for op, grp in table.groupby("op", observed=True, sort=True):
        content.figures.append(
            FigureItem(
                title=f"{op}: time ratio vs size by {comparison.by}",
                name=f"{op}_ratio",
                png=png_bytes(
                    plots.ratio_plot(grp, margin=margin, title=f"{op}: B/A by {comparison.by}")
                ),
            )
        )


def _ecdf_figures(frame: pd.DataFrame, content: Content) -> None:
    multi = frame[~frame["predicted"]]
    counts = multi.groupby(["op", "size_bytes"], observed=True).size()
    counts = counts[counts >= 10]
    for op in sorted({o for o, _ in counts.index})[:3]:
        sizes = sorted(s for o, s in counts.index if o == op)
        for size in dict.fromkeys([sizes[0], sizes[-1]]):
            data = multi[(multi["op"] == op) & (multi["size_bytes"] == size)]
            content.figures.append(
                FigureItem(
                    title=f"{op}: ECDF of per-iteration times at {size} B",
                    name=f"{op}_ecdf_{size}",
                    png=png_bytes(
                        plots.ecdf_plot(data, size, title=f"{op} at {size} B: per-iteration times")
                    ),
                )
            )


def _rank_section(ranks: pd.DataFrame, content: Content) -> None:
    table = stats.rank_table(ranks)
    if table.empty:
        return
    slow = stats.stragglers(table)
    for _, row in slow.iterrows():
        content.warnings.append(
            f"straggler: {row['label']} {row['op']} {row['size_bytes']} B rank {row['rank']} "
            f"median {row['rel_to_ranks']:.2f}x the median over ranks (slowest in "
            f"{row['slowest_share'] * 100:.0f}% of iterations)"
        )
    groups = table.groupby(["label", "op", "backend", "mode"], observed=True, sort=True)
    for i, (key, grp) in enumerate(groups):
        if i >= MAX_RANK_HEATMAPS:
            break
        name = " ".join(str(k) for k in key)
        content.figures.append(
            FigureItem(
                title=f"per-rank median time relative to all ranks: {name}",
                name=f"ranks_{i}",
                png=png_bytes(plots.rank_heatmap(grp, title=name)),
            )
        )


def _predicted_section(
    frame: pd.DataFrame, summary: pd.DataFrame, match: list[str], content: Content
) -> None:
    """Measured vs predicted at the same op and size, matched on the compared keys too."""
    if not (summary["predicted"].any() and (~summary["predicted"]).any()):
        return
    keyed = stats.summarize(frame, (*stats.SUMMARY_KEYS, *match)) if match else summary
    content.figures.append(
        FigureItem(
            title="measured vs predicted (fabric model)",
            name="measured_vs_predicted",
            png=png_bytes(plots.measured_vs_predicted(keyed, match)),
        )
    )


def _bounds_section(
    summary: pd.DataFrame, all_bounds: list[bounds_mod.Bound], content: Content
) -> None:
    if all_bounds:
        content.tables.append(
            Table(
                title="Bounds drawn on the bandwidth plots",
                columns=["bound", "GB/s", "source"],
                rows=[[b.name, f"{b.gbps:.4g}", b.source] for b in all_bounds],
            )
        )
    decode = bounds_mod.decode_bounds_from_summary(summary)
    ref = bounds_mod.decode_bound(bandwidth_gbps=50.0)
    content.notes.append(
        f"Decode bound ([P] §2.3.2): {ref.bytes_per_layer / 1e6:.3f} MB of dispatch (FP8) + "
        f"combine (BF16) per GPU per layer; at 50 GB/s {ref.layer_us:.2f} µs per layer, "
        f"{ref.token_ms:.2f} ms per token, {ref.tokens_per_s:.1f} tokens/s."
    )
    if not decode.empty:
        decode = decode.assign(series=[plots.series_name(r) for _, r in decode.iterrows()])
        content.tables.append(
            make_table(
                "Decode-speed bound from measured bandwidth (algbw at the size nearest the "
                "decode message)",
                decode,
                {
                    "series": "configuration",
                    "op": "op",
                    "size_bytes": "size (B)",
                    "algbw_gbps": "algbw (GB/s)",
                    "layer_us": "µs / layer",
                    "token_ms": "ms / token",
                    "tokens_per_s": "tokens/s",
                },
            )
        )
