"""pingpong: point-to-point latency and bandwidth between two ranks (osu_latency style).

Rank A sends to rank B, which sends the same size back; one sample is half the round
trip (one-way latency). Other ranks idle. The pair is chosen by the caller: `pair=(a, b)`
(the runner picks ranks on the same or on different nodes). busbw factor 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from collectives.backends.base import Comm
from collectives.ops.base import Buffers, Collective, Sizes, elem_bytes, pattern, too_small


class PingPong(Collective):
    name = "pingpong"
    communication_only = True
    min_ranks = 2
    time_divisor = 2.0  # a run is a round trip; report one-way latency
    self_synchronizing = True

    @property
    def pair(self) -> tuple[int, int]:
        a, b = self.options.get("pair", (0, 1))
        return int(a), int(b)

    def sizes(self, size_bytes: int, dtype: str, world: int) -> Sizes:
        elem = elem_bytes(dtype)
        count = size_bytes // elem
        if count == 0:
            raise too_small(self.name, size_bytes, dtype, world, elem)
        a, b = self.pair
        if a == b or not (0 <= a < world and 0 <= b < world):
            raise ValueError(f"pingpong pair {a},{b} needs two distinct ranks below {world}")
        return Sizes(size_bytes=count * elem, count=count, send_count=count, recv_count=count)

    def bus_bw_factor(self, world: int) -> float:
        return 1.0

    def traffic_matrix(self, size_bytes: int, dtype: str, world: int) -> np.ndarray:
        s = self.sizes(size_bytes, dtype, world)
        a, b = self.pair
        matrix = np.zeros((world, world), dtype=np.float64)
        matrix[a, b] = matrix[b, a] = s.size_bytes
        return matrix

    def make_inputs(self, comm: Comm, size_bytes: int, dtype: str) -> Buffers:
        s = self.sizes(size_bytes, dtype, comm.world)
        a, b = self.pair
        send = comm.from_numpy(pattern(comm.rank, s.count, self.seed), dtype)
        recv = comm.empty(s.count, dtype)
        expected = None
        if comm.rank in (a, b):
            peer = b if comm.rank == a else a
            expected = pattern(peer, s.count, self.seed)
        return Buffers(sizes=s, dtype=dtype, send=send, recv=recv, expected=expected)

    def extra(self, comm: Comm, bufs: Buffers, num_iters: int) -> dict[str, Any]:
        """The two ranks measured (the runner picks them on the same or different nodes)."""
        return {"pair": list(self.pair)}

    def run(self, comm: Comm, bufs: Buffers) -> None:
        a, b = self.pair
        if comm.rank == a:
            comm.send(bufs.send, b)
            comm.recv(bufs.recv, b)
        elif comm.rank == b:
            comm.recv(bufs.recv, a)
            comm.send(bufs.send, a)
