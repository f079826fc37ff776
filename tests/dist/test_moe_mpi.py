"""The MoE cases of test_moe_gloo under `mpiexec -n 4` (2 virtual nodes of 2 ranks)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from bench.spawn import mpiexec_path
from tests.dist import test_moe_gloo as gloo_tests
from tests.dist.moe_cases import write_inputs

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(600)]
ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    mpiexec = mpiexec_path()
    if mpiexec is None:
        pytest.skip("mpiexec not found beside this Python or on PATH")
    pytest.importorskip("mpi4py")
    workdir = tmp_path_factory.mktemp("moe-mpi")
    write_inputs(workdir)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [mpiexec, "-n", "4", sys.executable, "-m", "tests.dist.moe_mpi_worker", str(workdir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((workdir / "results.json").read_text())["ranks"]


def test_dispatch_batches_and_combine_are_correct(results):
    gloo_tests.test_dispatch_batches_and_combine_are_correct(results)


def test_node_limit_holds(results):
    gloo_tests.test_node_limit_holds(results)


def test_identity_experts_return_x_exactly_and_algorithms_agree(results):
    gloo_tests.test_identity_experts_return_x_exactly_and_algorithms_agree(results)


def test_ops_report_bytes_and_overlap(results):
    gloo_tests.test_ops_report_bytes_and_overlap(results)
