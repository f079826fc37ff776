"""Size parsing and launcher detection (pure: environments are passed in as dicts)."""

from __future__ import annotations

import pytest

from bench.errors import UsageError
from bench.launch import detect, expand_hostlist, launch_info
from bench.sizes import parse_size, sweep


def test_parse_size_binary_suffixes() -> None:
    assert parse_size("8") == 8
    assert parse_size("1K") == 1024 and parse_size("128M") == 128 << 20
    assert parse_size("1G") == 1 << 30 and parse_size("1.5K") == 1536
    assert parse_size("4KiB") == 4096


@pytest.mark.parametrize("text", ["", "abc", "1Q", "-5", "0.3"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_size(text)


def test_sweep_factor_and_step() -> None:
    assert sweep(1024, 8192) == [1024, 2048, 4096, 8192]
    assert sweep(1024, 8192, factor=4) == [1024, 4096]
    assert sweep(100, 400, step=100) == [100, 200, 300, 400]
    with pytest.raises(UsageError, match="smaller than -b"):
        sweep(100, 10)
    with pytest.raises(UsageError, match="greater than 1"):
        sweep(1, 10, factor=1.0)
    with pytest.raises(UsageError, match="not both"):
        sweep(1, 10, factor=2, step=1)


def test_detect_order_torchrun_mpi_slurm() -> None:
    torchrun = {
        "RANK": "3",
        "WORLD_SIZE": "8",
        "LOCAL_RANK": "3",
        "LOCAL_WORLD_SIZE": "4",
        "MASTER_ADDR": "h0",
        "MASTER_PORT": "1234",
        "SLURM_PROCID": "0",
        "SLURM_NTASKS": "8",
        "SLURM_STEP_ID": "0",
    }
    d = detect(torchrun)
    assert (d.launcher, d.rank, d.world, d.host_local_world) == ("torchrun", 3, 8, 4)
    ompi = {
        "OMPI_COMM_WORLD_RANK": "5",
        "OMPI_COMM_WORLD_SIZE": "8",
        "OMPI_COMM_WORLD_LOCAL_RANK": "1",
        "OMPI_COMM_WORLD_LOCAL_SIZE": "4",
    }
    d = detect(ompi)
    assert (d.launcher, d.rank, d.host_local_rank) == ("openmpi", 5, 1)
    mpich = {"PMI_RANK": "1", "PMI_SIZE": "2", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "2"}
    assert detect(mpich).launcher == "mpich"
    slurm = {
        "SLURM_PROCID": "6",
        "SLURM_NTASKS": "8",
        "SLURM_LOCALID": "2",
        "SLURM_STEP_ID": "0",
        "SLURM_JOB_ID": "42",
        "SLURM_STEP_NODELIST": "n[1-2]",
        "SLURM_STEP_TASKS_PER_NODE": "4(x2)",
    }
    d = detect(slurm)
    assert (d.launcher, d.rank, d.host_local_rank, d.host_local_world) == ("slurm", 6, 2, 4)
    assert d.master_addr == "n1" and 20000 <= (d.master_port or 0) < 30000
    assert detect({}).launcher == "single"
    # batch script (no step) is not a launch
    assert detect({"SLURM_PROCID": "0", "SLURM_NTASKS": "4"}).launcher == "single"


def test_expand_hostlist() -> None:
    assert expand_hostlist("n[1-3,5]") == ["n1", "n2", "n3", "n5"]
    assert expand_hostlist("gpu[01-02],login") == ["gpu01", "gpu02", "login"]
    assert expand_hostlist("a,b") == ["a", "b"]


def test_virtual_nodes_before_the_layout_is_known() -> None:
    found = detect(
        {
            "RANK": "5",
            "WORLD_SIZE": "8",
            "LOCAL_RANK": "5",
            "LOCAL_WORLD_SIZE": "8",
            "MASTER_ADDR": "x",
            "MASTER_PORT": "1",
        }
    )
    info = launch_info(found, gpus_per_node=4, timeout_s=5)
    assert (info.node, info.local_rank, info.num_nodes, info.host_local_rank) == (1, 1, 2, 5)
    with pytest.raises(UsageError, match="does not divide"):
        launch_info(found, gpus_per_node=3, timeout_s=5)


def test_master_addr_is_needed_only_for_a_rendezvous() -> None:
    # rank 3 of 4 under Hydra, two ranks on this host: the ranks span hosts
    env = {"PMI_RANK": "3", "PMI_SIZE": "4", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "2"}
    found = detect(env)
    with pytest.raises(UsageError, match="MASTER_ADDR is not set"):
        launch_info(found, gpus_per_node=None, timeout_s=5)
    info = launch_info(found, gpus_per_node=None, timeout_s=5, rendezvous=False)
    assert (info.rank, info.world, info.host_local_rank) == (3, 4, 1)
