"""Discover GPUs and RDMA NICs on this machine, and check a cluster/rank map against them.

NICs come from sysfs (`/sys/class/infiniband/<dev>/ports/<n>/{link_layer,rate,state}`, GID
types, the PCI path behind `device`); GPUs from NVML when `pynvml` (nvidia-ml-py) is
importable, else from PCI sysfs (vendor 0x10de, display/3D class). Each GPU's nearest NIC is
the one sharing the longest PCI path prefix. Whatever is missing is reported in `absent`,
never guessed. `root` lets tests point discovery at a directory tree shaped like sysfs.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
from typing import Any

from topologies import Cluster


@dataclasses.dataclass(frozen=True, kw_only=True)
class Discovery:
    """What this machine exposes."""

    nics: list[dict[str, Any]]
    """One entry per RDMA device port: name, port, link_layer, rate, state, gid_types, pci."""
    gpus: list[dict[str, Any]]
    """One entry per GPU: index, name, pci (bus id), source (nvml or sysfs)."""
    gpu_nearest_nic: list[int]
    """Index into `nics` of the NIC nearest each GPU on the PCI tree (-1 if unknown)."""
    absent: list[str]
    """Why something could not be discovered."""


def _read(path: pathlib.Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


def _nics(root: pathlib.Path, absent: list[str]) -> list[dict[str, Any]]:
    base = root / "sys/class/infiniband"
    if not base.is_dir():
        absent.append(f"no RDMA devices: {base} does not exist (no InfiniBand/RoCE driver)")
        return []
    out = []
    for dev in sorted(base.iterdir(), key=lambda p: _natural(p.name)):
        pci = os.path.realpath(dev / "device") if (dev / "device").exists() else ""
        for port in sorted((dev / "ports").glob("*"), key=lambda p: _natural(p.name)):
            gid_types = sorted({_read(t) for t in (port / "gid_attrs/types").glob("*")} - {""})
            out.append(
                {
                    "name": dev.name,
                    "port": int(port.name) if port.name.isdigit() else port.name,
                    "link_layer": _read(port / "link_layer"),
                    "rate": _read(port / "rate"),
                    "state": _read(port / "state"),
                    "gid_types": gid_types,
                    "pci": pci,
                }
            )
    if not out:
        absent.append(f"{base} exists but lists no device ports")
    return out


def _natural(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _gpus_nvml(absent: list[str]) -> list[dict[str, Any]] | None:
    try:
        import pynvml
    except ImportError:
        absent.append("NVML: pynvml (nvidia-ml-py) not installed; GPUs read from PCI sysfs")
        return None
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, driver not loaded, ...
        absent.append(f"NVML unavailable ({exc}); GPUs read from PCI sysfs")
        return None
    try:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            bus = pynvml.nvmlDeviceGetPciInfo(h).busId
            bus = bus.decode() if isinstance(bus, bytes) else bus
            name = name.decode() if isinstance(name, bytes) else name
            out.append({"index": i, "name": name, "pci": bus.lower()[-12:], "source": "nvml"})
        return out
    finally:
        pynvml.nvmlShutdown()


def _gpus_sysfs(root: pathlib.Path, absent: list[str]) -> list[dict[str, Any]]:
    base = root / "sys/bus/pci/devices"
    out: list[dict[str, Any]] = []
    for dev in sorted(base.glob("*")) if base.is_dir() else []:
        if _read(dev / "vendor") == "0x10de" and _read(dev / "class")[:6] in ("0x0302", "0x0300"):
            out.append(
                {"index": len(out), "name": "NVIDIA GPU", "pci": dev.name, "source": "sysfs"}
            )
    if not out:
        absent.append(f"no NVIDIA GPUs found in {base}")
    return out


def _pci_path(root: pathlib.Path, bus_id: str) -> str:
    dev = root / "sys/bus/pci/devices" / bus_id
    return os.path.realpath(dev) if dev.exists() else ""


def _nearest(gpu_path: str, nics: list[dict[str, Any]]) -> int:
    if not gpu_path:
        return -1
    best, best_len = -1, -1
    for i, nic in enumerate(nics):
        common = len(os.path.commonpath([gpu_path, nic["pci"]])) if nic["pci"] else -1
        if common > best_len:
            best, best_len = i, common
    return best


def discover(root: str | pathlib.Path = "/", use_nvml: bool = True) -> Discovery:
    """Probe NICs and GPUs under `root` (the real machine at "/")."""
    root = pathlib.Path(root)
    absent: list[str] = []
    nics = _nics(root, absent)
    gpus = (_gpus_nvml(absent) if use_nvml else None) or _gpus_sysfs(root, absent)
    nearest = [_nearest(_pci_path(root, g["pci"]), nics) for g in gpus]
    return Discovery(nics=nics, gpus=gpus, gpu_nearest_nic=nearest, absent=absent)


def check_against(cluster: Cluster, disc: Discovery) -> list[str]:
    """Differences between a node of `cluster` and what was discovered (empty: consistent)."""
    out = []
    if len(disc.gpus) < cluster.gpus_per_node:
        out.append(f"{len(disc.gpus)} GPUs found; {cluster.name} has {cluster.gpus_per_node}")
    if cluster.fabric != "none":
        names = [n["name"] for n in disc.nics]
        missing = [
            cluster.nic_name(i)
            for i in range(cluster.nics_per_node)
            if cluster.nic_name(i) not in names
        ]
        if missing:
            out.append(f"NICs {missing} of {cluster.name} not found (found {names or 'none'})")
        want = "Ethernet" if "roce" in cluster.scale_out.name else "InfiniBand"
        other = sorted({n["link_layer"] for n in disc.nics if n["link_layer"] not in ("", want)})
        if other:
            out.append(f"link layer {other} found; {cluster.scale_out.name} expects {want}")
        for g, nic_idx in enumerate(disc.gpu_nearest_nic[: cluster.gpus_per_node]):
            if nic_idx < 0:
                continue
            found, expect = disc.nics[nic_idx]["name"], cluster.nic_name(cluster.nic_of_gpu[g])
            if found != expect:
                out.append(f"GPU {g} is nearest {found}; the cluster maps it to {expect}")
    return out


def print_discovery(disc: Discovery, console: Any) -> None:
    """Rich tables of discovered NICs and GPUs, and what is absent."""
    from rich.table import Table

    t = Table(title="RDMA devices (sysfs)")
    for col in ("device", "port", "link layer", "rate", "state", "GID types", "PCI"):
        t.add_column(col)
    for n in disc.nics:
        t.add_row(n["name"], str(n["port"]), n["link_layer"], n["rate"], n["state"],
                  ",".join(n["gid_types"]), os.path.basename(n["pci"]))  # fmt: skip
    console.print(t)
    g = Table(title="GPUs")
    for col in ("index", "name", "PCI", "source", "nearest NIC"):
        g.add_column(col)
    for gpu, near in zip(disc.gpus, disc.gpu_nearest_nic, strict=True):
        nic = disc.nics[near]["name"] if near >= 0 else "-"
        g.add_row(str(gpu["index"]), gpu["name"], gpu["pci"], gpu["source"], nic)
    console.print(g)
    for line in disc.absent:
        console.print(f"[yellow]absent:[/yellow] {line}")
