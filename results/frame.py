"""The tidy frame every reader fills: one row per run x op x size x iteration.

Readers never build pandas objects themselves; they hand runs and records to a
`FrameBuilder`, which turns them into one frame at the end (per-record values are repeated
with numpy, strings become categoricals), so a million samples load in about a second.
Run metadata is flattened into `meta.*` and `config.*` columns; op-specific scalars into
`extra.*` columns. Per-rank samples go to a second frame (`ranks`), since they multiply the
row count by the world size. Problems with a file (bad line, unknown format) are collected
as `Problem`s naming file and line; the rest of the file still loads.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from typing import Any

import numpy as np
import pandas as pd

# Per-record columns with their defaults; every reader fills the ones it knows.
RECORD_DEFAULTS: dict[str, Any] = {
    "op": "",
    "backend": "",
    "dtype": "",
    "mode": "",
    "codec": "none",
    "redop": "none",
    "aggregation": "",
    "placement": "",
    "variant": "",
    "size_convention": "nccl-tests",
    "size_bytes": -1,
    "msg_bytes": -1,
    "count": -1,
    "num_ranks": 0,
    "bus_factor": math.nan,
    "num_wrong": -1,
    "root": -1,
    "num_warmup": -1,
    "ops_per_sample": 0,
    "predicted": False,
    "line": 0,
}
"""ops_per_sample: ops timed together per sample (1: per-iteration; N: a block's mean;
0: unknown). size_convention: nccl-tests (per-rank buffer) or the tool's own message size.
num_wrong -1: not checked. line: line of the source file the record came from."""

INT_COLUMNS = (
    "size_bytes",
    "msg_bytes",
    "count",
    "num_ranks",
    "num_wrong",
    "root",
    "num_warmup",
    "ops_per_sample",
    "line",
)
FLOAT_COLUMNS = ("bus_factor",)
RUN_COLUMNS = ("run_id", "source", "dir", "format", "label")
"""Columns that name the run (launch) a row came from; `dir` is the name of the folder the
file sits in, so that `compare ib/ roce/ --by dir` works for any tool's files."""
POINT_KEYS = ("op", "backend", "dtype", "codec", "mode", "placement", "variant", "size_bytes")
"""Columns that identify one measured point of a configuration."""
RANK_KEYS = ("run_id", "label", *POINT_KEYS, "predicted")
"""Columns the per-rank frame carries to join back to the main one."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Problem:
    """Something in an input file that could not be used; the rest still loads."""

    source: str
    """Path of the file."""
    line: int
    """1-based line number (0: the file as a whole)."""
    message: str
    """What is wrong and, where possible, what to do."""

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.message}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunInfo:
    """One launch of a benchmark (a file, or one test inside a concatenated log)."""

    run_id: str
    """Unique id of the launch: the experimental unit of every comparison."""
    source: str
    """File it was read from."""
    format: str
    """Reader that produced it: epbench, nccl-tests, nccl-tests-json, osu, omb-py, deepep."""
    label: str
    """Short name for plots and tables (metadata `label`, else the file name)."""
    metadata: dict[str, Any]
    """Provenance as written by the tool, unflattened (shown in reports)."""
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The tool's resolved configuration, unflattened."""

    @property
    def dir(self) -> str:
        """Name of the folder holding the source file."""
        return pathlib.PurePath(self.source).parent.name


