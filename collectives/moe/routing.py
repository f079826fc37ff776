"""Token -> expert routing: seeded generators, node-limited top-k, and routing files.

Every generator is a pure function of (seed, rank): any rank can regenerate any other rank's
routing, which is how checks compute expected outputs without extra communication.
Scores are gate logits; the routing weights are the softmax of the chosen top-k scores
(normalized over the k chosen experts, as DeepSeek-V3 normalizes its gates).

Node-limited top-k follows DeepSeek-V3 ([V3] §2.1.2): experts are grouped by the node that
hosts them, each group is scored by the sum of its top `k // M` scores, the top `M` groups
are kept per token, and the top-k experts are chosen inside them. The file formats are in
docs/MOE.md ("Routing files").
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

ROUTINGS = ("uniform", "zipf", "file")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Routing:
    """The routing of one rank's tokens."""

    topk_idx: np.ndarray
    """[num_tokens, top_k] int64 expert ids; -1 marks an unused slot (fewer experts)."""
    topk_weights: np.ndarray
    """[num_tokens, top_k] float32 routing weights; 0 where topk_idx is -1."""

    @property
    def num_tokens(self) -> int:
        return int(self.topk_idx.shape[0])

    @property
    def top_k(self) -> int:
        return int(self.topk_idx.shape[1])


def _rng(seed: int, rank: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, rank, 0x4D6F45]))


def softmax_weights(scores: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Softmax over the last axis (float32), with invalid entries given weight 0."""
    scores = scores.astype(np.float64)
    if valid is not None:
        scores = np.where(valid, scores, -np.inf)
    top = np.max(scores, axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    exp = np.exp(scores - top)
    total = exp.sum(axis=-1, keepdims=True)
    weights: np.ndarray = (exp / np.where(total > 0, total, 1.0)).astype(np.float32)
    return weights


def expert_scores(
    kind: str, *, num_tokens: int, num_experts: int, seed: int, rank: int, zipf_s: float = 1.0
) -> np.ndarray:
    """[num_tokens, num_experts] gate scores whose top-k follows the requested load.

    uniform: i.i.d. normal scores, so every expert is equally likely.
    zipf: Gumbel-perturbed log-popularity, popularity of the i-th hottest expert
    proportional to 1/i**zipf_s; top-k of these scores samples k experts without
    replacement by popularity. The hot experts are the same on every rank (seeded by
    `seed` only), as in a real model where some experts are globally popular.
    """
    rng = _rng(seed, rank)
    if kind == "uniform":
        return rng.standard_normal((num_tokens, num_experts))
    if kind == "zipf":
        if zipf_s < 0:
            raise ValueError(f"zipf exponent {zipf_s} must be >= 0")
        order = np.random.default_rng(np.random.SeedSequence([seed, 0x5A495046])).permutation(
            num_experts
        )
        log_pop = np.empty(num_experts)
        log_pop[order] = -zipf_s * np.log(np.arange(1, num_experts + 1))
        return log_pop[None, :] + rng.gumbel(size=(num_tokens, num_experts))
    raise ValueError(f"unknown routing {kind!r}; choose one of: uniform, zipf, file")


def topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores per row, largest first (ties: lower index first)."""
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1) if part.size else part
    return np.take_along_axis(part, order, axis=1)


