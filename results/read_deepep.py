"""Reader for DeepEP's test logs (tests/test_intranode.py, test_internode.py,
test_low_latency.py, and their tests/legacy/ copies).

Normal kernels print one `[tuning]` line per tried config and a `Best ...` line per phase;
each becomes a row (op dispatch or combine, dtype FP8 or BF16, variant naming the config,
`best` for the winner). DeepEP prints only the mean time of its timed calls and the GB/s
under its own byte convention (NVL: received bytes; RDMA: "logical" bytes), so the row's
`size_bytes` is recovered as GB/s x time and `size_convention` names which. Low-latency
`[rank N]` lines give per-rank dispatch and combine times.
"""

from __future__ import annotations

import pathlib
import re
from typing import Any

from results.frame import FrameBuilder, Problem

_CONFIG = re.compile(r"^\[config\] (.*)$")
_TUNE = re.compile(r"^\[tuning\] SMs (\d+), NVL chunk (\w+)(?:, RDMA chunk (\d+))?: (.*)$")
_BEST = re.compile(
    r"^\[tuning\] Best (dispatch|combine)(?: \((FP8|BF16)\))?: SMs (\d+), NVL chunk (\d+)"
    r"(?:, RDMA chunk (\d+))?[:,] (.*)$"
)
_NUM = r"([\d.]+)"
_GBPS = re.compile(_NUM + r" GB/s \((NVL|RDMA)\)")
_TIME_US = re.compile(r"(?:t: )?" + _NUM + r" us(?:,|$)")
_NOTIFY = re.compile(_NUM + r" \+ " + _NUM + r" us")
_LL = re.compile(
    r"^\[rank (\d+)\] Dispatch bandwidth: "
    + _NUM
    + r" GB/s, avg_t="
    + _NUM
    + r" us \| Combine bandwidth: "
    + _NUM
    + r" GB/s, avg_t="
    + _NUM
    + r" us"
)


def looks_like_deepep(head: str) -> bool:
    return "[tuning]" in head or "[config] num_tokens=" in head or "Dispatch bandwidth:" in head


def read(path: pathlib.Path, builder: FrameBuilder, problems: list[Problem]) -> None:
    """Add one DeepEP test log to `builder`."""
    source = str(path)
    config: dict[str, Any] = {}
    pending: list[tuple[int, dict[str, Any], float]] = []
    rows: list[tuple[int, dict[str, Any], float]] = []
    with path.open(encoding="utf-8-sig", errors="replace") as handle:
        for lineno, raw in enumerate(handle, 1):
            line = raw.strip()
            if (m := _CONFIG.match(line)) is not None:
                config.update(_pairs(m.group(1)))
            elif line.startswith("[tuning]"):
                parsed = _tuning(line)
                if isinstance(parsed, str):
                    problems.append(Problem(source=source, line=lineno, message=parsed))
                elif parsed[0].get("variant") == "best":
                    _close_phase(pending, parsed[0], rows)
                    rows.append((lineno, *parsed))
                else:
                    pending.append((lineno, *parsed))
            elif (m := _LL.match(line)) is not None:
                rows.extend(_low_latency(m, lineno))
    if not rows:
        problems.append(Problem(source=source, line=0, message="no DeepEP result lines found"))
        return
    meta = {"tool": "DeepEP tests", "kernel": _kernel(rows)}
    run = builder.add_file_run("deepep", path, meta, config)
    for lineno, fields, time_s in rows:
        builder.add_record(run, {**fields, "line": lineno}, [time_s])


