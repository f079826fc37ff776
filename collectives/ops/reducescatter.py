"""reducescatter: rank r ends with block r of the reduction of all ranks' buffers.

`size` is the per-rank send buffer (n blocks), as in nccl-tests. busbw factor (n-1)/n;
traffic is the ring algorithm's.
"""

from __future__ import annotations

from collectives.backends.base import Comm
from collectives.ops.base import (
    BlockCollective,
    Buffers,
    reduce_expected,
    reduce_pattern,
)


class ReduceScatter(BlockCollective):
    name = "reducescatter"
    communication_only = True
    has_redop = True
    gathers = False

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
