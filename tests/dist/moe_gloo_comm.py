"""Spawn helper for the MoE tests: N local ranks on the project's gloo backend, posing as
nodes of `local_world` ranks, each running fn(comm, *args) and returning its result."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

import torch
import torch.multiprocessing as mp

from bench.spawn import free_port
from collectives.backends import create
from collectives.backends.base import LaunchInfo


def _entry(
    rank: int,
    world: int,
    local_world: int,
    port: int,
    fn: Callable,
    args: tuple,
    errors: Any,
    results: Any,
) -> None:
    torch.set_num_threads(1)
    launch = LaunchInfo(
        rank=rank,
        world=world,
        local_rank=rank % local_world,
        local_world=local_world,
        node=rank // local_world,
        num_nodes=world // local_world,
        host_local_rank=rank,
        launcher="spawn",
        master_port=port,
        timeout_s=120,
    )
    comm = create("gloo", launch)
    try:
        results.put((rank, fn(comm, *args)))
    except BaseException:
        errors.put(f"rank {rank}:\n{traceback.format_exc()}")
        raise
    finally:
        comm.close()


def run_gloo(fn: Callable, world: int, local_world: int, *args: Any) -> list[Any]:
    """Run fn(comm, *args) on `world` spawned gloo ranks; return what each rank returned
    (in rank order); re-raise the first failure."""
    ctx = mp.get_context("spawn")
    errors = ctx.SimpleQueue()
    results = ctx.SimpleQueue()
    try:
        mp.start_processes(
            _entry,
            args=(world, local_world, free_port(), fn, args, errors, results),
            nprocs=world,
            start_method="spawn",
        )
    except Exception as exc:
        detail = errors.get() if not errors.empty() else str(exc)
        raise AssertionError(detail) from None
    got = dict(results.get() for _ in range(world))
    return [got[rank] for rank in range(world)]
