"""`epbench codec accuracy | bench`: how much error each payload codec adds, and how fast
it encodes and decodes; plus `demo()` for `epbench demo`.

accuracy: per input distribution (or tensor file) and codec, relative L2 error, max abs
error, cosine similarity and DeepEP's calc_diff, and whether [P]'s claims hold there.
bench: encode / decode throughput per implementation, token count and hidden size, as GB/s
of input tokens and of bytes read + written, median of repeats. Both print a table and
write a results file (-o) in the epbench.run schema (op codec_accuracy / codec_encode /
codec_decode; metrics in `extra`). The tables and records are built in bench.codec_tables;
the files read and written live in bench.codec_io.
"""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from rich.console import Console

from bench import codec_io, codec_tables
from bench.errors import UsageError
from collectives import codecs
from collectives.codecs import accuracy, throughput
from results.schema import Record

ACCURACY_CODECS = (
    "bf16",
    "fp8_e4m3",
    "fp8_e4m3_pow2",
    "fp8_e5m2",
    "logfmt8",
    "logfmt10",
    "deepep_logfmt10",
)
BENCH_CODECS = ("bf16", "fp8_e4m3", "logfmt8", "logfmt10")
BENCH_TOKENS = (1, 16, 256, 1024, 4096, 16384)
BENCH_HIDDEN = (2048, 4096, 7168)
TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def _csv(kind: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        try:
            return [kind(part) for part in text.split(",") if part]
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad list {text!r}") from None

    return parse


def register(sub: Any) -> None:
    p = sub.add_parser(
        "codec", help="payload codec accuracy and throughput", description=__doc__.splitlines()[0]
    )
    inner = p.add_subparsers(dest="codec_command", metavar="{accuracy,bench}")
    _add_accuracy(inner)
    _add_bench(inner)
    p.set_defaults(func=lambda args: _missing_subcommand(p))


def _add_accuracy(inner: Any) -> None:
    acc = inner.add_parser("accuracy", help="error each codec adds, per input distribution")
    acc.add_argument("--codecs", type=_csv(str), default=list(ACCURACY_CODECS))
    acc.add_argument(
        "--dist",
        type=_csv(str),
        default=list(accuracy.DISTRIBUTIONS),
        help=f"comma list of {', '.join(accuracy.DISTRIBUTIONS)}",
    )
    acc.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="FILE",
        help="real activations: .npy or .pt (tensor or dict of tensors)",
    )
    acc.add_argument("--tokens", type=int, default=256, help="tokens per synthetic input")
    acc.add_argument("--hidden", type=int, default=7168)
    acc.add_argument("-d", "--dtype", choices=tuple(TORCH_DTYPES), default="float32")
    acc.add_argument("--seed", type=int, default=0)
    acc.add_argument("--impl", choices=codecs.IMPLS, default="numpy")
    _output_args(acc)
    acc.set_defaults(func=accuracy_command)


def _add_bench(inner: Any) -> None:
    be = inner.add_parser("bench", help="encode / decode throughput")
    be.add_argument("--codecs", type=_csv(str), default=list(BENCH_CODECS))
    be.add_argument("--tokens", type=_csv(int), default=list(BENCH_TOKENS))
    be.add_argument("--hidden", type=_csv(int), default=list(BENCH_HIDDEN))
    be.add_argument(
        "--impl",
        type=_csv(str),
        default=None,
        help="implementations (default: numba,numpy on CPU; auto on CUDA)",
    )
    be.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    be.add_argument("-d", "--dtype", choices=tuple(TORCH_DTYPES), default="bfloat16")
    be.add_argument("--repeats", type=int, default=5)
    be.add_argument("--warmup", type=int, default=2)
    be.add_argument("--threads", type=int, default=None, help="numba threads")
    be.add_argument(
        "--ref-max-tokens",
        type=int,
        default=1024,
        help="skip the numpy reference above this many tokens",
    )
    _output_args(be)
    be.set_defaults(func=bench_command)


def _output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", type=pathlib.Path, default=None, help="results file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing -o file")


