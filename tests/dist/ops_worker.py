"""Worker for test_ops_check: every op checks clean, then catches a planted corruption.

Run as `python -m tests.dist.ops_worker` with torchrun-style variables set.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from collectives import ops
from collectives.backends import create
from collectives.backends.base import LaunchInfo


def main() -> int:
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    launch = LaunchInfo(
        rank=rank,
        world=world,
        local_rank=rank,
        local_world=world,
        node=0,
        num_nodes=1,
        host_local_rank=rank,
        launcher="spawn",
        master_port=int(os.environ["MASTER_PORT"]),
        timeout_s=60,
    )
    comm = create(os.environ.get("BACKEND", "gloo"), launch)
    failures = []
    for name in ops.CORE_OPS:
        for dtype in ("float32", "bfloat16", "int8"):
            op = ops.get(name, seed=7)
            bufs = op.make_inputs(comm, 4096, dtype)
            op.run(comm, bufs)
            clean = sum(comm.gather_object(op.check(comm, bufs)))
            if bufs.expected is not None:
                host = comm.to_numpy(bufs.recv)
                host[len(host) // 2] += 1  # one wrong element on this rank
                bufs.recv = comm.from_numpy(host, dtype)
            planted = sum(comm.gather_object(op.check(comm, bufs)))
            holders = sum(comm.gather_object(int(bufs.expected is not None)))
            if clean != 0 or planted != holders:
                failures.append(f"{name}/{dtype}: clean={clean} planted={planted}/{holders}")
    comm.close()
    if failures:
        print("\n".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
