"""Pure models of clusters: nodes, GPUs, NICs, planes, leaves and spines; rank maps;
traffic matrices routed onto links; and a flow-level fabric simulator. No processes,
no environment, no files except the packaged presets.

The names below are the public surface; docs/TOPOLOGIES.md describes them.
"""

from topologies.catalog import cluster_from_toml, load_cluster, load_preset, preset_names
from topologies.cluster import (
    Cluster,
    deepseek_mpft,
    deepseek_mrft,
    dgx_rail_optimized,
    make_cluster,
    single_plane_fat_tree,
    workstation,
)
from topologies.links import LinkProfile, link_profile
from topologies.loads import (
    LinkLoads,
    link_class_bytes,
    link_facts,
    link_rate_bound_s,
    route_matrix,
)
from topologies.rankmap import (
    RankMap,
    make_rank_map,
    problems,
    rank_map_from_text,
    rank_map_to_text,
    validate,
)
from topologies.simulate import Prediction, simulate
from topologies.traffic import Uniform

__all__ = [
    "Cluster",
    "LinkLoads",
    "LinkProfile",
    "Prediction",
    "RankMap",
    "Uniform",
    "cluster_from_toml",
    "deepseek_mpft",
    "deepseek_mrft",
    "dgx_rail_optimized",
    "link_class_bytes",
    "link_facts",
    "link_profile",
    "link_rate_bound_s",
    "load_cluster",
    "load_preset",
    "make_cluster",
    "make_rank_map",
    "preset_names",
    "problems",
    "rank_map_from_text",
    "rank_map_to_text",
    "route_matrix",
    "simulate",
    "single_plane_fat_tree",
    "validate",
    "workstation",
]
