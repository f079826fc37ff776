"""Reader for epbench's own JSON Lines run files (results/schema.py, every supported version).

A header gives the run's metadata and config; each record line becomes one row per sample.
A malformed or truncated line, a NaN or an unknown field costs only that line (reported with
file and line); a header of an unsupported schema version stops the file, since its records
cannot be interpreted.
"""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any

import numpy as np

from results import schema
from results.frame import FrameBuilder, Problem, RunInfo, scalar_extras


def looks_like_epbench(head: str) -> bool:
    """True when the first line of a file is an epbench header or record."""
    first = head.lstrip().split("\n", 1)[0]
    return (
        first.startswith("{")
        and ('"kind"' in first)
        and (schema.SCHEMA_NAME in first or '"record"' in first)
    )


def read(path: pathlib.Path, builder: FrameBuilder, problems: list[Problem]) -> None:
    """Add the runs and records of one epbench file to `builder`."""
    source = str(path)
    run = -1
    version = schema.SCHEMA_VERSION
    iters: Any = 0
    with path.open(encoding="utf-8-sig", errors="replace") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            if run < 0:
                header = _header(line, source, lineno, problems)
                if header is False:
                    return
                info = _run_info(header, path)
                run = builder.add_run(info)
                version = header.schema_version if header else version
                iters = info.config.get("iters", 0)
                if header is not None:
                    continue
            _record(line, version, run, builder, (source, lineno, iters), problems)


def _header(line: str, source: str, lineno: int, problems: list[Problem]) -> Any:
    """The Header, None (no usable header: records still load), or False (stop the file)."""
    try:
        body = json.loads(line)
    except json.JSONDecodeError:
        body = None
    if not isinstance(body, dict) or body.get("kind") != "header":
        problems.append(
            Problem(
                source=source,
                line=lineno,
                message="no valid header line; records load without metadata",
            )
        )
        return None
    version = body.get("schema_version")
    if version not in schema.SUPPORTED_VERSIONS:
        problems.append(
            Problem(
                source=source,
                line=lineno,
                message=f"schema version {version!r} not supported (this epbench reads "
                f"{schema.SUPPORTED_VERSIONS}); file skipped — upgrade epbench",
            )
        )
        return False
    try:
        return schema.parse_line(line, version)
    except schema.SchemaError as exc:
        problems.append(
            Problem(
                source=source,
                line=lineno,
                message=f"bad header ({exc}); records load without metadata",
            )
        )
        return None


def _run_info(header: schema.Header | None, path: pathlib.Path) -> RunInfo:
    if header is None:
        return RunInfo(
            run_id=f"file:{path}", source=str(path), format="epbench", label=path.stem, metadata={}
        )
    meta = header.metadata if isinstance(header.metadata, dict) else {}
    config = header.config if isinstance(header.config, dict) else {}
    label = meta.get("label") or config.get("label") or path.stem
    return RunInfo(
        run_id=str(header.run_id),
        source=str(path),
        format="epbench",
        label=str(label),
        metadata={**meta, "created_utc": header.created_utc},
        config=config,
    )


def _record(
    line: str,
    version: int,
    run: int,
    builder: FrameBuilder,
    where: tuple[str, int, Any],
    problems: list[Problem],
) -> None:
    source, lineno, iters = where
    try:
        item = schema.parse_line(line, version)
    except schema.SchemaError as exc:
        problems.append(Problem(source=source, line=lineno, message=f"line skipped: {exc}"))
        return
    if isinstance(item, schema.Footer):
        if item.status != "ok":
            problems.append(
                Problem(
                    source=source,
                    line=lineno,
                    message=f"run ended with {item.status}: {item.message}",
                )
            )
        return
    if isinstance(item, schema.Header):
        problems.append(
            Problem(source=source, line=lineno, message="second header in one file; line skipped")
        )
        return
    bad = _check(item)
    if bad:
        problems.append(Problem(source=source, line=lineno, message=f"record skipped: {bad}"))
        return
    builder.add_record(run, _fields(item, lineno, iters), item.times_s, item.rank_times_s)


def _check(rec: schema.Record) -> str:
    """Why a parsed record cannot be used ('' when it can)."""
    if not (isinstance(rec.bus_factor, (int, float)) and math.isfinite(rec.bus_factor)):
        return f"bus_factor {rec.bus_factor!r} is not a finite number"
    if not rec.times_s:
        return "no samples (times_s is empty)"
    if rec.rank_times_s is not None:
        try:
            rows = np.asarray(rec.rank_times_s, dtype=np.float64)
        except (TypeError, ValueError):
            return "rank_times_s is not a rectangular [rank][sample] list of numbers"
        if rows.ndim != 2:
            return "rank_times_s is not a rectangular [rank][sample] list"
        if not (np.isfinite(rows).all() and (rows >= 0).all()):
            return "rank_times_s holds a non-finite or negative time"
    return ""


def _fields(rec: schema.Record, lineno: int, iters: Any) -> dict[str, Any]:
    """Record fields as frame columns; a loop/graph sample is the mean of `iters` ops (the
    run's config) unless the record says otherwise in extra.ops_per_sample."""
    extra = rec.extra if isinstance(rec.extra, dict) else {}
    default_ops = 1 if rec.mode == "per_iter" else (iters if isinstance(iters, int) else 0)
    ops = extra.get("ops_per_sample", default_ops)
    return {
        "op": rec.op,
        "backend": rec.backend,
        "dtype": rec.dtype,
        "mode": rec.mode,
        "codec": rec.codec,
        "redop": rec.redop,
        "aggregation": rec.aggregation,
        "placement": str(extra.get("placement", "")),
        "variant": str(extra.get("variant", "")),
        "size_bytes": rec.size_bytes,
        "msg_bytes": rec.size_bytes,
        "count": rec.count,
        "num_ranks": rec.num_ranks,
        "bus_factor": float(rec.bus_factor),
        "num_wrong": rec.num_wrong,
        "root": rec.root,
        "num_warmup": rec.num_warmup,
        "ops_per_sample": int(ops) if isinstance(ops, (int, float)) else 0,
        "predicted": bool(rec.predicted),
        "line": lineno,
        **scalar_extras(extra),
    }
