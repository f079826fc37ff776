"""The Triton kernels write the reference's bytes: run under Triton's CPU interpreter
(TRITON_INTERPRET=1) in a subprocess; skipped where Triton is not installed."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None, reason="triton is not installed"
)

SCRIPT = """
import numpy as np, torch
from collectives import codecs
rng = np.random.default_rng(2)
x = (rng.standard_t(3.0, (6, 300)) * 10.0 ** rng.uniform(-4, 2, (6, 1))).astype(np.float32)
x[0, :128] = 0; x[1, 5] = np.nan; x[2, 200] = np.inf; x[3, :40] = 1e-40; x[4, 9] = 3.4e38
inputs = [torch.from_numpy(x), torch.from_numpy(x[:, :129]).bfloat16()]
bad = []
for name in ("fp8_e4m3", "fp8_e5m2_pow2", "logfmt4", "logfmt8", "logfmt10", "logfmt13", "logfmt16"):
    ref, tri = codecs.get(name, impl="numpy"), codecs.get(name, impl="triton")
    for t in inputs:
        wire = ref.encode(t)
        if not torch.equal(tri.encode(t), wire):
            bad.append(name + " encode")
        want = ref.decode(wire, *t.shape).view(torch.int32)
        if not torch.equal(tri.decode(wire, *t.shape).view(torch.int32), want):
            bad.append(name + " decode")
print("BAD", bad)
"""


def test_triton_kernels_match_the_reference_under_the_interpreter() -> None:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": path}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=600, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "BAD []" in proc.stdout, proc.stdout[-2000:]
