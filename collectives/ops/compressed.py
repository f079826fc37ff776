"""Compressed collectives: encode -> alltoall / allgather of the wire bytes -> decode.

`Compressed(base_op, codec_name)` wraps an alltoall or allgather op. Its payload is tokens
of `hidden` elements (float32 or bfloat16, seeded Gaussian activations with per-token
scales); a timed `run` encodes them with the codec, moves the uint8 wire rows with the base
op's collective and decodes what arrived. `size` keeps the base op's nccl-tests meaning in
the payload dtype (logical bytes), so algbw compares directly with the uncompressed op.
`check` compares the decoded tokens bit for bit with the codec applied locally to the
sender's tokens. `extra` reports logical, payload and wire bytes and times the three
phases separately (encode, transfer of the wire bytes, decode), untimed by the runner.
`fused=True` (alltoall on CUDA ranks of one node) encodes straight into the peers' mapped
receive buffers instead (compressed_fused.py); its phases are encode+transfer and decode.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from collectives import codecs
from collectives.backends import peer_memory
from collectives.backends.base import Comm
from collectives.ops import compressed_fused as fused
from collectives.ops import compressed_pipeline as pipe
from collectives.ops.base import Buffers, Collective, Sizes, elem_bytes, ring_matrix

LAYOUTS = ("alltoall", "allgather")
PAYLOAD_DTYPES = ("float32", "bfloat16")
DEFAULT_HIDDEN = 7168


def as_torch(buf: Any, dtype: str | None = None) -> torch.Tensor:
    """A torch view of a backend buffer (torch tensor, numpy array incl. ml_dtypes'
    bfloat16, or a DLPack array holding bfloat16 as raw 16-bit words)."""
    if isinstance(buf, torch.Tensor):
        tensor = buf
    elif isinstance(buf, np.ndarray):
        raw = buf.view(f"u{buf.itemsize}") if buf.dtype.type.__module__ == "ml_dtypes" else buf
        tensor = torch.from_numpy(raw)
    else:
        tensor = torch.from_dlpack(buf)
    if dtype == "bfloat16" and tensor.dtype in (torch.uint16, torch.int16):
        tensor = tensor.view(torch.bfloat16)
    return tensor


def payload_tokens(seed: int, rank: int, num_tokens: int, hidden: int) -> np.ndarray:
    """Rank `rank`'s tokens [num_tokens, hidden] (float64): Gaussian activations with a
    log-normal scale per token, a function of (seed, rank) only."""
    rng = np.random.default_rng([seed, rank, 0xC0DEC])
    scale = rng.lognormal(0.0, 1.0, size=(num_tokens, 1))
    return rng.standard_normal((num_tokens, hidden)) * scale


@contextlib.contextmanager
def on_comm_stream(comm: Comm, after_transfer: bool = False) -> Iterator[None]:
    """Run codec kernels where the collective runs: on the backend's stream when it exposes
    one (`comm.stream`, ordered with the collective); otherwise wait for the collective
    first (`after_transfer`) and, on CUDA, for the kernels before leaving."""
    stream = pipe.torch_stream(comm)  # torch's or CuPy's stream of the communicator
    if stream is not None:
        with torch.cuda.stream(stream):
            yield
        return
    if after_transfer:
        comm.synchronize()
    yield
    if comm.device.startswith("cuda"):
        torch.cuda.current_stream().synchronize()


class Compressed(Collective):
    """A base alltoall / allgather moving codec-compressed tokens."""

    def __init__(
        self,
        base: Collective,
        codec_name: str,
        *,
        hidden: int = DEFAULT_HIDDEN,
        impl: str = "auto",
        chunks: int = 1,
        fused: bool = False,
        peer_mapping: str = "auto",
        timeout_s: float = 300.0,
    ) -> None:
        if base.name not in LAYOUTS:
            raise ValueError(
                f"--codec {codec_name} works with {' and '.join(LAYOUTS)}, not {base.name}"
            )
        if hidden < 1:
            raise ValueError(f"hidden {hidden} must be >= 1")
        if chunks < 1 or (chunks > 1 and base.name != "alltoall"):
            raise ValueError(
                f"--codec-chunks {chunks}: must be >= 1, and above 1 only for alltoall "
                f"(not {base.name})"
            )
        if fused and (base.name != "alltoall" or chunks != 1):
            raise ValueError(
                f"--codec-fused works with alltoall and one chunk, not {base.name} with "
                f"--codec-chunks {chunks}"
            )
        self.chunks = chunks
        self.fused, self.timeout_s = fused, timeout_s
        self.peer_mapping = peer_memory.check_mapping(peer_mapping)
        self._peer: Any = None  # the mapped receive buffers, reused while large enough
        super().__init__(seed=base.seed)
        self.base = base
        self.name = base.name  # type: ignore[misc]
        self.codec = codecs.get(codec_name, impl)
        self.codec_name = codec_name
        self.hidden = hidden

    # ---- pure byte accounting -------------------------------------------------------
    def tokens(self, size_bytes: int, dtype: str, world: int) -> tuple[int, int]:
        """(tokens sent, tokens received) per rank at nccl-tests `size`: both layouts move
        blocks of size / world bytes (alltoall: per peer; allgather: per rank), rounded
        down to whole tokens."""
        per_block = size_bytes // elem_bytes(dtype) // world // self.hidden
        if per_block == 0:
            need = world * self.hidden * elem_bytes(dtype)
            raise ValueError(
                f"size {size_bytes} B holds no whole token of hidden {self.hidden} "
                f"({dtype}) per rank at {world} ranks; the smallest size is {need} B (raise -b)"
            )
        sent = per_block * world if self.name == "alltoall" else per_block
        return sent, per_block * world

    def sizes(self, size_bytes: int, dtype: str, world: int) -> Sizes:
        if dtype not in PAYLOAD_DTYPES:
            raise ValueError(f"--codec needs -d bfloat16 or float32, not {dtype}")
        sent, received = self.tokens(size_bytes, dtype, world)
        if self.chunks > 1:
            pipe.chunk_bounds(sent // world, self.chunks)  # every chunk holds a token per peer
        send, recv = sent * self.hidden, received * self.hidden
        count = send if self.name == "alltoall" else recv
        return Sizes(
            size_bytes=count * elem_bytes(dtype), count=count, send_count=send, recv_count=recv
        )

    def bus_bw_factor(self, world: int) -> float:
        return self.base.bus_bw_factor(world)

    def wire_ratio(self, dtype: str) -> float:
        """Wire bytes per payload byte."""
        row = self.codec.wire_bytes(1, self.hidden)
        return row / (self.hidden * elem_bytes(dtype))

    def traffic_matrix(self, size_bytes: int, dtype: str, world: int) -> np.ndarray:
        """Wire bytes between ranks (alltoall: every pair; allgather: nccl-tests' ring)."""
        per_block = self.tokens(size_bytes, dtype, world)[1] // world
        block_bytes = float(self.codec.wire_bytes(per_block, self.hidden))
        if self.name == "alltoall":
            return np.full((world, world), block_bytes, dtype=np.float64)
        return ring_matrix(world, block_bytes * (world - 1))

    # ---- calls on a communicator ----------------------------------------------------
    def make_inputs(self, comm: Comm, size_bytes: int, dtype: str) -> Buffers:
        s = self.sizes(size_bytes, dtype, comm.world)
        sent, received = s.send_count // self.hidden, s.recv_count // self.hidden
        x = payload_tokens(self.seed, comm.rank, sent, self.hidden)
        send = comm.from_numpy(x.reshape(-1), dtype)
        wire_send = comm.empty(self.codec.wire_bytes(sent, self.hidden), "uint8")
        wire_recv = comm.empty(self.codec.wire_bytes(received, self.hidden), "uint8")
        state = {"sent": sent, "received": received, "wire_send": wire_send, "decoded": None}
        if self.chunks > 1:
            x_t = as_torch(send, dtype).view(sent, self.hidden)
            bounds = pipe.chunk_bounds(sent // comm.world, self.chunks)
            chunked = pipe.chunk_major(x_t, comm.world, bounds)
            state["pipeline"] = pipe.Pipeline(
                comm, chunked, self._encode_into, self._decode_rows, self.codec_wire_bytes
            )
        if self.fused:
            x_t = as_torch(send, dtype).view(sent, self.hidden)
            state["fused"] = self._fused_send(comm, x_t)
            wire_recv = state["fused"].received()
        return Buffers(sizes=s, dtype=dtype, send=send, recv=wire_recv, state=state)

    def _fused_send(self, comm: Comm, x: torch.Tensor) -> fused.FusedSend:
        """Map every rank's receive buffer here (once, grown when a larger size needs it:
        the smaller mapping is closed first, on every rank alike, as every rank grows at the
        same size)."""
        per_block = x.shape[0] // comm.world
        block_bytes = self.codec_wire_bytes(per_block)
        num_bytes = comm.world * block_bytes
        if self._peer is None or self._peer.num_bytes < num_bytes:
            if self._peer is not None:
                self._peer.close(comm)
                self._peer = None
            self._peer = peer_memory.open_peer_buffer(
                comm, num_bytes, x.device, self.timeout_s, self.peer_mapping
            )
        block_routes = fused.routes(comm.rank, comm.world, per_block, block_bytes)
        return fused.FusedSend(self._peer, x, block_routes, self.codec.encode)

    def _encode(self, bufs: Buffers) -> Any:
        x = as_torch(bufs.send, bufs.dtype).view(bufs.state["sent"], self.hidden)
        return self._encode_into(x, bufs.state["wire_send"])

    def _encode_into(self, x: torch.Tensor, send: Any) -> Any:
        """The wire bytes of tokens `x` as the communicator sends them: the codec's own
        tensor where the backend takes torch tensors, else copied into its buffer `send`."""
        wire = self.codec.encode(x)
        if isinstance(send, torch.Tensor):
            return wire
        as_torch(send).copy_(wire)
        return send

    def codec_wire_bytes(self, num_tokens: int) -> int:
        return int(self.codec.wire_bytes(num_tokens, self.hidden))

    def _transfer(self, comm: Comm, wire: Any, bufs: Buffers) -> None:
        if self.name == "alltoall":
            comm.all_to_all(bufs.recv, wire)
        else:
            comm.all_gather(bufs.recv, wire)

    def _decode(self, bufs: Buffers) -> torch.Tensor:
        return self._decode_rows(bufs.recv, bufs.state["received"])

    def _decode_rows(self, recv: Any, num_tokens: int) -> torch.Tensor:
        return self.codec.decode(as_torch(recv), num_tokens, self.hidden)

    def run(self, comm: Comm, bufs: Buffers) -> None:
        pipeline = bufs.state.get("pipeline")
        if pipeline is not None:
            pipeline.run()
            return
        fused_send = bufs.state.get("fused")
        if fused_send is not None:
            with on_comm_stream(comm):  # barriers and kernels in one stream order
                fused_send.run()
                bufs.state["decoded"] = self._decode(bufs)
            return
        with on_comm_stream(comm):
            wire = self._encode(bufs)
        self._transfer(comm, wire, bufs)
        with on_comm_stream(comm, after_transfer=True):
            bufs.state["decoded"] = self._decode(bufs)

    def expected(self, comm: Comm, bufs: Buffers) -> torch.Tensor:
        """The codec applied locally to the tokens every sender meant for this rank."""
        sent, received = bufs.state["sent"], bufs.state["received"]
        per_block = received // comm.world
        parts = []
        for src in range(comm.world):
            tokens = comm.from_numpy(payload_tokens(self.seed, src, sent, self.hidden), bufs.dtype)
            x = as_torch(tokens, bufs.dtype).view(sent, self.hidden)
            if self.name == "alltoall":
                x = x[comm.rank * per_block : (comm.rank + 1) * per_block]
            parts.append(self.codec.decode(self.codec.encode(x), per_block, self.hidden))
        return torch.cat(parts)

    def check(self, comm: Comm, bufs: Buffers) -> int:
        comm.synchronize()
        got = bufs.state["decoded"]
        pipeline = bufs.state.get("pipeline")
        if pipeline is not None and pipeline.decoded:
            got = pipe.natural_order(pipeline.decoded, comm.world)
        if got is None:
            return int(bufs.sizes.recv_count)
        want = self.expected(comm, bufs)
        return int((got.view(torch.int32) != want.view(torch.int32)).sum())

    # ---- separately timed phases ----------------------------------------------------
    def _time(self, comm: Comm, fn: Callable[[], Any], num_iters: int) -> list[float]:
        timer = comm.timer()
        comm.barrier()
        for _ in range(num_iters):
            timer.start()
            fn()
            timer.stop()
        comm.synchronize()
        return [float(t) for t in comm.max_over_ranks(np.asarray(timer.elapsed_s()))]

    def extra(self, comm: Comm, bufs: Buffers, num_iters: int) -> dict[str, Any]:
        sent, received = bufs.state["sent"], bufs.state["received"]
        with on_comm_stream(comm):
            wire = self._encode(bufs)
        comm.synchronize()

        def on_stream(fn: Callable[[], Any], after_transfer: bool = False) -> Callable[[], None]:
            def call() -> None:
                with on_comm_stream(comm, after_transfer):
                    fn()

            return call

        fused_send = bufs.state.get("fused")
        if fused_send is not None:  # the encoder's stores are the transfer: two phases
            phases: dict[str, Callable[[], Any]] = {
                "encode_transfer_s": on_stream(fused_send.run),
                "decode_s": on_stream(lambda: self._decode(bufs)),
            }
            how = {
                "transfer": "fused-nvlink",
                "peer_mapping": self._peer.mapping,
                "peer_mapping_note": self._peer.note,
                "barriers_per_iter": fused.BARRIERS_PER_ITER,
            }
        else:
            phases = {
                "encode_s": on_stream(lambda: self._encode(bufs)),
                "transfer_s": lambda: self._transfer(comm, wire, bufs),
                "decode_s": on_stream(lambda: self._decode(bufs), after_transfer=True),
            }
            how = {"transfer": "collective"}
        times = {name: self._time(comm, fn, num_iters) for name, fn in phases.items()}
        medians = {k.replace("_s", "_median_s"): statistics.median(v) for k, v in times.items()}
        return {
            **self.byte_counts(comm, bufs, wire, sent, received),
            **how,
            **times,
            **medians,
            "phases_sum_median_s": sum(medians.values()),
            "pipeline_chunks": self.chunks,
        }

    def byte_counts(
        self, comm: Comm, bufs: Buffers, wire: Any, sent: int, received: int
    ) -> dict[str, Any]:
        """Bytes per rank under each convention (docs/CODECS.md)."""
        codec, hidden = self.codec, self.hidden
        return {
            "codec": self.codec_name,
            "codec_impl": codec.resolve(as_torch(bufs.send).device),
            "hidden": hidden,
            "tokens_sent": sent,
            "tokens_received": received,
            "logical_bytes_sent": sent * hidden * 2,
            "payload_bytes_sent": sent * hidden * elem_bytes(bufs.dtype),
            "wire_bytes_sent": codec.wire_bytes(sent, hidden),
            "wire_bytes_received": codec.wire_bytes(received, hidden),
            "sent_bytes_variable": codec.sent_bytes(as_torch(wire), sent, hidden),
            "nominal_bytes_sent": codec.nominal_bytes(sent, hidden),
        }