def flatten(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    """Flatten nested dicts into dotted keys; lists become JSON text; scalars stay."""
    if isinstance(value, dict):
        for key, sub in value.items():
            flatten(f"{prefix}.{key}" if prefix else str(key), sub, out)
    elif isinstance(value, (list, tuple)):
        out[prefix] = json.dumps(value, sort_keys=True, default=str)
    elif value is None or isinstance(value, (bool, int, float, str)):
        out[prefix] = value
    else:
        out[prefix] = str(value)
    return out


def scalar_extras(extra: dict[str, Any]) -> dict[str, Any]:
    """The scalar entries of a record's `extra` dict, as `extra.<key>` columns."""
    return {
        f"extra.{k}": v
        for k, v in extra.items()
        if isinstance(v, (bool, int, float, str))
        and not (isinstance(v, float) and not math.isfinite(v))
    }


class FrameBuilder:
    """Collects runs and records from any reader, then builds the tidy frames once."""

    def __init__(self) -> None:
        self.runs: list[RunInfo] = []
        self._run_cols: list[dict[str, Any]] = []
        self._rec: list[dict[str, Any]] = []
        self._times: list[np.ndarray] = []
        self._rank_rec: list[int] = []
        self._rank_times: list[np.ndarray] = []

    def add_run(self, info: RunInfo) -> int:
        """Register a run; returns its index for `add_record`."""
        cols = flatten("meta", info.metadata, {})
        flatten("config", info.config, cols)
        self.runs.append(info)
        self._run_cols.append(cols)
        return len(self.runs) - 1

    def add_file_run(
        self, fmt: str, path: Any, metadata: dict[str, Any], config: dict[str, Any] | None = None
    ) -> int:
        """Register a run that is a whole file of format `fmt`; returns its index."""
        return self.add_run(
            RunInfo(
                run_id=f"{fmt}:{path}",
                source=str(path),
                format=fmt,
                label=path.stem,
                metadata=metadata,
                config=config or {},
            )
        )

    def add_record(
        self, run: int, fields: dict[str, Any], times_s: Any, rank_times_s: Any = None
    ) -> None:
        """One record: its scalar fields (RECORD_DEFAULTS keys or extra.*) and samples."""
        times = np.asarray(times_s, dtype=np.float64).reshape(-1)
        self._rec.append({"_run": run, **fields})
        self._times.append(times)
        if rank_times_s is not None:
            rt = np.asarray(rank_times_s, dtype=np.float64)
            if rt.ndim == 2 and rt.size:
                self._rank_rec.append(len(self._rec) - 1)
                self._rank_times.append(rt)

    @property
    def num_records(self) -> int:
        return len(self._rec)

    def build(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The tidy frame and the per-rank frame."""
        lengths = np.array([t.size for t in self._times], dtype=np.int64)
        rec = pd.DataFrame(self._rec) if self._rec else pd.DataFrame({"_run": []})
        frame = _expand(rec, lengths, self._times, self._run_cols, self.runs)
        ranks = self._build_ranks(rec)
        return frame, ranks

    def _build_ranks(self, rec: pd.DataFrame) -> pd.DataFrame:
        if not self._rank_rec:
            return pd.DataFrame(columns=[*RANK_KEYS, "rank", "iteration", "time_s"])
        sub = rec.iloc[self._rank_rec].reset_index(drop=True)
        shapes = [rt.shape for rt in self._rank_times]
        counts = np.array([r * s for r, s in shapes], dtype=np.int64)
        out = _record_columns(sub, counts, self.runs, RANK_KEYS)
        out["rank"] = np.concatenate([np.repeat(np.arange(r), s) for r, s in shapes])
        out["iteration"] = np.concatenate([np.tile(np.arange(s), r) for r, s in shapes])
        out["time_s"] = np.concatenate([rt.reshape(-1) for rt in self._rank_times])
        return pd.DataFrame(out)


def _fill(rec: pd.DataFrame, name: str) -> np.ndarray:
    default = RECORD_DEFAULTS.get(name)
    if name not in rec.columns:
        return np.array([default] * len(rec), dtype=object)
    col: np.ndarray = rec[name].to_numpy(dtype=object)
    if default is not None:
        col = np.where(pd.isna(col), default, col)
    return col


def _record_columns(
    rec: pd.DataFrame, lengths: np.ndarray, runs: list[RunInfo], names: tuple[str, ...]
) -> dict[str, Any]:
    """Columns for `names`, each record's value repeated `lengths[i]` times."""
    rec_idx = np.repeat(np.arange(len(rec)), lengths)
    run_of_rec = rec["_run"].to_numpy(dtype=np.int64) if len(rec) else np.zeros(0, np.int64)
    out: dict[str, Any] = {}
    for name in names:
        if name in RUN_COLUMNS:
            per_run = np.array([getattr(r, name) for r in runs], dtype=object)
            out[name] = _expand_values(per_run, run_of_rec[rec_idx], kind="str")
        else:
            out[name] = _expand_values(_fill(rec, name), rec_idx, kind=_kind(name))
    return out


def _kind(name: str) -> str:
    if name in INT_COLUMNS:
        return "int"
    if name in FLOAT_COLUMNS:
        return "float"
    return "bool" if name == "predicted" else "str"


def _expand_values(small: np.ndarray, index: np.ndarray, kind: str = "auto") -> Any:
    """`small[index]` as a typed column; strings become categoricals (built on `small`)."""
    if kind == "auto":
        small = np.array(
            [None if isinstance(v, float) and v != v else v for v in small], dtype=object
        )
        types = {type(v) for v in small if v is not None}
        kind = "float" if types and types <= {int, float} else "str"
    if kind == "int":
        return small.astype(np.int64)[index]
    if kind == "float":
        return np.array([np.nan if v is None else v for v in small], np.float64)[index]
    if kind == "bool":
        return small.astype(bool)[index]
    cat = pd.Categorical(["" if v is None else str(v) for v in small])
    return pd.Categorical.from_codes(cat.codes[index], dtype=cat.dtype)


def _expand(
    rec: pd.DataFrame,
    lengths: np.ndarray,
    times: list[np.ndarray],
    run_cols: list[dict[str, Any]],
    runs: list[RunInfo],
) -> pd.DataFrame:
    names = (*RUN_COLUMNS, *RECORD_DEFAULTS)
    out = _record_columns(rec, lengths, runs, names)
    out["iteration"] = (
        np.concatenate([np.arange(n) for n in lengths]) if len(lengths) else np.zeros(0, np.int64)
    )
    time_s = np.concatenate(times) if times else np.zeros(0)
    out["time_s"] = time_s
    size = out["size_bytes"].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        algbw = np.where((time_s > 0) & (size >= 0), size / time_s / 1e9, np.nan)
    out["algbw_gbps"] = algbw
    out["busbw_gbps"] = algbw * out["bus_factor"]
    rec_idx = np.repeat(np.arange(len(rec)), lengths)
    for name in sorted(c for c in rec.columns if c.startswith("extra.")):
        out[name] = _expand_values(rec[name].to_numpy(dtype=object), rec_idx)
    run_of_row = (rec["_run"].to_numpy(dtype=np.int64) if len(rec) else np.zeros(0, np.int64))[
        rec_idx
    ]
    for key in sorted({k for cols in run_cols for k in cols}):
        per_run = np.array([cols.get(key) for cols in run_cols], dtype=object)
        out[key] = _expand_values(per_run, run_of_row)
    return pd.DataFrame(out)
