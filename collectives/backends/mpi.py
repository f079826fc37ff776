"""The `mpi` backend: the `Comm` protocol over mpi4py.

What moves MPI numbers from Python is controlled here and recorded in `facts()`: the thread
level (set through `mpi4py.rc` before `mpi4py.MPI` is first imported; MPI_THREAD_MULTIPLE,
mpi4py's default, costs microseconds per call), page-aligned host buffers carved from one
reused arena, and optional MPI-4 persistent requests. Each call on a given set of buffers is
prepared once (message specs, staging copies, persistent request) and replayed, so a timed
call costs one MPI call plus a dictionary look-up.

Device buffers (torch CUDA, CuPy, Numba, or `FakeDeviceArray` in CPU tests) go to MPI
directly when the library is CUDA-aware, which is probed (MPIX_Query_cuda_support, Open MPI's
ompi_info) and then confirmed with a real device-buffer Allreduce; otherwise they are staged
through host memory. Data moves as bytes, so every dtype moves; reductions use MPI's own types
(float16 included where the library has MPI_FLOAT16_T) and a user-defined op computed by
numpy/ml_dtypes for bfloat16. float8 reductions are refused.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from collectives.backends import buffers as bf
from collectives.backends import calls, mpi_native, mpi_setup, mpi_wire
from collectives.backends.base import CommError, LaunchInfo, canonical_dtype
from collectives.backends.mpi_wire import Wire

Run = calls.Run


class MpiComm:
    """`Comm` over an mpi4py communicator; see the module docstring."""

    backend = "mpi"
    capture_records_calls = True
    """`capture` records MPI calls, so it only fits ops whose run is nothing but calls."""

    def __init__(
        self, comm: Any, setup: mpi_setup.Setup, place: dict[str, int], alloc: bf.Allocator
    ) -> None:
        self._comm = comm
        self._setup = setup
        self._mpi = setup.mpi
        self._alloc = alloc
        self._plans = calls.Plans()
        self._natives: dict[tuple[Any, ...], Callable[[], mpi_native.NativeCall | None]] = {}
        self._recording: list[mpi_native.NativeCall | None] | None = None
        self._native: mpi_native.Native | bool | None = False  # False: not loaded yet
        self._last: dict[str, tuple[Any, ...]] = {}
        self.forget_plans()
        self._dtypes: dict[int, tuple[Any, str]] = {}
        self.rank, self.world = comm.Get_rank(), comm.Get_size()
        self.local_rank, self.local_world = place["local_rank"], place["local_world"]
        self.node, self.num_nodes = place["node"], place["num_nodes"]
        self.device = "cuda" if alloc.kind in ("cupy", "numba") or alloc.on_device else "cpu"

    # ---- facts and buffers --------------------------------------------------------------
    def facts(self) -> dict[str, Any]:
        return {**self._setup.facts(), "buffer_kind": self._alloc.kind, "device": self.device}

    def supports_dtype(self, dtype: str) -> bool:
        return canonical_dtype(dtype) in bf.NUMPY_DTYPES

    def empty(self, count: int, dtype: str) -> Any:
        if count < 0:
            raise ValueError(f"count={count} must be >= 0")
        dtype = canonical_dtype(dtype)
        buf = self._alloc.empty(count, dtype)
        self._dtypes[id(buf)] = (weakref.ref(buf), dtype)
        return buf

    def from_numpy(self, array: np.ndarray, dtype: str) -> Any:
        buf = self.empty(int(np.asarray(array).size), dtype)
        bf.fill_from_numpy(
            buf, array, canonical_dtype(dtype), self._alloc.host(buf_len(buf), dtype)
        )
        return buf

    def to_numpy(self, buf: Any) -> np.ndarray:
        return bf.to_float64(buf, self._dtype(buf), self._alloc.host)

    def _dtype(self, buf: Any) -> str:
        return bf.registered_dtype(self._dtypes, buf)

    # ---- wiring ---------------------------------------------------------------------------
    def _wire(self, buf: Any, role: str, host_compute: bool = False) -> Wire:
        return mpi_wire.wire(buf, role, host_compute, self._setup.cuda_direct, self._alloc)

    def _call(self, key: tuple[Any, ...], a: Any, b: Any, build: Any, *args: Any) -> Any:
        """Run the prepared call for `key` on buffers (a, b), preparing it on first use;
        returns the plan entry (weak refs to a and b, run, cleanup)."""
        entry = self._plans.entries.get(key)
        if entry is None or entry[0]() is not a or entry[1]() is not b:
            run, cleanup, self._natives[key] = build(*args)
            self._plans.put(key, a, b, run, cleanup)
            entry = self._plans.entries[key]
        if self._recording is not None:
            self._recording.append(self._natives[key]())
        try:
            entry[2]()
        except self._mpi.Exception as exc:
            raise self._error(key, exc) from None
        return entry

    def forget_plans(self) -> None:
        """Drop every prepared call (frees persistent requests)."""
        self._plans.clear()
        self._natives.clear()
        self._last = {name: _NO_PLAN for name in ("all_to_all", "send", "recv")}

    def _error(self, key: tuple[Any, ...], exc: Exception) -> CommError:
        return CommError(f"MPI {key[0]} failed on rank {self.rank}: {exc}")

    def _plan(
        self,
        wires: Sequence[Wire],
        blocking: Run,
        persistent: Callable[[], Any] | None,
        after: Sequence[Run] = (),
        native: tuple[str, tuple[Any, ...]] | None = None,
    ) -> tuple[Run, Run | None, Callable[[], mpi_native.NativeCall | None]]:
        """Compose staging around the MPI call (and `after` it, before copies back to the
        device); persistent requests instead of the blocking call when enabled. `native`
        (C function name, arguments) is what `capture` may replay, bound only when capture
        asks and only for plain calls on host memory."""
        persist = persistent is not None and self._setup.persistent
        plain = not after and not persist

        def native_call() -> mpi_native.NativeCall | None:
            return mpi_native.keep(self._native_lib(), native, wires, plain)

        cleanup = None
        call = blocking
        if persist:
            assert persistent is not None
            reqs = persistent()
            reqs = reqs if isinstance(reqs, list) else [reqs]
            call = calls.start_wait(self._mpi, reqs)
            cleanup = lambda: [r.Free() for r in reqs]  # noqa: E731
        pre = [w.stage_in for w in wires if w.stage_in is not None]
        post = [*after, *(w.stage_out for w in wires if w.stage_out is not None)]
        return calls.compose(pre, call, post), cleanup, native_call

    def _native_lib(self) -> mpi_native.Native | None:
        if self._native is False:
            self._native = mpi_native.load(self._mpi)
        return self._native or None

    # ---- collectives ------------------------------------------------------------------------
    def all_to_all(self, out, inp, send_counts=None, recv_counts=None) -> None:
        # hot path: the same buffers as last time cost two weak-reference checks (a function
        # call or a dictionary look-up is already ~5% of a small Alltoall); see _call
        last = self._last["all_to_all"]
        if send_counts is None and recv_counts is None and last[0]() is out and last[1]() is inp:
            try:
                return last[2]()
            except self._mpi.Exception as exc:
                raise self._error(("all_to_all",), exc) from None
        sc = None if send_counts is None else tuple(send_counts)
        rc = None if recv_counts is None else tuple(recv_counts)
        key = ("all_to_all", id(out), id(inp), sc, rc)
        entry = self._call(key, out, inp, self._plan_all_to_all, out, inp, sc, rc)
        if sc is None and rc is None:
            self._last["all_to_all"] = entry

    def _plan_all_to_all(self, out, inp, sc, rc):
        itemsize = bf.numpy_dtype(self._dtype(inp)).itemsize
        w_in, w_out = self._wire(inp, "in"), self._wire(out, "out")
        s_lay = calls.all_to_all_layout(sc, self.world, w_in.nbytes, itemsize, "send")
        r_lay = calls.all_to_all_layout(rc, self.world, w_out.nbytes, itemsize, "receive")
        byte = self._mpi.BYTE
        if sc is None and rc is None:
            if s_lay.counts_bytes[0] > r_lay.counts_bytes[0]:
                raise ValueError(f"all_to_all: output of {w_out.nbytes} B < input {w_in.nbytes} B")
            s = [w_in.memory, s_lay.counts_bytes[0], byte]
            r = [w_out.memory, s_lay.counts_bytes[0], byte]
            return self._plan(
                [w_in, w_out],
                partial(self._comm.Alltoall, s, r),
                lambda: self._comm.Alltoall_init(s, r),
                native=("alltoall", (*s, *r, self._comm)),
            )
        s = [w_in.memory, (s_lay.counts_bytes, s_lay.displs_bytes), byte]
        r = [w_out.memory, (r_lay.counts_bytes, r_lay.displs_bytes), byte]
        return self._plan(
            [w_in, w_out],
            partial(self._comm.Alltoallv, s, r),
            lambda: self._comm.Alltoallv_init(s, r),
            native=("alltoallv", (s[0], *s[1], byte, r[0], *r[1], byte, self._comm)),
        )

    def all_reduce(self, out, inp, op: str = "sum") -> None:
        key = ("all_reduce", id(out), id(inp), op)
        entry = self._plans.entries.get(key)
        if (
            entry is not None
            and entry[0]() is out
            and entry[1]() is inp
            and self._recording is None
        ):
            try:
                return entry[2]()
            except self._mpi.Exception as exc:
                raise self._error(key, exc) from None
        self._call(key, out, inp, self._plan_reduce, out, inp, op, False)

    def reduce_scatter(self, out, inp, op: str = "sum") -> None:
        key = ("reduce_scatter", id(out), id(inp), op)
        self._call(key, out, inp, self._plan_reduce, out, inp, op, True)

    def _plan_reduce(self, out, inp, op: str, scatter: bool):
        dtype = self._dtype(inp)
        how = self._setup.reduction(dtype, op)
        in_place = out is inp and not scatter
        w_out = self._wire(out, "inout" if in_place else "out", how.host_compute)
        w_in = w_out if in_place else self._wire(inp, "in", how.host_compute)
        if scatter:
            calls.check_multiple(w_out.nbytes, w_in.nbytes, self.world, "reduce_scatter")
        elif w_in.nbytes != w_out.nbytes:
            raise ValueError(f"all_reduce: input {w_in.nbytes} B != output {w_out.nbytes} B")
        count = w_out.nbytes // how.itemsize
        after = (
            [calls.divider(w_out.host.view(bf.numpy_dtype(dtype)), self.world)]
            if how.divide_by_world
            else []
        )
        r = [w_out.memory, count, how.datatype]
        c = self._comm
        if scatter:
            s = [w_in.memory, count, how.datatype]  # mpi4py counts one block
            return self._plan(
                [w_in, w_out],
                partial(c.Reduce_scatter_block, s, r, how.op),
                lambda: c.Reduce_scatter_block_init(s, r, how.op),
                after,
                ("reduce_scatter_block", (w_in.memory, w_out.memory, *r[1:], how.op, c))
                if how.op.is_predefined
                else None,
            )
        s = self._mpi.IN_PLACE if in_place else [w_in.memory, count, how.datatype]
        return self._plan(
            [w_out] if in_place else [w_in, w_out],
            partial(c.Allreduce, s, r, how.op),
            lambda: c.Allreduce_init(s, r, how.op),
            after,
            None
            if in_place or not how.op.is_predefined
            else ("allreduce", (w_in.memory, *r, how.op, c)),
        )

    def all_gather(self, out, inp) -> None:
        self._call(("all_gather", id(out), id(inp)), out, inp, self._plan_gather, out, inp)

    def _plan_gather(self, out, inp):
        w_in, w_out = self._wire(inp, "in"), self._wire(out, "out")
        calls.check_multiple(w_in.nbytes, w_out.nbytes, self.world, "all_gather")
        s = [w_in.memory, w_in.nbytes, self._mpi.BYTE]
        r = [w_out.memory, w_in.nbytes, self._mpi.BYTE]
        return self._plan(
            [w_in, w_out],
            partial(self._comm.Allgather, s, r),
            lambda: self._comm.Allgather_init(s, r),
            native=("allgather", (*s, *r, self._comm)),
        )

    def send(self, buf, peer: int) -> None:
        last = self._last["send"]
        if last[0]() is buf and last[4] == peer:  # hot path, as in all_to_all
            try:
                return last[2]()
            except self._mpi.Exception as exc:
                raise self._error(("send",), exc) from None
        entry = self._call(("send", id(buf), peer), buf, None, self._plan_p2p, buf, peer, None, -1)
        self._last["send"] = (*entry, peer)

    def recv(self, buf, peer: int) -> None:
        last = self._last["recv"]
        if last[0]() is buf and last[4] == peer:
            try:
                return last[2]()
            except self._mpi.Exception as exc:
                raise self._error(("recv",), exc) from None
        entry = self._call(("recv", id(buf), peer), buf, None, self._plan_p2p, None, -1, buf, peer)
        self._last["recv"] = (*entry, peer)

    def send_recv(self, sendbuf, dst: int, recvbuf, src: int) -> None:
        key = ("send_recv", id(sendbuf), dst, id(recvbuf), src)
        self._call(key, sendbuf, recvbuf, self._plan_p2p, sendbuf, dst, recvbuf, src)

    def _plan_p2p(self, sendbuf, dst: int, recvbuf, src: int):
        for peer in (dst, src):
            if peer != -1 and not 0 <= peer < self.world:
                raise ValueError(f"peer rank {peer} outside world of {self.world} ranks")
        c, byte = self._comm, self._mpi.BYTE
        wires = []
        if sendbuf is not None:
            w_s = self._wire(sendbuf, "in")
            s = [w_s.memory, w_s.nbytes, byte]
            wires.append(w_s)
        if recvbuf is not None:
            w_r = self._wire(recvbuf, "out")
            r = [w_r.memory, w_r.nbytes, byte]
            wires.append(w_r)
        if recvbuf is None:
            native = ("send", (*s, dst, 0, c))
            return self._plan(wires, partial(c.Send, s, dst, 0), lambda: c.Send_init(s, dst, 0),
                              native=native)  # fmt: skip
        if sendbuf is None:
            native = ("recv", (*r, src, 0, c))
            return self._plan(wires, partial(c.Recv, r, src, 0), lambda: c.Recv_init(r, src, 0),
                              native=native)  # fmt: skip
        return self._plan(
            wires,
            partial(c.Sendrecv, s, dst, 0, r, src, 0),
            lambda: [c.Recv_init(r, src, 0), c.Send_init(s, dst, 0)],
            native=("sendrecv", (*s, dst, 0, *r, src, 0, c)),
        )

    # ---- host-side helpers ------------------------------------------------------------------
    def barrier(self) -> None:
        self._comm.Barrier()

    def synchronize(self) -> None:
        """MPI calls here are blocking and staging copies synchronous: nothing is pending."""

    def timer(self) -> calls.HostTimer:
        return calls.HostTimer()

    def repeat(self, fn: Callable[[], None], num_iters: int) -> Callable[[], None] | None:
        """None: loops are issued from Python (the mpi backend's compiled replay is `-G`)."""
        return None

    def capture(self, fn: Callable[[], None], num_iters: int) -> Callable[[], None] | None:
        """Record the MPI calls one fn() makes (running it once) and return a function that
        makes them `num_iters` times from compiled code (mpi_native.py); None when a call
        cannot be replayed that way (staging, host-side reduction, persistent requests)."""
        self._recording = []
        self._last = {name: _NO_PLAN for name in self._last}  # hot paths go through _call
        try:
            fn()
        finally:
            recorded, self._recording = self._recording, None
        if not 1 <= len(recorded) <= 3 or None in recorded:
            return None
        return mpi_native.replayer(recorded, num_iters, self.rank)  # type: ignore[arg-type]

    def gather_object(self, obj: Any) -> list[Any]:
        return list(self._comm.allgather(obj))

    def max_over_ranks(self, values: np.ndarray) -> np.ndarray:
        send = np.ascontiguousarray(values, dtype=np.float64)
        out = np.empty_like(send)
        self._comm.Allreduce(send, out, op=self._mpi.MAX)
        return out

    def split(self, color: int, key: int) -> MpiComm:
        sub = self._comm.Split(color, key)
        place = calls.placement(sub.allgather(self.node), sub.Get_rank())
        return MpiComm(sub, self._setup, place, self._alloc)

    def abort(self, code: int = 1) -> None:
        """End every rank of the job (MPI_Abort), e.g. from a watchdog."""
        self._mpi.COMM_WORLD.Abort(code)

    def close(self) -> None:
        self.forget_plans()
        if self._comm is not None and self._comm != self._mpi.COMM_NULL:
            self._comm.Free()
        self._comm = None


def create(launch: LaunchInfo) -> MpiComm:
    """Initialise MPI as `launch.options` ask, check it agrees with `launch`, return a Comm."""
    setup = mpi_setup.initialize(launch)
    world = setup.mpi.COMM_WORLD
    if (world.Get_rank(), world.Get_size()) != (launch.rank, launch.world):
        raise CommError(
            f"launcher says rank {launch.rank} of {launch.world}, MPI says rank "
            f"{world.Get_rank()} of {world.Get_size()}; "
            f"start the job with mpiexec -n {launch.world}"
        )
    alloc = setup.allocator
    comm = world.Dup()
    place = {k: getattr(launch, k) for k in ("local_rank", "local_world", "node", "num_nodes")}
    result = MpiComm(comm, setup, place, alloc)
    mpi_setup.decide_cuda(setup, result)
    return result


# ---- small pieces -------------------------------------------------------------------------------
_NO_PLAN = (calls.no_buffer, calls.no_buffer, None, None, None)
"""A `_last` entry that matches no buffer."""


def buf_len(buf: Any) -> int:
    return int(buf.numel()) if bf.kind_of(buf).startswith("torch") else int(buf.size)
