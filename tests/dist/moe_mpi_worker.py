"""Worker for test_moe_mpi: the MoE cases on MPI ranks posing as nodes of 2.

Run as `mpiexec -n 4 python -m tests.dist.moe_mpi_worker WORKDIR`; rank 0 writes every
rank's results to WORKDIR/results.json.
"""

from __future__ import annotations

import json
import os
import sys

import torch

from bench.launch import detect, launch_info
from collectives.backends import create
from tests.dist.moe_cases import run_cases


def main() -> int:
    workdir = sys.argv[1]
    torch.set_num_threads(1)
    launch = launch_info(detect(os.environ), gpus_per_node=2, timeout_s=120)
    comm = create("mpi", launch)
    results = run_cases(comm, workdir)
    everyone = comm.gather_object(results)
    if comm.rank == 0:
        with open(os.path.join(workdir, "results.json"), "w") as fh:
            json.dump({"backend_class": type(comm).__name__, "ranks": everyone}, fh)
    comm.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
