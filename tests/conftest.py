"""Shared test helpers: run the real CLI in subprocesses, read result files."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONWARNINGS"] = "ignore::FutureWarning"
    for name in list(env):  # a test must not inherit an outer launcher
        if name.startswith(("OMPI_", "PMI_", "PMIX_", "SLURM_")) or name in (
            "RANK",
            "WORLD_SIZE",
            "LOCAL_RANK",
            "LOCAL_WORLD_SIZE",
            "MASTER_ADDR",
            "MASTER_PORT",
        ):
            del env[name]
    env.update(extra or {})
    return env


def run_cli(
    args: Sequence[str], cwd: pathlib.Path, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=cwd,
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def read_run(path: pathlib.Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def mpiexec() -> str | None:
    beside = pathlib.Path(sys.executable).with_name("mpiexec")
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def run_with_fault(cli, out: pathlib.Path, fault: str, *extra: str):  # type: ignore[no-untyped-def]
    """A 2-rank alltoall sweep (1K, 4K) whose rank 1 misbehaves at the second size, -T 4."""
    return cli(
        "run", "alltoall", *extra, "--np", "2", "-b", "1K", "-e", "4K", "-f", "4",
        "-n", "3", "-w", "1", "--blocks", "2", "-T", "4", "-o", str(out),
        "--inject-fault", f"{fault}:1:1", timeout=90,
    )  # fmt: skip


@pytest.fixture
def cli(tmp_path: pathlib.Path):  # type: ignore[no-untyped-def]
    def _run(*args: str, timeout: float = 120, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        return run_cli(args, tmp_path, timeout, env)

    return _run
