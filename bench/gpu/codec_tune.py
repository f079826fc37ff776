"""Sweep the launch shapes of the Triton codec kernels on one GPU (run from the repo root).

    python bench/gpu/codec_tune.py --out codec_tune.json

For each input dtype (bfloat16, float32) and size (default 4096x7168 and 16384x7168) it
times a device copy of the input (bytes read + written), then every launch shape that
collectives.codecs.triton_kernels.sweep_configs lists for the encode and decode kernels of
fp8_e4m3, logfmt8 and logfmt10. Before a shape is timed its output must equal the default
shape's output byte for byte (and bit for bit after decode), and the numpy reference on a
slice of 8 tokens; a shape that differs is reported as WRONG and never ranked. Times are
medians over CUDA events (after warm-up). Prints one table (GB/s of bytes read + written and
the fraction of the copy measured in the same run; `*` marks the best shape of each kernel)
and writes every sample to --out as JSON. Runs in about a minute on an H200 (most of it
compiling); needs torch, numpy and triton only.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from collectives import codecs
from collectives.codecs import throughput
from collectives.codecs import triton_kernels as tk

TARGETS = {"fp8_e4m3": 0.5, "logfmt8": 0.3, "logfmt10": 0.3}
CHECK_TOKENS = 8


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=pathlib.Path, required=True, help="JSON results file")
    p.add_argument("--sizes", default="4096x7168,16384x7168", help="TOKENSxHIDDEN,...")
    p.add_argument("--codecs", default="fp8_e4m3,logfmt8,logfmt10")
    p.add_argument("--dtypes", default="bfloat16,float32", help="input dtypes to sweep")
    p.add_argument("--repeats", type=int, default=25, help="timed samples per shape (>= 20)")
    p.add_argument("--ops", default="encode,decode", help="kernels to sweep")
    p.add_argument("--loop", type=int, default=1, help="back-to-back calls per sample")
    p.add_argument(
        "--defer",
        action="store_true",
        help="LogFMT encode: sweep the deferring fast encoder instead of the codec's default",
    )
    return p.parse_args()


def timed(fn, repeats: int, loop: int = 1) -> list[float]:  # type: ignore[no-untyped-def]
    """Seconds per call of fn() (CUDA events), one sample per `loop` back-to-back calls,
    `repeats` samples, after 3 warm-up calls (which may compile: then 0.2 s of copies bring
    the clocks back up)."""
    for _ in range(3):
        fn()
    throughput.warm_up_clocks(0.2)

    def many() -> None:
        for _ in range(loop):
            fn()

    return [t / loop for t in throughput.timed(many, torch.device("cuda"), repeats)]


def reference_ok(name: str, x: torch.Tensor, config: tk.KernelConfig,
                 defer: bool | None = None) -> bool:  # fmt: skip
    """The shape's encode and decode of the first tokens equal the numpy reference."""
    spec, ref = codecs.parse(name), codecs.get(name, impl="numpy")
    part = x[:CHECK_TOKENS]
    wire = ref.encode(part.cpu())
    if not torch.equal(tk.encode(spec, part, config, fast=defer, defer=defer).cpu(), wire):
        return False
    want = ref.decode(wire, *part.shape).view(torch.int32)
    got = tk.decode(spec, wire.cuda(), *part.shape, config).cpu().view(torch.int32)
    return torch.equal(got, want)


def sweep_op(name: str, op: str, x: torch.Tensor, wire: torch.Tensor, repeats: int,
             loop: int, defer: bool = False) -> list[dict]:  # type: ignore[type-arg]  # fmt: skip
    """Rows for every launch shape of one kernel on input x (and its default-shape wire);
    `defer`: LogFMT encode through the deferring fast encoder (else the codec's default)."""
    spec = codecs.parse(name)
    tokens, hidden = x.shape
    flag = True if defer and spec.kind == "logfmt" and op == "encode" else None
    if op == "encode":
        run = lambda c: tk.encode(spec, x, c, fast=flag, defer=flag)  # noqa: E731
        moved = x.numel() * x.element_size() + wire.numel()
    else:
        run = lambda c: tk.decode(spec, wire, tokens, hidden, c)  # noqa: E731
        moved = wire.numel() + 4 * x.numel()
    default = run(None)
    rows = []
    for config in tk.sweep_configs(spec.kind, op):
        got = run(config)
        same = torch.equal(got.view(torch.uint8), default.view(torch.uint8))
        same = same and (op == "decode" or torch.equal(got, wire))
        ok = same and reference_ok(name, x, config, flag)
        samples = timed(lambda c=config: run(c), repeats, loop) if ok else []
        median = statistics.median(samples) if samples else float("nan")
        rows.append({"codec": name, "op": op, "defer": bool(flag), "tokens": tokens,
                     "hidden": hidden,
                     "config": config.label, "is_default": config == tk.default_config(spec, op),
                     "identical": ok, "bytes_moved": moved, "samples_s": samples,
                     "median_s": median, "rw_gbps": moved / median / 1e9})  # fmt: skip
        print(f"  {name} {op} {tokens} {config.label}: "
              f"{median * 1e6:.1f} us{'' if ok else ' WRONG'}", flush=True)  # fmt: skip
    return rows


