"""A minimal Comm over torch.distributed gloo for the MoE tests, and a spawn helper.

Used until collectives/backends/torch_dist.py provides the project's gloo backend; it fills
only what the MoE algorithms call (all_to_all, split, barrier, gather_object).
"""

from __future__ import annotations

import os
import socket
import traceback
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


class GlooComm:
    backend = "gloo"
    device = "cpu"

    def __init__(self, group: Any, rank: int, world: int, local_world: int) -> None:
        self.group = group
        self.rank = rank
        self.world = world
        self.local_world = local_world
        self.local_rank = rank % local_world
        self.node = rank // local_world
        self.num_nodes = world // local_world

    def all_to_all(self, out, inp, send_counts=None, recv_counts=None) -> None:
        dist.all_to_all_single(
            out,
            inp,
            output_split_sizes=None if recv_counts is None else list(recv_counts),
            input_split_sizes=None if send_counts is None else list(send_counts),
            group=self.group,
        )

    def barrier(self) -> None:
        dist.barrier(group=self.group)

    def synchronize(self) -> None:
        pass

    def max_over_ranks(self, values: Any) -> Any:
        tensor = torch.as_tensor(values, dtype=torch.float64).clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=self.group)
        return tensor.numpy()

    def gather_object(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj, group=self.group)
        return out

    def split(self, color: int, key: int) -> GlooComm:
        pairs = self.gather_object((color, key, dist.get_rank()))
        mine = None
        for c in sorted({p[0] for p in pairs}):
            members = sorted((k, g) for col, k, g in pairs if col == c)
            ranks = [g for _, g in members]
            group = dist.new_group(ranks, backend="gloo")
            if c == color:
                mine = (group, ranks.index(dist.get_rank()), len(ranks))
        assert mine is not None
        return GlooComm(mine[0], mine[1], mine[2], mine[2])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        results.put((rank, fn(GlooComm(dist.group.WORLD, rank, world, local_world), *args)))
    except BaseException:
        errors.put(f"rank {rank}:\n{traceback.format_exc()}")
        raise
    finally:
        dist.destroy_process_group()


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
