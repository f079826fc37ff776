"""GPU kernels of the MoE exchange where plain torch ops waste memory bandwidth.

`gather_sum`: out[i] = sum over j of values[index[i, j]] in fp32, the last step of every
combine (each token's partial outputs from the ranks it reached, summed in its original
order). torch's `embedding_bag` does this at about a quarter of the H200's memory bandwidth
on BF16 rows; the Triton kernel below reads BF16 or float32 rows, accumulates in fp32,
skips padding entries without touching memory and rounds once to the rows' dtype: one
read of the rows it needs and one write of the output.

Triton is used on CUDA tensors when it imports; CPU tensors (and CUDA without Triton) take
the `embedding_bag` path. With TRITON_INTERPRET=1 the kernel also runs on CPU tensors, which
is how the unit tests compare the two paths.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - CPU-only installs
    triton = None

BLOCK_COLS = 1024
"""Columns per program: a 7168-wide row is 7 programs of 2-4 KiB loads per source row."""


def use_kernel(values: torch.Tensor) -> bool:
    """The Triton path applies: Triton imports and the tensor is on CUDA (or the Triton
    interpreter is on, which runs kernels on CPU tensors)."""
    if triton is None:
        return False
    # under TRITON_INTERPRET=1, triton.jit makes an InterpretedFunction, which runs on CPU
    return values.is_cuda or type(_gather_sum).__name__ == "InterpretedFunction"


if triton is not None:

    @triton.jit  # type: ignore[untyped-decorator]
    def _gather_sum(values_ptr, index_ptr, out_ptr, H, PAD, FANOUT: tl.constexpr,  # type: ignore[no-untyped-def]
                    BLOCK: tl.constexpr, OUT_BF16: tl.constexpr):  # fmt: skip
        token = tl.program_id(0).to(tl.int64)
        cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        inside = cols < H
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for j in tl.static_range(FANOUT):
            row = tl.load(index_ptr + token * FANOUT + j)
            use = inside & (row != PAD)
            acc += tl.load(values_ptr + row * H + cols, mask=use, other=0.0).to(tl.float32)
        if OUT_BF16:
            # round to nearest even by bits: the same on GPUs and in Triton's interpreter
            # (whose float32 -> bfloat16 cast truncates)
            bits = acc.to(tl.int32, bitcast=True)
            bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
            tl.store(out_ptr + token * H + cols, bits.to(tl.int16).to(tl.bfloat16, bitcast=True),
                     mask=inside)  # fmt: skip
        else:
            tl.store(out_ptr + token * H + cols, acc, mask=inside)


def gather_sum(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """[num_out, hidden] in values' dtype: row i sums values[index[i, :]], accumulated in
    fp32 and rounded once.

    `values` ([rows, hidden], bfloat16 or float32) must end with a zero row; padding
    entries of `index` ([num_out, fanout] int64) point at it and are skipped.
    """
    pad = int(values.shape[0]) - 1
    if not use_kernel(values):
        return F.embedding_bag(index, values, mode="sum", padding_idx=pad)
    num_out, fanout = (int(n) for n in index.shape)
    hidden = int(values.shape[1])
    if values.dtype not in (torch.bfloat16, torch.float32):
        raise ValueError(f"gather_sum sums bfloat16 or float32 rows, not {values.dtype}")
    out = torch.empty((num_out, hidden), dtype=values.dtype, device=values.device)
    if num_out == 0 or hidden == 0:
        return out
    grid = (num_out, triton.cdiv(hidden, BLOCK_COLS))
    _gather_sum[grid](values.contiguous(), index.contiguous(), out, hidden, pad,
                      FANOUT=fanout, BLOCK=BLOCK_COLS,
                      OUT_BF16=values.dtype == torch.bfloat16)  # fmt: skip
    return out
