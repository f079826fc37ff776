"""Synthetic epbench run files with known answers, for tests and the analyzer benchmark.

`write_runs` writes launches of an alltoall sweep for two fabrics whose times differ by a
chosen factor, with lognormal iteration noise and launch-to-launch jitter; optionally
per-rank samples. Run as `python -m results.synthetic OUT_DIR [NUM_ROWS]` to make the files
of docs/BENCHMARKS.md §6 (it prints nothing; the files are the output).
"""

from __future__ import annotations

import pathlib
import sys
import uuid

import numpy as np

from results import schema

SIZES = tuple(1 << power for power in range(10, 30))
"""1 KiB to 512 MiB, doubling."""


def write_runs(
    out_dir: pathlib.Path,
    *,
    num_rows: int = 1_000_000,
    runs_per_side: int = 5,
    sizes: tuple[int, ...] = SIZES,
    slowdown: float = 1.10,
    noise: float = 0.05,
    num_rank_runs: int = 1,
    num_ranks: int = 4,
    seed: int = 0,
) -> list[pathlib.Path]:
    """Write 2 x runs_per_side files (fabric ib and roce; roce `slowdown` x slower)."""
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    iters = max(num_rows // (2 * runs_per_side * len(sizes)), 1)
    paths = []
    for fabric, factor in (("ib", 1.0), ("roce", slowdown)):
        for run in range(runs_per_side):
            path = out_dir / f"synthetic_{fabric}_{run}.jsonl"
            with_ranks = run < num_rank_runs
            _write_one(
                path, rng, fabric, factor, sizes, iters, noise, num_ranks if with_ranks else 0
            )
            paths.append(path)
    return paths


def _write_one(
    path: pathlib.Path,
    rng: np.random.Generator,
    fabric: str,
    factor: float,
    sizes: tuple[int, ...],
    iters: int,
    noise: float,
    num_ranks: int,
) -> None:
    jitter = rng.normal(1.0, noise / 4)
    header = schema.Header(
        run_id=uuid.UUID(int=int(rng.integers(2**62))).hex,
        created_utc="2026-01-01T00:00:00Z",
        metadata={
            "fabric": fabric,
            "topology": "mpft",
            "label": fabric,
            "hosts": ["node0", "node1"],
        },
        config={"iters": iters, "warmup": 10},
    )
    lines = [header.to_json()]
    world = max(num_ranks, 4)
    for size in sizes:
        base = (5e-6 + size / 40e9) * factor * jitter
        times = base * rng.lognormal(0.0, noise, iters)
        rank_times = None
        if num_ranks:
            per_rank = times[None, :] * rng.uniform(0.9, 1.0, (num_ranks, iters))
            per_rank[-1] = times  # the last rank is the slowest: the straggler
            rank_times = per_rank.round(12).tolist()
        rec = schema.Record(
            op="alltoall",
            backend="nccl",
            dtype="bfloat16",
            mode="per_iter",
            size_bytes=size,
            count=size // 2,
            num_ranks=world,
            times_s=times.round(12).tolist(),
            bus_factor=(world - 1) / world,
            rank_times_s=rank_times,
        )
        lines.append(rec.to_json())
    lines.append(schema.Footer(status="ok", num_records=len(sizes)).to_json())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write_runs(
        pathlib.Path(sys.argv[1]), num_rows=int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    )
