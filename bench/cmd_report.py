"""`epbench load`, `epbench compare` and `epbench report`: the analyzer's command line.

load: read result files of any supported tool (epbench, nccl-tests text or -J JSON, OSU /
OMB-Py, DeepEP logs), list what was found and every problem, optionally write the tidy frame
(CSV or Parquet). compare: A vs B per size with a bootstrap CI and a verdict. report: a
self-contained HTML report plus Markdown. `demo()` is the hook the demo calls at its end.
The options live in bench.report_args, the printed tables in bench.report_tables.
"""

from __future__ import annotations

import argparse
import datetime
import pathlib
from typing import Any

from rich.console import Console
from rich.markup import escape

from bench import report_args, report_tables
from bench.errors import UsageError


def register(subparsers: Any) -> None:
    """Add the load, compare and report subcommands."""
    report_args.add_load(subparsers, cmd_load)
    report_args.add_compare(subparsers, cmd_compare)
    report_args.add_report(subparsers, cmd_report)


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
    _warn(loaded, console)
    return loaded


def _warn(loaded: Any, console: Console) -> None:
    for problem in loaded.problems:
        console.print(f"[yellow]warning:[/] {escape(str(problem))}", highlight=False)


def cmd_load(args: argparse.Namespace, console: Console | None = None) -> int:
    console = console or Console()
    loaded = _load(args, console)
    frame = loaded.frame
    console.print(report_tables.loaded_table(frame, len(loaded.runs)))
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
        result = compare(
            loaded.frame, args.by, baseline=args.baseline, settings=report_args.settings(args)
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _print_comparison(result, console)
    if args.output is not None:
        result.table.to_csv(args.output, index=False)
        console.print(f"wrote {escape(str(args.output))}")
    return 0


def _print_comparison(result: Any, console: Console) -> None:
    console.print(report_tables.comparison_table(result))
    lines = report_tables.differing_lines(result)
    if lines:
        console.print("[bold]Metadata that also differs between the sides:[/]")
    for line in lines:
        console.print(line, highlight=False)


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
        report_args.settings(args),
        report_args.bounds(args.bound, args.nic_gbit),
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
    _warn(loaded, console)
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
