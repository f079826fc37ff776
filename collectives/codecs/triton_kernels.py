"""Triton kernels for FP8 and LogFMT-n on CUDA: one pass over the input to encode, one pass
over the wire to decode, bit-identical to the numpy reference (kernels in triton_fp8.py and
triton_logfmt.py, shared pieces in triton_common.py; BF16 and DeepEP's LogFMT-10 use the
torch-ops path). With TRITON_INTERPRET=1 the same kernels run on CPU tensors, which is
how CI proves identity; bench/gpu/codec_gpu.py checks it on GPUs and bench/gpu/codec_tune.py
sweeps the launch table below.

Identity rests on: the reference's float64 (LogFMT decode: float32) operation sequence
(detmath.py, ref_logfmt.py), IEEE division
(`div_rn` in float32; float64 `/` is correctly rounded), exact constants and conversions
(triton_common.py), and no fused multiply-add (`enable_fp_fusion=False` at launch).

Layout. A program walks STEPS blocks of BT consecutive tile-rows of the flattened
[num_tokens, num_tiles] grid, so the work per program is BT * STEPS * 128 elements whatever
hidden is, the grid is 1-D, a short last tile only costs a column mask (dropped when hidden
% 128 == 0), and int32 offsets are used unless the tensors pass 2^31 bytes. Metadata moves
as float32 words when every wire row is a multiple of 4 bytes, else byte by byte; FP8 and
LogFMT-8/16 codes move as plain 8/16-bit vectors, other LogFMT widths as 32/16/8-bit pieces
of each 8-code group, which the encoder can hand to consecutive lanes before storing
(KernelConfig.staged: LogFMT-10's default, 2x faster on an H200, because one piece per lane
and store spreads a warp's writes over as many sectors as it has lanes).

What limits each kernel on an H200 (HBM3e: a device copy reaches ~3.2 TB/s read + written;
132 SMs; per SM and clock: 4 warp-instructions issued, 128 FP32, 64 INT32, 64 FP64 lanes
(34 TFLOP/s), 16 conversion lanes). Instruction counts per element below are from the sm_90
SASS of the default launch shapes (compiled without a GPU); times for 4096 x 7168 bf16:
- FP8 encode: 3.03 B/element moved (28 us at copy speed) against ~42 instructions, a
  correctly rounded float32 division included (~37 us of issue): issue and memory about
  even, so it needs many bytes in flight per SM (BT * 128 * 2 B per program, ~90
  registers). Expect ~0.6 of copy.
- FP8 decode: 5.03 B/element (47 us) against ~30 instructions (26 us): memory-bound.
- LogFMT encode, exact: one float64 ln per element (a correctly rounded float64 division,
  whose slow-path branch also serialises the elements of a thread, and a 7-term
  polynomial: ~37 FP64 of ~95 instructions) for ~3.1 B: issue-bound. The per-tile
  ln/exp/divisions (~150 FP64 instructions) are repeated by every thread holding part of a
  tile-row, so the kernel first reduces whole tile-rows and then codes them in a rolled
  loop over `groups`-sized chunks: each thread then shares one per-tile evaluation among 64
  elements. The fast encoders (LogFMT-4 to -15 by default) replace the ln by lg2.approx
  plus a few float64 operations and defer the rare near-cut groups to a fixup kernel:
  LogFMT-8 ~50 instructions per element (ncu), ~74 us, 0.30-0.33 of copy; LogFMT-10 ~58
  (ncu, staged stores), ~85 us, 0.29-0.30.
- LogFMT decode: float32 only per element (a degree-6 exp2 polynomial, exact scaling; the
  float64 work is per tile) for 5.1-5.3 B: LogFMT-8 47.5 instructions per element on its
  clamp-free path, ~55 us, 0.68 of copy.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any

import torch

from collectives.codecs import torch_impl
from collectives.codecs.spec import (
    CodecSpec,
    meta_row_bytes,
    num_tiles,
    packed_bytes,
    row_bytes,
)

try:
    import triton
except ImportError:  # pragma: no cover - CPU-only installs
    triton = None

KERNEL_KINDS = ("fp8", "logfmt")
OPS = ("encode", "decode")
INT32_LIMIT = 2**31 - 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class KernelConfig:
    """Launch shape of one codec kernel (no effect on the bytes it writes)."""

    block_tiles: int
    """BT: tile-rows (1x128 tiles of a token) per block; a power of two."""
    steps: int = 1
    """Blocks a program walks one after another."""
    num_warps: int = 4
    """Warps per program."""
    num_stages: int = 1
    """Software-pipelining depth Triton may use for the block loop."""
    groups: int = 16
    """LogFMT encode: 8-code groups per inner step (16: a whole tile at once; fewer bound
    the registers so that more tile-rows share one thread's per-tile work)."""
    staged: bool = False
    """LogFMT encode of widths other than 8 and 16: hand each group's pieces to consecutive
    lanes (through shared memory) before storing them, so that a warp writes runs of
    bytes instead of one piece per lane in as many sectors (label suffix 'c')."""

    def __post_init__(self) -> None:
        bt = self.block_tiles
        bad = bt < 1 or bt & (bt - 1) or self.steps < 1 or self.groups not in (1, 2, 4, 8, 16)
        if bad or self.num_warps not in (1, 2, 4, 8, 16):
            raise ValueError(f"bad kernel config {self}: block_tiles a power of two, steps >= 1, "
                             "num_warps and groups in 1, 2, 4, 8, 16")  # fmt: skip

    @property
    def label(self) -> str:
        label = f"bt{self.block_tiles}s{self.steps}w{self.num_warps}p{self.num_stages}"
        return label + (f"g{self.groups}" if self.groups != 16 else "") + "c" * self.staged

    @classmethod
    def from_label(cls, label: str) -> KernelConfig:
        """The config a label names (bt64s1w4p1g2c; s, w, p, g and c may be left out)."""
        found = re.fullmatch(r"bt(\d+)(?:s(\d+))?(?:w(\d+))?(?:p(\d+))?(?:g(\d+))?(c?)", label)
        if found is None:
            raise ValueError(f"bad launch shape {label!r}: expected e.g. bt64w4g2")
        *numbers, staged = found.groups()
        bt, steps, warps, stages, groups = (None if v is None else int(v) for v in numbers)
        return cls(block_tiles=bt or 1, steps=steps or 1, num_warps=warps or 4,
                   num_stages=stages or 1, groups=groups or 16, staged=staged == "c")  # fmt: skip


# Tuned on an H200 (bench/gpu/codec_tune.py, 4096 and 16384 tokens x 7168, bf16 and fp32
# input; docs/BENCHMARKS.md §3): the shape with the best geometric mean of the fraction of
# copy bandwidth over those four cases. Keys are (kind, op), or (codec name, op) where one
# codec differs from its kind's best (the deferred LogFMT-8 encoder was timed at 75.7 /
# 258.2 us at 4096 / 16384 tokens at bt16 w1 against 77.6-79.8 / 274.8-275.5 at bt32 w2 in
# one call; 83.4 / 281.5 at bt64 w4 before; LogFMT-10's at 98.3 / 323.0 us at bt16 w1 g2
# with staged stores against 197.6 / 751.5 at its previous best, whole tiles unstaged, and
# 193.4 / 705.3 at bt16 w1 g2 unstaged, in one call). Staged stores are the default for every
# width whose groups are written in pieces: LogFMT-13's fast encoders gained 3.5-7x with
# them at every shape timed (one-byte pieces: 13 stores per group without).
DEFAULT_CONFIGS: dict[tuple[str, str], KernelConfig] = {
    ("fp8", "encode"): KernelConfig(block_tiles=16, num_warps=4),
    ("fp8", "decode"): KernelConfig(block_tiles=16, num_warps=4),
    ("logfmt", "encode"): KernelConfig(block_tiles=64, num_warps=4, groups=2, staged=True),
    ("logfmt8", "encode"): KernelConfig(block_tiles=16, num_warps=1, groups=2),
    ("logfmt10", "encode"): KernelConfig(block_tiles=16, num_warps=1, groups=2, staged=True),
    ("logfmt", "decode"): KernelConfig(block_tiles=8, num_warps=2),
}
# LogFMT widths whose encode takes the fast path unless fast=False is asked for: those
# measured faster on an H200 (docs/BENCHMARKS.md §3). LogFMT-8: 1.42x with the in-place
# redo, 1.71x deferred; LogFMT-10: 0.74-0.99x in place, 1.11x deferred (whole tiles; 1.9x
# deferred at bt16 w1 g2, staged). Every other width from 4 to 15 at the kind's default
# shape (bt64 w4 g2, staged): deferred 1.40-2.12x faster than exact, in place 1.04-1.71x
# (4096 and 16384 tokens x 7168, one call). LogFMT-16 stays exact: its deferred encoder was
# 0.91-0.96x, its in-place one 0.71-0.73x. FP8's fast encoder is the default.
FAST_LOGFMT = frozenset(f"logfmt{n}" for n in range(4, 16))


def default_fast(spec: CodecSpec) -> bool:
    """Whether encode(spec, x) takes the new (fast) encoder by default."""
    return spec.kind == "fp8" or spec.name in FAST_LOGFMT


# Encoders by variant name, as (fast, defer) for encode(); None: the codec's default.
ENCODER_VARIANTS: dict[str, tuple[bool | None, bool | None]] = {
    "default": (None, None), "prev": (False, False), "fast": (True, False),
    "defer": (True, True)}  # fmt: skip


def encoder_flags(spec: CodecSpec, fast: bool | None, defer: bool | None) -> tuple[bool, bool]:
    """encode()'s (fast, defer) with the defaults filled in (defer implies fast unless
    fast=False is given); ValueError for defer where there is no fast LogFMT encoder."""
    if fast is None:
        fast = bool(defer) or default_fast(spec)
    if defer is None:
        defer = fast and default_defer(spec)
    if defer and (spec.kind != "logfmt" or not fast):
        raise ValueError(f"defer is a variant of the fast LogFMT encoder; {spec.name} "
                         f"(fast={fast}) has none")  # fmt: skip
    return fast, bool(defer)


def default_defer(spec: CodecSpec) -> bool:
    """Whether encode(spec, x) takes the deferring LogFMT encoder by default: wherever the
    fast one is the default, as deferring the groups near a cut to a second kernel beat
    redoing a chunk behind a block-wide vote everywhere it was timed (LogFMT-8 83.4 / 280.7
    us against 95.0 / 354.3 at 4096 / 16384 tokens x 7168, LogFMT-10 198.0 / 751.3 against
    211.8 / 819.5, one call; the other widths 1.12-1.37x at their default shape, another)."""
    return spec.kind == "logfmt" and default_fast(spec)


def sweep_configs(kind: str, op: str) -> tuple[KernelConfig, ...]:
    """The launch shapes bench/gpu/codec_tune.py tries for `kind` ('fp8'/'logfmt'), `op`;
    the default first."""
    default = DEFAULT_CONFIGS[(kind, op)]  # the kind's default (a codec's own is in the list)
    if (kind, op) == ("logfmt", "encode"):
        shapes = [(16, 4, 16), (32, 4, 16), (32, 4, 4), (32, 8, 8), (64, 4, 4), (64, 8, 4),
                  (128, 4, 2), (128, 8, 2), (32, 4, 2), (64, 4, 1), (64, 8, 2),
                  (128, 4, 1), (32, 2, 2), (16, 1, 2)]  # fmt: skip
        out = [KernelConfig(block_tiles=bt, num_warps=w, groups=g) for bt, w, g in shapes]
        # staged stores (no effect on LogFMT-8/16, whose codes are whole bytes)
        out += [
            KernelConfig(block_tiles=bt, num_warps=w, groups=g, staged=True)
            for bt, w, g in ((16, 4, 16), (16, 1, 2), (32, 2, 2), (64, 4, 2), (32, 4, 4))
        ]
    else:
        pairs = [(8, 2), (8, 4), (16, 4), (16, 8), (32, 4), (32, 8), (64, 4), (64, 8), (64, 16),
                 (128, 8), (128, 16)]  # fmt: skip
        out = [KernelConfig(block_tiles=bt, num_warps=w) for bt, w in pairs]
    out += [dataclasses.replace(default, steps=4, num_stages=s) for s in (1, 2)]
    return (default, *(c for c in out if c != default))


def default_config(spec: CodecSpec, op: str) -> KernelConfig:
    if (spec.kind, op) not in DEFAULT_CONFIGS:
        raise ValueError(f"no Triton kernel for {spec.name} {op}; kernels cover {KERNEL_KINDS}")
    return DEFAULT_CONFIGS.get((spec.name, op), DEFAULT_CONFIGS[(spec.kind, op)])


def available() -> bool:
    """Triton is importable and a CUDA device is present."""
    return triton is not None and torch.cuda.is_available()


@functools.lru_cache(maxsize=256)
def _shape_args(
    spec: CodecSpec, num_tokens: int, hidden: int
) -> tuple[dict[str, int], dict[str, int]]:
    """(runtime args, constexpr args) that depend only on the codec and the shape."""
    row = row_bytes(spec, hidden)
    tiles = num_tiles(hidden)
    runtime = {"H": hidden, "NT": tiles, "ROW": row, "MB": meta_row_bytes(spec, hidden),
               "TOTAL": num_tokens * tiles}  # fmt: skip
    wide = (num_tokens + 1) * max(row, 4 * hidden) + 256 * tiles > INT32_LIMIT
    const: dict[str, int] = {"EVEN": hidden % 128 == 0, "ALIGNED": row % 4 == 0, "WIDE": wide}
    if spec.kind == "logfmt":
        runtime["CODE_BYTES"] = packed_bytes(hidden, spec.bits)
        unit = next(u for u in (4, 2, 1) if spec.bits % u == 0 and row % u == 0)
        const.update(N=spec.bits, UNIT=unit)
    else:
        assert spec.fp8 is not None
        f = spec.fp8
        const.update(MAN=f.man_bits, BIAS=f.bias, MAXCODE=f.max_code)
    return runtime, const


@dataclasses.dataclass(frozen=True)
class Launch:
    """One codec kernel launch without its tensors: the kernel, its 1-D grid, its launch
    shape and every other argument it takes by name (runtime ints and constexprs)."""

    kernel: Any
    programs: int
    config: KernelConfig
    named_items: tuple[tuple[str, Any], ...]

    @property
    def named(self) -> dict[str, Any]:
        return dict(self.named_items)


@functools.lru_cache(maxsize=1024)
def plan(
    spec: CodecSpec,
    op: str,
    shape: tuple[int, int],
    config: KernelConfig | None = None,
    *,
    fast: bool | None = None,
    defer: bool | None = None,
    emulate: bool = False,
) -> Launch:
    """The launch that encode ('encode'), its second kernel ('fixup') or decode ('decode')
    makes for a [T, H] `shape` of `spec` (`fast`, `defer`: as for encode; `emulate`: the
    interpreter's stand-ins for hardware instructions). One program per BT * STEPS
    tile-rows; the fixup kernel's grid is fixed (at most FIX_PROGRAMS). ValueError for a
    codec or op without a kernel."""
    from collectives.codecs import triton_fp8, triton_logfmt

    if op == "fixup":
        if spec.kind != "logfmt":
            raise ValueError(f"{spec.name} has no fixup kernel (LogFMT only)")
        cfg = config or FIX_CONFIG
    else:
        cfg = config or default_config(spec, op)
    runtime, const = _shape_args(spec, *shape)
    extra: dict[str, Any] = {"BT": cfg.block_tiles, "STEPS": cfg.steps}
    programs = triton.cdiv(runtime["TOTAL"], cfg.block_tiles * cfg.steps)
    if spec.kind == "fp8":
        assert spec.fp8 is not None
        if op == "encode":
            fast, _ = encoder_flags(spec, fast, None)
            kernel = triton_fp8.fp8_encode_kernel
            extra.update(MAXF=spec.fp8.max_finite, POW2=spec.pow2_scale, DIVIDE=not fast,
                         EMULATE=emulate)  # fmt: skip
        else:
            kernel = triton_fp8.fp8_decode_kernel
            extra["INF_CODE"] = 0x7C if spec.fp8.name == "e5m2" else 0
    elif op == "encode":
        fast, defer = encoder_flags(spec, fast, defer)
        kernel = triton_logfmt.logfmt_encode_kernel
        extra.update(G=cfg.groups, STAGED=cfg.staged, FAST=fast, EMULATE=emulate,
                     DEFER=defer and encode_groups(shape) < INT32_LIMIT)  # fmt: skip
    elif op == "fixup":
        kernel = triton_logfmt.logfmt_fixup_kernel
        programs = min(FIX_PROGRAMS, triton.cdiv(encode_groups(shape), FIX_GROUPS))
        extra.update(PROGRAMS=programs, E=FIX_GROUPS)
    else:
        kernel = triton_logfmt.logfmt_decode_kernel
    named = {k: v for k, v in {**runtime, **const, **extra}.items() if k in kernel.arg_names}
    return Launch(kernel, programs, cfg, tuple(named.items()))


def encode_groups(shape: tuple[int, int]) -> int:
    """8-code groups of a [T, H] LogFMT encode (what the deferred encoder's list can hold)."""
    return shape[0] * num_tiles(shape[1]) * 16


# Compiled kernels by their launch and each tensor's dtype, device and 16-byte alignment, so
# that a repeated launch skips Triton's argument binding and cache-key hashing: tens of µs
# per call on the host, as long as the FP8 encode of 4096 tokens takes on an H200.
_COMPILED: dict[tuple[Any, ...], Any] = {}


def _launch(launch: Launch, args: tuple[Any, ...]) -> None:
    """Launch `launch` with its leading tensor (and COEF) arguments `args`."""
    kernel, cfg = launch.kernel, launch.config
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    hooks = (triton.knobs.runtime.launch_enter_hook, triton.knobs.runtime.launch_exit_hook)
    hooked = any(getattr(h, "calls", h) for h in hooks)  # a profiler's: Triton's own path
    key = (launch, *((t.dtype, t.device, t.data_ptr() % 16) for t in tensors))
    compiled = _COMPILED.get(key) if tensors[0].is_cuda and not hooked else None
    if compiled is None:
        grid = (launch.programs,)
        done = kernel[grid](*args, **launch.named, num_warps=cfg.num_warps,
                            num_stages=cfg.num_stages, enable_fp_fusion=False)  # fmt: skip
        if tensors[0].is_cuda:
            _COMPILED[key] = done
        return
    named = launch.named
    values = [*args, *(named.get(p.name, p.default) for p in kernel.params[len(args) :])]
    stream = triton.runtime.driver.active.get_current_stream(tensors[0].device.index)
    compiled.run(launch.programs, 1, 1, stream, compiled.function, compiled.packed_metadata,
                 None, None, None, *values)  # fmt: skip


def _fix_list(device: torch.device, capacity: int) -> torch.Tensor:
    """The int32 [2 + capacity] list the deferred LogFMT encoder fills (a count, the fixup
    programs finished, then group ids) for the current stream of `device`; zero at first,
    and emptied again by the last fixup program of each encode. Kept for the process's
    life: a CUDA graph that captured an encode keeps using the same buffer."""
    stream = torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else 0
    key = (device, stream, capacity)
    buf = _FIX_LISTS.get(key)
    if buf is None:
        buf = _FIX_LISTS[key] = torch.zeros(2 + capacity, dtype=torch.int32, device=device)
    return buf


_FIX_LISTS: dict[tuple[Any, ...], torch.Tensor] = {}
# Programs of the fixup kernel, and groups each takes per step: the list is short (about
# 1e-4 of the groups on Gaussian input), so a fixed grid that exits at once when it is empty.
FIX_PROGRAMS, FIX_GROUPS = 132, 32


def encode(
    spec: CodecSpec,
    x: torch.Tensor,
    config: KernelConfig | None = None,
    *,
    fast: bool | None = None,
    defer: bool | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """[T, H] float32 or bfloat16 -> flat uint8 wire; BF16 / DeepEP via torch ops. fast=False
    runs the previous encoders (FP8: a division per element; LogFMT: the float64 ln for every
    element), fast=True the new ones, None each codec's default (default_fast). LogFMT's fast
    encoder either redoes a chunk exactly when one of its elements is near a cut (defer=False)
    or lists the groups holding such elements for a second kernel that recodes them exactly
    (defer=True, which implies fast unless fast=False is given; None: default_defer). The
    same bytes in every case. `out`: the wire tensor to write (contiguous uint8, wire_bytes
    long)."""
    fast, defer = encoder_flags(spec, fast, defer)
    if spec.kind not in KERNEL_KINDS or x.shape[0] == 0:
        wire = torch_impl.encode(spec, x)
        return wire if out is None else out.copy_(wire)
    from collectives.codecs.triton_common import COEF

    x = x.contiguous()
    shape = (x.shape[0], x.shape[1])
    wire = out if out is not None else torch.empty(
        shape[0] * row_bytes(spec, shape[1]), dtype=torch.uint8, device=x.device)  # fmt: skip
    launch = plan(spec, "encode", shape, config, fast=fast, defer=defer,
                  emulate=x.device.type != "cuda")  # fmt: skip
    if spec.kind == "fp8":
        _launch(launch, (x, wire))
        return wire
    deferred = bool(launch.named["DEFER"])
    fix = _fix_list(x.device, encode_groups(shape) if deferred else 0)
    _launch(launch, (x, wire, fix, COEF))
    if deferred:
        _launch_fixup(spec, x, wire, fix)
    return wire


FIX_CONFIG = KernelConfig(block_tiles=1, num_warps=4)
"""Launch shape of the fixup kernel (its grid is fixed: FIX_PROGRAMS at most)."""


def _launch_fixup(spec: CodecSpec, x: torch.Tensor, wire: torch.Tensor, fix: torch.Tensor) -> None:
    """Recode the listed near-cut groups of `x` (logfmt_fixup_kernel), through the same
    compiled-kernel cache as the encoder."""
    from collectives.codecs.triton_common import COEF

    _launch(plan(spec, "fixup", (x.shape[0], x.shape[1])), (x, wire, fix, COEF))


def decode(spec: CodecSpec, wire: torch.Tensor, num_tokens: int, hidden: int,
           config: KernelConfig | None = None) -> torch.Tensor:  # fmt: skip
    """Flat uint8 wire -> [T, H] float32 on the wire's device."""
    if spec.kind not in KERNEL_KINDS or num_tokens == 0:
        return torch_impl.decode(spec, wire, num_tokens, hidden)
    from collectives.codecs.triton_common import COEF

    out = torch.empty((num_tokens, hidden), dtype=torch.float32, device=wire.device)
    launch = plan(spec, "decode", (num_tokens, hidden), config)
    _launch(launch, (wire, out) if spec.kind == "fp8" else (wire, out, COEF))
    return out


__all__ = ["DEFAULT_CONFIGS", "ENCODER_VARIANTS", "FAST_LOGFMT", "KernelConfig",
           "Launch", "available", "decode", "default_config", "default_defer", "default_fast",
           "encode", "encode_groups", "encoder_flags", "plan", "sweep_configs",
           "triton"]  # fmt: skip
