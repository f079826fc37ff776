"""Rank placement, per-rank NIC environment and mpirun/mpiexec host files (no processes)."""

from __future__ import annotations

import pytest

from bench.cmd_mpirun import host_files, machine_runs, placement, rank_env


def test_block_and_cyclic_placement():
    assert placement("block", 2, 2) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert placement("cyclic", 2, 2) == [(0, 0), (1, 0), (0, 1), (1, 1)]
    assert placement("plane-aligned", 3, 4) == placement("block", 3, 4)
    with pytest.raises(ValueError, match="rank map 'spiral' unknown"):
        placement("spiral", 2, 2)


def test_every_placement_is_a_permutation_of_slots():
    for name in ("block", "cyclic", "plane-aligned", "misaligned"):
        places = placement(name, 4, 8)
        assert sorted(places) == [(n, g) for n in range(4) for g in range(8)]


def test_plane_aligned_uses_own_nic_and_misaligned_rotates_gpus_by_node():
    nics = ("mlx5_0", "mlx5_1", "mlx5_2", "mlx5_3")
    assert rank_env("plane-aligned", 3, 1, nics, 4) == {
        "NCCL_IB_HCA": "=mlx5_1",
        "UCX_NET_DEVICES": "mlx5_1:1",
    }
    assert rank_env("misaligned", 0, 1, nics, 4)["NCCL_IB_HCA"] == "=mlx5_1"
    shifted = rank_env("misaligned", 3, 1, nics, 4)
    # device 1 of the rotated order is physical GPU 0, whose NIC is mlx5_0
    assert shifted["CUDA_VISIBLE_DEVICES"] == "3,0,1,2"
    assert shifted["UCX_NET_DEVICES"] == "mlx5_0:1"
    assert rank_env("block", 0, 0, (), 4) == {}


def test_host_files_block():
    files = host_files(["a", "b"], placement("block", 2, 4), 4)
    assert files["hostfile"] == "a slots=4\nb slots=4\n"
    assert files["machinefile"] == "a:4\nb:4\n"
    assert files["rankfile"].splitlines()[5] == "rank 5=b slot=1"


def test_machinefile_of_cyclic_wraps_one_rank_per_line():
    files = host_files(["a", "b", "c"], placement("cyclic", 3, 2), 2)
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
