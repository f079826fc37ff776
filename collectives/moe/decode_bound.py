"""Decode-speed upper bound from EP communication alone ([P] §2.3.2), a pure function.

Per layer and micro-batch, each GPU sends `tokens x experts x hidden` elements in dispatch
(FP8: 1 B) and receives as many in combine (BF16: 2 B) over its NIC. With two micro-batches
overlapped so that communication is the critical path, a layer costs twice that, and an
output token costs `num_layers` layers. [P]'s inputs — 32 tokens per GPU, 9 experts per token
(8 routed + 1 shared), hidden 7K (7000), 50 GB/s per 400G NIC, 61 layers — give 120.96 us,
14.76 ms and about 67 tokens/s; at 900 GB/s (GB200 NVL72) 6.72 us, 0.82 ms, about 1200.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, kw_only=True)
class DecodeBound:
    """The bound and its parts."""

    comm_us: float
    """Dispatch + combine time of one layer and one micro-batch, microseconds."""
    layer_us: float
    """Time of one layer with all micro-batches (comm_us * micro_batches)."""
    token_ms: float
    """Time per output token over all layers, milliseconds."""
    tokens_per_s: float
    """Upper bound on decode speed per sequence, tokens per second."""


def decode_bound(
    *,
    bandwidth_gbps: float = 50.0,
    tokens_per_gpu: int = 32,
    experts_per_token: int = 9,
    hidden: int = 7000,
    dispatch_bytes_per_elem: float = 1.0,
    combine_bytes_per_elem: float = 2.0,
    num_layers: int = 61,
    micro_batches: int = 2,
    combine_gbps: float | None = None,
) -> DecodeBound:
    """[P] §2.3.2's arithmetic; bandwidths in GB/s (1e9 B/s), measured or predicted.

    `bandwidth_gbps` applies to dispatch, and to combine unless `combine_gbps` is given.
    """
    if bandwidth_gbps <= 0 or (combine_gbps is not None and combine_gbps <= 0):
        raise ValueError(f"bandwidths must be > 0 GB/s, got {bandwidth_gbps} / {combine_gbps}")
    elems = tokens_per_gpu * experts_per_token * hidden
    dispatch_s = elems * dispatch_bytes_per_elem / (bandwidth_gbps * 1e9)
    combine_s = elems * combine_bytes_per_elem / ((combine_gbps or bandwidth_gbps) * 1e9)
    comm_s = dispatch_s + combine_s
    token_s = comm_s * micro_batches * num_layers
    return DecodeBound(
        comm_us=comm_s * 1e6,
        layer_us=comm_s * micro_batches * 1e6,
        token_ms=token_s * 1e3,
        tokens_per_s=1.0 / token_s,
    )
