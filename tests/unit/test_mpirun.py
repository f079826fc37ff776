"""Rank layout, per-rank environment and mpirun/mpiexec host files (no processes)."""

from __future__ import annotations

import pathlib

import pytest

from bench.cmd_mpirun import host_files, layout, load_topology, machine_runs
from bench.errors import UsageError

TWO_PLANES = (
    pathlib.Path(__file__).parents[1] / "fixtures" / "topologies" / "two_plane.toml"
).read_text()


def test_block_and_cyclic_placement():
    assert layout("block", 2, 2).places == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert layout("cyclic", 2, 2).places == [(0, 0), (1, 0), (0, 1), (1, 1)]
    assert layout("plane-aligned", 3, 4).places == layout("block", 3, 4).places
    with pytest.raises(ValueError, match="spiral"):
        layout("spiral", 2, 2)


def test_every_placement_is_a_permutation_of_slots():
    for name in ("block", "cyclic", "plane-aligned", "misaligned"):
        places = layout(name, 4, 8).places
        assert sorted(places) == [(n, g) for n in range(4) for g in range(8)]


def test_without_topology_only_the_gpu_order_is_set():
    assert layout("block", 2, 4).envs == [{}] * 8
    # misaligned: device `local` of node 1 is GPU local+1, so the visible order rotates
    envs = layout("misaligned", 2, 4).envs
    assert envs[:4] == [{}] * 4
    assert envs[5] == {"CUDA_VISIBLE_DEVICES": "1,2,3,0"}


def test_topology_gives_each_rank_the_nic_of_its_gpu(tmp_path):
    path = tmp_path / "two.toml"
    path.write_text(TWO_PLANES)
    cluster = load_topology(str(path), 2, 2)
    aligned = layout("plane-aligned", 2, 2, cluster).envs
    assert [env["UCX_NET_DEVICES"] for env in aligned] == ["mlx5_0:1", "mlx5_1:1"] * 2
    assert aligned[2]["NCCL_IB_HCA"] == "=mlx5_0:1:0:0,mlx5_1:1:1:1"
    assert aligned[2]["NCCL_CROSS_NIC"] == "0" and "CUDA_VISIBLE_DEVICES" not in aligned[2]
    misaligned = layout("misaligned", 2, 2, cluster).envs
    assert misaligned[2]["UCX_NET_DEVICES"] == "mlx5_1:1"
    assert misaligned[2]["CUDA_VISIBLE_DEVICES"] == "1,0"


def test_topology_must_match_the_launch():
    with pytest.raises(UsageError, match="has 8 GPUs per node but the launch runs 4"):
        load_topology("deepseek-mpft", 2, 4)
    with pytest.raises(UsageError, match="topology 'no-such-preset'"):
        load_topology("no-such-preset", 2, 8)
    assert load_topology("deepseek-mpft", 2, 8).num_nodes == 2


def test_host_files_block():
    files = host_files(["a", "b"], layout("block", 2, 4).places, 4)
    assert files["hostfile"] == "a slots=4\nb slots=4\n"
    assert files["machinefile"] == "a:4\nb:4\n"
    assert files["rankfile"].splitlines()[5] == "rank 5=b slot=1"


def test_machinefile_of_cyclic_wraps_one_rank_per_line():
    files = host_files(["a", "b", "c"], layout("cyclic", 3, 2).places, 2)
    assert files["machinefile"] == "a:1\nb:1\nc:1\n"
    assert files["rankfile"].splitlines()[:4] == [
        "rank 0=a slot=0",
        "rank 1=b slot=0",
        "rank 2=c slot=0",
        "rank 3=a slot=1",
    ]


def test_machinefile_refuses_placements_hydra_cannot_express():
    with pytest.raises(ValueError, match="Open MPI rankfile"):
        machine_runs([(0, 0), (1, 0), (1, 1), (0, 1)])
