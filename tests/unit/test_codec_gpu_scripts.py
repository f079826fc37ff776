"""bench/gpu/codec_gpu.py and codec_profile.sh up to their first CUDA call (--dry-run): the
encoder variants --ab times, --profile's argument checks, and the profile script's default
list of encoders, so that a GPU session does not spend its device time on a typo; and
codec_sass.py, which needs no GPU at all."""

from __future__ import annotations

import importlib.util
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

GPU = ROOT / "bench" / "gpu"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(GPU / "codec_gpu.py"), *args], cwd=ROOT,
                          text=True, capture_output=True, timeout=120, check=False)  # fmt: skip


def test_ab_times_the_fast_and_defer_encoders_beside_the_default_and_the_previous() -> None:
    proc = run("--ab", "--dry-run", "--codecs", "fp8_e4m3,logfmt8,logfmt10",
               "--ab-configs", "bt64w4g2,bt128w4g1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(": ") for line in proc.stdout.splitlines())
    assert lines["fp8_e4m3"] == "triton triton-prev"
    assert lines["logfmt8"].split()[:4] == ["triton", "triton-prev", "triton-fast",
                                            "triton-defer"]  # fmt: skip
    assert "triton-defer@bt64s1w4p1g2" in lines["logfmt10"].split()
    assert "triton-fast@bt128s1w4p1g1" in lines["logfmt10"].split()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("fp8_e4m3:defer", "defer for LogFMT only"),
        ("logfmt8:quick", "'quick' is not one of"),
        ("bf16:default", "bf16 has no Triton encoder"),
        ("logfmt8:defer@bt12", "power of two"),
        ("logfmt8:defer@b64", "bad launch shape 'b64'"),
    ],
)
def test_profile_rejects_bad_encoders_without_a_traceback(spec: str, message: str) -> None:
    proc = run("--profile", spec, "--dry-run")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_profile_script_default_encoders_parse() -> None:
    env = {"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(["bash", str(GPU / "codec_profile.sh"), "--dry-run"], cwd=ROOT, env=env,
                          text=True, capture_output=True, timeout=240, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("profile: ") == 7
    assert "logfmt10 defer (bt64s1w4p1g2) 4096x7168 bfloat16" in proc.stdout


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs triton")
def test_sass_counts_compile_a_kernel_for_sm90_without_a_gpu(tmp_path: pathlib.Path) -> None:
    sass = tmp_path / "fp8.sass"
    proc = subprocess.run([sys.executable, str(GPU / "codec_sass.py"), "fp8_e4m3", "encode",
                           "--sass", str(sass)], cwd=ROOT, text=True, capture_output=True,
                          timeout=240, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r"(\d+) registers, (\d+) instructions, .* ~([\d.]+) per element",
                      proc.stdout)  # fmt: skip
    assert found is not None, proc.stdout
    registers, instructions, per_element = int(found[1]), int(found[2]), float(found[3])
    assert 16 <= registers <= 255 and instructions > 100 and per_element > 5
    assert "F2FP" in sass.read_text() or "FFMA" in sass.read_text()  # real sm_90 SASS


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs triton")
def test_staged_stores_and_the_fixup_kernel_compile_for_sm90(tmp_path: pathlib.Path) -> None:
    """The staged LogFMT-10 encoder really moves its pieces through shared memory on an
    sm_90 build (the unstaged one does not), and the fixup kernel builds with the atomic
    that lets its last program empty the list."""
    sass = {}
    for name, args in (
        ("staged", ("encode", "--config", "bt16w1g2c")),
        ("plain", ("encode", "--config", "bt16w1g2")),
        ("fixup", ("fixup",)),
    ):
        out = tmp_path / f"{name}.sass"
        proc = subprocess.run([sys.executable, str(GPU / "codec_sass.py"), "logfmt10", *args,
                               "--sass", str(out)], cwd=ROOT, text=True, capture_output=True,
                              timeout=240, check=False)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        sass[name] = out.read_text()
    assert re.search(r"\bSTS\b|\bSTS\.", sass["staged"]) and re.search(r"\bLDS", sass["staged"])
    assert not re.search(r"\bLDS", sass["plain"])
    assert "ATOMG" in sass["fixup"]


@pytest.mark.parametrize(
    ("args", "message"),
    [(("bf16", "encode"), "bf16 has no Triton kernel"),
     (("fp8_e4m3", "fixup"), "fp8_e4m3 has no fixup kernel"),
     (("logfmt8", "encode", "--config", "b3"), "bad launch shape 'b3'")],
)  # fmt: skip
def test_sass_counts_reject_bad_arguments(args: tuple[str, ...], message: str) -> None:
    proc = subprocess.run([sys.executable, str(GPU / "codec_sass.py"), *args], cwd=ROOT,
                          text=True, capture_output=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 2 and message in proc.stderr
