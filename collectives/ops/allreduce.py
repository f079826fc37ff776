"""allreduce: every rank ends with the reduction of all ranks' buffers.

`size` is the buffer (count x element). busbw factor 2(n-1)/n; the traffic matrix is the
ring algorithm's (each rank sends 2(n-1)/n x size to its successor).
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


class AllReduce(Collective):
    name = "allreduce"
    communication_only = True
    has_redop = True

    def sizes(self, size_bytes: int, dtype: str, world: int) -> Sizes:
        elem = elem_bytes(dtype)
        count = size_bytes // elem
        if count == 0:
            raise too_small(self.name, size_bytes, dtype, world, elem)
        return Sizes(size_bytes=count * elem, count=count, send_count=count, recv_count=count)

    def bus_bw_factor(self, world: int) -> float:
        return 2 * (world - 1) / world

    def traffic_matrix(self, size_bytes: int, dtype: str, world: int) -> np.ndarray:
        s = self.sizes(size_bytes, dtype, world)
        return ring_matrix(world, s.size_bytes * 2 * (world - 1) / world)

    def make_inputs(self, comm: Comm, size_bytes: int, dtype: str) -> Buffers:
        s = self.sizes(size_bytes, dtype, comm.world)
        send = comm.from_numpy(reduce_pattern(comm.rank, s.count, self.seed), dtype)
        expected = reduce_expected(self.redop, comm.world, s.count, self.seed, dtype)
        return Buffers(
            sizes=s, dtype=dtype, send=send, recv=comm.empty(s.count, dtype), expected=expected
        )

    def run(self, comm: Comm, bufs: Buffers) -> None:
        comm.all_reduce(bufs.recv, bufs.send, self.redop)