def group_limited_topk(
    scores: np.ndarray, expert_group: np.ndarray, *, top_k: int, node_limit: int
) -> np.ndarray:
    """DeepSeek-V3 node-limited top-k: the top `node_limit` groups per token by the sum of
    their top `top_k // node_limit` scores, then top-k experts inside those groups.

    `expert_group[e]` is the group (node) of expert e. Returns [num_tokens, top_k] ids.
    """
    num_groups = int(expert_group.max()) + 1
    if not 1 <= node_limit <= num_groups:
        raise ValueError(
            f"node limit {node_limit} must be between 1 and the number of nodes ({num_groups})"
        )
    per_group = max(1, top_k // node_limit)
    group_score = np.empty((scores.shape[0], num_groups))
    for group in range(num_groups):
        members = np.flatnonzero(expert_group == group)
        if members.size < per_group:
            raise ValueError(
                f"node {group} hosts {members.size} experts, fewer than top_k // node_limit "
                f"= {per_group}; lower --top-k or raise --node-limit"
            )
        sub = scores[:, members]
        group_score[:, group] = np.sort(sub, axis=1)[:, -per_group:].sum(axis=1)
    chosen = topk(group_score, node_limit)
    allowed = np.zeros_like(group_score, dtype=bool)
    np.put_along_axis(allowed, chosen, True, axis=1)
    masked = np.where(allowed[:, expert_group], scores, -np.inf)
    num_allowed = allowed[:, expert_group].sum(axis=1).min()
    if num_allowed < top_k:
        raise ValueError(
            f"top-k {top_k} exceeds the {num_allowed} experts on the {node_limit} chosen "
            "nodes; raise --node-limit or lower --top-k"
        )
    return topk(masked, top_k)


def generate(
    kind: str,
    *,
    num_tokens: int,
    num_experts: int,
    top_k: int,
    seed: int,
    rank: int,
    expert_group: np.ndarray | None = None,
    node_limit: int = 0,
    zipf_s: float = 1.0,
) -> Routing:
    """Routing of `rank`'s tokens; node-limited when `node_limit` > 0 (needs expert_group)."""
    check_shape(num_tokens=num_tokens, num_experts=num_experts, top_k=top_k)
    scores = expert_scores(
        kind, num_tokens=num_tokens, num_experts=num_experts, seed=seed, rank=rank, zipf_s=zipf_s
    )
    if node_limit > 0:
        if expert_group is None:
            raise ValueError("node-limited routing needs the expert -> node map")
        idx = group_limited_topk(scores, expert_group, top_k=top_k, node_limit=node_limit)
    else:
        idx = topk(scores, top_k)
    weights = softmax_weights(np.take_along_axis(scores, idx, axis=1))
    return Routing(topk_idx=idx.astype(np.int64), topk_weights=weights)


def check_shape(*, num_tokens: int, num_experts: int, top_k: int) -> None:
    """ValueError for shapes no routing can have."""
    if num_tokens < 0:
        raise ValueError(f"--num-tokens {num_tokens} must be >= 0")
    if num_experts < 1:
        raise ValueError(f"--num-experts {num_experts} must be >= 1")
    if not 1 <= top_k <= num_experts:
        raise ValueError(f"--top-k {top_k} must be between 1 and --num-experts ({num_experts})")


# ---- routing files ------------------------------------------------------------------


def load_routing_file(path: str | pathlib.Path) -> np.ndarray:
    """Read a routing trace: [num_rows, top_k] int64 expert ids (-1 = unused slot).

    `.npy`: a 2-D integer array. Anything else: text, one token per line, expert ids
    separated by commas or whitespace; blank lines and lines starting with `#` are skipped.
    """
    path = pathlib.Path(path)
    if path.suffix == ".npy":
        try:
            table = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"routing file {path}: {exc}") from None
        if table.ndim != 2 or not np.issubdtype(table.dtype, np.integer):
            raise ValueError(
                f"{path}: routing array must be 2-D integers [tokens, top_k], "
                f"got shape {table.shape} dtype {table.dtype}"
            )
        slots: np.ndarray = table.astype(np.int64)
        return slots
    rows = read_id_lines(path)
    widths = {len(row) for row in rows}
    if len(widths) != 1:
        raise ValueError(f"{path}: every line must list the same number of experts, got {widths}")
    return np.asarray(rows, dtype=np.int64)


def routing_from_table(
    table: np.ndarray, *, num_tokens: int, num_experts: int, rank: int
) -> Routing:
    """Rank `rank`'s tokens from a trace: rows (rank*num_tokens + i) mod num_rows.

    Weights are uniform over each token's valid experts (traces carry ids only).
    """
    if table.size == 0:
        raise ValueError("routing file holds no tokens")
    bad = (table < -1) | (table >= num_experts)
    if bad.any():
        value = int(table[bad][0])
        raise ValueError(f"routing file names expert {value}; ids must be in [0, {num_experts})")
    ordered = np.sort(table, axis=1)
    repeated = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    if repeated.any():
        row = table[np.flatnonzero(repeated.any(axis=1))[0]]
        raise ValueError(f"routing file repeats an expert within one token: {row.tolist()}")
    rows = (rank * num_tokens + np.arange(num_tokens)) % table.shape[0]
    idx = table[rows]
    weights = softmax_weights(np.zeros(idx.shape), valid=idx >= 0)
    return Routing(topk_idx=idx.copy(), topk_weights=weights)


def read_id_lines(path: pathlib.Path) -> list[list[int]]:
    """Expert ids of a text file, one list per line: ids separated by commas or whitespace,
    `#` starts a comment, blank lines are skipped; ValueError naming the file and line."""
    rows = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        text = line.split("#", 1)[0].replace(",", " ").split()
        if not text:
            continue
        try:
            rows.append([int(item) for item in text])
        except ValueError:
            raise ValueError(
                f"{path}:{number}: expert ids must be integers, got {line!r}"
            ) from None
    return rows


def _read_text(path: pathlib.Path) -> str:
    """A file's text; ValueError (one line naming the file) when it cannot be read."""
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
