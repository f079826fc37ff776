"""The `nccl` backend: NCCL called directly through CuPy's bindings (`cupy.cuda.nccl`).

This is the path nccl-tests measures: one NCCL communicator per process, every call issued on one
dedicated non-blocking CUDA stream, all-to-all through ncclAlltoAll where NCCL has it
(2.28+, as nccl-tests; nccl_native.py) and as grouped send/recv otherwise and for alltoallv,
CUDA events on that stream for timing, and `capture` recording `num_iters` calls into one
CUDA graph replayed on the same stream (nccl-tests' `-G`), and `repeat` issuing an op's
recorded NCCL calls N times from compiled code (nccl-tests' C loop; nccl_native.py). The
unique id is created on rank 0 and handed out through a torch.distributed TCPStore at
`LaunchInfo.master_addr:master_port`, which also carries small host objects
(`gather_object`, `split`). The GPU is `host_local_rank` modulo the visible GPUs.

Buffers are CuPy arrays; bfloat16 and float8 are stored as raw uint16/uint8 and passed to NCCL
with its own type codes (ncclBfloat16, and ncclFloat8e4m3/e5m2 when the NCCL library has them,
2.24 or newer). Data-movement ops move bytes, so every dtype moves. CuPy and torch are
imported only by `create`.
"""

from __future__ import annotations

import datetime
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np

from collectives.backends import buffers as bf
from collectives.backends import calls, nccl_native
from collectives.backends.base import BackendUnavailable, CommError, LaunchInfo, canonical_dtype
from collectives.backends.nccl_types import (
    NCCL_TYPES,
    format_version,
    move_type,
    nccl_op,
    nccl_type,
)


class CudaEventTimer:
    """start/stop record CUDA events on the communication stream. Events come from the
    communicator's pool, which `__init__` fills (before any barrier or alignment op, so
    creating events never lands between the ranks' synchronization and a start event, where
    uneven driver time would be charged to a sample as rank skew); `elapsed_s` hands them back."""

    POOL_CHUNK = 256

    def __init__(self, cupy: Any, stream: Any, pool: list[Any], reserve: int = 64) -> None:
        self._cupy, self._stream, self._pool = cupy, stream, pool
        self._pairs: list[tuple[Any, Any]] = []
        self._times: list[float] = []
        self._begin: Any = None
        self.last_pair: tuple[Any, Any] | None = None
        self._reserve(reserve)

    def _reserve(self, count: int) -> None:
        if len(self._pool) < count:
            self._pool.extend(self._cupy.cuda.Event() for _ in range(self.POOL_CHUNK))

    def start(self) -> None:
        self._reserve(2)
        self._begin = self._pool.pop()
        self._begin.record(self._stream)

    def stop(self) -> None:
        end = self._pool.pop()
        end.record(self._stream)
        self._pairs.append((self._begin, end))

    def elapsed_s(self) -> list[float]:
        self._stream.synchronize()
        elapsed = self._cupy.cuda.get_elapsed_time
        self._times += [elapsed(a, b) / 1e3 for a, b in self._pairs]
        if self._pairs:
            self.last_pair = self._pairs[-1]  # (begin, end), valid until the pool reuses them
        for pair in self._pairs:
            self._pool.extend(pair)
        self._pairs = []
        return list(self._times)


