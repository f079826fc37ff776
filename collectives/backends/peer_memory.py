"""Receive buffers that every rank of one node can write into, and a device-side barrier.

A fused all-to-all (collectives/ops/compressed_fused.py) has each sender's kernels store
straight into its peers' receive buffers over NVLink. This module gives it one such buffer
per rank, mapped into every other rank's address space, plus a stream-ordered barrier
among the ranks that carries a timeout. Two mappings:

- `symmetric-memory`: torch's own (`torch.distributed._symmetric_memory`: `empty`,
  `rendezvous`, `get_buffer`, and its `barrier(channel, timeout_ms)` kernel: one thread per
  peer puts a flag into the peer's signal pad with release semantics and takes the peer's
  flag from its own pad with acquire semantics, at system scope; on timeout it prints which
  rank it waited for and traps, so the next synchronization raises a CUDA error).
- `cuda-ipc`: CUDA IPC handles (`cudaIpcGetMemHandle` / `cudaIpcOpenMemHandle` through CuPy)
  exchanged with the communicator's `gather_object`, and the same barrier protocol as a
  small CUDA kernel of our own (compiled by CuPy), for builds without symmetric memory.

`auto` takes symmetric memory and falls back to CUDA IPC when every rank could not set it
up. Only CUDA backends of one node qualify (`fused_unsupported`); the rest of epbench never
sees which mapping runs except through `PeerBuffer.mapping`.
"""

from __future__ import annotations

import warnings
from typing import Any, Protocol

import numpy as np
import torch

from collectives.backends.base import CommError

FUSED_BACKENDS = ("torch-nccl", "nccl")
"""Backends whose ranks are CUDA devices that can map each other's memory."""
MAPPINGS = ("auto", "symmetric-memory", "cuda-ipc")
NUM_CHANNELS = 4
"""Barrier channels offered (the fused all-to-all uses two)."""


class PeerBuffer(Protocol):
    """One uint8 buffer per rank, every rank's mapped here; see the module docstring."""

    mapping: str
    num_bytes: int
    note: str

    def local(self) -> torch.Tensor:
        """This rank's own buffer (what the peers write into)."""
        ...

    def view(self, peer: int, offset_bytes: int, num_bytes: int) -> torch.Tensor:
        """Bytes [offset, offset + num_bytes) of `peer`'s buffer as a tensor on this device."""
        ...

    def barrier(self, channel: int) -> None:
        """Every rank's stream reaches this point before any goes on (current stream)."""
        ...

    def close(self, comm: Any) -> None:
        """Unmap the peers' buffers and free this one (a collective call, after every
        rank's last use; every tensor `local` and `view` gave out is invalid after it)."""
        ...


def fused_unsupported(backend: str, num_nodes: int, device: str = "cuda") -> str | None:
    """Why a fused (peer-mapped) all-to-all cannot run on these ranks, or None."""
    if backend not in FUSED_BACKENDS or not device.startswith("cuda"):
        return (
            f"--codec-fused needs CUDA ranks on one node (--backend torch-nccl or nccl, "
            f"GPUs that map each other's memory); got --backend {backend} on {device}"
        )
    if num_nodes > 1:
        return (
            f"--codec-fused maps the peers' memory over NVLink, so all ranks must share one "
            f"node; these ranks span {num_nodes} nodes (drop --gpus-per-node, or run on one host)"
        )
    return None


def check_mapping(mapping: str) -> str:
    if mapping not in MAPPINGS:
        raise ValueError(f"--codec-fused {mapping!r}: choose one of {', '.join(MAPPINGS)}")
    return mapping


def barrier_timeout_ms(timeout_s: float) -> int:
    """The device barrier's timeout: half the run's collective timeout (-T), at least 1 s,
    so a peer that never arrives is named by the barrier before the watchdog ends the rank."""
    return max(1000, int(timeout_s * 500))


def open_peer_buffer(
    comm: Any, num_bytes: int, device: torch.device, timeout_s: float, mapping: str = "auto"
) -> Any:
    """A `PeerBuffer` of `num_bytes` per rank on `device` for `comm`'s ranks (a collective
    call: every rank calls it with the same size). ValueError for ranks that cannot map
    each other (CPU, several nodes), CommError when setting the mapping up fails."""
    why = fused_unsupported(comm.backend, comm.num_nodes, str(comm.device))
    if why is not None:
        raise ValueError(why)
    with torch.cuda.device(device):
        return _open(comm, num_bytes, device, timeout_s, check_mapping(mapping))


