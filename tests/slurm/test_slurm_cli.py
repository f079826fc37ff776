"""`epbench slurm` on bad input (one line each), shellcheck on every script it writes, and the
partition check against the real local cluster."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess

import pytest

from bench.cmd_slurm import _run_parser_accepts
from tests.conftest import ROOT, run_cli

SPEC = """\
[sweep]
name = "t"
repeats = 2
blocks_per_task = 1
partition = "debug"
time_limit = "00:10:00"
sbatch = ["--exclusive", "--qos=normal"]

[cluster]
nodes = [1, 2]
gpus_per_node = 2
topology = "two.toml"

[[op]]
name = "alltoall"
args = ["--redop", "max"]

[matrix]
backends = ["nccl", "mpi", "gloo", "torch-nccl"]
codecs = ["none", "fp8"]

[compare]
rank_map = ["plane-aligned", "misaligned", "cyclic"]
pxn = ["on", "off"]
"""


TOPOLOGY = (
    pathlib.Path(__file__).parents[1] / "fixtures" / "topologies" / "two_plane.toml"
).read_text()


def _write_spec(folder: pathlib.Path, text: str = SPEC) -> None:
    (folder / "t.toml").write_text(text)
    (folder / "two.toml").write_text(TOPOLOGY)


def _epbench(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return run_cli(argv, ROOT, timeout=60, env=env)


def _one_line_error(proc: subprocess.CompletedProcess, text: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert text in proc.stderr, proc.stderr


def test_gen_writes_scripts_that_pass_shellcheck(tmp_path):
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (scripts/install-system-deps.sh adds it)")
    _write_spec(tmp_path)
    proc = _epbench("slurm", "gen", str(tmp_path / "t.toml"), "-o", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    scripts = sorted((tmp_path / "out" / "jobs").glob("*.sbatch"))
    assert [s.name for s in scripts] == ["n1g2.sbatch", "n2g2.sbatch"]
    text = scripts[1].read_text()
    for line in (
        "#SBATCH --array=0-15",
        "#SBATCH --gres=gpu:2",
        "#SBATCH --partition=debug",
        "#SBATCH --time=00:10:00",
        "#SBATCH --exclusive",
        "set -euo pipefail",
    ):
        assert line + "\n" in text
    assert '--distribution="$distribution"' in text and "--gpu-bind=none" in text
    # the block order is drawn at random (no seed): the first step may be any arm
    assert re.search(r"run_step n2g2-b000-s0 (pmi2|none) (block|cyclic) ", text)
    assert "--mpi=pmi2" not in text and " pmi2 cyclic cyclic-n2g2 " in text
    assert "--backend nccl --gpus-per-node 2 --redop max --codec fp8 " in text
    assert ("--rank-map misaligned" in text) == _run_parser_accepts("--rank-map")
    label = "--label rank_map=misaligned,NCCL_PXN_DISABLE="
    assert (label in text) == _run_parser_accepts("--label")
    assert (f"--topology {tmp_path}/two.toml" in text) == _run_parser_accepts("--topology")
    statics = [ROOT / "slurm" / "local-cluster.sh", ROOT / "bench/templates/epbench-rank.sh"]
    check = subprocess.run(
        ["shellcheck", "-s", "bash", *map(str, scripts + statics)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout


def _env_file(path: pathlib.Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def test_env_files_follow_the_rank_map(tmp_path):
    _write_spec(tmp_path)
    assert _epbench("slurm", "gen", str(tmp_path / "t.toml"), "-o", str(tmp_path)).returncode == 0
    env = tmp_path / "env"
    # rank 2 = node 1, local 0: aligned uses GPU 0 and its NIC; misaligned rotates to GPU 1
    aligned = _env_file(env / "plane-aligned-n2g2" / "rank-2.env")
    assert aligned["UCX_NET_DEVICES"] == "mlx5_0:1" and "CUDA_VISIBLE_DEVICES" not in aligned
    assert aligned["NCCL_IB_HCA"] == "=mlx5_0:1:0:0,mlx5_1:1:1:1"
    misaligned = _env_file(env / "misaligned-n2g2" / "rank-2.env")
    assert misaligned["UCX_NET_DEVICES"] == "mlx5_1:1"
    assert misaligned["CUDA_VISIBLE_DEVICES"] == "1,0"
    # cyclic: rank 1 is node 1, local 0
    assert _env_file(env / "cyclic-n2g2" / "rank-1.env")["UCX_NET_DEVICES"] == "mlx5_0:1"


def test_gen_refuses_a_folder_that_holds_a_sweep(tmp_path):
    _write_spec(tmp_path)
    assert _epbench("slurm", "gen", str(tmp_path / "t.toml"), "-o", str(tmp_path)).returncode == 0
    proc = _epbench("slurm", "gen", str(tmp_path / "t.toml"), "-o", str(tmp_path))
    _one_line_error(proc, "already holds a sweep (plan.json)")


def test_topology_that_does_not_match_the_shape_is_refused(tmp_path):
    _write_spec(tmp_path, SPEC.replace("gpus_per_node = 2", "gpus_per_node = 4"))
    proc = _epbench("slurm", "gen", str(tmp_path / "t.toml"), "-o", str(tmp_path / "out"))
    _one_line_error(proc, "two.toml' has 2 GPUs per node but the launch runs 4 ranks per node")


def test_hydra_launch_refuses_cyclic_maps_and_renders_mpiexec(tmp_path):
    _write_spec(tmp_path, SPEC.replace("[cluster]\n", '[cluster]\nmpi = "hydra"\n'))
    proc = _epbench("slurm", "gen", str(tmp_path / "t.toml"), "-o", str(tmp_path / "a"))
    _one_line_error(proc, "mpi = 'hydra' places ranks in blocks, not 'cyclic'")
    text = SPEC.replace("[cluster]\n", '[cluster]\nmpi = "hydra"\n').replace('"cyclic"', "")
    _write_spec(tmp_path, text.replace('"misaligned", ]', '"misaligned"]'))
    proc = _epbench("slurm", "gen", str(tmp_path / "t.toml"), "-o", str(tmp_path / "b"))
    assert proc.returncode == 0, proc.stderr
    script = (tmp_path / "b" / "jobs" / "n2g2.sbatch").read_text()
    assert "-bootstrap slurm -n 4 -ppn 2" in script and " hydra block " in script


def test_unknown_key_is_one_line_naming_file_line_and_key(tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text(SPEC.replace("gpus_per_node = 2", "gpus_per_nod = 2"))
    proc = _epbench("slurm", "gen", str(spec), "-o", str(tmp_path / "out"))
    _one_line_error(proc, f"{spec}:11: [cluster] gpus_per_nod: unknown key; known keys:")


def test_missing_spec_and_foreign_folder(tmp_path):
    _one_line_error(
        _epbench("slurm", "gen", str(tmp_path / "no.toml"), "-o", str(tmp_path)),
        "cannot read sweep spec",
    )
    _one_line_error(_epbench("slurm", "collect", str(tmp_path)), "plan.json unreadable")


def test_submit_without_slurm_says_so(tmp_path):
    _write_spec(tmp_path)
    env = {"PATH": str(tmp_path / "empty")}
    proc = _epbench(
        "slurm", "gen", str(tmp_path / "t.toml"), "-o", str(tmp_path), "--submit", env=env
    )
    _one_line_error(proc, "sinfo not found on PATH")
    assert (tmp_path / "jobs" / "n2g2.sbatch").exists()  # the scripts are still written


def test_table_names_missing_ranks(tmp_path):
    header = "rank\tlocal_rank\tnode_id\thost\tnode_name\tgpu\tcuda_visible\tnic\n"
    for rank in (0, 1, 3):
        (tmp_path / f"rank-{rank}.tsv").write_text(
            header + f"{rank}\t{rank % 2}\t0\th\tn{rank // 2}\t0\tall\t-\n"
        )
    proc = _epbench("slurm", "table", str(tmp_path), "--ranks", "4")
    assert proc.returncode == 3 and "missing [2]" in proc.stderr, proc.stderr


@pytest.mark.slurm
@pytest.mark.parametrize(("nodes", "tasks"), [(3, 2), (2, 3)])
def test_submit_refuses_more_than_the_partition_has(slurm_cluster, tmp_path, nodes, tasks):
    text = SPEC.replace("nodes = [1, 2]", f"nodes = {nodes}").replace(
        "gpus_per_node = 2", f"gpus_per_node = {tasks}"
    )
    (tmp_path / "t.toml").write_text(text.replace('topology = "two.toml"\n', ""))
    env = {"SLURM_CONF": slurm_cluster.env["SLURM_CONF"]}
    proc = _epbench(
        "slurm", "gen", str(tmp_path / "t.toml"), "-o", str(tmp_path), "--submit", env=env
    )
    _one_line_error(
        proc, f"{nodes} nodes x {tasks} tasks do not fit partition debug (2 nodes of 2 CPUs)"
    )
    assert not (tmp_path / "jobs.json").exists()


@pytest.mark.parametrize("name", ["ib-adaptive-routing.toml", "rank-map-alignment.toml"])
def test_example_specs_generate_clean_scripts(tmp_path, name):
    spec = ROOT / "slurm" / "examples" / name
    proc = _epbench("slurm", "gen", str(spec), "-o", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    scripts = [str(p) for p in (tmp_path / "jobs").glob("*.sbatch")]
    rank3 = sorted((tmp_path / "env").glob("*-n*g8/rank-3.env"))
    assert scripts and rank3 and all("UCX_NET_DEVICES=mlx5_3:1" in p.read_text() for p in rank3)
    if shutil.which("shellcheck"):
        check = subprocess.run(
            ["shellcheck", "-s", "bash", *scripts], capture_output=True, text=True, check=False
        )
        assert check.returncode == 0, check.stdout
