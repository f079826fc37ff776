"""A fused intranode compressed all-to-all: each rank encodes straight into its peers'
receive buffers over NVLink, the ranks meet at a device barrier, each decodes locally.

The unfused op (compressed.py) makes three passes: encode into a local wire buffer, NCCL's
all-to-all of the wire bytes, decode. Here the encoder's stores are the transfer: the block
of tokens meant for rank `dst` is encoded with `codec.encode(x_block, out=view)`, `view`
being this sender's slot in `dst`'s receive buffer, mapped into this process
(collectives/backends/peer_memory.py). Every receive buffer holds the blocks in sender
order, the layout NCCL's all-to-all leaves, so decode is the unfused op's.

One iteration, every step on the communication stream:

    barrier(FREE)   every rank has finished decoding the previous iteration
    encode x[block dst] -> slot `rank` of dst's buffer, for each dst (own block included)
    barrier(FULL)   every encode into my buffer has completed and is visible to me
    decode my buffer

Two barriers on one buffer, not one barrier on two alternating buffers: double buffering
is safe only while each iteration uses the other slot than the one before. Under the
runner it cannot: a CUDA graph captures -n iterations with their slots fixed and is
replayed back to back and around eager runs (the check, the alignment op before each
block), so some iteration would follow one on the same slot (after a replay when -n is odd,
before it when an eager run sits between two replays), and no host counter sees replays.
With FREE each iteration is self-contained whatever ran before, for one more barrier
kernel per iteration (a flag round trip over NVLink).

Visibility: the encode kernels finish before the FULL barrier kernel starts (stream
order); the barrier sets each peer's flag with a release and takes each peer's flag with an
acquire, both at system scope, so every peer's encodes into my buffer happen-before the
decode issued after my barrier. FREE orders the reverse hazard: my decode of iteration i
precedes my FREE signal of iteration i+1, which every writer must take before it encodes
iteration i+1 into my buffer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

FREE, FULL = 0, 1
"""Barrier channels: receive buffers free to overwrite; every block has arrived."""
BARRIERS_PER_ITER = 2


@dataclasses.dataclass(frozen=True)
class Route:
    """One block a sender encodes: its tokens [token_start, token_stop) go to bytes
    [offset_bytes, offset_bytes + num_bytes) of rank `dst`'s receive buffer."""

    dst: int
    token_start: int
    token_stop: int
    offset_bytes: int
    num_bytes: int


def routes(rank: int, world: int, per_block: int, block_bytes: int) -> list[Route]:
    """Sender `rank`'s blocks: block dst (tokens dst * per_block onward) lands at
    rank * block_bytes in dst's buffer. Destinations start at rank + 1 and wrap, so the
    ranks write to different peers at once, and the local block goes last."""
    if not 0 <= rank < world or per_block < 1 or block_bytes < 1:
        raise ValueError(
            f"routes: rank {rank} of {world}, {per_block} tokens and {block_bytes} B per block"
        )
    order = [(rank + step) % world for step in range(1, world + 1)]
    return [
        Route(dst, dst * per_block, (dst + 1) * per_block, rank * block_bytes, block_bytes)
        for dst in order
    ]


class FusedSend:
    """Encode-into-peers plus the barriers of one fused all-to-all; `run` is the send half
    of an iteration (FREE, encodes, FULL), `received` the wire bytes to decode after it.
    `peer` is a collectives.backends.peer_memory.PeerBuffer; `encode(x, out)` the codec's."""

    def __init__(
        self,
        peer: Any,
        x: torch.Tensor,
        block_routes: list[Route],
        encode: Callable[[torch.Tensor, torch.Tensor], Any],
    ) -> None:
        self.peer, self.encode = peer, encode
        self.num_bytes = sum(r.num_bytes for r in block_routes)
        if self.num_bytes > peer.num_bytes:
            raise ValueError(f"peer buffers of {peer.num_bytes} B hold no {self.num_bytes} B")
        self.jobs = [
            (x[r.token_start : r.token_stop], peer.view(r.dst, r.offset_bytes, r.num_bytes))
            for r in block_routes
        ]

    def run(self) -> None:
        self.peer.barrier(FREE)
        for tokens, out in self.jobs:
            self.encode(tokens, out)
        self.peer.barrier(FULL)

    def received(self) -> torch.Tensor:
        """This rank's receive buffer: every sender's block, in sender order."""
        local: torch.Tensor = self.peer.local()
        return local[: self.num_bytes]
