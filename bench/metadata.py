"""Provenance of a run: argv, versions, hosts, GPUs, NICs, launcher, rank map, environment.

`local_facts()` probes this process's host (called on every rank and gathered);
`environment()` keeps only the allowlisted prefixes and redacts anything that looks like a
secret. Tests build runs with probing switched off by passing their own dicts.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import pathlib
import platform
import re
import socket
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

ENV_PREFIXES = (
    "NCCL_",
    "UCX_",
    "OMPI_",
    "MPICH_",
    "I_MPI_",
    "SLURM_",
    "CUDA_",
    "NVSHMEM_",
    "TORCH_",
    "PMI_",
    "PMIX_",
    "MASTER_",
    "EPBENCH_",
    "OMP_",
    "HYDRA_",
)
_SECRET = re.compile(r"(TOKEN|SECRET|PASSW|PASSWD|KEY|CREDENTIAL|AUTH|COOKIE)", re.IGNORECASE)
REDACTED = "<redacted>"


def environment(env: Mapping[str, str]) -> dict[str, str]:
    """Allowlisted variables; values of secret-looking names replaced by <redacted>."""
    kept = {}
    for name in sorted(env):
        if name.startswith(ENV_PREFIXES):
            kept[name] = REDACTED if _SECRET.search(name) else env[name]
    return kept


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.cache
def git_sha() -> str | None:
    """The epbench checkout's commit, when running from a git checkout."""
    root = pathlib.Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    if out.returncode != 0 or not sha:
        return None
    dirty = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    ).stdout.strip()
    return sha + ("-dirty" if dirty else "")


def versions() -> dict[str, str | None]:
    return {
        "python": platform.python_version(),
        "epbench": _version("epbench"),
        "epbench_git": git_sha(),
        "numpy": _version("numpy"),
        "torch": _version("torch"),
        "mpi4py": _version("mpi4py"),
        "cupy": _version("cupy-cuda12x") or _version("cupy-cuda13x") or _version("cupy"),
    }


def _gpu_facts() -> list[dict[str, Any]]:
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    gpus = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        gpus.append(
            {
                "index": index,
                "name": props.name,
                "memory_bytes": int(props.total_memory),
                "pci_bus_id": f"{props.pci_domain_id:04x}:{props.pci_bus_id:02x}:"
                f"{props.pci_device_id:02x}.0",
                "uuid": str(getattr(props, "uuid", "")),
            }
        )
    return gpus


def _nic_facts(root: pathlib.Path = pathlib.Path("/sys/class/infiniband")) -> list[dict[str, Any]]:
    """RDMA NICs from sysfs: link layer, rate, state per port (empty when absent)."""
    nics: list[dict[str, Any]] = []
    if not root.is_dir():
        return nics
    for dev in sorted(root.iterdir()):
        for port in sorted((dev / "ports").glob("*")):

            def read(name: str, port: pathlib.Path = port) -> str:
                try:
                    return (port / name).read_text().strip()
                except OSError:
                    return ""

            nics.append(
                {
                    "device": dev.name,
                    "port": port.name,
                    "link_layer": read("link_layer"),
                    "rate": read("rate"),
                    "state": read("state"),
                }
            )
    return nics


def local_facts() -> dict[str, Any]:
    """Facts of this rank's host and process; gathered from every rank into the header."""
    return {
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "gpus": _gpu_facts(),
        "nics": _nic_facts(),
    }


def run_metadata(
    *,
    argv: list[str],
    launcher: str,
    backend_facts: Mapping[str, Any],
    rank_facts: list[dict[str, Any]],
    rank_map: list[dict[str, Any]],
    env: Mapping[str, str],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The header's metadata block."""
    hosts = sorted({facts["hostname"] for facts in rank_facts})
    first_gpus = next((f["gpus"] for f in rank_facts if f.get("gpus")), [])
    return {
        "argv": argv,
        "executable": sys.executable,
        "launcher": launcher,
        "versions": dict(versions()),
        "backend": dict(backend_facts),
        "hosts": hosts,
        "num_hosts": len(hosts),
        "gpu_model": first_gpus[0]["name"] if first_gpus else None,
        "ranks": rank_facts,
        "rank_map": rank_map,
        "environment": environment(env),
        **dict(extra or {}),
    }
