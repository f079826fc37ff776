"""The rank -> node map: derived from what the launcher says, never from rank arithmetic,
and the same map reaching pingpong's pair, the link model and MoE's node-limited routing
and hierarchical hops."""

from __future__ import annotations

import pathlib
import re

import numpy as np
import pytest

from bench.errors import UsageError
from bench.launch import Whereabouts, node_key, node_layout
from bench.links import run_rank_map
from bench.run_setup import resolve_pair
from collectives import nodemap
from collectives.moe.engine import MoESetup, RoutingSource, make_placement
from collectives.moe.layout import Geometry, RankLayout, hop_rows
from tests.conftest import ROOT

CYCLIC = nodemap.from_keys(["n1", "n2", "n1", "n2"])


def _reports(keys: list[str], hosts: list[str] | None = None, local: list[int] | None = None):
    hosts = hosts or keys
    if local is None:  # the launcher's local rank: index among earlier ranks of the node
        local = [keys[:rank].count(key) for rank, key in enumerate(keys)]
    return [
        Whereabouts(node_key=k, hostname=h, host_local_rank=lr)
        for k, h, lr in zip(keys, hosts, local, strict=True)
    ]


def test_maps_from_keys_block_cyclic_and_arbitrary() -> None:
    assert nodemap.from_keys("aabb").node == nodemap.block(4, 2).node == (0, 0, 1, 1)
    assert (CYCLIC.node, CYCLIC.local_rank, CYCLIC.kind) == ((0, 1, 0, 1), (0, 0, 1, 1), "cyclic")
    odd = nodemap.from_keys("abba")
    assert (odd.kind, odd.ranks_on(1), odd.rank_at(0, 1)) == ("other", (1, 2), 3)
    with pytest.raises(ValueError, match="different numbers of ranks"):
        nodemap.from_keys("aab")


def test_virtual_nodes_split_each_host_in_rank_order() -> None:
    assert nodemap.virtual(nodemap.from_keys("aaaa"), 2).node == (0, 0, 1, 1)
    # hosts a (ranks 0,2,4,6) and b (1,3,5,7), cyclic: virtual nodes {0,2} {1,3} {4,6} {5,7}
    split = nodemap.virtual(nodemap.from_keys("abababab"), 2)
    assert split.node == (0, 1, 0, 1, 2, 3, 2, 3) and split.virtual
    with pytest.raises(ValueError, match="cannot span hosts"):
        nodemap.virtual(nodemap.from_keys("aabb"), 4)


def test_node_key_prefers_the_launchers_node() -> None:
    slurm = {"SLURM_STEP_ID": "0", "SLURM_NODEID": "1", "SLURMD_NODENAME": "n2"}
    assert node_key(slurm, "vm") == "slurm:n2"
    assert node_key({"SLURM_STEP_ID": "0", "SLURM_NODEID": "1"}, "vm") == "slurm:1"
    assert node_key({"SLURM_NODEID": "1", "PMI_HOSTNAME": "nodeB"}, "vm") == "hydra:nodeB"
    assert node_key({"SLURM_JOB_ID": "7"}, "vm") == "host:vm"


def test_layout_follows_the_launcher_not_rank_arithmetic() -> None:
    nodes = node_layout(_reports(["n1", "n2", "n1", "n2"]), None)
    assert nodes.node == (0, 1, 0, 1) and not nodes.virtual
    assert node_layout(_reports(["n1", "n2", "n1", "n2"]), 2).node == (0, 1, 0, 1)
    # two launcher nodes may share one host (the local test cluster, hydra's fork launcher)
    assert node_layout(_reports(["a", "b"], hosts=["vm", "vm"]), None).num_nodes == 2


@pytest.mark.parametrize(
    ("reports", "message"),
    [
        (_reports(["n1", "n1"], hosts=["h1", "h2"]), "holds ranks on hosts h1 and h2"),
        (_reports(["n1", "n1"], local=[0, 0]), "ranks 0 and 1 on n1 both have local rank 0"),
        (_reports(["n1", "n1", "n2"]), "different numbers of ranks"),
    ],
)
def test_impossible_layouts_are_one_line_errors(reports, message) -> None:
    with pytest.raises(UsageError, match=message):
        node_layout(reports, None)


def test_pingpong_pairs_use_the_real_nodes() -> None:
    assert resolve_pair("same-node", CYCLIC) == (0, 2)
    assert resolve_pair("cross-node", CYCLIC) == (0, 1)
    assert resolve_pair("cross-node", nodemap.block(4, 2)) == (0, 2)
    with pytest.raises(UsageError, match="needs 2 nodes"):
        resolve_pair("cross-node", nodemap.block(4, 4))


