"""Everything `epbench run` decides before a process starts: flags, sizes, timing, the op.

The flags follow nccl-tests; each resolver turns them into the runner's objects and raises
a one-line UsageError naming the value when they cannot work.
"""

from __future__ import annotations

import argparse
import datetime
import pathlib
from typing import Any

from bench.errors import UsageError
from bench.runner import AGGREGATIONS, Fault, Timing
from bench.session import default_backend
from bench.sizes import parse_size, sweep
from collectives import ops as ops_registry
from collectives.backends import BACKENDS
from collectives.nodemap import NodeMap
from collectives.ops.alltoallv import parse_matrix
from collectives.ops.base import Collective

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
        help="CUDA-graph mode as nccl-tests: capture -n ops in a graph, launch it N times "
        "per sample (0: off); on the mpi backend the recorded MPI calls are replayed -n times "
        "from compiled code instead",
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
    g.add_argument(
        "--no-align",
        dest="align",
        action="store_false",
        help="skip the untimed op that lines ranks up on the GPU before each loop/graph block "
        "(nccl-tests has none)",
    )
    g.add_argument(
        "--python-loop",
        dest="compiled_loop",
        action="store_false",
        help="issue loop blocks from Python (what a Python framework pays) instead of the "
        "nccl backend's compiled loop of the op's recorded NCCL calls (as nccl-tests' C loop)",
    )
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


def moe_options() -> Any:
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
        moe = moe_options()
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
            align=args.align,
            compiled_loop=args.compiled_loop,
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


def op_options(args: argparse.Namespace, nodes: NodeMap) -> dict[str, Any]:
    """The op's keyword options on the ranks and nodes of `nodes` (the run's real layout)."""
    world, local_world = nodes.world, nodes.local_world
    opts: dict[str, Any] = {"seed": args.seed}
    if getattr(args, "redop", None):
        opts["redop"] = args.redop
    if args.op == "pingpong":
        opts["pair"] = resolve_pair(args.pair, nodes)
    moe = moe_options()
    if moe is not None and ops_registry.op_class(args.op).size_unit == "tokens":
        moe.check_moe_args(args, world, args.gpus_per_node or local_world)
        opts.update(moe.moe_op_kwargs(args, local_world))
        opts["rank_nodes"] = nodes.node
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


def resolve_pair(text: str, nodes: NodeMap) -> tuple[int, int]:
    """pingpong's two ranks: rank 0 and the next rank on its node (same-node) or the first
    rank on another node (cross-node), wherever the launcher placed them, or `A,B`."""
    world = nodes.world
    if world < 2:
        raise UsageError("pingpong needs at least 2 ranks; use --np 2 or a launcher")
    if text == "same-node":
        if nodes.local_world < 2:
            raise UsageError("--pair same-node needs 2 ranks per node; use cross-node")
        return (0, nodes.ranks_on(nodes.node[0])[1])
    if text == "cross-node":
        if nodes.num_nodes < 2:
            raise UsageError("--pair cross-node needs 2 nodes; set --gpus-per-node")
        return (0, next(r for r in range(world) if nodes.node[r] != nodes.node[0]))
    try:
        a, b = (int(x) for x in text.split(","))
    except ValueError:
        raise UsageError(f"--pair {text!r}: use same-node, cross-node or A,B") from None
    if a == b or not (0 <= a < world and 0 <= b < world):
        raise UsageError(f"--pair {text}: need two distinct ranks below {world}")
    return (a, b)


def build_op(args: argparse.Namespace, nodes: NodeMap) -> Collective:
    """The op of `args` for the ranks and nodes of `nodes`."""
    world = nodes.world
    try:
        op = ops_registry.get(args.op, **op_options(args, nodes))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if op.min_ranks > world:
        raise UsageError(f"{args.op} needs at least {op.min_ranks} ranks; got {world}")
    if getattr(args, "codec_chunks", 1) != 1 and getattr(args, "codec", "none") == "none":
        raise UsageError(f"--codec-chunks {args.codec_chunks} needs --codec NAME")
    fused = getattr(args, "codec_fused", None)
    if fused is not None and getattr(args, "codec", "none") == "none":
        raise UsageError(
            "--codec-fused needs --codec NAME (--codec bf16 for the uncompressed fused baseline)"
        )
    if getattr(args, "codec", "none") != "none":
        try:
            from collectives.ops.compressed import Compressed
        except ImportError:
            raise UsageError("--codec is not available in this build") from None
        try:
            op = Compressed(
                op,
                args.codec,
                chunks=getattr(args, "codec_chunks", 1),
                fused=fused is not None,
                peer_mapping=fused or "auto",
                timeout_s=args.timeout,
            )
        except ValueError as exc:  # the op, chunks and mapping --codec-fused takes, too
            raise UsageError(str(exc)) from None
        if fused is not None:
            check_fused_ranks(args, nodes)
    return op


def check_fused_ranks(args: argparse.Namespace, nodes: NodeMap) -> None:
    """--codec-fused: CUDA ranks of one node (before any start)."""
    from collectives.backends import peer_memory

    backend = args.backend if args.backend != "auto" else default_backend()
    device = "cuda" if backend in peer_memory.FUSED_BACKENDS else "cpu"
    why = peer_memory.fused_unsupported(backend, nodes.num_nodes, device)
    if why is not None:
        raise UsageError(why)


def default_output(op: str, backend: str) -> pathlib.Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return pathlib.Path("epbench-results") / f"{op}-{backend}-{stamp}.jsonl"


def resolved_config(args: argparse.Namespace, sizes: list[int]) -> dict[str, Any]:
    skip = {"func", "np", "inject_fault", "output"}
    config = {k: v for k, v in vars(args).items() if k not in skip}
    config["sizes"] = sizes
    return config


# ---- the command ------------------------------------------------------------------------
def _mpi_buffer(choice: str) -> str:
    """`auto`: device arrays where a GPU is visible (CuPy, else torch), numpy otherwise."""
    if choice != "auto":
        return choice
    return {"nccl": "cupy", "torch-nccl": "torch"}.get(default_backend(), "numpy")


def mpi_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "thread_level": args.mpi_thread_level,
        "buffer": _mpi_buffer(args.mpi_buffer),
        "alignment_bytes": args.mpi_alignment,
        "persistent": args.mpi_persistent,
        "cuda_aware": args.cuda_aware,
    }


def validate_point_sizes(op: Collective, sizes: list[int], dtype: str, world: int) -> None:
    if op.size_unit != "bytes":
        return
    try:
        op.sizes(sizes[0], dtype, world)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
