"""sendrecv: every rank sends to rank+1 and receives from rank-1 at once (a ring step).

`size` is the message each rank sends; busbw factor 1, as in nccl-tests sendrecv_perf.
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


class SendRecv(Collective):
    name = "sendrecv"
    communication_only = True

    def sizes(self, size_bytes: int, dtype: str, world: int) -> Sizes:
        elem = elem_bytes(dtype)
        count = size_bytes // elem
        if count == 0:
            raise too_small(self.name, size_bytes, dtype, world, elem)
        return Sizes(size_bytes=count * elem, count=count, send_count=count, recv_count=count)

    def bus_bw_factor(self, world: int) -> float:
        return 1.0

    def traffic_matrix(self, size_bytes: int, dtype: str, world: int) -> np.ndarray:
        return ring_matrix(world, float(self.sizes(size_bytes, dtype, world).size_bytes))

    def make_inputs(self, comm: Comm, size_bytes: int, dtype: str) -> Buffers:
        s = self.sizes(size_bytes, dtype, comm.world)
        src = (comm.rank - 1) % comm.world
        send = comm.from_numpy(pattern(comm.rank, s.count, self.seed), dtype)
        return Buffers(
            sizes=s,
            dtype=dtype,
            send=send,
            recv=comm.empty(s.count, dtype),
            expected=pattern(src, s.count, self.seed),
        )

    def run(self, comm: Comm, bufs: Buffers) -> None:
        world = comm.world
        comm.send_recv(bufs.send, (comm.rank + 1) % world, bufs.recv, (comm.rank - 1) % world)
