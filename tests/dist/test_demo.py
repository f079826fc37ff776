"""`epbench demo` runs to completion and leaves readable result files."""

from __future__ import annotations

import pathlib

import pytest

from tests.conftest import read_run

pytestmark = pytest.mark.dist


@pytest.mark.timeout(900)
def test_demo_runs_to_completion(cli, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "demo"
    res = cli("demo", "-o", str(out), timeout=880)
    assert res.returncode == 0, res.stderr[-3000:]
    files = sorted(out.glob("*.jsonl"))
    names = {f.name for f in files}
    assert {"alltoall-gloo.jsonl", "pingpong-gloo.jsonl", "alltoallv-gloo.jsonl"} <= names
    for path in files:
        lines = read_run(path)
        assert lines[0]["kind"] == "header"
        if lines[-1]["kind"] == "footer":
            assert lines[-1]["status"] == "ok"
    records = [r for r in read_run(out / "alltoall-gloo.jsonl") if r["kind"] == "record"]
    assert records and all(r["num_wrong"] == 0 and r["num_ranks"] == 4 for r in records)
    assert "busbw(GB/s)" in res.stdout
