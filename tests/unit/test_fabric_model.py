"""The fabric model against closed forms and against what [P] published."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from topologies import (
    Uniform,
    deepseek_mpft,
    deepseek_mrft,
    link_class_bytes,
    link_rate_bound_s,
    make_cluster,
    make_rank_map,
    route_matrix,
    simulate,
)
from topologies.maxmin import completion_times, max_min_rates
from topologies.network import build_paths, make_layout

NIC_BPS = 50e9


def tree(num_nodes: int, radix: int = 16, oversubscription: float = 1.0, routing: str = "adaptive",
         scale_out: str = "ib") -> object:  # fmt: skip
    """One GPU and one NIC per node on a two-layer fat-tree."""
    return make_cluster(name="t", fabric="fat-tree", num_nodes=num_nodes, gpus_per_node=1,
                        nics_per_node=1, switch_radix=radix, oversubscription=oversubscription,
                        routing=routing, scale_out=scale_out)  # fmt: skip


def shift_matrix(world: int, shift: int, size: float) -> np.ndarray:
    m = np.zeros((world, world))
    m[np.arange(world), (np.arange(world) + shift) % world] = size
    return m


def test_k_flows_on_one_link_get_one_kth() -> None:
    # flows 0..k-1 all cross link 0; flow k crosses only link 1
    for k in (1, 2, 3, 7):
        fptr = np.arange(k + 2, dtype=np.int64)
        flinks = np.array([0] * k + [1], dtype=np.int32)
        rates = max_min_rates(fptr, flinks, np.ones(1), np.array([10.0, 4.0]))
        assert rates[:k] == pytest.approx(10.0 / k) and rates[k] == pytest.approx(4.0)


def test_max_min_is_not_proportional_sharing() -> None:
    # classic example: flow A on links 0 and 1, flow B on 0, flow C on 1 (cap 1 and 2)
    fptr = np.array([0, 2, 3, 4], dtype=np.int64)
    flinks = np.array([0, 1, 0, 1], dtype=np.int32)
    rates = max_min_rates(fptr, flinks, np.ones(1), np.array([1.0, 2.0]))
    assert rates.tolist() == pytest.approx([0.5, 0.5, 1.5])
    # when A and B finish, C takes the whole link: 1.5 B/s until t=2, then 2 B/s
    finish, events = completion_times(fptr, flinks, np.ones(1), np.array([1.0, 2.0]),
                                      np.array([1.0, 1.0, 4.0]))  # fmt: skip
    assert finish.tolist() == pytest.approx([2.0, 2.0, 2.5]) and events == 2


def test_k_senders_into_one_nic_share_it() -> None:
    c = tree(16)
    rmap = make_rank_map(c, "block")
    for k in (1, 2, 5):
        m = np.zeros((16, 16))
        m[1 : k + 1, 0] = 1e9
        p = simulate(c, rmap, m)
        assert p.transfer_s == pytest.approx(k * 1e9 / NIC_BPS)
        assert k == 1 or p.bottleneck.startswith("nic-in node0")


@pytest.mark.parametrize("routing", ["adaptive", "static"])
def test_permutation_on_nonblocking_tree_runs_at_line_rate(routing: str) -> None:
    c = tree(64, routing=routing)  # 8 down / 8 up ports, 8 leaves
    rmap = make_rank_map(c, "block")
    for shift in (1, 8, 27):
        p = simulate(c, rmap, shift_matrix(64, shift, 1e9))
        assert p.transfer_s == pytest.approx(1e9 / NIC_BPS), (routing, shift)


def test_uniform_alltoall_is_nic_bound_on_a_nonblocking_tree() -> None:
    c = tree(32)
    rmap = make_rank_map(c, "block")
    p = simulate(c, rmap, Uniform(world=32, bytes_per_pair=1e6), aggregate="flows")
    assert p.transfer_s == pytest.approx(31 * 1e6 / NIC_BPS)
    assert p.link_bound_s == pytest.approx(p.transfer_s)


def test_uniform_alltoall_is_bisection_bound_when_oversubscribed() -> None:
    c = tree(24, radix=8, oversubscription=3.0)  # 6 down, 2 up ports, 4 leaves
    assert (c.down_ports, c.up_ports, c.num_leaves) == (6, 2, 4)
    rmap = make_rank_map(c, "block")
    b = 1e6
    p = simulate(c, rmap, Uniform(world=24, bytes_per_pair=b), aggregate="flows")
    uplink_bound = 6 * 18 * b / (2 * NIC_BPS)  # leaf's cross-leaf bytes over its uplinks
    assert uplink_bound > 23 * b / NIC_BPS
    assert p.transfer_s == pytest.approx(uplink_bound)
    assert p.bottleneck.startswith("leaf-up")
    assert link_rate_bound_s(c, rmap, Uniform(world=24, bytes_per_pair=b).matrix()) == (
        pytest.approx(uplink_bound)
    )


def test_orbit_aggregation_is_exact() -> None:
    cases = [deepseek_mpft(num_nodes=4), deepseek_mrft(num_nodes=8), tree(32, radix=8),
             make_cluster(name="r", fabric="multi-plane", num_nodes=4, gpus_per_node=8,
                          nics_per_node=8, num_planes=8, forwarding="receiver")]  # fmt: skip
    for c in cases:
        rmap = make_rank_map(c, "block")
        u = Uniform(world=rmap.world, bytes_per_pair=3e6)
        a, b = simulate(c, rmap, u), simulate(c, rmap, u, aggregate="flows")
        assert a.method == "orbits" and b.method == "flows"
        assert a.time_s == pytest.approx(b.time_s, rel=1e-9)
        for key, value in b.class_bytes.items():
            assert a.class_bytes[key] == pytest.approx(value, rel=1e-9), key


def test_planes_never_exchange_traffic_through_switches() -> None:
    c = deepseek_mpft(num_nodes=64)  # two leaves per plane, spines per plane
    rmap = make_rank_map(c, "misaligned", 64 * 8)
    layout = make_layout(c, "ecmp")
    src, dst = np.nonzero(~np.eye(rmap.world, dtype=bool))
    paths = build_paths(layout, rmap, src, dst)
    plane, kind = layout.plane(), layout.kind()
    scale_out = kind[paths.flinks] >= 2
    flow = np.repeat(np.arange(src.size), np.diff(paths.fptr))
    planes = plane[paths.flinks][scale_out]
    lo = np.full(src.size, 99)
    hi = np.full(src.size, -1)
    np.minimum.at(lo, flow[scale_out], planes)
    np.maximum.at(hi, flow[scale_out], planes)
    inter = ~paths.intra_node
    assert (lo[inter] == hi[inter]).all()  # every inter-node flow stays in one plane
    assert paths.forwarded[paths.cross_plane].all()


def test_link_classes_account_for_forwarding() -> None:
    c = deepseek_mpft(num_nodes=2)
    rmap = make_rank_map(c, "block")
    m = Uniform(world=16, bytes_per_pair=1.0).matrix()
    cls = link_class_bytes(c, rmap, m)
    assert cls["intra_node_bytes"] == 2 * 8 * 7
    assert cls["scale_out_same_plane_bytes"] == 2 * 8
    assert cls["scale_out_cross_plane_bytes"] == cls["forwarded_bytes"] == 2 * 8 * 7
    assert cls["scale_up_link_bytes"] == 2 * 8 * 7 * 2
    mrft = link_class_bytes(deepseek_mrft(num_nodes=2), rmap, m)
    assert mrft["forwarded_bytes"] == 0 and mrft["scale_out_cross_rail_bytes"] == 2 * 8 * 7
    loads = route_matrix(c, rmap, m)
    assert sum(loads.plane_bytes().values()) == cls["scale_out_link_bytes"]
    assert loads.bottlenecks(1)[0][0].startswith("nic-out")


def test_ecmp_more_qps_never_worse_on_average() -> None:
    c = tree(32, radix=8, routing="ecmp", scale_out="roce")  # 4 leaves, 4 uplinks each
    rmap = make_rank_map(c, "block")
    m = shift_matrix(32, 4, 1e8)
    means = []
    for qps in (1, 2, 4, 8):
        times = [simulate(c, rmap, m, qps=qps, seed=s).transfer_s for s in range(24)]
        means.append(float(np.mean(times)))
    assert all(b <= a * (1 + 1e-9) for a, b in itertools.pairwise(means)), means
    assert means[0] > 1.2 * 1e8 / NIC_BPS  # collisions cost a single QP per flow dearly
    adaptive = simulate(c, rmap, m, routing="adaptive")
    assert adaptive.transfer_s == pytest.approx(1e8 / NIC_BPS)


# ---- against [P] -----------------------------------------------------------------------


@pytest.mark.parametrize("num_nodes", [4, 8, 16])
def test_mpft_and_mrft_alltoall_within_two_percent(num_nodes: int) -> None:
    """[P] §5.1: MPFT and MRFT all-to-all performance nearly identical at 32-128 GPUs."""
    for size in (128 << 20, 1 << 30, 16 << 30):
        busbw = []
        for c in (deepseek_mpft(num_nodes), deepseek_mrft(num_nodes)):
            rmap = make_rank_map(c, "block")
            world = rmap.world
            p = simulate(c, rmap, Uniform(world=world, bytes_per_pair=size // world))
            busbw.append(size / p.time_s * (world - 1) / world)
        assert busbw[0] == pytest.approx(busbw[1], rel=0.02), (num_nodes, size, busbw)


@pytest.mark.parametrize(
    ("link", "same_leaf_us", "cross_leaf_us"), [("ib", 2.8, 3.7), ("roce", 3.6, 5.6)]
)
def test_64_byte_latency_reproduces_table_5(
    link: str, same_leaf_us: float, cross_leaf_us: float
) -> None:
    c = deepseek_mrft(num_nodes=64, scale_out=link)  # two 32-node leaf groups per rail
    rmap = make_rank_map(c, "block")
    for peer_node, want in ((1, same_leaf_us), (32, cross_leaf_us)):
        m = np.zeros((rmap.world, rmap.world))
        m[0, peer_node * 8] = 64
        assert simulate(c, rmap, m).time_s * 1e6 == pytest.approx(want, abs=0.01)
    nvlink = np.zeros((rmap.world, rmap.world))
    nvlink[0, 1] = 64
    assert simulate(c, rmap, nvlink).time_s * 1e6 == pytest.approx(3.33, abs=0.01)


def test_ecmp_measurably_worse_than_adaptive_under_alltoall() -> None:
    """[P] §5.2: ECMP hash collisions cost RoCE bandwidth; adaptive routing recovers it."""
    c = deepseek_mrft(num_nodes=32, scale_out="roce")  # full leaves; cross-rail via spines
    rmap = make_rank_map(c, "block")
    u = Uniform(world=256, bytes_per_pair=1e6)
    adaptive = simulate(c, rmap, u, routing="adaptive").transfer_s
    ecmp = [simulate(c, rmap, u, routing="ecmp", seed=s, rel_tol=0.01).transfer_s for s in range(4)]
    assert min(ecmp) > 1.03 * adaptive, (adaptive, ecmp)


def test_link_facts_scale_linearly_with_the_matrix() -> None:
    from topologies import link_facts

    c = deepseek_mpft(num_nodes=2)
    rmap = make_rank_map(c, "plane-aligned")
    m = Uniform(world=16, bytes_per_pair=1e6).matrix()
    one, ten = link_facts(c, rmap, m), link_facts(c, rmap, 10 * m)
    assert ten["link_rate_bound_s"] == pytest.approx(10 * one["link_rate_bound_s"])
    assert one["link_rate_bound_s"] == pytest.approx(8 * 1e6 / NIC_BPS)  # 8 peers per NIC
    assert (
        ten["link_class_bytes"]["forwarded_bytes"]
        == 10 * one["link_class_bytes"]["forwarded_bytes"]
    )
    assert one["rank_map"] == "plane-aligned" and one["bottleneck_link"].startswith("nic-")
