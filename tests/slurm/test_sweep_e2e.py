"""A generated sweep on a real Slurm: 2 nodes x 2 tasks, gloo and MPI, one array task lost.

Two sweeps are submitted to the session's local cluster: an MPI A/B sweep
(NCCL_IB_ADAPTIVE_ROUTING 0/1, three blocks, two blocks per array task, task 1 cancelled
before it starts) and a gloo sweep of one step. Collecting must keep every result that
exists, name the lost task, and carry job id, step id, node list and node ids into the
metadata; the blocks must have run in the planned interleaved order.
"""

from __future__ import annotations

import csv
import json
import pathlib
import re
import time

import pytest

from results.schema import Header, Record, parse_line

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(420)]

COMMON = """
[cluster]
nodes = 2
gpus_per_node = 2
request_gpus = false
fabric = "ib"
# MPICH's mpiexec serves PMI itself: under Slurm's pmi2 plugin the MPICH wheel's PMI-1 lines
# for large values arrive split when the host is loaded, and MPI_Init then fails at random
mpi = "hydra"

[[op]]
name = "alltoall"
begin = "1K"
end = "4K"
factor = 4
iters = 3
warmup = 1
"""
AB_SPEC = f"""
[sweep]
name = "ab"
repeats = 3
seed = 17
blocks_per_task = 2
{COMMON}
[matrix]
backends = ["mpi"]

[compare]
NCCL_IB_ADAPTIVE_ROUTING = [0, 1]
"""
GLOO_SPEC = f"""
[sweep]
name = "gloo"
{COMMON}
[matrix]
backends = ["gloo"]
rank_maps = ["block", "cyclic"]
"""


def _gen_submit(cluster, tmp: pathlib.Path, name: str, text: str) -> str:
    spec = tmp / f"{name}.toml"
    spec.write_text(text)
    proc = cluster.epbench("slurm", "gen", str(spec), "-o", str(tmp / name), "--submit")
    assert proc.returncode == 0, proc.stderr
    return re.search(r"as job (\d+)", proc.stdout).group(1)