def _open(comm: Any, num_bytes: int, device: torch.device, timeout_s: float, mapping: str) -> Any:
    timeout_ms = barrier_timeout_ms(timeout_s)
    errors: list[str] = []
    if mapping in ("auto", "symmetric-memory"):
        # Two agreed steps: the local allocation, then (only if every rank has one) the
        # collective rendezvous, so that a rank whose allocation fails never leaves the
        # others waiting in a rendezvous it will not join.
        buf: Any = None
        failures = (ImportError, RuntimeError, AttributeError, TypeError, ValueError)
        for step in ("allocate", "rendezvous"):
            error = ""
            try:
                if step == "allocate":
                    buf = SymmetricPeerBuffer(comm, num_bytes, device, timeout_ms)
                else:
                    buf.rendezvous()
            except failures as exc:
                error = f"rank {comm.rank}: {str(exc).strip().splitlines()[0]}"
            errors = [e for e in comm.gather_object(error) if e]
            if errors:
                break
        if not errors:
            return buf
        if mapping == "symmetric-memory":
            raise CommError(f"--codec-fused symmetric-memory: {errors[0]}")
    try:
        ipc = IpcPeerBuffer(comm, num_bytes, device, timeout_ms)
    except ImportError as exc:
        before = f" (symmetric memory: {errors[0]})" if errors else ""
        raise CommError(f"--codec-fused cuda-ipc needs CuPy: {exc}{before}") from None
    ipc.note = f"symmetric memory unavailable: {errors[0]}" if errors else ""
    return ipc


# ---- torch's symmetric memory --------------------------------------------------------------
def _symm_group(comm: Any) -> Any:
    """The group name symmetric memory rendezvous over: torch-nccl's process group, or, for
    the CuPy `nccl` backend, a name registered over its TCPStore."""
    import torch.distributed as dist
    import torch.distributed._symmetric_memory as symm_mem

    if comm.backend == "torch-nccl":
        group = comm.process_group() or dist.group.WORLD
        assert group is not None, "torch-nccl runs inside an initialized process group"
        enable = getattr(symm_mem, "enable_symm_mem_for_group", None)
        if enable is not None:  # older torch needs it; newer makes it a no-op that warns
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                enable(group.group_name)
        return group
    from torch._C._distributed_c10d import _SymmetricMemory

    name = f"epbench-nccl-{comm.world}"
    store = dist.PrefixStore(f"symmetric_memory-{name}", comm.store())
    _SymmetricMemory.set_group_info(name, comm.rank, comm.world, store)
    return name


class SymmetricPeerBuffer:
    """A buffer from torch's symmetric memory; barriers are its `barrier` kernel."""

    mapping = "symmetric-memory"
    note = ""

    def __init__(self, comm: Any, num_bytes: int, device: torch.device, timeout_ms: int) -> None:
        """The local part: the allocation and the group registration (rendezvous next)."""
        import torch.distributed._symmetric_memory as symm_mem

        self.num_bytes, self.timeout_ms = num_bytes, timeout_ms
        self._tensor = symm_mem.empty(num_bytes, dtype=torch.uint8, device=device)
        self._group = _symm_group(comm)
        self._handle: Any = None
        self.rank = comm.rank

    def rendezvous(self) -> None:
        """The collective part: every rank's buffer mapped here (all ranks call it)."""
        import torch.distributed._symmetric_memory as symm_mem

        self._handle = symm_mem.rendezvous(self._tensor, self._group)

    def local(self) -> torch.Tensor:
        return self._tensor

    def view(self, peer: int, offset_bytes: int, num_bytes: int) -> torch.Tensor:
        if peer == self.rank:
            return self._tensor[offset_bytes : offset_bytes + num_bytes]
        view: torch.Tensor = self._handle.get_buffer(peer, (num_bytes,), torch.uint8, offset_bytes)
        return view

    def barrier(self, channel: int) -> None:
        self._handle.barrier(channel=channel, timeout_ms=self.timeout_ms)

    def close(self, comm: Any) -> None:
        """torch owns the mapping: this drops the references, so that the allocator can
        reuse the block once no view is left."""
        torch.cuda.synchronize(self._tensor.device)
        comm.barrier()
        self._handle = self._tensor = None


