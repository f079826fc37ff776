"""Fused vs unfused compressed all-to-all on the GPUs of one node, in one process group.

    torchrun --nproc-per-node 2 bench/gpu/fused_gpu.py [--backend torch-nccl]
        [--size 56M] [--codecs bf16,fp8_e4m3,logfmt8] [--mapping auto] --out FILE.jsonl

Runs, at one size (bfloat16 tokens of hidden 7168), BF16 through the plain all-to-all and
each codec unfused (encode -> NCCL all-to-all -> decode) and fused (`--codec-fused`:
encode into the peers' mapped receive buffers, device barrier, local decode), each point
exactly as `epbench run alltoall ... -G 1` measures it (bench/runner.py: check, warmup,
per-iteration samples, loop blocks, CUDA-graph blocks). Starting the process group and
compiling the codec kernels once for every configuration keeps the whole set inside one
device call. Rank 0 prints one line per configuration (graph and loop us per op, #wrong,
phase medians, the peer mapping) and writes every record to --out.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from bench import run_setup
from bench.runner import PointRunner, Timing
from bench.session import Session
from bench.sizes import parse_size


def configurations(codecs: list[str], mapping: str) -> list[tuple[str, str, str | None]]:
    """(label, codec, fused mapping or None): BF16 first, then each codec unfused and fused."""
    rows: list[tuple[str, str, str | None]] = [("bf16 (no codec)", "none", None)]
    for codec in codecs:
        rows.append((f"{codec} unfused", codec, None))
        rows.append((f"{codec} fused", codec, mapping))
    return rows


def point_args(backend: str, codec: str, fused: str | None, timeout_s: float) -> Any:
    """The few `epbench run` options build_op reads."""
    return SimpleNamespace(
        op="alltoall", seed=0, redop="sum", backend=backend, codec=codec, codec_chunks=1,
        codec_fused=fused, timeout=timeout_s, gpus_per_node=None,
    )  # fmt: skip


def line(label: str, records: list[Any]) -> str:
    by_mode = {r.mode: r for r in records}
    us = {m: sorted(r.times_s)[len(r.times_s) // 2] * 1e6 for m, r in by_mode.items()}
    extra = records[0].extra or {}
    phases = " ".join(
        f"{k[:-9]} {v * 1e6:.1f}" for k, v in extra.items() if k.endswith("_median_s")
    )
    wrong = max(r.num_wrong for r in records)
    how = extra.get("transfer", "-")
    if how == "fused-nvlink":
        note = extra.get("peer_mapping_note") or ""
        how += f" ({extra.get('peer_mapping')}{'; ' + note if note else ''})"
    return (
        f"{label:22s} graph {us.get('graph', float('nan')):8.1f} us  loop {us['loop']:8.1f} us  "
        f"per-iter p50 {us['per_iter']:8.1f} us  #wrong {wrong}  phases(us) [{phases}]  {how}"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="torch-nccl")
    p.add_argument("--size", default="56M")
    p.add_argument("--codecs", default="bf16,fp8_e4m3,logfmt8")
    p.add_argument("--mapping", default="auto")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--out", type=pathlib.Path)
    args = p.parse_args()
    session = Session(backend=args.backend, timeout_s=args.timeout, gpus_per_node=None)
    comm, size = session.comm, parse_size(args.size)
    timing = Timing(num_iters=args.iters, num_warmup=args.warmup, graph_iters=1)
    lines = []
    for index, (label, codec, fused) in enumerate(configurations(args.codecs.split(","),
                                                                 args.mapping)):  # fmt: skip
        op = run_setup.build_op(point_args(args.backend, codec, fused, args.timeout),
                                session.nodes)  # fmt: skip
        records = PointRunner(comm, op, timing, session.dog).measure(size, index, "bfloat16")
        if comm.rank == 0:
            print(line(label, records), flush=True)
            lines += [r.to_json() for r in records]
    if comm.rank == 0 and args.out:
        args.out.write_text("\n".join(lines) + "\n")
    session.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
