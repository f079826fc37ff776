"""What `epbench load` and `epbench compare` print, built from their results without touching
files: the table of what was loaded and the comparison table with the metadata that also
differs between the sides. Every string from a file is escaped (rich markup is not trusted).
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

LOAD_COLUMNS = ("label", "format", "op", "backend", "records", "rows", "predicted")
COMPARE_COLUMNS = (
    "op",
    "backend",
    "mode",
    "size_bytes",
    "other",
    "baseline",
    "runs_a",
    "runs_b",
    "ratio",
    "ratio_lo",
    "ratio_hi",
    "p_adj",
    "test_unit",
    "verdict",
)


def loaded_table(frame: Any, num_runs: int) -> Table:
    """One row per (label, format, op, backend, predicted) of the tidy frame: how many
    records and rows it holds."""
    table = Table(title=f"{len(frame)} rows from {num_runs} runs")
    for col in LOAD_COLUMNS:
        table.add_column(col)
    if not frame.empty:
        groups = frame.groupby(["label", "format", "op", "backend", "predicted"], observed=True)
        for key, grp in groups:
            records = grp.groupby(["run_id", "line"], observed=True).ngroups
            table.add_row(
                *(escape(str(k)) for k in key[:4]), str(records), str(len(grp)), str(key[4])
            )
    return table


def comparison_table(result: Any) -> Table:
    """results.compare's table: B/A ratio of launch medians per size, CI, test and verdict."""
    table = Table(
        title=f"by {escape(result.by)}: B/A time ratio of launch medians, "
        f"{result.settings.confidence:.0%} bootstrap CI, margin "
        f"±{result.settings.margin:.0%}"
    )
    for col in COMPARE_COLUMNS:
        table.add_column(col)
    for _, row in result.table.iterrows():
        table.add_row(
            *(
                escape(f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]))
                for c in COMPARE_COLUMNS
            )
        )
    return table


def differing_lines(result: Any) -> list[str]:
    """One line per metadata column that also differs between the sides: its values on
    side A vs side B."""
    return [
        f"  {escape(row['column'])}: {escape(row['baseline_values'])} vs "
        f"{escape(row['other_values'])}"
        for _, row in result.differing.iterrows()
    ]
