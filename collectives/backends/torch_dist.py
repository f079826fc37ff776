"""torch.distributed (c10d) backends: `gloo` on CPU, `torch-nccl` on CUDA, `fake` for dry runs.

This is the path training frameworks pay for: c10d's process group, its own NCCL streams
and work objects. Collectives are issued inside a dedicated CUDA stream (torch-nccl) and
timed with CUDA events recorded on it; on CPU the host clock times blocking calls.
Host-side metadata (config hashes, timings) always travels over a gloo group, so it never
touches the device. `fake` uses torch's fake process group: every collective is a no-op,
which lets the runner rehearse a 64-rank configuration in one process.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from collectives.backends import calls
from collectives.backends.base import (
    BackendUnavailable,
    CommError,
    LaunchInfo,
    canonical_dtype,
)

TORCH_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "int32": torch.int32,
    "float64": torch.float64,
    "float8_e4m3": torch.float8_e4m3fn,
    "float8_e5m2": torch.float8_e5m2,
}
_FP8 = {"float8_e4m3", "float8_e5m2"}
_REDOPS = {
    "sum": dist.ReduceOp.SUM,
    "prod": dist.ReduceOp.PRODUCT,
    "max": dist.ReduceOp.MAX,
    "min": dist.ReduceOp.MIN,
    "avg": dist.ReduceOp.AVG,
}

# torch 2.10+ renamed the tensor forms; older releases only have the *_tensor names.
_ALL_GATHER = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
_REDUCE_SCATTER = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


class CudaEventTimer:
    """CUDA event pairs recorded on one stream; read after the stream is synchronized."""

    def __init__(self, stream: torch.cuda.Stream) -> None:
        self.stream = stream
        self._pairs: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self._open: torch.cuda.Event | None = None

    def start(self) -> None:
        self._open = torch.cuda.Event(enable_timing=True)
        self._open.record(self.stream)

    def stop(self) -> None:
        end = torch.cuda.Event(enable_timing=True)
        end.record(self.stream)
        assert self._open is not None, "stop() without start()"
        self._pairs.append((self._open, end))
        self._open = None

    def elapsed_s(self) -> list[float]:
        self.stream.synchronize()
        return [a.elapsed_time(b) * 1e-3 for a, b in self._pairs]


class TorchComm:
    """`Comm` over a torch.distributed process group."""

    def __init__(self, launch: LaunchInfo, backend: str, group: Any = None) -> None:
        self.backend = backend
        self.capture_records_calls = False
        self._launch = launch
        self._group = group
        self.rank = dist.get_rank(group) if group is not None else launch.rank
        self.world = dist.get_world_size(group) if group is not None else launch.world
        self.local_rank = launch.local_rank
        self.local_world = launch.local_world
        self.node = launch.node
        self.num_nodes = launch.num_nodes
        self._fake = backend == "fake"
        if backend == "torch-nccl":
            self.device = f"cuda:{torch.cuda.current_device()}"
            self.stream: torch.cuda.Stream | None = torch.cuda.Stream()
            """The communication stream (None on CPU): callers order work against it."""
        else:
            self.device = "cpu"
            self.stream = None
        self._host_group: Any = None

    # ---- setup ----------------------------------------------------------------------
    def _host(self) -> Any:
        """A gloo group for host-side metadata (the default group itself on CPU)."""
        if self.backend != "torch-nccl":
            return self._group
        if self._host_group is None:
            self._host_group = dist.new_group(backend="gloo")
        return self._host_group

    def process_group(self) -> Any:
        """The c10d group of this communicator (None: the default group)."""
        return self._group

    def facts(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "backend": self.backend,
            "torch": torch.__version__,
            "c10d_backend": dist.get_backend(self._group) if not self._fake else "fake",
            "device": self.device,
        }
        if self.backend == "torch-nccl":
            facts["nccl"] = ".".join(str(v) for v in torch.cuda.nccl.version())
            facts["cuda"] = torch.version.cuda
        return facts

    def supports_dtype(self, dtype: str) -> bool:
        dtype = canonical_dtype(dtype)
        return dtype in TORCH_DTYPES

    def supports_reduction(self, dtype: str) -> bool:
        return canonical_dtype(dtype) not in _FP8

    # ---- buffers --------------------------------------------------------------------
    def empty(self, count: int, dtype: str) -> torch.Tensor:
        return torch.empty(count, dtype=TORCH_DTYPES[canonical_dtype(dtype)], device=self.device)

    def from_numpy(self, array: np.ndarray, dtype: str) -> torch.Tensor:
        host = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))
        return host.to(TORCH_DTYPES[canonical_dtype(dtype)]).to(self.device)

    def to_numpy(self, buf: torch.Tensor) -> np.ndarray:
        out: np.ndarray = buf.detach().to("cpu").to(torch.float64).numpy()
        return out

    # ---- collectives ----------------------------------------------------------------
    def _ctx(self) -> Any:
        if self.stream is not None:
            return torch.cuda.stream(self.stream)
        return _NullContext()

    @staticmethod
    def _movable(buf: torch.Tensor) -> torch.Tensor:
        # c10d moves fp8 as bytes; a view keeps the op free of dtype support gaps.
        if buf.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
            return buf.view(torch.uint8)
        return buf

    def all_to_all(
        self,
        out: torch.Tensor,
        inp: torch.Tensor,
        send_counts: Sequence[int] | None = None,
        recv_counts: Sequence[int] | None = None,
    ) -> None:
        with self._ctx():
            dist.all_to_all_single(
                self._movable(out),
                self._movable(inp),
                output_split_sizes=list(recv_counts) if recv_counts is not None else None,
                input_split_sizes=list(send_counts) if send_counts is not None else None,
                group=self._group,
            )

    def all_reduce(self, out: torch.Tensor, inp: torch.Tensor, op: str = "sum") -> None:
        # c10d has no out-of-place all-reduce: the copy is part of what a framework pays.
        with self._ctx():
            if out is not inp:
                out.copy_(inp)
            dist.all_reduce(out, op=_REDOPS[op], group=self._group)

    def all_gather(self, out: torch.Tensor, inp: torch.Tensor) -> None:
        with self._ctx():
            dist.all_gather_into_tensor(self._movable(out), self._movable(inp), group=self._group)

    def reduce_scatter(self, out: torch.Tensor, inp: torch.Tensor, op: str = "sum") -> None:
        with self._ctx():
            _REDUCE_SCATTER(out, inp, op=_REDOPS[op], group=self._group)

    def send(self, buf: torch.Tensor, peer: int) -> None:
        with self._ctx():
            dist.send(self._movable(buf), self._global(peer), group=self._group)

    def recv(self, buf: torch.Tensor, peer: int) -> None:
        with self._ctx():
            dist.recv(self._movable(buf), self._global(peer), group=self._group)

    def send_recv(self, sendbuf: torch.Tensor, dst: int, recvbuf: torch.Tensor, src: int) -> None:
        with self._ctx():
            ops = [
                dist.P2POp(dist.isend, self._movable(sendbuf), self._global(dst), self._group),
                dist.P2POp(dist.irecv, self._movable(recvbuf), self._global(src), self._group),
            ]
            for work in dist.batch_isend_irecv(ops):
                work.wait()

    def _global(self, peer: int) -> int:
        if self._group is None:
            return peer
        return int(dist.get_global_rank(self._group, peer))

    def barrier(self) -> None:
        if self._fake:
            return
        dist.barrier(group=self._host())

    def synchronize(self) -> None:
        if self.stream is not None:
            self.stream.synchronize()

    def timer(self) -> calls.HostTimer | CudaEventTimer:
        if self.stream is not None:
            return CudaEventTimer(self.stream)
        return calls.HostTimer()

    def repeat(self, fn: Callable[[], None], num_iters: int) -> Callable[[], None] | None:
        """None: c10d is called from Python, which is what this backend measures."""
        return None

    def capture(self, fn: Callable[[], None], num_iters: int) -> Callable[[], None] | None:
        if self.stream is None:
            return None
        graph = torch.cuda.CUDAGraph()
        self.stream.synchronize()
        stream = self.stream
        with torch.cuda.graph(graph, stream=stream):
            for _ in range(num_iters):
                fn()

        def replay() -> None:
            # replay() launches on the current stream; the timer's events are on ours
            with torch.cuda.stream(stream):
                graph.replay()

        return replay

    # ---- host metadata --------------------------------------------------------------
    def gather_object(self, obj: Any) -> list[Any]:
        if self._fake:
            return [obj] * self.world
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj, group=self._host())
        return out

    def max_over_ranks(self, values: np.ndarray) -> np.ndarray:
        host = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64).copy())
        if not self._fake:
            dist.all_reduce(host, op=dist.ReduceOp.MAX, group=self._host())
        result: np.ndarray = host.numpy()
        return result

    def split(self, color: int, key: int) -> TorchComm:
        """Sub-communicator of ranks with the same color, ordered by (key, rank)."""
        if self._fake:
            return self  # nothing moves on the fake group; a dry run needs only the shape
        entries = self.gather_object((color, key, self.rank))
        colors = sorted({c for c, _, _ in entries})
        mine = None
        for c in colors:  # every rank must create every group, in the same order
            members = [r for _, _, r in sorted(e for e in entries if e[0] == c)]
            ranks = [self._global(r) for r in members]
            group = dist.new_group(ranks=ranks, backend=dist.get_backend(self._group))
            if c == color:
                mine = group
        here = {k: getattr(self, k) for k in ("node", "local_rank", "local_world", "num_nodes")}
        sub = TorchComm(dataclasses.replace(self._launch, **here), self.backend, group=mine)
        return sub

    def close(self) -> None:
        if dist.is_initialized() and self._group is None:
            dist.destroy_process_group()


class _NullContext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _init(launch: LaunchInfo, backend: str, **kwargs: Any) -> None:
    timeout = datetime.timedelta(seconds=launch.timeout_s)
    try:
        dist.init_process_group(
            backend,
            init_method=f"tcp://{launch.master_addr}:{launch.master_port}",
            rank=launch.rank,
            world_size=launch.world,
            timeout=timeout,
            **kwargs,
        )
    except (RuntimeError, ValueError) as exc:
        raise CommError(
            f"could not start {backend} process group at "
            f"{launch.master_addr}:{launch.master_port} (rank {launch.rank} of "
            f"{launch.world}): {str(exc).splitlines()[0]}"
        ) from None


def create_gloo(launch: LaunchInfo) -> TorchComm:
    _init(launch, "gloo")
    return TorchComm(launch, "gloo")


def create_torch_nccl(launch: LaunchInfo) -> TorchComm:
    if not torch.cuda.is_available():
        raise BackendUnavailable(
            "backend 'torch-nccl' needs a CUDA GPU and none is visible; "
            "use --backend gloo or mpi on CPU"
        )
    num_gpus = torch.cuda.device_count()
    if launch.host_local_rank >= num_gpus:
        raise BackendUnavailable(
            f"local rank {launch.host_local_rank} has no GPU: this host has {num_gpus}; "
            "start at most one rank per GPU"
        )
    torch.cuda.set_device(launch.host_local_rank)
    device = torch.device("cuda", launch.host_local_rank)
    _init(launch, "nccl", device_id=device)
    return TorchComm(launch, "torch-nccl")


def create_fake(launch: LaunchInfo) -> TorchComm:
    from torch.testing._internal.distributed.fake_pg import FakeStore

    dist.init_process_group("fake", store=FakeStore(), rank=launch.rank, world_size=launch.world)
    return TorchComm(launch, "fake")
