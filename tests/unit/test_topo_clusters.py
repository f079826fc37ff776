"""Cluster descriptions, presets and their geometry."""

from __future__ import annotations

import numpy as np
import pytest

from topologies import (
    cluster_from_toml,
    deepseek_mpft,
    deepseek_mrft,
    dgx_rail_optimized,
    load_cluster,
    load_preset,
    make_cluster,
    preset_names,
    single_plane_fat_tree,
    workstation,
)
from topologies.catalog import preset_text
from topologies.links import IB_NDR_400G, ROCE_400G, link_profile


def test_every_preset_loads_and_matches_its_function() -> None:
    names = preset_names()
    assert {"deepseek-mpft", "deepseek-mrft", "dgx-h100-rail", "fat-tree", "workstation"} <= set(
        names
    )
    for name in names:
        assert load_preset(name).name == name
    pairs = [
        ("deepseek-mpft", deepseek_mpft()),
        ("deepseek-mrft", deepseek_mrft()),
        ("dgx-h100-rail", dgx_rail_optimized()),
        ("fat-tree", single_plane_fat_tree()),
        ("workstation", workstation()),
    ]
    for name, built in pairs:
        loaded = load_preset(name)
        for field in ("fabric", "num_nodes", "gpus_per_node", "nics_per_node", "num_planes"):
            assert getattr(loaded, field) == getattr(built, field), (name, field)
        assert loaded.scale_out == built.scale_out and loaded.scale_up == built.scale_up


def test_deepseek_mpft_geometry_matches_the_paper() -> None:
    c = load_preset("deepseek-mpft")
    assert (c.num_gpus, c.num_nodes, c.nics_per_node, c.num_planes) == (2048, 256, 8, 8)
    assert (c.down_ports, c.up_ports) == (32, 32)
    assert c.num_leaves == 64 and c.leaves_per_domain == 8
    assert c.resolved_forwarding == "pxn" and c.resolved_routing == "adaptive"
    big = load_preset("deepseek-mpft-16k")
    assert big.num_gpus == 16384 and big.leaves_per_domain == 64  # a full two-layer plane
    with pytest.raises(ValueError, match="two-layer fat-tree cannot hold"):
        make_cluster(**{**_fields(big), "fabric": "multi-rail", "num_planes": 1})


def _fields(c: object) -> dict[str, object]:
    import dataclasses

    return {f.name: getattr(c, f.name) for f in dataclasses.fields(c)}  # type: ignore[arg-type]


def test_leaves_are_rail_aligned_or_in_node_order() -> None:
    mpft = deepseek_mpft(num_nodes=64)
    nodes, nics = np.repeat(np.arange(64), 8), np.tile(np.arange(8), 64)
    leaf = mpft.leaf_of(nodes, nics)
    # same rail, same 32-node group -> same leaf; different rails never share a leaf
    assert leaf[0] == leaf[8] and leaf[0] != leaf[1] and leaf[0] != leaf[32 * 8]
    assert len(set(leaf.tolist())) == 8 * 2
    ft = single_plane_fat_tree(num_nodes=8)
    assert ft.leaf_of(np.array([0, 0, 3, 4]), np.array([0, 7, 7, 0])).tolist() == [0, 0, 0, 1]


def test_oversubscription_sets_ports_and_bisection() -> None:
    c = make_cluster(name="x", fabric="fat-tree", num_nodes=64, gpus_per_node=1, nics_per_node=1,
                     switch_radix=64, oversubscription=3.0)  # fmt: skip
    assert (c.down_ports, c.up_ports) == (48, 16)
    nonblocking = make_cluster(**{**_fields(c), "oversubscription": 1.0})
    assert c.bisection_bytes_s() < nonblocking.bisection_bytes_s()


def test_link_profiles_reproduce_table_5_numbers() -> None:
    assert IB_NDR_400G.latency_s(1) == pytest.approx(2.8e-6)
    assert IB_NDR_400G.latency_s(3) == pytest.approx(3.7e-6)
    assert ROCE_400G.latency_s(1) == pytest.approx(3.6e-6)
    assert ROCE_400G.latency_s(3) == pytest.approx(5.6e-6)
    assert link_profile("nvlink-h800").bandwidth_gbyte_s == 160.0
    assert link_profile("roce") is ROCE_400G
    custom = link_profile({"base": "ib", "bandwidth_gbyte_s": 100.0, "name": "ib-800"})
    assert custom.bandwidth_gbyte_s == 100.0 and custom.switch_latency_us == 0.45


def test_toml_round_trip_and_overrides() -> None:
    text = preset_text("deepseek-mrft") + '\nrouting = "ecmp"\n'
    c = cluster_from_toml(text, num_nodes=16)
    assert c.num_nodes == 16 and c.resolved_routing == "ecmp"
    assert load_cluster("deepseek-mrft", scale_out="roce").scale_out == ROCE_400G
    inline = load_cluster('name = "t"\nfabric = "fat-tree"\nnum_nodes = 2\ngpus_per_node = 4\n'
                          'nics_per_node = 2\nscale_out = { base = "ib", switch_latency_us = 1.0 }\n')  # fmt: skip  # noqa: E501
    assert inline.scale_out.switch_latency_us == 1.0 and inline.nic_of_gpu == (0, 0, 1, 1)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("nope", "unknown preset 'nope'"),
        ('fabric = "mesh"\nnum_nodes = 1\ngpus_per_node = 1\nnics_per_node = 1', "fabric 'mesh'"),
        ('fabric = "fat-tree"\nnum_nodes = 0\ngpus_per_node = 1\nnics_per_node = 1', "num_nodes=0"),
        (
            'fabric = "multi-plane"\nnum_nodes = 2\ngpus_per_node = 8\nnics_per_node = 8\n'
            "num_planes = 3",
            "not a multiple",
        ),
        (
            'fabric = "multi-plane"\nnum_nodes = 2\ngpus_per_node = 8\nnics_per_node = 8\n'
            'num_planes = 8\nforwarding = "none"',
            "cannot reach each other",
        ),
        (
            'fabric = "fat-tree"\nnum_nodes = 1\ngpus_per_node = 1\nnics_per_node = 1\nbogus = 1',
            "bad cluster fields",
        ),
        ("x = [", "does not parse"),
        (
            'fabric = "fat-tree"\nnum_nodes=1\ngpus_per_node=1\nnics_per_node=1\nscale_out = "eth"',
            "unknown link profile",
        ),
    ],
)
def test_bad_cluster_descriptions_name_the_value(text: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace("[", r"\[")):
        load_cluster(text)
