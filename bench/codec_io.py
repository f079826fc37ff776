"""The files `epbench codec` touches: activation tensors it reads (.npy, or .pt read
without unpickling code) and the epbench.run results file it writes (-o).
"""

from __future__ import annotations

import argparse
import datetime
import pathlib
import pickle
import sys
import uuid
from typing import Any

import numpy as np
import torch
from rich.console import Console

from bench.errors import UsageError
from bench.metadata import local_facts, versions
from bench.output import ResultWriter
from collectives.codecs import accuracy
from results.schema import Header, Record


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
    """The synthetic inputs named by --dist, then the tensors of every --input file."""
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


def run_header(args: argparse.Namespace) -> Header:
    """The results file's header: the resolved options, argv, versions and host facts."""
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


def write_records(args: argparse.Namespace, records: list[Record], console: Console) -> None:
    """Write `records` to -o (nothing without -o) and say so on `console`."""
    if args.output is None:
        return
    writer = ResultWriter(args.output, overwrite=args.overwrite)
    writer.header(run_header(args))
    for record in records:
        writer.record(record)
    writer.close()
    console.print(f"wrote {len(records)} records to {args.output}")
