"""The combine's gather-sum kernel (Triton, run by its CPU interpreter) against the exact
fp32 sum rounded once, on BF16 and float32 rows with padding, several fanouts and widths."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")

SCRIPT = textwrap.dedent(
    """
    import torch
    import torch.nn.functional as F
    from collectives.moe import kernels

    assert kernels.use_kernel(torch.zeros(1))  # the interpreter takes CPU tensors
    gen = torch.Generator().manual_seed(3)
    cases = 0
    for dtype in (torch.bfloat16, torch.float32):
        for rows, out_rows, fanout, hidden in ((9, 5, 2, 7168), (17, 11, 4, 300), (4, 3, 1, 129)):
            # integers / 8: every partial sum is exact in fp32, so the paths must agree bit
            # for bit whatever their order of accumulation
            values = (torch.randint(-100, 100, (rows, hidden), generator=gen) / 8).to(dtype)
            values[-1] = 0
            index = torch.randint(0, rows, (out_rows, fanout), generator=gen)
            index[0, -1] = rows - 1  # padding entries point at the zero row
            got = kernels.gather_sum(values, index)
            # the exact fp32 sum, rounded once to the rows' dtype
            exact = F.embedding_bag(index, values.float(), mode="sum", padding_idx=rows - 1)
            want = exact.to(dtype).float()
            assert got.dtype == dtype and got.shape == (out_rows, hidden)
            got = got.float()
            assert torch.equal(got, want), (dtype, rows, fanout, hidden)
            cases += 1
    print("cases", cases)
    """
)


def test_gather_sum_kernel_matches_embedding_bag() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "cases 6" in done.stdout
