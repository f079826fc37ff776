"""A compressed all-to-all in chunks, pipelined: encode, transfer and decode of different
chunks run at once on their own CUDA streams.

Encoding all tokens, then moving them, then decoding them (collectives/ops/compressed.py)
costs encode + transfer + decode. A fused implementation such as the one [P] describes
overlaps the three; this is the same idea with unfused kernels. Each peer's block of tokens
is cut into `num_chunks` pieces; chunk c holds piece c of every peer's block, laid out
peer-major before the timed region (what a producer writing its output chunk by chunk
gives), so chunk c is one contiguous input, one equal-block all-to-all of wire bytes and one
decode. On a GPU with a communication stream, chunk c is encoded on an encode stream,
moved on the communicator's stream once its encode is done, and decoded on a decode stream
once it has arrived, so chunk c+1's encode and chunk c-1's decode overlap chunk c's
transfer:

    encode stream:   E0  E1  E2  E3
    comm stream:         T0  T1  T2  T3
    decode stream:           D0  D1  D2  D3

Every run starts after an event on the communication stream and that stream waits for the
last decode before the run returns, so the runner's CUDA events bracket the whole pipeline
and back-to-back runs never overwrite a chunk still being decoded. Without a stream (CPU
backends) the chunks run one after another. Decoded chunks stay chunk-major; `natural_order`
puts them back in sender order for the check, outside the timed region.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from collectives.backends.base import Comm


def chunk_bounds(per_block: int, num_chunks: int) -> list[tuple[int, int]]:
    """Token ranges [start, stop) of each chunk within a peer's block of `per_block`
    tokens: `num_chunks` near-equal pieces, larger ones first. ValueError when a chunk
    would be empty."""
    if num_chunks < 1 or num_chunks > per_block:
        raise ValueError(
            f"--codec-chunks {num_chunks}: need 1 to {per_block} chunks "
            f"(each peer's block holds {per_block} tokens at this size)"
        )
    base, extra = divmod(per_block, num_chunks)
    bounds, start = [], 0
    for c in range(num_chunks):
        stop = start + base + (1 if c < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def chunk_major(x: torch.Tensor, world: int, bounds: list[tuple[int, int]]) -> list[torch.Tensor]:
    """Chunk c of `x` [world * per_block, hidden]: rows start..stop of every peer's block,
    peer after peer, as one contiguous tensor."""
    blocks = x.view(world, -1, x.shape[-1])
    return [blocks[:, start:stop].reshape(-1, x.shape[-1]).contiguous() for start, stop in bounds]


def natural_order(chunks: list[torch.Tensor], world: int) -> torch.Tensor:
    """Inverse of `chunk_major`: decoded chunks [world * rows_c, hidden] back to sender order."""
    hidden = chunks[0].shape[-1]
    per_peer = [chunk.view(world, -1, hidden) for chunk in chunks]
    return torch.cat(per_peer, dim=1).reshape(-1, hidden)


def torch_stream(comm: Comm) -> torch.cuda.Stream | None:
    """The communicator's stream as a torch stream (CuPy's wrapped by its handle), or None."""
    stream = getattr(comm, "stream", None)
    if stream is None or not torch.cuda.is_available():
        return None
    if isinstance(stream, torch.cuda.Stream):
        return stream
    return torch.cuda.ExternalStream(int(stream.ptr))


class Pipeline:
    """Buffers, streams and events of one pipelined compressed all-to-all; `run` is timed.
    The codec comes in as `encode_into(x, send_buffer) -> wire`, `decode_rows(recv_buffer,
    num_tokens) -> tokens` and `wire_bytes(num_tokens)` (collectives/ops/compressed.py)."""

    def __init__(
        self,
        comm: Comm,
        chunks: list[torch.Tensor],
        encode_into: Callable[[torch.Tensor, Any], Any],
        decode_rows: Callable[[Any, int], torch.Tensor],
        wire_bytes: Callable[[int], int],
    ) -> None:
        self.comm, self.chunks = comm, chunks
        self.encode_into, self.decode_rows = encode_into, decode_rows
        self.rows = [chunk.shape[0] for chunk in chunks]
        self.sends = [comm.empty(wire_bytes(n), "uint8") for n in self.rows]
        self.recvs = [comm.empty(wire_bytes(n), "uint8") for n in self.rows]
        self.decoded: list[torch.Tensor] = []
        self.stream = torch_stream(comm)
        if self.stream is not None:
            device = chunks[0].device
            self.encode_stream = torch.cuda.Stream(device=device)
            self.decode_stream = torch.cuda.Stream(device=device)
            self.events = [[torch.cuda.Event() for _ in chunks] for _ in range(3)]
            self.begin = torch.cuda.Event()

    def _encode(self, c: int) -> Any:
        return self.encode_into(self.chunks[c], self.sends[c])

    def _decode(self, c: int) -> torch.Tensor:
        return self.decode_rows(self.recvs[c], self.rows[c])

    def run(self) -> None:
        if self.stream is None:
            self.decoded = []
            for c in range(len(self.chunks)):
                self.comm.all_to_all(self.recvs[c], self._encode(c))
                self.decoded.append(self._decode(c))
            return
        self._run_streams()

    def _run_streams(self) -> None:
        comm_stream = self.stream
        assert comm_stream is not None
        encoded, moved, decoded = self.events
        self.begin.record(comm_stream)
        self.encode_stream.wait_event(self.begin)
        self.decode_stream.wait_event(self.begin)
        outs = []
        for c in range(len(self.chunks)):
            with torch.cuda.stream(self.encode_stream):
                wire = self._encode(c)
                encoded[c].record()
            if isinstance(wire, torch.Tensor):
                wire.record_stream(comm_stream)  # freed by the encode stream, used by comm
            comm_stream.wait_event(encoded[c])
            with torch.cuda.stream(comm_stream):
                self.comm.all_to_all(self.recvs[c], wire)
                moved[c].record()
            with torch.cuda.stream(self.decode_stream):
                self.decode_stream.wait_event(moved[c])
                outs.append(self._decode(c))
                decoded[c].record()
        comm_stream.wait_event(decoded[-1])
        self.decoded = outs
