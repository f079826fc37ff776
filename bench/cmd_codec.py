"""`epbench codec accuracy | bench`: how much error each payload codec adds, and how fast
it encodes and decodes; plus `demo()` for `epbench demo`.

accuracy: per input distribution (or tensor file) and codec, relative L2 error, max abs
error, cosine similarity and DeepEP's calc_diff, and whether [P]'s claims hold there.
bench: encode / decode throughput per implementation, token count and hidden size, as GB/s
of input tokens and of bytes read + written, median of repeats. Both print a table and
write a results file (-o) in the epbench.run schema (op codec_accuracy / codec_encode /
codec_decode; metrics in `extra`).
"""

from __future__ import annotations

import argparse
import datetime
import pathlib
import pickle
import sys
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from bench.errors import UsageError
from bench.metadata import local_facts, versions
from bench.output import ResultWriter
from collectives import codecs
from collectives.codecs import accuracy, throughput
from results.schema import Header, Record

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
GB = 1e9


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
    p.set_defaults(func=lambda args: _missing_subcommand(p))


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


# ---- inputs ------------------------------------------------------------------------------
def _as_matrix(name: str, tensor: Any, max_tokens: int) -> np.ndarray:
    array = tensor.float().numpy() if isinstance(tensor, torch.Tensor) else np.asarray(tensor)
    if array.dtype.kind != "f" or array.ndim == 0:
        raise UsageError(f"--input {name}: holds {array.dtype} {array.shape}, not a float tensor")
    matrix = array.reshape(-1, array.shape[-1]) if array.ndim > 1 else array.reshape(1, -1)
    return np.ascontiguousarray(matrix[:max_tokens], dtype=np.float32)


def load_inputs(path: pathlib.Path, max_tokens: int) -> dict[str, np.ndarray]:
    """Tensors from a .npy file or a .pt file (a tensor or a dict of them), read without
    unpickling code; each as a [tokens, hidden] float32 matrix (leading dims flattened)."""
    try:
        if path.suffix == ".npy":
            loaded: Any = np.load(path, allow_pickle=False)
        elif path.suffix in (".pt", ".pth"):
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise UsageError(f"--input {path}: use a .npy or .pt file")
    except pickle.UnpicklingError:
        raise UsageError(
            f"--input {path}: cannot read it without unpickling Python objects; "
            "save plain tensors (torch.save of a tensor or a dict of tensors, or np.save)"
        ) from None
    except (OSError, ValueError, RuntimeError, EOFError) as exc:
        raise UsageError(f"--input {path}: cannot read ({str(exc).splitlines()[0]})") from None
    if isinstance(loaded, dict):
        items = {f"{path.name}:{k}": v for k, v in loaded.items() if _is_float_tensor(v)}
        if not items:
            raise UsageError(f"--input {path}: the dict holds no float tensors")
        return {k: _as_matrix(k, v, max_tokens) for k, v in items.items()}
    return {path.name: _as_matrix(str(path), loaded, max_tokens)}


