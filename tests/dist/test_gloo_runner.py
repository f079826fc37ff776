"""The runner end to end on gloo with several CPU processes: every op, the file it writes,
and what happens when something goes wrong (hung peer, killed rank, mismatched config)."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest

from collectives.ops import CORE_OPS
from tests.conftest import cli_env, read_run, run_with_fault

pytestmark = pytest.mark.dist
FAST = ["-n", "3", "-w", "1", "--blocks", "2"]


def _check_file(
    path: pathlib.Path, op: str, world: int, num_sizes: int, launcher: str = "spawn"
) -> list[dict]:
    lines = read_run(path)
    assert lines[0]["kind"] == "header" and lines[-1]["kind"] == "footer"
    assert lines[-1]["status"] == "ok"
    records = [line for line in lines if line["kind"] == "record"]
    assert len(records) == 2 * num_sizes  # per_iter + loop per size
    for rec in records:
        assert rec["op"] == op and rec["num_ranks"] == world and rec["num_wrong"] == 0
        rank_times = np.asarray(rec["rank_times_s"])
        assert rank_times.shape == (world, len(rec["times_s"]))
        assert np.allclose(rec["times_s"], rank_times.max(axis=0))
    assert lines[0]["metadata"]["launcher"] == launcher
    assert len(lines[0]["metadata"]["ranks"]) == world
    return records


@pytest.mark.parametrize("op", CORE_OPS)
def test_every_op_world_2(op: str, cli, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "r.jsonl"
    res = cli("run", op, "--np", "2", "-b", "1K", "-e", "16K", "-f", "16", *FAST, "-o", str(out))
    assert res.returncode == 0, res.stderr
    _check_file(out, op, 2, 2)
    assert "#wrong" in res.stdout and "p99(us)" in res.stdout


@pytest.mark.parametrize("op", ["alltoall", "alltoallv", "reducescatter", "pingpong"])
def test_world_4_two_virtual_nodes(op: str, cli, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "r.jsonl"
    extra = ["--pair", "cross-node"] if op == "pingpong" else []
    res = cli(
        "run",
        op,
        "--np",
        "4",
        "--gpus-per-node",
        "2",
        "-b",
        "4K",
        "-e",
        "4K",
        *FAST,
        "-d",
        "bfloat16",
        "-o",
        str(out),
        *extra,
    )
    assert res.returncode == 0, res.stderr
    records = _check_file(out, op, 4, 1)
    assert records[0]["dtype"] == "bfloat16"
    header = read_run(out)[0]
    assert [m["node"] for m in header["metadata"]["rank_map"]] == [0, 0, 1, 1]


def test_world_1(cli, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "r.jsonl"
    res = cli("run", "allreduce", "-b", "1K", "-e", "1K", *FAST, "-o", str(out), "--format", "csv")
    assert res.returncode == 0, res.stderr
    _check_file(out, "allreduce", 1, 1, launcher="single")
    assert out.with_suffix(".csv").read_text().startswith("op,backend")


def _partial_file_ok(path: pathlib.Path) -> None:
    lines = read_run(path)
    records = [line for line in lines if line["kind"] == "record"]
    assert records and all(r["size_bytes"] == 1024 for r in records)  # first size kept
    assert lines[-1]["kind"] == "footer" and lines[-1]["status"] == "error"


@pytest.mark.parametrize("fault", ["skip", "hang"])
def test_hung_peer_ends_every_rank_within_timeout(fault: str, cli, tmp_path) -> None:
    out = tmp_path / "r.jsonl"
    start = time.monotonic()
    res = run_with_fault(cli, out, fault)
    elapsed = time.monotonic() - start
    assert res.returncode != 0
    assert elapsed < 4 + 15, elapsed
    errors = [line for line in res.stderr.splitlines() if line.startswith("epbench: error")]
    assert errors and "did not finish within 4 s" in errors[0]
    assert "alltoall size 4096 B" in res.stderr
    assert "Traceback" not in res.stderr
    _partial_file_ok(out)


def test_killed_rank(cli, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "r.jsonl"
    start = time.monotonic()
    res = cli(
        "run",
        "allreduce",
        "--np",
        "2",
        "-b",
        "1K",
        "-e",
        "4K",
        "-f",
        "4",
        *FAST,
        "-T",
        "4",
        "-o",
        str(out),
        "--inject-fault",
        "kill:1:1",
        timeout=60,
    )
    assert res.returncode != 0
    assert time.monotonic() - start < 4 + 15
    assert "rank 1 was killed by SIGKILL" in res.stderr
    assert "Traceback" not in res.stderr
    _partial_file_ok(out)


def test_mismatched_config_is_refused_before_timing(tmp_path: pathlib.Path) -> None:
    procs = []
    for rank, iters in ((0, "3"), (1, "4")):
        env = cli_env(
            {
                "RANK": str(rank),
                "WORLD_SIZE": "2",
                "LOCAL_RANK": str(rank),
                "LOCAL_WORLD_SIZE": "2",
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(29700 + (hash(str(tmp_path)) % 200)),
            }
        )
        cmd = [
            sys.executable,
            "-m",
            "bench",
            "run",
            "alltoall",
            "-b",
            "1K",
            "-e",
            "1K",
            "-n",
            iters,
            "-o",
            str(tmp_path / f"r{rank}.jsonl"),
            "-T",
            "20",
        ]
        procs.append(
            subprocess.Popen(cmd, env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
        )
    errs = [p.communicate(timeout=60)[1] for p in procs]
    assert all(p.returncode == 2 for p in procs)
    assert "rank 0 has iters=3 but rank 1 has iters=4" in errs[0]
    assert not (tmp_path / "r0.jsonl").exists()  # nothing timed, nothing written


def test_fake_64_rank_dry_run(cli, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "dry.jsonl"
    env = {
        "RANK": "0",
        "WORLD_SIZE": "64",
        "LOCAL_RANK": "0",
        "LOCAL_WORLD_SIZE": "8",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "1",
    }
    res = cli(
        "run",
        "alltoall",
        "--backend",
        "fake",
        "--gpus-per-node",
        "8",
        "-b",
        "1M",
        "-e",
        "64M",
        "-f",
        "8",
        *FAST,
        "-o",
        str(out),
        env=env,
    )
    assert res.returncode == 0, res.stderr
    records = [r for r in read_run(out) if r["kind"] == "record"]
    assert {r["num_ranks"] for r in records} == {64}
    assert {r["size_bytes"] for r in records} == {1 << 20, 8 << 20, 64 << 20}
    assert all(r["num_wrong"] == -1 for r in records)  # nothing moved, nothing checked
    assert all(r["bus_factor"] == pytest.approx(63 / 64) for r in records)


def test_declared_topology_adds_link_classes_and_bound(cli, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "r.jsonl"
    res = cli(
        "run",
        "alltoall",
        "--np",
        "2",
        "-b",
        "1M",
        "-e",
        "1M",
        *FAST,
        "-o",
        str(out),
        "--topology",
        "deepseek-mpft",
        "--rank-map",
        "plane-aligned",
        "--fabric",
        "ib",
        "--label",
        "aligned",
    )
    assert res.returncode == 0, res.stderr
    assert "bound(us)" in res.stdout
    lines = read_run(out)
    meta = lines[0]["metadata"]
    assert (meta["fabric"], meta["topology"], meta["rank_map_name"], meta["label"]) == (
        "ib",
        "deepseek-mpft",
        "plane-aligned",
        "aligned",
    )
    rec = next(line for line in lines if line["kind"] == "record")
    links = rec["extra"]["links"]
    # two ranks on one node: everything but the local copies stays on the scale-up fabric
    assert links["intra_node_bytes"] == pytest.approx(rec["size_bytes"])
    assert rec["extra"]["link_bound_s"] > 0
