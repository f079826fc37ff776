"""Dual micro-batch overlap: one micro-batch's dispatch/combine runs while the other's
expert computation does, and the bookkeeping of how much communication was hidden.

Two host threads, each with its own CUDA stream on GPUs (the communication thread issues
every dispatch and combine in order; the compute thread every expert step), handing work
over with events: schedule D0, then D1 beside E0, then C0 beside E1, then C1. On CPU
backends the same threads overlap gloo/MPI transfers with the expert GEMM on other cores.
The expert stand-in is a two-GEMM MLP whose output projection is zero, so it costs real
FLOPs but returns its input exactly and combine stays checkable.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

import torch

from collectives.moe.engine import MoEEngine
from collectives.moe.exchange import DispatchResult, weighted_rows


class StandInExpert:
    """y = x + (x @ W_in) @ W_out with W_out = 0: real GEMM cost, identity result."""

    def __init__(self, hidden: int, expert_dim: int, device: Any, dtype: torch.dtype):
        gen = torch.Generator().manual_seed(7)
        self.w_in = (torch.randn((hidden, expert_dim), generator=gen) / hidden**0.5).to(
            device=device, dtype=dtype
        )
        self.w_out = torch.zeros((expert_dim, hidden), device=device, dtype=dtype)
        self.dtype = dtype

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dtype)
        out: torch.Tensor = x + (x @ self.w_in) @ self.w_out
        return out


def expert_step(engine: MoEEngine, result: DispatchResult, expert: StandInExpert) -> torch.Tensor:
    """Decode the dispatched pairs, run the experts, weight and sum per received row."""
    return weighted_rows(expert(engine.expert_inputs(result)), result)


def sequential(
    engines: list[MoEEngine], packed: list[torch.Tensor], expert: StandInExpert
) -> list[torch.Tensor]:
    """Every micro-batch's dispatch, experts and combine, one after the other."""
    outs = []
    for engine, rows in zip(engines, packed, strict=True):
        result = engine.dispatch(rows)
        outs.append(engine.combine(result, expert_step(engine, result, expert)))
    return outs


class _Signal:
    """A hand-over between threads that also orders CUDA streams."""

    def __init__(self) -> None:
        self.flag = threading.Event()
        self.event: Any = None

    def set(self) -> None:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            self.event = torch.cuda.Event()
            self.event.record()
        self.flag.set()

    def wait(self, timeout_s: float) -> None:
        if not self.flag.wait(timeout_s):
            raise TimeoutError("overlap hand-over timed out")
        if self.event is not None:
            torch.cuda.current_stream().wait_event(self.event)


def _stream_context(device: torch.device) -> Any:
    if device.type == "cuda":
        return torch.cuda.stream(torch.cuda.Stream(device=device))
    return _NullContext()


class _NullContext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def overlapped(
    engines: list[MoEEngine],
    packed: list[torch.Tensor],
    expert: StandInExpert,
    timeout_s: float = 300.0,
) -> list[torch.Tensor]:
    """Two micro-batches on two threads: D0, D1 || E0, C0 || E1, C1."""
    if len(engines) != 2:
        raise ValueError(f"overlap runs 2 micro-batches, got {len(engines)}")
    device = engines[0].device
    dispatched = [_Signal(), _Signal()]
    computed = [_Signal(), _Signal()]
    results: list[Any] = [None, None]
    rows_out: list[Any] = [None, None]
    outs: list[Any] = [None, None]
    errors: list[BaseException] = []

    def comm_side() -> None:
        with _stream_context(device):
            for mb in (0, 1):
                results[mb] = engines[mb].dispatch(packed[mb])
                dispatched[mb].set()
            for mb in (0, 1):
                computed[mb].wait(timeout_s)
                outs[mb] = engines[mb].combine(results[mb], rows_out[mb])

    thread = threading.Thread(target=_guard(comm_side, errors), name="moe-comm")
    thread.start()
    try:
        with _stream_context(device):
            for mb in (0, 1):
                dispatched[mb].wait(timeout_s)
                rows_out[mb] = expert_step(engines[mb], results[mb], expert)
                computed[mb].set()
    finally:
        thread.join(timeout_s)
    if errors:
        raise errors[0]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return outs


def _guard(fn: Callable[[], None], errors: list[BaseException]) -> Callable[[], None]:
    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # re-raised on the calling thread
            errors.append(exc)

    return run


@dataclasses.dataclass(frozen=True, kw_only=True)
class OverlapReport:
    """Communication hidden by overlap, from times measured alone and together."""

    comm_s: float
    """Dispatch + combine of both micro-batches, run alone."""
    compute_s: float
    """Expert steps of both micro-batches, run alone."""
    together_s: float
    """The overlapped schedule."""

    @property
    def hidden_s(self) -> float:
        """Time saved by overlapping: alone (comm + compute) minus together."""
        return self.comm_s + self.compute_s - self.together_s

    @property
    def hidden_fraction_of_comm(self) -> float:
        return self.hidden_s / self.comm_s if self.comm_s > 0 else 0.0

    @property
    def efficiency(self) -> float:
        """hidden / the most that could be hidden (min of comm and compute)."""
        best = min(self.comm_s, self.compute_s)
        return self.hidden_s / best if best > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "comm_us": self.comm_s * 1e6,
            "compute_us": self.compute_s * 1e6,
            "together_us": self.together_s * 1e6,
            "hidden_us": self.hidden_s * 1e6,
            "hidden_fraction_of_comm": self.hidden_fraction_of_comm,
            "efficiency": self.efficiency,
        }
