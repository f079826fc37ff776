"""Compile a codec kernel for an H200 (sm_90) without a GPU and count its instructions.

    python bench/gpu/codec_sass.py logfmt8 encode [--config bt32w2g2] [--variant defer]

Triton compiles the kernel exactly as a launch on 4096 x 7168 tokens would (the same
constexprs, and the divisibility-by-16 specialisation Triton gives integer arguments and
pointers at launch: without it the compiler picks other layouts and the counts mean
nothing), ptxas (bundled with Triton) assembles it, and cuobjdump disassembles it. Printed:
registers per thread, static SASS instructions, the instructions of the kernel's largest loop
and how often it runs per block, and from those an estimate of the instructions a thread
issues per element (an H200 issues one warp instruction per scheduler and cycle, so for the
issue-bound codec kernels this estimate tracks the kernel time), with the most frequent
opcodes. --sass FILE keeps the disassembly. Needs triton only (no CUDA device).
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import re
import subprocess
import sys
import tempfile
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from collectives import codecs
from collectives.codecs import triton_kernels as tk

TOKENS, HIDDEN = 4096, 7168
POINTERS = {"wire_ptr": "*u8", "out_ptr": "*fp32", "fix_ptr": "*i32"}
_INSTRUCTION = re.compile(r"\s+/\*([0-9a-f]{4})\*/\s+(?:@!?U?P\w+\s+)?([A-Z0-9_]+)")
_BRANCH = re.compile(r"BRA\s+(?:\S+,\s+)?0x([0-9a-f]+)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("codec", help="an FP8 or LogFMT codec name (fp8_e4m3, logfmt8, ...)")
    p.add_argument("op", choices=(*tk.OPS, "fixup"),
                   help="fixup: the deferred LogFMT encoder's second kernel")  # fmt: skip
    p.add_argument("--config", help="launch shape label (bt32w2g2); default: the codec's")
    p.add_argument("--variant", choices=tuple(tk.ENCODER_VARIANTS), default="default",
                   help="encoder variant (as codec_gpu.py --ab names them)")  # fmt: skip
    p.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    p.add_argument("--sass", type=pathlib.Path, help="write the disassembly here")
    args = p.parse_args(argv)
    try:
        args.spec = codecs.parse(args.codec)
        if args.spec.kind not in tk.KERNEL_KINDS:
            raise ValueError(f"{args.codec} has no Triton kernel (kinds: {tk.KERNEL_KINDS})")
        if args.op == "fixup" and args.spec.kind != "logfmt":
            raise ValueError(f"{args.codec} has no fixup kernel (LogFMT only)")
        args.cfg = tk.KernelConfig.from_label(args.config) if args.config else None
        args.cfg = tk.plan(args.spec, args.op, (TOKENS, HIDDEN), args.cfg).config
    except ValueError as err:
        p.error(str(err))
    return args


def kernel_and_constants(args: argparse.Namespace) -> tuple[Any, dict[str, Any], dict[str, int]]:
    """(JIT kernel, constexpr values, runtime int values) of the launch triton_kernels makes."""
    fast, defer = tk.ENCODER_VARIANTS[args.variant]
    launch = tk.plan(args.spec, args.op, (TOKENS, HIDDEN), args.cfg, fast=fast,
                     defer=defer if args.spec.kind == "logfmt" else None)  # fmt: skip
    kernel = launch.kernel
    constexpr = {p.name for p in kernel.params if p.is_constexpr}
    named = launch.named
    return (kernel, {k: v for k, v in named.items() if k in constexpr},
            {k: v for k, v in named.items() if k not in constexpr})  # fmt: skip


def compile_kernel(args: argparse.Namespace) -> Any:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from collectives.codecs.triton_common import COEF

    kernel, constexprs, runtime = kernel_and_constants(args)
    signature: dict[str, Any] = {}
    aligned = []
    for name in kernel.arg_names:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name == "x_ptr":
            signature[name] = "*bf16" if args.dtype == "bfloat16" else "*fp32"
            aligned.append(name)
        elif name in POINTERS:
            signature[name] = POINTERS[name]
            aligned.append(name)
        elif name == "C":
            signature[name] = tuple(["i64"] * len(COEF))
        else:  # a runtime int: specialised as Triton does at launch
            signature[name] = "i32"
            if runtime[name] % 16 == 0:
                aligned.append(name)
    src = ASTSource(
        fn=kernel,
        signature=signature,
        constexprs={(kernel.arg_names.index(k),): v for k, v in constexprs.items()},
        attrs={(kernel.arg_names.index(k),): [["tt.divisibility", 16]] for k in aligned},
    )
    options = {"num_warps": args.cfg.num_warps, "num_stages": args.cfg.num_stages,
               "enable_fp_fusion": False}  # fmt: skip
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options)


def tool(name: str) -> str:
    import triton

    return str(pathlib.Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name)


def count(cubin: bytes) -> tuple[int, str]:
    """(registers per thread, disassembly) of a cubin."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        usage = subprocess.run([tool("cuobjdump"), "-res-usage", f.name], capture_output=True,
                               text=True, check=True).stdout  # fmt: skip
        sass = subprocess.run([tool("cuobjdump"), "-sass", f.name], capture_output=True,
                              text=True, check=True).stdout  # fmt: skip
    regs = re.search(r"REG:(\d+)", usage)
    return int(regs.group(1)) if regs else -1, sass


def analyse(sass: str) -> dict[str, Any]:
    """Static instruction count, the largest loop's [start, end] and size, opcode counts."""
    ins = [(int(m.group(1), 16), m.group(2), line) for line in sass.splitlines()
           if (m := _INSTRUCTION.match(line))]  # fmt: skip
    loops = [(int(b.group(1), 16), addr) for addr, _, line in ins
             if (b := _BRANCH.search(line)) and int(b.group(1), 16) < addr]  # fmt: skip
    start, end = max(loops, key=lambda span: span[1] - span[0]) if loops else (0, -1)
    body = sum(1 for addr, _, _ in ins if start <= addr <= end)
    ops = collections.Counter(op for _, op, _ in ins)
    return {"static": len(ins), "loop": body, "span": (start, end), "ops": ops}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = args.cfg
    regs, sass = count(compile_kernel(args).asm["cubin"])
    if args.sass:
        args.sass.write_text(sass)
    found = analyse(sass)
    per_thread = cfg.block_tiles * 128 // (32 * cfg.num_warps)
    trips = 16 // cfg.groups if args.spec.kind == "logfmt" and args.op == "encode" else 1
    dynamic = (found["static"] - found["loop"]) + found["loop"] * trips
    print(f"{args.codec} {args.op} {args.variant} {cfg.label} ({args.dtype}, sm_90): "
          f"{regs} registers, {found['static']} instructions, largest loop "
          f"{found['loop']} x {trips} per block, ~{dynamic / per_thread:.1f} per element "
          f"({per_thread} elements per thread; both sides of every branch counted)")  # fmt: skip
    print("  " + " ".join(f"{op}:{n}" for op, n in found["ops"].most_common(16)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
