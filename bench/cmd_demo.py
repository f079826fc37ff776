"""`epbench demo`: the whole suite on one machine, no cluster and no GPU needed.

It spawns 4 local CPU ranks and runs a short sweep of every core op over gloo (and over
MPI when `mpiexec` and mpi4py are present), then — where this build has them — MoE
dispatch/combine on ranks posing as 2 nodes, a codec accuracy table, the fabric model's
predictions for the 2048-GPU preset, and a report setting measured beside predicted.
Everything lands in one folder; the tables are printed as they are measured.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import pathlib
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from rich.console import Console

from bench.errors import UsageError
from bench.spawn import mpiexec_path
from collectives.ops import CORE_OPS

SWEEP = ["-b", "1K", "-e", "256K", "-f", "16", "-n", "10", "-w", "2", "--blocks", "3"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo", help="run the embedded demo on local CPU ranks", description=__doc__.splitlines()[0]
    )
    p.add_argument("-o", "--output", default=None, help="folder for the demo's files")
    p.add_argument("--np", type=int, default=4, help="local ranks (default 4)")
    p.add_argument("--no-mpi", action="store_true", help="skip the MPI backend")
    p.add_argument("-T", "--timeout", type=float, default=120.0, help="collective timeout, s")
    p.set_defaults(func=demo_command)


def _run(console: Console, argv: list[str]) -> int:
    cmd = [sys.executable, "-m", "bench", *argv]
    console.print(f"[dim]$ epbench {' '.join(argv)}[/dim]")
    return subprocess.run(cmd, check=False).returncode


def _mpi_usable() -> bool:
    if mpiexec_path() is None:
        return False
    try:
        importlib.import_module("collectives.backends.mpi")
        importlib.import_module("mpi4py")
    except ImportError:
        return False
    return True


def _measure(console: Console, out: pathlib.Path, args: argparse.Namespace) -> list[pathlib.Path]:
    backends = ["gloo"] + ([] if args.no_mpi or not _mpi_usable() else ["mpi"])
    files, failures = [], []
    for backend in backends:
        console.rule(f"[bold]core collectives · {backend} · {args.np} CPU ranks")
        for op in CORE_OPS:
            path = out / f"{op}-{backend}.jsonl"
            gpn = str(max(1, args.np // 2))
            extra = ["--gpus-per-node", gpn, "--pair", "cross-node"] if op == "pingpong" else []
            code = _run(
                console,
                [
                    "run",
                    op,
                    "--backend",
                    backend,
                    "--np",
                    str(args.np),
                    *SWEEP,
                    "-T",
                    str(args.timeout),
                    "-o",
                    str(path),
                    *extra,
                ],
            )
            (files if code == 0 else failures).append(path)
    if failures:
        raise UsageError(f"demo runs failed: {', '.join(p.name for p in failures)}", 1)
    return files


def _moe(console: Console, out: pathlib.Path, args: argparse.Namespace) -> list[pathlib.Path]:
    try:
        importlib.import_module("collectives.ops.moe")
    except ImportError:
        return []
    console.rule("[bold]MoE dispatch/combine · 4 ranks as 2 nodes · node-limited routing")
    files = []
    for op in ("dispatch", "combine"):
        path = out / f"{op}-gloo.jsonl"
        code = _run(
            console,
            [
                "run",
                op,
                "--np",
                str(args.np),
                "--gpus-per-node",
                "2",
                "--num-tokens",
                "256",
                "--hidden",
                "512",
                "--num-experts",
                "16",
                "--top-k",
                "4",
                "--node-limit",
                "1",
                "-n",
                "5",
                "-w",
                "1",
                "--blocks",
                "2",
                "-T",
                str(args.timeout),
                "-o",
                str(path),
            ],
        )
        if code != 0:
            raise UsageError(f"demo MoE run {op} failed (exit {code})", 1)
        files.append(path)
    return files


def _hook(module: str) -> Callable[..., Any] | None:
    try:
        return getattr(importlib.import_module(module), "demo", None)
    except ImportError:
        return None


def demo_command(args: argparse.Namespace) -> int:
    if args.np < 2:
        raise UsageError(f"--np {args.np}: the demo needs at least 2 ranks")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = pathlib.Path(args.output or f"epbench-demo-{stamp}")
    out.mkdir(parents=True, exist_ok=True)
    console = Console()
    measured = _measure(console, out, args)
    measured += _moe(console, out, args)
    predicted: list[pathlib.Path] = []
    codec_demo = _hook("bench.cmd_codec")
    if codec_demo is not None:
        console.rule("[bold]payload codecs · accuracy")
        measured += codec_demo(out, console)
    simulate_demo = _hook("bench.cmd_simulate")
    if simulate_demo is not None:
        console.rule("[bold]fabric model · 2048 GPUs · predicted")
        predicted += simulate_demo(out, console)
    report_demo = _hook("bench.cmd_report")
    if report_demo is not None:
        console.rule("[bold]report")
        report = report_demo(measured + predicted, out, console)
        console.print(f"report: {report}")
    console.rule("[bold]done")
    console.print(
        f"{len(measured)} measured and {len(predicted)} predicted result files in "
        f"[bold]{out}[/bold]"
    )
    return 0
