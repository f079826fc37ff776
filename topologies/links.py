"""Link profiles: bandwidth, latency and default routing of one kind of link.

Scale-out profiles (InfiniBand NDR 400G, RoCE 400G) carry an endpoint latency and a per-switch
latency, calibrated so that a 64-byte transfer reproduces [P] Table 5 (same leaf: one switch;
cross leaf: three switches). Scale-up profiles (NVLink, PCIe) carry the achievable per-direction
bandwidth the fabric model uses and the nominal figure for reference. docs/PERFORMANCE.md
("Fabric model") derives the calibration once.
"""

from __future__ import annotations

import dataclasses
from typing import Any

ROUTINGS = ("adaptive", "ecmp", "static")
"""adaptive: ideal per-packet spraying over all shortest paths; ecmp: per-flow (per-QP) hash
onto one path; static: destination-based (D-mod-k), as InfiniBand's linear forwarding tables."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class LinkProfile:
    """One kind of link, per direction."""

    name: str
    """Short name used in presets and on the command line (e.g. ib-ndr-400g)."""
    bandwidth_gbyte_s: float
    """Bandwidth the model uses, per direction, in GB/s (1e9 B/s)."""
    nominal_gbyte_s: float
    """Datasheet bandwidth per direction in GB/s, for reference only."""
    endpoint_latency_us: float
    """Latency of a minimal transfer excluding switches (host, NIC, cables), microseconds."""
    switch_latency_us: float = 0.0
    """Added latency per switch traversed, microseconds."""
    routing: str = "adaptive"
    """Default routing on this link kind (one of ROUTINGS); only used for scale-out."""
    kind: str = "scale-out"
    """scale-out (NIC to switch) or scale-up (NVLink, PCIe inside a node)."""
    source: str = ""
    """Where the numbers come from."""

    def __post_init__(self) -> None:
        if not self.bandwidth_gbyte_s > 0:
            raise ValueError(
                f"link {self.name!r}: bandwidth_gbyte_s={self.bandwidth_gbyte_s}; use > 0"
            )
        if self.endpoint_latency_us < 0 or self.switch_latency_us < 0:
            raise ValueError(f"link {self.name!r}: latencies must be >= 0")
        if self.routing not in ROUTINGS:
            raise ValueError(f"link {self.name!r}: routing {self.routing!r} not one of {ROUTINGS}")
        if self.kind not in ("scale-out", "scale-up"):
            raise ValueError(f"link {self.name!r}: kind {self.kind!r}; use scale-out or scale-up")

    @property
    def bandwidth_bytes_s(self) -> float:
        """Bandwidth the model uses, bytes per second per direction."""
        return self.bandwidth_gbyte_s * 1e9

    def latency_s(self, num_switches: int) -> float:
        """Zero-byte latency through `num_switches` switches, seconds."""
        return (self.endpoint_latency_us + num_switches * self.switch_latency_us) * 1e-6


def _scale_out(
    name: str, same_leaf_us: float, cross_leaf_us: float, routing: str, source: str
) -> LinkProfile:
    # Same leaf crosses 1 switch, cross leaf 3 (leaf, spine, leaf); a 64 B message at
    # 50 GB/s adds 1.3 ns, below the table's precision, so it is not subtracted.
    per_switch = (cross_leaf_us - same_leaf_us) / 2
    return LinkProfile(
        name=name,
        bandwidth_gbyte_s=50.0,
        nominal_gbyte_s=50.0,
        endpoint_latency_us=round(same_leaf_us - per_switch, 6),
        switch_latency_us=round(per_switch, 6),
        routing=routing,
        source=source,
    )


IB_NDR_400G = _scale_out(
    "ib-ndr-400g", 2.8, 3.7, "adaptive", "[P] Table 5 latency; 400 Gb/s CX7; NCCL enables AR on IB"
)
ROCE_400G = _scale_out(
    "roce-400g", 3.6, 5.6, "ecmp", "[P] Table 5 latency; 400 Gb/s; ECMP is RoCE's default"
)
NVLINK_H800 = LinkProfile(
    name="nvlink-h800",
    bandwidth_gbyte_s=160.0,
    nominal_gbyte_s=200.0,
    endpoint_latency_us=3.33,
    kind="scale-up",
    source="[P] §4: 400 GB/s nominal (200 per direction), about 160 GB/s achievable; "
    "Table 5 latency 3.33 us",
)
NVLINK_H100 = LinkProfile(
    name="nvlink-h100",
    bandwidth_gbyte_s=340.0,
    nominal_gbyte_s=450.0,
    endpoint_latency_us=3.33,
    kind="scale-up",
    source="900 GB/s nominal (450 per direction); ~330-355 GB/s busbw measured on H200 "
    "(REFERENCE.md); latency as H800",
)
NVLINK_H200 = dataclasses.replace(NVLINK_H100, name="nvlink-h200")
PCIE_GEN4 = LinkProfile(
    name="pcie-gen4",
    bandwidth_gbyte_s=25.0,
    nominal_gbyte_s=32.0,
    endpoint_latency_us=5.0,
    kind="scale-up",
    source="PCIe 4.0 x16: 32 GB/s per direction nominal, ~25 GB/s achievable",
)
PCIE_GEN5 = LinkProfile(
    name="pcie-gen5",
    bandwidth_gbyte_s=50.0,
    nominal_gbyte_s=64.0,
    endpoint_latency_us=5.0,
    kind="scale-up",
    source="PCIe 5.0 x16: 64 GB/s per direction nominal, ~50 GB/s achievable",
)

PROFILES: dict[str, LinkProfile] = {
    p.name: p
    for p in (IB_NDR_400G, ROCE_400G, NVLINK_H800, NVLINK_H100, NVLINK_H200, PCIE_GEN4, PCIE_GEN5)
}
ALIASES = {"ib": "ib-ndr-400g", "roce": "roce-400g", "nvlink": "nvlink-h800", "pcie": "pcie-gen5"}


def link_profile(spec: str | dict[str, Any]) -> LinkProfile:
    """A profile by name (or alias), or built from a table of LinkProfile fields.

    A table may name a `base` profile and override some fields.
    """
    if isinstance(spec, str):
        name = ALIASES.get(spec, spec)
        if name not in PROFILES:
            raise ValueError(f"unknown link profile {spec!r}; use one of {sorted(PROFILES)}")
        return PROFILES[name]
    fields = dict(spec)
    base = fields.pop("base", None)
    allowed = {f.name for f in dataclasses.fields(LinkProfile)}
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"unknown link profile fields {sorted(unknown)}; use {sorted(allowed)}")
    if base is not None:
        return dataclasses.replace(link_profile(str(base)), **fields)
    try:
        return LinkProfile(**fields)
    except TypeError as exc:
        raise ValueError(f"link profile table incomplete: {exc}") from None
