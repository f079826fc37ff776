"""The fused compressed all-to-all (--codec-fused) without GPUs: where each block goes, the
whole exchange run by threads posing as ranks over shared CPU buffers, and the one-line
errors for every setup that cannot map peer memory."""

from __future__ import annotations

import importlib.util
import re
import threading
import types
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from collectives import ops
from collectives.backends import peer_memory
from collectives.ops import compressed_fused as fused
from collectives.ops.compressed import Compressed

HIDDEN = 300  # three tiles, the last one short


def test_routes_start_after_self_and_end_with_the_local_block() -> None:
    got = fused.routes(rank=1, world=3, per_block=2, block_bytes=10)
    assert [r.dst for r in got] == [2, 0, 1]
    assert [(r.token_start, r.token_stop) for r in got] == [(4, 6), (0, 2), (2, 4)]
    assert {(r.offset_bytes, r.num_bytes) for r in got} == {(10, 10)}


@pytest.mark.parametrize("world", [1, 2, 5])
def test_routes_fill_every_receive_buffer_exactly_once(world: int) -> None:
    per_block, block_bytes = 3, 7
    written = np.zeros((world, world * block_bytes), dtype=np.int64)
    for src in range(world):
        mine = fused.routes(src, world, per_block, block_bytes)
        tokens = sorted(t for r in mine for t in range(r.token_start, r.token_stop))
        assert tokens == list(range(world * per_block))  # every token sent once
        for r in mine:
            written[r.dst, r.offset_bytes : r.offset_bytes + r.num_bytes] += 1
            assert r.offset_bytes == src * block_bytes  # sender order, as NCCL leaves it
    assert (written == 1).all()


@pytest.mark.parametrize(("rank", "world", "per_block"), [(2, 2, 1), (-1, 2, 1), (0, 2, 0)])
def test_routes_reject_impossible_layouts(rank: int, world: int, per_block: int) -> None:
    with pytest.raises(ValueError, match="routes: rank"):
        fused.routes(rank, world, per_block, 8)


# ---- the whole exchange: one thread per rank, buffers shared in this process ----------------
class SharedPeers:
    """Receive buffers of `world` ranks in one process; a barrier is a threading barrier."""

    def __init__(self, world: int, num_bytes: int) -> None:
        self.buffers = [torch.zeros(num_bytes, dtype=torch.uint8) for _ in range(world)]
        self.meet = threading.Barrier(world, timeout=30)
        self.calls: list[tuple[int, int]] = []
        self.closed: list[tuple[int, int]] = []


class FakePeerBuffer:
    mapping, note = "fake", ""

    def __init__(self, shared: SharedPeers, rank: int) -> None:
        self.shared, self.rank = shared, rank
        self.num_bytes = shared.buffers[0].numel()

    def local(self) -> torch.Tensor:
        return self.shared.buffers[self.rank]

    def view(self, peer: int, offset_bytes: int, num_bytes: int) -> torch.Tensor:
        return self.shared.buffers[peer][offset_bytes : offset_bytes + num_bytes]

    def barrier(self, channel: int) -> None:
        self.shared.calls.append((self.rank, channel))
        self.shared.meet.wait()

    def close(self, comm: Any) -> None:
        self.shared.closed.append((self.rank, self.num_bytes))


class CpuComm:
    """The little of `Comm` the op's make_inputs / run / check touch."""

    backend, device, stream, num_nodes = "torch-nccl", "cpu", None, 1

    def __init__(self, rank: int, world: int) -> None:
        self.rank, self.world = rank, world

    def from_numpy(self, array: np.ndarray, dtype: str) -> torch.Tensor:
        torch_dtype = torch.bfloat16 if dtype == "bfloat16" else torch.float32
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64)).to(torch_dtype)

    def empty(self, count: int, dtype: str) -> torch.Tensor:
        return torch.empty(count, dtype=torch.uint8)

    def synchronize(self) -> None:
        return None


def exchange(
    world: int, codec: str, dtype: str, monkeypatch: pytest.MonkeyPatch, num_runs: int = 2
) -> tuple[list[int], SharedPeers, list[Any]]:
    per_block = 3
    size = world * per_block * HIDDEN * (2 if dtype == "bfloat16" else 4)  # per_block per peer
    op_of = [
        Compressed(ops.get("alltoall", seed=5), codec, hidden=HIDDEN, impl="torch", fused=True)
        for _ in range(world)
    ]
    num_bytes = world * op_of[0].codec_wire_bytes(per_block)
    shared = SharedPeers(world, num_bytes)
    opened: list[tuple[int, int]] = []

    def fake_open(comm: Any, nbytes: int, device: Any, timeout_s: float, mapping: str) -> Any:
        opened.append((comm.rank, nbytes))
        return FakePeerBuffer(shared, comm.rank)

    monkeypatch.setattr(peer_memory, "open_peer_buffer", fake_open)
    comms = [CpuComm(r, world) for r in range(world)]
    bufs = [op_of[r].make_inputs(comms[r], size, dtype) for r in range(world)]
    assert sorted(opened) == [(r, num_bytes) for r in range(world)]

    def rank_main(r: int) -> None:
        for _ in range(num_runs):
            op_of[r].run(comms[r], bufs[r])

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    wrong = [op_of[r].check(comms[r], bufs[r]) for r in range(world)]
    return wrong, shared, bufs


