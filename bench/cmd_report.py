"""`epbench load`, `epbench compare` and `epbench report`: the analyzer's command line.

load: read result files of any supported tool (epbench, nccl-tests text or -J JSON, OSU /
OMB-Py, DeepEP logs), list what was found and every problem, optionally write the tidy frame
(CSV or Parquet). compare: A vs B per size with a bootstrap CI and a verdict. report: a
self-contained HTML report plus Markdown. `demo()` is the hook the demo calls at its end.
"""

from __future__ import annotations

import argparse
import datetime
import pathlib
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bench.errors import UsageError

_LOAD_DESCRIPTION = (
    "Read result files of any supported tool (epbench JSON Lines, nccl-tests text or -J JSON,"
    " OSU / OMB-Py, DeepEP test logs) into one table; list what was found and every problem; "
    "optionally write the table as CSV or Parquet."
)
_COMPARE_DESCRIPTION = (
    "Compare runs split by the values of KEY: per size, the ratio of medians over launches "
    "with a hierarchical bootstrap CI, a Mann-Whitney test with correction across sizes, and "
    "a verdict that says same only inside the margin."
)
_REPORT_DESCRIPTION = (
    "Write DIR/report.html (self-contained, opens offline) and DIR/report.md: summary, "
    "comparisons, figures, bounds, warnings, provenance."
)


def register(subparsers: Any) -> None:
    """Add the load, compare and report subcommands."""
    _register_load(subparsers)
    _register_compare(subparsers)
    _register_report(subparsers)


def _input_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths", nargs="+", metavar="RUNS", help="result files or directories (any supported tool)"
    )
    parser.add_argument(
        "--format",
        default="auto",
        dest="fmt",
        choices=("auto", "epbench", "nccl-tests", "nccl-tests-json", "osu", "deepep"),
        help="force one reader (default: recognise each)",
    )
    parser.add_argument(
        "--osu-ranks",
        type=int,
        default=0,
        metavar="N",
        help="world size of OSU runs (OSU does not print it; needed for "
        "nccl-tests sizes and busbw of alltoall/allgather)",
    )
    parser.add_argument(
        "--op",
        default="",
        help="op of nccl-tests logs older than 2.17 whose file name does not say it",
    )


def _compare_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="VALUE",
        help="side A of every comparison (default: first value in order)",
    )
    parser.add_argument(
        "--margin",
        type=float,
        default=0.05,
        help="equivalence margin: 'same' only if the ratio CI lies within "
        "1 +- margin (default 0.05)",
    )
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--correction", choices=("bh", "holm"), default="bh")
    parser.add_argument("--boot", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0)


def _register_load(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "load",
        help="read result files into one tidy table",
        description=_LOAD_DESCRIPTION,
    )
    _input_args(parser)
    parser.add_argument(
        "-o",
        "--output",
        type=pathlib.Path,
        default=None,
        help="write the tidy frame to FILE.csv or FILE.parquet",
    )
    parser.set_defaults(func=cmd_load)


def _register_compare(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="A vs B per size: ratio, CI, verdict",
        description=_COMPARE_DESCRIPTION,
    )
    _input_args(parser)
    parser.add_argument(
        "--by",
        required=True,
        metavar="KEY",
        help="column or metadata key whose values are the sides (fabric, "
        "topology, rank_map, backend, ...)",
    )
    _compare_args(parser)
    parser.add_argument(
        "-o",
        "--output",
        type=pathlib.Path,
        default=None,
        help="also write the comparison table to FILE.csv",
    )
    parser.set_defaults(func=cmd_compare)


def _register_report(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="HTML + Markdown report of runs",
        description=_REPORT_DESCRIPTION,
    )
    _input_args(parser)
    parser.add_argument(
        "-o",
        "--output",
        type=pathlib.Path,
        required=True,
        metavar="DIR",
        help="folder for report.html, report.md and figures/",
    )
    parser.add_argument(
        "--by", action="append", default=[], metavar="KEY", help="compare on KEY (repeatable)"
    )
    parser.add_argument(
        "--predicted",
        nargs="+",
        default=[],
        metavar="FILE",
        help="files of model predictions (labelled predicted)",
    )
    parser.add_argument(
        "--bound",
        action="append",
        default=[],
        metavar="NAME=GBPS",
        help="a bandwidth bound to draw, GB/s (repeatable)",
    )
    parser.add_argument(
        "--nic-gbit",
        type=float,
        action="append",
        default=[],
        metavar="GBIT",
        help="a NIC line rate to draw, Gb/s (repeatable)",
    )
    parser.add_argument("--title", default="epbench report")
    _compare_args(parser)
    parser.set_defaults(func=cmd_report)


def _load(
    args: argparse.Namespace,
    console: Console,
    paths: list[Any] | None = None,
    predicted: bool | None = None,
) -> Any:
    from results.loader import load_all

    if args.osu_ranks < 0:
        raise UsageError(f"--osu-ranks {args.osu_ranks} must be >= 0")
    loaded = load_all(
        paths if paths is not None else args.paths,
        fmt=args.fmt,
        num_ranks=args.osu_ranks,
        op=args.op,
        predicted=predicted,
    )
    for problem in loaded.problems:
        console.print(f"[yellow]warning:[/] {escape(str(problem))}", highlight=False)
    return loaded


