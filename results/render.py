"""Rendering of a report: tables and figures into a self-contained HTML file (jinja2 with
autoescape; figures as base64 PNG; no scripts or external resources) and a Markdown twin
whose figures sit in figures/ beside it. Everything taken from input files is escaped:
by jinja2 in the HTML, by `md_escape` in the Markdown (fenced provenance JSON excepted, which
Markdown shows as literal text).
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import math
import pathlib
from typing import Any

import jinja2
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from results.frame import RunInfo

MAX_META_CHARS = 20000
"""Provenance JSON shown per run is cut at this many characters."""
_TEMPLATES = pathlib.Path(__file__).parent / "templates"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReportPaths:
    """Files a report wrote."""

    html: pathlib.Path
    """The self-contained HTML report."""
    markdown: pathlib.Path
    """The Markdown report (figures in `figures/` beside it)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Table:
    """A table ready to render: header and rows of strings."""

    title: str
    columns: list[str]
    rows: list[list[str]]


@dataclasses.dataclass(frozen=True, kw_only=True)
class FigureItem:
    """One embedded figure."""

    title: str
    name: str
    png: bytes

    @property
    def uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.4g}"
    return str(value)


def make_table(title: str, frame: pd.DataFrame, columns: dict[str, str]) -> Table:
    cols = [c for c in columns if c in frame.columns]
    rows = [[fmt(v) for v in rec] for rec in frame[cols].itertuples(index=False)]
    return Table(title=title, columns=[columns[c] for c in cols], rows=rows)


@dataclasses.dataclass
class Content:
    """What the report sections collected, in order."""

    tables: list[Table] = dataclasses.field(default_factory=list)
    figures: list[FigureItem] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)


def provenance(runs: list[RunInfo]) -> list[dict[str, str]]:
    """Each run's identity and its metadata/config as indented JSON (cut when huge)."""
    out = []
    for run in runs:
        text = json.dumps(
            {"metadata": run.metadata, "config": run.config}, indent=1, sort_keys=True, default=str
        )
        if len(text) > MAX_META_CHARS:
            text = text[:MAX_META_CHARS] + "\n… (cut)"
        out.append(
            {
                "run_id": run.run_id,
                "source": run.source,
                "format": run.format,
                "label": run.label,
                "json": text,
            }
        )
    return out


def write_report(
    out_dir: pathlib.Path,
    frame: pd.DataFrame,
    runs: list[RunInfo],
    content: Content,
    title: str,
    generated_utc: str,
) -> ReportPaths:
    out_dir.mkdir(parents=True, exist_ok=True)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    context = {
        "title": title,
        "generated_utc": generated_utc,
        "tables": content.tables,
        "figures": content.figures,
        "warnings": content.warnings,
        "notes": content.notes,
        "runs": provenance(runs),
        "num_rows": len(frame),
        "num_predicted": int(frame["predicted"].sum()),
    }
    html_path = out_dir / "report.html"
    html_path.write_text(env.get_template("report.html.j2").render(**context), encoding="utf-8")
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    for fig in content.figures:
        (fig_dir / f"{safe_name(fig.name)}.png").write_bytes(fig.png)
    md_path = out_dir / "report.md"
    md_path.write_text(render_markdown(context), encoding="utf-8")
    return ReportPaths(html=html_path, markdown=md_path)


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:80]


def md_escape(text: str) -> str:
    """Text safe in a Markdown table cell: no HTML, no pipes, no line breaks, no markup."""
    out = (
        str(text)
        .replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("|", "\\|")
        .replace("\r", " ")
        .replace("\n", " ")
    )
    for ch in "`*_[]#":
        out = out.replace(ch, "\\" + ch)
    return out


def render_markdown(context: dict[str, Any]) -> str:
    """The Markdown report for the same context as the HTML template."""
    lines = [f"# {md_escape(context['title'])}", ""]
    if context["generated_utc"]:
        lines += [f"Generated {md_escape(context['generated_utc'])}.", ""]
    lines += [
        f"{context['num_rows']} samples loaded, {context['num_predicted']} of them "
        "predicted by the fabric model (never measurements).",
        "",
    ]
    lines += [md_escape(n) + "\n" for n in context["notes"]]
    lines += (
        ["## Warnings", ""]
        + ([f"- {md_escape(w)}" for w in context["warnings"]] or ["- none"])
        + [""]
    )
    for table in context["tables"]:
        lines += [
            f"## {md_escape(table.title)}",
            "",
            "| " + " | ".join(md_escape(c) for c in table.columns) + " |",
            "|" + "---|" * len(table.columns),
        ]
        lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in table.rows]
        lines.append("")
    lines += ["## Figures", ""]
    lines += [
        f"![{md_escape(f.title)}](figures/{safe_name(f.name)}.png)\n" for f in context["figures"]
    ]
    lines += ["## Provenance", ""]
    for run in context["runs"]:
        lines += [
            f"### {md_escape(run['label'])} ({md_escape(run['format'])})",
            "",
            f"- run id: {md_escape(run['run_id'])}",
            f"- file: {md_escape(run['source'])}",
            "",
            "```json",
        ]
        lines += [run["json"].replace("```", "ʼʼʼ"), "```", ""]
    return "\n".join(lines)