# ---- CUDA IPC handles and our own barrier kernel -------------------------------------------
_BARRIER_SOURCE = r"""
__device__ unsigned long long epbench_now() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// Turn *flag from `from` into `to` (a system-scope compare-and-swap, release or acquire),
// spinning until it holds `from`; past the deadline, name the ranks and trap.
__device__ __forceinline__ void epbench_flip(
    unsigned int* flag, unsigned int from, unsigned int to, bool acquire,
    unsigned long long start, unsigned long long timeout_ns, const char* what, int rank,
    int peer, int channel) {
  unsigned int old;
  do {
    if (acquire)
      asm volatile("atom.acquire.sys.global.cas.b32 %0, [%1], %2, %3;"
                   : "=r"(old) : "l"(flag), "r"(from), "r"(to) : "memory");
    else
      asm volatile("atom.release.sys.global.cas.b32 %0, [%1], %2, %3;"
                   : "=r"(old) : "l"(flag), "r"(from), "r"(to) : "memory");
    if (old != from && epbench_now() - start > timeout_ns) {
      printf("[FATAL] epbench peer barrier: rank %d %s rank %d on channel %d "
             "(timeout %llu ms)\n", rank, what, peer, channel, timeout_ns / 1000000ull);
      asm volatile("trap;");
    }
  } while (old != from);
}

extern "C" __global__ void epbench_peer_barrier(
    const unsigned long long* pads, int channel, int rank, int world,
    unsigned long long timeout_ns) {
  // pads[r]: rank r's signal pad, mapped here; word [channel * world + src] is src's flag.
  int peer = threadIdx.x;
  if (peer >= world || peer == rank) return;
  unsigned int* put = (unsigned int*)pads[peer] + channel * world + rank;
  unsigned int* take = (unsigned int*)pads[rank] + channel * world + peer;
  unsigned long long start = epbench_now();
  // release: every write this GPU made before (earlier kernels on the stream) is visible
  // to the peer once it sees the flag; 0 -> 1 waits until the peer took the previous one
  epbench_flip(put, 0, 1, false, start, timeout_ns, "could not signal", rank, peer, channel);
  // acquire: the peer's writes before its flag are visible to this GPU's later kernels
  epbench_flip(take, 1, 0, true, start, timeout_ns, "waited in vain for", rank, peer, channel);
}
"""
_PAD_ALIGN = 256


class IpcPeerBuffer:
    """cudaMalloc'd buffer plus signal pad per rank, mapped through CUDA IPC handles."""

    mapping = "cuda-ipc"
    note = ""
    """Why `auto` fell back to CUDA IPC (empty when asked for directly)."""

    def __init__(self, comm: Any, num_bytes: int, device: torch.device, timeout_ms: int) -> None:
        import cupy

        self._cupy, self.num_bytes, self.rank, self.world = cupy, num_bytes, comm.rank, comm.world
        self.timeout_ns = timeout_ms * 1_000_000
        self._index = device.index
        runtime = cupy.cuda.runtime
        self._pad_offset = -(-num_bytes // _PAD_ALIGN) * _PAD_ALIGN
        total = self._pad_offset + NUM_CHANNELS * comm.world * 4
        with cupy.cuda.Device(self._index):
            self._ptr = runtime.malloc(total)
            runtime.memset(self._ptr + self._pad_offset, 0, total - self._pad_offset)
            runtime.deviceSynchronize()
            handles = comm.gather_object(bytes(runtime.ipcGetMemHandle(self._ptr)))
            self._bases = [
                self._ptr if r == self.rank else runtime.ipcOpenMemHandle(h, 1)  # lazy peer access
                for r, h in enumerate(handles)
            ]
            self._kernel = cupy.RawKernel(_BARRIER_SOURCE, "epbench_peer_barrier")
            self._kernel.compile()
        pads = [base + self._pad_offset for base in self._bases]
        self._pads = torch.tensor(pads, dtype=torch.int64, device=device)
        self._streams: dict[int, Any] = {}
        comm.barrier()  # every pad is zero before any rank can signal into it

    def _wrap(self, ptr: int, num_bytes: int) -> torch.Tensor:
        cupy = self._cupy
        mem = cupy.cuda.UnownedMemory(ptr, num_bytes, self, device_id=self._index)
        array = cupy.ndarray((num_bytes,), cupy.uint8, cupy.cuda.MemoryPointer(mem, 0))
        return torch.from_dlpack(array)

    def local(self) -> torch.Tensor:
        return self._wrap(self._ptr, self.num_bytes)

    def view(self, peer: int, offset_bytes: int, num_bytes: int) -> torch.Tensor:
        return self._wrap(self._bases[peer] + offset_bytes, num_bytes)

    def barrier(self, channel: int) -> None:
        cupy = self._cupy
        handle = torch.cuda.current_stream().cuda_stream
        stream = self._streams.get(handle)
        if stream is None:
            stream = self._streams[handle] = cupy.cuda.ExternalStream(handle)
        threads = max(32, -(-self.world // 32) * 32)
        with stream:
            self._kernel(
                (1,), (threads,),
                (np.uint64(self._pads.data_ptr()), np.int32(channel), np.int32(self.rank),
                 np.int32(self.world), np.uint64(self.timeout_ns)),
            )  # fmt: skip

    def close(self, comm: Any) -> None:
        """Every rank's work on the buffers done, each unmaps its peers' buffers; once all
        have, each frees its own (an exported allocation is freed only when no peer maps it)."""
        runtime = self._cupy.cuda.runtime
        with self._cupy.cuda.Device(self._index):
            runtime.deviceSynchronize()
            comm.barrier()
            for r, base in enumerate(self._bases):
                if r != self.rank:
                    runtime.ipcCloseMemHandle(base)
            comm.barrier()
            runtime.free(self._ptr)
        self._bases, self._streams = [], {}
