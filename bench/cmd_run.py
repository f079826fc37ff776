"""`epbench run OP`: sweep one op over sizes on one backend, nccl-tests style.

Flags follow nccl-tests (-b -e -f -i -n -w -c -d -a -G -z -T) plus epbench's own
(--backend, --np, --gpus-per-node, -o, --format). Rank 0 prints the table and writes the
results file point by point; every other rank stays silent unless it fails.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import pathlib
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from bench import links, spawn
from bench.errors import UsageError
from bench.output import TABLE_HEADER, ResultWriter, export, table_row
from bench.runner import AGGREGATIONS, Fault, PointRunner, Timing
from bench.session import Session, default_backend
from bench.sizes import format_size, parse_size, sweep
from collectives import ops as ops_registry
from collectives.backends import BACKENDS
from collectives.backends.base import CommError, canonical_dtype
from collectives.ops.alltoallv import GENERATORS, parse_matrix
from collectives.ops.base import Collective
from results.schema import Record

_AGG_CODES = {"0": "rank0", "1": "avg", "2": "min", "3": "max"}


def _bool01(text: str) -> bool:
    if text not in ("0", "1"):
        raise argparse.ArgumentTypeError(f"expected 0 or 1, got {text!r}")
    return text == "1"


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The flags shared by `run` and anything that drives the runner."""
    g = p.add_argument_group("sweep (nccl-tests flags)")
    g.add_argument("-b", "--minbytes", default="1K", help="smallest size (K/M/G suffixes)")
    g.add_argument("-e", "--maxbytes", default="16M", help="largest size")
    g.add_argument("-f", "--stepfactor", type=float, default=None, help="multiply size by F")
    g.add_argument("-i", "--stepbytes", default=None, help="add this many bytes per step")
    g.add_argument("-n", "--iters", type=int, default=20, help="timed iterations per sample set")
    g.add_argument("-w", "--warmup_iters", type=int, default=5, help="untimed warmup runs")
    g.add_argument("-c", "--check", type=_bool01, default=True, help="check correctness (0/1)")
    g.add_argument(
        "-d",
        "--datatype",
        default="float32",
        help="float32, bfloat16, float16, int8, float8_e4m3, float8_e5m2",
    )
    g.add_argument("--redop", default="sum", help="sum, prod, max, min, avg")
    g.add_argument(
        "-a",
        "--average",
        default="max",
        help="aggregate ranks per sample: max (default), avg, min, rank0 or 0-3",
    )
    g.add_argument(
        "-G",
        "--cudagraph",
        type=int,
        default=0,
        help="capture N ops per CUDA graph and time replays (0: off)",
    )
    g.add_argument(
        "-z", "--blocking", type=_bool01, default=False, help="synchronize after every op (0/1)"
    )
    g.add_argument(
        "-T",
        "--timeout",
        type=float,
        default=300.0,
        help="seconds any one collective may take before every rank exits",
    )
    g.add_argument("--blocks", type=int, default=5, help="loop/graph blocks (samples) per size")
    g.add_argument("--seed", type=int, default=0, help="seed of inputs and generators")
    lg = p.add_argument_group("launch")
    lg.add_argument("--backend", default="auto", help=f"auto, {', '.join(BACKENDS)}")
    lg.add_argument("--np", type=int, default=None, help="spawn N local ranks (no launcher)")
    lg.add_argument(
        "--gpus-per-node",
        type=int,
        default=None,
        help="ranks per (virtual) node: CPU ranks pose as nodes of K ranks",
    )
    mg = p.add_argument_group("MPI backend")
    mg.add_argument(
        "--mpi-thread-level",
        default="single",
        choices=("single", "funneled", "serialized", "multiple"),
    )
    mg.add_argument("--mpi-buffer", default="auto", help="numpy, torch, cupy, numba or auto")
    mg.add_argument("--mpi-alignment", type=int, default=4096, help="buffer alignment, bytes")
    mg.add_argument(
        "--mpi-persistent", type=_bool01, default=False, help="persistent MPI-4 requests (0/1)"
    )
    mg.add_argument("--cuda-aware", default="auto", choices=("auto", "yes", "no"))
    og = p.add_argument_group("output")
    og.add_argument("-o", "--output", default=None, help="results file (.jsonl)")
    og.add_argument(
        "--format",
        default="jsonl",
        choices=("jsonl", "csv", "parquet"),
        help="also export a tidy table in this format",
    )
    og.add_argument("--overwrite", action="store_true", help="replace an existing results file")
    og.add_argument("--inject-fault", default=None, help=argparse.SUPPRESS)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run", help="benchmark one op over a size sweep", description=__doc__.splitlines()[0]
    )
    p.add_argument("op", help=f"one of: {', '.join(ops_registry.OPS)}")
    add_run_arguments(p)
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
    moe = _moe_options()
    if moe is not None:
        moe.add_moe_arguments(p)
    links.add_arguments(p)
    p.set_defaults(func=run_command)


