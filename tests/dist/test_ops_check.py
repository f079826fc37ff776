"""Each op's check passes on correct output and catches one planted wrong element."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.spawn import free_port
from tests.conftest import ROOT, cli_env

pytestmark = pytest.mark.dist


@pytest.mark.parametrize("world", [2, 3])
def test_checks_catch_planted_corruption(world: int) -> None:
    port = str(free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.dist.ops_worker"],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env({"RANK": str(r), "WORLD_SIZE": str(world), "MASTER_PORT": port}),
        )
        for r in range(world)
    ]
    errs = [p.communicate(timeout=240)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(errs)
