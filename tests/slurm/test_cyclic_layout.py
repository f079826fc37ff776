"""Ranks placed cyclically by a real launcher: `srun --distribution=cyclic` on the local
Slurm cluster (nodes n1, n2; each with its own host name where the recipe can give it one)
and MPICH's hydra with a round-robin machinefile. The runner must take the rank -> node
map from the launcher, record it, and hand it to pingpong's pair choice, the link model and
the MoE ops' node-limited routing and hierarchical hops (checked against the reference).
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from results.schema import Header, Record, parse_line
from tests.conftest import cli_env

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(300)]

TWO_NODES = """\
name = "two-by-two"
fabric = "multi-plane"
num_nodes = 2
gpus_per_node = 2
nics_per_node = 2
num_planes = 2
"""
FAST = ["-n", "2", "-w", "1", "--blocks", "1"]
MOE = ["--num-tokens", "32", "--hidden", "256", "--num-experts", "8", "--top-k", "2"]


def _read(path: pathlib.Path) -> tuple[Header, list[Record]]:
    lines = [parse_line(line) for line in path.read_text().splitlines()]
    assert isinstance(lines[0], Header)
    return lines[0], [r for r in lines if isinstance(r, Record)]


def _srun(cluster, tmp: pathlib.Path, name: str, *args: str) -> tuple[Header, list[Record]]:
    out = tmp / f"{name}.jsonl"
    env = {**cluster.env, "MASTER_ADDR": "127.0.0.1"}
    cmd = ["srun", "-N2", "-n4", "--distribution=cyclic", "--mpi=none", "--kill-on-bad-exit=1"]
    cmd += [sys.executable, "-m", "bench", "run", *args, *FAST, "-o", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return _read(out)


def _nodes(header: Header) -> list[int]:
    return [row["node"] for row in header.metadata["rank_map"]]


def test_srun_cyclic_layout_reaches_the_header_and_pingpong(slurm_cluster, tmp_path) -> None:
    (tmp_path / "two.toml").write_text(TWO_NODES)
    header, records = _srun(
        slurm_cluster, tmp_path, "pingpong", "pingpong", "--backend", "gloo", "-b", "64",
        "-e", "1K", "-f", "16", "--pair", "cross-node", "--topology", str(tmp_path / "two.toml"),
    )  # fmt: skip
    meta = header.metadata
    assert _nodes(header) == [0, 1, 0, 1]
    assert [row["local_rank"] for row in meta["rank_map"]] == [0, 0, 1, 1]
    assert meta["node_layout"]["kind"] == "cyclic" and meta["node_layout"]["source"] == "slurm"
    hosts = [row["host"] for row in meta["rank_map"]]
    assert hosts[0] == hosts[2] and hosts[1] == hosts[3]
    if meta["num_hosts"] == 2:  # the recipe gave each node its own host name
        assert hosts[:2] == ["n1", "n2"]
    assert records and all(r.num_wrong == 0 for r in records)
    # cross-node is rank 1 here (rank 2 shares rank 0's node): all bytes leave the node
    assert {tuple(r.extra["pair"]) for r in records} == {(0, 1)}
    assert all(r.extra["links"]["intra_node_bytes"] == 0 for r in records)
    assert all(r.extra["links"]["scale_out_link_bytes"] > 0 for r in records)


def test_srun_cyclic_moe_hierarchical_is_correct(slurm_cluster, tmp_path) -> None:
    (tmp_path / "two.toml").write_text(TWO_NODES)
    header, records = _srun(
        slurm_cluster, tmp_path, "moe", "moe", "--backend", "gloo", "--gpus-per-node", "2",
        "--algo", "hierarchical", "--node-limit", "1", *MOE,
        "--topology", str(tmp_path / "two.toml"), "--rank-map", "cyclic",
    )  # fmt: skip
    assert _nodes(header) == [0, 1, 0, 1] and header.metadata["node_layout"]["virtual"]
    assert records and all(r.num_wrong == 0 for r in records)
    assert records[0].extra["moe"]["node_limit_in_force"] == 1
    assert records[0].extra["links"]["scale_out_link_bytes"] > 0


@pytest.mark.mpi
def test_mpiexec_round_robin_hosts_give_a_cyclic_layout(hydra, tmp_path) -> None:
    (tmp_path / "machinefile").write_text("nodeA:1\nnodeB:1\n")  # hydra deals round-robin
    out = tmp_path / "moe.jsonl"
    cmd = [hydra, "-launcher", "fork", "-f", str(tmp_path / "machinefile"), "-n", "4"]
    # no MASTER_ADDR: the mpi backend needs none, even across hosts
    cmd += [sys.executable, "-m", "bench", "run", "moe", "--backend", "mpi"]
    cmd += ["--algo", "hierarchical", "--node-limit", "1", *MOE, *FAST, "-o", str(out)]
    proc = subprocess.run(
        cmd, env=cli_env(), capture_output=True, text=True, timeout=240, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    header, records = _read(out)
    assert _nodes(header) == [0, 1, 0, 1] and header.metadata["node_layout"]["kind"] == "cyclic"
    assert records and all(r.num_wrong == 0 for r in records)