def _settings(args: argparse.Namespace) -> Any:
    from results.compare import CompareSettings

    try:
        return CompareSettings(
            margin=args.margin,
            confidence=args.confidence,
            n_boot=args.boot,
            seed=args.seed,
            correction=args.correction,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def cmd_load(args: argparse.Namespace, console: Console | None = None) -> int:
    console = console or Console()
    loaded = _load(args, console)
    frame = loaded.frame
    table = Table(title=f"{len(frame)} rows from {len(loaded.runs)} runs")
    for col in ("label", "format", "op", "backend", "records", "rows", "predicted"):
        table.add_column(col)
    if not frame.empty:
        groups = frame.groupby(["label", "format", "op", "backend", "predicted"], observed=True)
        for key, grp in groups:
            records = grp.groupby(["run_id", "line"], observed=True).ngroups
            table.add_row(
                *(escape(str(k)) for k in key[:4]), str(records), str(len(grp)), str(key[4])
            )
    console.print(table)
    if frame.empty:
        raise UsageError("no measurements loaded from RUNS; check the paths and warnings", 1)
    if args.output is not None:
        _write_frame(frame, args.output)
        console.print(f"wrote {escape(str(args.output))}")
    return 0


def _write_frame(frame: Any, path: pathlib.Path) -> None:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        raise UsageError(f"output {path} must end in .csv or .parquet")


def cmd_compare(args: argparse.Namespace, console: Console | None = None) -> int:
    from results.compare import compare

    console = console or Console()
    loaded = _load(args, console)
    if loaded.frame.empty:
        raise UsageError("no measurements loaded from RUNS; check the paths and warnings")
    try:
        result = compare(loaded.frame, args.by, baseline=args.baseline, settings=_settings(args))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _print_comparison(result, console)
    if args.output is not None:
        result.table.to_csv(args.output, index=False)
        console.print(f"wrote {escape(str(args.output))}")
    return 0


def _print_comparison(result: Any, console: Console) -> None:
    table = Table(
        title=f"by {escape(result.by)}: B/A time ratio of launch medians, "
        f"{result.settings.confidence:.0%} bootstrap CI, margin "
        f"±{result.settings.margin:.0%}"
    )
    cols = (
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
    for col in cols:
        table.add_column(col)
    for _, row in result.table.iterrows():
        table.add_row(
            *(escape(f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c])) for c in cols)
        )
    console.print(table)
    if not result.differing.empty:
        console.print("[bold]Metadata that also differs between the sides:[/]")
        for _, row in result.differing.iterrows():
            console.print(
                f"  {escape(row['column'])}: {escape(row['baseline_values'])} vs "
                f"{escape(row['other_values'])}",
                highlight=False,
            )


def _bounds(args: argparse.Namespace) -> list[Any]:
    from results.bounds import Bound, nic_bound

    out = []
    for text in args.bound:
        name, _, value = text.rpartition("=")
        try:
            out.append(Bound(name=name or text, gbps=float(value), source="--bound"))
        except ValueError:
            raise UsageError(f"--bound {text!r} must be NAME=GBPS, e.g. 'NIC 400G=50'") from None
    try:
        out.extend(nic_bound(rate) for rate in args.nic_gbit)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return out


def cmd_report(args: argparse.Namespace, console: Console | None = None) -> int:
    console = console or Console()
    measured = _load(args, console)
    predicted = (
        _load(args, console, paths=args.predicted, predicted=True) if (args.predicted) else None
    )
    html = _build(
        measured,
        predicted,
        args.output,
        args.by,
        args.baseline,
        _settings(args),
        _bounds(args),
        args.title,
    )
    console.print(f"report: {escape(str(html))}")
    return 0


def _build(
    measured: Any,
    predicted: Any,
    out_dir: pathlib.Path,
    by: list[str],
    baseline: str | None,
    settings: Any,
    bounds: list[Any],
    title: str,
) -> pathlib.Path:
    from results.report import build_report

    loaded = _merge(measured, predicted) if predicted is not None else measured
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    try:
        paths = build_report(
            loaded,
            out_dir,
            by=by,
            baseline=baseline,
            settings=settings,
            extra_bounds=bounds,
            title=title,
            generated_utc=now,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot write the report to {out_dir}: {exc.strerror}") from None
    return paths.html


def _merge(a: Any, b: Any) -> Any:
    import pandas as pd

    from results.loader import Loaded

    return Loaded(
        frame=pd.concat([a.frame, b.frame], ignore_index=True),
        ranks=pd.concat([a.ranks, b.ranks], ignore_index=True),
        runs=[*a.runs, *b.runs],
        problems=[*a.problems, *b.problems],
    )


def demo(run_paths: list[pathlib.Path], out_dir: pathlib.Path, console: Console) -> pathlib.Path:
    """The demo's last step: a report of its measured and predicted files; the HTML path.

    Each file's records say whether they are measured or predicted (Record.predicted); the
    report labels them so. Where the predictions vary fabric or topology, those comparisons
    are included.
    """
    from results.compare import CompareSettings, resolve_key, str_values
    from results.loader import load_all

    loaded = load_all(run_paths)
    for problem in loaded.problems:
        console.print(f"[yellow]warning:[/] {escape(str(problem))}", highlight=False)
    by = []
    for key in ("fabric", "topology"):
        try:
            col = resolve_key(loaded.frame, key)
        except ValueError:
            continue
        if len(set(str_values(loaded.frame[col])) - {""}) >= 2:
            by.append(key)
    html = _build(
        loaded,
        None,
        out_dir,
        by,
        None,
        CompareSettings(),
        [],
        "epbench demo: measured here, predicted by the fabric model",
    )
    console.print(f"report: {escape(str(html))}")
    return html
