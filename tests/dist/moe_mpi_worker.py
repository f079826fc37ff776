"""Worker for test_moe_mpi: the MoE cases on MPI ranks posing as nodes of 2.

Run as `mpiexec -n 4 python -m tests.dist.moe_mpi_worker WORKDIR`; rank 0 writes every
rank's results to WORKDIR/results.json. Uses the project's `mpi` backend when this build
has it, else a minimal mpi4py communicator defined here.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import numpy as np
import torch

from bench.launch import detect, launch_info
from collectives.backends import BackendUnavailable, create
from tests.dist.moe_cases import run_cases


class _Mpi4pyComm:
    """Just what the MoE algorithms call, over mpi4py (torch CPU tensors as byte buffers)."""

    backend = "mpi"
    device = "cpu"

    def __init__(self, comm: Any, local_world: int) -> None:
        self.comm = comm
        self.rank, self.world = comm.Get_rank(), comm.Get_size()
        self.local_world = local_world
        self.local_rank, self.node = self.rank % local_world, self.rank // local_world
        self.num_nodes = self.world // local_world

    def all_to_all(self, out, inp, send_counts=None, recv_counts=None) -> None:
        from mpi4py import MPI

        size = inp.element_size()
        src, dst = inp.numpy().view(np.uint8), out.numpy().view(np.uint8)
        if send_counts is None:
            self.comm.Alltoall([src, MPI.BYTE], [dst, MPI.BYTE])
            return
        sc = np.asarray(send_counts, dtype=np.int64) * size
        rc = np.asarray(recv_counts, dtype=np.int64) * size
        sd = np.concatenate([[0], np.cumsum(sc)[:-1]])
        rd = np.concatenate([[0], np.cumsum(rc)[:-1]])
        self.comm.Alltoallv([src, (sc, sd), MPI.BYTE], [dst, (rc, rd), MPI.BYTE])

    def split(self, color: int, key: int) -> _Mpi4pyComm:
        sub = self.comm.Split(color, key)
        return _Mpi4pyComm(sub, sub.Get_size())

    def barrier(self) -> None:
        self.comm.Barrier()

    def synchronize(self) -> None:
        pass

    def max_over_ranks(self, values):
        from mpi4py import MPI

        out = np.empty_like(np.asarray(values, dtype=np.float64))
        self.comm.Allreduce(np.asarray(values, dtype=np.float64), out, op=MPI.MAX)
        return out

    def gather_object(self, obj):
        return self.comm.allgather(obj)

    def close(self) -> None:
        pass


def main() -> int:
    workdir = sys.argv[1]
    torch.set_num_threads(1)
    launch = launch_info(detect(os.environ), gpus_per_node=2, timeout_s=120)
    try:
        comm = create("mpi", launch)
    except (BackendUnavailable, ValueError):
        from mpi4py import MPI

        comm = _Mpi4pyComm(MPI.COMM_WORLD, 2)
    results = run_cases(comm, workdir)
    everyone = comm.gather_object(results)
    if comm.rank == 0:
        with open(os.path.join(workdir, "results.json"), "w") as fh:
            json.dump({"backend_class": type(comm).__name__, "ranks": everyone}, fh)
    comm.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