def _is_float_tensor(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.is_floating_point() and value.numel() > 0


def accuracy_inputs(args: argparse.Namespace) -> dict[str, np.ndarray]:
    if args.tokens < 1 or args.hidden < 1:
        raise UsageError(f"--tokens {args.tokens} and --hidden {args.hidden} must be >= 1")
    inputs: dict[str, np.ndarray] = {}
    for dist in args.dist:
        try:
            accuracy.check_distribution(dist)
        except ValueError as exc:
            raise UsageError(f"--dist: {exc}") from None
        inputs[dist] = accuracy.sample(dist, args.tokens, args.hidden, args.seed)
    for name in args.input:
        inputs.update(load_inputs(pathlib.Path(name), max(args.tokens, 1)))
    return inputs


# ---- accuracy ----------------------------------------------------------------------------
def claim_lines(label: str, claims: dict[str, Any] | None) -> list[str]:
    if claims is None:
        return [
            f"{label}: claims not evaluated (need {', '.join(accuracy.CLAIM_CODECS)} "
            "and a non-BF16 input)"
        ]
    yes = {True: "[green]holds[/green]", False: "[red]does not hold[/red]"}
    return [
        f"{label}: LogFMT-8 more accurate than E4M3 and E5M2: "
        f"{yes[claims['logfmt8_beats_fp8']]} (rel L2 {claims['logfmt8_vs_e4m3']:.2f}x E4M3, "
        f"{claims['logfmt8_vs_e5m2']:.2f}x E5M2)",
        f"{label}: LogFMT-10 close to BF16 (within {accuracy.CLOSE_FACTOR:g}x its rel L2): "
        f"{yes[claims['logfmt10_close_to_bf16']]} ({claims['logfmt10_vs_bf16']:.2f}x BF16)",
    ]


def accuracy_table(label: str, per_codec: dict[str, dict[str, float]]) -> Table:
    table = Table(title=f"codec accuracy · {label}", title_justify="left")
    for col in ("codec", "bits/elem", "rel L2", "max abs", "cosine", "calc_diff"):
        table.add_column(col, justify="left" if col == "codec" else "right")
    for name, m in per_codec.items():
        table.add_row(
            name,
            f"{m['bits_per_element']:.2f}",
            f"{m['rel_l2']:.3e}",
            f"{m['max_abs']:.3e}",
            f"{m['cosine']:.8f}",
            f"{m['calc_diff']:.3e}",
        )
    return table


def accuracy_records(
    results: dict[str, Any], inputs: dict[str, np.ndarray], dtype: str, impl: str
) -> list[Record]:
    records = []
    for label, per_codec in results.items():
        tokens, hidden = inputs[label].shape
        claims = accuracy.verdicts(per_codec)
        for name, m in per_codec.items():
            records.append(
                Record(
                    op="codec_accuracy",
                    backend=impl,
                    dtype=dtype,
                    mode="per_iter",
                    size_bytes=tokens * hidden * (4 if dtype == "float32" else 2),
                    count=tokens * hidden,
                    num_ranks=1,
                    times_s=[],
                    bus_factor=1.0,
                    codec=name,
                    extra={
                        "input": label,
                        "tokens": tokens,
                        "hidden": hidden,
                        **m,
                        "claims": claims,
                    },
                )
            )
    return records


def _measure(inputs: dict[str, np.ndarray], names: Sequence[str], dtype: str, impl: str):  # type: ignore[no-untyped-def]
    chosen = [_codec(n, impl) for n in names]
    return accuracy.measure(inputs, chosen, TORCH_DTYPES[dtype])


def run_accuracy(args: argparse.Namespace, console: Console) -> list[Record]:
    inputs = accuracy_inputs(args)
    results = _measure(inputs, args.codecs, args.dtype, args.impl)
    for label, per_codec in results.items():
        console.print(accuracy_table(label, per_codec))
        for line in claim_lines(label, accuracy.verdicts(per_codec)):
            console.print(line)
    return accuracy_records(results, inputs, args.dtype, args.impl)


def accuracy_command(args: argparse.Namespace) -> int:
    console = Console()
    records = run_accuracy(args, console)
    _write(args, records, console)
    return 0


# ---- throughput ----------------------------------------------------------------------------
def bench_point(codec: codecs.Codec, x: torch.Tensor, args: argparse.Namespace) -> list[Record]:
    """Encode and decode records of one (codec, impl, tokens, hidden) point."""
    phases = throughput.measure(codec, x, args.warmup, args.repeats)
    common = {"device": args.device, "numba_threads": _numba_threads()}
    dtype = str(x.dtype).removeprefix("torch.")
    return [
        Record(
            op=f"codec_{phase}",
            backend=facts["impl"],
            dtype=dtype,
            mode="per_iter",
            size_bytes=facts["input_bytes"],
            count=x.numel(),
            num_ranks=1,
            times_s=facts.pop("times_s"),
            bus_factor=1.0,
            codec=codec.name,
            extra={**facts, **common},
        )
        for phase, facts in phases.items()
    ]


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


def bench_table(records: list[Record]) -> Table:
    table = Table(
        title="codec throughput (GB/s: input tokens | bytes read + written)", title_justify="left"
    )
    for col in (
        "codec",
        "impl",
        "tokens",
        "hidden",
        "enc in",
        "enc r+w",
        "dec in",
        "dec r+w",
        "enc µs",
        "dec µs",
    ):
        table.add_column(col, justify="left" if col in ("codec", "impl") else "right")
    for enc, dec in zip(records[::2], records[1::2], strict=True):
        e, d = enc.extra, dec.extra
        table.add_row(
            enc.codec,
            e["impl"],
            str(e["tokens"]),
            str(e["hidden"]),
            f"{e['input_gbps']:.2f}",
            f"{e['rw_gbps']:.2f}",
            f"{d['input_gbps']:.2f}",
            f"{d['rw_gbps']:.2f}",
            f"{e['median_s'] * 1e6:.1f}",
            f"{d['median_s'] * 1e6:.1f}",
        )
    return table


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
    console.print(bench_table(records))
    _write(args, records, console)
    return 0


# ---- results files and the demo --------------------------------------------------------------
def _header(args: argparse.Namespace) -> Header:
    config = {
        k: (str(v) if isinstance(v, pathlib.Path) else v)
        for k, v in vars(args).items()
        if k != "func"
    }
    metadata = {"argv": sys.argv, "versions": dict(versions()), "host": local_facts()}
    return Header(
        run_id=uuid.uuid4().hex,
        metadata=metadata,
        config=config,
        created_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(),
    )


def _write(args: argparse.Namespace, records: list[Record], console: Console) -> None:
    if args.output is None:
        return
    writer = ResultWriter(args.output, overwrite=args.overwrite)
    writer.header(_header(args))
    for record in records:
        writer.record(record)
    writer.close()
    console.print(f"wrote {len(records)} records to {args.output}")


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
    _write(args, run_accuracy(args, console), console)
    return [path]