def _wait(cluster, job_ids: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        queue = cluster.run("squeue", "-h", "-o", "%i", "-j", ",".join(job_ids), check=False)
        if not queue.stdout.strip():
            return
        time.sleep(1)
    pytest.fail(f"jobs {job_ids} still queued after {timeout_s} s")


@pytest.fixture(scope="module")
def sweeps(slurm_cluster, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweeps")
    ab_job = _gen_submit(slurm_cluster, tmp, "ab", AB_SPEC)
    slurm_cluster.run("scancel", f"{ab_job}_1")  # task 1 waits for nodes: it never runs
    gloo_job = _gen_submit(slurm_cluster, tmp, "gloo", GLOO_SPEC)
    _wait(slurm_cluster, [ab_job, gloo_job], 360)
    collected = {
        name: slurm_cluster.epbench("slurm", "collect", str(tmp / name)) for name in ("ab", "gloo")
    }
    return {"tmp": tmp, "ab_job": ab_job, "gloo_job": gloo_job, "collect": collected}


def _steps(folder: pathlib.Path) -> list[dict[str, str]]:
    with (folder / "collected" / "steps.tsv").open() as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _header(path: pathlib.Path) -> Header:
    return parse_line(path.read_text().splitlines()[0])


def _by_rank_map(folder: pathlib.Path) -> dict[str, pathlib.Path]:
    paths = folder.glob("collected/*.jsonl")
    return {_header(p).metadata["sweep"]["rank_map"]: p for p in paths}


def test_gloo_step_carries_slurm_facts(sweeps):
    proc = sweeps["collect"]["gloo"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    folder = sweeps["tmp"] / "gloo"
    by_map = _by_rank_map(folder)
    assert sorted(by_map) == ["block", "cyclic"]
    path = by_map["block"]
    meta = _header(path).metadata
    slurm = meta["slurm"]
    assert slurm["job_id"] == sweeps["gloo_job"] and slurm["nodelist"] == "n[1-2]"
    assert slurm["step_id"].isdigit()
    assert [(r["rank"], r["node_name"], r["node_id"], r["local_rank"]) for r in slurm["ranks"]] == [
        ("0", "n1", "0", "0"),
        ("1", "n1", "0", "1"),
        ("2", "n2", "1", "0"),
        ("3", "n2", "1", "1"),
    ]
    assert meta["sweep"]["backend"] == "gloo" and meta["sweep"]["tags"] == {"fabric": "ib"}
    assert meta["launcher"] == "slurm"
    assert meta["environment"]["SLURM_JOB_ID"] == sweeps["gloo_job"]
    records = [parse_line(line) for line in path.read_text().splitlines()[1:]]
    records = [r for r in records if isinstance(r, Record)]
    assert sorted({r.size_bytes for r in records}) == [1024, 4096]
    assert all(r.num_ranks == 4 and r.num_wrong == 0 for r in records)


def test_lost_array_task_is_reported_and_the_rest_kept(sweeps):
    proc = sweeps["collect"]["ab"]
    assert proc.returncode == 1
    assert "collected 4 of 6 steps" in proc.stdout
    assert "array task n2g2/1 (job none): 2 of 2 steps not ok" in proc.stdout
    states = {(s["task"], s["state"]) for s in _steps(sweeps["tmp"] / "ab")}
    assert states == {("0", "ok"), ("1", "missing")}
    assert len(list((sweeps["tmp"] / "ab" / "collected").glob("*.jsonl"))) == 4


def test_ab_blocks_ran_interleaved_in_planned_order(sweeps):
    folder = sweeps["tmp"] / "ab"
    plan = json.loads((folder / "plan.json").read_text())
    ran = sorted((s for s in _steps(folder) if s["state"] == "ok"), key=lambda s: s["start_s"])
    assert [s["block"] for s in ran] == ["0", "0", "1", "1"]
    assert [s["position"] for s in ran] == ["0", "1", "0", "1"]
    planned = {s["id"]: s["arm"] for s in plan["steps"]}
    for block in ("0", "1"):
        arms = [s["arm"] for s in ran if s["block"] == block]
        assert [planned[s["id"]] for s in ran if s["block"] == block] == arms
        assert sorted(arms) == ["NCCL_IB_ADAPTIVE_ROUTING=0", "NCCL_IB_ADAPTIVE_ROUTING=1"]
    for step in ran:  # every rank ran with its arm's knob
        for tsv in (folder / "steps" / step["id"]).glob("rank-*.tsv"):
            assert tsv.read_text().splitlines()[1].endswith("\t" + step["arm"])


def test_ab_results_analyze_per_arm(sweeps):
    folder = sweeps["tmp"] / "ab"
    rows = []
    for path in folder.glob("collected/*.jsonl"):
        lines = [parse_line(line) for line in path.read_text().splitlines()]
        meta = lines[0].metadata
        assert meta["slurm"]["array_job_id"] == sweeps["ab_job"]
        assert meta["slurm"]["array_task_id"] == "0"
        assert [r["node_name"] for r in meta["slurm"]["ranks"]] == ["n1", "n1", "n2", "n2"]
        # hydra (mpiexec -bootstrap slurm) is the PMI server; the runner saw the arm's knob
        assert meta["launcher"] == "mpich" and meta["environment"]["PMI_SIZE"] == "4"
        assert meta["backend"]["mpi_library"].startswith("MPICH")
        # the runner recorded the arm and the fabric as flat keys the analyzer compares by
        assert meta["label"] == meta["sweep"]["arm"] and meta["fabric"] == "ib"
        knob, value = meta["sweep"]["arm"].split("=")
        assert meta["environment"][knob] == value == meta["sweep"]["env"][knob]
        assert meta["environment"]["SLURM_STEP_ID"] == meta["slurm"]["step_id"]
        for rec in lines[1:]:
            if isinstance(rec, Record):
                rows += [(meta["sweep"]["arm"], rec.size_bytes, t) for t in rec.times_s]
    import pandas as pd

    frame = pd.DataFrame(rows, columns=["arm", "size_bytes", "time_s"])
    medians = frame.groupby(["arm", "size_bytes"])["time_s"].median()
    assert len(medians) == 2 * frame["size_bytes"].nunique() and (medians > 0).all()


def test_cyclic_step_runs_where_srun_put_the_ranks(sweeps):
    path = _by_rank_map(sweeps["tmp"] / "gloo")["cyclic"]
    meta = _header(path).metadata
    assert [r["node_name"] for r in meta["slurm"]["ranks"]] == ["n1", "n2", "n1", "n2"]
    assert [r["node"] for r in meta["rank_map"]] == [0, 1, 0, 1]
    assert meta["node_layout"]["kind"] == "cyclic"
    records = [parse_line(line) for line in path.read_text().splitlines()[1:]]
    records = [r for r in records if isinstance(r, Record)]
    assert records and all(r.num_ranks == 4 and r.num_wrong == 0 for r in records)
