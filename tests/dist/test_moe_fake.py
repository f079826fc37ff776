"""A 64-rank MoE dry run on torch's fake process group (8 nodes of 8, DeepEP's shape).

Collectives are no-ops there, so this rehearses plans, sub-communicators, buffer shapes and
the byte accounting at full scale in one process; correctness is the gloo/MPI tests' job.
"""

from __future__ import annotations

import multiprocessing

import pytest

pytestmark = [pytest.mark.dist, pytest.mark.timeout(300)]


def _plan_splits(comm) -> None:
    """The fake group answers every all-gather with this rank's own object, so a generic
    split cannot learn the other ranks' colors; give it the members the engine asks for
    (first its node's ranks, then the ranks with its local index), as fake groups."""
    import torch.distributed as dist

    from collectives.backends.torch_dist import TorchComm

    lw = comm.local_world
    members = [
        list(range(comm.node * lw, (comm.node + 1) * lw)),
        list(range(comm.local_rank, comm.world, lw)),
    ]

    def split(color: int, key: int) -> TorchComm:
        return TorchComm(comm._launch, "fake", group=dist.new_group(ranks=members.pop(0)))

    comm.split = split


def _dry_run(queue) -> None:
    try:
        from collectives.backends.base import LaunchInfo
        from collectives.backends.torch_dist import create_fake
        from collectives.ops.moe import OPS

        launch = LaunchInfo(
            rank=0,
            world=64,
            local_rank=0,
            local_world=8,
            node=0,
            num_nodes=8,
            host_local_rank=0,
            launcher="single",
        )
        comm = create_fake(launch)
        _plan_splits(comm)
        out = {}
        for algo in ("flat", "hierarchical"):
            op = OPS["dispatch"](
                seed=0,
                algo=algo,
                hidden=7168,
                gpus_per_node=8,
            )
            bufs = op.make_inputs(comm, 1024, "bfloat16")
            op.run(comm, bufs)
            extra = op.extra(comm, bufs, 1)["moe"]
            out[algo] = {
                "node_limit": extra["node_limit_in_force"],
                "bytes": extra["bytes"],
                "meta": extra["meta_bytes_per_row"],
            }
        queue.put(("ok", out))
    except BaseException as exc:  # reported to the test process
        import traceback

        queue.put(("error", f"{exc}\n{traceback.format_exc()}"))


def test_64_rank_dry_run_on_fake_process_group():
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_dry_run, args=(queue,))
    proc.start()
    status, out = queue.get(timeout=280)
    proc.join(30)
    assert status == "ok", out
    flat, hier = out["flat"], out["hierarchical"]
    assert flat["node_limit"] == 4  # DeepEP's internode default: min(nodes, 4)
    assert flat["meta"] == 4 * (2 + 2 * 8)
    token = 7168 + 7168 // 128 * 4  # FP8 E4M3 with a float32 scale per 128 elements
    rdma = flat["bytes"]["dispatch"]["deepep_rdma"]["per_rank"]
    # node-limited: every token reaches 1..4 nodes
    assert all(1024 * token <= b <= 4 * 1024 * token for b in rdma)
    # logical bytes do not depend on the algorithm; hierarchical sends fewer scale-out bytes
    assert flat["bytes"]["dispatch"]["logical"] == hier["bytes"]["dispatch"]["logical"]
    assert (
        hier["bytes"]["dispatch"]["scale_out"]["mean"]
        < flat["bytes"]["dispatch"]["scale_out"]["mean"]
    )
