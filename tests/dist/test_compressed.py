"""Compressed alltoall / allgather on gloo: decoded tokens equal the codec applied locally,
a corrupted wire byte is caught, and the phase timings and byte counts come back.

The file is also the worker: `python -m tests.dist.test_compressed` with torchrun-style
variables runs one rank.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.dist

CASES = (
    ("alltoall", "logfmt8", "bfloat16"),
    ("alltoall", "fp8_e4m3:3", "bfloat16"),  # pipelined over 3 chunks (codec:chunks)
    ("alltoall", "fp8_e4m3", "float32"),
    ("alltoall", "deepep_logfmt10", "bfloat16"),
    ("allgather", "logfmt10", "bfloat16"),
    ("allgather", "bf16", "float32"),
)
HIDDEN = 300  # a short last tile on purpose
IMPL = "torch"  # numba's start-up costs seconds per process; unit tests cover its bytes


def run_rank() -> int:
    from collectives import ops
    from collectives.backends import create
    from collectives.backends.base import LaunchInfo
    from collectives.ops.compressed import Compressed

    backend = os.environ.get("BACKEND", "gloo")
    if backend == "mpi":
        from bench.launch import detect, launch_info

        launch = launch_info(detect(os.environ), gpus_per_node=None, timeout_s=120)
    else:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        launch = LaunchInfo(rank=rank, world=world, local_rank=rank, local_world=world, node=0,
                            num_nodes=1, host_local_rank=rank, launcher="spawn",
                            master_port=int(os.environ["MASTER_PORT"]), timeout_s=60)  # fmt: skip
    comm = create(backend, launch)
    world = comm.world
    report = {}
    for base, name, dtype in CASES:
        codec, _, chunks = name.partition(":")
        op = Compressed(ops.get(base, seed=3), codec, hidden=HIDDEN, impl=IMPL,
                        chunks=int(chunks or 1))  # fmt: skip
        bufs = op.make_inputs(comm, 3 * world * HIDDEN * 4, dtype)
        op.run(comm, bufs)
        clean = sum(comm.gather_object(op.check(comm, bufs)))
        pipeline = bufs.state.get("pipeline")
        if pipeline is None:
            bufs.recv[len(bufs.recv) - 1] ^= 0x5A  # corrupt the last code byte on every rank
            bufs.state["decoded"] = op._decode(bufs)
        else:  # the same in the last chunk's received bytes
            pipeline.recvs[-1][len(pipeline.recvs[-1]) - 1] ^= 0x5A
            pipeline.decoded[-1] = pipeline._decode(len(pipeline.recvs) - 1)
        planted = sum(comm.gather_object(op.check(comm, bufs)))
        extra = op.extra(comm, bufs, 3)
        report[f"{base}/{name}/{dtype}"] = {"clean": clean, "planted": planted, "extra": extra}
    if comm.rank == 0:
        print(json.dumps(report))
    comm.close()
    return 0


def spawn(world: int) -> dict:  # type: ignore[type-arg]
    from bench.spawn import free_port
    from tests.conftest import ROOT, cli_env

    port = str(free_port())
    env = {"WORLD_SIZE": str(world), "MASTER_PORT": port}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.dist.test_compressed"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env({**env, "RANK": str(r)}),
        )
        for r in range(world)
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(err for _, err in outs)
    return json.loads(outs[0][0])


def check_report(report: dict) -> None:  # type: ignore[type-arg]
    assert set(report) == {"/".join(case) for case in CASES}
    for case, got in report.items():
        extra = got["extra"]
        assert got["clean"] == 0, case
        assert got["planted"] > 0, case
        assert len(extra["encode_s"]) == len(extra["transfer_s"]) == len(extra["decode_s"]) == 3
        tokens = extra["tokens_sent"]
        assert extra["logical_bytes_sent"] == tokens * HIDDEN * 2
        if "logfmt8" in case:
            assert extra["wire_bytes_sent"] == tokens * (HIDDEN + 3 * 8)
        if ":3" in case:
            assert extra["pipeline_chunks"] == 3
        if "deepep" in case:
            assert extra["sent_bytes_variable"] <= extra["wire_bytes_sent"]


@pytest.mark.parametrize("world", [2, 4])
def test_compressed_collectives_on_gloo(world: int) -> None:
    check_report(spawn(world))


if __name__ == "__main__":
    raise SystemExit(run_rank())
