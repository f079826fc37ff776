"""Timing helpers of the MoE GPU script (bench/gpu/moe_gpu.py): DeepEP's way of timing a
call, per-iteration samples, CUDA-graph replay, and rank-0 progress lines."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

L2_FLUSH_BYTES = 256_000_000
"""DeepEP's L2 flush: zero 256 MB between timed calls."""

T0 = time.monotonic()


def say(comm: Any, text: str) -> None:
    """Progress on rank 0, with seconds since start (the table comes only at the end)."""
    if comm.rank == 0:
        print(f"[{time.monotonic() - T0:7.1f} s] {text}", flush=True)


def stats(samples: np.ndarray) -> dict[str, float]:
    return {
        "p50_us": float(np.median(samples) * 1e6),
        "p10_us": float(np.percentile(samples, 10) * 1e6),
        "p90_us": float(np.percentile(samples, 90) * 1e6),
        "mean_us": float(np.mean(samples) * 1e6),
    }


@dataclasses.dataclass
class Bench:
    """Times a callable the way DeepEP's `bench` does, plus the max over ranks."""

    comm: Any
    iters: int
    warmup: int
    flush: bool
    use_graph: bool = False

    def __call__(self, fn: Callable[[], Any]) -> np.ndarray:
        cuda = torch.cuda.is_available() and self.comm.backend != "gloo"
        for _ in range(self.warmup):
            fn()
        scratch = torch.empty(L2_FLUSH_BYTES // 4 if cuda else 1, dtype=torch.int32)
        if cuda:
            scratch = scratch.cuda()
            torch.cuda.synchronize()
        timer = self.comm.timer()
        for _ in range(self.iters):
            if self.flush and cuda:
                scratch.zero_()
            if cuda:
                torch.cuda.synchronize()
            timer.start()
            fn()
            timer.stop()
        samples = np.asarray(timer.elapsed_s(), dtype=np.float64)
        return self.comm.max_over_ranks(samples)

    def back_to_back(self, fn: Callable[[], Any]) -> float:
        """DeepEP's `bench`: warm up, flush L2 once, time `iters` calls issued back to back
        (events only, no sync between calls), mean of all but the first; max over ranks."""
        for _ in range(self.warmup):
            fn()
        if torch.cuda.is_available() and self.comm.backend != "gloo":
            torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.int32, device="cuda").zero_()
            torch.cuda.synchronize()
        timer = self.comm.timer()
        for _ in range(self.iters):
            timer.start()
            fn()
            timer.stop()
        samples = np.asarray(timer.elapsed_s(), dtype=np.float64)[1:]
        return float(np.max(self.comm.max_over_ranks(np.asarray([samples.mean()]))))

    def graph(self, fn: Callable[[], Any]) -> float:
        """Seconds per call replaying `iters` calls captured in one CUDA graph (host issue
        cost removed, as a CUDA-graphed decode step sees it); NaN where capture fails."""
        try:
            replay = self.comm.capture(fn, self.iters)
        except RuntimeError as exc:
            say(self.comm, f"graph capture failed: {str(exc).splitlines()[0][:120]}")
            replay = None
        if replay is None:
            return float("nan")
        replay()
        timer = self.comm.timer()
        for _ in range(5):
            timer.start()
            replay()
            timer.stop()
        per_call = np.asarray(timer.elapsed_s(), dtype=np.float64) / self.iters
        return float(np.median(self.comm.max_over_ranks(per_call)))

    def both(self, fn: Callable[[], Any], graph: bool = True) -> tuple[np.ndarray, float, float]:
        """Per-iteration samples (synchronized, L2 flushed), DeepEP's back-to-back mean and
        the CUDA-graph time per call (not for calls that read results on the host)."""
        graphed = self.graph(fn) if self.use_graph and graph else np.nan
        return self(fn), self.back_to_back(fn), graphed


T0 = time.monotonic()
NODES: list[int] = []
"""Node of every rank, from bench.launch.place_comm (filled once the ranks are up)."""
