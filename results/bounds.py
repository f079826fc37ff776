"""Bounds set beside measurements: link line rates, an all-to-all bound from NIC, NVLink and
bisection bandwidth, and the decode-speed bound of DeepSeek's ISCA'25 paper ([P] §2.3.2).

All functions are pure; bandwidths are GB/s with GB = 1e9 B (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd


@dataclasses.dataclass(frozen=True, kw_only=True)
class Bound:
    """A horizontal line on a bandwidth plot."""

    name: str
    """What it is, e.g. "NIC 400 Gb/s line rate"."""
    gbps: float
    """Bandwidth, GB/s."""
    source: str = ""
    """Where the number comes from (metadata key, flag, preset)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class DecodeBound:
    """Communication-bound decode speed ([P] §2.3.2)."""

    bandwidth_gbps: float
    """Per-GPU bandwidth the EP traffic runs at, GB/s."""
    bytes_per_layer: float
    """Dispatch + combine bytes per GPU per layer per micro-batch."""
    layer_us: float
    """Time of one layer's all-to-all for one micro-batch, µs."""
    layer_overlapped_us: float
    """Per layer with `micro_batches` micro-batches overlapped (compute hidden), µs."""
    token_ms: float
    """Per output token over all layers, ms."""
    tokens_per_s: float
    """Upper bound on output tokens per second per sequence."""


def decode_bound(
    *,
    bandwidth_gbps: float,
    tokens_per_gpu: int = 32,
    hidden: int = 7000,
    experts_per_token: int = 9,
    dispatch_bytes_per_elem: float = 1.0,
    combine_bytes_per_elem: float = 2.0,
    num_layers: int = 61,
    micro_batches: int = 2,
) -> DecodeBound:
    """Decode time per token when EP all-to-all is the bottleneck ([P] §2.3.2).

    Defaults are the paper's: 32 tokens per GPU, hidden ~7K, 8 routed + 1 shared expert,
    FP8 dispatch + BF16 combine, 61 layers, two overlapped micro-batches; at 50 GB/s that is
    120.96 µs per layer, 14.76 ms per token, about 67 tokens/s.
    """
    if not (bandwidth_gbps > 0 and math.isfinite(bandwidth_gbps)):
        raise ValueError(f"bandwidth_gbps {bandwidth_gbps!r} must be a positive number")
    for name, value in (
        ("tokens_per_gpu", tokens_per_gpu),
        ("hidden", hidden),
        ("experts_per_token", experts_per_token),
        ("num_layers", num_layers),
        ("micro_batches", micro_batches),
    ):
        if value < 1:
            raise ValueError(f"{name} {value!r} must be at least 1")
    per_elem = dispatch_bytes_per_elem + combine_bytes_per_elem
    nbytes = per_elem * tokens_per_gpu * experts_per_token * hidden
    layer_us = nbytes / (bandwidth_gbps * 1e9) * 1e6
    overlapped_us = layer_us * micro_batches
    token_ms = overlapped_us * num_layers / 1e3
    return DecodeBound(
        bandwidth_gbps=bandwidth_gbps,
        bytes_per_layer=nbytes,
        layer_us=layer_us,
        layer_overlapped_us=overlapped_us,
        token_ms=token_ms,
        tokens_per_s=1e3 / token_ms,
    )


def alltoall_busbw_bound(
    *,
    num_ranks: int,
    gpus_per_node: int,
    nic_gbps: float,
    nvlink_gbps: float = math.inf,
    bisection_gbps: float = math.inf,
) -> float:
    """Highest all-to-all busbw (GB/s, nccl-tests convention) the links allow.

    Each rank sends S/N to every rank: S(N-g)/N leaves the node through its NIC, S(g-1)/N
    crosses NVLink, and N*S/4 crosses the bisection in each direction. busbw =
    S/t * (N-1)/N with t the slowest of the three.
    """
    n, g = num_ranks, gpus_per_node
    if n < 2 or g < 1 or n % g:
        raise ValueError(f"num_ranks {n} must be >= 2 and a multiple of gpus_per_node {g}")
    time_per_byte = max(
        (n - g) / n / nic_gbps if n > g else 0.0, (g - 1) / n / nvlink_gbps, n / 4 / bisection_gbps
    )
    if time_per_byte <= 0:
        return math.inf
    return (n - 1) / n / time_per_byte


def nic_bound(rate_gbit: float, name: str = "NIC") -> Bound:
    """A NIC's line rate: `rate_gbit` Gb/s as GB/s."""
    if not rate_gbit > 0:
        raise ValueError(f"NIC rate {rate_gbit!r} Gb/s must be positive")
    return Bound(
        name=f"{name} {rate_gbit:g} Gb/s line rate", gbps=rate_gbit / 8, source="line rate"
    )


def bounds_from_frame(frame: pd.DataFrame) -> list[Bound]:
    """Line rates recorded in run metadata (columns named like *nic*rate*_gbit / *_gbps)."""
    out: list[Bound] = []
    for col in frame.columns:
        low = col.lower()
        if not col.startswith("meta.") or not ("rate" in low or "bw" in low):
            continue
        values = pd.to_numeric(pd.Series(frame[col].unique()), errors="coerce").dropna()
        if values.empty:
            continue
        value = float(values.max())
        if low.endswith("_gbit") or low.endswith("_gbits"):
            out.append(Bound(name=f"{col} ({value:g} Gb/s)", gbps=value / 8, source=col))
        elif low.endswith("_gbps"):
            out.append(Bound(name=f"{col}", gbps=value, source=col))
    return out


def decode_bounds_from_summary(
    summary: pd.DataFrame,
    *,
    ops: tuple[str, ...] = ("alltoall", "dispatch", "moe_dispatch"),
    **kwargs: Any,
) -> pd.DataFrame:
    """The decode bound at each configuration's measured algbw nearest the decode message.

    The message per GPU per layer is `decode_bound(...).bytes_per_layer`; for each
    (label, op, backend, predicted) the measured algbw at the size closest to it (log scale)
    sets the bandwidth.
    """
    ref = decode_bound(bandwidth_gbps=1.0, **kwargs)
    rows = []
    data = summary[summary["op"].astype(str).isin(ops) & (summary["algbw_gbps"] > 0)]
    keys = [k for k in ("label", "op", "backend", "dtype", "mode", "predicted") if k in data]
    for key, grp in data.groupby(keys, observed=True):
        dist = np.abs(np.log(grp["size_bytes"].clip(lower=1)) - np.log(ref.bytes_per_layer))
        best = grp.iloc[int(np.argmin(dist.to_numpy()))]
        bound = decode_bound(bandwidth_gbps=float(best["algbw_gbps"]), **kwargs)
        rows.append(
            {
                **dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True)),
                "size_bytes": int(best["size_bytes"]),
                "algbw_gbps": bound.bandwidth_gbps,
                "layer_us": bound.layer_us,
                "token_ms": bound.token_ms,
                "tokens_per_s": bound.tokens_per_s,
            }
        )
    return pd.DataFrame(rows)
