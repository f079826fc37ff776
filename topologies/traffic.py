"""Traffic matrices: [src, dst] bytes as float64 numpy arrays (diagonal: a rank's local copy).

Generators for the fabric model: uniform all-to-all, a seeded uneven all-to-allv, and the
expected MoE dispatch/combine matrices of uniform top-k routing over experts placed
contiguously on ranks, optionally node-limited (each token picks M nodes, then k experts on
them). `Uniform` describes a uniform all-to-all without building the matrix, so the simulator
can use symmetry at 16,384 GPUs. Richer MoE routing (collectives/moe) feeds the same form.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Uniform:
    """Every rank sends `bytes_per_pair` to every other rank (nccl-tests alltoall)."""

    world: int
    """Number of ranks."""
    bytes_per_pair: float
    """Bytes from each rank to each other rank."""

    def matrix(self) -> FloatArray:
        m = np.full((self.world, self.world), float(self.bytes_per_pair))
        np.fill_diagonal(m, 0.0)
        return m


def alltoall_matrix(size_bytes: int, world: int) -> FloatArray:
    """nccl-tests alltoall of per-rank buffer `size_bytes`: size/world to each peer."""
    return Uniform(world=world, bytes_per_pair=size_bytes // world).matrix()


def alltoallv_matrix(size_bytes: int, world: int, seed: int = 0, skew: float = 1.0) -> FloatArray:
    """An uneven all-to-allv: each rank sends about `size_bytes` in total, split over peers
    by a seeded lognormal with sigma `skew` (0 gives the uniform all-to-all)."""
    rng = np.random.default_rng(seed)
    weights = rng.lognormal(0.0, skew, size=(world, world)) if skew > 0 else np.ones((world, world))
    np.fill_diagonal(weights, 0.0)
    weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-300)
    return np.floor(weights * size_bytes)


def _p_any(num_pool: int, num_mine: int, k: int) -> float:
    """P(at least one of `num_mine` given experts among k drawn without replacement from
    `num_pool`)."""
    if num_mine <= 0:
        return 0.0
    if num_pool - num_mine < k:
        return 1.0
    return 1.0 - math.comb(num_pool - num_mine, k) / math.comb(num_pool, k)


def dispatch_matrix(
    *,
    world: int,
    gpus_per_node: int,
    tokens_per_rank: int,
    bytes_per_token: float,
    num_experts: int,
    topk: int,
    node_limit: int = 0,
) -> FloatArray:
    """Expected [src, dst] dispatch bytes: a token goes once to each rank holding one of its
    experts. Experts sit contiguously, num_experts/world per rank; each token picks `topk`
    distinct experts uniformly, or (node_limit M > 0) M nodes uniformly then topk experts
    among theirs."""
    if world < 1 or num_experts % world:
        raise ValueError(f"num_experts={num_experts} must be a multiple of world={world}")
    if world % gpus_per_node:
        raise ValueError(f"world={world} must be a multiple of gpus_per_node={gpus_per_node}")
    per_rank = num_experts // world
    num_nodes = world // gpus_per_node
    if not 1 <= topk <= num_experts:
        raise ValueError(f"topk={topk}; use 1..{num_experts}")
    if node_limit > 0:
        if node_limit > num_nodes or topk > node_limit * per_rank * gpus_per_node:
            raise ValueError(
                f"node_limit={node_limit} with topk={topk}: needs <= {num_nodes} nodes holding "
                "at least topk experts"
            )
        pool = node_limit * per_rank * gpus_per_node
        p = node_limit / num_nodes * _p_any(pool, per_rank, topk)
    else:
        p = _p_any(num_experts, per_rank, topk)
    return np.full((world, world), tokens_per_rank * bytes_per_token * p)


def combine_matrix(dispatch: FloatArray, dispatch_bytes: float, combine_bytes: float) -> FloatArray:
    """Combine returns each dispatched token to its source: the transpose, rescaled from
    dispatch to combine bytes per token (e.g. FP8 out, BF16 back)."""
    return np.ascontiguousarray(dispatch.T) * (combine_bytes / dispatch_bytes)
