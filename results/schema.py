"""The epbench results file format: one JSON Lines file per run.

Line 1 is a header (`kind: "header"`) holding the schema version, the run's metadata
(provenance) and its resolved config. Every further line is a `record` — one per
(op, backend, dtype, codec, size, timing mode) — holding raw per-iteration samples; all
statistics are derived from them when read. A run that ends cleanly writes a `footer`
line; a crashed run simply lacks it, and a truncated last line costs only that line.
The format is documented in docs/SCHEMA.md. Readers accept every version in
`SUPPORTED_VERSIONS`; `upgrade_record` lifts older records to the current shape.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

SCHEMA_NAME = "epbench.run"
SCHEMA_VERSION = 1
SUPPORTED_VERSIONS = (1,)

TIMING_MODES = ("per_iter", "loop", "graph")
"""per_iter: one op per sample, timed alone (events / host clock around it);
loop: a block of back-to-back ops, sample = block time / ops in block;
graph: like loop, but the block is a captured CUDA graph replayed once per sample."""


class SchemaError(ValueError):
    """A line that is not a valid epbench record; the message names what is wrong."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Header:
    """First line of a run file."""

    run_id: str
    """Unique id of the run (uuid4 hex)."""
    created_utc: str
    """ISO 8601 time the run started."""
    metadata: dict[str, Any]
    """Provenance: argv, versions, hosts, GPUs, NICs, launcher, rank map, environment."""
    config: dict[str, Any]
    """The resolved configuration every rank agreed on."""
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        body = {"kind": "header", "schema": SCHEMA_NAME, **dataclasses.asdict(self)}
        return json.dumps(body, sort_keys=True, allow_nan=False, default=str)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Record:
    """One measured (or predicted) point: raw samples plus what is needed to derive stats."""

    op: str
    """Operation name (alltoall, allreduce, dispatch, ...)."""
    backend: str
    """Backend name (nccl, torch-nccl, gloo, mpi, model)."""
    dtype: str
    """Element type of the payload as sent (canonical name)."""
    mode: str
    """Timing mode, one of TIMING_MODES."""
    size_bytes: int
    """nccl-tests' `size`: bytes of the per-rank buffer that defines algbw for this op."""
    count: int
    """Elements per rank in nccl-tests' convention."""
    num_ranks: int
    """World size."""
    times_s: list[float]
    """One sample per iteration (or per block), max over ranks, seconds."""
    bus_factor: float
    """busbw = algbw * bus_factor (docs/PERFORMANCE.md)."""
    num_wrong: int = 0
    """Elements that failed the correctness check before timing (-1: not checked)."""
    redop: str = "none"
    root: int = -1
    codec: str = "none"
    """Payload codec applied before sending (none = raw dtype)."""
    num_warmup: int = 0
    rank_times_s: list[list[float]] | None = None
    """Per-rank samples [rank][sample]; None when aggregation discarded them."""
    aggregation: str = "max"
    """How `times_s` combines ranks: max (default), min, avg or rank0 (nccl-tests -a)."""
    predicted: bool = False
    """True for fabric-model output: never a measurement."""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Op-specific facts: byte conventions, per-rank bytes, link-class bounds, codec times."""

    def __post_init__(self) -> None:
        if self.mode not in TIMING_MODES:
            raise SchemaError(f"mode {self.mode!r} not one of {TIMING_MODES}")
        if self.size_bytes < 0 or self.count < 0 or self.num_ranks < 1:
            raise SchemaError(
                f"bad sizes: size_bytes={self.size_bytes} count={self.count} "
                f"num_ranks={self.num_ranks}"
            )
        for t in self.times_s:
            if not (isinstance(t, (int, float)) and math.isfinite(t) and t >= 0):
                raise SchemaError(f"sample {t!r} is not a finite non-negative time")

    def to_json(self) -> str:
        body = {"kind": "record", **dataclasses.asdict(self)}
        return json.dumps(body, sort_keys=True, allow_nan=False, default=str)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Footer:
    """Last line of a run that ended on its own (cleanly or with a reported error)."""

    status: str
    """ok, or error."""
    message: str = ""
    num_records: int = 0

    def to_json(self) -> str:
        return json.dumps({"kind": "footer", **dataclasses.asdict(self)}, sort_keys=True)


_RECORD_FIELDS = {f.name for f in dataclasses.fields(Record)}
_HEADER_FIELDS = {f.name for f in dataclasses.fields(Header)}


def upgrade_record(body: dict[str, Any], version: int) -> dict[str, Any]:
    """Lift a record body written by schema `version` to the current shape."""
    if version not in SUPPORTED_VERSIONS:
        raise SchemaError(
            f"schema version {version} not supported (this epbench reads {SUPPORTED_VERSIONS})"
        )
    return body


def parse_line(line: str, version: int = SCHEMA_VERSION) -> Header | Record | Footer:
    """Parse one JSON line into a Header, Record or Footer; SchemaError on anything else."""
    try:
        body = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(body, dict):
        raise SchemaError("line is not a JSON object")
    kind = body.pop("kind", None)
    try:
        if kind == "header":
            if body.pop("schema", None) != SCHEMA_NAME:
                raise SchemaError("header does not name schema epbench.run")
            ver = body.get("schema_version")
            if ver not in SUPPORTED_VERSIONS:
                raise SchemaError(
                    f"schema version {ver!r} not supported (this epbench reads "
                    f"{SUPPORTED_VERSIONS}); upgrade epbench"
                )
            return Header(**{k: v for k, v in body.items() if k in _HEADER_FIELDS})
        if kind == "record":
            body = upgrade_record(body, version)
            unknown = set(body) - _RECORD_FIELDS
            if unknown:
                raise SchemaError(f"unknown record fields {sorted(unknown)}")
            return Record(**body)
        if kind == "footer":
            return Footer(**body)
    except TypeError as exc:
        raise SchemaError(f"{kind} line has wrong fields: {exc}") from None
    raise SchemaError(f"unknown line kind {kind!r}")
