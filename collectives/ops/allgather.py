"""allgather: every rank ends with all ranks' blocks, concatenated in rank order.

`size` is the gathered (receive) buffer, as in nccl-tests; each rank contributes
size / n. busbw factor (n-1)/n; traffic is the ring algorithm's.
"""

from __future__ import annotations

import numpy as np

from collectives.backends.base import Comm
from collectives.ops.base import (
    BlockCollective,
    Buffers,
    pattern,
)


class AllGather(BlockCollective):
    name = "allgather"
    communication_only = True

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
