"""bench/gpu/codec_gpu.py and codec_profile.sh up to their first CUDA call (--dry-run): the
encoder variants --ab times, --profile's argument checks, and the profile script's default
list of encoders, so that a GPU session does not spend its device time on a typo."""

from __future__ import annotations

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
