"""Rank maps: permutations, inverse lookups, validation, and every emitter's round trip."""

from __future__ import annotations

import numpy as np
import pytest

from topologies import (
    deepseek_mpft,
    emit,
    make_cluster,
    make_rank_map,
    problems,
    rank_map_from_text,
    rank_map_to_text,
    validate,
)
from topologies.rankmap import KINDS, RankMap

CLUSTER = deepseek_mpft(num_nodes=4)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("world", [0, 8, 20, 32])
def test_every_kind_is_a_permutation_with_inverse(kind: str, world: int) -> None:
    rmap = make_rank_map(CLUSTER, kind, world)
    validate(CLUSTER, rmap)
    assert rmap.world == (world or 32)
    for r in range(rmap.world):
        assert rmap.rank_of(int(rmap.node[r]), int(rmap.gpu[r])) == r
    table = rmap.table(CLUSTER)
    assert set(table) == {"rank", "node", "local", "gpu", "nic", "plane", "leaf"}
    assert (table["plane"] == table["nic"]).all()  # MPFT: each GPU-NIC pair its own plane


def test_kinds_place_ranks_as_named() -> None:
    block, cyclic = make_rank_map(CLUSTER, "block"), make_rank_map(CLUSTER, "cyclic")
    assert block.node[:9].tolist() == [0] * 8 + [1]
    assert cyclic.node[:5].tolist() == [0, 1, 2, 3, 0] and cyclic.gpu[4] == 1
    mis = make_rank_map(CLUSTER, "misaligned")
    assert mis.gpu[8:10].tolist() == [1, 2]
    assert problems(CLUSTER, block) == [] and problems(CLUSTER, cyclic) == []
    assert "differs between nodes" in problems(CLUSTER, mis)[0]


def test_plane_aligned_puts_local_index_on_its_plane() -> None:
    # GPUs wired to NICs in a scrambled order: plane-aligned must undo it, block must not
    c = make_cluster(
        name="s",
        fabric="multi-plane",
        num_nodes=2,
        gpus_per_node=4,
        nics_per_node=4,
        num_planes=4,
        gpu_nic=(2, 0, 3, 1),
    )
    aligned = make_rank_map(c, "plane-aligned")
    assert (aligned.plane(c) == aligned.local_rank % 4).all()
    assert not (make_rank_map(c, "block").plane(c) == np.arange(8) % 4).all()


def test_explicit_text_round_trip_and_errors() -> None:
    mis = make_rank_map(CLUSTER, "misaligned")
    back = rank_map_from_text(CLUSTER, rank_map_to_text(mis))
    assert np.array_equal(back.node, mis.node) and np.array_equal(back.gpu, mis.gpu)
    with pytest.raises(ValueError, match="not a permutation"):
        rank_map_from_text(CLUSTER, "0 0 0\n1 0 0\n")
    with pytest.raises(ValueError, match="outside"):
        rank_map_from_text(CLUSTER, "0 9 0\n")
    with pytest.raises(ValueError, match="line 2"):
        rank_map_from_text(CLUSTER, "0 0 0\n1 zero 1\n")
    with pytest.raises(ValueError, match="none missing"):
        rank_map_from_text(CLUSTER, "0 0 0\n2 0 1\n")
    with pytest.raises(ValueError, match="do not fit"):
        make_rank_map(CLUSTER, "block", 33)


@pytest.mark.parametrize("kind", KINDS)
def test_env_round_trip(kind: str) -> None:
    rmap = make_rank_map(CLUSTER, kind)
    envs = emit.all_rank_env(CLUSTER, rmap)
    got = emit.placement_from_env(CLUSTER, envs, rmap.local_rank.tolist())
    assert got == list(zip(rmap.gpu.tolist(), rmap.nic(CLUSTER).tolist(), strict=True))
    hca = envs[0]["NCCL_IB_HCA"]
    assert hca.startswith("=mlx5_0:1:0:0,mlx5_1:1:1:1") and hca.count(",") == 7
    assert envs[0]["NCCL_CROSS_NIC"] == "0"
    # NVSHMEM's hca:port:count entries cover every PE of the node, in local-rank order
    for r, env in enumerate(envs):
        entries = [e.split(":") for e in env["NVSHMEM_HCA_PE_MAPPING"].split(",")]
        assert sum(int(n) for _, _, n in entries) == 8
        node = rmap.node == rmap.node[r]
        order = np.argsort(rmap.local_rank[node])
        names = [CLUSTER.nic_name(int(n)) for n in rmap.nic(CLUSTER)[node][order]]
        expanded = [name for name, _, n in entries for _ in range(int(n))]
        assert expanded == names


def test_nvshmem_mapping_groups_ranks_sharing_a_nic() -> None:
    c = make_cluster(name="h", fabric="multi-rail", num_nodes=2, gpus_per_node=8, nics_per_node=4)
    env = emit.rank_env(c, make_rank_map(c, "block"), 3)
    assert env["NVSHMEM_HCA_PE_MAPPING"] == "mlx5_0:1:2,mlx5_1:1:2,mlx5_2:1:2,mlx5_3:1:2"
    assert env["UCX_NET_DEVICES"] == "mlx5_1:1" and env["NCCL_CROSS_NIC"] == "2"


@pytest.mark.parametrize("kind", KINDS)
def test_rankfile_round_trip(kind: str) -> None:
    rmap = make_rank_map(CLUSTER, kind)
    for cores in (1, 4):
        text = emit.openmpi_rankfile(rmap, cores_per_rank=cores)
        back = emit.parse_openmpi_rankfile(text, cores_per_rank=cores)
        assert np.array_equal(back.node, rmap.node) and np.array_equal(back.gpu, rmap.gpu)
    hosts = ["a", "b", "c", "d"]
    text = emit.openmpi_rankfile(rmap, hosts=hosts)
    assert text.splitlines()[0].startswith("rank 0=a slot=")
    back = emit.parse_openmpi_rankfile(text, hosts=hosts)
    assert np.array_equal(back.node, rmap.node)


@pytest.mark.parametrize("kind", KINDS)
def test_slurm_round_trip(kind: str) -> None:
    rmap = make_rank_map(CLUSTER, kind)
    flags = emit.slurm_flags(CLUSTER, rmap)
    if kind == "misaligned":
        assert "--distribution=arbitrary" in flags
        back = emit.parse_slurm_flags(flags, emit.slurm_hostfile(rmap), rmap.gpu.tolist())
    else:
        assert any(f.startswith("--gpu-bind=map_gpu:") for f in flags)
        back = emit.parse_slurm_flags(flags)
    assert np.array_equal(back.node, rmap.node) and np.array_equal(back.gpu, rmap.gpu)


def test_partial_world_and_workstation() -> None:
    ws = make_cluster(name="w", fabric="none", num_nodes=1, gpus_per_node=2, nics_per_node=0)
    rmap = make_rank_map(ws, "block")
    assert emit.rank_env(ws, rmap, 1) == {}  # natural order: CUDA_VISIBLE_DEVICES untouched
    swapped = RankMap(name="x", node=np.array([0, 0]), gpu=np.array([1, 0]))
    assert emit.rank_env(ws, swapped, 1) == {"CUDA_VISIBLE_DEVICES": "1,0"}
    assert emit.opened_gpu(emit.rank_env(ws, swapped, 1), 1) == 0
    assert (rmap.leaf(ws) == -1).all()
    bad = RankMap(name="x", node=np.array([0, 0]), gpu=np.array([1, 1]))
    assert "not a permutation" in problems(ws, bad)[0]