def _missing_subcommand(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _codec(name: str, impl: str = "auto") -> codecs.Codec:
    try:
        return codecs.get(name, impl)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


# ---- accuracy ----------------------------------------------------------------------------
def _measure(
    inputs: dict[str, np.ndarray], names: Sequence[str], dtype: str, impl: str
) -> dict[str, dict[str, dict[str, float]]]:
    chosen = [_codec(n, impl) for n in names]
    return accuracy.measure(inputs, chosen, TORCH_DTYPES[dtype])


def run_accuracy(args: argparse.Namespace, console: Console) -> list[Record]:
    inputs = codec_io.accuracy_inputs(args)
    results = _measure(inputs, args.codecs, args.dtype, args.impl)
    for label, per_codec in results.items():
        console.print(codec_tables.accuracy_table(label, per_codec))
        for line in codec_tables.claim_lines(label, accuracy.verdicts(per_codec)):
            console.print(line)
    return codec_tables.accuracy_records(results, inputs, args.dtype, args.impl)


def accuracy_command(args: argparse.Namespace) -> int:
    console = Console()
    records = run_accuracy(args, console)
    codec_io.write_records(args, records, console)
    return 0


# ---- throughput ----------------------------------------------------------------------------
def bench_point(codec: codecs.Codec, x: torch.Tensor, args: argparse.Namespace) -> list[Record]:
    """Encode and decode records of one (codec, impl, tokens, hidden) point."""
    phases = throughput.measure(codec, x, args.warmup, args.repeats)
    common = {"device": args.device, "numba_threads": _numba_threads()}
    dtype = str(x.dtype).removeprefix("torch.")
    return codec_tables.throughput_records(codec.name, phases, x.numel(), dtype, common)


def _numba_threads() -> int | None:
    try:
        import numba
    except ImportError:
        return None
    return int(numba.get_num_threads())


def bench_plan(args: argparse.Namespace) -> list[tuple[str, str, int, int]]:
    impls = args.impl or (["auto"] if args.device == "cuda" else ["numba", "numpy"])
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU is visible; use --device cpu")
    if min(args.tokens) < 1 or min(args.hidden) < 1 or args.repeats < 1:
        raise UsageError("--tokens, --hidden and --repeats must be >= 1")
    for name in args.codecs:
        for impl in impls:
            _codec(name, impl)
    return [
        (name, impl, tokens, hidden)
        for hidden in args.hidden
        for tokens in args.tokens
        for name in args.codecs
        for impl in impls
        if not (impl == "numpy" and tokens > args.ref_max_tokens)
    ]


def bench_command(args: argparse.Namespace) -> int:
    if args.threads is not None:
        import numba

        if not 1 <= args.threads <= numba.config.NUMBA_NUM_THREADS:
            raise UsageError(
                f"--threads {args.threads}: choose 1..{numba.config.NUMBA_NUM_THREADS}"
            )
        numba.set_num_threads(args.threads)
    records: list[Record] = []
    for name, impl, tokens, hidden in bench_plan(args):
        x = accuracy.sample("gaussian", tokens, hidden, 0)
        xt = torch.from_numpy(x).to(TORCH_DTYPES[args.dtype]).to(args.device)
        records += bench_point(_codec(name, impl), xt, args)
    console = Console()
    console.print(codec_tables.bench_table(records))
    codec_io.write_records(args, records, console)
    return 0


# ---- the demo ------------------------------------------------------------------------------
def demo(out_dir: pathlib.Path, console: Console) -> list[pathlib.Path]:
    """A short accuracy table (4 distributions, 64 tokens x 2048) for `epbench demo`."""
    path = out_dir / "codec-accuracy.jsonl"
    args = argparse.Namespace(
        codecs=list(ACCURACY_CODECS),
        dist=list(accuracy.DISTRIBUTIONS),
        input=[],
        tokens=64,
        hidden=2048,
        dtype="float32",
        seed=0,
        impl="numpy",
        output=path,
        overwrite=True,
    )
    codec_io.write_records(args, run_accuracy(args, console), console)
    return [path]
