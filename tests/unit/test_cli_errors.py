"""Every user mistake: one line on stderr naming the value, a non-zero exit, no traceback."""

from __future__ import annotations

import pytest

CASES = [
    (["run", "broadcastx"], "unknown op 'broadcastx'"),
    (["run", "alltoall", "-b", "1M", "-e", "1K"], "smaller than -b"),
    (["run", "alltoall", "-b", "12Q"], "-b '12Q' is not a size"),
    (["run", "alltoall", "-f", "1"], "-f 1 must be greater than 1"),
    (["run", "alltoall", "-d", "float128"], "unknown dtype 'float128'"),
    (["run", "alltoall", "--backend", "tcp"], "--backend 'tcp'"),
    (["run", "alltoall", "-a", "median"], "-a 'median'"),
    (["run", "alltoall", "-c", "yes"], "expected 0 or 1"),
    (["run", "alltoall", "--np", "2", "-b", "4", "-e", "4"], "too small for alltoall"),
    (["run", "pingpong", "-b", "64", "-e", "64"], "pingpong needs at least 2 ranks"),
    (["run", "alltoall", "--np", "3", "--gpus-per-node", "2"], "does not divide"),
    (["run", "alltoallv", "--matrix", "/nonexistent/m.txt"], "--matrix /nonexistent/m.txt"),
    (["run", "alltoall", "--backend", "torch-nccl"], "needs a CUDA GPU"),
    (["run", "alltoall", "--bogus"], "unrecognized arguments: --bogus"),
]


@pytest.mark.parametrize(("argv", "message"), CASES)
def test_one_line_error(argv: list[str], message: str, cli) -> None:
    res = cli(*argv, timeout=60)
    assert res.returncode != 0
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("epbench: error:") and message in lines[0], lines[0]
