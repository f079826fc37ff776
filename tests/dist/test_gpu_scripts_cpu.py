"""The MoE GPU script's CPU rehearsal (`--backend gloo`): the script that runs on H200s stays
runnable, checks every case, and writes its JSON, without a GPU."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.dist, pytest.mark.timeout(300)]
ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_moe_gpu_script_rehearses_on_gloo(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "moe.json"
    cmd = [sys.executable, str(ROOT / "bench" / "gpu" / "moe_gpu.py"), "--gpus", "2",
           "--backend", "gloo", "--num-tokens", "32", "--hidden", "256", "--iters", "2",
           "--warmup", "1", "--ll-tokens", "1,4", "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ranks up on gloo" in done.stdout
    data = json.loads(out.read_text())
    cases = [row["case"] for row in data["normal"]]
    assert "flat dispatch fp8_e4m3 cached" in cases and "flat combine bf16" in cases
    assert all(row["num_wrong"] == 0 for row in data["normal"])
    assert [row["tokens"] for row in data["low_latency"]] == [1, 4]
    assert all(row["num_wrong"] == 0 for row in data["low_latency"])
    assert set(data["overlap"]) >= {"comm_us", "compute_us", "together_us", "hidden_us"}
