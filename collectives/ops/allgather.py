"""allgather: every rank ends with all ranks' blocks, concatenated in rank order.

`size` is the gathered (receive) buffer, as in nccl-tests; each rank contributes
size / n. busbw factor (n-1)/n; traffic is the ring algorithm's.
"""

from __future__ import annotations

import numpy as np

from collectives.backends.base import Comm
from collectives.ops.base import (
    Buffers,
    Collective,
    Sizes,
    elem_bytes,
    pattern,
    ring_matrix,
    too_small,
)


class AllGather(Collective):
    name = "allgather"

    def sizes(self, size_bytes: int, dtype: str, world: int) -> Sizes:
        elem = elem_bytes(dtype)
        per_rank = size_bytes // elem // world
        if per_rank == 0:
            raise too_small(self.name, size_bytes, dtype, world, elem * world)
        count = per_rank * world
        return Sizes(size_bytes=count * elem, count=count, send_count=per_rank, recv_count=count)

    def bus_bw_factor(self, world: int) -> float:
        return (world - 1) / world

    def traffic_matrix(self, size_bytes: int, dtype: str, world: int) -> np.ndarray:
        s = self.sizes(size_bytes, dtype, world)
        return ring_matrix(world, s.size_bytes * (world - 1) / world)

    def make_inputs(self, comm: Comm, size_bytes: int, dtype: str) -> Buffers:
        s = self.sizes(size_bytes, dtype, comm.world)
        send = comm.from_numpy(pattern(comm.rank, s.send_count, self.seed), dtype)
        expected = np.concatenate(
            [pattern(src, s.send_count, self.seed) for src in range(comm.world)]
        )
        return Buffers(
            sizes=s, dtype=dtype, send=send, recv=comm.empty(s.recv_count, dtype), expected=expected
        )

    def run(self, comm: Comm, bufs: Buffers) -> None:
        comm.all_gather(bufs.recv, bufs.send)
