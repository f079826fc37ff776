"""The one-way import rule of DESIGN.md §1, checked on the source with `ast`.

topologies <- collectives <- bench -> results; results imports only topologies; only
collectives/backends imports torch.distributed, cupy.cuda.nccl or mpi4py; only bench reads
the environment (os.environ / os.getenv).
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGES = ("topologies", "collectives", "bench", "results")
ALLOWED = {
    "topologies": {"topologies"},
    "collectives": {"collectives", "topologies"},
    "bench": {"bench", "collectives", "topologies", "results"},
    "results": {"results", "topologies"},
}
COMM_LIBS = ("torch.distributed", "cupy.cuda.nccl", "mpi4py")


def _imports(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _sources(package: str) -> list[pathlib.Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_flow_one_way(package: str) -> None:
    bad = []
    for path in _sources(package):
        for name in _imports(path):
            top = name.split(".")[0]
            if top in PACKAGES and top not in ALLOWED[package]:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("package", PACKAGES)
def test_comm_libraries_only_in_backends(package: str) -> None:
    bad = []
    for path in _sources(package):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("collectives/backends/"):
            continue
        for name in _imports(path):
            if any(name == lib or name.startswith(lib + ".") for lib in COMM_LIBS):
                bad.append(f"{rel} imports {name}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("package", ["topologies", "collectives", "results"])
def test_only_bench_reads_environment(package: str) -> None:
    bad = []
    for path in _sources(package):
        text = path.read_text()
        for needle in ("os.environ", "os.getenv", "getenv("):
            if needle in text:
                bad.append(f"{path.relative_to(ROOT)} uses {needle}")
    assert not bad, "\n".join(bad)
