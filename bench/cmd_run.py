"""`epbench run OP`: sweep one op over sizes on one backend, nccl-tests style.

Flags follow nccl-tests (-b -e -f -i -n -w -c -d -a -G -z -T) plus epbench's own
(--backend, --np, --gpus-per-node, -o, --format). Rank 0 prints the table and writes the
results file point by point; every other rank stays silent unless it fails.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from bench import launch, links, run_setup, spawn
from bench.errors import UsageError
from bench.output import TABLE_HEADER, ResultWriter, export, table_row
from bench.runner import PointRunner, Timing
from bench.session import Session, default_backend
from bench.sizes import format_size
from collectives import nodemap
from collectives import ops as ops_registry
from collectives.backends import BACKENDS
from collectives.backends.base import CommError, canonical_dtype
from collectives.ops.alltoallv import GENERATORS
from results.schema import Record


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run", help="benchmark one op over a size sweep", description=__doc__.splitlines()[0]
    )
    p.add_argument("op", help=f"one of: {', '.join(ops_registry.OPS)}")
    run_setup.add_run_arguments(p)
    xg = p.add_argument_group("op options")
    xg.add_argument(
        "--pair", default="same-node", help="pingpong ranks: same-node, cross-node, or A,B"
    )
    xg.add_argument(
        "--matrix", default=None, help="alltoallv: nccl-tests N x N matrix file, bytes [src][dst]"
    )
    xg.add_argument(
        "--matrix-scale",
        type=float,
        default=1.0,
        help="alltoallv: multiply matrix entries (nccl-tests MATRIX_SCALE)",
    )
    xg.add_argument("--generator", default="uniform", help=f"alltoallv: {', '.join(GENERATORS)}")
    xg.add_argument("--skew", type=float, default=1.1, help="alltoallv zipf/distance exponent")
    xg.add_argument("--codec", default="none", help="compress payloads with this codec")
    xg.add_argument(
        "--codec-chunks",
        type=int,
        default=1,
        help="alltoall with --codec: pipeline encode, transfer and decode over K chunks "
        "(separate CUDA streams on GPUs)",
    )
    xg.add_argument(
        "--codec-fused",
        nargs="?",
        const="auto",
        default=None,
        metavar="MAPPING",
        help="alltoall with --codec on CUDA ranks of one node: encode straight into the "
        "peers' receive buffers over NVLink, one device barrier, decode locally; MAPPING "
        "auto (default: torch symmetric memory, else CUDA IPC), symmetric-memory or cuda-ipc",
    )
    moe = run_setup.moe_options()
    if moe is not None:
        moe.add_moe_arguments(p)
    links.add_arguments(p)
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    try:
        ops_registry.op_class(args.op)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    sizes = run_setup.resolve_sizes(args)
    timing = run_setup.resolve_timing(args)
    try:
        args.datatype = canonical_dtype(args.datatype)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.backend == "auto":
        args.backend = default_backend()
    if args.backend not in BACKENDS:
        raise UsageError(f"--backend {args.backend!r}: choose one of {', '.join(BACKENDS)}")
    # --np spawns only when no launcher started us (bench.launch decides, as for the ranks)
    if args.np is not None and launch.detect(os.environ).launcher == "single":
        if args.np < 1:
            raise UsageError(f"--np {args.np} must be at least 1")
        # Catch mistakes once, here, instead of once per spawned rank.
        local_world = args.gpus_per_node or args.np
        if args.np % local_world:
            raise UsageError(f"--gpus-per-node {local_world} does not divide --np {args.np}")
        op = run_setup.build_op(args, nodemap.block(args.np, local_world))  # one host
        run_setup.validate_point_sizes(op, sizes, args.datatype, args.np)
        if op.has_redop and args.datatype.startswith("float8") and args.backend != "nccl":
            raise UsageError(
                f"backend {args.backend} cannot reduce {args.datatype}; pick another -d "
                "(float8 moves as bytes in alltoall/allgather/sendrecv)"
            )
        if args.output and pathlib.Path(args.output).exists() and not args.overwrite:
            raise UsageError(
                f"results file {args.output} exists; choose another -o or pass --overwrite"
            )
        return spawn.run_local(_child_argv(sys.argv[1:]), args.np, args.backend, args.timeout)
    records = execute(args, sizes, timing)
    return 1 if any(r.num_wrong > 0 for r in records) else 0


def _child_argv(argv: Sequence[str]) -> list[str]:
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
            continue
        if item == "--np":
            skip = True
            continue
        if item.startswith("--np="):
            continue
        out.append(item)
    return out


def execute(args: argparse.Namespace, sizes: list[int], timing: Timing) -> list[Record]:
    """Run the sweep in this process (one rank of the job); returns rank 0's records."""
    session = Session(
        backend=args.backend,
        timeout_s=args.timeout,
        gpus_per_node=args.gpus_per_node,
        options=run_setup.mpi_options(args) if args.backend == "mpi" else {},
    )
    comm = session.comm
    if args.np is not None and args.np != comm.world:
        session.close()
        raise UsageError(f"--np {args.np} but the launcher started {comm.world} ranks")
    status, message = "ok", ""
    try:
        op = run_setup.build_op(args, session.nodes)
        run_setup.validate_point_sizes(op, sizes, args.datatype, comm.world)
        if not comm.supports_dtype(args.datatype):
            raise UsageError(f"backend {args.backend} cannot send {args.datatype}; pick another -d")
        reduces = getattr(comm, "supports_reduction", None)
        if op.has_redop and reduces is not None and not reduces(args.datatype):
            raise UsageError(
                f"backend {args.backend} cannot reduce {args.datatype}; pick another -d "
                "(float8 moves as bytes in alltoall/allgather/sendrecv)"
            )
        model = (
            links.LinkModel(args.topology, args.rank_map, session.nodes) if args.topology else None
        )
        config = run_setup.resolved_config(args, sizes)
        facts = session.preflight(config)
        out = (
            pathlib.Path(args.output)
            if args.output
            else run_setup.default_output(args.op, args.backend)
        )
        writer = session.open_results(
            out,
            config=config,
            rank_facts=facts,
            argv=list(sys.argv),
            overwrite=args.overwrite,
            extra=links.run_labels(args, model),
        )
        runner = PointRunner(
            comm, op, timing, session.dog, run_setup.parse_fault(args.inject_fault)
        )
        records = _sweep(runner, sizes, args, writer, model)
        if writer is not None:
            _finish(writer.path, records, args.format)
        return records
    except UsageError as exc:
        status, message = "error", str(exc)
        raise
    except (CommError, RuntimeError) as exc:
        status, message = "error", _first_line(exc) + _fused_hint(args, exc)
        raise UsageError(f"rank {comm.rank}: {message}", exit_code=1) from None
    finally:
        session.close(status, message)


