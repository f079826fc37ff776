"""One GPU-selection policy (docs/LAUNCHING.md, "GPU selection"): every GPU of a node stays
visible and a rank opens device `local rank`; the environment that topologies.emit gives a
rank reorders CUDA_VISIBLE_DEVICES so that this device is the rank map's GPU. The per-rank
wrapper that srun/mpiexec start (slurm/epbench-rank.sh) must land every rank on the same GPU
as the emitter says, for every map kind."""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

from bench.cmd_mpirun import WRAPPER, layout, rank_rows, write_env_files
from topologies import emit, make_cluster, make_rank_map
from topologies.rankmap import KINDS

CLUSTER = make_cluster(
    name="two-by-four", fabric="multi-plane", num_nodes=2, gpus_per_node=4, nics_per_node=4,
    num_planes=4,
)  # fmt: skip


def _wrapper_gpus(tmp: pathlib.Path, envs: list[dict[str, str]], local: list[int]) -> list[int]:
    """Start the real wrapper once per rank, as Slurm would (SLURM_PROCID/SLURM_LOCALID)."""
    write_env_files(tmp / "env", envs)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PMI", "OMPI_"))}
    for var in ("RANK", "LOCAL_RANK", "MPI_LOCALRANKID", "CUDA_VISIBLE_DEVICES"):
        base.pop(var, None)
    for rank, local_rank in enumerate(local):
        env = {**base, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(local_rank)}
        cmd = ["bash", str(WRAPPER), str(tmp / "env"), str(tmp / "ranks"), "--", "true"]
        subprocess.run(cmd, env=env, check=True, timeout=30)
    return [int(row["gpu"]) for row in rank_rows(tmp / "ranks")]


@pytest.mark.parametrize("kind", KINDS)
def test_emitter_and_wrapper_put_each_rank_on_the_maps_gpu(tmp_path, kind) -> None:
    rmap = make_rank_map(CLUSTER, kind)
    local = rmap.local_rank.tolist()
    envs = emit.all_rank_env(CLUSTER, rmap)
    emitted = [emit.opened_gpu(env, lr) for env, lr in zip(envs, local, strict=True)]
    assert emitted == rmap.gpu.tolist()
    assert _wrapper_gpus(tmp_path, envs, local) == rmap.gpu.tolist()
    # `epbench mpirun gen` / `slurm gen` write exactly the emitter's environment
    assert layout(kind, 2, 4, CLUSTER).envs == envs


def test_natural_order_leaves_the_schedulers_setting_alone() -> None:
    envs = emit.all_rank_env(CLUSTER, make_rank_map(CLUSTER, "block"))
    assert all("CUDA_VISIBLE_DEVICES" not in env for env in envs)
    misaligned = emit.all_rank_env(CLUSTER, make_rank_map(CLUSTER, "misaligned"))
    assert [env.get("CUDA_VISIBLE_DEVICES") for env in misaligned[3:5]] == [None, "1,2,3,0"]
    with pytest.raises(ValueError, match="local rank 2"):
        emit.opened_gpu({"CUDA_VISIBLE_DEVICES": "3,1"}, 2)