class NcclComm:
    """`Comm` over a CuPy NcclCommunicator; see the module docstring."""

    backend = "nccl"
    capture_records_calls = False

    def __init__(self, ctx: dict[str, Any], comm: Any, rank: int, world: int, place: dict) -> None:
        self._ctx = ctx
        self._cupy, self._nccl, self._store = ctx["cupy"], ctx["nccl"], ctx["store"]
        self._comm = comm
        self.rank, self.world = rank, world
        self.local_rank, self.local_world = place["local_rank"], place["local_world"]
        self.node, self.num_nodes = place["node"], place["num_nodes"]
        self.device = "cuda"
        self.stream = self._cupy.cuda.Stream(non_blocking=True)
        self._plans = calls.Plans()
        self._dtypes: dict[int, tuple[Any, str]] = {}
        self._graphs: list[Any] = []
        self._num_objects = 0
        self._version = int(self._nccl.get_version())
        self._consts = vars(self._nccl)
        self._alloc = bf.Allocator(kind="cupy", arena=bf.HostArena(), device_index=ctx["device"])
        self._flag = self._cupy.zeros(1, np.float32)
        self._events: list[Any] = []
        self._lib = nccl_native.load(self._version)
        self._alltoall = self._lib is not None and self._lib.has(nccl_native.ALL_TO_ALL)
        self._recording: list[tuple[nccl_native.NativeCall, ...] | None] | None = None

    def store(self) -> Any:
        """The torch.distributed TCPStore the ranks bootstrapped through."""
        return self._store

    # ---- facts and buffers ----------------------------------------------------------------
    def facts(self) -> dict[str, Any]:
        cupy = self._cupy
        props = cupy.cuda.runtime.getDeviceProperties(self._ctx["device"])
        name = props["name"]
        return {
            "nccl_version": format_version(self._version),
            "nccl_build_version": format_version(int(self._nccl.get_build_version())),
            "cupy_version": cupy.__version__,
            "cuda_runtime_version": cupy.cuda.runtime.runtimeGetVersion(),
            "gpu": name.decode() if isinstance(name, bytes) else str(name),
            "device_index": self._ctx["device"],
            "stream": "dedicated non-blocking stream",
            "alltoall": "ncclAlltoAll (uniform), grouped ncclSend/ncclRecv (alltoallv)"
            if self._alltoall
            else "grouped ncclSend/ncclRecv",
            "loop": "recorded NCCL calls issued from compiled code"
            if self._lib is not None
            else "Python-issued",
            "bootstrap": "torch.distributed TCPStore",
            "fp8_reductions": self.supports_reduction("float8_e4m3"),
        }

    def supports_dtype(self, dtype: str) -> bool:
        return canonical_dtype(dtype) in bf.NUMPY_DTYPES

    def supports_reduction(self, dtype: str) -> bool:
        try:
            nccl_type(dtype, self._consts, self._version)
        except ValueError:
            return False
        return True

    def empty(self, count: int, dtype: str) -> Any:
        if count < 0:
            raise ValueError(f"count={count} must be >= 0")
        dtype = canonical_dtype(dtype)
        buf = self._alloc.empty(count, dtype)
        self._dtypes[id(buf)] = (_weak(buf), dtype)
        return buf

    def from_numpy(self, array: np.ndarray, dtype: str) -> Any:
        buf = self.empty(int(np.asarray(array).size), dtype)
        bf.fill_from_numpy(buf, array, canonical_dtype(dtype), self._alloc.host(buf.size, dtype))
        self._cupy.cuda.Device().synchronize()  # the copy ran on another stream
        return buf

    def to_numpy(self, buf: Any) -> np.ndarray:
        self.stream.synchronize()
        return bf.to_float64(buf, self._dtype(buf), self._alloc.host)

    def _dtype(self, buf: Any) -> str:
        return bf.registered_dtype(self._dtypes, buf)

    def _call(self, key: tuple[Any, ...], a: Any, b: Any, build: Any, *args: Any) -> None:
        entry = self._plans.entries.get(key)
        if entry is not None and entry[0]() is a and entry[1]() is b:
            run = entry[2]
        else:
            run = self._plans.put(key, a, b, build(*args), None)
        if self._recording is not None:
            self._recording.append(getattr(run, "native", None))
        try:
            run()
        except self._nccl.NcclError as exc:
            raise CommError(f"NCCL {key[0]} failed on rank {self.rank}: {exc}") from None

    # ---- collectives ----------------------------------------------------------------------
    def all_to_all(self, out, inp, send_counts=None, recv_counts=None) -> None:
        sc = None if send_counts is None else tuple(send_counts)
        rc = None if recv_counts is None else tuple(recv_counts)
        key = ("all_to_all", id(out), id(inp), sc, rc)
        self._call(key, out, inp, self._plan_all_to_all, out, inp, sc, rc)

    def _plan_all_to_all(self, out, inp, sc, rc) -> calls.Run:
        itemsize = bf.numpy_dtype(self._dtype(inp)).itemsize
        s_lay = calls.all_to_all_layout(sc, self.world, bf.nbytes_of(inp), itemsize, "send")
        r_lay = calls.all_to_all_layout(rc, self.world, bf.nbytes_of(out), itemsize, "receive")
        if sc is None and s_lay.counts_bytes[0] > r_lay.counts_bytes[0]:
            raise ValueError(
                f"all_to_all: output {bf.nbytes_of(out)} B < input {bf.nbytes_of(inp)} B"
            )
        sp, rp = bf.device_pointer(inp), bf.device_pointer(out)
        code, size = move_type(self._dtype(inp))
        if self._alltoall and len({*s_lay.counts_bytes, *r_lay.counts_bytes}) == 1:
            return self._native_all_to_all(sp, rp, s_lay.counts_bytes[0] // size, code)
        peers = [
            (p, sp + s_lay.displs_bytes[p], s_lay.counts_bytes[p] // size, code,
             rp + r_lay.displs_bytes[p], r_lay.counts_bytes[p] // size, code)
            for p in range(self.world)
        ]  # fmt: skip
        return self._grouped(peers)

    def _native_all_to_all(self, sp: int, rp: int, count: int, code: int) -> calls.Run:
        """Equal blocks through ncclAlltoAll (NCCL >= 2.28), as nccl-tests' alltoall_perf."""
        lib, rank = self._lib, self.rank
        assert lib is not None
        native = self._native(nccl_native.ALL_TO_ALL, sp, rp, count, code)
        fn, args = lib.functions[native.kind], native.args

        def run() -> None:
            status = fn(*args)
            if status:
                raise CommError(f"NCCL ncclAlltoAll failed on rank {rank}: status {status}")

        return _with_native(run, native)

    def _native(self, kind: int, *args: int) -> nccl_native.NativeCall:
        """A recorded call: `args` followed by this communicator and its stream."""
        return nccl_native.NativeCall(kind, (*args, self._comm.comm, self.stream.ptr))

    def _grouped(self, peers: list[tuple[int, ...]]) -> calls.Run:
        """Per peer: send (address, count, type) and receive (address, count, type); a count
        of -1 skips that side. One groupStart/groupEnd fuses them into one launch."""
        nccl, comm, stream = self._nccl, self._comm, self.stream.ptr

        def run() -> None:
            nccl.groupStart()
            try:
                for peer, s_addr, s_count, s_code, r_addr, r_count, r_code in peers:
                    if s_count >= 0:
                        comm.send(s_addr, s_count, s_code, peer, stream)
                    if r_count >= 0:
                        comm.recv(r_addr, r_count, r_code, peer, stream)
            finally:
                nccl.groupEnd()

        natives = [nccl_native.NativeCall(nccl_native.GROUP_START)]
        for peer, s_addr, s_count, s_code, r_addr, r_count, r_code in peers:
            if s_count >= 0:
                natives.append(self._native(nccl_native.SEND, s_addr, s_count, s_code, peer))
            if r_count >= 0:
                natives.append(self._native(nccl_native.RECV, r_addr, r_count, r_code, peer))
        natives.append(nccl_native.NativeCall(nccl_native.GROUP_END))
        return _with_native(run, *natives)

    def all_reduce(self, out, inp, op: str = "sum") -> None:
        key = ("all_reduce", id(out), id(inp), op)
        self._call(key, out, inp, self._plan_reduce, out, inp, op, False)

    def reduce_scatter(self, out, inp, op: str = "sum") -> None:
        key = ("reduce_scatter", id(out), id(inp), op)
        self._call(key, out, inp, self._plan_reduce, out, inp, op, True)

    def _plan_reduce(self, out, inp, op: str, scatter: bool) -> calls.Run:
        dtype = self._dtype(inp)
        code, op_code = nccl_type(dtype, self._consts, self._version), nccl_op(op, self._version)
        in_bytes, out_bytes = bf.nbytes_of(inp), bf.nbytes_of(out)
        if scatter:
            calls.check_multiple(out_bytes, in_bytes, self.world, "reduce_scatter")
        elif in_bytes != out_bytes:
            raise ValueError(f"all_reduce: input {in_bytes} B != output {out_bytes} B")
        count = out_bytes // bf.numpy_dtype(dtype).itemsize
        sp, rp = bf.device_pointer(inp), bf.device_pointer(out)
        comm, stream = self._comm, self.stream.ptr
        kind = nccl_native.REDUCE_SCATTER if scatter else nccl_native.ALL_REDUCE
        native = self._native(kind, sp, rp, count, code, op_code)
        if scatter:
            return _with_native(
                lambda: comm.reduceScatter(sp, rp, count, code, op_code, stream), native
            )
        return _with_native(lambda: comm.allReduce(sp, rp, count, code, op_code, stream), native)

    def all_gather(self, out, inp) -> None:
        self._call(("all_gather", id(out), id(inp)), out, inp, self._plan_gather, out, inp)

    def _plan_gather(self, out, inp) -> calls.Run:
        nbytes = bf.nbytes_of(inp)
        calls.check_multiple(nbytes, bf.nbytes_of(out), self.world, "all_gather")
        sp, rp = bf.device_pointer(inp), bf.device_pointer(out)
        comm, stream = self._comm, self.stream.ptr
        code, size = move_type(self._dtype(inp))
        native = self._native(nccl_native.ALL_GATHER, sp, rp, nbytes // size, code)
        return _with_native(lambda: comm.allGather(sp, rp, nbytes // size, code, stream), native)

    def send(self, buf, peer: int) -> None:
        self._call(("send", id(buf), peer), buf, None, self._plan_p2p, buf, peer, None, -1)

    def recv(self, buf, peer: int) -> None:
        self._call(("recv", id(buf), peer), buf, None, self._plan_p2p, None, -1, buf, peer)

    def send_recv(self, sendbuf, dst: int, recvbuf, src: int) -> None:
        key = ("send_recv", id(sendbuf), dst, id(recvbuf), src)
        self._call(key, sendbuf, recvbuf, self._plan_p2p, sendbuf, dst, recvbuf, src)

    def _plan_p2p(self, sendbuf, dst: int, recvbuf, src: int) -> calls.Run:
        for peer in (dst, src):
            if peer != -1 and not 0 <= peer < self.world:
                raise ValueError(f"peer rank {peer} outside world of {self.world} ranks")
        peers = []
        if sendbuf is not None:
            code, size = move_type(self._dtype(sendbuf))
            count = bf.nbytes_of(sendbuf) // size
            peers.append((dst, bf.device_pointer(sendbuf), count, code, 0, -1, 0))
        if recvbuf is not None:
            code, size = move_type(self._dtype(recvbuf))
            count = bf.nbytes_of(recvbuf) // size
            peers.append((src, 0, -1, 0, bf.device_pointer(recvbuf), count, code))
        return self._grouped(peers)

    # ---- synchronisation, timing, graphs ------------------------------------------------------
    def barrier(self) -> None:
        self._comm.allReduce(
            self._flag.data.ptr, self._flag.data.ptr, 1, NCCL_TYPES["float32"], 0, self.stream.ptr
        )
        self.stream.synchronize()

    def synchronize(self) -> None:
        self.stream.synchronize()

    def timer(self) -> CudaEventTimer:
        return CudaEventTimer(self._cupy, self.stream, self._events)

    def capture(self, fn: Callable[[], None], num_iters: int) -> Callable[[], None] | None:
        """Record `num_iters` calls of `fn` (which must issue work on this comm) in one graph."""
        if num_iters < 1:
            raise ValueError(f"num_iters={num_iters} must be >= 1")
        fn()  # prepare plans outside the capture
        self.stream.synchronize()
        self.stream.begin_capture()
        try:
            for _ in range(num_iters):
                fn()
        finally:
            graph = self.stream.end_capture()
        if hasattr(graph, "upload"):  # pre-load the graph so the first replay is not slower
            graph.upload(self.stream)
        self._graphs.append(graph)
        stream = self.stream
        return lambda: graph.launch(stream)

    def repeat(self, fn: Callable[[], None], num_iters: int) -> Callable[[], None] | None:
        """Record the NCCL calls one fn() makes (running it once) and return a function making
        them `num_iters` times from compiled code, as nccl-tests' C loop issues its ops; None
        when NCCL or numba is not reachable that way or fn made a call that cannot be recorded."""
        if self._lib is None or num_iters < 1:
            return None
        self._recording = []
        try:
            fn()
        finally:
            recorded, self._recording = self._recording, None
        if not recorded or None in recorded:
            return None
        try:
            self._lib.loop()
        except ImportError:
            return None
        flat = [call for natives in recorded for call in natives or ()]
        return nccl_native.repeater(self._lib, flat, num_iters, self.rank)

    # ---- host objects ---------------------------------------------------------------------------
    def gather_object(self, obj: Any) -> list[Any]:
        self._num_objects += 1
        prefix = f"{self._ctx['prefix']}/obj{self._num_objects}"
        self._store.set(f"{prefix}/{self.rank}", pickle.dumps(obj))
        return [pickle.loads(self._store.get(f"{prefix}/{r}")) for r in range(self.world)]

    def max_over_ranks(self, values: np.ndarray) -> np.ndarray:
        host = np.ascontiguousarray(values, dtype=np.float64)
        with self.stream:  # copy on the communication stream, ordered before the reduction
            dev = self._cupy.asarray(host)
        ptr = dev.data.ptr
        self._comm.allReduce(ptr, ptr, host.size, NCCL_TYPES["float64"], 2, self.stream.ptr)
        self.stream.synchronize()
        return self._cupy.asnumpy(dev)

    def split(self, color: int, key: int) -> NcclComm:
        members = self.gather_object((color, key, self.rank, self.node))
        group = sorted((k, r, n) for c, k, r, n in members if c == color)
        index = [r for _, r, _ in group].index(self.rank)
        name = f"{self._ctx['prefix']}/split{self._num_objects}/{color}"
        uid = _exchange_uid(self._nccl, self._store, name, leader=index == 0)
        comm = self._nccl.NcclCommunicator(len(group), uid, index)
        place = calls.placement([n for _, _, n in group], index)
        ctx = {**self._ctx, "prefix": name}
        return NcclComm(ctx, comm, index, len(group), place)

    def abort(self) -> None:
        """Abort the communicator (for a watchdog: unblocks ranks stuck in NCCL)."""
        self._comm.abort()

    def close(self) -> None:
        self._plans.clear()
        self._graphs.clear()
        if self._comm is not None:
            self.stream.synchronize()
            self._comm.destroy()
            self._comm = None


def _with_native(run: calls.Run, *natives: nccl_native.NativeCall) -> calls.Run:
    """`run` carrying the NCCL calls it makes (what `repeat` records)."""
    run.native = natives  # type: ignore[attr-defined]
    return run


def _weak(buf: Any) -> Any:
    import weakref

    return weakref.ref(buf)


def _exchange_uid(nccl: Any, store: Any, key: str, leader: bool) -> Any:
    if leader:
        uid = nccl.get_unique_id()
        store.set(key, pickle.dumps(uid))
        return uid
    return pickle.loads(store.get(key))


def create(launch: LaunchInfo) -> NcclComm:
    """Pick the GPU, rendezvous through a TCPStore, and create the NCCL communicator.

    `launch.options` (the runner passes MPI's options to every backend) are ignored."""
    try:
        import cupy
        from cupy.cuda import nccl
        from torch.distributed import TCPStore
    except ImportError as exc:
        raise BackendUnavailable(
            f"the nccl backend needs CuPy with NCCL and torch ({exc}); "
            "pip install 'epbench[cuda,torch]' on a GPU machine"
        ) from None
    num_gpus = cupy.cuda.runtime.getDeviceCount()
    if num_gpus == 0:
        raise BackendUnavailable("the nccl backend needs a CUDA GPU; none is visible")
    device = launch.host_local_rank % num_gpus
    cupy.cuda.Device(device).use()
    store = TCPStore(
        launch.master_addr,
        launch.master_port,
        launch.world,
        launch.rank == 0,
        timeout=datetime.timedelta(seconds=launch.timeout_s),
    )
    uid = _exchange_uid(nccl, store, "epbench/nccl/uid", leader=launch.rank == 0)
    comm = nccl.NcclCommunicator(launch.world, uid, launch.rank)
    ctx = {"cupy": cupy, "nccl": nccl, "store": store, "device": device, "prefix": "epbench/nccl"}
    place = {k: getattr(launch, k) for k in ("local_rank", "local_world", "node", "num_nodes")}
    return NcclComm(ctx, comm, launch.rank, launch.world, place)
