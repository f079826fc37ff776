"""The options of `epbench load`, `compare` and `report`, and what they turn into: the
parsers (one block per subcommand, the input and statistics options shared), the
comparison settings and the bandwidth bounds to draw.
"""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Callable
from typing import Any

from bench.errors import UsageError

Command = Callable[[argparse.Namespace], int]

LOAD_DESCRIPTION = (
    "Read result files of any supported tool (epbench JSON Lines, nccl-tests text or -J JSON,"
    " OSU / OMB-Py, DeepEP test logs) into one table; list what was found and every problem; "
    "optionally write the table as CSV or Parquet."
)
COMPARE_DESCRIPTION = (
    "Compare runs split by the values of KEY: per size, the ratio of medians over launches "
    "with a hierarchical bootstrap CI, a Mann-Whitney test with correction across sizes, and "
    "a verdict that says same only inside the margin."
)
REPORT_DESCRIPTION = (
    "Write DIR/report.html (self-contained, opens offline) and DIR/report.md: summary, "
    "comparisons, figures, bounds, warnings, provenance."
)


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


def _output_arg(parser: argparse.ArgumentParser, help_text: str, **dir_only: Any) -> None:
    parser.add_argument(
        "-o", "--output", type=pathlib.Path, default=None, help=help_text, **dir_only
    )


def add_load(subparsers: Any, func: Command) -> None:
    """The `load` subcommand, running `func`."""
    parser = subparsers.add_parser(
        "load",
        help="read result files into one tidy table",
        description=LOAD_DESCRIPTION,
    )
    _input_args(parser)
    _output_arg(parser, "write the tidy frame to FILE.csv or FILE.parquet")
    parser.set_defaults(func=func)


def add_compare(subparsers: Any, func: Command) -> None:
    """The `compare` subcommand, running `func`."""
    parser = subparsers.add_parser(
        "compare",
        help="A vs B per size: ratio, CI, verdict",
        description=COMPARE_DESCRIPTION,
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
    _output_arg(parser, "also write the comparison table to FILE.csv")
    parser.set_defaults(func=func)


def add_report(subparsers: Any, func: Command) -> None:
    """The `report` subcommand, running `func`."""
    parser = subparsers.add_parser(
        "report",
        help="HTML + Markdown report of runs",
        description=REPORT_DESCRIPTION,
    )
    _input_args(parser)
    _output_arg(
        parser, "folder for report.html, report.md and figures/", required=True, metavar="DIR"
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
    parser.set_defaults(func=func)


def settings(args: argparse.Namespace) -> Any:
    """results.compare.CompareSettings from --margin, --confidence, --boot, --seed and
    --correction; a bad value is a UsageError naming it."""
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


def bounds(bound_texts: list[str], nic_gbits: list[float]) -> list[Any]:
    """results.bounds.Bound objects from --bound NAME=GBPS texts and --nic-gbit rates."""
    from results.bounds import Bound, nic_bound

    out = []
    for text in bound_texts:
        name, _, value = text.rpartition("=")
        try:
            out.append(Bound(name=name or text, gbps=float(value), source="--bound"))
        except ValueError:
            raise UsageError(f"--bound {text!r} must be NAME=GBPS, e.g. 'NIC 400G=50'") from None
    try:
        out.extend(nic_bound(rate) for rate in nic_gbits)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return out
