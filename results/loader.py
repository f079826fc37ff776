"""Load result files of any supported tool into one tidy frame.

`load(paths)` returns the frame; `load_all(paths)` also returns the per-rank frame, the runs'
provenance and every problem found (file and line). The format of each file is recognised
from its content, so names and extensions do not matter. Nothing is unpickled: every reader
parses text or JSON.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Iterable
from typing import Any

import pandas as pd

from results import read_deepep, read_epbench, read_nccl, read_osu
from results.frame import FrameBuilder, Problem, RunInfo

FORMATS = ("auto", "epbench", "nccl-tests", "nccl-tests-json", "osu", "deepep")
UNRECOGNISED = (
    "format not recognised (expected epbench JSON Lines, nccl-tests text or -J JSON, OSU or "
    "OMB-Py output, or a DeepEP test log); file skipped"
)
SUFFIXES = (".jsonl", ".json", ".txt", ".log", ".out")
"""File endings picked up when a directory is given."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Loaded:
    """Everything read from a set of files."""

    frame: pd.DataFrame
    """The tidy frame: one row per run x op x size x iteration (see docs/ANALYZER.md)."""
    ranks: pd.DataFrame
    """Per-rank samples, where files have them: one row per run x record x rank x iteration."""
    runs: list[RunInfo]
    """Provenance of each run, as written."""
    problems: list[Problem]
    """What could not be used, with file and line."""


def expand_paths(paths: Iterable[str | pathlib.Path]) -> tuple[list[pathlib.Path], list[Problem]]:
    """Files named, plus result files found under directories named; missing ones reported."""
    files: list[pathlib.Path] = []
    problems: list[Problem] = []
    for raw in paths:
        path = pathlib.Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES))
        elif path.is_file():
            files.append(path)
        else:
            problems.append(Problem(source=str(path), line=0, message="no such file"))
    return files, problems


def sniff(path: pathlib.Path) -> str:
    """The format of a file from its first 64 KiB ('' when unrecognised)."""
    with path.open(encoding="utf-8-sig", errors="replace") as handle:
        head = handle.read(65536)
    checks = (
        ("epbench", read_epbench.looks_like_epbench),
        ("nccl-tests-json", read_nccl.looks_like_nccl_json),
        ("nccl-tests", read_nccl.looks_like_nccl_text),
        ("osu", read_osu.looks_like_osu),
        ("deepep", read_deepep.looks_like_deepep),
    )
    return next((name for name, check in checks if check(head)), "")


def load_all(
    paths: Iterable[str | pathlib.Path],
    *,
    fmt: str = "auto",
    num_ranks: int = 0,
    op: str = "",
    predicted: bool | None = None,
) -> Loaded:
    """Read every file; `num_ranks`/`op` fill what OSU/old nccl-tests logs do not print.

    `predicted` forces the measured/predicted label of every row (None: as the files say).
    """
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {FORMATS}")
    files, problems = expand_paths(paths)
    builder = FrameBuilder()
    for path in files:
        _read_one(path, fmt, builder, problems, {"num_ranks": num_ranks, "op": op})
    frame, ranks = builder.build()
    if predicted is not None:
        frame["predicted"] = predicted
        ranks["predicted"] = predicted
    return Loaded(frame=frame, ranks=ranks, runs=builder.runs, problems=problems)


def _read_one(
    path: pathlib.Path,
    fmt: str,
    builder: FrameBuilder,
    problems: list[Problem],
    hints: dict[str, Any],
) -> None:
    try:
        kind = sniff(path) if fmt == "auto" else fmt
    except OSError as exc:
        problems.append(Problem(source=str(path), line=0, message=f"cannot read: {exc}"))
        return
    if not kind:
        empty = path.stat().st_size == 0
        message = "file is empty" if empty else UNRECOGNISED
        problems.append(Problem(source=str(path), line=0, message=message))
        return
    try:
        if kind == "epbench":
            read_epbench.read(path, builder, problems)
        elif kind == "nccl-tests":
            read_nccl.read_text(path, builder, problems, op_hint=hints["op"])
        elif kind == "nccl-tests-json":
            read_nccl.read_json(path, builder, problems)
        elif kind == "osu":
            read_osu.read(path, builder, problems, num_ranks=hints["num_ranks"])
        else:
            read_deepep.read(path, builder, problems)
    except (OSError, UnicodeError) as exc:
        problems.append(Problem(source=str(path), line=0, message=f"cannot read: {exc}"))


def load(paths: Iterable[str | pathlib.Path] | str | pathlib.Path, **kwargs: Any) -> pd.DataFrame:
    """The tidy frame of all `paths` (files or directories); problems are dropped.

    Use `load_all` to see what was skipped and why.
    """
    if isinstance(paths, (str, pathlib.Path)):
        paths = [paths]
    return load_all(paths, **kwargs).frame
