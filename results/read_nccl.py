"""Readers for nccl-tests output: the printed table (versions 2.13 and later) and `-J` JSON.

Text: one row per size and placement (out-of-place, in-place) holding the printed time, which
is the mean of `iters` back-to-back iterations (`ops_per_sample` says so), or of CUDA-graph
launches when `graph` > 0. NCCL INFO/WARN lines interleaved with the table are skipped; a data
line broken by them is reported with its line number. Several tests concatenated in one log
become several runs. JSON (2.18+): the same, plus, when run with per-iteration timing, every
iteration's time (max over processes) and each process's times.
"""

from __future__ import annotations

import json
import math
import pathlib
import re
from typing import Any

from results.conventions import bus_factor, canonical_dtype, canonical_op
from results.frame import FrameBuilder, Problem, RunInfo

_DATA = re.compile(r"^\s*\d+\s+\d+\s+\S+\s+\S+\s+-?\d+(\s|$)")
_NOISE = re.compile(r"NCCL (INFO|WARN|TRACE)|^\S+:\d+:\d+ \[\d+\]")
_RANK = re.compile(
    r"^#\s+Rank\s+(\d+)\s+(?:Group\s+(\d+)\s+)?Pid\s+(\d+)\s+on\s+(\S+)"
    r"\s+device\s+(\d+)\s+\[([^\]]*)\]\s*(.*)$"
)
_CONFIG = re.compile(
    r"(nThread|nGpus|minBytes|maxBytes|warmup iters|iters|agg iters|"
    r"validation|graph|unalign):\s*(-?\d+)|(nThread|nGpus|minBytes|maxBytes)"
    r"\s+(-?\d+)"
)
_AGG = {"0": "rank0", "1": "avg", "2": "min", "3": "max"}


def looks_like_nccl_text(head: str) -> bool:
    return "# nThread" in head or ("out-of-place" in head and "busbw" in head)


def looks_like_nccl_json(head: str) -> bool:
    text = head.lstrip()
    return text.startswith("{") and '"nccl_version"' in head and '"args"' in head


class _TextRun:
    """State of one test inside a text log."""

    def __init__(self, source: str, index: int, op: str) -> None:
        self.source, self.index, self.op = source, index, op
        self.config: dict[str, Any] = {}
        self.meta: dict[str, Any] = {"ranks": []}
        self.rows: list[tuple[int, dict[str, Any], float]] = []
        self.block = 4
        self.time_kind = "time"

    def info(self, path: pathlib.Path) -> RunInfo:
        rid = f"nccl-tests:{self.source}#{self.index}"
        return RunInfo(
            run_id=rid,
            source=self.source,
            format="nccl-tests",
            label=path.stem if self.index == 0 else f"{path.stem}#{self.index}",
            metadata=self.meta,
            config=self.config,
        )


def read_text(
    path: pathlib.Path, builder: FrameBuilder, problems: list[Problem], op_hint: str = ""
) -> None:
    """Add every test found in an nccl-tests text log to `builder`."""
    source = str(path)
    default_op = op_hint or _op_from_name(path.name)
    runs: list[_TextRun] = [_TextRun(source, 0, default_op)]
    with path.open(encoding="utf-8-sig", errors="replace") as handle:
        for lineno, raw in enumerate(handle, 1):
            line = raw.rstrip("\n")
            cur = runs[-1]
            if _starts_test(line) and cur.rows:
                runs.append(_TextRun(source, len(runs), default_op))
                cur = runs[-1]
            _text_line(line, lineno, cur, problems)
    for run in runs:
        if run.rows:
            _emit_text_run(run, path, builder)


def _starts_test(line: str) -> bool:
    return line.startswith(("# nccl-tests version", "# Collective test starting", "# nThread"))


def _op_from_name(name: str) -> str:
    for key in (
        "all_reduce",
        "all_gather",
        "reduce_scatter",
        "alltoallv",
        "alltoall",
        "sendrecv",
        "broadcast",
        "hypercube",
        "gather",
        "scatter",
        "reduce",
    ):
        if key in name:
            return canonical_op(key)
    return "unknown"


def _text_line(line: str, lineno: int, run: _TextRun, problems: list[Problem]) -> None:
    if _NOISE.search(line) and not _DATA.match(line):
        return
    if line.startswith("#"):
        _comment(line, run)
    elif _DATA.match(line):
        row = _data_row(line, run)
        if isinstance(row, str):
            problems.append(Problem(source=run.source, line=lineno, message=row))
        else:
            run.rows.extend((lineno, r, t) for r, t in row)