def _fused_hint(args: argparse.Namespace, exc: BaseException) -> str:
    """A CUDA error under --codec-fused is most likely its device barrier giving up."""
    if getattr(args, "codec_fused", None) is None or "CUDA" not in str(exc):
        return ""
    from collectives.backends.peer_memory import barrier_timeout_ms

    limit_s = barrier_timeout_ms(args.timeout) / 1000
    return (
        f" (--codec-fused: the device barrier traps when a peer does not arrive within "
        f"{limit_s:g} s, half of -T; a [FATAL] line above names the ranks)"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _sweep(
    runner: PointRunner,
    sizes: list[int],
    args: argparse.Namespace,
    writer: ResultWriter | None,
    model: links.LinkModel | None = None,
) -> list[Record]:
    comm = runner.comm
    printing = writer is not None
    if printing:
        _print_banner(args, comm, model is not None)
    all_records: list[Record] = []
    with _progress(printing, len(sizes), args.op) as advance:
        for index, size in enumerate(sizes):
            records = runner.measure(size, index, args.datatype)
            if model is not None and printing:
                records = model.annotate(runner.op, size, args.datatype, comm.world, records)
            advance()
            _emit(records, all_records, writer, model is not None)
            if printing and args.cudagraph and all(r.mode != "graph" for r in records):
                why = _NO_CAPTURE.get(comm.backend, "the backend cannot capture this op")
                print(f"#   ^ no graph mode for this point ({why}); time is the back-to-back "
                      "loop", flush=True)  # fmt: skip
    return all_records


_NO_CAPTURE = {
    "mpi": "mpi replays only plain calls on host memory: no staging, host-side reduction, "
    "in-place or persistent calls, and no op that also computes (codecs, MoE)",
    "gloo": "gloo has no graphs",
}


def _emit(
    records: list[Record], all_records: list[Record], writer: ResultWriter | None, bound: bool
) -> None:
    """Keep a point's records; on rank 0 write them to disk and print the table row."""
    all_records.extend(records)
    if writer is None:
        return
    for rec in records:
        writer.record(rec)
    by_mode = {r.mode: r for r in records}
    summary = by_mode.get("graph") or by_mode.get("loop") or records[0]
    print(table_row(summary, by_mode.get("per_iter"), bound), flush=True)


@contextlib.contextmanager
def _progress(enabled: bool, total: int, op: str) -> Iterator[Callable[[], None]]:
    """A rich progress bar on rank 0's terminal (stderr), silent when not a terminal."""
    if not (enabled and sys.stderr.isatty()):
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(f"{op}", total=total)
        yield lambda: bar.advance(task)


def _print_banner(args: argparse.Namespace, comm: Any, bound: bool = False) -> None:
    replay = "compiled replay of the MPI calls" if comm.backend == "mpi" else "CUDA graph replay"
    mode = replay if args.cudagraph else "back-to-back loop"
    print(
        f"# epbench {args.op}  backend {comm.backend}  ranks {comm.world}  "
        f"nodes {comm.num_nodes} x {comm.local_world}  device {comm.device}"
    )
    print(
        f"# time/algbw/busbw: median over {args.blocks} blocks of {args.iters} ops, {mode}; "
        f"p50/p99: per-iteration samples, {args.average} over ranks; GB = 1e9 B"
    )
    if bound:
        print(
            f"# bound(us): busiest link's bytes / its rate on --topology {args.topology} "
            f"with --rank-map {args.rank_map} (a lower bound, no latency)"
        )
    print(TABLE_HEADER + (f" {'bound(us)':>10}" if bound else ""), flush=True)


def _finish(path: pathlib.Path, records: list[Record], fmt: str) -> None:
    wrong = sum(max(r.num_wrong, 0) for r in records if r.mode != "graph")
    print(f"# Out of bounds values : {wrong} {'OK' if wrong == 0 else 'FAILED'}")
    loops = [r for r in records if r.mode in ("loop", "graph")]
    if loops:
        import numpy as np

        bus = [r.size_bytes / np.median(r.times_s) / 1e9 * r.bus_factor for r in loops]
        print(f"# Avg bus bandwidth    : {float(np.mean(bus)):.4g} GB/s")
    print(f"# results: {path}")
    if fmt != "jsonl":
        print(f"# {fmt}: {export(path, fmt)}")
    print(f"# largest size {format_size(max(r.size_bytes for r in records))}", flush=True)
