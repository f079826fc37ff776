"""One module per collective op, all filling the interface in `collectives.ops.base`.

`OPS` maps a command-line op name to "module:Class"; `get(name, **options)` builds one.
"""

from __future__ import annotations

import importlib
from typing import Any

from collectives.ops.base import Collective

OPS: dict[str, str] = {
    "alltoall": "collectives.ops.alltoall:AllToAll",
    "alltoallv": "collectives.ops.alltoallv:AllToAllV",
    "allreduce": "collectives.ops.allreduce:AllReduce",
    "allgather": "collectives.ops.allgather:AllGather",
    "reducescatter": "collectives.ops.reducescatter:ReduceScatter",
    "sendrecv": "collectives.ops.sendrecv:SendRecv",
    "pingpong": "collectives.ops.pingpong:PingPong",
    "dispatch": "collectives.ops.moe:Dispatch",
    "combine": "collectives.ops.moe:Combine",
    "moe": "collectives.ops.moe:MoE",
}
CORE_OPS = (
    "alltoall",
    "alltoallv",
    "allreduce",
    "allgather",
    "reducescatter",
    "sendrecv",
    "pingpong",
)


def op_class(name: str) -> type[Collective]:
    if name not in OPS:
        raise ValueError(f"unknown op {name!r}; choose one of: {', '.join(OPS)}")
    module_name, cls_name = OPS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ValueError(f"op {name!r} is not available in this build") from None
        raise
    cls: type[Collective] = getattr(module, cls_name)
    return cls


def get(name: str, **options: Any) -> Collective:
    """Build op `name` with its options (redop, seed, op-specific keys)."""
    return op_class(name)(**options)
