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

    @property
    def on_gpu(self) -> bool:
        return torch.cuda.is_available() and self.comm.backend != "gloo"

    def _timed(
        self, fn: Callable[[], Any], count: int, before: Callable[[], Any] | None = None
    ) -> np.ndarray:
        """This rank's seconds for `count` calls of fn, each bracketed by the comm's timer
        (`before` runs untimed ahead of each call)."""
        timer = self.comm.timer()
        for _ in range(count):
            if before is not None:
                before()
            timer.start()
            fn()
            timer.stop()
        return np.asarray(timer.elapsed_s(), dtype=np.float64)

    def _warm(self, fn: Callable[[], Any]) -> None:
        for _ in range(self.warmup):
            fn()

    def __call__(self, fn: Callable[[], Any]) -> np.ndarray:
        """Per-iteration samples: L2 flushed (if asked) and the device idle before each call."""
        self._warm(fn)
        if not self.on_gpu:
            return self.comm.max_over_ranks(self._timed(fn, self.iters))
        scratch = torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.int32, device="cuda")

        def settle() -> None:
            if self.flush:
                scratch.zero_()
            torch.cuda.synchronize()

        return self.comm.max_over_ranks(self._timed(fn, self.iters, settle))

    def back_to_back(self, fn: Callable[[], Any]) -> float:
        """DeepEP's `bench`: warm up, flush L2 once, time `iters` calls issued back to back
        (events only, no sync between calls), mean of all but the first; max over ranks."""
        self._warm(fn)
        if self.on_gpu:
            torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.int32, device="cuda").zero_()
            torch.cuda.synchronize()
        samples = self._timed(fn, self.iters)[1:]
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
        per_call = self._timed(replay, 5) / self.iters
        return float(np.median(self.comm.max_over_ranks(per_call)))

    def both(self, fn: Callable[[], Any], graph: bool = True) -> tuple[np.ndarray, float, float]:
        """Per-iteration samples (synchronized, L2 flushed), DeepEP's back-to-back mean and
        the CUDA-graph time per call (not for calls that read results on the host)."""
        graphed = self.graph(fn) if self.use_graph and graph else np.nan
        return self(fn), self.back_to_back(fn), graphed