def _moe_options() -> Any:
    """bench.moe_options when this build has MoE ops (adds their flags and op kwargs)."""
    try:
        from bench import moe_options
    except ImportError:
        return None
    return moe_options


# ---- validation (before any process starts) ---------------------------------------------
def resolve_sizes(args: argparse.Namespace) -> list[int]:
    """Sweep points: bytes (-b/-e/-f/-i), or token counts for MoE ops."""
    if ops_registry.op_class(args.op).size_unit == "tokens":
        moe = _moe_options()
        if moe is not None and hasattr(moe, "token_sweep"):
            return list(moe.token_sweep(args))
        return [int(args.num_tokens)]
    if args.op == "alltoallv" and args.matrix:
        return [1]  # the matrix file gives every count: one point, as in nccl-tests
    begin = parse_size(args.minbytes, "-b")
    end = parse_size(args.maxbytes, "-e")
    step = parse_size(args.stepbytes, "-i") if args.stepbytes is not None else None
    return sweep(begin, end, args.stepfactor, step)


def resolve_timing(args: argparse.Namespace) -> Timing:
    agg = _AGG_CODES.get(str(args.average), str(args.average))
    if agg not in AGGREGATIONS:
        raise UsageError(f"-a {args.average!r}: choose max, avg, min, rank0 or 0-3")
    if args.cudagraph < 0:
        raise UsageError(f"-G {args.cudagraph} must be >= 0")
    if args.timeout <= 0:
        raise UsageError(f"-T {args.timeout:g} must be positive seconds")
    try:
        return Timing(
            num_iters=args.iters,
            num_warmup=args.warmup_iters,
            check=args.check,
            num_blocks=args.blocks,
            graph_iters=args.cudagraph,
            blocking=args.blocking,
            aggregation=agg,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def parse_fault(text: str | None) -> Fault | None:
    if not text:
        return None
    try:
        kind, rank, index = text.split(":")
        return Fault(kind=kind, rank=int(rank), size_index=int(index))
    except ValueError:
        raise UsageError(f"--inject-fault {text!r}: expected KIND:RANK:SIZE_INDEX") from None


def op_options(args: argparse.Namespace, world: int, local_world: int) -> dict[str, Any]:
    opts: dict[str, Any] = {"seed": args.seed}
    if getattr(args, "redop", None):
        opts["redop"] = args.redop
    if args.op == "pingpong":
        opts["pair"] = resolve_pair(args.pair, world, local_world)
    moe = _moe_options()
    if moe is not None and ops_registry.op_class(args.op).size_unit == "tokens":
        moe.check_moe_args(args, world, args.gpus_per_node or local_world)
        opts.update(moe.moe_op_kwargs(args, local_world))
    if args.op == "alltoallv":
        opts["generator"], opts["skew"] = args.generator, args.skew
        if args.matrix:
            path = pathlib.Path(args.matrix)
            try:
                opts["matrix"] = parse_matrix(path.read_text(), str(path))
            except OSError as exc:
                raise UsageError(f"--matrix {path}: {exc.strerror}") from None
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            opts["matrix_source"] = str(path)
            opts["matrix_scale"] = args.matrix_scale
    return opts


def resolve_pair(text: str, world: int, local_world: int) -> tuple[int, int]:
    if world < 2:
        raise UsageError("pingpong needs at least 2 ranks; use --np 2 or a launcher")
    if text == "same-node":
        if local_world < 2:
            raise UsageError("--pair same-node needs 2 ranks per node; use cross-node")
        return (0, 1)
    if text == "cross-node":
        if local_world >= world:
            raise UsageError("--pair cross-node needs 2 nodes; set --gpus-per-node")
        return (0, local_world)
    try:
        a, b = (int(x) for x in text.split(","))
    except ValueError:
        raise UsageError(f"--pair {text!r}: use same-node, cross-node or A,B") from None
    if a == b or not (0 <= a < world and 0 <= b < world):
        raise UsageError(f"--pair {text}: need two distinct ranks below {world}")
    return (a, b)


def build_op(args: argparse.Namespace, world: int, local_world: int) -> Collective:
    try:
        op = ops_registry.get(args.op, **op_options(args, world, local_world))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if op.min_ranks > world:
        raise UsageError(f"{args.op} needs at least {op.min_ranks} ranks; got {world}")
    if getattr(args, "codec", "none") != "none":
        try:
            from collectives.ops.compressed import Compressed
        except ImportError:
            raise UsageError("--codec is not available in this build") from None
        try:
            op = Compressed(op, args.codec)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return op


def default_output(op: str, backend: str) -> pathlib.Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return pathlib.Path("epbench-results") / f"{op}-{backend}-{stamp}.jsonl"


def resolved_config(args: argparse.Namespace, sizes: list[int]) -> dict[str, Any]:
    skip = {"func", "np", "inject_fault", "output"}
    config = {k: v for k, v in vars(args).items() if k not in skip}
    config["sizes"] = sizes
    return config


# ---- the command ------------------------------------------------------------------------
def run_command(args: argparse.Namespace) -> int:
    try:
        ops_registry.op_class(args.op)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    sizes = resolve_sizes(args)
    timing = resolve_timing(args)
    try:
        args.datatype = canonical_dtype(args.datatype)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.backend == "auto":
        args.backend = default_backend()
    if args.backend not in BACKENDS:
        raise UsageError(f"--backend {args.backend!r}: choose one of {', '.join(BACKENDS)}")
    if args.np is not None and "RANK" not in spawn.os.environ and not _launched():
        if args.np < 1:
            raise UsageError(f"--np {args.np} must be at least 1")
        # Catch mistakes once, here, instead of once per spawned rank.
        local_world = args.gpus_per_node or args.np
        if args.np % local_world:
            raise UsageError(f"--gpus-per-node {local_world} does not divide --np {args.np}")
        op = build_op(args, args.np, local_world)
        _validate_point_sizes(op, sizes, args.datatype, args.np)
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


def _launched() -> bool:
    env = spawn.os.environ
    return any(k in env for k in ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK")) or (
        "SLURM_PROCID" in env and "SLURM_STEP_ID" in env
    )


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


def _mpi_buffer(choice: str) -> str:
    """`auto`: device arrays where a GPU is visible (CuPy, else torch), numpy otherwise."""
    if choice != "auto":
        return choice
    return {"nccl": "cupy", "torch-nccl": "torch"}.get(default_backend(), "numpy")


def _mpi_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "thread_level": args.mpi_thread_level,
        "buffer": _mpi_buffer(args.mpi_buffer),
        "alignment_bytes": args.mpi_alignment,
        "persistent": args.mpi_persistent,
        "cuda_aware": args.cuda_aware,
    }


