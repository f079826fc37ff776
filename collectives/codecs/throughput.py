"""Codec throughput: time encode and decode of one tensor, median of repeats.

CPU tensors are timed with the host clock, CUDA tensors with CUDA events on the current
stream. Bandwidth is reported two ways (GB = 1e9 B): of the input tokens (`input_gbps`, the
same bytes for encode and decode, so both read as tokens per second), and of the bytes the
phase reads plus writes (`rw_gbps`: encode reads the input and writes the wire; decode
reads the wire and writes float32).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

GB = 1e9


def timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> list[float]:
    """Seconds per call of `fn`, one sample per repeat."""
    samples = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            stop.record()
            stop.synchronize()
            samples.append(start.elapsed_time(stop) * 1e-3)
        else:
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
    return samples


def warm_up_clocks(seconds: float = 1.0) -> None:
    """Keep the GPU busy for a while before timing: an idle GPU's clocks ramp up over the
    first hundreds of milliseconds, which would penalize whatever is timed first."""
    big = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")
    other = torch.empty_like(big)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(20):
            other.copy_(big)
        torch.cuda.synchronize()


def measure(codec: Any, x: torch.Tensor, warmup: int, repeats: int) -> dict[str, dict[str, Any]]:
    """{"encode": facts, "decode": facts} for `codec` (from collectives.codecs.get) on x."""
    tokens, hidden = x.shape
    wire = codec.encode(x)
    for _ in range(warmup):
        codec.decode(codec.encode(x), tokens, hidden)
    in_bytes, wire_bytes, out_bytes = x.numel() * x.element_size(), wire.numel(), x.numel() * 4
    phases = {
        "encode": (lambda: codec.encode(x), in_bytes, wire_bytes),
        "decode": (lambda: codec.decode(wire, tokens, hidden), wire_bytes, out_bytes),
    }
    out = {}
    for phase, (fn, read, written) in phases.items():
        times = timed(fn, x.device, repeats)
        median = statistics.median(times)
        out[phase] = {
            "impl": codec.resolve(x.device),
            "tokens": tokens,
            "hidden": hidden,
            "input_bytes": in_bytes,
            "wire_bytes": wire_bytes,
            "bytes_read": read,
            "bytes_written": written,
            "times_s": times,
            "median_s": median,
            "input_gbps": in_bytes / median / GB,
            "rw_gbps": (read + written) / median / GB,
        }
    return out