def _pairs(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in text.split(","):
        key, _, value = part.strip().partition("=")
        if key:
            out[key] = int(value) if value.isdigit() else value
    return out


def _kernel(rows: list[tuple[int, dict[str, Any], float]]) -> str:
    conventions = {r[1]["size_convention"] for r in rows}
    if "deepep-ll" in conventions:
        return "low-latency"
    return "internode" if "deepep-rdma" in conventions else "intranode"


def _tuning(line: str) -> tuple[dict[str, Any], float] | str:
    best = _BEST.match(line)
    tune = None if best else _TUNE.match(line)
    if best is None and tune is None:
        return "unrecognized DeepEP [tuning] line; skipped"
    m = best or tune
    assert m is not None
    rest = m.group(6) if best else m.group(4)
    bws = {kind: float(v) for v, kind in _GBPS.findall(rest)}
    notify = _NOTIFY.search(rest)
    time_m = _TIME_US.search(rest)
    if notify is not None:
        time_us, notify_us = float(notify.group(2)), float(notify.group(1))
    elif time_m is not None:
        time_us, notify_us = float(time_m.group(1)), float("nan")
    else:
        return "DeepEP [tuning] line without a time; skipped"
    kind = "RDMA" if "RDMA" in bws else "NVL"
    if kind not in bws:
        return "DeepEP [tuning] line without a GB/s figure; skipped"
    fields: dict[str, Any] = {
        "backend": "deepep",
        "mode": "per_iter",
        "aggregation": "rank0",
        "size_bytes": round(bws[kind] * 1e9 * time_us * 1e-6),
        "size_convention": f"deepep-{kind.lower()}",
        "bus_factor": 1.0,
        "extra.nvl_gbps": bws.get("NVL"),
        "extra.rdma_gbps": bws.get("RDMA"),
        "extra.notify_us": notify_us,
    }
    if best:
        fields.update(
            op=best.group(1),
            dtype=(best.group(2) or "BF16")
            .lower()
            .replace("fp8", "float8_e4m3fn")
            .replace("bf16", "bfloat16"),
            variant="best",
            **_chunks(best.group(3), best.group(4), best.group(5)),
        )
    else:
        chunk = tune.group(2) if tune else ""
        fields.update(
            variant=f"SMs {tune.group(1) if tune else ''}, NVL chunk {chunk}"
            + (f", RDMA chunk {tune.group(3)}" if tune and tune.group(3) else "")
        )
    fields["msg_bytes"] = fields["size_bytes"]
    return fields, time_us * 1e-6


def _chunks(sms: str, nvl: str, rdma: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"extra.num_sms": int(sms), "extra.nvl_chunk": int(nvl)}
    if rdma:
        out["extra.rdma_chunk"] = int(rdma)
    return out


def _close_phase(
    pending: list[tuple[int, dict[str, Any], float]],
    best: dict[str, Any],
    rows: list[tuple[int, dict[str, Any], float]],
) -> None:
    """Tuning lines carry no op or dtype: the Best line that follows them names both.

    All lines of a phase move the same bytes; each line's bytes (GB/s x time, both rounded
    when printed) are replaced by their median so that the phase shares one size.
    """
    sizes = sorted([f["size_bytes"] for _, f, _ in pending] + [best["size_bytes"]])
    size = sizes[len(sizes) // 2]
    best.update(size_bytes=size, msg_bytes=size)
    for lineno, fields, time_s in pending:
        rows.append(
            (
                lineno,
                {
                    **fields,
                    "op": best["op"],
                    "dtype": best["dtype"],
                    "size_bytes": size,
                    "msg_bytes": size,
                },
                time_s,
            )
        )
    pending.clear()


def _low_latency(m: re.Match[str], lineno: int) -> list[tuple[int, dict[str, Any], float]]:
    rank = int(m.group(1))
    out = []
    for op, gbps, time_us in (
        ("dispatch", m.group(2), m.group(3)),
        ("combine", m.group(4), m.group(5)),
    ):
        t = float(time_us) * 1e-6
        out.append(
            (
                lineno,
                {
                    "op": op,
                    "backend": "deepep-ll",
                    "mode": "per_iter",
                    "aggregation": "rank",
                    "dtype": "float8_e4m3fn" if op == "dispatch" else "bfloat16",
                    "size_bytes": round(float(gbps) * 1e9 * t),
                    "size_convention": "deepep-ll",
                    "bus_factor": 1.0,
                    "variant": f"rank {rank}",
                    "extra.rank": rank,
                },
                t,
            )
        )
    return out