def execute(args: argparse.Namespace, sizes: list[int], timing: Timing) -> list[Record]:
    """Run the sweep in this process (one rank of the job); returns rank 0's records."""
    session = Session(
        backend=args.backend,
        timeout_s=args.timeout,
        gpus_per_node=args.gpus_per_node,
        options=_mpi_options(args) if args.backend == "mpi" else {},
    )
    comm = session.comm
    if args.np is not None and args.np != comm.world:
        session.close()
        raise UsageError(f"--np {args.np} but the launcher started {comm.world} ranks")
    status, message = "ok", ""
    try:
        op = build_op(args, comm.world, comm.local_world)
        _validate_point_sizes(op, sizes, args.datatype, comm.world)
        if not comm.supports_dtype(args.datatype):
            raise UsageError(f"backend {args.backend} cannot send {args.datatype}; pick another -d")
        reduces = getattr(comm, "supports_reduction", None)
        if op.has_redop and reduces is not None and not reduces(args.datatype):
            raise UsageError(
                f"backend {args.backend} cannot reduce {args.datatype}; pick another -d "
                "(float8 moves as bytes in alltoall/allgather/sendrecv)"
            )
        model = links.LinkModel(args.topology, args.rank_map, comm.world) if args.topology else None
        config = resolved_config(args, sizes)
        facts = session.preflight(config)
        out = pathlib.Path(args.output) if args.output else default_output(args.op, args.backend)
        writer = session.open_results(
            out,
            config=config,
            rank_facts=facts,
            argv=list(sys.argv),
            overwrite=args.overwrite,
            extra=links.run_labels(args, model),
        )
        runner = PointRunner(comm, op, timing, session.dog, parse_fault(args.inject_fault))
        records = _sweep(runner, sizes, args, writer, model)
        if writer is not None:
            _finish(writer.path, records, args.format)
        return records
    except UsageError as exc:
        status, message = "error", str(exc)
        raise
    except (CommError, RuntimeError) as exc:
        status, message = "error", _first_line(exc)
        raise UsageError(f"rank {comm.rank}: {message}", exit_code=1) from None
    finally:
        session.close(status, message)


def _validate_point_sizes(op: Collective, sizes: list[int], dtype: str, world: int) -> None:
    if op.size_unit != "bytes":
        return
    try:
        op.sizes(sizes[0], dtype, world)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


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
    return all_records


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
    mode = "CUDA graph replay" if args.cudagraph else "back-to-back loop"
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
        print(f"# {fmt}: {export(records, path, fmt)}")
    print(f"# largest size {format_size(max(r.size_bytes for r in records))}", flush=True)
