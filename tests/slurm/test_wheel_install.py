"""An installed epbench (a wheel, not the checkout) finds its shell templates.

The wheel is built from this checkout (`pip wheel --no-deps`, with the running
interpreter's setuptools), installed into a fresh virtual environment, and
`epbench slurm gen` and `epbench mpirun gen` run there from a folder outside the checkout
with no PYTHONPATH. The new environment sees its dependencies (numpy, jinja2, ...) through
a .pth line naming this interpreter's site-packages; a line in a .pth file adds the folder
only, never the .pth files inside it, so an editable install of the checkout there stays
invisible and `bench` can come only from the wheel.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.timeout(240)

SPEC = """\
[sweep]
name = "wheel"

[cluster]
nodes = 2
gpus_per_node = 2
request_gpus = false

[[op]]
name = "alltoall"

[matrix]
backends = ["gloo"]
rank_maps = ["block", "cyclic"]
"""


def _run(cmd: list[str], cwd: pathlib.Path, env: dict[str, str] | None = None):
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=200
    )
    assert proc.returncode == 0, f"{cmd}: {proc.stdout}\n{proc.stderr}"
    return proc


def _source_copy(tmp: pathlib.Path) -> pathlib.Path:
    """What the wheel is built from, copied so that the build leaves nothing in the checkout
    and no stale build/ folder can slip old files into the wheel."""
    src = tmp / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("bench", "collectives", "topologies", "results"):
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    return src


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, pathlib.Path]:
    tmp = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp)]
    _run([*build, str(_source_copy(tmp))], tmp, _env(None))
    [wheel] = tmp.glob("epbench-*.whl")
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    install = [*pip, "--python", str(python), "install", "--no-deps", "-q", str(wheel)]
    _run(install, tmp, _env(None))
    purelib = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp
    ).stdout.strip()
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (pathlib.Path(purelib) / "epbench-test-deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    return {"tmp": tmp, "wheel": wheel, "bin": env_dir / "bin"}


def _env(bin_dir: pathlib.Path | None) -> dict[str, str]:
    """No PYTHONPATH (the checkout must not be importable); the venv's bin first on PATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if bin_dir is not None:
        env["PATH"] = str(bin_dir) + os.pathsep + env.get("PATH", "")
    return env


def test_wheel_carries_the_templates(installed) -> None:
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    assert {"bench/templates/epbench-rank.sh", "bench/templates/sweep.sbatch.j2"} <= set(names)


def test_installed_epbench_writes_sbatch_scripts_outside_the_checkout(installed) -> None:
    work = installed["tmp"] / "elsewhere"
    work.mkdir()
    (work / "spec.toml").write_text(SPEC)
    env = _env(installed["bin"])
    where = _run([str(installed["bin"] / "python"), "-c", "import bench; print(bench.__file__)"],
                 work, env).stdout  # fmt: skip
    assert where.startswith(str(installed["tmp"] / "venv")), where
    _run([str(installed["bin"] / "epbench"), "slurm", "gen", "spec.toml", "-o", "out"], work, env)
    script = (work / "out" / "jobs" / "n2g2.sbatch").read_text()
    assert script.startswith("#!/usr/bin/env bash\n#SBATCH --job-name=epbench-wheel-n2g2")
    assert " none cyclic cyclic-n2g2 " in script and " none block block-n2g2 " in script
    wrapper = work / "out" / "epbench-rank.sh"
    assert os.access(wrapper, os.X_OK) and 'exec "$@"' in wrapper.read_text()
    _run(["bash", "-n", str(work / "out" / "jobs" / "n2g2.sbatch")], work, env)
    mpirun = ["mpirun", "gen", "--hosts", "a,b", "--gpus-per-node", "2", "-o", "mp"]
    _run([str(installed["bin"] / "epbench"), *mpirun], work, env)
    assert os.access(work / "mp" / "epbench-rank.sh", os.X_OK)
