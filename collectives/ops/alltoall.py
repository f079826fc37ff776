"""alltoall: every rank sends an equal block to every rank (nccl-tests alltoall_perf).

`size` is the whole per-rank send buffer (world blocks); the per-peer block is rounded
down to a multiple of 16 bytes as nccl-tests does. busbw factor (n-1)/n.
"""

from __future__ import annotations

import numpy as np

from collectives.backends.base import Comm
from collectives.ops.base import Buffers, Collective, Sizes, elem_bytes, pattern, too_small


class AllToAll(Collective):
    name = "alltoall"
    communication_only = True

    def sizes(self, size_bytes: int, dtype: str, world: int) -> Sizes:
        elem = elem_bytes(dtype)
        align = max(1, 16 // elem)
        per_peer = (size_bytes // elem // world) // align * align
        if per_peer == 0:
            raise too_small(self.name, size_bytes, dtype, world, 16 * world)
        count = per_peer * world
        return Sizes(size_bytes=count * elem, count=count, send_count=count, recv_count=count)

    def bus_bw_factor(self, world: int) -> float:
        return (world - 1) / world

    def traffic_matrix(self, size_bytes: int, dtype: str, world: int) -> np.ndarray:
        s = self.sizes(size_bytes, dtype, world)
        return np.full((world, world), s.size_bytes / world, dtype=np.float64)

    def make_inputs(self, comm: Comm, size_bytes: int, dtype: str) -> Buffers:
        s = self.sizes(size_bytes, dtype, comm.world)
        per_peer = s.count // comm.world
        send = comm.from_numpy(pattern(comm.rank, s.send_count, self.seed), dtype)
        expected = np.concatenate(
            [
                pattern(src, per_peer, self.seed, offset=comm.rank * per_peer)
                for src in range(comm.world)
            ]
        )
        return Buffers(
            sizes=s, dtype=dtype, send=send, recv=comm.empty(s.recv_count, dtype), expected=expected
        )

    def run(self, comm: Comm, bufs: Buffers) -> None:
        comm.all_to_all(bufs.recv, bufs.send)