def _comment(line: str, run: _TextRun) -> None:
    if line.startswith("# Collective test starting:"):
        run.op = canonical_op(line.split(":", 1)[1])
    elif line.startswith("# nccl-tests version"):
        parts = line.split()
        run.meta["nccl_tests_version"] = parts[3] if len(parts) > 3 else ""
        for part in parts[4:]:
            key, _, value = part.partition("=")
            run.meta[key.replace("-", "_")] = value
    elif line.startswith("# nThread"):
        for m in _CONFIG.finditer(line):
            key = (m.group(1) or m.group(3)).replace(" ", "_")
            run.config[key] = int(m.group(2) or m.group(4))
    elif (rm := _RANK.match(line)) is not None:
        run.meta["ranks"].append(
            {
                "rank": int(rm.group(1)),
                "host": rm.group(4),
                "device": int(rm.group(5)),
                "pci": rm.group(6),
                "gpu": rm.group(7).strip(),
            }
        )
    elif "busbw" in line and "size" in line:  # the column header line
        run.block = 8 if "i_min" in line else 4
        run.time_kind = "cputime" if "cputime" in line else "time"
    elif line.startswith("# Avg bus bandwidth"):
        run.meta["avg_busbw_gbps"] = line.split(":", 1)[1].split()[0]
    elif line.startswith("# Out of bounds values"):
        run.meta["out_of_bounds"] = line.split(":", 1)[1].strip()


def _data_row(line: str, run: _TextRun) -> list[tuple[dict[str, Any], float]] | str:
    tokens = line.split()
    head, rest = tokens[:5], tokens[5:]
    if len(rest) % run.block == 2:  # trailing timestamp "YYYY-MM-DD HH:MM:SS"
        rest = rest[:-2]
    if not rest or len(rest) % run.block:
        return f"malformed nccl-tests data line ({len(tokens)} fields); line skipped"
    blocks = [rest[i : i + run.block] for i in range(0, len(rest), run.block)]
    places = ["out_of_place", "in_place"] if len(blocks) == 2 else ["in_place"]
    out = []
    try:
        for place, block in zip(places, blocks, strict=False):
            time_us = float(block[0])
            wrong = -1 if block[3] == "N/A" else int(float(block[3]))
            fields = {
                "size_bytes": int(head[0]),
                "count": int(head[1]),
                "dtype": canonical_dtype(head[2]),
                "redop": head[3],
                "root": int(head[4]),
                "placement": place,
                "num_wrong": wrong,
                "extra.reported_busbw_gbps": float(block[2]),
            }
            out.append((fields, time_us * 1e-6))
    except ValueError:
        return "nccl-tests data line has a non-numeric field; line skipped"
    return out


def _emit_text_run(run: _TextRun, path: pathlib.Path, builder: FrameBuilder) -> None:
    num_ranks = len(run.meta["ranks"]) or 0
    graph = run.config.get("graph", 0)
    iters = run.config.get("iters", 0) * max(run.config.get("agg_iters", 1), 1)
    idx = builder.add_run(run.info(path))
    common = {
        "op": run.op,
        "backend": "nccl-tests",
        "mode": "graph" if graph else "loop",
        "aggregation": "avg",
        "num_ranks": num_ranks,
        "bus_factor": bus_factor(run.op, num_ranks),
        "num_warmup": run.config.get("warmup_iters", -1),
        "ops_per_sample": iters,
        "extra.time_kind": run.time_kind,
    }
    for lineno, fields, time_s in run.rows:
        builder.add_record(
            idx, {**common, **fields, "msg_bytes": fields["size_bytes"], "line": lineno}, [time_s]
        )


