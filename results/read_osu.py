"""Reader for OSU micro-benchmarks output: the C suite and OMB-Py (its Python port).

One row per size holding the printed average latency, which is the mean over `iterations`
back-to-back operations, averaged over ranks (OSU's convention). OSU's size is the message
per peer; for alltoall/allgather the nccl-tests `size` is that times the world size, which
OSU does not print, so pass `num_ranks` to get nccl-tests sizes and bus bandwidth (without
it `size_convention` says `osu-message` and busbw stays empty). Min/max/tail-latency columns
of `-f`/`-z` land in `extra.*` columns.
"""

from __future__ import annotations

import pathlib
import re
from typing import Any

from results.conventions import bus_factor, canonical_op, nccl_size_bytes
from results.frame import FrameBuilder, Problem

_TITLE = re.compile(r"^# (OSU MPI|OMB Python MPI)(?:-\w+)? (.+?) Test(?: v([\d.]+))?\s*$")
_TITLE_OPS = (
    ("all-to-all", "alltoall"),
    ("alltoallv", "alltoallv"),
    ("alltoall", "alltoall"),
    ("allreduce", "allreduce"),
    ("allgatherv", "allgatherv"),
    ("allgather", "allgather"),
    ("reduce_scatter", "reducescatter"),
    ("reduce scatter", "reducescatter"),
    ("broadcast", "broadcast"),
    ("bcast", "broadcast"),
    ("barrier", "barrier"),
    ("bi-directional bandwidth", "bibw"),
    ("bandwidth", "bw"),
    ("multi latency", "multi_lat"),
    ("latency", "pingpong"),
    ("reduce", "reduce"),
    ("gather", "gather"),
    ("scatter", "scatter"),
)
_COLUMN_NAMES = {
    "avg latency(us)": "avg_us",
    "latency (us)": "avg_us",
    "min latency(us)": "min_us",
    "max latency(us)": "max_us",
    "iterations": "iterations",
    "bandwidth (mb/s)": "mbps",
}


def looks_like_osu(head: str) -> bool:
    return any(_TITLE.match(line) for line in head.splitlines()[:20])


def _title_op(words: str) -> str:
    low = words.lower()
    for key, op in _TITLE_OPS:
        if key in low:
            return op
    return canonical_op(low.replace(" ", "_"))


def _columns(line: str) -> list[str]:
    """Column keys of OSU's '# Size ...' header line."""
    text = line.lstrip("#").strip()
    text = re.sub(r"^Size(\s*\(B\))?", "", text).strip()
    parts = [p.strip().lower() for p in re.split(r"\s{2,}", text) if p.strip()]
    out = []
    for part in parts:
        tail = re.match(r"p(\d+) tail lat\(us\)", part)
        out.append(f"p{tail.group(1)}_us" if tail else _COLUMN_NAMES.get(part, part))
    return out


def read(
    path: pathlib.Path, builder: FrameBuilder, problems: list[Problem], num_ranks: int = 0
) -> None:
    """Add one OSU (C or Python) output file to `builder`."""
    source = str(path)
    state: dict[str, Any] = {
        "op": "",
        "tool": "osu",
        "columns": [],
        "dtype": "char",
        "rows": [],
        "version": "",
    }
    with path.open(encoding="utf-8-sig", errors="replace") as handle:
        for lineno, raw in enumerate(handle, 1):
            _line(raw.strip(), lineno, state, source, problems)
    if not state["rows"]:
        problems.append(Problem(source=source, line=0, message="no OSU data rows found"))
        return
    meta = {"osu_version": state["version"], "benchmark": state["title"]}
    run = builder.add_file_run(state["tool"], path, meta)
    for lineno, values in state["rows"]:
        builder.add_record(run, _fields(state, values, lineno, num_ranks), [values["time_s"]])


def _line(
    line: str, lineno: int, state: dict[str, Any], source: str, problems: list[Problem]
) -> None:
    if not line:
        return
    if (m := _TITLE.match(line)) is not None:
        state.update(
            op=_title_op(m.group(2)),
            version=m.group(3) or "",
            title=line[2:],
            tool="omb-py" if m.group(1).startswith("OMB") else "osu",
        )
    elif line.startswith("# Datatype:"):
        state["dtype"] = line.split(":", 1)[1].strip().rstrip(".").lower().removeprefix("mpi_")
    elif line.startswith("# Size"):
        state["columns"] = _columns(line)
    elif line[0].isdigit() and state["columns"]:
        row = _row(line, state["columns"])
        if isinstance(row, str):
            problems.append(Problem(source=source, line=lineno, message=row))
        else:
            state["rows"].append((lineno, row))
    elif not line.startswith("#"):
        problems.append(
            Problem(
                source=source, line=lineno, message=f"unexpected line in OSU output: {line[:80]!r}"
            )
        )


def _row(line: str, columns: list[str]) -> dict[str, Any] | str:
    tokens = line.split()
    if len(tokens) != len(columns) + 1:
        return f"OSU data line has {len(tokens)} fields, header names {len(columns) + 1}"
    try:
        values: dict[str, Any] = {"size": int(tokens[0])}
        values.update({c: float(t) for c, t in zip(columns, tokens[1:], strict=False)})
    except ValueError:
        return "OSU data line has a non-numeric field; line skipped"
    if "avg_us" in values:
        values["time_s"] = values["avg_us"] * 1e-6
    elif "mbps" in values and values["mbps"] > 0:
        values["time_s"] = values["size"] / (values["mbps"] * 1e6)
    else:
        return "OSU data line has neither a latency nor a bandwidth column"
    return values


def _fields(
    state: dict[str, Any], values: dict[str, Any], lineno: int, num_ranks: int
) -> dict[str, Any]:
    op, msg = state["op"], values["size"]
    size = nccl_size_bytes(op, msg, num_ranks)
    iters = values.get("iterations", 0)
    extras = {f"extra.{k}": v for k, v in values.items() if k not in ("size", "time_s")}
    return {
        "op": op,
        "backend": "mpi",
        "dtype": state["dtype"],
        "mode": "loop",
        "aggregation": "avg",
        "size_bytes": size if size >= 0 else msg,
        "msg_bytes": msg,
        "size_convention": "nccl-tests" if size >= 0 else "osu-message",
        "count": msg,
        "num_ranks": num_ranks,
        "bus_factor": bus_factor(op, num_ranks),
        "ops_per_sample": int(iters),
        "line": lineno,
        **extras,
    }
