"""The runner under mpiexec: a hung or killed rank ends the job within the timeout, with one
error line and every point measured before it still on disk."""

from __future__ import annotations

import pathlib
import time

import pytest

from tests.conftest import mpiexec, read_run, run_with_fault

pytestmark = [
    pytest.mark.dist,
    pytest.mark.mpi,
    pytest.mark.skipif(mpiexec() is None, reason="mpiexec not installed"),
]


@pytest.mark.parametrize("fault", ["hang", "kill"])
def test_mpi_fault_ends_job_and_keeps_results(fault: str, cli, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "r.jsonl"
    start = time.monotonic()
    res = run_with_fault(cli, out, fault, "--backend", "mpi")
    assert res.returncode != 0
    assert time.monotonic() - start < 4 + 30
    assert "Traceback" not in res.stderr
    if fault == "hang":
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith("epbench: error")]
        assert errors and "alltoall size 4096 B (check) did not finish within 4 s" in errors[0]
    lines = read_run(out)
    assert lines[0]["kind"] == "header"
    records = [ln for ln in lines if ln["kind"] == "record"]
    assert records and {r["size_bytes"] for r in records} == {1024}
    assert all(r["num_wrong"] == 0 for r in records)