@pytest.mark.parametrize(
    ("world", "codec", "dtype"),
    [(2, "fp8_e4m3", "bfloat16"), (3, "logfmt8", "float32"), (4, "bf16", "bfloat16")],
)
def test_fused_exchange_decodes_what_every_sender_meant(
    world: int, codec: str, dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong, shared, bufs = exchange(world, codec, dtype, monkeypatch)
    assert wrong == [0] * world
    for r in range(world):  # every run: FREE, then the encodes, then FULL
        assert [c for rank, c in shared.calls if rank == r] == [fused.FREE, fused.FULL] * 2
    assert bufs[0].recv.data_ptr() == shared.buffers[0].data_ptr()  # decode reads in place


def test_a_larger_size_closes_the_smaller_mapping_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each growth of the peer buffer unmaps and frees the previous one (on every rank, as
    they all grow at the same size); a size that fits reuses it."""
    shared = SharedPeers(1, 0)
    events: list[tuple[str, int]] = []

    class Growing(FakePeerBuffer):
        def __init__(self, nbytes: int) -> None:
            super().__init__(shared, 0)
            self.num_bytes = nbytes

        def close(self, comm: Any) -> None:
            events.append(("close", self.num_bytes))

    def fake_open(comm: Any, nbytes: int, device: Any, timeout_s: float, mapping: str) -> Any:
        events.append(("open", nbytes))
        return Growing(nbytes)

    monkeypatch.setattr(peer_memory, "open_peer_buffer", fake_open)
    op = Compressed(ops.get("alltoall", seed=5), "fp8_e4m3", hidden=HIDDEN, impl="torch",
                    fused=True)  # fmt: skip
    comm = CpuComm(0, 1)
    token = HIDDEN * 2  # one bf16 token
    for tokens in (2, 4, 4, 1, 8):
        op.make_inputs(comm, tokens * token, "bfloat16")
    sizes = [op.codec_wire_bytes(t) for t in (2, 4, 8)]
    assert events == [("open", sizes[0]), ("close", sizes[0]), ("open", sizes[1]),
                      ("close", sizes[1]), ("open", sizes[2])]  # fmt: skip


def test_ipc_close_unmaps_the_peers_then_frees_its_own_after_everyone_has() -> None:
    """The order that keeps an exported allocation alive while a peer still maps it."""
    calls: list[tuple[Any, ...]] = []

    class Runtime:
        def deviceSynchronize(self) -> None:
            calls.append(("sync",))

        def ipcCloseMemHandle(self, ptr: int) -> None:
            calls.append(("unmap", ptr))

        def free(self, ptr: int) -> None:
            calls.append(("free", ptr))

    class Device:
        def __init__(self, index: int) -> None:
            pass

        def __enter__(self) -> None:
            return None

        def __exit__(self, *exc: object) -> None:
            return None

    class Comm:
        def barrier(self) -> None:
            calls.append(("barrier",))

    fake_cupy = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=Runtime(), Device=Device))
    buf = object.__new__(peer_memory.IpcPeerBuffer)
    buf._cupy, buf._index, buf.rank = fake_cupy, 0, 1
    buf._ptr, buf._bases, buf._streams = 200, [100, 200, 300], {}
    buf.close(Comm())
    assert calls == [("sync",), ("barrier",), ("unmap", 100), ("unmap", 300), ("barrier",),
                     ("free", 200)]  # fmt: skip


def _nvrtc_ptx(source: str) -> str:
    """PTX for sm_90 of a CUDA source, by NVRTC from its pip package (no GPU needed)."""
    import ctypes
    import pathlib

    import nvidia.cuda_nvrtc

    lib_dir = pathlib.Path(next(iter(nvidia.cuda_nvrtc.__path__))) / "lib"
    lib = ctypes.CDLL(str(next(lib_dir.glob("libnvrtc.so.*"))))
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"barrier.cu", 0,
                                  None, None) == 0  # fmt: skip
    opts = (ctypes.c_char_p * 1)(b"--gpu-architecture=compute_90")
    status = lib.nvrtcCompileProgram(prog, 1, opts)
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    assert status == 0, log.value.decode()
    lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
    ptx = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetPTX(prog, ptx)
    return ptx.value.decode()


@pytest.mark.skipif(importlib.util.find_spec("nvidia.cuda_nvrtc") is None,
                    reason="needs NVRTC (nvidia-cuda-nvrtc-cu12)")  # fmt: skip
def test_the_ipc_barrier_kernel_compiles_with_release_then_acquire() -> None:
    """The CUDA-IPC barrier (compiled by CuPy only on GPU machines) builds for sm_90: it
    signals the peer with release compare-and-swaps, takes its own flag with acquire ones
    (on another address, after), and traps on timeout."""
    ptx = _nvrtc_ptx(peer_memory._BARRIER_SOURCE)
    assert ".entry epbench_peer_barrier" in ptx and "trap;" in ptx and "%globaltimer" in ptx
    atoms = re.findall(r"atom\.(release|acquire)\.sys\.global\.cas\.b32 %r\d+, \[(%rd\d+)\]",
                       ptx)  # fmt: skip
    kinds = [kind for kind, _ in atoms]
    assert kinds and kinds[0] == "release" and "acquire" in kinds
    assert kinds.index("acquire") > max(i for i, k in enumerate(kinds) if k == "release")
    released = {addr for kind, addr in atoms if kind == "release"}
    acquired = {addr for kind, addr in atoms if kind == "acquire"}
    assert released.isdisjoint(acquired)  # the peer's pad, then this rank's own


def test_a_block_written_to_the_wrong_slot_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def swapped(rank: int, world: int, per_block: int, block_bytes: int) -> list[fused.Route]:
        good = real(rank, world, per_block, block_bytes)
        return [
            fused.Route(r.dst, r.token_start, r.token_stop, (world - 1 - rank) * block_bytes,
                        r.num_bytes)
            for r in good
        ]  # fmt: skip

    real = fused.routes
    monkeypatch.setattr(fused, "routes", swapped)
    wrong, _, _ = exchange(2, "fp8_e4m3", "bfloat16", monkeypatch, num_runs=1)
    assert all(w > 0 for w in wrong)


# ---- setups that cannot fuse: named before anything starts --------------------------------
def test_fused_needs_alltoall_with_one_chunk() -> None:
    with pytest.raises(ValueError, match="works with alltoall and one chunk"):
        Compressed(ops.get("allgather"), "bf16", fused=True)
    with pytest.raises(ValueError, match="--codec-chunks 2"):
        Compressed(ops.get("alltoall"), "bf16", fused=True, chunks=2)
    with pytest.raises(ValueError, match="choose one of auto, symmetric-memory, cuda-ipc"):
        Compressed(ops.get("alltoall"), "bf16", fused=True, peer_mapping="nvshmem")


@pytest.mark.parametrize(
    ("backend", "num_nodes", "device", "message"),
    [
        ("gloo", 1, "cpu", "needs CUDA ranks on one node"),
        ("mpi", 1, "cuda", "got --backend mpi"),
        ("torch-nccl", 1, "cpu", "on cpu"),
        ("nccl", 2, "cuda", "span 2 nodes"),
    ],
)
def test_unsupported_setups_say_what_is_needed(
    backend: str, num_nodes: int, device: str, message: str
) -> None:
    why = peer_memory.fused_unsupported(backend, num_nodes, device)
    assert why is not None and message in why
    assert peer_memory.fused_unsupported("torch-nccl", 1, "cuda:1") is None
    assert peer_memory.fused_unsupported("nccl", 1, "cuda") is None


def test_open_refuses_cpu_ranks_before_mapping_anything() -> None:
    with pytest.raises(ValueError, match="needs CUDA ranks on one node"):
        peer_memory.open_peer_buffer(CpuComm(0, 2), 64, torch.device("cpu"), 10.0)


class AgreeingComm:
    """Rank 0 of a pretend group: gather_object returns this rank's value followed by what
    the other ranks said at that step (`peers`, one list per call)."""

    rank, world = 0, 2

    def __init__(self, peers: list[list[str]]) -> None:
        self.peers, self.gathered = peers, []

    def gather_object(self, value: str) -> list[str]:
        self.gathered.append(value)
        return [value, *self.peers[len(self.gathered) - 1]]


class FakeSymmetric:
    """SymmetricPeerBuffer's two steps, recorded; the allocation fails when told to."""

    calls: ClassVar[list[str]] = []
    fail_allocation = False
    mapping, note = "symmetric-memory", ""

    def __init__(self, comm: Any, num_bytes: int, device: Any, timeout_ms: int) -> None:
        FakeSymmetric.calls.append("allocate")
        if FakeSymmetric.fail_allocation:
            raise RuntimeError("symmetric memory is not supported here")

    def rendezvous(self) -> None:
        FakeSymmetric.calls.append("rendezvous")


class FakeIpc:
    mapping, note = "cuda-ipc", ""

    def __init__(self, comm: Any, num_bytes: int, device: Any, timeout_ms: int) -> None:
        pass


@pytest.mark.parametrize(
    ("mine_fails", "peers", "expect_calls", "expect"),
    [
        (False, [[""], [""]], ["allocate", "rendezvous"], "symmetric-memory"),
        # a peer's allocation failed: this rank must not enter the rendezvous
        (False, [["rank 1: no symmetric memory"]], ["allocate"], "cuda-ipc"),
        (True, [[""]], ["allocate"], "cuda-ipc"),
        (False, [[""], ["rank 1: rendezvous failed"]], ["allocate", "rendezvous"], "cuda-ipc"),
    ],
)
def test_symmetric_memory_rendezvous_only_when_every_rank_allocated(
    mine_fails: bool, peers: list[list[str]], expect_calls: list[str], expect: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    FakeSymmetric.calls, FakeSymmetric.fail_allocation = [], mine_fails
    monkeypatch.setattr(peer_memory, "SymmetricPeerBuffer", FakeSymmetric)
    monkeypatch.setattr(peer_memory, "IpcPeerBuffer", FakeIpc)
    comm = AgreeingComm(peers)
    buf = peer_memory._open(comm, 64, torch.device("cpu"), 10.0, "auto")
    assert FakeSymmetric.calls == expect_calls
    assert buf.mapping == expect
    assert len(comm.gathered) == len(expect_calls)  # one agreement per step taken
    if expect == "cuda-ipc":
        assert buf.note.startswith("symmetric memory unavailable: rank ")


def test_forced_symmetric_memory_names_the_rank_that_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    FakeSymmetric.calls, FakeSymmetric.fail_allocation = [], False
    monkeypatch.setattr(peer_memory, "SymmetricPeerBuffer", FakeSymmetric)
    comm = AgreeingComm([["rank 1: no symmetric memory"]])
    with pytest.raises(peer_memory.CommError, match="symmetric-memory: rank 1: no symmetric"):
        peer_memory._open(comm, 64, torch.device("cpu"), 10.0, "symmetric-memory")
    assert FakeSymmetric.calls == ["allocate"]


def test_barrier_timeout_is_half_of_t_and_at_least_a_second() -> None:
    assert peer_memory.barrier_timeout_ms(300.0) == 150_000
    assert peer_memory.barrier_timeout_ms(0.5) == 1000


FUSED = ["run", "alltoall", "-b", "1M", "-e", "1M", "-d", "bfloat16", "--codec-fused"]
TWO = ["--np", "2"]
CLI_CASES = [
    ([*FUSED], "--codec-fused needs --codec NAME"),
    ([*FUSED, "--codec", "fp8_e4m3", *TWO], "needs CUDA ranks"),
    ([*FUSED, "--codec", "bf16", "--backend", "gloo"], "--backend gloo"),
    ([*FUSED, "--codec", "bf16", "--backend", "mpi", *TWO], "got --backend mpi"),
    ([*FUSED, "--codec", "bf16", "--backend", "torch-nccl", *TWO, "--gpus-per-node", "1"],
     "span 2 nodes"),
    ([*FUSED, "ipc", "--codec", "bf16", *TWO], "--codec-fused 'ipc'"),
    ([*FUSED, "--codec", "bf16", "--codec-chunks", "2", *TWO], "one chunk"),
    (["run", "allgather", "-d", "bfloat16", "--codec", "bf16", "--codec-fused", *TWO],
     "not allgather"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "message"), CLI_CASES)
def test_cli_names_what_fused_needs(argv: list[str], message: str, cli) -> None:  # type: ignore[no-untyped-def]
    res = cli(*argv, timeout=60)
    assert res.returncode != 0
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("epbench: error:") and message in lines[0], lines[0]


def test_a_cuda_error_under_fused_points_at_the_barrier() -> None:
    from types import SimpleNamespace

    from bench.cmd_run import _fused_hint

    trapped = RuntimeError("CUDA error: unspecified launch failure")
    hint = _fused_hint(SimpleNamespace(codec_fused="auto", timeout=20.0), trapped)
    assert "within 10 s" in hint and "[FATAL]" in hint
    assert _fused_hint(SimpleNamespace(codec_fused=None, timeout=20.0), trapped) == ""
    other = RuntimeError("connection reset")
    assert _fused_hint(SimpleNamespace(codec_fused="auto", timeout=20.0), other) == ""