def sweep_size(
    args: argparse.Namespace, tokens: int, hidden: int, dtype: str
) -> tuple[float, list[dict]]:  # type: ignore[type-arg]
    """(copy GB/s, rows) for one input size and dtype."""
    torch.manual_seed(0)
    x = (torch.randn(tokens, hidden, device="cuda") * 0.5).to(getattr(torch, dtype))
    dst = torch.empty_like(x)
    copy_s = statistics.median(timed(lambda: dst.copy_(x), args.repeats, args.loop))
    copy_gbps = 2 * x.numel() * x.element_size() / copy_s / 1e9
    rows = []
    for name in args.codecs.split(","):
        wire = tk.encode(codecs.parse(name), x)
        for op in args.ops.split(","):
            rows += sweep_op(name, op, x, wire, args.repeats, args.loop, args.defer)
    for r in rows:
        r["dtype"] = dtype
        r["copy_rw_gbps"] = copy_gbps
        r["vs_copy"] = r["rw_gbps"] / copy_gbps
    return copy_gbps, rows


def print_table(rows: list[dict]) -> None:  # type: ignore[type-arg]
    best = {}
    for r in rows:
        key = (r["codec"], r["op"], r["tokens"], r["dtype"])
        if r["identical"] and r["vs_copy"] > best.get(key, (0.0, None))[0]:
            best[key] = (r["vs_copy"], r["config"])
    print(f"{'codec':9s} {'op':6s} {'tokens':>6s} {'dtype':8s} {'config':12s} {'us':>8s} "
          f"{'GB/s':>6s} {'/copy':>5s}  target")  # fmt: skip
    for r in rows:
        key = (r["codec"], r["op"], r["tokens"], r["dtype"])
        mark = ("*" if best.get(key, (0, None))[1] == r["config"] else " ") + (
            "d" if r["is_default"] else " "
        )
        if not r["identical"]:
            print(f"{r['codec']:9s} {r['op']:6s} {r['tokens']:6d} {r['dtype']:8s} "
                  f"{r['config']:12s} WRONG")  # fmt: skip
            continue
        target = TARGETS.get(r["codec"])
        verdict = "" if target is None else ("met" if r["vs_copy"] >= target else "missed")
        print(f"{r['codec']:9s} {r['op']:6s} {r['tokens']:6d} {r['dtype']:8s} {r['config']:12s} "
              f"{r['median_s'] * 1e6:8.1f} {r['rw_gbps']:6.0f} {r['vs_copy']:5.2f}{mark} "
              f"{verdict}")  # fmt: skip


def main() -> int:
    args = parse_args()
    if not torch.cuda.is_available() or not tk.available():
        print("codec_tune.py: needs a CUDA device and triton", file=sys.stderr)
        return 2
    if args.repeats < 20:
        print(f"codec_tune.py: --repeats {args.repeats} is too few; use 20 or more",
              file=sys.stderr)  # fmt: skip
        return 2
    began = time.perf_counter()
    throughput.warm_up_clocks()
    copies, rows = {}, []
    for dtype in args.dtypes.split(","):
        for size in args.sizes.split(","):
            tokens, hidden = (int(v) for v in size.split("x"))
            key = f"{size} {dtype}"
            copies[key], size_rows = sweep_size(args, tokens, hidden, dtype)
            rows += size_rows
            print(f"{key}: device copy {copies[key]:.0f} GB/s (read + written)", flush=True)
    print_table(rows)
    facts = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
             "triton": tk.triton.__version__, "python": platform.python_version(),
             "copy_rw_gbps": copies, "wall_s": time.perf_counter() - began, "loop": args.loop,
             "targets_vs_copy": TARGETS}  # fmt: skip
    args.out.write_text(json.dumps({"facts": facts, "rows": rows}, indent=1))
    wrong = sum(not r["identical"] for r in rows)
    print(f"wrote {args.out} in {facts['wall_s']:.0f} s; shapes with different bytes: {wrong}")
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
