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


@pytest.mark.parametrize(
    ("op", "sizes"),
    [("alltoall", ("-b", "1K", "-e", "4K")), ("pingpong", ("-b", "64", "-e", "256"))],
)
def test_mpi_graph_mode_replays_the_calls_from_compiled_code(
    op: str, sizes: tuple[str, ...], cli, tmp_path: pathlib.Path
) -> None:
    out = tmp_path / "g.jsonl"
    res = cli(
        "run", op, "--backend", "mpi", "--np", "2", *sizes, "-f", "4", "-d", "int8",
        "-n", "50", "-w", "2", "--blocks", "2", "-G", "2", "-o", str(out), timeout=150,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert "compiled replay of the MPI calls" in res.stdout
    records = [r for r in read_run(out) if r["kind"] == "record"]
    graph = [r for r in records if r["mode"] == "graph"]
    assert len(graph) == 2 and all(len(r["times_s"]) == 2 for r in graph)
    assert all(r["num_wrong"] == 0 for r in records)
    assert all(0 < t < 1e-2 for r in graph for t in r["times_s"])


def test_mpi_graph_mode_declined_is_said_and_the_loop_stays(cli, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "d.jsonl"
    res = cli(
        "run", "allreduce", "--backend", "mpi", "--np", "2", "-b", "64", "-e", "64",
        "-d", "bfloat16", "-n", "5", "-w", "1", "--blocks", "2", "-G", "2", "-o", str(out),
        timeout=150,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert "no graph mode for this point (mpi replays only plain calls" in res.stdout
    modes = {r["mode"] for r in read_run(out) if r["kind"] == "record"}
    assert modes == {"per_iter", "loop"}
