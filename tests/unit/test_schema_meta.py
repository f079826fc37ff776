"""Results schema round-trip, provenance redaction, and the watchdog."""

from __future__ import annotations

import json
import time

import pytest

from bench.metadata import REDACTED, environment
from bench.watchdog import EXIT_TIMEOUT, Watchdog
from results.schema import Footer, Header, Record, SchemaError, parse_line


def _record(**kw: object) -> Record:
    base = dict(
        op="alltoall",
        backend="gloo",
        dtype="float32",
        mode="loop",
        size_bytes=1024,
        count=256,
        num_ranks=2,
        times_s=[1e-5, 2e-5],
        bus_factor=0.5,
        rank_times_s=[[1e-5, 2e-5], [0.5e-5, 1e-5]],
    )
    base.update(kw)
    return Record(**base)  # type: ignore[arg-type]


def test_round_trip() -> None:
    header = Header(run_id="r", created_utc="t", metadata={"a": 1}, config={"b": [1]})
    assert parse_line(header.to_json()) == header
    rec = _record(extra={"send_bytes_per_rank": [1, 2]})
    assert parse_line(rec.to_json()) == rec
    foot = Footer(status="ok", num_records=3)
    assert parse_line(foot.to_json()) == foot


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"kind": "record", "op": "x"', "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"kind": "nope"}', "unknown line kind"),
        ('{"kind": "header", "schema": "epbench.run", "schema_version": 99}', "version 99"),
    ],
)
def test_bad_lines(line: str, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        parse_line(line)


def test_record_validation() -> None:
    with pytest.raises(SchemaError, match="mode"):
        _record(mode="fast")
    with pytest.raises(SchemaError, match="finite"):
        _record(times_s=[float("nan")])
    body = json.loads(_record().to_json())
    body["bogus"] = 1
    with pytest.raises(SchemaError, match="unknown record fields"):
        parse_line(json.dumps(body))


def test_environment_allowlist_and_redaction() -> None:
    env = {
        "NCCL_IB_HCA": "mlx5_0",
        "HOME": "/root",
        "NCCL_API_TOKEN": "s3cret",
        "SLURM_JOB_ID": "7",
        "AWS_SECRET_ACCESS_KEY": "x",
        "UCX_AUTH_KEY": "k",
    }
    kept = environment(env)
    assert kept == {
        "NCCL_IB_HCA": "mlx5_0",
        "NCCL_API_TOKEN": REDACTED,
        "SLURM_JOB_ID": "7",
        "UCX_AUTH_KEY": REDACTED,
    }


def test_watchdog_fires_and_names_the_phase() -> None:
    fired: list[str] = []
    codes: list[int] = []
    dog = Watchdog(0.2, rank=3, on_fire=fired.append, exit=codes.append)
    with dog.guard("alltoall size 64 B (timed, loop)"):
        time.sleep(0.6)
    assert codes == [EXIT_TIMEOUT]
    assert "rank 3: alltoall size 64 B (timed, loop) did not finish within 0.2 s" in fired[0]


def test_watchdog_quiet_when_phases_finish() -> None:
    codes: list[int] = []
    dog = Watchdog(0.3, rank=0, on_fire=lambda m: None, exit=codes.append)
    for _ in range(5):
        with dog.guard("fast"):
            time.sleep(0.05)
    time.sleep(0.4)
    dog.close()
    assert codes == []
