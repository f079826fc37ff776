"""`epbench mpirun gen` files driving the MPICH wheel's mpiexec (hydra) on this host.

Hydra's fork launcher starts every "host" of the machinefile here, so two host names pose
as two nodes; each rank's wrapper records where hydra put it (PMI_HOSTNAME, MPI_LOCALRANKID)
and which NIC its env file gave it. Then the runner itself runs from the same files.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from bench.cmd_mpirun import layout, load_topology, rank_rows
from results.schema import Header, Record, parse_line
from tests.conftest import cli_env, run_cli

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(180)]
HOSTS = ("nodeA", "nodeB")
TOPOLOGY = (
    pathlib.Path(__file__).parents[1] / "fixtures" / "topologies" / "two_plane.toml"
).read_text()


def _gen(out: pathlib.Path, rank_map: str) -> None:
    (out / "two.toml").write_text(TOPOLOGY)
    argv = [
        "mpirun",
        "gen",
        "--hosts",
        ",".join(HOSTS),
        "--gpus-per-node",
        "2",
        "--rank-map",
        rank_map,
        "--topology",
        str(out / "two.toml"),
        "-o",
        str(out),
    ]
    proc = run_cli(argv, out.parent, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "mpiexec -f" in proc.stdout and "mpirun --rankfile" in proc.stdout


def _launch(hydra: str, out: pathlib.Path, *command: str) -> subprocess.CompletedProcess:
    cmd = [
        hydra,
        "-launcher",
        "fork",
        "-f",
        str(out / "machinefile"),
        "-n",
        "4",
        "-genv",
        "MASTER_ADDR",
        "127.0.0.1",
        str(out / "epbench-rank.sh"),
        str(out / "env"),
        str(out / "ranks"),
        "--",
        *command,
    ]
    return subprocess.run(
        cmd, env=cli_env(), capture_output=True, text=True, check=False, timeout=150
    )


@pytest.mark.parametrize("rank_map", ["block", "cyclic", "misaligned"])
def test_machinefile_places_ranks_as_the_map_says(hydra, tmp_path, rank_map):
    _gen(tmp_path, rank_map)
    proc = _launch(hydra, tmp_path, "true")
    assert proc.returncode == 0, proc.stderr
    rows = rank_rows(tmp_path / "ranks")
    lay = layout(rank_map, 2, 2, load_topology(str(tmp_path / "two.toml"), 2, 2))
    expected = [
        (
            str(rank),
            HOSTS[node],
            str(local),
            str((local + node) % 2 if rank_map == "misaligned" else local),
            env["UCX_NET_DEVICES"],
        )
        for rank, ((node, local), env) in enumerate(zip(lay.places, lay.envs, strict=True))
    ]
    assert [
        (r["rank"], r["node_name"], r["local_rank"], r["gpu"], r["nic"]) for r in rows
    ] == expected


def test_runner_runs_from_the_generated_machinefile(hydra, tmp_path):
    _gen(tmp_path, "block")
    result = tmp_path / "out.jsonl"
    proc = _launch(
        hydra,
        tmp_path,
        sys.executable,
        "-m",
        "bench",
        "run",
        "allreduce",
        "--backend",
        "mpi",
        "--gpus-per-node",
        "2",
        "-b",
        "1K",
        "-e",
        "4K",
        "-n",
        "3",
        "-w",
        "1",
        "-o",
        str(result),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [parse_line(line) for line in result.read_text().splitlines()]
    header = lines[0]
    assert isinstance(header, Header) and header.metadata["launcher"] == "mpich"
    records = [r for r in lines if isinstance(r, Record)]
    assert records and all(r.num_ranks == 4 and r.num_wrong == 0 for r in records)