def read_json(path: pathlib.Path, builder: FrameBuilder, problems: list[Problem]) -> None:
    """Add the run of an nccl-tests `-J` JSON file to `builder`."""
    source = str(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig", errors="replace"))
    except json.JSONDecodeError as exc:
        problems.append(
            Problem(
                source=source,
                line=exc.lineno,
                message=f"nccl-tests JSON is incomplete or invalid ({exc.msg}); "
                "file skipped (did the run crash?)",
            )
        )
        return
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        problems.append(
            Problem(
                source=source, line=0, message="nccl-tests JSON has no results list; file skipped"
            )
        )
        return
    args = [str(a) for a in doc.get("args") or []]
    op = canonical_op(args[0]) if args else _op_from_name(path.name)
    raw_config = doc.get("config")
    config: dict[str, Any] = raw_config if isinstance(raw_config, dict) else {}
    raw_devices = config.get("devices")
    devices: list[Any] = raw_devices if isinstance(raw_devices, list) else []
    meta = {
        "args": args,
        "nccl_version": doc.get("nccl_version"),
        "start_time": doc.get("start_time"),
        "end_time": doc.get("end_time"),
        "env": _allowed_env(doc.get("env")),
        "devices": devices,
        "json_version": doc.get("version"),
    }
    run = builder.add_file_run(
        "nccl-tests-json", path, meta, {k: v for k, v in config.items() if k != "devices"}
    )
    common = {
        "op": op,
        "backend": "nccl-tests",
        "num_ranks": len(devices),
        "bus_factor": bus_factor(op, len(devices)),
        "aggregation": _aggregation(args),
        "mode": "graph" if config.get("graph") else "loop",
        "num_warmup": config.get("warmup_iters", -1),
    }
    iters = int(config.get("iterations", 0) or 0) * max(
        int(config.get("aggregated_iterations", 1) or 1), 1
    )
    for i, entry in enumerate(doc["results"]):
        msg = _json_result(entry, run, common, iters, builder)
        if msg:
            problems.append(Problem(source=source, line=0, message=f"results[{i}]: {msg}"))


def _aggregation(args: list[str]) -> str:
    for i, arg in enumerate(args):
        if arg in ("-a", "--average") and i + 1 < len(args):
            return _AGG.get(args[i + 1], "avg")
    return "avg"


def _allowed_env(env: Any) -> dict[str, str]:
    """Only NCCL_/CUDA_/UCX_ variables, with secret-looking values redacted."""
    out: dict[str, str] = {}
    for item in env if isinstance(env, list) else []:
        key, _, value = str(item).partition("=")
        if key.startswith(("NCCL_", "CUDA_", "UCX_", "NVSHMEM_")):
            secret = any(s in key for s in ("TOKEN", "SECRET", "PASSWORD", "KEY"))
            out[key] = "<redacted>" if secret else value
    return out


def _json_result(
    entry: Any, run: int, common: dict[str, Any], iters: int, builder: FrameBuilder
) -> str:
    if not isinstance(entry, dict):
        return "not an object; skipped"
    try:
        base = {
            **common,
            "size_bytes": int(entry["size"]),
            "count": int(entry["count"]),
            "dtype": canonical_dtype(str(entry["type"])),
            "redop": str(entry["redop"]),
            "root": int(str(entry.get("root", "-1")).strip() or -1),
        }
    except (KeyError, ValueError, TypeError) as exc:
        return f"missing or bad field ({exc}); skipped"
    base["msg_bytes"] = base["size_bytes"]
    for place in ("out_of_place", "in_place"):
        body = entry.get(place)
        if not isinstance(body, dict):
            continue
        per_iter = entry.get(f"{place}_per_iter")
        time_us: Any = body.get("time", body.get("cpu_time"))
        wrong = body.get("nwrong")
        fields = {
            **base,
            "placement": place,
            "num_wrong": -1 if wrong is None else int(float(wrong)),
        }
        if isinstance(per_iter, dict) and isinstance(per_iter.get("times_us"), list):
            try:
                times, rank_s = _per_iter_times(per_iter)
            except (TypeError, ValueError):
                return f"{place} per-iteration times are not numbers; skipped"
            builder.add_record(
                run,
                {**fields, "mode": "per_iter", "aggregation": "max", "ops_per_sample": 1},
                times,
                rank_s,
            )
            continue
        try:
            mean_s = float(time_us) * 1e-6
        except (TypeError, ValueError):
            return f"{place} time {time_us!r} is not a number; skipped"
        if not math.isfinite(mean_s):
            return f"{place} time is {time_us!r}; skipped"
        builder.add_record(run, {**fields, "ops_per_sample": iters}, [mean_s])
    return ""


def _per_iter_times(per_iter: dict[str, Any]) -> tuple[list[float], Any]:
    """Iteration times (s) and, when all finite, per-process times [process][iteration]."""
    times = [float(t) * 1e-6 for t in per_iter["times_us"]]
    if not all(math.isfinite(t) and t >= 0 for t in times):
        raise ValueError("non-finite time")
    ranks = per_iter.get("per_process_max_times_us")
    if not isinstance(ranks, list) or not ranks:
        return times, None
    try:
        rank_s = [[float(t) * 1e-6 for t in r] for r in ranks]
    except (TypeError, ValueError):
        return times, None
    ok = all(len(r) == len(times) and all(math.isfinite(t) for t in r) for r in rank_s)
    return times, rank_s if ok else None
