"""A real Slurm cluster for the tests: slurmctld plus two slurmd (`-N n1`, `-N n2`) on this
host, started once per session by slurm/local-cluster.sh; skipped when Slurm is absent."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys

import pytest

from tests.conftest import ROOT, cli_env, mpiexec

RECIPE = ROOT / "slurm" / "local-cluster.sh"
NUM_NODES = 2


@dataclasses.dataclass(frozen=True)
class Cluster:
    """A running local cluster and the environment that reaches it."""

    folder: pathlib.Path
    env: dict[str, str]

    def run(self, *argv: str, check: bool = True, timeout: float = 60):
        return subprocess.run(
            argv, env=self.env, capture_output=True, text=True, check=check, timeout=timeout
        )

    def epbench(self, *argv: str, timeout: float = 60):
        return self.run(sys.executable, "-m", "bench", *argv, check=False, timeout=timeout)


def _ports_free(base: int, count: int) -> bool:
    for port in range(base, base + count):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def _base_port() -> int:
    for base in range(17000, 18000, 10):
        if _ports_free(base, NUM_NODES + 1):
            return base
    raise RuntimeError("no free ports between 17000 and 18000 for the test cluster")


def _env(conf: pathlib.Path) -> dict[str, str]:
    bin_dir = str(pathlib.Path(sys.executable).parent)
    return cli_env({"SLURM_CONF": str(conf), "PATH": bin_dir + os.pathsep + os.environ["PATH"]})


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory) -> Cluster:
    sbin = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    if shutil.which("slurmctld", path=sbin) is None or shutil.which("slurmd", path=sbin) is None:
        pytest.skip("slurmctld/slurmd not installed (scripts/install-system-deps.sh adds them)")
    folder = tmp_path_factory.mktemp("slurm")
    start = [str(RECIPE), "start", str(folder), str(NUM_NODES), str(_base_port())]
    proc = subprocess.run(start, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode:
        logs = "".join(p.read_text()[-2000:] for p in sorted((folder / "log").glob("*.log")))
        _stop(folder)
        pytest.fail(f"local Slurm cluster did not start: {proc.stderr}\n{logs}")
    try:
        yield Cluster(folder, _env(folder / "slurm.conf"))
    finally:
        _stop(folder)


def _stop(folder: pathlib.Path) -> None:
    """Stop the daemons; whatever outlives the recipe is killed by the pids it recorded."""
    try:
        subprocess.run([str(RECIPE), "stop", str(folder)], check=False, timeout=60)
    finally:
        conf = str(folder / "slurm.conf").encode()
        for pidfile in (folder / "run").glob("*.pid"):
            with contextlib.suppress(ValueError, OSError):
                pid = int(pidfile.read_text())
                # only a daemon of this cluster: a recycled pid belongs to someone else
                if conf in pathlib.Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def hydra() -> str:
    """MPICH's hydra mpiexec (skipped without it)."""
    path = mpiexec()
    if path is None:
        pytest.skip("mpiexec not installed (the mpich extra provides it)")
    version = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    if "HYDRA" not in version.stdout:
        pytest.skip(f"{path} is not MPICH's hydra mpiexec")
    return path
