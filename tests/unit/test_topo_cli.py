"""`epbench topo` and machine discovery (on a sysfs-shaped directory tree)."""

from __future__ import annotations

import os
import pathlib

import pytest

from bench.cli import main
from bench.cmd_topo import resolve_cluster, resolve_rank_map
from bench.discover import check_against, discover
from bench.errors import UsageError
from topologies import load_preset, rank_map_to_text


def test_show_map_env_presets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topo", "show", "deepseek-mpft"]) == 0
    out = capsys.readouterr().out
    assert "multi-plane" in out and "256 x 8 = 2048" in out and "64 / 256" in out
    assert main(["topo", "map", "deepseek-mpft", "--nodes", "2", "--rank-map", "misaligned"]) == 0
    out = capsys.readouterr().out
    assert "plane" in out and "differs between nodes" in out
    assert main(["topo", "env", "deepseek-mpft", "--nodes", "2", "--rank", "9"]) == 0
    out = capsys.readouterr().out
    assert "mlx5_1:1" in out and "NVSHMEM_HCA_PE_MAPPING" in out
    assert main(["topo", "map", "deepseek-mrft", "--nodes", "2", "--format", "slurm"]) == 0
    assert "--distribution=block:block" in capsys.readouterr().out
    assert main(["topo", "map", "workstation", "--format", "rankfile"]) == 0
    assert "rank 1=node000 slot=1" in capsys.readouterr().out
    assert main(["topo", "presets"]) == 0
    assert "deepseek-mrft" in capsys.readouterr().out


def test_user_mistakes_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["topo", "show", "no-such-preset"],
        ["topo", "map", "deepseek-mpft", "--rank-map", "spiral"],
        ["topo", "show", "deepseek-mpft", "--nodes", "0"],
        ["topo", "env", "workstation", "--rank", "5"],
        ["topo", "show", "/nonexistent/cluster.toml"],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("epbench: error:") and err.count("\n") == 1, err


def test_cluster_and_rank_map_files(tmp_path: pathlib.Path) -> None:
    from topologies.catalog import preset_text

    toml = tmp_path / "mine.toml"
    toml.write_text(preset_text("deepseek-mrft").replace("num_nodes = 256", "num_nodes = 4"))
    cluster = resolve_cluster(str(toml))
    assert cluster.num_nodes == 4
    mapfile = tmp_path / "map.txt"
    mapfile.write_text(rank_map_to_text(resolve_rank_map("cyclic", cluster)))
    rmap = resolve_rank_map(str(mapfile), cluster, 32)
    assert rmap.name == "explicit" and rmap.node[:3].tolist() == [0, 1, 2]
    with pytest.raises(UsageError, match="has 32 ranks, the run has 16"):
        resolve_rank_map(str(mapfile), cluster, 16)


def _fake_sysfs(root: pathlib.Path, link_layer: str) -> None:
    """Two NICs and two GPUs, GPU i behind the same PCIe switch as NIC i."""
    for i in range(2):
        sw = root / f"sys/devices/pci0000:00/0000:00:0{i}.0"
        nic_dev, gpu_dev = sw / f"0000:1{i}:00.0", sw / f"0000:2{i}:00.0"
        nic_dev.mkdir(parents=True)
        gpu_dev.mkdir(parents=True)
        (gpu_dev / "vendor").write_text("0x10de\n")
        (gpu_dev / "class").write_text("0x030200\n")
        ib = root / f"sys/class/infiniband/mlx5_{i}"
        port = ib / "ports/1"
        (port / "gid_attrs/types").mkdir(parents=True)
        (port / "link_layer").write_text(link_layer + "\n")
        (port / "rate").write_text("400 Gb/sec (4X NDR)\n")
        (port / "state").write_text("4: ACTIVE\n")
        (port / "gid_attrs/types/0").write_text("IB/RoCE v1\n")
        os.symlink(nic_dev, ib / "device")
        bus = root / "sys/bus/pci/devices"
        bus.mkdir(parents=True, exist_ok=True)
        os.symlink(gpu_dev, bus / gpu_dev.name)
        os.symlink(nic_dev, bus / nic_dev.name)


def test_discovery_reads_sysfs_and_checks_a_cluster(tmp_path: pathlib.Path) -> None:
    _fake_sysfs(tmp_path, "InfiniBand")
    disc = discover(tmp_path, use_nvml=False)
    assert [n["name"] for n in disc.nics] == ["mlx5_0", "mlx5_1"]
    assert disc.nics[0]["link_layer"] == "InfiniBand" and "400" in disc.nics[0]["rate"]
    assert len(disc.gpus) == 2 and disc.gpu_nearest_nic == [0, 1]
    two = load_preset("deepseek-mrft", gpus_per_node=2, nics_per_node=2)
    assert check_against(two, disc) == []
    roce = load_preset("deepseek-mrft-roce", gpus_per_node=2, nics_per_node=2)
    assert any("link layer" in p for p in check_against(roce, disc))
    swapped = load_preset("deepseek-mrft", gpus_per_node=2, nics_per_node=2, gpu_nic=[1, 0])
    assert any("GPU 0 is nearest mlx5_0" in p for p in check_against(swapped, disc))
    eight = load_preset("deepseek-mrft")
    assert any("mlx5_7" in p for p in check_against(eight, disc))


def test_discovery_reports_what_is_absent(tmp_path: pathlib.Path) -> None:
    disc = discover(tmp_path, use_nvml=False)
    assert disc.nics == [] and disc.gpus == []
    text = " ".join(disc.absent)
    assert "infiniband does not exist" in text and "no NVIDIA GPUs" in text
    assert main(["topo", "discover"]) == 0  # the real machine: prints tables or absences
