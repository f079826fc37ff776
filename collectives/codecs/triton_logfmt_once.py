# mypy: disable-error-code="untyped-decorator"
"""LogFMT-n encode with the per-tile parameters formed once per tile (opt-in; unmeasured).

The default encoder (triton_logfmt.logfmt_encode_kernel) forms each tile's m, M, s, 1/s and
phi (two ln, an exp, an ln and three float64 divisions: ~390 instructions) in the layout of
the tile reduction, where every thread holding part of a tile-row repeats them: a warp
issues the chain once per tile-row each of its threads holds, about one chain per two tiles
at BT = 16 or 64 with 4 warps. Here the chain runs in a 1-D [BT] layout instead, one lane
per tile-row (a warp issues it once per 32 tiles; all warps of a program repeat it when BT
is below 32 * num_warps). The layouts meet through a side buffer of SLOTS float64 words per
tile-row, in global memory but read back by the program that wrote it (so from L1/L2):
the tile statistics go in as int32 bits, the lanes' m, 1/s and phi come back out, each
handoff behind a CTA barrier (bar.sync orders a CTA's global accesses). The codes are then
formed exactly as in the default kernel (_encode_groups, fast or exact levels), from the
same float64 values, so the wire bytes are the same. Costs: 32 B per tile of side-buffer
traffic (L2, written back to HBM on eviction), two barriers per block.
"""

from __future__ import annotations

import triton
import triton.language as tl

from collectives.codecs.triton_common import I_LN2, coef, tile_rows
from collectives.codecs.triton_logfmt import (
    _encode_groups,
    _fast_params,
    _tile_chain,
    _tile_stats,
)

# float64 words per tile-row: [0] the max and min |x| bits (two int32), [1] m (float64 of
# the float32 m, NaN for a NaN/Inf tile), [2] 1/s (0 when s = 0), [3] phi (1 when s = 0)
SLOTS = tl.constexpr(4)


@triton.jit
def _lane_params(wire_ptr, side_ptr, C, NT, ROW, block, TOTAL, BT: tl.constexpr,  # type: ignore[no-untyped-def]
                 KMAX: tl.constexpr, ALIGNED: tl.constexpr, WIDE: tl.constexpr):  # fmt: skip
    """One lane per tile-row of `block`: the statistics from the side buffer to m and M on
    the wire and to (m, 1/s, phi) with _tile_folded's special cases in the side buffer."""
    row, tile, valid = tile_rows(block, NT, TOTAL, BT, WIDE)
    word = (row * NT + tile) * SLOTS
    stats = side_ptr.to(tl.pointer_type(tl.int32)) + 2 * word
    top = tl.load(stats, mask=valid, other=0)
    low = tl.load(stats + 1, mask=valid, other=0x7F800000)
    small, step, inv, phi, _, _ = _tile_chain(wire_ptr, C, top, low, row, tile, valid, ROW,
                                              KMAX, ALIGNED)  # fmt: skip
    tl.store(side_ptr + word + 1, small.to(tl.float64), mask=valid)
    tl.store(side_ptr + word + 2, tl.where(step > 0, inv, 0.0), mask=valid)
    tl.store(side_ptr + word + 3, tl.where(step > 0, phi, 1.0), mask=valid)


@triton.jit
def _load_folded(side_ptr, word, valid, C):  # type: ignore[no-untyped-def]
    """_tile_folded's [BT, 1, 1] (m, 1/s, phi, cut-off) from the side buffer: a NaN m marks
    a NaN/Inf tile (m := 0, cut-off := +Inf), as small == small marks a finite one."""
    small = tl.load(side_ptr + word + 1, mask=valid, other=0.0)
    inv = tl.load(side_ptr + word + 2, mask=valid, other=0.0)
    phi = tl.load(side_ptr + word + 3, mask=valid, other=1.0)
    finite = small == small
    m = tl.where(finite, small, 0.0)
    mlow = tl.where(finite, m - coef(C, I_LN2), float("inf"))
    return m[:, None, None], inv[:, None, None], phi[:, None, None], mlow[:, None, None]


@triton.jit
def logfmt_encode_once_kernel(x_ptr, wire_ptr, side_ptr, C, H, NT, ROW, MB, CODE_BYTES, TOTAL,  # type: ignore[no-untyped-def]
                              N: tl.constexpr, UNIT: tl.constexpr, BT: tl.constexpr,
                              STEPS: tl.constexpr, G: tl.constexpr, EVEN: tl.constexpr,
                              ALIGNED: tl.constexpr, WIDE: tl.constexpr,
                              FAST: tl.constexpr = True,
                              EMULATE: tl.constexpr = False):  # fmt: skip
    """logfmt_encode_kernel's bytes; side_ptr: float64 [TOTAL * SLOTS] scratch."""
    KMAX: tl.constexpr = (1 << (N - 1)) - 1
    for step_i in range(STEPS):
        block = tl.program_id(0) * STEPS + step_i
        row, tile, valid = tile_rows(block, NT, TOTAL, BT, WIDE)
        top, low = _tile_stats(x_ptr, row, tile, valid, H, BT, EVEN)
        word = (row * NT + tile) * SLOTS
        stats = side_ptr.to(tl.pointer_type(tl.int32)) + 2 * word
        tl.store(stats, top, mask=valid)
        tl.store(stats + 1, low, mask=valid)
        tl.debug_barrier()
        _lane_params(wire_ptr, side_ptr, C, NT, ROW, block, TOTAL, BT, KMAX, ALIGNED, WIDE)
        tl.debug_barrier()
        tp = _load_folded(side_ptr, word, valid, C)
        fp = _fast_params(*tp, C)
        for chunk in tl.range(0, 16 // G, loop_unroll_factor=1):
            _encode_groups(x_ptr, wire_ptr, C, row, tile, valid, H, ROW, MB, CODE_BYTES,
                           chunk * G, tp, fp, N, UNIT, BT, G, EVEN, FAST, EMULATE)  # fmt: skip
