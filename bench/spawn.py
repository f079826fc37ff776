"""`--np N` with no launcher: start N local ranks and watch them.

For the gloo and torch-nccl backends the children get torchrun's variables (RANK, WORLD_SIZE,
LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT); for MPI the command is handed to
the `mpiexec` beside this Python. If a rank dies, the others get the collective timeout
plus a grace period to end on their own (their watchdogs name the op), then are killed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

from bench.errors import UsageError

GRACE_S = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mpiexec_path() -> str | None:
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.access(beside, os.X_OK):
        return beside
    return shutil.which("mpiexec")


def _child_env(rank: int, num_ranks: int, port: int) -> dict[str, str]:
    env = dict(os.environ)
    for name in list(env):  # an outer launcher's variables would confuse detection
        if name.startswith(("OMPI_COMM_WORLD", "PMI_", "PMIX_", "SLURM_PROCID")):
            del env[name]
    # One thread per rank unless asked otherwise (as torchrun does): idle torch/numba worker
    # threads of several ranks spinning on a few cores slow every collective many times over.
    for name in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, "1")
    env.update(
        {
            "RANK": str(rank),
            "WORLD_SIZE": str(num_ranks),
            "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": str(num_ranks),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "EPBENCH_LAUNCHER": "spawn",
        }
    )
    return env


def run_local(argv: Sequence[str], num_ranks: int, backend: str, timeout_s: float) -> int:
    """Run `python -m bench <argv>` as `num_ranks` local processes; return the exit code."""
    cmd = [sys.executable, "-m", "bench", *argv]
    if backend == "mpi":
        mpiexec = mpiexec_path()
        if mpiexec is None:
            raise UsageError("--backend mpi with --np needs mpiexec; install mpich or use gloo")
        env = dict(os.environ)
        for name in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(name, "1")
        procs = [subprocess.Popen([mpiexec, "-n", str(num_ranks), *cmd], env=env)]
    else:
        port = free_port()
        procs = [
            subprocess.Popen(cmd, env=_child_env(r, num_ranks, port)) for r in range(num_ranks)
        ]
    try:
        return _watch(procs, timeout_s + GRACE_S)
    except KeyboardInterrupt:
        _kill(procs)
        raise


def _watch(procs: list[subprocess.Popen[bytes]], grace_s: float) -> int:
    first_failure: tuple[int, int] | None = None
    deadline = None
    while True:
        codes = [p.poll() for p in procs]
        for rank, code in enumerate(codes):
            if code not in (None, 0) and first_failure is None:
                first_failure = (rank, code)
                deadline = time.monotonic() + grace_s
                if code < 0:
                    name = signal.Signals(-code).name
                    print(
                        f"epbench: error: rank {rank} was killed by {name}",
                        file=sys.stderr,
                        flush=True,
                    )
        if all(c is not None for c in codes):
            break
        if deadline is not None and time.monotonic() > deadline:
            _kill(procs)
            break
        time.sleep(0.05)
    if first_failure is None:
        return 0
    code = first_failure[1]
    return code if code > 0 else 128 - code


def _kill(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
    for proc in procs:
        proc.wait()