def test_link_model_rank_map_is_the_launch_or_agrees_with_it() -> None:
    launch = run_rank_map("deepseek-mpft", "launch", CYCLIC)
    assert launch.node.tolist() == [0, 1, 0, 1] and launch.gpu.tolist() == [0, 0, 1, 1]
    assert run_rank_map("deepseek-mpft", "cyclic", CYCLIC).node.tolist() == [0, 1, 0, 1]
    with pytest.raises(
        UsageError, match=r"puts rank 1 on a node with ranks 0,1,2,3 but .* ranks 1,3 \(cyclic"
    ):
        run_rank_map("deepseek-mpft", "block", CYCLIC)
    # virtual nodes of 2 on 8-GPU nodes: `block` would pack all four ranks on one node
    with pytest.raises(UsageError, match="--rank-map launch"):
        run_rank_map("deepseek-mpft", "block", nodemap.block(4, 2))


def _geometry(nodes: nodemap.NodeMap) -> Geometry:
    return Geometry(
        world=nodes.world, local_world=nodes.local_world, slots_per_rank=2, rank_node=nodes.node
    )


def test_moe_geometry_uses_the_map() -> None:
    geo = _geometry(CYCLIC)
    assert geo.node_of(1) == 1 and geo.nodes_of(np.array([3, -1, 2])).tolist() == [1, -1, 0]
    assert geo.rank_grid.tolist() == [[0, 2], [1, 3]]
    # a token for rank 1 (slots 2-3) and rank 2 (slots 4-5): nodes 1 and 0
    lay = RankLayout(geometry=geo, topk_slot=np.array([[2, 4]]))
    assert lay.is_token_in_node.tolist() == [[True, True]]
    assert lay.hier_counts_message()[:, :3].tolist() == [[1, 0, 1], [1, 1, 0]]


def test_hierarchical_stage_one_goes_to_the_same_local_index_on_each_real_node() -> None:
    setup = MoESetup(num_tokens=64, hidden=128, num_experts=8, top_k=2, algo="hierarchical")
    placement = make_placement(setup, 4)
    geo = Geometry(
        world=4, local_world=2, slots_per_rank=placement.slots_per_rank, rank_node=CYCLIC.node
    )
    rows = hop_rows(RoutingSource(setup, geo, placement).traffic(), "hierarchical")
    # rank 0 (node 0, local 0) may send only to itself or to rank 1 (node 1, local 0) in
    # stage 1, and forwards inside node 0 (ranks 0, 2): never to rank 3
    assert rows[0, 3] == 0 and rows[0, 1] > 0 and rows[0, 2] > 0


def test_node_limited_routing_groups_experts_by_the_real_node() -> None:
    setup = MoESetup(num_tokens=256, hidden=128, num_experts=16, top_k=4, node_limit=1)
    placement = make_placement(setup, 8)
    nodes = nodemap.from_keys("abababab")
    geo = Geometry(
        world=8, local_world=4, slots_per_rank=placement.slots_per_rank, rank_node=nodes.node
    )
    source = RoutingSource(setup, geo, placement)
    expert_rank = np.repeat(np.arange(8), 2)  # contiguous: experts 2r, 2r+1 on rank r
    for rank in range(8):
        idx = source.routing(rank).topk_idx
        token_nodes = geo.node_array[expert_rank[idx]]
        assert (token_nodes == token_nodes[:, :1]).all()  # node limit 1 on the real nodes
        # ranks in blocks would have mixed nodes 0 and 1 (ranks r and r+1 differ)
        assert not (expert_rank[idx] // 4 == expert_rank[idx][:, :1] // 4).all()


# rank -> node by arithmetic (`rank // local_world`, `node * local_world + local`, ...);
# dividing a world size (`world // local_world`, `args.np % local_world`) is fine
ARITHMETIC = re.compile(
    r"([\w\]\)]+)\s*(//|%)\s*(?:\w+\.)*(local_world|per_node|gpus_per_node|lw)\b"
)
SCALING = re.compile(
    r"\*\s*(?:\w+\.)*local_world\s*\+|torch\.div\(\s*\w+,\s*(?:lw|(?:\w+\.)*local_world)"
)


def test_no_rank_arithmetic_outside_the_node_map() -> None:
    offenders = []
    for folder in ("bench", "collectives"):
        for path in sorted(pathlib.Path(ROOT, folder).rglob("*.py")):
            if path.name == "nodemap.py":
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                found = [
                    m for m in ARITHMETIC.finditer(line) if not m.group(1).endswith(("world", "np"))
                ]
                if found or SCALING.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []
