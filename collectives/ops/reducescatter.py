"""reducescatter: rank r ends with block r of the reduction of all ranks' buffers.

`size` is the per-rank send buffer (n blocks), as in nccl-tests. busbw factor (n-1)/n;
traffic is the ring algorithm's.
"""

from __future__ import annotations

import numpy as np

from collectives.backends.base import Comm
from collectives.ops.base import (
    Buffers,
    Collective,
    Sizes,
    elem_bytes,
    reduce_expected,
    reduce_pattern,
    ring_matrix,
    too_small,
)


class ReduceScatter(Collective):
    name = "reducescatter"
    has_redop = True

    def sizes(self, size_bytes: int, dtype: str, world: int) -> Sizes:
        elem = elem_bytes(dtype)
        per_rank = size_bytes // elem // world
        if per_rank == 0:
            raise too_small(self.name, size_bytes, dtype, world, elem * world)
        count = per_rank * world
        return Sizes(size_bytes=count * elem, count=count, send_count=count, recv_count=per_rank)

    def bus_bw_factor(self, world: int) -> float:
        return (world - 1) / world

    def traffic_matrix(self, size_bytes: int, dtype: str, world: int) -> np.ndarray:
        s = self.sizes(size_bytes, dtype, world)
        return ring_matrix(world, s.size_bytes * (world - 1) / world)

    def make_inputs(self, comm: Comm, size_bytes: int, dtype: str) -> Buffers:
        s = self.sizes(size_bytes, dtype, comm.world)
        send = comm.from_numpy(reduce_pattern(comm.rank, s.send_count, self.seed), dtype)
        full = reduce_expected(self.redop, comm.world, s.send_count, self.seed, dtype)
        mine = full[comm.rank * s.recv_count : (comm.rank + 1) * s.recv_count]
        return Buffers(
            sizes=s, dtype=dtype, send=send, recv=comm.empty(s.recv_count, dtype), expected=mine
        )

    def run(self, comm: Comm, bufs: Buffers) -> None:
        comm.reduce_scatter(bufs.recv, bufs.send, self.redop)
