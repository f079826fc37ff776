"""The compressed alltoall / allgather cases of test_compressed under `mpiexec -n 3`."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from bench.spawn import mpiexec_path
from tests.dist.test_compressed import check_report

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(600)]
ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_compressed_collectives_on_mpi() -> None:
    mpiexec = mpiexec_path()
    if mpiexec is None:
        pytest.skip("mpiexec not found beside this Python or on PATH")
    pytest.importorskip("mpi4py")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BACKEND": "mpi"}
    proc = subprocess.run(
        [mpiexec, "-n", "3", sys.executable, "-m", "tests.dist.test_compressed"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=540, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    check_report(json.loads(proc.stdout.strip().splitlines()[-1]))
